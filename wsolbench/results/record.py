"""The Result record of a run: schema, atomic save / load, discovery.

A result (``<work_dir>/result.json``) is what ``wsolbench compare`` reads: a readable summary
(``metrics``, what made them) that names, by sha256, the per-image records beside it
(``per_image.npz``, :mod:`wsolbench.results.per_image`). Those also hold the per-threshold
sufficient statistics (``counts``), so that any threshold policy can be recomputed later without
the model; :func:`load_result` reads them back into :attr:`Result.counts` through the digest. The
layout is versioned by ``schema``; a reader refuses a schema it does not know instead of guessing.

Layout (schema 3)::

    {"schema": 3, "method": "cam", "dataset": "cub", "protocol": "cub-v1",
     "protocol_hash": "<sha256>",
     "data_fingerprint": {"sha256": "<hex>", "version": 1,
                          "splits": {"test": {"sha256": "<hex>", "n_images": 5794}, ...}},
     "seed": 0, "config": {...}, "pretrained": "<weights>" | "none",
     "metrics": {"val" | "test": {"oracle" | "select": {"maxboxacc_v2": 63.7, ...}}},
     "per_image": {"file": "per_image.npz", "sha256": "<hex>"},   # records and counts
     "weights_file": {"file": "weights.pt", "sha256": "<hex>"},   # trainable methods' export
     "cost": {...}, "env": {...}, "created": "2026-01-01T00:00:00Z"}

Metric values are percentages; a metric that does not apply to a run is absent, never 0.

A result without a records file (made by hand) stores ``"counts": {"val" | "test": <counts
record of wsolbench.metrics>}`` itself, as every schema-2 result did. Schema 1 (before data
fingerprints) is still read: its ``data_fingerprint`` is None ("unknown" to ``compare``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wsolbench.util.atomic import write_text_atomic

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 3: counts in the records file named by per_image
OLDEST_READABLE_SCHEMA = 1  # schema 1: no data_fingerprint
RESULT_FILENAME = "result.json"
# A damaged result's fix: --resume in a dir without one evaluates its weights again, untrained.
REWRITE = "delete it, then rerun its command with --resume (re-evaluates the weights, no training)"
SPLITS = ("val", "test")
METRIC_KEYS = (
    "maxboxacc_v2",
    "maxboxacc_iou30",
    "maxboxacc_iou50",
    "maxboxacc_iou70",
    "maxboxacc",
    "gt_known_loc",
    "top1_loc",
    "top5_loc",
    "top1_cls",
    "top5_cls",
    "pxap",
    "dice_fg",
    "dice_bg",
    "miou",
    "tpr",
    "fnr",
    "tnr",
    "fpr",
)
# How tables name each metric.
METRIC_NAMES = {
    "maxboxacc_v2": "MaxBoxAccV2",
    "maxboxacc_iou30": "IoU30",
    "maxboxacc_iou50": "IoU50",
    "maxboxacc_iou70": "IoU70",
    "maxboxacc": "MaxBoxAcc",
    "gt_known_loc": "GT-known",
    "top1_loc": "Top-1 Loc",
    "top5_loc": "Top-5 Loc",
    "top1_cls": "Top-1 Cls",
    "top5_cls": "Top-5 Cls",
    "pxap": "PxAP",
    "dice_fg": "Dice FG",
    "dice_bg": "Dice BG",
    "miou": "mIoU",
    # the pixel rates at mIoU's τ: TP / F, FN / F, TN / B, FP / B (wsolbench.metrics.overlap)
    "tpr": "TPR",
    "fnr": "FNR",
    "tnr": "TNR",
    "fpr": "FPR",
}

# key -> the JSON type it must have; checked on load so a hand-edited file fails naming its key.
_REQUIRED_TYPES: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "dataset": str,
    "protocol": str,
    "protocol_hash": str,
    "seed": int,
    "config": dict,
    "pretrained": str,
    "metrics": dict,
    "counts": dict,
}
_OPTIONAL_TYPES: dict[str, type | tuple[type, ...]] = {
    "data_fingerprint": dict,
    "cost": dict,
    "env": dict,
    "created": str,
    "provenance": dict,
    "per_image": dict,
    "weights_file": dict,
    "seed_independent": bool,
    "method_reference": str,
    "overrides": dict,
    "input_runs": dict,
    "evaluated_weights": str,
    "method_source": str,
    "protocol_spec": dict,
}
# Keys naming a file beside result.json by content (checked by wsolbench.results.verify).
FILE_KEYS = ("per_image", "weights_file")
# Keys left out of result.json when None (older results lack them).
_ABSENT_WHEN_NONE = (*FILE_KEYS, "data_fingerprint", "evaluated_weights", "method_source")
_ABSENT_WHEN_NONE += ("protocol_spec",)


class ResultError(ValueError):
    """A result file cannot be written, read or used; the message names the file and the fix."""


@dataclass
class Result:
    """The record of one (method, protocol, config, seed) run.

    Attributes:
        method: registered method name (``"tedloc"``).
        dataset: dataset name (``"cub"``, ``"ilsvrc"``, ``"synthetic"``).
        protocol: protocol id (``"cub-v1"``).
        protocol_hash: sha256 hex of the protocol content; ``compare`` refuses to mix hashes.
        data_fingerprint: what data the run trained and was evaluated on
            (:mod:`wsolbench.data.fingerprint`); ``compare`` refuses to mix fingerprints. None
            for a schema-1 result, which predates fingerprints.
        seed: the run's random seed.
        config: the resolved method config (JSON-able).
        pretrained: what weights were loaded (a file, a tag), or ``"none"`` (random init).
        metrics: ``metrics[split][policy][key]`` in percent, split in {val, test}, policy in
            {oracle, select}; absent keys do not apply.
        counts: ``counts[split]`` = the counts record of :mod:`wsolbench.metrics` for that split
            (written to the ``per_image`` file, or into ``result.json`` when there is none).
        cost: parameters, MACs, latency (see :mod:`wsolbench.cost.profile`).
        env: the software / hardware environment (see :func:`environment`).
        created: ISO-8601 UTC timestamp of the evaluation.
        provenance: where each pretrained part of the method came from (``{"backbone":
            "file:...", "text": "cache:ViT-B-16/openai", "teacher": "run:..."}``), as the method
            declared it; empty for a method that declares no part. ``pretrained`` sums it up.
        per_image: ``{"file": "per_image.npz", "sha256": ...}``, the run's per-image records
            beside this file (:mod:`wsolbench.results.per_image`); None for results made without
            them.
        weights_file: ``{"file": "weights.pt", "sha256": ...}``, the weights the run exported
            and evaluated (trainable methods); None for training-free methods and older results.
        overrides: the leaves of ``config`` that differ from the method's preset for the dataset
            when the run was made (``{"train.max_epochs": 14}``: what ``-o`` changed); empty for
            a run of the preset itself and for results older than this key.
        input_runs: for each part whose weights came from another finished run (a ``run:``
            teacher), what rebuilds that run on another machine
            (:func:`wsolbench.runs.rebuild.input_run`: its ``config.yaml`` record, its
            ``weights.pt`` sha256, its ``env`` and its own ``input_runs``); ``reproduce`` reruns
            it where the recorded folder is not here. Absent when no part did.
        method_source: where the method's class lives (``module:Class``): how a plugin run as
            ``--method pkg.module:Class``, registered nowhere, is found again.
        protocol_spec: the protocol's content (:meth:`wsolbench.protocol.Protocol.snapshot`):
            a result whose protocol is not shipped (``--protocol FILE``) reruns from this file.
        evaluated_weights: the sha256 of the file an ``eval`` evaluated (``reproduce`` needs
            it again); None for a run that trained or loaded its own weights.
        seed_independent: the run's numbers do not depend on its seed
            (:attr:`wsolbench.method.Capabilities.seed_independent`, weights loaded): it stands
            for every seed.
        method_reference: what the method's default computes relative to the paper it is named
            after, and which code it was checked against, as the method declares it
            (:attr:`wsolbench.method.Capabilities.reference`); tables print it under its rows.
            Empty for a method declaring none and for results older than this key.
        schema: layout version of this record.
    """

    method: str
    dataset: str
    protocol: str
    protocol_hash: str
    data_fingerprint: dict | None
    seed: int
    config: dict
    pretrained: str
    metrics: dict
    counts: dict
    cost: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    created: str = ""
    provenance: dict = field(default_factory=dict)
    per_image: dict | None = None
    weights_file: dict | None = None
    seed_independent: bool = False
    method_reference: str = ""
    overrides: dict = field(default_factory=dict)
    input_runs: dict = field(default_factory=dict)
    evaluated_weights: str | None = None
    method_source: str | None = None
    protocol_spec: dict | None = None
    schema: int = SCHEMA_VERSION

    @property
    def data_sha256(self) -> str | None:
        """The combined data fingerprint, or None when the result predates fingerprints."""
        return (self.data_fingerprint or {}).get("sha256")

    @property
    def has_pretrained(self) -> bool:
        """False for a run from random initialisation (``pretrained == "none"``)."""
        return self.pretrained.strip().lower() != "none"

    def to_dict(self) -> dict:
        """The JSON-able dict of this record, ``schema`` first."""
        d = asdict(self)
        for optional in _ABSENT_WHEN_NONE:
            if d[optional] is None:  # absent: an older result, or one made without them
                del d[optional]
        if not d["input_runs"]:
            del d["input_runs"]  # most runs load no other run's weights
        if self.per_image is not None and self.schema >= 3:
            del d["counts"]  # the records file holds them (save_records wrote them there)
        return {"schema": d.pop("schema"), **d}

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> Result:
        """Validate a parsed result and build the record.

        Args:
            d: the parsed JSON object.
            source: where ``d`` came from (a file path), named in every error.

        Raises:
            ResultError: not an object, schema missing / unsupported, a required key missing, or a
                key of the wrong type.
        """
        if not isinstance(d, dict):
            raise ResultError(f"{source}: a result must be a JSON object, got {type(d).__name__}")
        _check_schema(d, source)
        missing = [k for k in _REQUIRED_TYPES if k not in d]
        if missing:
            raise ResultError(
                f"{source}: missing key(s) {', '.join(missing)}; a schema-{SCHEMA_VERSION} result "
                f"needs {', '.join(_REQUIRED_TYPES)}; {REWRITE}"
            )
        for key, kind in {**_REQUIRED_TYPES, **_OPTIONAL_TYPES}.items():
            if key in d and not _is_type(d[key], kind):
                raise ResultError(
                    f"{source}: key {key!r} must be {_type_name(kind)}, got {d[key]!r:.60}"
                )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"text_prior"})
        if unknown:
            logger.warning("%s: ignoring unknown key(s) %s", source, ", ".join(unknown))
        values = {k: v for k, v in d.items() if k in known}
        if isinstance(d.get("text_prior"), str) and "provenance" not in d:
            values["provenance"] = {"text": d["text_prior"]}  # schema 1: TeD-Loc's own key
        return cls(**{"data_fingerprint": None, **values})


def _is_type(value: Any, kind: type | tuple[type, ...]) -> bool:
    # bool is an int subclass in Python; a seed of `true` is a typo, not a seed.
    if isinstance(value, bool) and kind is int:
        return False
    return isinstance(value, kind)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "an object", str: "a string", int: "an integer", bool: "true or false"}
    return names.get(kind, str(kind))  # type: ignore[arg-type]


def _check_schema(d: dict, source: str) -> None:
    if "schema" not in d:
        raise ResultError(
            f"{source}: no 'schema' key; this is not a wsolbench result (schema {SCHEMA_VERSION}). "
            "Point compare at work dirs or result.json files written by `wsolbench run/eval`."
        )
    schema = d["schema"]
    if not _is_type(schema, int):
        raise ResultError(f"{source}: 'schema' must be an integer, got {schema!r}")
    if schema > SCHEMA_VERSION:
        raise ResultError(
            f"{source}: result schema {schema} is newer than this wsolbench supports "
            f"({SCHEMA_VERSION}); upgrade wsolbench to read it."
        )
    if schema < OLDEST_READABLE_SCHEMA:
        raise ResultError(
            f"{source}: result schema {schema} is older than this wsolbench supports "
            f"({OLDEST_READABLE_SCHEMA}-{SCHEMA_VERSION}); re-evaluate the run (`wsolbench eval`)"
        )
    if schema >= 2 and not _is_type(d.get("data_fingerprint"), dict):
        raise ResultError(
            f"{source}: a schema-{schema} result needs 'data_fingerprint' (an object); {REWRITE}"
        )
    for key in FILE_KEYS:
        named = d.get(key)
        if named is not None and not (
            isinstance(named, dict)
            and isinstance(named.get("file"), str)
            and Path(named["file"]).name == named["file"] not in ("", ".", "..")
            and isinstance(named.get("sha256"), str)
        ):
            raise ResultError(
                f"{source}: {key!r} must be {{'file': a file name beside result.json, 'sha256': "
                f"string}}; {REWRITE}"
            )
    fingerprint = d.get("data_fingerprint")
    if isinstance(fingerprint, dict) and not (
        isinstance(fingerprint.get("sha256"), str)
        and isinstance(fingerprint.get("splits"), dict)
        and all(
            isinstance(split, dict)
            and isinstance(split.get("sha256"), str)
            and _is_type(split.get("n_images"), int)
            and split["n_images"] >= 0
            for split in fingerprint["splits"].values()
        )
    ):
        raise ResultError(
            f"{source}: 'data_fingerprint' must hold 'sha256' (a string) and 'splits' (role -> "
            f"{{'sha256': string, 'n_images': integer}}); {REWRITE}"
        )


def _json_default(obj: Any) -> Any:
    # Counters and configs may hold numpy scalars / arrays or paths; JSON gets their plain value.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


# A list of numbers as ``json.dumps(indent=2)`` writes it: one number per line.
_NUMBER_LIST = re.compile(r"\[\n\s+(-?[0-9][0-9.eE+-]*(?:,\n\s+-?[0-9][0-9.eE+-]*)*)\n\s*\]")


def readable_json(content: Any, default=None) -> str:
    """JSON indented for reading, with each list of numbers on one line: a result's counts are a
    few thousand integers, 98 % of its lines when written one per line (313 KB against 90 KB for
    a 500-image test set). Refuses NaN and infinities (``ValueError``)."""
    text = json.dumps(content, indent=2, allow_nan=False, default=default)
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\n\s+", ", ", m[1]) + "]", text) + "\n"


def save_result(path: str | Path, result: Result) -> None:
    """Write ``result`` as JSON, atomically.

    The text goes to a temporary file in the same folder, is flushed and fsync'ed, then replaces
    ``path`` with ``os.replace`` (:func:`wsolbench.util.atomic.write_text_atomic`): a reader sees
    the old file or the new one, never half of one, and a crash mid-write leaves the old file
    intact and no temporary file behind.

    Raises:
        ResultError: the record holds a value JSON cannot represent (NaN, an arbitrary object).
    """
    path = Path(path)
    if result.schema >= 2 and not isinstance(result.data_fingerprint, dict):
        raise ResultError(
            f"{path}: cannot write a schema-{result.schema} result without its data_fingerprint "
            "(wsolbench.data.fingerprint.data_fingerprint of the splits the run read)"
        )
    try:
        # Serialize first: a bad value must fail before anything touches the disk.
        text = readable_json(result.to_dict(), default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ResultError(
            f"{path}: cannot write result: {exc}; metrics must be finite numbers and the config "
            "plain JSON values (drop a metric that does not apply instead of storing NaN)"
        ) from exc
    write_text_atomic(path, text)


def load_result(path: str | Path) -> Result:
    """Read and validate one ``result.json``.

    Raises:
        ResultError: the file is missing, not JSON (with line and column), has no / an unsupported
            schema, or lacks a required key.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ResultError(f"{path}: no such result file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultError(f"{path}: cannot read result file: {exc}") from exc
    try:
        d = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg} (cut "
            f"short?); {REWRITE}"
        ) from exc
    schema = d.get("schema") if isinstance(d, dict) else None
    if _is_type(schema, int) and schema >= 3 and "counts" not in d and "per_image" in d:
        d["counts"] = _counts_beside(path, d)
    return Result.from_dict(d, source=str(path))


