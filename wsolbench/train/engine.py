"""Training with mmengine's Runner — with :mod:`wsolbench.train.runner` (the Runner itself: quiet
console, the run's device), the only module that knows it.

Everything is built in Python and handed to the Runner: a ``BaseModel`` adapter around the method, a
``BaseMetric`` adapter that feeds the same counters as :mod:`wsolbench.evaluate` (one metric
implementation, two drivers), the optimizer and schedule from the method's ``train`` section, a
checkpoint hook and the seed. Checkpoints are written atomically (:class:`AtomicLocalBackend`) and
carry the run's identity and the code that trained them (:mod:`wsolbench.train.stamps`); a loss or
weight that is no longer finite stops training at once (:class:`FiniteHook`). Multi-process
training is mmengine's distributed launcher under ``torchrun`` (``--launcher pytorch``; gloo on
CPU, NCCL on CUDA).

What needs no Runner lives beside it:
:mod:`wsolbench.train.checkpoints` (finding, checking and trusted loading of this project's
checkpoints),
:mod:`wsolbench.train.weights` (loading and exporting a method's weights) and
:mod:`wsolbench.train.config` (checking and resolving the ``train`` section).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from pathlib import Path

import numpy as np
import torch

from wsolbench.counting import GroundTruth, count_batch, new_counter
from wsolbench.data.dataset import WSOLImageDataset
from wsolbench.evaluate import predict_batch
from wsolbench.method import WSOLMethod
from wsolbench.metrics import merge_counts, summarize
from wsolbench.results.workdir import TRAIN_SUBDIR
from wsolbench.train.checkpoints import (
    CheckpointError,
    best_checkpoint,
    latest_checkpoint,
    resume_checkpoint,
    trusted_checkpoint_loading,
)
from wsolbench.train.config import (
    param_scheduler,
)
from wsolbench.train.runner import HarnessRunner
from wsolbench.train.stamps import RunIdentityHook, TrainingCodeHook
from wsolbench.util.atomic import write_bytes_atomic
from wsolbench.util.compat import ensure_torchvision
from wsolbench.util.loader import pin_memory, resolve_workers
from wsolbench.util.progress import progress

ensure_torchvision()  # mmengine.runner imports torchvision

from mmengine.config import Config  # noqa: E402
from mmengine.dist import all_reduce, get_world_size  # noqa: E402
from mmengine.evaluator import BaseMetric  # noqa: E402
from mmengine.fileio import LocalBackend, register_backend  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

logger = logging.getLogger(__name__)

ATOMIC_BACKEND = "wsolbench_atomic"


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend, but a file is written whole or not at all (temp file +
    rename): a crash or a full disk mid-checkpoint leaves the previous checkpoints intact and no
    truncated one for ``--resume`` to trip on; a full disk is one error naming the file and the
    space needed (:class:`wsolbench.util.atomic.NoRoomError`)."""

    def put(self, obj: bytes, filepath) -> None:
        write_bytes_atomic(filepath, obj)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


class TrainingDiverged(ValueError):
    """The loss or the weights stopped being finite numbers; the message says when and the fix.

    Attributes:
        epoch: the 1-based epoch it happened in.
    """

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch


class MethodModel(BaseModel):
    """mmengine adapter: ``loss`` mode → the method's losses, ``predict`` mode → maps and top-k."""

    def __init__(self, method: WSOLMethod):
        super().__init__()
        self.method = method

    def forward(self, image, label, index=None, mode: str = "loss"):
        """Batches are the dataset's dicts: image [B, 3, H, W], label [B], index [B]."""
        if mode == "loss":
            return self.method.loss(image, label)
        maps, topk = predict_batch(self.method, image, label)
        # mmengine's evaluator iterates over the outputs: one element for the whole batch.
        return [{"maps": maps, "topk": topk, "index": index.tolist()}]


