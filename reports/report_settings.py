"""What the reports are made of and where they go, and how a step runs ``wsolbench``.

Shared by every step of ``reports/make_reports.py``: the board's dataset and protocol, the methods
and seeds run, the folders (work dirs, committed results, figures, cost records), the torch
threads of every timing, and :func:`wsolbench`, which runs the command line in a fresh process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPORTS = Path(__file__).resolve().parent
REPO = REPORTS.parent
DATASET = "synthetic"
PROTOCOL = "synthetic-v1"
# method -> extra `wsolbench run` flags (none: every method's synthetic preset, the CLIP
# baselines and TeD-Loc's text targets with wsolbench's own synthclip-v1, built on first use).
METHODS: dict[str, list[str]] = {
    "center": [],
    "cam": [],
    "tedloc": [],
    "clip_patch": [],
    "clip_gradcam": [],
}
# Five seeds: what TeD-Loc's acceptance against CAM is judged on (issue 13), and what the board's
# intervals resample.
SEEDS = (0, 1, 2, 3, 4)
# One torch thread while timing: on this CPU, shared with other jobs, every parallel op with two
# threads waits for the slower thread's time slice (measured: a 13-MMAC model took 530 ms per call
# with 2 threads under load and 2 ms with 1).
PROFILE_THREADS = "1"
WORK = Path("work_dirs/reports")
RESULTS = REPORTS / "results" / PROTOCOL
FIGURES = REPORTS / "figures"
COST_DIR = REPORTS / "cost"


def wsolbench(*argv: str | Path) -> int:
    """Run ``python -m wsolbench ARGV`` (a fresh process: timings are not disturbed by this one)."""
    command = [sys.executable, "-m", "wsolbench", *map(str, argv)]
    print("$ wsolbench " + " ".join(map(str, argv)), flush=True)
    return subprocess.call(command, cwd=REPO)
