"""What the reports are made of and where they go, and how a step runs ``wsolbench``.

Shared by every step of ``reports/make_reports.py``: the board's grid (``reports/board.yaml``, the
one list of its methods, seeds, dataset and protocol, run by ``wsolbench sweep``) and how it is
run, the folders (the sweep's work dirs, committed results, figures, cost records), the torch
threads of every timing, and :func:`wsolbench`, which runs the command line in a fresh process.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from wsolbench.sweep.grid import Grid, build_grid, read_grid_file

REPORTS = Path(__file__).resolve().parent
REPO = REPORTS.parent


@dataclass(frozen=True)
class Board:
    """One committed board: its grid file (relative to the repository: every step runs
    `wsolbench` there), the grid, where its results are copied and its tables written."""

    grid_file: Path
    out_dir: Path  # its leaderboards and diffs

    @property
    def grid(self) -> Grid:
        return build_grid(read_grid_file(REPO / self.grid_file))

    @property
    def protocol(self) -> str:
        return self.grid.protocol

    @property
    def results(self) -> Path:
        return REPORTS / "results" / self.protocol

    @property
    def work(self) -> Path:
        """The sweep's work dirs, <root>/<protocol id>/<method>/seed<S>
        (wsolbench.sweep.cells names them)."""
        return self.grid.root_dir / self.protocol


# The main board (synthetic-v1: every step, cost and figures included) and the histology world's
# (synthetic-histo-v1: runs and leaderboards, under reports/synthetic-histo-v1/).
MAIN_BOARD = Board(Path("reports/board.yaml"), REPORTS)
HISTO_BOARD = Board(Path("reports/board-synthetic-histo.yaml"), REPORTS / "synthetic-histo-v1")
BOARDS = {"main": MAIN_BOARD, "synthetic-histo": HISTO_BOARD}
# The main board's grid: methods (each with its synthetic preset), dataset, protocol, seeds.
BOARD = MAIN_BOARD.grid
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
WORK = MAIN_BOARD.work
RESULTS = MAIN_BOARD.results
FIGURES = REPORTS / "figures"
COST_DIR = REPORTS / "cost"


def wsolbench(*argv: str | Path) -> int:
    """Run ``python -m wsolbench ARGV`` (a fresh process: timings are not disturbed by this one)."""
    command = [sys.executable, "-m", "wsolbench", *map(str, argv)]
    print("$ wsolbench " + " ".join(map(str, argv)), flush=True)
    return subprocess.call(command, cwd=REPO)
