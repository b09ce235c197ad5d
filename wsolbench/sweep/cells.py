"""A grid's cells: each one ``wsolbench run --resume`` argv with a deterministic work dir
``<root>/<protocol id>/<method>[-<variant>]/seed<S>``, every name resolved (so checked) before
any cell starts, and which cells are already finished.

A seed-independent method (:attr:`wsolbench.method.Capabilities.seed_independent`) gets one cell
per dataset and variant, the grid's first seed, which stands for all of the grid's seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsolbench.config import resolve_config
from wsolbench.data.fingerprint import records_fingerprint
from wsolbench.data.sources import get_dataset, read_data
from wsolbench.protocol import Protocol, protocol_for_dataset
from wsolbench.registry import get_method
from wsolbench.results import workdir
from wsolbench.results.record import RESULT_FILENAME, load_result
from wsolbench.results.verify import verify_result
from wsolbench.sweep.grid import Grid, SweepError


@dataclass(frozen=True)
class Cell:
    """One run of the grid; ``argv`` is exactly what ``wsolbench`` is called with."""

    name: str  # <protocol id>/<method>[-<variant>]/seed<S>, the work dir relative to the root
    work_dir: Path
    argv: tuple[str, ...]
    method: str  # the registered name (what the record says), not the spelling asked for
    dataset: str
    protocol: str
    seed: int
    variant: str | None
    config: dict  # the resolved config, to tell a finished run of this very cell
    # and, to tell it too: the protocol's rules (an edited file keeps its id) and the data (the
    # fingerprint of what the run would read from this root, train split included if it trains)
    rules: Protocol
    data_root: str | None
    trains: bool
    threads: int | None = None  # --threads of the run (None: torch's default)
    # the grid's seeds this cell's run stands for: its own, or all of them for a
    # seed-independent method (one run, the first seed)
    stands_for: tuple[int, ...] = ()


def expand(grid: Grid, *, threads: int | None = None, device: str | None = None) -> list[Cell]:
    """The cells of ``grid``, methods × datasets × variants × seeds in that order; a
    seed-independent method gets the grid's first seed alone (its run stands for every seed),
    whatever its overrides (one that drops its pretrained weights is not looked for).

    Raises:
        SweepError, KeyError, ValueError: an unknown method, dataset or protocol, or an override
            that does not apply to a method (the message names which, and the fix).
    """
    root = grid.root_dir
    if grid.data_root is not None and not Path(grid.data_root).expanduser().is_dir():
        raise SweepError(
            f"data_root: {grid.data_root}: no such folder; give the prepared dataset root "
            "(wsolbench prepare ...), or leave it out for a generated dataset"
        )
    variants = grid.variants or {None: []}
    cells = []
    for dataset in grid.datasets:
        get_dataset(dataset)  # unknown: a KeyError with close matches
        try:
            protocol = protocol_for_dataset(dataset, grid.protocol)
        except ValueError as exc:
            raise SweepError(f"datasets: {dataset!r}: {exc}") from None
        for asked in grid.methods:
            method_cls = get_method(asked)
            for variant, extra in variants.items():
                overrides = _applicable(method_cls, [*grid.overrides, *extra])
                config = _config(method_cls, asked, dataset, variant, overrides)
                leaf = method_cls.name + (f"-{variant}" if variant else "")
                independent = method_cls.capabilities.seed_independent
                for seed in grid.seeds[:1] if independent else grid.seeds:
                    name = f"{protocol.id}/{leaf}/seed{seed}"
                    work_dir = root / name
                    argv = ["run", "--method", asked, "--dataset", dataset]
                    argv += ["--protocol", grid.protocol] if grid.protocol else []
                    argv += ["--data-root", grid.data_root] if grid.data_root else []
                    argv += ["--seed", str(seed), "--work-dir", str(work_dir), "--resume"]
                    argv += ["--summed-pxap"] if grid.summed_pxap else []
                    argv += ["--threads", str(threads)] if threads else []
                    argv += ["--device", device] if device else []
                    for override in overrides:
                        argv += ["-o", override]
                    cells.append(
                        Cell(
                            name=name,
                            work_dir=work_dir,
                            argv=tuple(argv),
                            method=method_cls.name,
                            dataset=dataset,
                            protocol=protocol.id,
                            seed=seed,
                            variant=variant,
                            config=config,
                            rules=protocol,
                            data_root=grid.data_root,
                            trains=method_cls.capabilities.trainable,
                            threads=threads,
                            stands_for=tuple(grid.seeds) if independent else (seed,),
                        )
                    )
    _refuse_twins(cells)
    return cells


def seed_independent_notes(cells: list[Cell]) -> list[str]:
    """One line per method whose one cell stands for several seeds, e.g. ``center is
    seed-independent: one cell (seed 0) stands for seeds 0-4``."""
    notes = {}
    for cell in cells:
        if len(cell.stands_for) > 1 and cell.method not in notes:
            notes[cell.method] = (
                f"{cell.method} is seed-independent: one cell (seed {cell.seed}) stands for "
                f"seeds {_seed_list(cell.stands_for)}"
            )
    return list(notes.values())


def _seed_list(seeds: tuple[int, ...]) -> str:
    """``0-4`` for a run of consecutive seeds, else ``0, 2, 7``."""
    if list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def _applicable(method_cls, overrides: list[str]) -> list[str]:
    """The overrides a method's cells get: a training-free method never trains, so the
    schedule (``train.*``) of a grid mixing it with trainable ones is not passed to it; every
    other override must apply to every method (else the grid is refused)."""
    if method_cls.capabilities.trainable:
        return overrides
    return [o for o in overrides if o.partition("=")[0].split(".")[0].strip() != "train"]


def _config(method_cls, asked: str, dataset: str, variant: str | None, overrides: list[str]):
    try:
        return resolve_config(method_cls, dataset, overrides)
    except ValueError as exc:
        where = f"variant {variant!r} of " if variant else ""
        raise SweepError(
            f"{where}method {asked!r} on {dataset}: {exc} (fix the grid's overrides)"
        ) from None


def _refuse_twins(cells: list[Cell]) -> None:
    """Two spellings of one method (``cam`` twice, or a name and its module path) would share
    work dirs."""
    seen: set[str] = set()
    for cell in cells:
        if cell.name in seen:
            raise SweepError(
                f"methods: {cell.method!r} is named twice (cell {cell.name}); list it once"
            )
        seen.add(cell.name)


def finished(cells: list[Cell]) -> list[Cell]:
    """The cells whose work dir holds a finished run of this very cell: nothing to submit.

    That is a record naming the same method, dataset, protocol (id and rules), data
    (fingerprint), seed, thread count and config, and a ``result.json`` that is that record's
    own, with its files (:func:`wsolbench.results.verify.verify_result`). Anything else, another
    run or a result that fails its checks included, goes to ``run --resume``, whose checks decide
    and name what is wrong. The data is read once per dataset (its mask files, no image).
    """
    fingerprints: dict[tuple, tuple[str, ...]] = {}

    def same_data(cell: Cell, recorded: str | None) -> bool:
        key = (cell.dataset, cell.data_root, cell.rules.hash, cell.trains)
        if key not in fingerprints:
            try:
                found = read_data(
                    cell.dataset, cell.data_root, cell.rules, trains=cell.trains, check_files=False
                )[2]
                # a run begun before mask files were hashed names the records' hash (version 1)
                fingerprints[key] = (found["sha256"], records_fingerprint(found))
            except (ValueError, OSError):  # unreadable data: run --resume names the fault
                fingerprints[key] = ()
        return recorded in fingerprints[key]

    done = []
    for cell in cells:
        record = _finished_record(cell)
        if (
            record is not None
            and record.get("protocol_hash") == cell.rules.hash
            and same_data(cell, record.get("data_fingerprint"))
        ):
            done.append(cell)
    return done


def _finished_record(cell: Cell) -> dict | None:
    """The record of the finished run in the cell's work dir when it names the cell's method,
    dataset, protocol id, seed, threads and config, else None."""
    path = cell.work_dir / RESULT_FILENAME
    if not path.is_file():
        return None
    try:
        record = workdir.read_record(cell.work_dir)
        if record is None:
            return None
        verify_result(path, load_result(path), weights=True)
    except ValueError:  # WorkDirError, ResultError, BindingError, PerImageError
        return None
    asked = {
        "method": cell.method,
        "dataset": cell.dataset,
        "protocol": cell.protocol,
        "seed": cell.seed,
    }
    if cell.threads is not None:
        asked["threads"] = cell.threads
    same = all(record.get(key) == value for key, value in asked.items())
    if not same or workdir.differences({"config": record.get("config")}, {"config": cell.config}):
        return None
    return record
