"""A table's columns and notes, and which of them a markdown table keeps to fit a terminal.

Every format shows Method, Pretrained, Seeds, one column per metric some row has, and the cost
columns. The formatted formats (markdown, LaTeX, HTML) name the weights by short names, each spelled
out in a footnote (:mod:`~wsolbench.leaderboard.sources`); ``wide`` puts each source in full in its
cell instead. Markdown is what ``wsolbench compare`` prints to a terminal, so unless ``wide`` it
keeps only the columns that fit :data:`TERMINAL_WIDTH` characters, most wanted first
(:data:`PRIORITY`), and a note names those left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from wsolbench.leaderboard.cost_columns import cost_cells, cost_headers, cost_notes
from wsolbench.leaderboard.rows import MISSING, Leaderboard, Row
from wsolbench.leaderboard.sources import full_sources, pretrained_cell, weights_notes
from wsolbench.results.record import METRIC_KEYS, METRIC_NAMES
from wsolbench.util.markdown import github_table

TERMINAL_WIDTH = 120
COST = "cost"  # the key every cost column shares: they are kept or left out together
GROUP = "group"  # compare --ci: the rows' letter groups, beside the ranking metric they test
# What a markdown table keeps when not every column fits, most wanted first: the box metric tables
# rank by, then the figures WSOL papers print (Top-1 Loc, PxAP where masks exist, Top-1 Cls,
# GT-known), then the cost (its notes describe its columns together); the other metrics follow in
# their usual order.
PRIORITY = ("maxboxacc_v2", "top1_loc", "pxap", "top1_cls", "gt_known_loc", COST)
# On a board without boxes (a histology protocol): PxAP, the figures at the selected τ, then the
# classification; the TP / FN / TN / FP rates (two of them the complements of the others) come
# after the cost, in their usual order.
MASK_PRIORITY = ("pxap", "miou", "dice_fg", "dice_bg", "top1_cls", COST)


@dataclass(frozen=True)
class Column:
    """One column of a table; ``key`` is its metric key, or :data:`COST` for a cost column."""

    key: str
    header: str
    align: str
    cells: tuple[str, ...]


def metric_cell(row: Row, key: str) -> str:
    """``"49.24 ± 1.90"`` (with ``[low, high]`` under ``--ci``), a published figure as printed,
    or :data:`MISSING`."""
    if key not in row.mean:
        return MISSING
    if row.published:
        return published_number(row.mean[key])
    text = f"{row.mean[key]:.2f}"
    if key in row.std:
        text += f" ± {row.std[key]:.2f}"
    if key in row.ci:
        text += " [{:.2f}, {:.2f}]".format(*row.ci[key])
    return text


def published_number(value: float) -> str:
    """A published figure with the precision the paper printed (shortest repr): 41.1 stays 41.1."""
    return repr(float(value))


def table_columns(board: Leaderboard, names: dict[str, str] | None) -> list[Column]:
    """Every column of the board; Pretrained cells by the short ``names``
    (:func:`~wsolbench.leaderboard.sources.table_sources`), or in full with None."""
    rows = board.rows
    full = names is None
    sources = full_sources(rows) if full else names
    pretrained = tuple(pretrained_cell(r, sources, full=full) for r in rows)
    seeds = tuple(MISSING if r.published else r.seeds_cell for r in rows)
    columns = [
        Column("method", "Method", "left", tuple(r.display_name for r in rows)),
        Column("pretrained", "Pretrained", "left", pretrained),
        Column("seeds", "Seeds", "right", seeds),
    ]
    columns += [
        Column(k, METRIC_NAMES[k], "right", tuple(metric_cell(r, k) for r in rows))
        for k in board.metric_keys
    ]
    if any(r.group for r in rows):  # beside the ranking metric (the first), as packages print it
        group = Column(GROUP, "Group", "left", tuple(r.group or MISSING for r in rows))
        columns.insert(4, group)
    costs = [cost_cells(board, r) for r in rows]
    columns += [
        Column(COST, header, "right", tuple(cells[i] for cells in costs))
        for i, header in enumerate(cost_headers(board))
    ]
    return columns


def grid(columns: list[Column]) -> tuple[list[str], list[list[str]], list[str]]:
    """Headers, body rows and alignments, as tabulate takes them."""
    body = [list(cells) for cells in zip(*(c.cells for c in columns), strict=True)]
    return [c.header for c in columns], body, [c.align for c in columns]


def markdown_table(columns: list[Column]) -> str:
    """A GitHub markdown table of the columns (every ``|`` in a cell escaped)."""
    headers, body, align = grid(columns)
    return github_table(headers, body, align)


def common_seeds(columns: list[Column]) -> str | None:
    """The number of seeds every seed-dependent run row has, when they all have the same (then a
    note says it, and names the seed-independent rows: a terminal table needs no Seeds column);
    None when rows differ."""
    cells = [cell for c in columns if c.key == "seeds" for cell in c.cells]
    counts = {cell for cell in cells if cell not in (MISSING, "any")}
    return next(iter(counts)) if len(counts) == 1 else None


def fitting(columns: list[Column], width: int = TERMINAL_WIDTH) -> list[Column]:
    """The columns a markdown table keeps within ``width`` characters, in their usual order.

    Method, Pretrained, Seeds (unless every row has the same number: :func:`common_seeds`), the
    first metric and the Group column beside it (``--ci``) always; then the metrics of
    :data:`PRIORITY` (:data:`MASK_PRIORITY` without boxes), the cost, and the other metrics, in
    that order, for as long as the table still fits (the first one that does not ends the list:
    no column jumps the queue for being narrow).
    """
    fixed, optional = columns[:3], columns[3:]
    if common_seeds(columns) is not None:
        fixed = fixed[:2]
    present = [c.key for c in optional]
    always = {*present[:1], GROUP}
    priority = PRIORITY if "maxboxacc_v2" in present else MASK_PRIORITY
    wanted = (GROUP, *priority, *METRIC_KEYS)
    order = dict.fromkeys([*present[:1], *(k for k in wanted if k in present)])
    kept: set[str] = set()
    for key in order:
        trial = fixed + [c for c in optional if c.key in kept | {key}]
        too_wide = max(len(line) for line in markdown_table(trial).splitlines()) > width
        if key not in always and too_wide:
            break
        kept.add(key)
    return fixed + [c for c in optional if c.key in kept]


def table_notes(
    board: Leaderboard,
    names: dict[str, str] | None,
    shown: list[Column],
    columns: list[Column],
) -> list[str]:
    """The board's notes, then those of what this table shows: the cost notes with the cost
    columns, the full source behind each short name, and the columns left out."""
    notes = list(board.notes)
    seeds = common_seeds(columns)
    if seeds is not None and not any(c.key == "seeds" for c in shown):
        independent = [r.method for r in board.rows if r.seed_independent]
        also = f"; {', '.join(independent)}: any" if independent else ""
        notes.append(f"Seeds: {seeds} per row{also}.")
    if any(c.key == COST for c in shown):
        notes += cost_notes(board.rows)
    if names is not None:
        notes += weights_notes(names)
    left_out = [c.header for c in columns if c not in shown and c.key != "seeds"]
    if left_out:
        notes.append(
            f"Columns left out to fit {TERMINAL_WIDTH} characters: {', '.join(left_out)}; "
            "`compare --wide` shows every column and each weights source in full."
        )
    return notes
