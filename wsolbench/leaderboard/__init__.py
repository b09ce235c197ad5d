"""Leaderboards: results of one protocol → one table (markdown, CSV, LaTeX, HTML).

``compare`` is what ``wsolbench compare`` runs. It reads only result files, recomputes the
requested threshold policy from their stored per-threshold counts (never from their stored summary
metrics, so a policy added later applies to old results), groups runs of one method and config over
seeds, and adds the published rows of ``reports/published.yaml`` for the protocol's dataset, marked
and never averaged.

Rules every table follows:

- One protocol version per table: results with different protocol ids or hashes are refused.
- One dataset per table: results whose data fingerprints differ (another ``--data-root``, a
  different selection split, edited metadata) are refused, or with ``by_data`` shown as separate
  tables, one per fingerprint; never averaged or ranked together. Results written before
  fingerprints existed (schema 1) count as one "unknown" fingerprint.
- A row is (method, pretrained weights, config minus ``seed``): mean ± sample std (ddof=1) over its
  seeds. Runs with and without pretrained weights are never averaged together; a row without
  pretrained weights is marked ``‡``. A row's label names what its runs' ``-o`` overrides changed
  from the preset (weights choices aside: the Pretrained cell names those), and two configs of one
  method are told apart by the config keys that differ between them too.
- Published figures are marked ``†`` with their source and threshold policy.
- What a method's default computes relative to the paper it is named after, as its runs recorded
  it (:attr:`wsolbench.method.Capabilities.reference`), is a note under the table (CSV: a
  ``reference`` column); records without it get none, never one read from the installed method.
- Runs are sorted by MaxBoxAccV2 (PxAP on a board without boxes; descending, rows without it
  last), published rows come after runs.
- The localization map is always the ground-truth class's map; every table says so.
- A Pretrained cell names each part's weights by a short name (``text synthclip-v1``), spelled out
  in full in a footnote; two different sources never share a short name in one table. The CSV,
  and every format with ``wide``, keep the full sources in the cells.
- When results carry cost (``run --profile``), the table adds the parameters inference needs, MACs
  of one image (the counter is named in a note) and the batch-1 median latency — one column per
  device (name, CPU threads, AMP), since latencies of two devices are not comparable.

One idea per module, each importing only those above it in this list:

- :mod:`~wsolbench.leaderboard.rows`: the data (a row, a board) and the marks and notes;
- :mod:`~wsolbench.leaderboard.published`: published rows (``reports/published.yaml``);
- :mod:`~wsolbench.leaderboard.cost_columns`: the cost columns and their notes;
- :mod:`~wsolbench.leaderboard.runs`: runs into rows (metrics under the policy, seeds grouped);
- :mod:`~wsolbench.leaderboard.sources`: weights sources by short names, unique in a table, and
  their footnotes;
- :mod:`~wsolbench.leaderboard.columns`: a table's columns and notes, and those a markdown table
  keeps to fit a terminal (120 characters; ``wide``: every one);
- :mod:`~wsolbench.leaderboard.rendering`: markdown, CSV, LaTeX and HTML text;
- :mod:`~wsolbench.leaderboard.board`: results into boards, and ``compare``.

Which results may share a table, and a row's identity, are :mod:`wsolbench.results.grouping`'s. No
torch: reading results and cost records needs none.
"""

from wsolbench.leaderboard.board import (
    build_leaderboard,
    build_leaderboards,
    compare,
    render_boards,
)
from wsolbench.leaderboard.cost_columns import COST_NOTE
from wsolbench.leaderboard.published import default_published_path, load_published
from wsolbench.leaderboard.rendering import FORMATS, latex_escape, render
from wsolbench.leaderboard.rows import (
    MAPS_NOTE,
    MISSING,
    NO_WEIGHTS_MARK,
    NO_WEIGHTS_NOTE,
    PUBLISHED_MARK,
    PUBLISHED_NOTE,
    Leaderboard,
    Row,
)

__all__ = [
    "COST_NOTE",
    "FORMATS",
    "MAPS_NOTE",
    "MISSING",
    "NO_WEIGHTS_MARK",
    "NO_WEIGHTS_NOTE",
    "PUBLISHED_MARK",
    "PUBLISHED_NOTE",
    "Leaderboard",
    "Row",
    "build_leaderboard",
    "build_leaderboards",
    "compare",
    "render_boards",
    "default_published_path",
    "latex_escape",
    "load_published",
    "render",
]
