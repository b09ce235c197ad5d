"""Step 3 of the reports: the committed leaderboards and diffs, rendered from the results alone.

No timestamp and no machine path in them: the same results give the same bytes, which
``tests/test_reports.py`` checks against the committed files.
"""

from __future__ import annotations

from pathlib import Path

from report_settings import REPORTS, RESULTS

CI_RESAMPLES = 1000  # compare --ci: bootstrap resamples of the test images (seed 0)
# file -> (policy, format, bootstrap resamples: 0 = no intervals)
LEADERBOARD_FILES = {
    "leaderboard.md": ("oracle", "md", 0),
    "leaderboard.csv": ("oracle", "csv", 0),
    "leaderboard.tex": ("oracle", "latex", 0),
    "leaderboard.html": ("oracle", "html", 0),
    "leaderboard-select.md": ("select", "md", 0),
    "leaderboard-ci.md": ("oracle", "md", CI_RESAMPLES),
    "leaderboard-ci.csv": ("oracle", "csv", CI_RESAMPLES),
    "leaderboard-ci.tex": ("oracle", "latex", CI_RESAMPLES),
    "leaderboard-ci.html": ("oracle", "html", CI_RESAMPLES),
}
# file -> (row A, row B): `wsolbench diff` of two methods' seeds on the same test images
DIFF_FILES = {
    "diff-tedloc-cam.md": ("tedloc", "cam"),
    "diff-tedloc-center.md": ("tedloc", "center"),
    "diff-cam-center.md": ("cam", "center"),
}


def render_leaderboards(results: Path = RESULTS, out_dir: Path = REPORTS) -> list[Path]:
    """Step 3: the leaderboard files from the results under ``results`` (deterministic)."""
    from wsolbench.leaderboard import compare
    from wsolbench.results.intervals import diff, render_diff
    from wsolbench.util.atomic import write_text_atomic

    written = []
    for name, (policy, fmt, resamples) in LEADERBOARD_FILES.items():
        path = Path(out_dir) / name
        write_text_atomic(path, compare([results], policy=policy, fmt=fmt, ci=resamples))
        written.append(path)
    for name, (a, b) in DIFF_FILES.items():
        if (results / a).is_dir() and (results / b).is_dir():
            diffs = diff([results / a], [results / b], resamples=CI_RESAMPLES)
            path = Path(out_dir) / name
            write_text_atomic(path, render_diff(f"A: {a}", f"B: {b}", diffs))
            written.append(path)
    return written
