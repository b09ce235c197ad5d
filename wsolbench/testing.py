"""Conformance checks for method plugins: :func:`check_method` (and ``wsolbench check NAME``).

A plugin author runs them before a first real training run; ``tests/test_methods.py`` runs them
over every method the registry can find, so a new method folder is tested without a new test.
Everything runs on random tensors, on CPU, without pretrained weights (the keys of the method's
``capabilities.pretrained_options`` are switched off), in seconds for a small configuration.

The checks, in order (a failed build stops the rest):

- ``registered``: the name resolves to the class, the class carries that name, and it declares
  none of the first interface's attributes (``trainable = False`` for ``capabilities``, ...);
- ``config``: ``config.defaults`` resolve for every preset (with pretrained weights off), and
  ``config.presets`` only set keys the defaults know;
- ``builds``: ``build_method`` on the chosen preset;
- ``predict``: a :class:`~wsolbench.method.Prediction` with finite float maps [B, h, w] and logits
  [B, K] or None;
- ``deterministic``: two eval-mode predictions agree;
- ``per-image``: image i's map and logits do not depend on the other images of the batch;
- ``no_grad``: the evaluator's path works inside ``torch.no_grad()`` (Grad-CAM-style methods
  re-enable autograd themselves through ``capabilities.needs_grad_at_inference``);
- with ``capabilities.trainable``: ``loss`` (finite scalar ``loss_*`` tensors; other keys are
  logged scalar statistics without "loss" in their name), ``gradients`` (backward reaches every
  parameter with ``requires_grad`` that inference uses), ``sgd step`` (one step changes the loss);
  without: ``training-free`` (no ``loss`` needed);
- ``weights round-trip``: ``inference_state_dict`` through ``export_weights`` /
  ``load_weights_file`` into a fresh instance gives the same maps.
"""

from __future__ import annotations

import copy
import math
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from wsolbench.config import TRAIN_DEFAULTS, pretrained_off_overrides, resolve_config
from wsolbench.method import Prediction, WSOLMethod, build_method

# Two predictions of the same image are "the same" within float32 noise of batched kernels.
_RTOL, _ATOL = 1e-4, 1e-5


@dataclass
class CheckResult:
    """One conformance check: its name, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str = ""


class _Failed(Exception):
    """A check's own verdict (not a crash of the method)."""


def _close(a: Tensor, b: Tensor) -> bool:
    scale = float(a.detach().abs().max()) if a.numel() else 0.0
    # maps returned in half precision round that float32 noise to their own resolution
    coarse = max((torch.finfo(t.dtype).eps for t in (a, b) if t.is_floating_point()), default=0)
    rtol = max(_RTOL, 2 * coarse)
    return a.shape == b.shape and torch.allclose(
        a.detach().float(), b.detach().float(), rtol=rtol, atol=max(_ATOL, rtol) * max(scale, 1.0)
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Failed):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {Path(frame.filename).name}:{frame.lineno})" if frame else ""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # no repr quotes
    return f"{type(exc).__name__}: {message}{where}"


def checked_preset(cls: type[WSOLMethod], dataset: str | None) -> str | None:
    """The preset ``check_method`` builds: the dataset's when the method has one, else its
    defaults (a plugin need not ship a preset for every dataset)."""
    return dataset if dataset in cls.config.presets else None


def _pretrained_off(cls: type[WSOLMethod]) -> list[str]:
    return pretrained_off_overrides(cls)


def _old_interface(cls: type[WSOLMethod]) -> str | None:
    """The registry's refusal of a class declaring the first interface's attributes, or None."""
    from wsolbench.registry import old_interface_message

    return old_interface_message(cls, cls.name or cls.__qualname__)


