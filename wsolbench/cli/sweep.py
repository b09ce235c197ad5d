"""``wsolbench sweep``: run a grid of ``wsolbench run`` cells (GRID.yaml and/or flags) through
submitit, skip the finished ones, and print one table of what became of each.

Exit status: 0 when every cell is finished, 1 when one failed, 2 for a mistake in the grid
(found before any cell starts), 130 when Ctrl-C stopped it.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from wsolbench.cli.options import (
    MAX_THREADS,
    add_overrides_argument,
    add_threads,
    int_in,
    path_text,
    user_path,
)

MAX_SLOTS = 1024


def add_sweep(commands) -> None:
    parser = commands.add_parser(
        "sweep",
        help="run a grid of runs (methods × datasets × seeds × variants) through submitit",
        description="Each cell is one `wsolbench run --resume` in <root>/<protocol>/<method>"
        "[-<variant>]/seed<S>; finished cells are skipped, interrupted ones resume. Flags add "
        "to (lists) or replace (the rest) what GRID.yaml says. See docs/sweep.md.",
    )
    parser.add_argument("grid", nargs="?", type=user_path, help="a GRID.yaml (optional)")
    parser.add_argument("--name", help="the sweep's name (default: GRID's file name, or sweep)")
    parser.add_argument("--methods", nargs="+", metavar="M", help="methods to run")
    parser.add_argument("--datasets", nargs="+", metavar="D", help="datasets to run on")
    parser.add_argument(
        "--protocol", type=path_text, help="protocol id or YAML file (default: each dataset's)"
    )
    parser.add_argument("--seeds", nargs="+", metavar="S", help="seeds: 0-4, or 0 1 2")
    add_overrides_argument(parser, "config override applied to every cell (repeatable)")
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="V",
        help="run only these of GRID.yaml's variants (default: all of them)",
    )
    parser.add_argument(
        "--summed-pxap",
        action="store_true",
        default=None,
        help="every cell runs with --summed-pxap (PxAP histograms summed over images only: "
        "exact PxAP, smaller records, no per-image PxAP interval); GRID.yaml: summed_pxap: true",
    )
    parser.add_argument(
        "--root", type=path_text, help="sweep folder (default: work_dirs/sweeps/<name>)"
    )
    parser.add_argument(
        "--data-root", type=path_text, help="prepared dataset root, passed to every cell"
    )
    parser.add_argument("--device", help="--device of every cell (default: the run's auto)")
    parser.add_argument(
        "--executor",
        choices=["local", "debug", "slurm"],
        default="local",
        help="local: processes here (default); debug: in this process, one "
        "after the other; slurm: one job array",
    )
    parser.add_argument(
        "--slots",
        type=int_in(1, MAX_SLOTS, "cells running at once"),
        help="local: cells at once (default: cores // threads, or one per GPU)",
    )
    add_threads(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the cells, run nothing")
    slurm = parser.add_argument_group("slurm executor")
    slurm.add_argument("--partition", help="SLURM partition")
    slurm.add_argument("--gpus-per-cell", type=int_in(0, 64, "GPUs per cell"), default=1)
    slurm.add_argument("--cpus-per-cell", type=int_in(1, MAX_THREADS, "CPUs per cell"), default=4)
    slurm.add_argument(
        "--time",
        type=int_in(1, 60 * 24 * 365, "minutes per cell"),
        default=24 * 60,
        help="time limit of a cell in minutes (default 1440)",
    )
    slurm.add_argument(
        "--array-parallelism",
        type=int_in(1, 100_000, "array tasks at once"),
        default=64,
        help="array tasks running at once (default 64)",
    )
    slurm.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another sbatch option, e.g. account=mylab (repeatable)",
    )
    parser.set_defaults(handler=cmd_sweep)


def cmd_sweep(args) -> int:
    from wsolbench.sweep.cells import expand, finished, seed_independent_notes
    from wsolbench.sweep.executors import Outcome, submitit_folder
    from wsolbench.sweep.summary import FINISHED, counts, table, write_summary
    from wsolbench.util.device import check_device_name

    grid = _grid(args)
    _check_executor_flags(args)
    if args.device is not None:  # else every cell would start, and fail on it
        check_device_name(args.device)
    threads, slots, gpus = _resources(args)
    cells = expand(grid, threads=threads, device=args.device)
    root = grid.root_dir
    for note in seed_independent_notes(cells):
        print(note)
    if args.dry_run:
        for cell in cells:
            print(f"{cell.name}\n  wsolbench {shlex.join(cell.argv)}")
        print(f"{len(cells)} cells under {root} (dry run: nothing started)")
        return 0
    done = finished(cells)
    skipped = [Outcome(cell, "skipped") for cell in done]
    todo = [cell for cell in cells if not any(cell is d for d in done)]
    print(f"sweep {grid.name}: {len(cells)} cells under {root}, {len(skipped)} already finished")
    outcomes = skipped + _execute(args, grid, todo, submitit_folder(root), slots, gpus)
    order = {cell.name: i for i, cell in enumerate(cells)}
    outcomes.sort(key=lambda o: order[o.cell.name])
    print(table(outcomes))
    summary = write_summary(root, grid, outcomes)
    print(f"{counts(outcomes)}; summary in {summary}")
    if any(o.state in ("cancelled", "not started") for o in outcomes):
        finished = [o.cell.name for o in outcomes if o.state in FINISHED]
        done = ", ".join(finished) or "none"
        print(f"interrupted: cancelled the running cells; finished: {done}")
        return 130
    return 1 if any(o.state == "failed" for o in outcomes) else 0


def _grid(args):
    from wsolbench.sweep.grid import build_grid, read_grid_file

    values = read_grid_file(args.grid) if args.grid else {}
    given = {
        "name": args.name,
        "methods": args.methods,
        "datasets": args.datasets,
        "protocol": args.protocol,
        "seeds": args.seeds,
        "root": args.root,
        "data_root": args.data_root,
        "summed_pxap": args.summed_pxap,
    }
    values.update({key: value for key, value in given.items() if value is not None})
    grid = build_grid(values, args.overrides)
    if args.variants:
        grid.variants = _chosen_variants(grid.variants, args.variants)
    return grid


def _chosen_variants(variants: dict[str, list[str]], chosen: list[str]) -> dict:
    """``--variants``: the grid's variants of these names, in the grid's order (a variant's
    overrides live in the file alone, so the flag can only choose among them)."""
    from wsolbench.sweep.grid import SweepError

    if not variants:
        raise SweepError(
            "--variants: the grid has no variants; name them under variants: in GRID.yaml, or "
            "leave --variants out"
        )
    unknown = [name for name in chosen if name not in variants]
    if unknown:
        raise SweepError(
            f"--variants: {unknown[0]!r} is not a variant of the grid; choose among "
            f"{', '.join(variants)}"
        )
    return {name: overrides for name, overrides in variants.items() if name in chosen}


def _check_executor_flags(args) -> None:
    """Options of one executor given with another would be ignored: refused instead."""
    if args.executor != "slurm" and (args.partition or args.slurm_option):
        raise ValueError("--partition and --slurm-option take effect only with --executor slurm")
    if args.executor != "local" and args.slots:
        raise ValueError(
            f"--slots takes effect only with --executor local ({args.executor}: "
            + ("one cell at a time)" if args.executor == "debug" else "use --array-parallelism)")
        )


def _resources(args) -> tuple[int | None, int, list[int]]:
    """(threads per cell, slots, GPUs to pin cells to), from the flags or the machine; the
    local executor prints what it chose."""
    if args.executor == "debug":
        return args.threads, 1, []
    if args.executor == "slurm":
        return args.threads or args.cpus_per_cell, 1, []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = [] if args.device == "cpu" else list(range(_gpu_count()))
    if args.threads is None:
        slots = args.slots or (len(gpus) if gpus else cores)
        threads = max(1, cores // slots)
    else:
        threads = args.threads
        slots = args.slots or (len(gpus) if gpus else max(1, cores // threads))
    pinned = f", one of {len(gpus)} GPUs each" if gpus else ""
    slot_word, thread_word = (
        ("slot" if slots == 1 else "slots"),
        ("thread" if threads == 1 else "threads"),
    )
    print(
        f"local executor: {slots} {slot_word}, {threads} torch {thread_word} each{pinned} "
        f"({cores} cores)"
    )
    return threads, slots, gpus


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _execute(args, grid, cells, folder: Path, slots: int, gpus: list[int]):
    """The cells' outcomes under the chosen submitit executor (each cell runs ``args.entry``,
    wsolbench's own ``main``)."""
    from wsolbench.sweep.executors import SlurmSettings, run_debug, run_local, run_slurm

    if not cells:
        return []
    if args.executor == "debug":
        return run_debug(cells, args.entry, folder)
    if args.executor == "local":
        return run_local(cells, args.entry, folder, slots=slots, gpus=gpus)
    settings = SlurmSettings(
        partition=args.partition,
        gpus_per_cell=args.gpus_per_cell,
        cpus_per_cell=args.cpus_per_cell,
        time_min=args.time,
        array_parallelism=args.array_parallelism,
        options=dict(_key_value(option) for option in args.slurm_option),
    )
    return run_slurm(cells, args.entry, folder, settings, grid.name)


def _key_value(option: str) -> tuple[str, str]:
    key, sep, value = option.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--slurm-option {option!r}: write KEY=VALUE, e.g. account=mylab")
    return key.strip().replace("-", "_"), value
