"""Cost of a method: parameters, MACs, latency, throughput and memory of inference.

This is what ``wsolbench profile`` and ``wsolbench run --profile`` compute; the record goes into the
``cost`` block of a result. Cost does not depend on the weights' values, so a method is profiled as
built from its config with pretrained loading switched off (random initialisation, no file read),
at the protocol's evaluation size and number of classes.

What is measured, and how:

- **Parameters**: ``total`` (every parameter of the module), ``trainable`` (``requires_grad``) and
  ``inference`` (the parameters in :meth:`~wsolbench.method.WSOLMethod.inference_state_dict`, what
  exported weights hold: a teacher or a text tower used only in training is not counted).
- **MACs** of one inference (batch 1: ``method.predict`` on one image at the protocol size), counted
  by :data:`MACS_COUNTER`: a ``TorchDispatchMode`` that applies the FLOP formulas of
  ``torch.utils.flop_counter`` to every matrix multiply, convolution and attention kernel and
  halves them, since torch counts a multiply-add as 2 FLOPs while fvcore / mmengine (and most
  WSOL papers' "FLOPs") count it once. Element-wise ops, norms, pooling and interpolation are not
  counted. Attention is counted through the math SDPA kernel (two batched matmuls), the same figure
  on every device. The counter sees the backward pass, so a method that needs gradients at
  inference (Grad-CAM) is charged for it — a tracing counter (fvcore, mmengine) cannot follow
  ``torch.autograd.grad`` and would miss it.
- **Latency** at batch 1: median and 90th percentile over ``runs`` (≥ 50) timed calls after
  ``warmup`` (≥ 10) untimed ones. A call is :func:`wsolbench.evaluate.predict_batch` — the method's
  ``predict`` with autograd on when it declares ``needs_grad_at_inference``, and its maps brought to
  host memory — on a batch already on the device. On CUDA the device is synchronized before the
  clock starts and before it stops.
- **Throughput** at batch ``batch_size`` (default 64): images per second of the median call.
- **Peak memory**: the most memory the batch-``batch_size`` calls used above what was in use
  before them (weights and inputs excluded: they are reported as ``weights_mb``). On CUDA
  ``torch.cuda.max_memory_allocated``; on CPU the process's resident set size, sampled every
  millisecond from ``/proc/self/statm`` (Linux only; ``None`` elsewhere).
- The device (``torch.cuda.get_device_name`` on CUDA, the CPU model on CPU), torch's thread count,
  the parameter dtype, AMP (``torch.autocast`` with ``amp="float16"`` or ``"bfloat16"``) and the
  torch version.

Latency is a property of one device: tables never put figures of two devices in one column.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from wsolbench.method import WSOLMethod

logger = logging.getLogger(__name__)

MACS_COUNTER = (
    "torch.utils.flop_counter formulas / 2 (one multiply-add = 1 MAC, as fvcore and mmengine "
    "count; torch's own counter reports 2 FLOPs per multiply-add); matmul, conv and attention only"
)
MACS_COUNTER_SHORT = "torch flop formulas / 2: one multiply-add = 1"
MIN_WARMUP = 10
MIN_RUNS = 50
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
    """

    warmup: int = MIN_WARMUP
    runs: int = MIN_RUNS
    batch_size: int = 64
    throughput_warmup: int = 2
    throughput_runs: int = 5
    amp: str = "none"
    timing: bool = True  # False: parameters and MACs only (no latency, throughput, memory)
    threads: int | None = None  # torch CPU threads while profiling; None: as set

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


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------


def count_parameters(method: torch.nn.Module) -> dict[str, int]:
    """``{"total", "trainable", "inference"}`` parameter counts (shared parameters once).

    ``inference`` counts the entries of ``method.inference_state_dict()`` that are parameters of
    the module (buffers such as BatchNorm statistics are not parameters); a plain module without
    that method counts all its parameters.
    """
    named = dict(method.named_parameters())
    total = sum(p.numel() for p in named.values())
    trainable = sum(p.numel() for p in named.values() if p.requires_grad)
    if isinstance(method, WSOLMethod):
        state = method.inference_state_dict()
        seen: set[int] = set()
        inference = 0
        for key, tensor in state.items():
            param = named.get(key)
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                inference += tensor.numel()
    else:
        inference = total
    return {"total": int(total), "trainable": int(trainable), "inference": int(inference)}


