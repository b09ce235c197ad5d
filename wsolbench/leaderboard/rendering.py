"""Rendering a leaderboard: the same table as markdown, CSV, LaTeX or HTML text.

Every format shows the board's header lines (protocol, data, split, policy, maps), one line per
row and the notes; published figures keep the precision the paper printed. Markdown, LaTeX and
HTML show the columns and notes of :mod:`~wsolbench.leaderboard.columns` (weights by short names,
and in markdown only the columns that fit a terminal, unless ``wide``). The CSV has one column
per figure (mean, std, interval bounds, cost) instead of formatted cells, the full sources, and
each row's note and reference (what the method computes relative to its namesake paper).
"""

from __future__ import annotations

import csv
import html
import io
import math
import re
import textwrap

from tabulate import tabulate

from wsolbench.cost.formatting import LATENCY_MARK, MACS_LOWER_BOUND_MARK
from wsolbench.leaderboard.columns import (
    TERMINAL_WIDTH,
    fitting,
    grid,
    markdown_table,
    published_number,
    table_columns,
    table_notes,
)
from wsolbench.leaderboard.rows import (
    MISSING,
    NO_WEIGHTS_MARK,
    NO_WEIGHTS_NOTE,
    PUBLISHED_MARK,
    PUBLISHED_NOTE,
    Leaderboard,
)
from wsolbench.leaderboard.sources import full_sources, pretrained_cell, table_sources

FORMATS = ("md", "csv", "latex", "html")


def render(board: Leaderboard, fmt: str, *, wide: bool = False) -> str:
    """Render a leaderboard as ``md``, ``csv``, ``latex`` or ``html`` text (ends with a newline).

    By default the Pretrained cells hold short names, each spelled out in a footnote, and the
    markdown table keeps the columns that fit a terminal (:mod:`~wsolbench.leaderboard.columns`);
    ``wide``: every column, and each weights source in full in its cell (without the folders of
    the machine that ran it). The CSV always holds every figure and the full sources.
    """
    renderers = {"md": _render_md, "csv": _render_csv, "latex": _render_latex, "html": _render_html}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return renderers[fmt](board, wide)


def _render_md(board: Leaderboard, wide: bool) -> str:
    names = None if wide else table_sources(board.rows)
    columns = table_columns(board, names)
    shown = columns if wide else fitting(columns)
    lines = [_bullet(line) for line in board.header_lines]
    notes = [_bullet(note) for note in table_notes(board, names, shown, columns)]
    return "\n".join([*lines, "", markdown_table(shown), "", *notes]) + "\n"


def _bullet(text: str) -> str:
    """A markdown list item wrapped at the terminal width (continuation lines indented, so it
    renders as one item); a single word longer than the width, such as a path, is not broken."""
    return textwrap.fill(
        text,
        width=TERMINAL_WIDTH,
        initial_indent="- ",
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
# Symbols the tables use that pdflatex cannot typeset from UTF-8 without extra packages.
_LATEX_UNICODE = {
    "±": r"$\pm$",
    NO_WEIGHTS_MARK: r"\ddag{}",
    PUBLISHED_MARK: r"\dag{}",
    MISSING: "--",
    "τ": r"$\tau$",
    LATENCY_MARK: r"\S{}",
    MACS_LOWER_BOUND_MARK: r"$\geq$",
}


def latex_escape(text: str) -> str:
    """Escape text for LaTeX: special ASCII characters and the table's Unicode symbols."""
    text = re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], text)
    return _latex_unicode(text)


def _latex_unicode(text: str) -> str:
    for symbol, command in _LATEX_UNICODE.items():
        text = text.replace(symbol, command)
    return text


def _render_latex(board: Leaderboard, wide: bool) -> str:
    names = None if wide else table_sources(board.rows)
    columns = table_columns(board, names)
    headers, body, align = grid(columns)
    # tabulate escapes the ASCII specials of every cell; the Unicode symbols are replaced after.
    tabular = _latex_unicode(
        tabulate(
            body, headers=headers, tablefmt="latex_booktabs", colalign=align, disable_numparse=True
        )
    )
    caption = latex_escape("; ".join(board.header_lines) + ".")
    label = re.sub(r"[^a-z0-9]+", "-", f"{board.protocol}-{board.split}".lower())
    notes = "\\\\\n".join(latex_escape(n) for n in table_notes(board, names, columns, columns))
    return (
        "% Requires \\usepackage{booktabs}.\n"
        "\\begin{table}[t]\n\\centering\n"
        f"\\caption{{{caption}}}\n\\label{{tab:wsolbench-{label}}}\n"
        f"{tabular}\n"
        f"\\par\\smallskip\n{{\\footnotesize\n{notes}\\par}}\n"
        "\\end{table}\n"
    )


