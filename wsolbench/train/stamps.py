"""What every checkpoint carries besides the training state, stamped by mmengine hooks: the
identity of the run that wrote it (``--resume`` continues only this run's own checkpoints) and
the code that trained each of its epochs (a run interrupted at one commit and resumed at another
says so in its result, not the last commit alone). Both are JSON text, which checkpoints loaded
with ``weights_only`` may hold; :mod:`wsolbench.train.checkpoints` reads them back.
"""

from __future__ import annotations

import json

from wsolbench.results.environment import code_versions
from wsolbench.train.checkpoints import (
    IDENTITY_KEY,
    TRAINING_CODE_KEY,
    identity_text,
    unrecorded_training_code,
)
from wsolbench.util.compat import ensure_torchvision

ensure_torchvision()  # (mmengine's packages import torchvision)

from mmengine.hooks import Hook  # noqa: E402


class RunIdentityHook(Hook):
    """Stamp every checkpoint with the identity of the run that writes it (``--resume`` checks
    it: :func:`wsolbench.train.checkpoints.resume_checkpoint`)."""

    def __init__(self, identity: dict):
        self.text = identity_text(identity)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[IDENTITY_KEY] = self.text


class TrainingCodeHook(Hook):
    """Stamp every checkpoint with ``[{"start_epoch", "code"}, ...]``: the history the resumed
    checkpoint carries, plus this process's code from the (0-based) epoch it resumed at when that
    code differs from the last entry's. Read back by
    :func:`wsolbench.train.checkpoints.checkpoint_training_code`.

    Args:
        method_module: the method class's module, whose package's code is named beside
            wsolbench's (:func:`wsolbench.results.environment.code_versions`).
    """

    def __init__(self, method_module: str):
        self.code = code_versions(method_module)
        self.history: list[dict] = []

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        text = checkpoint.get(TRAINING_CODE_KEY)
        # a checkpoint of an older wsolbench: the code of its epochs was not recorded
        self.history = json.loads(text) if text else unrecorded_training_code()

    def before_train(self, runner) -> None:
        if not self.history or self.history[-1]["code"] != self.code:
            self.history.append({"start_epoch": runner.epoch, "code": self.code})

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[TRAINING_CODE_KEY] = json.dumps(self.history, sort_keys=True)