def _check_config(cls: type[WSOLMethod]) -> str:
    defaults, presets = cls.config.defaults, cls.config.presets
    trains = cls.capabilities.trainable
    known = set(defaults) | ({"train"} if trains else set())
    known_train = set(TRAIN_DEFAULTS) | set(defaults.get("train", {}))
    for preset in [None, *presets]:
        config = resolve_config(cls, preset, _pretrained_off(cls))
        if trains and not isinstance(config.get("train"), dict):
            raise _Failed(
                f"preset {preset!r}: 'train' is not a section, and capabilities.trainable is True"
            )
        if preset is None:
            continue
        extra = set(presets[preset]) - known
        extra_train = set(presets[preset].get("train", {})) - known_train
        if extra or extra_train:
            keys = sorted(extra) + sorted(f"train.{k}" for k in extra_train)
            raise _Failed(
                f"config.presets[{preset!r}] sets keys config.defaults lacks: {', '.join(keys)}"
            )
    return f"config.defaults + config.presets {sorted(presets) or 'none'} resolve"


def _check_prediction(prediction, batch: int, num_classes: int) -> str:
    if not isinstance(prediction, Prediction):
        raise _Failed(f"predict returned {type(prediction).__name__}, not a Prediction")
    maps = prediction.maps
    if not isinstance(maps, Tensor) or maps.ndim != 3 or maps.shape[0] != batch:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise _Failed(f"maps must be a [B={batch}, h, w] tensor, got {shape}")
    if not maps.is_floating_point():
        raise _Failed(f"maps must be floating point, got {maps.dtype}")
    if min(maps.shape[1:]) < 1:
        raise _Failed(f"maps are empty: {tuple(maps.shape)}")
    if not torch.isfinite(maps).all():
        bad = int((~torch.isfinite(maps)).sum())
        raise _Failed(f"maps hold {bad} non-finite values (NaN/inf) of {maps.numel()}")
    logits = prediction.logits
    if logits is not None:
        if not isinstance(logits, Tensor) or tuple(logits.shape) != (batch, num_classes):
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise _Failed(f"logits must be [B={batch}, K={num_classes}] or None, got {shape}")
        if not torch.isfinite(logits).all():
            raise _Failed("logits hold non-finite values (NaN/inf)")
    kind = "no logits" if logits is None else f"logits {tuple(logits.shape)}"
    return f"maps {tuple(maps.shape)} {maps.dtype}, {kind}"


def _predict(method: WSOLMethod, images: Tensor, labels: Tensor) -> Prediction:
    from wsolbench.evaluate import run_predict

    method.eval()
    prediction = run_predict(method, images, labels)
    method.zero_grad(set_to_none=True)
    return prediction


def _check_per_image(method: WSOLMethod, images: Tensor, labels: Tensor) -> str:
    together = _predict(method, images, labels)
    for i in range(images.shape[0]):
        alone = _predict(method, images[i : i + 1], labels[i : i + 1])
        if not _close(alone.maps[0], together.maps[i]):
            raise _Failed(
                f"image {i}'s map differs when predicted alone and in a batch of "
                f"{images.shape[0]}: predict must treat images independently in eval mode "
                "(batch statistics, cross-image normalization?)"
            )
        if together.logits is not None and not _close(alone.logits[0], together.logits[i]):
            raise _Failed(f"image {i}'s logits differ when predicted alone and in a batch")
    return f"{images.shape[0]} images alone = in a batch"


def _check_no_grad(method: WSOLMethod, images: Tensor, labels: Tensor) -> str:
    from wsolbench.evaluate import predict_batch

    method.eval()
    with torch.no_grad():
        maps, topk = predict_batch(method, images, labels)
    reference = _predict(method, images, labels).maps
    if not _close(torch.from_numpy(maps), reference):
        raise _Failed("maps under torch.no_grad() differ from maps with autograd enabled")
    return "evaluator path works under torch.no_grad()" + (
        " (capabilities.needs_grad_at_inference)"
        if method.capabilities.needs_grad_at_inference
        else ""
    )