def _render_html(board: Leaderboard, wide: bool) -> str:
    names = None if wide else table_sources(board.rows)
    columns = table_columns(board, names)
    headers, body, align = grid(columns)
    table = tabulate(body, headers=headers, tablefmt="html", colalign=align, disable_numparse=True)
    caption = "<br>".join(html.escape(line) for line in board.header_lines)
    notes = "<br>".join(html.escape(n) for n in table_notes(board, names, columns, columns))
    tfoot = f'<tfoot>\n<tr><td colspan="{len(headers)}">{notes}</td></tr>\n</tfoot>\n'
    assert table.startswith("<table>") and table.endswith("</table>")
    inner = table[len("<table>") : -len("</table>")].strip("\n")
    return f'<table class="wsolbench">\n<caption>{caption}</caption>\n{inner}\n{tfoot}</table>\n'


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def _csv_flag(value: bool | None) -> str:
    return "" if value is None else "true" if value else "false"


def _csv_interval(board: Leaderboard, row) -> list[str]:
    """A row's ``ci_kind``, ``ci_resampled`` (``seeds+images`` where its seeds were drawn too,
    else ``images``), ``ci_resamples``, ``ci_seed`` and ``group`` cells; empty for a row
    without intervals."""
    if not row.ci:
        return ["", "", "", "", ""]
    two_level = not board.models_fixed and len(row.files) > 1
    resampled = "seeds+images" if two_level else "images"
    return [board.interval_kind, resampled, board.ci_resamples, board.ci_seed, row.group]


def _render_csv(board: Leaderboard, wide: bool) -> str:
    del wide  # the CSV always holds every figure and the full sources
    sources = full_sources(board.rows)
    keys = board.metric_keys
    columns = ["method", "config", "pretrained", "seeds", "published"]
    with_ci = any(r.ci for r in board.rows)
    stats = ("mean", "std", "ci_low", "ci_high") if with_ci else ("mean", "std")
    columns += [f"{k}_{stat}" for k in keys for stat in stats]
    if with_ci:  # what the intervals are, per row: a CSV carries no notes
        columns += ["ci_kind", "ci_resampled", "ci_resamples", "ci_seed", "group"]
    devices = board.cost_devices
    if board.has_cost:
        columns += ["params_m", "macs_g"] + [f"latency_ms[{d}]" for d in devices]
        columns += [f"latency_ms_{end}[{d}]" for d in devices for end in ("min", "max")]
        columns += ["macs_lower_bound"] + [f"latency_clean[{d}]" for d in devices]
    # what each method computes relative to its namesake paper, where its records say (the
    # notes of the other formats); absent from tables of older records, which render as before
    with_reference = any(r.references for r in board.rows)
    columns += ["note", "reference"] if with_reference else ["note"]
    columns += ["policy", "protocol", "protocol_hash", "data_fingerprint", "split"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in board.rows:
        if r.published:
            note = f"{PUBLISHED_NOTE.removeprefix(PUBLISHED_MARK + ' ')}; source: {r.source}"
        elif r.no_weights:
            note = NO_WEIGHTS_NOTE.removeprefix(NO_WEIGHTS_MARK + " ").rstrip(".")
        else:
            note = ""
        metrics = []
        for k in keys:
            if r.published:
                metrics += [published_number(r.mean[k]) if k in r.mean else "", ""]
            else:
                metrics += [_number(r.mean.get(k)), _number(r.std.get(k))]
            if with_ci:
                low, high = r.ci.get(k, (None, None))
                metrics += [_number(low), _number(high)]
        if with_ci:
            metrics += _csv_interval(board, r)
        if board.has_cost:
            metrics += [_number(r.cost.get("params")), _number(r.cost.get("macs"))]
            metrics += [_number(r.cost.get("latency", {}).get(d)) for d in devices]
            spans = [r.cost.get("latency_range", {}).get(d, (None, None)) for d in devices]
            metrics += [_number(value) for span in spans for value in span]
            metrics += [_csv_flag(r.cost.get("macs_lower_bound") if r.cost else None)]
            metrics += [
                _csv_flag(d not in r.cost.get("unclean", ()))
                if d in r.cost.get("latency", {})
                else ""
                for d in devices
            ]
        writer.writerow(
            [
                r.method,
                r.label,
                "" if r.published else pretrained_cell(r, sources, full=True),
                "" if r.published else r.seeds_cell,
                "true" if r.published else "false",
                *metrics,
                note,
                *([" | ".join(r.references)] if with_reference else []),
                r.policy if r.published else board.policy,
                "" if r.published else board.protocol,
                "" if r.published else board.protocol_hash,
                "" if r.published else board.data or "unknown",
                board.split,
            ]
        )
    return out.getvalue()
