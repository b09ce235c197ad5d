"""The ``train`` section of a config: checked before anything runs, and resolved for the Runner.

:func:`check_train_config` refuses a section that would fail later (an unknown optimizer, a
schedule a resume could not read, a count out of range) with the key, the value and the fix,
and :func:`check_lr_mult_keys`, once the model is built, an ``lr_mult`` key matching nothing;
:func:`param_scheduler` turns ``scheduler`` into what :func:`wsolbench.train.engine.build_runner`
hands to mmengine (``num_workers``: :func:`wsolbench.util.loader.resolve_workers`).
"""

from __future__ import annotations

import difflib
import io
import itertools
import logging
import warnings

import mmengine.optim  # noqa: F401 (fills the registries below: torch's optimizers, the schedules)
import torch
from mmengine.registry import OPTIMIZERS, PARAM_SCHEDULERS

from wsolbench.config import ConfigError
from wsolbench.train.checkpoints import CHECKPOINT_GLOBALS

MAX_COUNT = 1_000_000  # epochs, batch size, intervals: beyond this is a typo (and overflows)

logger = logging.getLogger(__name__)


def param_scheduler(config: dict | str | None, max_epochs: int) -> list[dict]:
    """mmengine's ``param_scheduler`` list for ``train.scheduler`` (a dict with a ``type``, or
    ``none``): stepped per epoch; ``CosineAnnealingLR`` spans ``max_epochs`` unless ``T_max`` is
    given."""
    kind = config.get("type", "none") if isinstance(config, dict) else str(config)
    if kind == "none":
        return []
    params = {k: v for k, v in config.items() if k != "type"}
    if kind == "CosineAnnealingLR":
        params.setdefault("T_max", max_epochs)
    return [{"type": kind, "by_epoch": True, **params}]


def _registered(registry, name):
    """The class ``name`` in an mmengine registry, or None (whatever ``name`` is: mmengine's own
    lookup raises on some strings, e.g. an empty one, as it tries them as import paths)."""
    if not isinstance(name, str) or not name.isidentifier():
        return None
    try:
        return registry.get(name)
    except Exception:  # noqa: BLE001 (any failure means "not a known name")
        return None


def _check_optimizer(config) -> torch.optim.Optimizer:
    """Build the configured optimizer on a dummy parameter and take one step with it."""
    options = dict(config) if isinstance(config, dict) else {}
    kind = options.pop("type", None)
    optimizer_cls = _registered(OPTIMIZERS, kind)
    if optimizer_cls is None:
        raise ConfigError(
            f"train.optimizer.type {kind!r} is not an optimizer mmengine knows; use a torch.optim "
            "class name such as SGD, Adam or AdamW"
        )
    betas = options.get("betas")
    if "betas" in options and not (
        isinstance(betas, (list, tuple))
        and len(betas) == 2
        and all(type(b) in (int, float) and 0 <= b < 1 for b in betas)
    ):  # torch's Adam indexes betas[1] before checking it: an IndexError, not a message
        raise ConfigError(
            f"train.optimizer.betas must be two numbers in [0, 1) such as [0.9, 0.999], not "
            f"{betas!r}"
        )
    parameter = torch.zeros(2, requires_grad=True)
    try:
        optimizer = optimizer_cls([parameter], **options)
        (parameter - 1).square().sum().backward()
        optimizer.step()  # some optimizers refuse ordinary gradients only here (SparseAdam)
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"train.optimizer {dict(config)}: {message}; fix that value (-o train.optimizer.KEY="
            f"VALUE) or drop the key to keep {kind}'s default"
        ) from None
    return optimizer


def _check_scheduler(config: dict, optimizer: torch.optim.Optimizer) -> None:
    """Build the configured schedule on ``optimizer``, step it, and make sure its state can be
    checkpointed and read back (a resume loads it with ``weights_only``)."""
    if _registered(PARAM_SCHEDULERS, config.get("type")) is None:
        raise ConfigError(
            f"train.scheduler.type {config.get('type')!r} is not a schedule mmengine knows; use "
            "MultiStepLR, CosineAnnealingLR or none"
        )
    try:
        with warnings.catch_warnings():  # "step() before optimizer.step()": true of a dry run
            warnings.simplefilter("ignore")
            schedule = PARAM_SCHEDULERS.build({**config, "optimizer": optimizer})
            schedule.step()
        buffer = io.BytesIO()
        torch.save(schedule.state_dict(), buffer)
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"train.scheduler {config}: {message}") from None
    buffer.seek(0)
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(buffer)) - set(
        CHECKPOINT_GLOBALS
    )
    if unsafe:
        raise ConfigError(
            f"train.scheduler {config['type']}: its state holds {', '.join(sorted(unsafe))}, "
            "which a checkpoint of this project may not hold (a resume could not read it); use "
            "MultiStepLR, CosineAnnealingLR, LinearLR, ExponentialLR or none"
        )


