"""Regenerate every generated file of ``reports/`` (``make reports`` runs this).

Steps, each through the ``wsolbench`` command line or the library call behind it:

1. **Runs.** The board's grid, ``reports/board.yaml`` (methods, seeds, dataset, protocol; the
   methods that ``wsolbench list`` does not know are skipped with a message), through the sweep::

       wsolbench sweep reports/board.yaml --executor local --slots 2 --threads 1

   two cells at once, one torch thread each (the thread count changes the floats, so it is
   stated), into ``work_dirs/reports/synthetic-v1/M/seedS``; each cell is a ``wsolbench run
   --resume``, so only missing runs cost time. Then each finished run without a cost, one at a
   time, gets it: ``wsolbench run <the cell's flags> --resume --threads 1 --profile
   --profile-threads 1`` only measures a finished run and adds its cost.
2. **Results.** Each ``result.json`` is copied to ``reports/results/synthetic-v1/M/seedS/``; the
   committed leaderboards are rendered from these copies alone.
3. **Leaderboards** (``wsolbench compare reports/results/synthetic-v1``): ``leaderboard.md``,
   ``.csv``, ``.tex``, ``.html`` (oracle policy) and ``leaderboard-select.md`` (select policy).
   No timestamp and no machine path in them: the same results give the same bytes, which
   ``tests/test_reports.py`` checks against the committed files.
4. **Cost** (``wsolbench profile --method M --dataset D --json``, one torch thread, timed on
   both protocols: :data:`PROFILE_FLAGS`): ``cost/<D>/<M>.json``; GenPromp's cost-only record
   (``python -m wsolbench.cost.genpromp --json cost/cub/genpromp.json``, needs the
   ``genpromp-cost`` extra); ``cost.md`` / ``cost.json`` with one table per protocol and device,
   latencies not measured clean marked ``§``, and the TeD-Loc / GenPromp ratio.
5. **Figures** (``wsolbench visualize``): ``figures/curves-synthetic.png`` (BoxAcc vs threshold,
   seed 0 of every method) and ``figures/overlays-<M>.png`` (16 test images of seed 0).
6. **Report**: ``report.html``, one self-contained file (tables inline, figures as base64).

One idea per module beside this file, each importing only those above it: ``report_settings``
(the board's grid, where files go, how a step runs ``wsolbench``), ``report_runs`` (steps 1-2),
``report_boards`` (step 3), ``report_profiles`` (step 4, measuring), ``report_cost`` (step 4,
the tables), ``report_html`` (steps 5-6). This file is the command line only.

Usage: ``python reports/make_reports.py [--board main|synthetic-histo] [--methods M ...]
[--seeds S ...] [--no-runs] [--finished-only] [--cost-datasets D ...] [--cost-only]
[--reuse-cost]``; ``--board synthetic-histo`` makes the histology world's board
(``reports/board-synthetic-histo.yaml``): steps 1-3 alone, its tables in
``reports/synthetic-histo-v1/``; ``--methods`` and ``--seeds`` narrow the grid (passed to the
sweep); ``--no-runs`` re-renders from ``reports/results/`` without running; ``--finished-only``
starts no sweep and uses the finished runs (adding their cost); ``--cost-only`` runs step 4 alone
(the cost files).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The steps live beside this file (one idea per module): run as a script, this folder must be on
# the import path for them.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from report_boards import render_leaderboards  # noqa: E402
from report_cost import write_cost  # noqa: E402
from report_html import make_figures, write_report  # noqa: E402
from report_profiles import COST_DATASETS, load_cost, measure_cost  # noqa: E402
from report_runs import collect_results, known_methods, run_all  # noqa: E402
from report_settings import BOARDS, MAIN_BOARD, REPO  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--board",
        choices=list(BOARDS),
        default="main",
        help="main (reports/board.yaml: every step) or synthetic-histo "
        "(reports/board-synthetic-histo.yaml: steps 1-3, tables in reports/synthetic-histo-v1/)",
    )
    parser.add_argument("--methods", nargs="+", help="default: the board's grid file's")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: the board's grid file's")
    parser.add_argument("--cost-datasets", nargs="+", default=list(COST_DATASETS))
    parser.add_argument(
        "--no-runs", action="store_true", help="use reports/results/ as committed; run nothing"
    )
    parser.add_argument(
        "--reuse-cost", action="store_true", help="keep reports/cost/ as measured before"
    )
    parser.add_argument(
        "--cost-only",
        action="store_true",
        help="step 4 alone: measure cost (or --reuse-cost) and write cost.md / cost.json; no "
        "runs, leaderboards, figures or report.html",
    )
    parser.add_argument(
        "--clean-retries",
        type=int,
        default=0,
        help="re-measure a cost whose timing was not clean up to N times, each after waiting for "
        "a quiet machine (at most --quiet-wait seconds)",
    )
    parser.add_argument("--quiet-wait", type=float, default=300.0)
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="start no training (no sweep): use the board's finished runs (adding their cost)",
    )
    args = parser.parse_args(argv)
    board = BOARDS[args.board]
    wanted = args.methods or board.grid.methods
    methods = known_methods(wanted)
    skipped = [m for m in wanted if m not in methods]
    seeds = tuple(args.seeds or board.grid.seeds)
    failed: dict[str, str] = {}
    if not args.no_runs and not args.cost_only:
        failed = run_all(methods, seeds, finished_only=args.finished_only, board=board)
        collect_results(methods, seeds, board)
    if not args.cost_only:
        board.out_dir.mkdir(exist_ok=True)
        for path in render_leaderboards(board.results, board.out_dir):
            print(f"written {path.relative_to(REPO)}")
    if board != MAIN_BOARD:  # cost, figures and the report are the main board's
        return 0
    # The datasets not measured this time keep their records (e.g. --cost-datasets cub).
    costs = load_cost()
    if not args.reuse_cost:
        measured_costs = measure_cost(
            methods, tuple(args.cost_datasets), args.clean_retries, args.quiet_wait
        )
        for dataset, measured in measured_costs.items():
            costs.setdefault(dataset, {}).update(measured)
    print(f"written {write_cost(costs).relative_to(REPO)}")
    if args.cost_only:
        return 0
    for path in make_figures(methods):
        print(f"written {path.relative_to(REPO)}")
    print(f"written {write_report(methods, skipped, failed, costs).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