class CountsMetric(BaseMetric):
    """mmengine adapter feeding the protocol's counters during validation.

    Each batch adds the counts record of its images to ``results``; ranks' results are gathered by
    mmengine and merged, so every image of the split is counted once (the sampler must not pad).
    """

    default_prefix = ""

    def __init__(self, truth: GroundTruth):
        super().__init__(collect_device="cpu")
        self.truth = truth

    def process(self, data_batch, data_samples) -> None:
        for sample in data_samples:
            counter = new_counter(self.truth.settings)
            count_batch(counter, self.truth, sample["index"], sample["maps"], sample["topk"])
            self.results.append(counter.to_dict())

    def compute_metrics(self, results: list) -> dict:
        metrics, _ = summarize(functools.reduce(merge_counts, results), "oracle")
        return metrics


class ReplayHook(Hook):
    """Make a resumed run continue exactly as an uninterrupted one.

    Before each epoch it tells the training set the epoch (augmentation draws are a function of
    seed, epoch and index); checkpoints carry the global RNG states (torch, numpy, random) and a
    resume restores them, so any other randomness (dropout, ...) continues where it stopped.
    """

    priority = "VERY_HIGH"

    def before_train_epoch(self, runner) -> None:
        dataset = runner.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(runner.epoch)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "random": random.getstate(),
        }
        if torch.cuda.is_available():  # dropout and augmentation drawn on a GPU resume too
            checkpoint["rng_state"]["cuda"] = torch.cuda.get_rng_state_all()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # The checkpoint hook's bookkeeping holds absolute paths; in a copied or moved work dir
        # they name the original's files, which it would delete when it saves a newer best.
        info = checkpoint.get("message_hub", {}).get("runtime_info", {})
        for key, value in info.items():
            if (key.startswith("best_ckpt") or key == "last_ckpt") and isinstance(value, str):
                info[key] = str(Path(runner.work_dir) / Path(value).name)
        state = checkpoint.get("rng_state")
        if state is not None:
            torch.set_rng_state(state["torch"])
            np.random.set_state(state["numpy"])
            random.setstate(state["random"])
            if "cuda" in state and torch.cuda.is_available():
                # as many generators as devices then; another device count keeps today's
                generators = state["cuda"][: torch.cuda.device_count()]
                torch.cuda.set_rng_state_all(generators)


class FiniteHook(Hook):
    """Stop training when a loss (each step) or a weight (each epoch, before its checkpoint is
    saved) is NaN or infinite: a diverged run must never be evaluated, saved or ranked as if it
    had learnt something."""

    priority = "VERY_HIGH"  # before the checkpoint hook: a diverged epoch is never saved

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        losses = {
            name: torch.as_tensor(value).detach().float().cpu()
            for name, value in (outputs or {}).items()
            if "loss" in name
        }
        bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
        if get_world_size() > 1:
            # every rank stops together: one alone would leave the others waiting in a collective
            anywhere = torch.tensor(float(bool(bad)))
            all_reduce(anywhere)
            if anywhere.item() and not bad:
                self._stop(runner, f"a loss on another process at step {batch_idx + 1}")
        if bad:
            shown = ", ".join(f"{name} = {float(losses[name].sum())}" for name in bad)
            self._stop(runner, f"{shown} at step {batch_idx + 1}")

    def after_train_epoch(self, runner) -> None:
        model = getattr(runner.model, "module", runner.model)
        for name, parameter in model.named_parameters():
            if not torch.isfinite(parameter.detach()).all():
                self._stop(runner, f"weight {name.removeprefix('method.')} is not finite")

    @staticmethod
    def _stop(runner, what: str) -> None:
        epoch = runner.epoch + 1
        raise TrainingDiverged(f"training diverged in epoch {epoch} ({what})", epoch)


class MethodHook(Hook):
    """Tell the method where training is: :meth:`WSOLMethod.on_train_epoch` before each epoch
    (also the first epoch after a resume) and :meth:`WSOLMethod.on_train_step` after each
    optimizer step. Both are no-ops unless a method overrides them (TeD-Loc's warm-up and EMA
    teacher)."""

    priority = "VERY_HIGH"

    @staticmethod
    def _method(runner) -> WSOLMethod:
        model = runner.model
        return getattr(model, "module", model).method  # unwrap DistributedDataParallel

    def before_train_epoch(self, runner) -> None:
        self._method(runner).on_train_epoch(runner.epoch, runner.max_epochs)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._method(runner).on_train_step()