def weights_megabytes(method: torch.nn.Module) -> float:
    """Size in MiB of what inference loads (``inference_state_dict``: parameters and buffers)."""
    state = method.inference_state_dict() if isinstance(method, WSOLMethod) else method.state_dict()
    return sum(t.numel() * t.element_size() for t in state.values()) / 2**20


# ----------------------------------------------------------------------------------------------
# MACs
# ----------------------------------------------------------------------------------------------


class MacCounter(TorchDispatchMode):
    """Counts multiply-accumulates of every kernel torch's flop formulas know, forward and backward.

    Use as a context manager; ``macs`` is the total, ``by_op`` the split by aten op. Ops without a
    formula that decompose into ops with one (composite ops) are decomposed first, as
    ``torch.utils.flop_counter.FlopCounterMode`` does; this class differs from that one only in
    keeping no module hierarchy, whose backward hooks break ``torch.autograd.grad`` on leaves.
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()

    @property
    def macs(self) -> int:
        return int(sum(self.by_op.values()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        formula = flop_registry.get(packet)
        if formula is not None:
            flops = int(formula(*args, **kwargs, out_val=out))
            self.by_op[str(packet).removeprefix("aten.")] += flops // 2
        return out


@contextlib.contextmanager
def _math_attention() -> Iterator[None]:
    # The math SDPA kernel is two batched matmuls, counted the same on every device; the fused
    # CPU kernel has no flop formula in torch.
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        yield
        return
    with sdpa_kernel(SDPBackend.MATH):
        yield


def count_macs(method: WSOLMethod, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Multiply-accumulates of one ``predict`` call on ``images``.

    Args:
        images: [B, 3, H, W] normalized images on the method's device.
        labels: [B] int64 target classes.

    Returns:
        ``{"macs": int (whole batch), "by_op": {aten op: MACs}, "counter": MACS_COUNTER}``.
    """
    from wsolbench.evaluate import predict_batch

    method.eval()
    counter = MacCounter()
    with torch.no_grad(), _math_attention(), counter:
        predict_batch(method, images, labels)
    return {
        "macs": counter.macs,
        "by_op": dict(sorted(counter.by_op.items())),
        "counter": MACS_COUNTER,
    }


# ----------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------


