"""A grid's cells: each one ``wsolbench run --resume`` argv with a deterministic work dir
``<root>/<protocol id>/<method>[-<variant>]/seed<S>``, every name resolved (so checked) before
any cell starts, and whether a cell is already finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wsolbench.config import resolve_config
from wsolbench.data.sources import get_dataset
from wsolbench.protocol import protocol_for_dataset
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
    threads: int | None = None  # --threads of the run (None: torch's default)


def expand(grid: Grid, *, threads: int | None = None, device: str | None = None) -> list[Cell]:
    """The cells of ``grid``, methods × datasets × variants × seeds in that order.

    Raises:
        SweepError, KeyError, ValueError: an unknown method, dataset or protocol, or an override
            that does not apply to a method (the message names which, and the fix).
    """
    root = grid.root_dir
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
                for seed in grid.seeds:
                    name = f"{protocol.id}/{leaf}/seed{seed}"
                    work_dir = root / name
                    argv = ["run", "--method", asked, "--dataset", dataset]
                    argv += ["--protocol", grid.protocol] if grid.protocol else []
                    argv += ["--data-root", grid.data_root] if grid.data_root else []
                    argv += ["--seed", str(seed), "--work-dir", str(work_dir), "--resume"]
                    argv += ["--threads", str(threads)] if threads else []
                    argv += ["--device", device] if device else []
                    for override in overrides:
                        argv += ["-o", override]
                    cells.append(
                        Cell(
                            name,
                            work_dir,
                            tuple(argv),
                            method_cls.name,
                            dataset,
                            protocol.id,
                            seed,
                            variant,
                            config,
                            threads,
                        )
                    )
    _refuse_twins(cells)
    return cells


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


def is_finished(cell: Cell) -> bool:
    """The cell's work dir holds a finished run of this very cell (a record naming the same
    method, data, protocol, seed, thread count and config, and a ``result.json`` that is that
    record's own, with its files: :func:`wsolbench.results.verify.verify_result`): nothing to
    submit.

    Anything else, another run or a result that fails its checks included, goes to
    ``run --resume``, whose checks decide and name what is wrong.
    """
    path = cell.work_dir / RESULT_FILENAME
    if not path.is_file():
        return False
    try:
        record = workdir.read_record(cell.work_dir)
        if record is None:
            return False
        verify_result(path, load_result(path), weights=True)
    except ValueError:  # WorkDirError, ResultError, BindingError, PerImageError
        return False
    asked = {
        "method": cell.method,
        "dataset": cell.dataset,
        "protocol": cell.protocol,
        "seed": cell.seed,
    }
    if cell.threads is not None:
        asked["threads"] = cell.threads
    same = all(record.get(key) == value for key, value in asked.items())
    config = record.get("config")
    return same and not workdir.differences({"config": config}, {"config": cell.config})
