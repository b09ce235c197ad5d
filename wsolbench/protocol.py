"""Protocol specs: load, validate and hash ``protocols/<dataset>-v<N>.yaml``.

A protocol pins everything that can move a number: dataset, splits, evaluation geometry, how maps
are resized and normalized, the threshold grid, the IoU thresholds, the metrics and the class names.
Any change to it must bump its version; its content hash (the YAML's parsed content plus the
class-name file) is recorded in every result, and ``compare`` refuses to mix hashes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import protocols as _protocols_package

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
    checkpoint: str  # "last" or "best" (on the selection split)
    classnames: tuple[str, ...]
    source: Path
    hash: str  # sha256 hex of the canonical content
    extra: dict[str, Any] = field(
        default_factory=dict
    )  # dataset-specific keys (e.g. the generator)

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
    payload = json.dumps({"protocol": content, "classnames": list(classnames)}, sort_keys=True)
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
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(content, dict):
        raise ProtocolError(f"{path}: expected a mapping of protocol keys at the top level")
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise ProtocolError(
            f"{path}: missing key(s) {', '.join(missing)}; see protocols/cub-v1.yaml"
        )
    if content["localization"] not in LOCALIZATION_KINDS:
        raise ProtocolError(
            f"{path}: localization must be one of {', '.join(LOCALIZATION_KINDS)}, "
            f"not {content['localization']!r}"
        )
    step = float(content["threshold_step"])
    if not 0 < step < 1:
        raise ProtocolError(f"{path}: threshold_step must be in (0, 1), not {step}")
    classnames = _read_classnames(path, content)
    if classnames and len(classnames) != int(content["num_classes"]):
        raise ProtocolError(
            f"{path}: num_classes is {content['num_classes']} but the class-name file has "
            f"{len(classnames)} names"
        )
    known = set(REQUIRED_KEYS) | {"selection_split", "checkpoint", "classnames", "description"}
    selection = content.get("selection_split", "val" if "val" in content["splits"] else None)
    if selection is not None and selection not in content["splits"]:
        raise ProtocolError(f"{path}: selection_split {selection!r} is not one of the splits")
    checkpoint = content.get("checkpoint", "last")
    if checkpoint not in ("last", "best"):
        raise ProtocolError(f"{path}: checkpoint must be 'last' or 'best', not {checkpoint!r}")
    height, width = (int(v) for v in content["eval_size"])
    return Protocol(
        id=str(content["id"]),
        dataset=str(content["dataset"]),
        version=int(content["version"]),
        num_classes=int(content["num_classes"]),
        eval_size=(height, width),
        splits={str(k): str(v) for k, v in content["splits"].items()},
        selection_split=selection,
        threshold_step=step,
        iou_thresholds=tuple(int(t) for t in content["iou_thresholds"]),
        localization=content["localization"],
        checkpoint=checkpoint,
        classnames=classnames,
        source=path.resolve(),
        hash=_canonical_hash(content, classnames),
        extra={k: v for k, v in content.items() if k not in known},
    )


def _read_classnames(path: Path, content: dict) -> tuple[str, ...]:
    relative = content.get("classnames")
    if not relative:
        return ()
    names_path = (path.parent / relative).resolve()
    if not names_path.is_file():
        raise ProtocolError(f"{path}: class-name file {names_path} does not exist")
    names = tuple(
        line.strip() for line in names_path.read_text(encoding="utf-8").splitlines() if line.strip()
    )
    return names