def time_calls(
    fn: Callable[[], object],
    *,
    warmup: int,
    runs: int,
    sync: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed; seconds per timed call.

    ``sync`` is called before the clock is read on both sides of every timed call
    (``torch.cuda.synchronize`` on CUDA, so the time covers the kernels and not only their launch).
    """
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        sync()
        start = clock()
        fn()
        sync()
        times.append(clock() - start)
    return times


def summarize_times(times: list[float]) -> dict[str, float]:
    """Milliseconds: ``{"median", "p90", "mean", "min"}`` of per-call seconds."""
    ms = np.asarray(times, dtype=np.float64) * 1e3
    return {
        "median": float(np.median(ms)),
        "p90": float(np.percentile(ms, 90)),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
    }


class _RssSampler:
    """Peak resident set size of this process while active (Linux ``/proc/self/statm``)."""

    PATH = "/proc/self/statm"

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.available = os.path.exists(self.PATH)
        self.page = os.sysconf("SC_PAGE_SIZE") if self.available else 0
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _rss(self) -> int:
        with open(self.PATH, encoding="ascii") as f:
            return int(f.read().split()[1]) * self.page

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> _RssSampler:
        if self.available:
            self.base = self.peak = self._rss()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())

    @property
    def extra_megabytes(self) -> float | None:
        return (self.peak - self.base) / 2**20 if self.available else None


def device_name(device: torch.device) -> str:
    """``torch.cuda.get_device_name`` on CUDA; the CPU model (``/proc/cpuinfo``) on CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _dummy_batch(
    batch: int, size: tuple[int, int], num_classes: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=generator).to(device)
    labels = torch.randint(0, num_classes, (batch,), generator=generator).to(device)
    return images, labels


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
    """
    from wsolbench.evaluate import predict_batch

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
    device = torch.device(device)
    say = progress or (lambda _text: None)
    if settings.warmup < MIN_WARMUP or settings.runs < MIN_RUNS:
        logger.warning(
            "profiling with %d warm-up and %d timed runs; reported figures use at least %d and %d",
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
    images1, labels1 = _dummy_batch(1, size, num_classes, device)
    with autocast():
        macs = count_macs(method, images1, labels1)

    def call(images, labels):
        def fn():
            # predict_batch switches autograd on for methods that need it at inference.
            with torch.no_grad(), autocast():
                predict_batch(method, images, labels)

        return fn

    timed = _time_inference(call, settings, size, num_classes, device, sync, say)
    return {
        "params": params,
        "weights_mb": round(weights_megabytes(method), 3),
        "macs": macs["macs"],
        "macs_by_op": macs["by_op"],
        "macs_counter": MACS_COUNTER,
        "input_size": [int(size[0]), int(size[1])],
        "num_classes": int(num_classes),
        **timed,
        "grad_at_inference": bool(method.needs_grad_at_inference),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        # Other processes compete for a shared CPU: the load says how quiet the machine was.
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "dtype": str(next(iter(method.parameters()), torch.empty(0)).dtype).removeprefix("torch."),
        "amp": settings.amp,
        "torch": torch.__version__,
    }


def _time_inference(call, settings, size, num_classes, device, sync, say) -> dict:
    """Latency at batch 1, throughput and peak memory at ``settings.batch_size``."""
    if not settings.timing:
        return {
            "latency_ms": None,
            "throughput": None,
            "peak_memory_mb": None,
            "peak_memory_kind": "not measured",
        }
    is_cuda = device.type == "cuda"
    images1, labels1 = _dummy_batch(1, size, num_classes, device)
    say(f"latency: batch 1, {settings.warmup} warm-up + {settings.runs} timed calls")
    latency = summarize_times(
        time_calls(call(images1, labels1), warmup=settings.warmup, runs=settings.runs, sync=sync)
    )
    batch = settings.batch_size
    images_b, labels_b = _dummy_batch(batch, size, num_classes, device)
    say(
        f"throughput: batch {batch}, {settings.throughput_warmup} warm-up + "
        f"{settings.throughput_runs} timed calls"
    )
    fn = call(images_b, labels_b)
    for _ in range(settings.throughput_warmup):
        fn()
    if is_cuda:
        sync()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        times = time_calls(fn, warmup=0, runs=settings.throughput_runs, sync=sync)
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
        peak_kind = "torch.cuda.max_memory_allocated above the allocation before the calls"
    else:
        with _RssSampler() as sampler:
            times = time_calls(fn, warmup=0, runs=settings.throughput_runs)
        peak = sampler.extra_megabytes
        peak_kind = (
            "process resident set size (sampled every 1 ms) above its value before the calls"
        )
    batch_time = float(np.median(times))
    return {
        "latency_ms": {**latency, "batch": 1, "warmup": settings.warmup, "runs": settings.runs},
        "throughput": {
            "batch": batch,
            "images_per_s": batch / batch_time if batch_time > 0 else None,
            "batch_ms_median": batch_time * 1e3,
            "warmup": settings.throughput_warmup,
            "runs": settings.throughput_runs,
        },
        "peak_memory_mb": None if peak is None else round(float(peak), 3),
        "peak_memory_kind": f"batch {batch}: {peak_kind}",
    }


def build_for_profile(
    method_name: str,
    dataset: str,
    protocol: str | None = None,
    overrides: list[str] | None = None,
):
    """Build a registered method for profiling: its ``dataset`` config, pretrained loading off.

    Returns:
        (method, protocol, config): the method (random initialisation, seed 0), the resolved
        protocol and the resolved config.
    """
    from wsolbench.method import build_method, pretrained_off_overrides, resolve_config
    from wsolbench.registry import get_method
    from wsolbench.run import resolve_protocol

    method_cls = get_method(method_name)
    resolved = resolve_protocol(dataset, protocol)
    overrides = list(overrides or [])
    overrides += pretrained_off_overrides(method_cls)  # one key, or several (TeD-Loc)
    config = resolve_config(method_cls, dataset, overrides)
    method = build_method(
        method_cls, config, resolved.num_classes, seed=0, classnames=resolved.classnames
    )
    return method, resolved, config


def profile(
    method_name: str,
    dataset: str = "cub",
    *,
    protocol: str | None = None,
    overrides: list[str] | None = None,
    device: str = "auto",
    settings: ProfileSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """``wsolbench profile``: build ``method_name`` for ``dataset`` (no training, no pretrained
    weights) and measure its cost at the protocol's evaluation size.

    Returns:
        The cost block (:func:`profile_method`) plus ``method``, ``dataset``, ``protocol`` and the
        resolved ``config``.
    """
    from wsolbench.run import resolve_device

    method, resolved, config = build_for_profile(method_name, dataset, protocol, overrides)
    cost = profile_method(
        method,
        resolved.eval_size,
        resolved.num_classes,
        device=resolve_device(device),
        settings=settings,
        progress=progress,
    )
    return {
        "method": method_name,
        "dataset": dataset,
        "protocol": resolved.id,
        "config": config,
        **cost,
    }


def latency_device(cost: dict) -> str:
    """The device a latency belongs to, as tables name it: the device name, plus the thread count
    on CPU and the AMP dtype when used (each changes the figure)."""
    name = cost.get("device_name") or cost.get("device") or "unknown device"
    if str(cost.get("device", "cpu")).startswith("cpu") and cost.get("threads"):
        threads = int(cost["threads"])
        name += f", {threads} thread{'' if threads == 1 else 's'}"
    if cost.get("amp", "none") != "none":
        name += f", {cost['amp']}"
    return name


def format_cost(cost: dict) -> str:
    """A few human lines: parameters, MACs (naming the counter), latency, throughput, memory."""
    p = cost["params"]
    lat, thr = cost["latency_ms"], cost["throughput"]
    height, width = cost["input_size"]
    grad = (
        " (with autograd: the method needs gradients at inference)"
        if cost.get("grad_at_inference")
        else ""
    )
    memory = cost.get("peak_memory_mb")
    threads = f"{cost['threads']} thread" + ("" if cost["threads"] == 1 else "s")
    if lat is None:
        timing = ["latency:     not measured (--no-timing)"]
    else:
        timing = [
            f"latency:     {lat['median']:.2f} ms median, {lat['p90']:.2f} ms p90 at batch 1 "
            f"({lat['runs']} timed runs after {lat['warmup']} warm-up){grad}",
            f"throughput:  {thr['images_per_s']:.1f} images/s at batch {thr['batch']}",
            "peak memory: "
            + ("n/a" if memory is None else f"{memory:.1f} MiB")
            + f" ({cost['peak_memory_kind']})",
        ]
    lines = [
        f"parameters:  {p['total'] / 1e6:.3f} M total, {p['trainable'] / 1e6:.3f} M trainable, "
        f"{p['inference'] / 1e6:.3f} M needed at inference ({cost['weights_mb']:.1f} MiB)",
        f"MACs:        {cost['macs'] / 1e9:.4f} G per image at {height}x{width} "
        f"({MACS_COUNTER_SHORT})",
        *timing,
        f"device:      {cost['device_name']} ({cost['device']}, {threads}), "
        f"dtype {cost['dtype']}, AMP {cost['amp']}, torch {cost['torch']}",
    ]
    return "\n".join(lines)
