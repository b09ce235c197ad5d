"""A method's weights: loaded from a training checkpoint or a weights file, and exported.

Every load checks the keys and shapes against what the method as configured holds, and refuses a
mismatch with a :class:`~wsolbench.train.checkpoints.CheckpointError` naming them; ``weights.pt``
is a plain state dict of what inference needs, readable with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch

from wsolbench.blocks.state_dicts import (
    TRAINING_CHECKPOINT,
    fit_problems,
    is_training_checkpoint,
    load_failure,
)
from wsolbench.method import WSOLMethod
from wsolbench.train.checkpoints import (
    CHECKPOINT_PREFIX,
    CheckpointError,
    check_checkpoint,
    trusted_checkpoint_loading,
)
from wsolbench.util.atomic import write_bytes_atomic


def load_checkpoint_into(method: WSOLMethod, path: Path) -> None:
    """Load the method's weights from an mmengine training checkpoint of this project."""
    check_checkpoint(path)
    with trusted_checkpoint_loading():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # Training-only state (an EMA teacher, ...) is in the checkpoint but not in the exported
    # weights: keep what inference needs; missing or misshapen keys are still refused below.
    wanted = set(method.inference_state_dict())
    state = {
        key[len(CHECKPOINT_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(CHECKPOINT_PREFIX) and key[len(CHECKPOINT_PREFIX) :] in wanted
    }
    load_weights_into(method, state, str(path))


def load_training_state(method: WSOLMethod, path: Path) -> None:
    """Load everything a training checkpoint holds of the method, training-only state included
    (an EMA teacher, ...): for tools that inspect training, such as TeD-Loc's diagnose."""
    check_checkpoint(path)
    with trusted_checkpoint_loading():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = {
        key[len(CHECKPOINT_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(CHECKPOINT_PREFIX)
    }
    try:
        method.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit method {method.name!r} as configured: "
            f"{str(exc).splitlines()[0]}"
        ) from None


def load_weights_into(method: WSOLMethod, state: dict, source: str) -> None:
    """``load_state_dict`` with an error that says which keys or shapes do not fit."""
    problems = fit_problems(method.inference_state_dict(), state)
    if problems:
        raise CheckpointError(
            f"{source} does not fit method {method.name!r} as configured: "
            f"{problems}; was it saved by another method, backbone or class count?"
        )
    method.load_state_dict(state, strict=False)  # keys checked above against inference_state_dict


def export_weights(method: WSOLMethod, path: Path) -> str:
    """Write ``weights.pt``: a plain state dict of what inference needs (``weights_only``-safe).

    Returns:
        The file's sha256 hex, which the run's result records (``weights_file``).
    """
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in method.inference_state_dict().items()}
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def load_weights_file(method: WSOLMethod, path: Path) -> None:
    """Load an exported ``weights.pt`` (or any plain state dict) with ``weights_only=True``."""
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if is_training_checkpoint(exc):
            run = path.parent.parent if path.parent.name == "train" else Path("RUN")
            raise CheckpointError(
                f"weights file {path} is {TRAINING_CHECKPOINT}, not a run's weights: pass the "
                f"run's {run / 'weights.pt'} instead (written when its training ends)"
            ) from None
        raise CheckpointError(
            f"weights file {path} cannot be read as a plain state dict "
            f"({load_failure(exc, path)}); pass a weights.pt written by wsolbench (a run "
            "exports RUN/weights.pt when its training ends)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = {k.removeprefix(CHECKPOINT_PREFIX): v for k, v in state["state_dict"].items()}
    if not isinstance(state, dict):
        raise CheckpointError(
            f"weights file {path} holds a {type(state).__name__}, not a state dict"
        )
    load_weights_into(method, state, str(path))
