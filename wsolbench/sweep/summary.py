"""A sweep's account of itself: one table (cell, state, wall time, log, the last ``error:`` line
of a failed cell) and ``<root>/sweep.json`` (the grid and every cell's outcome), written
atomically so a reader never sees half of it.
"""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from wsolbench.sweep.executors import Outcome
from wsolbench.sweep.grid import Grid
from wsolbench.util.atomic import write_json_atomic

SUMMARY_FILE = "sweep.json"
FINISHED = ("done", "skipped")


def last_error(outcome: Outcome) -> str | None:
    """The last ``error:`` line the cell wrote to its stderr log (None when it wrote none)."""
    if outcome.stderr is None or not Path(outcome.stderr).is_file():
        return None
    text = Path(outcome.stderr).read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    return lines[-1] if lines else None


def table(outcomes: list[Outcome]) -> str:
    rows = []
    for outcome in outcomes:
        wall = "" if outcome.wall_s is None else f"{outcome.wall_s:.1f}s"
        log = outcome.stderr if outcome.state in ("failed", "cancelled") else outcome.stdout
        error = ""
        if outcome.state == "failed":
            error = last_error(outcome) or f"exit {outcome.status}"
        rows.append([outcome.cell.name, outcome.state, wall, log or "", error])
    return tabulate(rows, headers=["cell", "state", "wall", "log", "error"], disable_numparse=True)


def counts(outcomes: list[Outcome]) -> str:
    """``4 done, 2 skipped, 1 failed`` (the states that occur)."""
    states = ("done", "skipped", "failed", "cancelled", "not started")
    found = [(s, sum(o.state == s for o in outcomes)) for s in states]
    return ", ".join(f"{n} {s}" for s, n in found if n)


def write_summary(root: Path, grid: Grid, outcomes: list[Outcome]) -> Path:
    """``<root>/sweep.json``: the grid as given and each cell's argv, work dir, the seeds its run
    stands for, and outcome."""
    path = Path(root) / SUMMARY_FILE
    cells = [
        {
            "cell": o.cell.name,
            "state": o.state,
            "wall_s": None if o.wall_s is None else round(o.wall_s, 3),
            "exit_status": o.status,
            "work_dir": str(o.cell.work_dir),
            "argv": list(o.cell.argv),
            "stands_for_seeds": list(o.cell.stands_for),  # all of them: seed-independent
            "stdout": None if o.stdout is None else str(o.stdout),
            "stderr": None if o.stderr is None else str(o.stderr),
            "error": last_error(o) if o.state == "failed" else None,
        }
        for o in outcomes
    ]
    write_json_atomic(path, {"grid": grid.as_dict(), "cells": cells})
    return path
