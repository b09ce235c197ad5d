"""GitHub markdown tables: the one place wsolbench writes them (leaderboards, ``diff``)."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate


def escape_cell(text: str) -> str:
    """A cell's text with ``|`` escaped as ``\\|``: a bare one (a config value, a file name)
    would end the cell and shift every column after it."""
    return str(text).replace("|", "\\|")


def github_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None
) -> str:
    """A markdown table of text cells (no number parsing), every header and cell escaped."""
    return tabulate(
        [[escape_cell(cell) for cell in row] for row in rows],
        headers=[escape_cell(h) for h in headers],
        tablefmt="github",
        colalign=align,
        disable_numparse=True,
    )