class ProgressHook(Hook):
    """What the console shows while training: one bar per epoch with the running losses, one per
    validation, then the validation's MaxBoxAccV2 / PxAP. Rank 0 only."""

    priority = "LOW"

    def __init__(self) -> None:
        self.bar = None

    def _start(self, runner, total: int, desc: str) -> None:
        self.bar = progress(total=total, desc=desc, enabled=runner.rank == 0, unit="batch")

    def _stop(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def before_train_epoch(self, runner) -> None:
        epoch = f"epoch {runner.epoch + 1}/{runner.max_epochs}"
        self._start(runner, len(runner.train_dataloader), epoch)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        losses = {
            k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
            for k, v in (outputs or {}).items()
            if "loss" in k
        }
        self.bar.set_postfix_str(" ".join(f"{k}={v:.3f}" for k, v in losses.items()))

    def after_train_epoch(self, runner) -> None:
        self._stop()

    def before_val_epoch(self, runner) -> None:
        self._start(runner, len(runner.val_dataloader), f"validate epoch {runner.epoch}")

    def after_val_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._stop()
        if runner.rank == 0 and metrics:
            shown = {k: v for k, v in metrics.items() if k in ("maxboxacc_v2", "pxap", "top1_cls")}
            logger.info(
                "epoch %d on the selection split: %s",
                runner.epoch,
                ", ".join(f"{k} {v:.2f}" for k, v in shown.items()),
            )


class _LogWriter:
    """A text stream that sends complete lines to a logger (for ``redirect_stdout``)."""

    def __init__(self, target: logging.Logger):
        self.target, self.pending = target, ""

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.target.info(line)
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.target.info(self.pending)
        self.pending = ""


def selection_metric(truth: GroundTruth) -> str:
    """The metric that picks the best checkpoint: MaxBoxAccV2 with boxes, PxAP with masks only."""
    return "maxboxacc_v2" if truth.settings.boxes else "pxap"


def _dataloader(
    dataset, batch_size: int, num_workers: int, shuffle: bool, device: str = "cpu"
) -> dict:
    return {
        "dataset": dataset,
        # round_up=False: no padded duplicates, so distributed evaluation counts each image once.
        "sampler": {"type": "DefaultSampler", "shuffle": shuffle, "round_up": shuffle},
        "batch_size": batch_size,
        "num_workers": num_workers,
        "pin_memory": pin_memory(device),
        # Workers are re-created each epoch so that they see the dataset's new epoch (its
        # augmentation draws depend on it: ReplayHook): persistence would freeze the epoch.
        "persistent_workers": False,
        "collate_fn": {"type": "default_collate"},
    }


def build_runner(
    method: WSOLMethod,
    train_set: WSOLImageDataset,
    train_cfg: dict,
    work_dir: Path,
    *,
    val_set: WSOLImageDataset | None = None,
    val_truth: GroundTruth | None = None,
    keep: str = "last",
    seed: int = 0,
    device: str = "cpu",
    launcher: str = "none",
    resume_from: Path | None = None,
    identity: dict | None = None,
) -> Runner:
    """The mmengine Runner that trains ``method`` (see :data:`wsolbench.config.TRAIN_DEFAULTS`).

    Args:
        keep: "last" or "best" (best MaxBoxAccV2 / PxAP on ``val_set``, which is then required).
        identity: the run's (:func:`wsolbench.results.workdir.identity`), stamped into every
            checkpoint.
        resume_from: a checkpoint of this work dir to continue from (:func:`resume_checkpoint`);
            None starts from the first epoch.
    """
    max_epochs = int(train_cfg["max_epochs"])
    use_amp = bool(train_cfg.get("amp", True)) and device.startswith("cuda")
    optimizer = dict(train_cfg["optimizer"])
    optim_wrapper = {
        "type": "AmpOptimWrapper" if use_amp else "OptimWrapper",
        "optimizer": optimizer,
        "paramwise_cfg": {
            "custom_keys": {k: {"lr_mult": float(v)} for k, v in train_cfg["lr_mult"].items()}
        },
    }
    checkpoint_hook = {
        "type": "CheckpointHook",
        "interval": int(train_cfg["checkpoint_interval"]),
        "max_keep_ckpts": 2,
        "save_last": True,
        "backend_args": {"backend": ATOMIC_BACKEND},
    }
    validate = keep == "best"
    if validate:
        if val_set is None or val_truth is None:
            raise ValueError("keeping the best checkpoint needs a selection split with boxes/masks")
        checkpoint_hook.update(save_best=selection_metric(val_truth), rule="greater")
    num_workers = resolve_workers(train_cfg["num_workers"], device)
    loop = {"by_epoch": True, "max_epochs": max_epochs}
    extra = {}
    if validate:
        loop["val_interval"] = int(train_cfg["val_interval"])
        extra = {
            "val_dataloader": _dataloader(
                val_set, int(train_cfg["batch_size"]), num_workers, False, device
            ),
            "val_cfg": {},
            "val_evaluator": [CountsMetric(val_truth)],
        }
    return HarnessRunner(
        model=MethodModel(method),
        work_dir=str(work_dir / TRAIN_SUBDIR),
        train_dataloader=_dataloader(
            train_set, int(train_cfg["batch_size"]), num_workers, True, device
        ),
        train_cfg=loop,
        optim_wrapper=optim_wrapper,
        param_scheduler=param_scheduler(train_cfg["scheduler"], max_epochs) or None,
        default_hooks={
            "checkpoint": checkpoint_hook,
            "logger": {"type": "LoggerHook", "interval": 10},
        },
        custom_hooks=[
            ReplayHook(),
            RunIdentityHook(identity or {}),
            TrainingCodeHook(type(method).__module__),
            FiniteHook(),
            MethodHook(),
            ProgressHook(),
        ],
        randomness={"seed": seed, "deterministic": False},
        launcher=launcher,
        env_cfg={"dist_cfg": {"backend": "nccl" if device.startswith("cuda") else "gloo"}},
        # Resume from the checkpoint chosen here, never from mmengine's own search: its pointer
        # file holds an absolute path, which in a copied work dir names the original's files.
        resume=resume_from is not None,
        load_from=None if resume_from is None else str(resume_from),
        device=device,
        # a method whose loss stops using some parameters (a frozen teacher's head) needs DDP to
        # look for them at every step (mmengine reads the wrapper's settings from ``cfg``).
        # Not formatted with yapf: mmengine does that for every checkpoint inside a bare
        # ``except:``, which turns a Ctrl-C landing there into a SyntaxError traceback.
        cfg=Config(
            {"model_wrapper_cfg": {"find_unused_parameters": method.unused_parameters}},
            format_python_code=False,
        ),
        default_scope="mmengine",
        log_level="INFO",
        **extra,
    )


def train(
    method: WSOLMethod,
    train_set: WSOLImageDataset,
    train_cfg: dict,
    work_dir: Path,
    *,
    identity: dict,
    **runner_options,
) -> Path:
    """Train (continuing from the newest readable checkpoint of ``work_dir`` that this run
    wrote, if any) and return the checkpoint to evaluate: last or best.

    Args:
        identity: the run's (:func:`wsolbench.results.workdir.identity`): stamped into every
            checkpoint, and a checkpoint carrying another is never resumed.

    Other keyword arguments are those of :func:`build_runner` except ``resume_from``.

    Raises:
        TrainingDiverged: a loss or a weight became NaN or infinite.
    """
    keep = runner_options.get("keep", "last")
    runner_options["resume_from"] = resume_checkpoint(work_dir, identity)
    runner_options["identity"] = identity
    runner = build_runner(method, train_set, train_cfg, work_dir, **runner_options)
    logger.info("training log: %s", Path(runner.log_dir).resolve())
    # mmengine prints some lines itself ("Loads checkpoint by local backend ..."): they go to the
    # run's log with the rest, not to stdout, which carries the results.
    with trusted_checkpoint_loading(), contextlib.redirect_stdout(_LogWriter(runner.logger)):
        runner.train()
    # rank 0 alone writes the checkpoints: the other ranks look for them once it has
    from mmengine.dist import barrier

    barrier()  # (no-op in a single process)
    chosen = best_checkpoint(work_dir) if keep == "best" else latest_checkpoint(work_dir)
    if chosen is None:
        raise CheckpointError(f"training in {work_dir / TRAIN_SUBDIR} saved no {keep} checkpoint")
    return chosen
