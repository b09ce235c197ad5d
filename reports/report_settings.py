"""What the reports are made of and where they go, and how a step runs ``wsolbench``.

Shared by every step of ``reports/make_reports.py``: the board's grid (``reports/board.yaml``, the
one list of its methods, seeds, dataset and protocol, run by ``wsolbench sweep``) and how it is
run, the folders (the sweep's work dirs, committed results, figures, cost records), the torch
threads of every timing, and :func:`wsolbench`, which runs the command line in a fresh process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wsolbench.sweep.grid import build_grid, read_grid_file

REPORTS = Path(__file__).resolve().parent
REPO = REPORTS.parent
# The board's grid, relative to the repository (every step runs `wsolbench` there): methods
# (each with its synthetic preset), dataset, protocol, seeds and the sweep's root.
BOARD_GRID = Path("reports/board.yaml")
BOARD = build_grid(read_grid_file(REPO / BOARD_GRID))
PROTOCOL = BOARD.protocol
METHODS = tuple(BOARD.methods)
SEEDS = tuple(BOARD.seeds)
# How the sweep runs the board: the thread count changes the floats (it is recorded in each
# result, and `run --resume` refuses another), so it is stated, one torch thread per cell; and
# two cells at once on this 2-core machine, which beats one cell with two threads (docs/sweep.md).
BOARD_SLOTS = 2
BOARD_THREADS = 1
# One torch thread while timing: on this CPU, shared with other jobs, every parallel op with two
# threads waits for the slower thread's time slice (measured: a 13-MMAC model took 530 ms per call
# with 2 threads under load and 2 ms with 1).
PROFILE_THREADS = "1"
# The sweep's work dirs, <root>/<protocol id>/<method>/seed<S> (wsolbench.sweep.cells names them)
WORK = BOARD.root_dir / PROTOCOL
RESULTS = REPORTS / "results" / PROTOCOL
FIGURES = REPORTS / "figures"
COST_DIR = REPORTS / "cost"


def wsolbench(*argv: str | Path) -> int:
    """Run ``python -m wsolbench ARGV`` (a fresh process: timings are not disturbed by this one)."""
    command = [sys.executable, "-m", "wsolbench", *map(str, argv)]
    print("$ wsolbench " + " ".join(map(str, argv)), flush=True)
    return subprocess.call(command, cwd=REPO)
