"""Training with mmengine's Runner — the only module that knows it.

Everything is built in Python and handed to ``Runner``: a ``BaseModel`` adapter around the method, a
``BaseMetric`` adapter that feeds the same counters as :mod:`wsolbench.evaluate` (one metric
implementation, two drivers), the optimizer and schedule from the method's ``train`` section, a
checkpoint hook and the seed. Multi-process training is mmengine's distributed launcher under
``torchrun`` (``--launcher pytorch``; gloo on CPU, NCCL on CUDA).

Checkpoints live in ``<work_dir>/train/`` (``epoch_N.pth``, ``last_checkpoint``). Resuming them
on torch ≥ 2.6 needs care: mmengine calls ``torch.load`` with the new ``weights_only=True``
default, and its checkpoints hold a few plain Python objects (the message hub's ``HistoryBuffer``,
numpy arrays and scalars). :func:`trusted_checkpoint_loading` allows exactly those, only while
loading this run's own checkpoints, and refuses a checkpoint that holds anything else — the safety
is never disabled process-wide.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from wsolbench._compat import ensure_torchvision
from wsolbench.atomic import write_bytes_atomic
from wsolbench.data.dataset import WSOLImageDataset
from wsolbench.evaluate import GroundTruth, count_batch, new_counter, predict_batch
from wsolbench.method import WSOLMethod
from wsolbench.metrics import merge_counts, summarize
from wsolbench.progress import progress
from wsolbench.workdir import TRAIN_SUBDIR, checkpoints

ensure_torchvision()  # mmengine.runner imports torchvision

from mmengine.evaluator import BaseMetric  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "method."  # the adapter holds the method as ``self.method``

# Python objects an mmengine checkpoint of this project holds besides tensors (see module doc).
_CHECKPOINT_GLOBALS = (
    "mmengine.logging.history_buffer.HistoryBuffer",
    "builtins.getattr",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
)


class CheckpointError(ValueError):
    """A checkpoint or weights file cannot be used; the message names it and says why."""


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


class QuietRunner(Runner):
    """mmengine's Runner with its console output kept for the log file.

    mmengine prints its environment dump, the config, the hook table and one line per parameter
    group to stdout before the first step (~150 lines), and deprecation notices after; they stay
    in the run's log file (``<work_dir>/train/<timestamp>/<timestamp>.log``), and only errors
    reach the console, where :class:`ProgressHook` reports progress.
    """

    def build_logger(self, log_level="INFO", log_file=None, **kwargs):
        built = super().build_logger(log_level, log_file, **kwargs)
        for handler in built.handlers:
            if type(handler) is logging.StreamHandler:  # the console (file handlers subclass it)
                handler.setLevel(logging.ERROR)
        return built


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


def auto_workers(device: str = "cpu", cpus: int | None = None) -> int:
    """Data-loader workers that follow the machine (``train.num_workers: auto``).

    On CUDA: one core per worker, all but one core (the training process's), at most 8 per
    process (decoding + augmenting a 224-px JPEG takes a few ms: 8 workers feed thousands of
    images/s, more than a GPU step of these models consumes). On CPU the workers compete with
    torch's threads for the same cores: none up to 4 cores (measured faster on 2 cores: cam's and
    tedloc's presets use 0), then a quarter of the cores, at most 8.
    """
    cpus = cpus or os.cpu_count() or 1
    if str(device).startswith("cuda"):
        return max(0, min(8, cpus - 1))
    return 0 if cpus <= 4 else min(8, cpus // 4)


def resolve_workers(value, device: str = "cpu") -> int:
    """``train.num_workers``: an integer as configured, or ``"auto"`` / None for
    :func:`auto_workers`."""
    if value is None or value == "auto":
        return auto_workers(device)
    return int(value)


def _dataloader(
    dataset, batch_size: int, num_workers: int, shuffle: bool, device: str = "cpu"
) -> dict:
    return {
        "dataset": dataset,
        # round_up=False: no padded duplicates, so distributed evaluation counts each image once.
        "sampler": {"type": "DefaultSampler", "shuffle": shuffle, "round_up": shuffle},
        "batch_size": batch_size,
        "num_workers": num_workers,
        # Page-locked batches copy to the GPU asynchronously; on CPU pinning only costs memory.
        "pin_memory": str(device).startswith("cuda"),
        # Workers are re-created each epoch so that they see the dataset's new epoch (its
        # augmentation draws depend on it: ReplayHook): persistence would freeze the epoch.
        "persistent_workers": False,
        "collate_fn": {"type": "default_collate"},
    }


def _scheduler(config: dict | str | None, max_epochs: int) -> list[dict]:
    kind = config.get("type", "none") if isinstance(config, dict) else str(config)
    if kind == "none":
        return []
    params = {k: v for k, v in config.items() if k != "type"}
    if kind == "CosineAnnealingLR":
        params.setdefault("T_max", max_epochs)
    return [{"type": kind, "by_epoch": True, **params}]


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
) -> Runner:
    """The mmengine Runner that trains ``method`` (see :data:`wsolbench.method.TRAIN_DEFAULTS`).

    Args:
        keep: "last" or "best" (best MaxBoxAccV2 / PxAP on ``val_set``, which is then required).
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
    return QuietRunner(
        model=MethodModel(method),
        work_dir=str(work_dir / TRAIN_SUBDIR),
        train_dataloader=_dataloader(
            train_set, int(train_cfg["batch_size"]), num_workers, True, device
        ),
        train_cfg=loop,
        optim_wrapper=optim_wrapper,
        param_scheduler=_scheduler(train_cfg["scheduler"], max_epochs) or None,
        default_hooks={
            "checkpoint": checkpoint_hook,
            "logger": {"type": "LoggerHook", "interval": 10},
        },
        custom_hooks=[ReplayHook(), MethodHook(), ProgressHook()],
        randomness={"seed": seed, "deterministic": False},
        launcher=launcher,
        env_cfg={"dist_cfg": {"backend": "nccl" if device.startswith("cuda") else "gloo"}},
        # Resume from the checkpoint chosen here, never from mmengine's own search: its pointer
        # file holds an absolute path, which in a copied work dir names the original's files.
        resume=resume_from is not None,
        load_from=None if resume_from is None else str(resume_from),
        # On CPU, DistributedDataParallel must not be given device ids (mmengine passes one
        # unless the wrapper config, read from ``cfg``, says otherwise).
        cfg=(
            {"model_wrapper_cfg": {"type": "MMDistributedDataParallel", "device_ids": None}}
            if launcher != "none" and not device.startswith("cuda")
            else None
        ),
        default_scope="mmengine",
        log_level="INFO",
        **extra,
    )


def _resolve_global(name: str):
    module, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError):
        return None  # e.g. numpy.core.* names on numpy 2, numpy._core.* on numpy 1


