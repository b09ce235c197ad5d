"""Step 3 of the reports: the committed leaderboards and diffs, rendered from the results alone.

No timestamp and nothing of the machine that renders them (the weights paths in the footnotes and
the CSV are those the results recorded): the same results give the same bytes, which
``tests/test_reports.py`` checks against the committed files.
"""

from __future__ import annotations

import os
from pathlib import Path

from report_settings import REPORTS, RESULTS

CI_RESAMPLES = 1000  # compare --ci: bootstrap resamples of the test images (seed 0)
# file -> (policy, format, bootstrap resamples: 0 = no intervals, wide). The markdown files are
# what `wsolbench compare` prints (the columns that fit 120 characters, weights by short names);
# leaderboard-wide.md is `compare --wide`: every column, each weights source in full.
LEADERBOARD_FILES = {
    "leaderboard.md": ("oracle", "md", 0, False),
    "leaderboard-wide.md": ("oracle", "md", 0, True),
    "leaderboard.csv": ("oracle", "csv", 0, False),
    "leaderboard.tex": ("oracle", "latex", 0, False),
    "leaderboard.html": ("oracle", "html", 0, False),
    "leaderboard-select.md": ("select", "md", 0, False),
    "leaderboard-ci.md": ("oracle", "md", CI_RESAMPLES, False),
    "leaderboard-ci.csv": ("oracle", "csv", CI_RESAMPLES, False),
    "leaderboard-ci.tex": ("oracle", "latex", CI_RESAMPLES, False),
    "leaderboard-ci.html": ("oracle", "html", CI_RESAMPLES, False),
}
# file -> (row A, row B): `wsolbench diff` of two methods' seeds on the same test images
DIFF_FILES = {
    "diff-tedloc-cam.md": ("tedloc", "cam"),
    "diff-tedloc-center.md": ("tedloc", "center"),
    "diff-cam-center.md": ("cam", "center"),
}


def render_leaderboards(results: Path = RESULTS, out_dir: Path = REPORTS) -> list[Path]:
    """Step 3: the leaderboard files from the results under ``results`` (deterministic)."""
    from wsolbench.leaderboard import build_leaderboards, render_boards
    from wsolbench.results.intervals import diff, render_diff
    from wsolbench.util.atomic import write_text_atomic

    written = []
    built = {}  # (policy, resamples) -> boards: built (and bootstrapped) once for every format
    for name, (policy, fmt, resamples, wide) in LEADERBOARD_FILES.items():
        if (policy, resamples) not in built:
            built[policy, resamples] = build_leaderboards(
                [results], policy=policy, ci=resamples, workers=os.cpu_count() or 1
            )
        path = Path(out_dir) / name
        write_text_atomic(path, render_boards(built[policy, resamples], fmt, wide=wide))
        written.append(path)
    for name, (a, b) in DIFF_FILES.items():
        if (results / a).is_dir() and (results / b).is_dir():
            diffs = diff([results / a], [results / b], resamples=CI_RESAMPLES)
            path = Path(out_dir) / name
            write_text_atomic(path, render_diff(f"A: {a}", f"B: {b}", diffs))
            written.append(path)
    return written