def _loss_terms(
    method: WSOLMethod, images: Tensor, labels: Tensor, need_grad: bool = True
) -> dict[str, Tensor]:
    method.train()
    torch.manual_seed(1)  # the same dropout / sampling draws for every call
    returned = method.loss(images, labels)
    if not isinstance(returned, dict) or not any(k.startswith("loss_") for k in returned):
        raise _Failed(f"loss must return a non-empty dict of loss_* tensors, got {returned!r}")
    losses = {}
    for key, value in returned.items():
        if not key.startswith("loss_"):
            # a logged statistic (e.g. pseudo-label counts): must not look like a loss to mmengine
            # (it sums every key containing "loss") and must be a scalar tensor it can log
            if "loss" in key or not isinstance(value, Tensor) or value.numel() != 1:
                raise _Failed(
                    f"loss key {key!r}: losses start with 'loss_'; other keys are logged "
                    "statistics, scalar tensors whose name does not contain 'loss'"
                )
            continue
        losses[key] = value
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise _Failed(f"{key} must be a scalar tensor, got {value!r}")
        if not torch.isfinite(value).all():
            raise _Failed(f"{key} is not finite: {float(value)}")
        if need_grad and not value.requires_grad:
            raise _Failed(f"{key} does not require grad: no parameter would learn from it")
    return losses


def _params_reached(method: WSOLMethod, output: Tensor) -> set[str]:
    method.zero_grad(set_to_none=True)
    output.backward()
    reached = {n for n, p in method.named_parameters() if p.requires_grad and p.grad is not None}
    method.zero_grad(set_to_none=True)
    return reached


def _check_gradients(method: WSOLMethod, images: Tensor, labels: Tensor) -> str:
    learnable = {n for n, p in method.named_parameters() if p.requires_grad}
    if not learnable:
        raise _Failed("capabilities.trainable is True but no parameter has requires_grad")
    method.eval()
    with torch.enable_grad():
        prediction = method.predict(images, labels)
    output = prediction.maps.float().sum()
    if prediction.logits is not None:
        output = output + prediction.logits.float().sum()
    if output.requires_grad:
        used = _params_reached(method, output)
        basis = "used by predict"
    else:  # predict detaches its output: hold the loss to every parameter with requires_grad
        used, basis = learnable, "with requires_grad (predict output is detached)"
    total = sum(_loss_terms(method, images, labels).values())
    reached = _params_reached(method, total)
    unreached = sorted(used - reached)
    if unreached:
        raise _Failed(
            f"{len(unreached)} parameters {basis} get no gradient from the loss, e.g. "
            f"{', '.join(unreached[:3])}; freeze them (requires_grad=False) or train them"
        )
    return f"loss reaches all {len(used)} parameters {basis}"


def _check_sgd_step(method: WSOLMethod, images: Tensor, labels: Tensor) -> str:
    total = sum(_loss_terms(method, images, labels).values())
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.01)
    optimizer.zero_grad()
    total.backward()
    before = float(total.detach())
    optimizer.step()
    method.zero_grad(set_to_none=True)
    with torch.no_grad():
        after = float(sum(_loss_terms(method, images, labels, need_grad=False).values()))
    if not math.isfinite(after) or after == before:
        raise _Failed(f"loss {before:.6g} → {after:.6g} after one SGD step (lr 0.01)")
    return f"loss {before:.4g} → {after:.4g}"


def _check_round_trip(
    method: WSOLMethod,
    fresh: Callable[[], WSOLMethod],  # builds another instance (another seed)
    images: Tensor,
    labels: Tensor,
) -> str:
    from wsolbench.train.weights import export_weights, load_weights_file

    expected = _predict(method, images, labels).maps
    with tempfile.TemporaryDirectory(prefix="wsolbench-check-") as folder:
        path = Path(folder) / "weights.pt"
        export_weights(method, path)
        other = fresh()
        load_weights_file(other, path)
    got = _predict(other, images, labels).maps
    if not _close(got, expected):
        raise _Failed(
            "maps of a fresh instance loaded from the exported weights differ: does "
            "inference_state_dict hold everything predict uses (buffers included)?"
        )
    return f"{len(method.inference_state_dict())} tensors exported and reloaded, same maps"