@contextlib.contextmanager
def trusted_checkpoint_loading() -> Iterator[None]:
    """Let ``torch.load(weights_only=True)`` read this project's own mmengine checkpoints.

    Allows only the globals listed in ``_CHECKPOINT_GLOBALS`` plus numpy's dtype classes, only
    inside the ``with`` block.
    """
    allowed = [g for g in map(_resolve_global, _CHECKPOINT_GLOBALS) if g is not None]
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


def resume_checkpoint(work_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` continues from: the newest readable one, or None if none yet.

    An unreadable newest checkpoint (a crash mid-write, a disk error) is skipped with a warning
    and the previous one is used; training then redoes the epochs after it.

    Raises:
        CheckpointError: checkpoints exist but none is readable; the message says how to start
            the run over.
    """
    found = checkpoints(work_dir, "epoch_")
    problems = []
    for path in found:
        try:
            check_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        for problem in problems:
            logger.warning("%s; resuming from %s instead", problem, path.name)
        return path
    if problems:
        folder = Path(work_dir) / TRAIN_SUBDIR
        raise CheckpointError(
            f"no readable checkpoint in {folder} ({'; '.join(problems)}). To train this run "
            f"from the start, delete {folder} and run the same command again"
        )
    return None


def best_checkpoint(work_dir: Path) -> Path | None:
    """The ``best_*.pth`` the checkpoint hook kept (the newest by epoch number), if any."""
    found = checkpoints(work_dir, "best_")
    return found[0] if found else None


def train(
    method: WSOLMethod,
    train_set: WSOLImageDataset,
    train_cfg: dict,
    work_dir: Path,
    **runner_options,
) -> Path:
    """Train (continuing from the newest readable checkpoint of ``work_dir``, if any) and return
    the checkpoint to evaluate: last or best.

    Keyword arguments are those of :func:`build_runner` except ``resume_from``.
    """
    keep = runner_options.get("keep", "last")
    runner_options["resume_from"] = resume_checkpoint(work_dir)
    runner = build_runner(method, train_set, train_cfg, work_dir, **runner_options)
    logger.info("training log: %s", Path(runner.log_dir).resolve())
    # mmengine prints some lines itself ("Loads checkpoint by local backend ..."): they go to the
    # run's log with the rest, not to stdout, which carries the results.
    with trusted_checkpoint_loading(), contextlib.redirect_stdout(_LogWriter(runner.logger)):
        runner.train()
    chosen = best_checkpoint(work_dir) if keep == "best" else latest_checkpoint(work_dir)
    if chosen is None:
        raise CheckpointError(f"training in {work_dir / TRAIN_SUBDIR} saved no {keep} checkpoint")
    return chosen


def check_checkpoint(path: Path) -> None:
    """Refuse a checkpoint that is unreadable or holds objects an mmengine checkpoint never does."""
    try:
        unexpected = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:  # a truncated zip, not a torch file, ...
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})"
        ) from None
    unexpected -= set(_CHECKPOINT_GLOBALS)
    if unexpected:
        raise CheckpointError(
            f"checkpoint {path} holds objects a wsolbench checkpoint never holds "
            f"({', '.join(sorted(unexpected))}); refusing to load it"
        )


def _registered(registry, name):
    """The class ``name`` in an mmengine registry, or None (whatever ``name`` is: mmengine's own
    lookup raises on some strings, e.g. an empty one, as it tries them as import paths)."""
    if not isinstance(name, str) or not name.isidentifier():
        return None
    try:
        return registry.get(name)
    except Exception:  # noqa: BLE001 (any failure means "not a known name")
        return None


MAX_COUNT = 1_000_000  # epochs, batch size, intervals: beyond this is a typo (and overflows)


def _check_optimizer(config) -> torch.optim.Optimizer:
    """Build the configured optimizer on a dummy parameter and take one step with it."""
    from mmengine.registry import OPTIMIZERS

    from wsolbench.method import ConfigError

    options = dict(config) if isinstance(config, dict) else {}
    kind = options.pop("type", None)
    optimizer_cls = _registered(OPTIMIZERS, kind)
    if optimizer_cls is None:
        raise ConfigError(
            f"train.optimizer.type {kind!r} is not an optimizer mmengine knows; use a torch.optim "
            "class name such as SGD, Adam or AdamW"
        )
    parameter = torch.zeros(2, requires_grad=True)
    try:
        optimizer = optimizer_cls([parameter], **options)
        (parameter - 1).square().sum().backward()
        optimizer.step()  # some optimizers refuse ordinary gradients only here (SparseAdam)
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"train.optimizer {dict(config)}: {message}") from None
    return optimizer


def _check_scheduler(config: dict, optimizer: torch.optim.Optimizer) -> None:
    """Build the configured schedule on ``optimizer``, step it, and make sure its state can be
    checkpointed and read back (a resume loads it with ``weights_only``)."""
    import io

    from mmengine.registry import PARAM_SCHEDULERS

    from wsolbench.method import ConfigError

    if _registered(PARAM_SCHEDULERS, config.get("type")) is None:
        raise ConfigError(
            f"train.scheduler.type {config.get('type')!r} is not a schedule mmengine knows; use "
            "MultiStepLR, CosineAnnealingLR or none"
        )
    try:
        schedule = PARAM_SCHEDULERS.build({**config, "optimizer": optimizer})
        schedule.step()
        buffer = io.BytesIO()
        torch.save(schedule.state_dict(), buffer)
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"train.scheduler {config}: {message}") from None
    buffer.seek(0)
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(buffer)) - set(
        _CHECKPOINT_GLOBALS
    )
    if unsafe:
        raise ConfigError(
            f"train.scheduler {config['type']}: its state holds {', '.join(sorted(unsafe))}, "
            "which a checkpoint of this project may not hold (a resume could not read it); use "
            "MultiStepLR, CosineAnnealingLR, LinearLR, ExponentialLR or none"
        )


def check_train_config(train_cfg: dict) -> None:
    """Check a resolved ``train`` section before anything is written or trained.

    Counts must be integers in range; the optimizer is built on a dummy parameter and takes one
    step, and the schedule is built on it, steps once and must checkpoint into objects a resume
    may read (so an unknown name, a missing or unknown keyword, a value either refuses, such as
    a negative learning rate, fails now, not after the data is loaded or after training);
    ``crop_scale`` must be ``[min, max]`` with ``0 < min <= max <= 1``.

    Raises:
        ConfigError: naming the ``train.*`` key, its value and the fix.
    """

    from wsolbench.method import ConfigError

    for key in ("max_epochs", "batch_size", "checkpoint_interval", "val_interval"):
        value = train_cfg.get(key)
        if type(value) is not int or not 1 <= value <= MAX_COUNT:
            raise ConfigError(f"train.{key} must be an integer in [1, {MAX_COUNT}], not {value!r}")
    workers = train_cfg.get("num_workers")
    if workers != "auto" and (type(workers) is not int or not 0 <= workers <= 256):
        raise ConfigError(
            f"train.num_workers must be an integer >= 0 or auto (follow the machine; at most "
            f"256), not {workers!r}"
        )
    optimizer = _check_optimizer(train_cfg.get("optimizer"))
    scheduler = _scheduler(train_cfg.get("scheduler"), train_cfg["max_epochs"])
    if scheduler:
        _check_scheduler(scheduler[0], optimizer)
    scale = (train_cfg.get("augment") or {}).get("crop_scale")
    valid = isinstance(scale, (list, tuple)) and len(scale) == 2
    if not (
        valid and all(type(v) in (int, float) for v in scale) and 0 < scale[0] <= scale[1] <= 1
    ):
        raise ConfigError(
            f"train.augment.crop_scale must be [min, max] with 0 < min <= max <= 1, not {scale!r}"
        )


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
    own = method.inference_state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            details.append(
                f"{len(mismatched)} of another shape (e.g. {k}: file {tuple(state[k].shape)}, "
                f"model {tuple(own[k].shape)})"
            )
        raise CheckpointError(
            f"{source} does not fit method {method.name!r} as configured: "
            f"{'; '.join(details)}; was it saved by another method, backbone or class count?"
        )
    method.load_state_dict(state, strict=False)  # keys checked above against inference_state_dict


def export_weights(method: WSOLMethod, path: Path) -> None:
    """Write ``weights.pt``: a plain state dict of what inference needs (``weights_only``-safe)."""
    import io

    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in method.inference_state_dict().items()}
    torch.save(state, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_weights_file(method: WSOLMethod, path: Path) -> None:
    """Load an exported ``weights.pt`` (or any plain state dict) with ``weights_only=True``."""
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(
            f"weights file {path} cannot be read as a plain state dict ({type(exc).__name__}: "
            f"{first_line}); pass a weights.pt written by wsolbench"
        ) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = {k.removeprefix(CHECKPOINT_PREFIX): v for k, v in state["state_dict"].items()}
    if not isinstance(state, dict):
        raise CheckpointError(
            f"weights file {path} holds a {type(state).__name__}, not a state dict"
        )
    load_weights_into(method, state, str(path))
