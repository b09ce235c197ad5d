"""Measuring a method's cost: parameters, MACs, latency, throughput and memory of inference.

This is what ``wsolbench profile`` and ``wsolbench run --profile`` compute; the record goes into the
``cost`` block of a result. Cost does not depend on the weights' values, so a method is profiled as
built from its config with pretrained loading switched off (random initialisation, no file read),
at the protocol's evaluation size and number of classes. This module drives the measurement; each
figure is defined where it is measured (the modules of :mod:`wsolbench.cost`):

- **Parameters** (:mod:`wsolbench.cost.params`): ``total`` (every parameter of the module),
  ``trainable`` (``requires_grad``) and ``inference`` (the parameters in
  :meth:`~wsolbench.method.WSOLMethod.inference_state_dict`, what exported weights hold).
- **MACs** of one inference (:mod:`wsolbench.cost.macs`): batch 1, ``method.predict`` on one image
  at the protocol size, counted by :class:`~wsolbench.cost.macs.MacCounter` over every aten op that
  runs, forward and backward; one multiply-add is one MAC; an op it has no formula for makes the
  count a lower bound (a warning, an error with ``strict_macs``).
- **Latency** at batch 1, **throughput** at batch ``batch_size`` (default 64) and **peak memory**
  (:mod:`wsolbench.cost.timing`): median over ``runs`` (≥ 50 for a reported figure) timed calls
  of :func:`wsolbench.evaluate.predict_batch` after ``warmup`` (≥ 10) untimed ones.
- **Timing conditions** (:mod:`wsolbench.cost.conditions`): what else ran while timing; a timing
  is clean by :data:`~wsolbench.cost.conditions.CLEAN_RULE`, and tables print one that is not
  with :data:`~wsolbench.cost.formatting.LATENCY_MARK`.
- The device (``torch.cuda.get_device_name`` on CUDA, the CPU model on CPU), torch's thread count,
  the parameter dtype, AMP (``torch.autocast`` with ``amp="float16"`` or ``"bfloat16"``) and the
  torch version.

Latency is a property of one device: tables never put figures of two devices in one column.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from wsolbench.cost.conditions import MIN_RUNS, MIN_WARMUP
from wsolbench.cost.formatting import MACS_COUNTER, uncounted_message
from wsolbench.cost.macs import UncountedOpsError, count_macs
from wsolbench.cost.params import count_parameters, weights_megabytes
from wsolbench.cost.timing import device_name, dummy_batch, time_inference
from wsolbench.method import WSOLMethod

logger = logging.getLogger(__name__)

AMP_DTYPES = {"none": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class ProfileSettings:
    """How long and how to time.

    Attributes:
        warmup: untimed batch-1 calls before timing (≥ 10 for a reported figure).
        runs: timed batch-1 calls (≥ 50 for a reported figure).
        batch_size: the throughput batch.
        throughput_warmup: untimed calls at ``batch_size``.
        throughput_runs: timed calls at ``batch_size``; throughput uses their median.
        amp: ``"none"``, ``"float16"`` or ``"bfloat16"``: run under ``torch.autocast``.
        timing: False measures parameters and MACs only (exact, and cheap on a slow machine).
        threads: torch's intra-op CPU threads while profiling (``torch.set_num_threads``), None
            to keep the current setting. On a CPU shared with other jobs, 1 thread gives stable
            figures: with several, every parallel op waits for its slowest thread's time slice.
        strict_macs: an op the MAC counter cannot count is an error (:class:`UncountedOpsError`)
            instead of a warning.
    """

    warmup: int = MIN_WARMUP
    runs: int = MIN_RUNS
    batch_size: int = 64
    throughput_warmup: int = 2
    throughput_runs: int = 5
    amp: str = "none"
    timing: bool = True  # False: parameters and MACs only (no latency, throughput, memory)
    threads: int | None = None  # torch CPU threads while profiling; None: as set
    strict_macs: bool = False

    def __post_init__(self) -> None:
        if self.runs < 1 or self.warmup < 0 or self.batch_size < 1 or self.throughput_runs < 1:
            raise ValueError(
                "profile: runs, batch size and throughput runs must be ≥ 1 and warm-up ≥ 0 "
                f"(got runs={self.runs}, warmup={self.warmup}, batch_size={self.batch_size}, "
                f"throughput_runs={self.throughput_runs})"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"profile: threads must be ≥ 1, not {self.threads}")
        if self.amp not in AMP_DTYPES:
            raise ValueError(f"profile: amp {self.amp!r}; use one of {', '.join(AMP_DTYPES)}")


def profile_method(
    method: WSOLMethod,
    size: tuple[int, int],
    num_classes: int,
    device: str | torch.device = "cpu",
    settings: ProfileSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Measure a built method's cost (see the module docstring for every figure).

    Args:
        method: the method, any weights (cost does not depend on their values).
        size: (H, W) of the inputs, the protocol's evaluation size.
        num_classes: K, for the random target labels.
        device: where to time it.
        settings: warm-up / runs / batch; the defaults are the reported protocol.
        progress: called with a short line before each phase (the CLI prints it).

    Returns:
        The ``cost`` block of a result (JSON-able).

    Raises:
        UncountedOpsError: with ``settings.strict_macs``, when the MAC counter met ops it cannot
            count.
    """
    settings = settings or ProfileSettings()
    if settings.threads is not None:
        previous = torch.get_num_threads()
        torch.set_num_threads(settings.threads)
        try:
            return profile_method(
                method,
                size,
                num_classes,
                device,
                replace(settings, threads=None),
                progress,
            )
        finally:
            torch.set_num_threads(previous)
    from wsolbench.evaluate import predict_batch

    device = torch.device(device)
    say = progress or (lambda _text: None)
    if settings.timing and (settings.warmup < MIN_WARMUP or settings.runs < MIN_RUNS):
        logger.warning(
            "profiling with %d warm-up and %d timed runs; reported figures use at least %d and "
            "%d: tables will mark this latency",
            settings.warmup,
            settings.runs,
            MIN_WARMUP,
            MIN_RUNS,
        )
    method.eval()
    method.to(device)
    is_cuda = device.type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if is_cuda else (lambda: None)
    amp_dtype = AMP_DTYPES[settings.amp]

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    params = count_parameters(method)
    say("counting MACs (batch 1)")
    images1, labels1 = dummy_batch(1, size, num_classes, device)
    with autocast():
        macs = count_macs(method, images1, labels1)
    if macs["uncounted"]:
        message = f"{type(method).__name__}: {uncounted_message(macs['uncounted'])}"
        if settings.strict_macs:
            raise UncountedOpsError(message)
        logger.warning(message)

    def call(images, labels):
        def fn():
            # predict_batch switches autograd on for methods that need it at inference.
            with torch.no_grad(), autocast():
                predict_batch(method, images, labels)

        return fn

    threads_used = 1 if is_cuda else torch.get_num_threads()
    timed = time_inference(call, settings, size, num_classes, device, sync, say, threads_used)
    return {
        "params": params,
        "weights_mb": round(weights_megabytes(method), 3),
        "macs": macs["macs"],
        "macs_by_op": macs["by_op"],
        "macs_uncounted": macs["uncounted"],
        "macs_counter": MACS_COUNTER,
        "input_size": [int(size[0]), int(size[1])],
        "num_classes": int(num_classes),
        **timed,
        "grad_at_inference": bool(method.capabilities.needs_grad_at_inference),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        # Kept for older readers; timing_conditions holds the full picture.
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "dtype": str(next(iter(method.parameters()), torch.empty(0)).dtype).removeprefix("torch."),
        "amp": settings.amp,
        "torch": torch.__version__,
    }
