"""Steps 1 and 2 of the reports: the runs (``wsolbench sweep`` of the board's grid, then each
run's cost) and their results, copied.

The board's grid is ``reports/board.yaml``; ``wsolbench sweep`` runs it with two cells at once,
one torch thread each (``BOARD_SLOTS``, ``BOARD_THREADS`` of :mod:`report_settings`), into
``work_dirs/reports/synthetic-v1/<method>/seed<S>``; a seed-independent method (its capability)
runs once, seed 0, which stands for every seed. Then, one at a time so that no timing shares the
machine with another run, each finished run without a cost gets it: the cell's own ``wsolbench
run ... --resume --threads 1`` with ``--profile``, which on a finished run only measures and adds
the cost. Each finished run's ``result.json`` and per-image records are copied under
``reports/results/``, from which the boards are rendered.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

from report_settings import (
    BOARD_SLOTS,
    BOARD_THREADS,
    MAIN_BOARD,
    PROFILE_THREADS,
    REPO,
    Board,
    wsolbench,
)

from wsolbench.results.per_image import copy_result
from wsolbench.sweep.cells import Cell, expand, finished
from wsolbench.sweep.summary import SUMMARY_FILE
from wsolbench.util.atomic import replace_folder


def known_methods(wanted: list[str]) -> list[str]:
    from wsolbench.registry import list_methods

    known = set(list_methods())
    for name in wanted:
        if name not in known:
            print(f"skip {name}: `wsolbench list` does not know it (not in this checkout yet)")
    return [m for m in wanted if m in known]


def board_cells(
    methods: list[str], seeds: tuple[int, ...], board: Board = MAIN_BOARD
) -> list[Cell]:
    """The sweep's cells of ``board`` narrowed to ``methods`` and ``seeds`` (what ``sweep
    --methods --seeds`` runs), with their work dirs and ``wsolbench run`` argv."""
    grid = dataclasses.replace(board.grid, methods=list(methods), seeds=sorted(seeds))
    # work dirs from the repository (where the sweep runs), wherever this script is run from
    cells = expand(grid, threads=BOARD_THREADS)
    return [dataclasses.replace(cell, work_dir=REPO / cell.work_dir) for cell in cells]


def run_all(
    methods: list[str],
    seeds: tuple[int, ...],
    finished_only: bool = False,
    board: Board = MAIN_BOARD,
) -> dict[str, str]:
    """Step 1; returns {"method/seedS": reason} for the runs left out (failed, or not finished
    with ``finished_only``, which starts no training and only adds missing cost)."""
    if not finished_only:
        narrowed = []  # the grid file's lists unless make_reports was told others
        if list(methods) != board.grid.methods:
            narrowed += ["--methods", *methods]
        if sorted(seeds) != board.grid.seeds:
            narrowed += ["--seeds", *map(str, sorted(seeds))]
        wsolbench(
            "sweep", board.grid_file, "--executor", "local", "--slots", BOARD_SLOTS,
            "--threads", BOARD_THREADS, *narrowed,
        )  # fmt: skip
    errors = {} if finished_only else _sweep_errors(board)
    failed = {}
    cells = board_cells(methods, seeds, board)
    done = {cell.name for cell in finished(cells)}
    for cell in cells:
        key = f"{cell.method}/seed{cell.seed}"
        if cell.name not in done:
            failed[key] = (
                "not finished when the reports were made"
                if finished_only
                else errors.get(cell.name, "not finished by the sweep")
            )
            print(f"skip {key}: {cell.name} holds no finished run ({failed[key]})")
            continue
        result = cell.work_dir / "result.json"
        if json.loads(result.read_text(encoding="utf-8")).get("cost"):
            print(f"keep {cell.name}: finished, with its cost")
            continue
        status = wsolbench(*cell.argv, "--profile", "--profile-threads", PROFILE_THREADS)
        if status != 0:
            print(f"cost of {key} not measured (exit status {status}); its row has none")
    return failed


def _sweep_errors(board: Board) -> dict[str, str]:
    """{cell name: the error line of its failed run} from the sweep's summary."""
    path = REPO / board.grid.root_dir / SUMMARY_FILE
    if not path.is_file():
        return {}
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return {c["cell"]: c["error"] for c in cells if c.get("error")}


def collect_results(methods: list[str], seeds: tuple[int, ...], board: Board = MAIN_BOARD) -> None:
    """Step 2: copy each finished run's result.json and per-image records under
    reports/results/<protocol>/ (from scratch).

    The copy is built in a sibling folder and replaces the old one whole: cut short, the boards
    (``--no-runs`` renders them from this folder alone) still see every earlier result, never a
    few methods of the new copy."""
    board.results.parent.mkdir(parents=True, exist_ok=True)
    building = board.results.with_name(f".{board.results.name}.partial")
    shutil.rmtree(building, ignore_errors=True)  # what a killed earlier copy left
    building.mkdir()
    try:
        for cell in finished(board_cells(methods, seeds, board)):
            copy_result(cell.work_dir, building / cell.method / f"seed{cell.seed}")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    replace_folder(building, board.results)
