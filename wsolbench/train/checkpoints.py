"""This project's training checkpoints: found in a work dir, checked, and loaded trusting only them.

Checkpoints live in ``<work_dir>/train/`` (``epoch_N.pth``, ``last_checkpoint``), each written
atomically (:mod:`wsolbench.train.engine`) and stamped with the identity of the run that wrote it
(method, protocol, data, seed, config: :func:`wsolbench.results.workdir.identity`), so that
``--resume`` continues only the run's own checkpoints, never ones copied in from another run.
Resuming them on torch ≥ 2.6 needs care: mmengine calls ``torch.load`` with the new
``weights_only=True`` default, and its checkpoints hold a few plain Python objects (the message
hub's ``HistoryBuffer``, numpy arrays and scalars). :func:`trusted_checkpoint_loading` allows
exactly those, only while loading this run's own checkpoints, and refuses a checkpoint that holds
anything else — the safety is never disabled process-wide.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from wsolbench.results.workdir import TRAIN_SUBDIR, checkpoints, differences

logger = logging.getLogger(__name__)

# Where a checkpoint keeps the method's tensors: the Runner's model adapter
# (wsolbench.train.engine.MethodModel) holds the method as ``self.method``.
CHECKPOINT_PREFIX = "method."

# Python objects an mmengine checkpoint of this project holds besides tensors (see module doc).
CHECKPOINT_GLOBALS = (
    "mmengine.logging.history_buffer.HistoryBuffer",
    "builtins.getattr",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
)


# The key under which a checkpoint carries its run's identity, as canonical JSON text (a string
# survives ``weights_only`` loading and compares exactly).
IDENTITY_KEY = "wsolbench_run"
# the code that trained each epoch of a checkpoint, as JSON text (wsolbench.train.stamps)
TRAINING_CODE_KEY = "wsolbench_training_code"


class CheckpointError(ValueError):
    """A checkpoint or weights file cannot be used; the message names it and says why."""


def _resolve_global(name: str):
    module, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return None  # e.g. numpy.core.* names on numpy 2, numpy._core.* on numpy 1


@contextlib.contextmanager
def trusted_checkpoint_loading() -> Iterator[None]:
    """Let ``torch.load(weights_only=True)`` read this project's own mmengine checkpoints.

    Allows only the globals listed in ``CHECKPOINT_GLOBALS`` plus numpy's dtype classes, only
    inside the ``with`` block.
    """
    allowed = [g for g in map(_resolve_global, CHECKPOINT_GLOBALS) if g is not None]
    allowed += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    with torch.serialization.safe_globals(allowed):
        yield


def latest_checkpoint(work_dir: Path) -> Path | None:
    """The newest checkpoint of this work dir's own ``train/`` folder, or None before the first.

    Found by epoch number in the dir itself, not through mmengine's ``last_checkpoint`` pointer,
    which holds an absolute path (in a copied or moved work dir, the original's file).
    """
    found = checkpoints(work_dir, "epoch_")
    return found[0] if found else None


def identity_text(identity: dict) -> str:
    """A run identity as the canonical JSON text a checkpoint carries under ``IDENTITY_KEY``."""
    return json.dumps(identity, sort_keys=True, default=str)


def checkpoint_identity(path: Path) -> dict | None:
    """The run identity a checkpoint carries, or None for one written without it."""
    return _json_entry(path, IDENTITY_KEY)


def checkpoint_training_code(path: Path) -> list[dict]:
    """``[{"start_epoch", "code"}, ...]``: the code that trained a checkpoint's epochs, each
    entry from its 0-based ``start_epoch`` on; ``code`` None where it was not recorded (a
    checkpoint of an older wsolbench: :func:`unrecorded_training_code`)."""
    return _json_entry(path, TRAINING_CODE_KEY) or unrecorded_training_code()


def unrecorded_training_code() -> list[dict]:
    """What a checkpoint without a training-code stamp says: written by a wsolbench too old to
    record the code of its epochs."""
    return [{"start_epoch": 0, "code": None}]


def _json_entry(path: Path, key: str):
    """A JSON text entry of a checkpoint, parsed (memory-mapped: the tensors are not read)."""
    with trusted_checkpoint_loading():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    text = checkpoint.get(key) if isinstance(checkpoint, dict) else None
    return json.loads(text) if isinstance(text, str) else None


def resume_checkpoint(work_dir: Path, identity: dict) -> Path | None:
    """The checkpoint ``--resume`` continues from: the newest readable one, or None if none yet.

    An unreadable newest checkpoint (a disk error; a crash mid-write cannot leave one, since
    checkpoints are written atomically) is skipped with a warning and the previous one is used;
    training then redoes the epochs after it.

    Args:
        identity: this run's (:func:`wsolbench.results.workdir.identity`); a checkpoint that
            carries another is refused.

    Raises:
        CheckpointError: a checkpoint belongs to another run (every difference named), or
            checkpoints exist but none is readable; the message says how to start over.
    """
    folder = Path(work_dir) / TRAIN_SUBDIR
    found = checkpoints(work_dir, "epoch_")
    problems = []
    for path in found:
        try:
            check_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        stored = checkpoint_identity(path)
        wanted = json.loads(identity_text(identity))
        if stored != wanted:
            shown = (
                "; ".join(differences(stored, wanted, "in the checkpoint")[:4])
                if stored
                else "it carries no run identity: another tool's, or an older wsolbench's"
            )
            raise CheckpointError(
                f"--resume: {path} is not this run's checkpoint ({shown}); restore this run's "
                f"{TRAIN_SUBDIR}/, or delete {folder} to train it from the start"
            )
        for problem in problems:
            logger.warning("%s; resuming from %s instead", problem, path.name)
        return path
    if problems:
        raise CheckpointError(
            f"no readable checkpoint in {folder} ({'; '.join(problems)}). To train this run "
            f"from the start, delete {folder} and run the same command again"
        )
    return None


def best_checkpoint(work_dir: Path) -> Path | None:
    """The ``best_*.pth`` the checkpoint hook kept (the newest by epoch number), if any."""
    found = checkpoints(work_dir, "best_")
    return found[0] if found else None


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint that is unreadable or holds objects an mmengine checkpoint never does."""
    try:
        unexpected = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:  # a truncated zip, not a torch file, ...
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})"
        ) from None
    unexpected -= set(CHECKPOINT_GLOBALS)
    if unexpected:
        raise CheckpointError(
            f"checkpoint {path} holds objects a wsolbench checkpoint never holds "
            f"({', '.join(sorted(unexpected))}); refusing to load it"
        )