def _counts_beside(path: Path, d: dict) -> dict:
    """A schema-3 result's counts, read from the records file it names by sha256."""
    from wsolbench.results.per_image import PerImageError, load_counts

    named = d["per_image"]
    if not (isinstance(named, dict) and isinstance(named.get("file"), str)):
        raise ResultError(
            f"{path}: 'per_image' must be {{'file': a file name beside result.json, 'sha256': "
            f"string}}; {REWRITE}"
        )
    file = path.parent / Path(named["file"]).name
    try:
        return load_counts(file, str(named.get("sha256")))
    except PerImageError as exc:
        raise ResultError(
            f"{path}: its counts are in {file}, which cannot be used: {exc}"
        ) from None


def find_results(paths: Sequence[str | Path]) -> list[tuple[Path, Result]]:
    """Load the results named by ``paths``.

    A file is loaded as given (whatever its name); a folder is searched recursively for files named
    ``result.json``, in sorted order, except in its hidden folders: there wsolbench builds copies
    and runs before renaming them into place (``.<name>.partial``, ``.<name>.old.*``), which a
    killed command leaves behind. A file reached twice is loaded once.

    Returns:
        ``(path, result)`` pairs in the order found.

    Raises:
        ResultError: a path does not exist, a folder holds no ``result.json``, no path was given, or
            a file fails :func:`load_result`.
    """
    if not paths:
        raise ResultError("no result path given; pass work dirs or result.json files")
    found: list[tuple[Path, Result]] = []
    seen: set[Path] = set()
    for p in map(Path, paths):
        if not p.exists():
            raise ResultError(f"{p}: no such file or folder; pass work dirs or result.json files")
        every = [p] if p.is_file() else sorted(p.rglob(RESULT_FILENAME))
        files = [f for f in every if f.is_file() and not _in_hidden_folder(f, p)]
        if not files:
            hidden = [f for f in every if f.is_file()]
            why = (
                f" (only in hidden folders, which are skipped: name one to read it, e.g. "
                f"{hidden[0].parent})"
                if hidden
                else "; is the run finished (`wsolbench run` writes it at the end)?"
            )
            raise ResultError(f"{p}: no {RESULT_FILENAME} found in this folder or below{why}")
        for f in files:
            key = f.resolve()
            if key in seen:
                continue
            seen.add(key)
            found.append((f, load_result(f)))
    return found


def _in_hidden_folder(file: Path, root: Path) -> bool:
    """Whether ``file`` lies in a hidden folder below ``root`` (``root`` itself may be one)."""
    return any(part.startswith(".") for part in file.relative_to(root).parts[:-1])


def utc_now() -> str:
    """The current time as ISO-8601 UTC with a ``Z`` suffix, to the second."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
