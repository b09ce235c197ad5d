"""Rebuild a method from a run folder: the one place that does it.

``eval``, ``visualize``, ``run --resume --profile`` (cost of a finished run), TeD-Loc's ``run:``
teacher and its diagnose tool all rebuild a finished run's method here, so they agree on:

- **what the run was**: its record (``config.yaml``: method, config, seed, and the protocol itself,
  so a ``--protocol FILE`` run is rebuilt with that protocol even after the file moved); a folder
  holding only ``result.json`` falls back to the shipped protocol of that id;
- **pretrained loading off** whenever the run's own weights replace it (trainable methods) or no
  weights are wanted (cost): a rebuild never reads the original machine's weight caches;
- **checked weights**: the exported ``weights.pt`` is loaded only if it is the file the run's
  result names by sha256 (:mod:`wsolbench.results.verify`), and it (or the newest training
  checkpoint) only after its keys and shapes are checked against the method as configured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wsolbench.config import without_pretrained
from wsolbench.method import WSOLMethod, build_method
from wsolbench.protocol import Protocol, load_protocol, protocol_from_snapshot
from wsolbench.registry import get_method
from wsolbench.results.record import RESULT_FILENAME, Result, ResultError, load_result
from wsolbench.results.verify import verify_result
from wsolbench.results.workdir import RECORD_FILE, WEIGHTS_FILE, read_record

logger = logging.getLogger(__name__)

WEIGHT_SOURCES = ("exported", "checkpoint", "none")


@dataclass
class LoadedRun:
    """A run rebuilt from its folder.

    Attributes:
        work_dir: the run folder.
        record: what the run is (``method``, ``dataset``, ``protocol``, ``protocol_hash``,
            ``seed``, ``config``, ...).
        result: its ``result.json``, or None for an unfinished run.
        method: the rebuilt method, in eval mode.
        protocol: the protocol the run was made under.
    """

    work_dir: Path
    record: dict
    result: Result | None
    method: WSOLMethod
    protocol: Protocol


def build_with_weights(
    method_cls: type[WSOLMethod],
    config: dict,
    protocol: Protocol,
    seed: int,
    weights: Path | None,
    keep: tuple[str, ...] = (),
) -> WSOLMethod:
    """Build a method with pretrained loading off and, if given, load a weights file into it.

    Args:
        weights: a plain state dict file (``weights.pt``); its keys and shapes are checked
            against the method as configured before loading. None: random initialisation.
        keep: pretrained keys left as ``config`` has them (:func:`load_run`).
    """
    method = build_method(
        method_cls,
        without_pretrained(method_cls, config, keep),
        protocol.num_classes,
        seed,
        classnames=protocol.classnames,
    )
    if weights is not None:
        from wsolbench.train.weights import load_weights_file

        load_weights_file(method, Path(weights))
    return method


def run_record(work_dir: Path) -> tuple[dict, Result | None]:
    """The record of a run folder and its result (None if unfinished).

    Raises:
        ResultError: the folder holds neither a record nor a result.
    """
    work_dir = Path(work_dir)
    result_path = work_dir / RESULT_FILENAME
    result = load_result(result_path) if result_path.is_file() else None
    record = read_record(work_dir)
    if record is None:
        if result is None:
            raise ResultError(
                f"{work_dir} is not a run folder: it holds neither {RECORD_FILE} nor "
                f"{RESULT_FILENAME}; pass the --work-dir of a `wsolbench run`"
            )
        record = {
            key: getattr(result, key)
            for key in ("method", "dataset", "protocol", "protocol_hash", "seed", "config")
        }
    return record, result


def input_run(loaded: LoadedRun) -> dict:
    """What rebuilds a finished run whose weights another run loads (a ``run:`` teacher), as that
    run's result embeds it (``input_runs``): ``record`` (its ``config.yaml``: method and where
    its class lives, dataset, protocol with its copy, data, seed, threads, config),
    ``weights_sha256`` (its ``weights.pt``), ``env`` (its result's: device, evaluation batch,
    code), ``provenance`` and its own ``input_runs``.

    Args:
        loaded: the run, rebuilt by :func:`load_run` with its exported weights (which checked
            ``weights.pt`` against the sha256 its result names, when it names one).
    """
    from wsolbench.util.weights_source import file_sha256

    result = loaded.result
    named = (result.weights_file or {}).get("sha256") if result is not None else None
    return {
        "record": loaded.record,
        "weights_sha256": named or file_sha256(loaded.work_dir / WEIGHTS_FILE),
        "env": result.env if result is not None else {},
        "provenance": result.provenance if result is not None else {},
        "input_runs": result.input_runs if result is not None else {},
    }


def run_protocol(work_dir: Path, record: dict) -> Protocol:
    """The protocol a run was made under: its stored copy, else the shipped one of that id."""
    snapshot = record.get("protocol_spec")
    if snapshot is not None:
        return protocol_from_snapshot(snapshot, Path(work_dir) / RECORD_FILE)
    protocol = load_protocol(record["protocol"])
    if protocol.hash != record["protocol_hash"]:
        logger.warning(
            "%s: protocol %s has changed since the run (hash %s, now %s); using the current one",
            work_dir,
            record["protocol"],
            record["protocol_hash"][:12],
            protocol.hash[:12],
        )
    return protocol


def method_class(record: dict) -> type[WSOLMethod]:
    """The run's method class: by its registered name, else where the record says it lives
    (a method run as ``--method pkg.module:Class`` is registered only once that is imported)."""
    try:
        return get_method(record["method"])
    except KeyError:
        if "method_source" not in record:
            raise
        return get_method(record["method_source"])


def load_run(
    work_dir: str | Path, *, weights: str = "exported", keep: tuple[str, ...] = ()
) -> LoadedRun:
    """Rebuild a run's method from its folder.

    Args:
        work_dir: the run folder (``--work-dir`` of ``wsolbench run`` or ``eval``).
        weights: ``"exported"``: a trainable method gets the run's ``weights.pt`` (pretrained
            loading off); a training-free one is built as the run built it. ``"checkpoint"``:
            the newest training checkpoint, training-only state included (a teacher, an EMA).
            ``"none"``: pretrained loading off and no weights (enough for cost).
        keep: pretrained keys (``Capabilities.pretrained_options``) left as the run had them,
            for a training-only part no weights file holds (TeD-Loc's diagnosis keeps
            ``teacher``: the teacher run it learnt from).

    Raises:
        ResultError / WorkDirError: not a run folder. CheckpointError: a missing, unreadable or
        ill-fitting weights file. KeyError: the method is not installed here.
    """
    from wsolbench.train.checkpoints import CheckpointError, latest_checkpoint
    from wsolbench.train.weights import load_training_state

    if weights not in WEIGHT_SOURCES:
        raise ValueError(f"weights={weights!r}: use one of {', '.join(WEIGHT_SOURCES)}")
    work_dir = Path(work_dir)
    record, result = run_record(work_dir)
    protocol = run_protocol(work_dir, record)
    method_cls = method_class(record)
    seed = int(record["seed"])
    if weights == "exported" and not method_cls.capabilities.trainable:
        method = build_method(
            method_cls, record["config"], protocol.num_classes, seed, protocol.classnames
        )
    elif weights == "exported":
        file = work_dir / WEIGHTS_FILE
        if not file.is_file():
            raise CheckpointError(
                f"{file} does not exist: {work_dir} holds no exported weights (is the run "
                "finished? `wsolbench run ... --resume` finishes it)"
            )
        if result is not None:  # a finished run's weights are the ones its result names
            verify_result(work_dir / RESULT_FILENAME, result, weights=True)
        method = build_with_weights(method_cls, record["config"], protocol, seed, file, keep)
    else:
        method = build_with_weights(method_cls, record["config"], protocol, seed, None, keep)
        if weights == "checkpoint":
            checkpoint = latest_checkpoint(work_dir)
            if checkpoint is None:
                raise CheckpointError(f"{work_dir}: no training checkpoint in train/")
            load_training_state(method, checkpoint)
    return LoadedRun(work_dir, record, result, method.eval(), protocol)
