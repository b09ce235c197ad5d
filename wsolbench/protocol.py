"""Protocol specs: load, validate and hash ``protocols/<dataset>-v<N>.yaml``.

A protocol pins everything that can move a number: dataset, splits, evaluation geometry, how maps
are resized and normalized, the threshold grid, the IoU thresholds, the metrics and the class names.
Any change to it must bump its version; its content hash (the YAML's parsed content plus the
class-name file) is recorded in every result, and ``compare`` refuses to mix hashes.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import protocols as _protocols_package
from wsolbench.util.names import unknown_name_message
from wsolbench.util.text_files import read_utf8
from wsolbench.util.yaml_errors import yaml_problem

# The shipped specs are package data of the top-level ``protocols`` package (see pyproject.toml).
PROTOCOL_DIR = Path(list(_protocols_package.__path__)[0]).resolve()

REQUIRED_KEYS = (
    "id",
    "dataset",
    "version",
    "num_classes",
    "eval_size",
    "splits",
    "threshold_step",
    "iou_thresholds",
    "localization",
)
LOCALIZATION_KINDS = ("boxes", "masks", "boxes+masks")
# How a predicted map is resized to ``eval_size`` (OpenCV INTER_CUBIC / INTER_LINEAR). bicubic is
# the reference evaluator's and the default; the histology protocols (LIVIA's) use bilinear.
MAP_RESIZE_MODES = ("bicubic", "bilinear")
DEFAULT_MAP_RESIZE = "bicubic"
DATA_PINS_KEY = "data_fingerprint"  # optional: {split role: sha256 of its official data}


class ProtocolError(ValueError):
    """A protocol file is missing, malformed or inconsistent; the message names the file and fix."""


@dataclass(frozen=True)
class Protocol:
    """One versioned evaluation protocol (``protocols/*.yaml`` explains each field)."""

    id: str
    dataset: str
    version: int
    num_classes: int
    eval_size: tuple[int, int]  # (H, W): images are resized to it, maps are resized to it
    splits: dict[str, str]  # role (train / val / test) -> metadata folder name
    selection_split: (
        str | None
    )  # the split that chooses thresholds ("select" policy); None if absent
    threshold_step: float
    iou_thresholds: tuple[int, ...]
    localization: str  # "boxes", "masks" or "boxes+masks"
    map_resize: str  # how maps reach eval_size: one of MAP_RESIZE_MODES
    checkpoint: str  # "last" or "best" (on the selection split)
    classnames: tuple[str, ...]
    source: Path
    hash: str  # sha256 hex of the canonical content
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # dataset-specific keys (e.g. the generator)
    # split role -> sha256 the data of that split must have (wsolbench.data.fingerprint); not
    # part of ``hash``: a pin checks the data, it does not change how anything is scored.
    data_pins: dict[str, str] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict, repr=False)  # the parsed YAML

    def snapshot(self) -> dict:
        """Everything :func:`protocol_from_snapshot` needs to rebuild this protocol anywhere:
        the parsed YAML and the class names (a work dir keeps it, so a ``--protocol FILE`` run
        can be rebuilt after the file has moved)."""
        return {"content": self.content, "classnames": list(self.classnames)}

    @property
    def short_hash(self) -> str:
        return self.hash[:12]

    @property
    def has_boxes(self) -> bool:
        return "boxes" in self.localization

    @property
    def has_masks(self) -> bool:
        return "masks" in self.localization

    @property
    def eval_splits(self) -> list[str]:
        """The splits that get evaluated, selection split first."""
        return [s for s in ("val", "test") if s in self.splits]


def list_protocols() -> list[str]:
    """Ids of the protocols shipped in ``protocols/``."""
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.yaml"))


def default_protocol_id(dataset: str) -> str:
    """The newest shipped protocol of a dataset (``cub`` → ``cub-v1``)."""
    versions = [p for p in list_protocols() if p.rsplit("-v", 1)[0] == dataset]
    if not versions:
        raise ProtocolError(
            f"no protocol for dataset {dataset!r} in {PROTOCOL_DIR}; pass --protocol FILE "
            f"(shipped: {', '.join(list_protocols())})"
        )
    return max(versions, key=lambda p: int(p.rsplit("-v", 1)[1]))


def _canonical_hash(content: dict, classnames: tuple[str, ...]) -> str:
    hashed = {k: v for k, v in content.items() if k != DATA_PINS_KEY}
    # map_resize came after the first protocols: spelling out its default must not change their
    # hash (the same protocol, the same numbers), so the default is hashed as if absent.
    if hashed.get("map_resize") == DEFAULT_MAP_RESIZE:
        del hashed["map_resize"]
    payload = json.dumps({"protocol": hashed, "classnames": list(classnames)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_protocol(id_or_path: str | Path) -> Protocol:
    """Load a shipped protocol by id (``cub-v1``) or any protocol YAML file by path."""
    path = Path(id_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PROTOCOL_DIR / f"{id_or_path}.yaml"
        if not path.is_file():
            raise ProtocolError(
                f"unknown protocol {str(id_or_path)!r} (shipped: {', '.join(list_protocols())}); "
                "pass a shipped id or the path of a protocol YAML file"
            )
    if not path.is_file():
        raise ProtocolError(f"protocol file {path} does not exist")
    try:
        content = yaml.safe_load(read_utf8(path))
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{path}: not valid YAML, {yaml_problem(exc)}") from None
    except OSError as exc:
        raise ProtocolError(f"{path}: cannot read the protocol file: {exc}") from None
    if not isinstance(content, dict):
        raise ProtocolError(f"{path}: expected a mapping of protocol keys at the top level")
    return _from_content(content, path.resolve())


def protocol_from_snapshot(snapshot: dict, source: str | Path) -> Protocol:
    """Rebuild a protocol from :meth:`Protocol.snapshot` (same hash as the original).

    Args:
        snapshot: ``{"content": <parsed YAML>, "classnames": [...]}``.
        source: where the snapshot was read from (named in errors and kept as ``source``).
    """
    if not isinstance(snapshot, dict) or not isinstance(snapshot.get("content"), dict):
        raise ProtocolError(f"{source}: the stored protocol is not a mapping with 'content'")
    names = snapshot.get("classnames") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ProtocolError(f"{source}: the stored protocol's classnames must be a list of names")
    return _from_content(snapshot["content"], Path(source), classnames=tuple(names))


def write_protocol_file(protocol: Protocol, folder: str | Path) -> Path:
    """Write ``protocol`` as a YAML file (and its class-name file) under ``folder``, so that
    ``load_protocol`` of the returned path gives the same protocol, hash included: how another
    ``wsolbench run`` gets a protocol known only from a record."""
    from wsolbench.util.atomic import write_text_atomic

    folder = Path(folder)
    relative = protocol.content.get("classnames")
    if relative:
        names = folder / relative
        if Path(relative).is_absolute() or folder.resolve() not in names.resolve().parents:
            raise ProtocolError(
                f"protocol {protocol.id}: its class-name file {relative!r} is not a path under "
                "the protocol file's folder; write the protocol to a file yourself"
            )
        names.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(names, "".join(f"{name}\n" for name in protocol.classnames))
    path = folder / f"{protocol.id}.yaml"
    write_text_atomic(path, yaml.safe_dump(protocol.content, sort_keys=False))
    return path


# Optional keys, with what they hold; any other key is refused (a misspelt one would be ignored).
OPTIONAL_KEYS = {
    "selection_split": "the split that chooses thresholds (default val)",
    "checkpoint": "last or best",
    "classnames": "a class-name file, one name per line, relative to the protocol file",
    "description": "text",
    "map_class": "ground_truth (the only map the protocol scores)",
    "map_resize": f"how maps are resized to eval_size: {' or '.join(MAP_RESIZE_MODES)} "
    f"(default {DEFAULT_MAP_RESIZE})",
    "generator": "the synthetic generator's settings (synthetic protocols)",
    DATA_PINS_KEY: "{split role: sha256} of the official data",
}
MAX_EVAL_SIDE = 4096
#: the finest threshold step: 10,000 thresholds (the protocols use 0.001 to 0.01); each image's
#: records hold a bit per threshold and IoU, so a step of 1e-9 only runs out of memory
MIN_THRESHOLD_STEP = 1e-4
# A protocol id names the folder of its runs (work_dirs/<id>/<method>/seed<N>): a plain name, never
# a path that would lead out of work_dirs/ ("../..", "/abs", "a/b").
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _from_content(content: dict, path: Path, classnames: tuple[str, ...] | None = None) -> Protocol:
    """Validate parsed protocol content (``path`` is named in every error) and build it.

    Every key is type-checked (a wrong type is an error naming the key, never a silent
    conversion), unknown keys are refused with close matches, and a protocol that takes the id
    of a shipped one must be that protocol.

    ``classnames`` None: read the class-name file the content names, relative to ``path``.
    """
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise ProtocolError(
            f"{path}: missing key(s) {', '.join(missing)}; see protocols/cub-v1.yaml"
        )
    unknown = sorted(set(map(str, content)) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        known = [*REQUIRED_KEYS, *OPTIONAL_KEYS]
        raise ProtocolError(f"{path}: {unknown_name_message('protocol key', unknown[0], known)}")

    def bad(key: str, expected: str) -> ProtocolError:
        return ProtocolError(f"{path}: {key} must be {expected}, not {content.get(key)!r}")

    if not isinstance(content["id"], str) or not ID_PATTERN.fullmatch(content["id"]):
        raise bad(
            "id",
            "a plain name of letters, digits, '.', '_' and '-' starting with a letter or digit "
            "(at most 128 characters: it names the folder of its runs)",
        )
    if not isinstance(content["dataset"], str) or not content["dataset"].strip():
        raise bad("dataset", "a non-empty name")
    if not _is_int(content["version"]) or content["version"] < 1:
        raise bad("version", "an integer >= 1")
    num_classes = content["num_classes"]
    if not _is_int(num_classes) or not 1 <= num_classes <= 1_000_000:
        raise bad("num_classes", "an integer >= 1")
    size = content["eval_size"]
    if not (
        isinstance(size, list)
        and len(size) == 2
        and all(_is_int(v) and 8 <= v <= MAX_EVAL_SIDE for v in size)
    ):
        raise bad("eval_size", f"[H, W], integers in [8, {MAX_EVAL_SIDE}]")
    step = content["threshold_step"]
    if (
        isinstance(step, bool)
        or not isinstance(step, (int, float))
        or not MIN_THRESHOLD_STEP <= step < 1
    ):
        raise bad("threshold_step", f"a number in [{MIN_THRESHOLD_STEP:g}, 1)")
    ious = content["iou_thresholds"]
    if not (
        isinstance(ious, list)
        and ious
        and all(_is_int(t) and 0 < t <= 100 for t in ious)
        and len(set(ious)) == len(ious)
    ):
        raise bad("iou_thresholds", "a list of distinct integer percentages in (0, 100]")
    splits = content["splits"]
    if not (
        isinstance(splits, dict)
        and splits
        and all(isinstance(k, str) and isinstance(v, str) and v for k, v in splits.items())
    ):
        raise bad("splits", "a mapping of split roles to metadata folder names")
    if content["localization"] not in LOCALIZATION_KINDS:
        raise bad("localization", f"one of {', '.join(LOCALIZATION_KINDS)}")
    selection = content.get("selection_split", "val" if "val" in splits else None)
    if selection is not None and (not isinstance(selection, str) or selection not in splits):
        raise bad("selection_split", f"one of the splits ({', '.join(splits)})")
    checkpoint = content.get("checkpoint", "last")
    if checkpoint not in ("last", "best"):
        raise bad("checkpoint", "last or best")
    if content.get("map_class", "ground_truth") != "ground_truth":
        raise bad("map_class", "ground_truth (the protocol scores the ground-truth class's map)")
    map_resize = content.get("map_resize", DEFAULT_MAP_RESIZE)
    if map_resize not in MAP_RESIZE_MODES:
        raise bad("map_resize", " or ".join(MAP_RESIZE_MODES))
    for key in ("description", "classnames"):
        if key in content and not isinstance(content[key], str):
            raise bad(key, OPTIONAL_KEYS[key])
    if "generator" in content and not isinstance(content["generator"], dict):
        raise bad("generator", "a mapping of generator settings")
    pins = content.get(DATA_PINS_KEY) or {}
    if not isinstance(pins, dict) or not all(
        role in splits and isinstance(sha, str) and len(sha) == 64 for role, sha in pins.items()
    ):
        raise ProtocolError(
            f"{path}: {DATA_PINS_KEY} must map split roles ({', '.join(splits)}) to sha256 hex "
            "fingerprints (`wsolbench fingerprint --dataset NAME --data-root DIR --protocol FILE` "
            "prints them)"
        )
    if classnames is None:
        classnames = _read_classnames(path, content)
    if classnames and len(classnames) != num_classes:
        raise ProtocolError(
            f"{path}: num_classes is {num_classes} but the class-name file has "
            f"{len(classnames)} names"
        )
    protocol = Protocol(
        id=content["id"],
        dataset=content["dataset"],
        version=content["version"],
        num_classes=num_classes,
        eval_size=(size[0], size[1]),
        splits=dict(splits),
        selection_split=selection,
        threshold_step=float(step),
        iou_thresholds=tuple(ious),
        localization=content["localization"],
        map_resize=map_resize,
        checkpoint=checkpoint,
        classnames=classnames,
        source=path,
        hash=_canonical_hash(content, classnames),
        extra={k: v for k, v in content.items() if k == "generator"},
        data_pins=dict(pins),
        content=content,
    )
    _check_shipped_id(protocol)
    return protocol


def _check_shipped_id(protocol: Protocol) -> None:
    """A protocol may carry a shipped protocol's id only if it is that protocol, pins included
    (pins are not in the hash, so a copy without them would otherwise pass for the original)."""
    shipped = PROTOCOL_DIR / f"{protocol.id}.yaml"
    if not shipped.is_file() or protocol.source == shipped.resolve():
        return
    original = load_protocol(shipped)
    if (original.content, original.classnames) != (protocol.content, protocol.classnames):
        raise ProtocolError(
            f"{protocol.source} takes the id {protocol.id!r} of a shipped protocol but differs "
            f"from protocols/{protocol.id}.yaml; give it an id of its own (e.g. "
            f"{protocol.id}-mine)"
        )


def _read_classnames(path: Path, content: dict) -> tuple[str, ...]:
    relative = content.get("classnames")
    if not relative:
        return ()
    names_path = (path.parent / relative).resolve()
    if not names_path.is_file():
        raise ProtocolError(f"{path}: class-name file {names_path} does not exist")
    names = tuple(line.strip() for line in read_utf8(names_path).splitlines() if line.strip())
    return names


def protocol_for_dataset(dataset: str, protocol: str | None = None) -> Protocol:
    """The protocol to run under (an id or a YAML file; None: the dataset's newest shipped one),
    checked to belong to ``dataset``."""
    loaded = load_protocol(protocol or default_protocol_id(dataset))
    if loaded.dataset != dataset:
        raise ProtocolError(
            f"protocol {loaded.id} is for dataset {loaded.dataset!r}, not {dataset!r}; "
            f"drop --protocol or pick a {dataset} protocol"
        )
    return loaded