def _check_schedule_values(config) -> None:
    """Refuse values mmengine's schedules take silently but that make no sense: a ``gamma``
    that is not > 0 (a negative or zero learning rate after a step), an ``eta_min`` below 0 (a
    cosine schedule ending at a negative rate) and ``milestones`` that are not epochs (an epoch
    counter never meets ``x`` or ``1.5``: the step never happens)."""
    if not isinstance(config, dict):
        return
    gamma = config.get("gamma")
    if "gamma" in config and not (type(gamma) in (int, float) and gamma > 0):
        raise ConfigError(
            f"train.scheduler.gamma must be a number > 0 (the factor each step multiplies the "
            f"learning rate by, such as 0.1), not {gamma!r}"
        )
    eta_min = config.get("eta_min")
    if "eta_min" in config and not (type(eta_min) in (int, float) and eta_min >= 0):
        raise ConfigError(
            f"train.scheduler.eta_min must be a number >= 0 (the learning rate the schedule "
            f"ends at, such as 0), not {eta_min!r}"
        )
    milestones = config.get("milestones")
    if "milestones" in config and not (
        isinstance(milestones, list) and all(type(m) is int and m > 0 for m in milestones)
    ):
        raise ConfigError(
            "train.scheduler.milestones must be epochs (positive integers such as [15, 30]), "
            f"not {milestones!r}"
        )


def check_lr_mult_keys(method: torch.nn.Module, keys) -> None:
    """Refuse an ``lr_mult`` key that is part of no parameter name of the built ``method``.

    mmengine applies a key to every parameter whose name under the engine's wrapper
    (``method.<name>``) contains it, and ignores one that matches nothing: a typo would train
    at the base rate without a word. ``keys`` are those the user set: a preset's key may match
    nothing on another backbone (``layer4`` is a ResNet's).
    """
    names = [name for name, _ in method.named_parameters()]
    for key in keys:
        if any(key in f"method.{name}" for name in names):
            continue
        prefixes = set()
        for name in names:  # module paths, up to 3 parts and before any block index
            parts = name.split(".")[:-1] or [name]
            prefixes.add(".".join(itertools.takewhile(lambda p: not p.isdigit(), parts[:3])))
        prefixes.discard("")
        candidates = prefixes | {p.rpartition(".")[2] for p in prefixes}
        close = difflib.get_close_matches(key, sorted(candidates), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ";"
        owner = getattr(method, "name", type(method).__name__)
        raise ConfigError(
            f"train.lr_mult key {key!r} is part of no parameter name of method {owner!r} (it "
            f"would change nothing){hint} The parameter names start with: "
            f"{', '.join(sorted(prefixes))}"
        )


def check_train_config(train_cfg: dict) -> None:
    """Check a resolved ``train`` section before anything is written or trained.

    Counts must be integers in range; the optimizer is built on a dummy parameter and takes one
    step, and the schedule is built on it, steps once and must checkpoint into objects a resume
    may read (so an unknown name, a missing or unknown keyword, a value either refuses, such as
    a negative learning rate, fails now, not after the data is loaded or after training), and
    values they take but that make no sense (a negative lr_mult, a gamma <= 0, milestones that
    are not epochs) too;
    ``crop_scale`` must be ``[min, max]`` with ``0 < min <= max <= 1``.

    Raises:
        ConfigError: naming the ``train.*`` key, its value and the fix.
    """
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
    for key, mult in (train_cfg.get("lr_mult") or {}).items():
        # 0 is allowed: torch's optimizers scale the whole step (weight decay too) by the rate
        if not (type(mult) in (int, float) and mult >= 0):
            shown = f"{mult:g}" if type(mult) in (int, float) else repr(mult)
            raise ConfigError(
                f"train.lr_mult.{key} must be a number >= 0 (0 freezes those parameters), not "
                f"{shown}"
            )
    _check_schedule_values(train_cfg.get("scheduler"))
    scheduler = param_scheduler(train_cfg.get("scheduler"), train_cfg["max_epochs"])
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
    _warn_if_never_stepped(train_cfg)


def _warn_if_never_stepped(train_cfg: dict) -> None:
    """Say it when every ``MultiStepLR`` milestone lies at or past ``max_epochs``: the epoch
    counter never meets one, so the rate stays at ``optimizer.lr`` while the record shows a step
    schedule (a run shortened with ``-o train.max_epochs`` keeps its preset's milestones). A
    warning, not a refusal: a quick run at a flat rate is a fair thing to want."""
    scheduler = train_cfg.get("scheduler")
    if not isinstance(scheduler, dict) or scheduler.get("type") != "MultiStepLR":
        return
    milestones, max_epochs = scheduler.get("milestones") or [], train_cfg["max_epochs"]
    if milestones and min(milestones) >= max_epochs:
        logger.warning(
            "train.scheduler.milestones %s all lie at or after train.max_epochs %d: the learning "
            "rate never steps; give milestones below %d (-o train.scheduler.milestones=[...]) "
            "for a step schedule",
            milestones,
            max_epochs,
            max_epochs,
        )
