"""TeD-Loc's ablation on ``synthetic-v1``: every variant of the README's table, every seed.

    python -m methods.tedloc.ablations [--seeds 0 1 2 3 4] [--variants NAME ...] [--no-runs]

The grid is ``methods/tedloc/ablations.yaml``, the one list of the variants (each a set of ``-o``
overrides of TeD-Loc's synthetic preset) and seeds. It runs through the sweep, two cells at once
with one torch thread each (the thread count changes the floats, so it is stated)::

    wsolbench sweep methods/tedloc/ablations.yaml --executor local --slots 2 --threads 1

(``--seeds`` and ``--variants`` narrow it). Each cell is a ``wsolbench run --resume --summed-pxap``
in ``work_dirs/ablations/synthetic-v1/tedloc-<variant>/seed<S>``, so an interrupted sweep continues
where it stopped; ``--summed-pxap`` because the table gives seed means ± std only, never a
per-image interval, and per-image PxAP histograms would be 70 % of the committed results' size.
Each finished run's ``result.json`` and per-image records are copied to
``reports/results/ablations/<variant>/seed<S>/``, and the table ``reports/tedloc-ablations.md``
is rendered from the copies alone (``--no-runs`` only copies and renders) beside the default and
CAM rows of the board (``reports/results/synthetic-v1``, made by ``make reports`` from
``reports/board.yaml`` with the same seeds): ``wsolbench compare
reports/results/synthetic-v1/tedloc reports/results/synthetic-v1/cam reports/results/ablations
--format md --wide --no-published`` (every column).

The default's teacher is ``synthcam-v1`` (wsolbench's cached ``cam`` run, seed 0); the
``self_*`` variants repeat the text and QR switches with the spec's ``self`` teacher. The one-seed
probes of the TeD-Loc README (``teacher_detach=true``, ``mil_detach=warmup`` with the ``self``
teacher) are not in the grid: they were run by hand, ``wsolbench run ... -o teacher=self -o
teacher_detach=true``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from wsolbench.results.per_image import copy_result
from wsolbench.sweep.cells import expand, finished
from wsolbench.sweep.grid import Grid, build_grid, read_grid_file

REPO = Path(__file__).resolve().parents[2]
GRID_FILE = Path("methods/tedloc/ablations.yaml")  # relative to REPO, where the sweep runs
RESULTS = Path("reports/results/ablations")
BOARD = Path("reports/results/synthetic-v1")  # the default rows: the board's tedloc and cam runs
TABLE = Path("reports/tedloc-ablations.md")
# Two cells at once with one torch thread each: on this 2-core machine, faster than one cell with
# two threads (docs/sweep.md); the thread count is part of each run (recorded, checked on resume).
SLOTS = 2
THREADS = 1
GRID = build_grid(read_grid_file(REPO / GRID_FILE))


def chosen(seeds: list[int], variants: list[str]) -> Grid:
    """The grid narrowed to these seeds and variants (what ``sweep --seeds --variants`` runs)."""
    kept = {name: GRID.variants[name] for name in GRID.variants if name in variants}
    return dataclasses.replace(GRID, seeds=sorted(set(seeds)), variants=kept)


def sweep(grid: Grid) -> int:
    """Run the grid's unfinished cells; returns the sweep's exit status."""
    argv = [sys.executable, "-m", "wsolbench", "sweep", str(GRID_FILE), "--executor", "local"]
    argv += ["--slots", str(SLOTS), "--threads", str(THREADS)]
    if grid.seeds != GRID.seeds:
        argv += ["--seeds", *map(str, grid.seeds)]
    if list(grid.variants) != list(GRID.variants):
        argv += ["--variants", *grid.variants]
    print("$", " ".join(argv[1:]), flush=True)
    return subprocess.call(argv, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def collect(grid: Grid) -> None:
    """Copy each finished cell to ``reports/results/ablations/<variant>/seed<S>``."""
    cells = [
        dataclasses.replace(cell, work_dir=REPO / cell.work_dir)
        for cell in expand(grid, threads=THREADS)
    ]
    for cell in finished(cells):
        copy_result(cell.work_dir, REPO / RESULTS / cell.variant / f"seed{cell.seed}")


def render() -> int:
    rows = [BOARD / "tedloc", BOARD / "cam", RESULTS]
    argv = [sys.executable, "-m", "wsolbench", "compare", *map(str, rows)]
    argv += ["--format", "md", "--wide", "--no-published", "--output", str(TABLE)]
    print("$", " ".join(argv[1:]), flush=True)
    return subprocess.call(argv, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(GRID.seeds))
    names = list(GRID.variants)
    parser.add_argument("--variants", nargs="+", choices=names, default=names)
    parser.add_argument("--no-runs", action="store_true", help="only copy results and render")
    args = parser.parse_args(argv)
    grid = chosen(args.seeds, args.variants)
    status = 0 if args.no_runs else sweep(grid)  # its table names each failed cell and why
    collect(grid)  # the finished cells, failed ones or not: the table shows what there is
    rendered = render()
    return status or rendered


if __name__ == "__main__":
    sys.exit(main())