def check_method(
    name_or_cls: str | type[WSOLMethod],
    *,
    num_classes: int = 3,
    image_size: int = 64,
    batch_size: int = 2,
    dataset: str | None = "synthetic",
    overrides: list[str] | None = None,
) -> list[CheckResult]:
    """Run the conformance checks of a method (see the module docstring) on random tensors.

    Args:
        name_or_cls: a registered name (``"cam"``, ``"pkg.module:Class"``) or the class itself.
        num_classes: K of the instance under test.
        image_size: side of the random square images.
        batch_size: images per batch (≥ 2, so that per-image independence can be checked).
        dataset: the preset to build (the synthetic preset is the small one); None or a dataset
            without a preset uses the defaults.
        overrides: extra ``-o`` style overrides, e.g. ``["backbone.name=resnet18"]``.

    Returns:
        One :class:`CheckResult` per check, in order; the checks after a failed build are absent.
    """
    if batch_size < 2:
        raise ValueError(f"check_method: batch_size must be >= 2, not {batch_size}")
    results: list[CheckResult] = []

    def run(name: str, check: Callable[[], str]) -> bool:
        try:
            results.append(CheckResult(name, True, check()))
        except Exception as exc:  # every failure is a verdict, never a crash of the checker
            results.append(CheckResult(name, False, _describe(exc)))
        return results[-1].ok

    holder: dict = {}

    def registered() -> str:
        from wsolbench.registry import get_method

        if isinstance(name_or_cls, str):
            cls = get_method(name_or_cls)
        else:
            cls = name_or_cls
            if not (isinstance(cls, type) and issubclass(cls, WSOLMethod)):
                raise _Failed(f"{cls!r} is not a WSOLMethod subclass")
            refusal = _old_interface(cls)
            if refusal:
                raise _Failed(refusal)
            if not cls.name:
                raise _Failed(f"{cls.__qualname__} is not registered (@register_method)")
            found = get_method(cls.name)
            if found is not cls:
                raise _Failed(f"name {cls.name!r} resolves to {found!r}, not {cls!r}")
        holder["cls"] = cls
        return f"{cls.name!r} → {cls.__module__}.{cls.__qualname__}"

    if not run("registered", registered):
        cls = name_or_cls if isinstance(name_or_cls, type) else None
        if cls is None or not issubclass(cls, WSOLMethod) or _old_interface(cls):
            return results  # (the old interface's attributes would be ignored: nothing to check)
        holder["cls"] = cls  # keep checking an unregistered class: the other verdicts still help
    cls = holder["cls"]
    run("config", lambda: _check_config(cls))
    preset = checked_preset(cls, dataset)
    options = _pretrained_off(cls) + list(overrides or [])

    def fresh(seed: int = 1) -> WSOLMethod:
        config = resolve_config(cls, preset, options)
        return build_method(cls, copy.deepcopy(config), num_classes, seed=seed)

    def builds() -> str:
        holder["method"] = fresh(seed=0)
        params = sum(p.numel() for p in holder["method"].parameters())
        return f"preset {preset or 'defaults'}, {params:,} parameters"

    if not run("builds", builds):
        return results
    method: WSOLMethod = holder["method"]
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=generator)
    labels = torch.arange(batch_size) % num_classes

    ok = run(
        "predict",
        lambda: _check_prediction(_predict(method, images, labels), batch_size, num_classes),
    )
    if ok:

        def deterministic() -> str:
            first, second = _predict(method, images, labels), _predict(method, images, labels)
            if not _close(first.maps, second.maps):
                raise _Failed("two eval-mode predictions of the same batch differ")
            return "two eval-mode predictions agree"

        run("deterministic", deterministic)
        run("per-image", lambda: _check_per_image(method, images, labels))
        run("no_grad", lambda: _check_no_grad(method, images, labels))
    if cls.capabilities.trainable:
        if type(method).loss is WSOLMethod.loss:
            results.append(
                CheckResult(
                    "loss", False, "capabilities.trainable is True but loss() is not implemented"
                )
            )
        elif run("loss", lambda: ", ".join(_loss_terms(method, images, labels))):
            run("gradients", lambda: _check_gradients(method, images, labels))
            run("sgd step", lambda: _check_sgd_step(method, images, labels))
    else:
        results.append(
            CheckResult("training-free", True, "capabilities.trainable is False: no loss needed")
        )
    if ok:
        run("weights round-trip", lambda: _check_round_trip(method, fresh, images, labels))
    return results
