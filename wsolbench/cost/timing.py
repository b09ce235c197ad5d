"""Timing inference: batch-1 latency, throughput and peak memory at a batch, and their conditions.

- **Latency** at batch 1: median (and p90, IQR, min) over ``runs`` (≥ 50 for a reported figure)
  timed calls after ``warmup`` (≥ 10) untimed ones. A call is what the caller passes: for a
  method, :func:`wsolbench.evaluate.predict_batch` — its ``predict`` with autograd on when its
  ``capabilities.needs_grad_at_inference`` is True, and its maps brought to host memory — on a
  batch already on the device. On CUDA the device is synchronized before the clock starts and
  before it stops.
- **Throughput** at batch ``batch_size``: images per second of the median call.
- **Peak memory**: the most memory the batch-``batch_size`` calls used above what was in use
  before them (weights and inputs excluded). On CUDA ``torch.cuda.max_memory_allocated``; on CPU
  the process's resident set size, sampled every millisecond from ``/proc/self/statm`` (Linux
  only; ``None`` elsewhere) from before the first batch call, its warm-up included: the
  allocator keeps freed memory, so a window opened after the warm-up saw almost no growth.
- The timed calls run inside a :class:`~wsolbench.cost.conditions.TimingMonitor`: the record
  says what else ran meanwhile and whether the timing was clean.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from wsolbench.cost.conditions import TimingMonitor
from wsolbench.cost.formatting import LATENCY_MARK, describe_conditions

logger = logging.getLogger(__name__)


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
    """Milliseconds: ``{"median", "p90", "iqr", "mean", "min"}`` of per-call seconds. The median
    is the reported figure (robust to the occasional slow call); ``iqr`` (p75 − p25) its spread."""
    ms = np.asarray(times, dtype=np.float64) * 1e3
    p25, p75 = np.percentile(ms, [25, 75])
    return {
        "median": float(np.median(ms)),
        "p90": float(np.percentile(ms, 90)),
        "iqr": float(p75 - p25),
        "mean": float(ms.mean()),
        "min": float(ms.min()),
    }


class RssSampler:
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

    def __enter__(self) -> RssSampler:
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


def dummy_batch(
    batch: int, size: tuple[int, int], num_classes: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random inputs (seed 0): images [B, 3, H, W] and int64 labels [B] in [0, K)."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *size, generator=generator).to(device)
    labels = torch.randint(0, num_classes, (batch,), generator=generator).to(device)
    return images, labels


def time_inference(call, settings, size, num_classes, device, sync, say, threads_used) -> dict:
    """Latency at batch 1, throughput and peak memory at ``settings.batch_size``, and the
    conditions they were measured under."""
    if not settings.timing:
        return {
            "latency_ms": None,
            "throughput": None,
            "peak_memory_mb": None,
            "peak_memory_kind": "not measured",
            "timing_conditions": None,
        }
    is_cuda = device.type == "cuda"
    images1, labels1 = dummy_batch(1, size, num_classes, device)
    batch = settings.batch_size
    images_b, labels_b = dummy_batch(batch, size, num_classes, device)
    fn1 = call(images1, labels1)
    for _ in range(settings.warmup):  # outside the monitored window: only timed calls count
        fn1()
    say(f"latency: batch 1, {settings.warmup} warm-up + {settings.runs} timed calls")
    monitor = TimingMonitor(threads_used)
    with monitor:
        latency = summarize_times(time_calls(fn1, warmup=0, runs=settings.runs, sync=sync))
        say(
            f"throughput: batch {batch}, {settings.throughput_warmup} warm-up + "
            f"{settings.throughput_runs} timed calls"
        )
        fn = call(images_b, labels_b)
        if is_cuda:
            for _ in range(settings.throughput_warmup):
                fn()
            sync()
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            times = time_calls(fn, warmup=0, runs=settings.throughput_runs, sync=sync)
            peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
            peak_kind = "torch.cuda.max_memory_allocated above the allocation before the calls"
        else:
            # the warm-up inside the window: the allocator keeps what the first calls took from
            # the system, so the resident set grows on the first batch call and not after it
            with RssSampler() as sampler:
                times = time_calls(
                    fn, warmup=settings.throughput_warmup, runs=settings.throughput_runs
                )
            peak = sampler.extra_megabytes
            peak_kind = (
                "process resident set size (sampled every 1 ms) over the batch calls, warm-up "
                "included, above its value before them (memory the allocator kept from the "
                "batch-1 calls is not counted)"
            )
    batch_time = float(np.median(times))
    conditions = monitor.conditions
    if not conditions["clean"]:
        logger.warning(
            "timing not clean (%s); the latency will be marked %s",
            describe_conditions(conditions),
            LATENCY_MARK,
        )
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
        "timing_conditions": conditions,
    }
