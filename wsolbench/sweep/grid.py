"""A sweep's grid: what to run (methods, datasets, protocol, seeds, overrides, named variants,
where), read from a GRID.yaml and/or the command line.

Only its shape is checked here (keys, types, seeds, variant names); whether the names exist is
checked when the grid is expanded into cells (:mod:`wsolbench.sweep.cells`), still before any
cell starts.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from wsolbench.util.names import NAME_PATTERN
from wsolbench.util.text_files import read_utf8
from wsolbench.util.user_paths import expand_user_path
from wsolbench.util.yaml_errors import yaml_problem

SEED_MAX = 2**32 - 1  # numpy's and torch's seeding take 0 <= seed < 2**32
DEFAULT_ROOT = Path("work_dirs") / "sweeps"
_RANGE = re.compile(r"^(\d+)-(\d+)$")


class SweepError(ValueError):
    """A grid that cannot run as given; the message names the key, the value and the fix."""


@dataclass
class Grid:
    """Every cell of a sweep is one (method, dataset, variant, seed) of these lists."""

    name: str
    methods: list[str]
    datasets: list[str]
    seeds: list[int]
    protocol: str | None = None  # id or YAML file; None: each dataset's newest shipped one
    overrides: list[str] = field(default_factory=list)  # ``-o`` of every cell
    # named ablations: each adds its overrides to the common ones; {}: one unnamed variant
    variants: dict[str, list[str]] = field(default_factory=dict)
    root: str | None = None  # None: work_dirs/sweeps/<name>
    data_root: str | None = None  # ``--data-root`` of every cell
    # ``run --summed-pxap`` in every cell: PxAP histograms summed over images only (exact PxAP,
    # smaller records, no per-image PxAP interval); no metric changes, so no cell's identity
    summed_pxap: bool = False

    @property
    def root_dir(self) -> Path:
        return Path(self.root) if self.root else DEFAULT_ROOT / self.name

    def as_dict(self) -> dict:
        return asdict(self)


KEYS = (
    "name",
    "methods",
    "datasets",
    "protocol",
    "seeds",
    "overrides",
    "variants",
    "root",
    "data_root",
    "summed_pxap",
)


def parse_seeds(value: object, where: str = "seeds") -> list[int]:
    """Seeds from ``0-4`` (inclusive), ``0 1 2``, ``0,1,2``, a list of these, or one integer;
    sorted, without repeats."""
    items = value if isinstance(value, list | tuple) else [value]
    seeds: set[int] = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise SweepError(f"{where}: {item!r} is not a seed; write 0-4 or 0 1 2")
        for word in str(item).replace(",", " ").split():
            seeds.update(_seed_word(word, where))
    if not seeds:
        raise SweepError(f"{where}: no seeds given; write 0-4 or 0 1 2")
    return sorted(seeds)


def _seed_word(word: str, where: str) -> range:
    match = _RANGE.match(word)
    low, high = (int(match[1]), int(match[2])) if match else (None, None)
    if match is None and word.isdigit():
        low = high = int(word)
    if low is None or low > high or high > SEED_MAX:
        raise SweepError(
            f"{where}: {word!r} is not a seed or a range of seeds; write 0-4 (inclusive, low "
            f"first) or 0 1 2, each 0 to {SEED_MAX}"
        )
    return range(low, high + 1)


def read_grid_file(path: Path) -> dict:
    """A GRID.yaml's keys (a mapping of :data:`KEYS`); its ``name`` defaults to the file's stem."""
    try:
        content = yaml.safe_load(read_utf8(path))
    except OSError as exc:
        raise SweepError(f"grid file {path}: {exc.strerror}; check the path") from None
    except yaml.YAMLError as exc:
        raise SweepError(
            f"grid file {path} is not valid YAML ({yaml_problem(exc)}); fix the file"
        ) from None
    if not isinstance(content, dict):
        raise SweepError(f"grid file {path} must be a mapping of {', '.join(KEYS)}")
    unknown = sorted(set(content) - set(KEYS))
    if unknown:
        raise SweepError(
            f"grid file {path}: unknown key {unknown[0]!r}; the keys are {', '.join(KEYS)}"
        )
    return {"name": Path(path).stem, **content}


def build_grid(values: dict, extra_overrides: list[str] = ()) -> Grid:
    """A :class:`Grid` from a file's keys merged with the command line's (given ones win; its
    ``-o`` overrides, ``extra_overrides``, come after the file's), every key's type and shape
    checked; one text stands for a list of one wherever a list is asked for."""
    name = values.get("name") or "sweep"
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise SweepError(f"name: {name!r} is not a plain name; use letters, digits, '_', '-', '.'")
    variants = values.get("variants") or {}
    if not isinstance(variants, dict):
        raise SweepError("variants: write a mapping of a name to its overrides, {name: [k=v]}")
    for variant in variants:
        if not isinstance(variant, str) or not NAME_PATTERN.match(variant):
            raise SweepError(
                f"variants: {variant!r} is not a plain name (it names work dirs); use lowercase "
                "letters, digits and '_', starting with a letter"
            )
    overrides = _strings(values.get("overrides") or [], "overrides", allow_empty=True)
    return Grid(
        name=name,
        methods=_strings(values.get("methods"), "methods"),
        datasets=_strings(values.get("datasets"), "datasets"),
        seeds=parse_seeds(values.get("seeds", [0])),
        protocol=_optional_text(values.get("protocol"), "protocol"),
        overrides=[*overrides, *extra_overrides],
        variants={
            name: _strings(v or [], f"variants.{name}", allow_empty=True)
            for name, v in variants.items()
        },
        root=_optional_text(values.get("root"), "root"),
        data_root=_optional_text(values.get("data_root"), "data_root"),
        summed_pxap=_flag(values.get("summed_pxap", False), "summed_pxap"),
    )


def _strings(value: object, key: str, allow_empty: bool = False) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if value is None or not isinstance(items, list | tuple) or (not items and not allow_empty):
        raise SweepError(f"{key}: give a list of names (YAML list, or --{key} A B)")
    if not all(isinstance(item, str) and item for item in items):
        raise SweepError(f"{key}: every entry must be text, got {list(items)!r}")
    return list(items)


def _flag(value: object, key: str) -> bool:
    if not isinstance(value, bool):  # YAML's `yes`/`no` are booleans already; "true" is text
        raise SweepError(f"{key}: {value!r} is not true or false; write {key}: true (or false)")
    return value


def _optional_text(value: object, key: str) -> str | None:
    """A path (or protocol id) key's text, read as the command line reads a path
    (:func:`~wsolbench.util.user_paths.expand_user_path`: a leading ``~`` the home folder)."""
    if value is None:
        return None
    if not isinstance(value, str | Path):
        raise SweepError(f"{key}: {value!r} is not a path or an id; write it as text")
    try:
        return expand_user_path(str(value))
    except ValueError:
        raise SweepError(f"{key}: empty; give a path or an id, or leave {key} out") from None
