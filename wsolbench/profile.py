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
  by :class:`MacCounter`, a ``TorchDispatchMode`` that sees every aten op that runs, forward and
  backward, whatever kernel torch picks:

  - matrix multiplies and convolutions: the formulas of ``torch.utils.flop_counter``, halved,
    since torch counts a multiply-add as 2 FLOPs while fvcore / mmengine / open_clip / timm (and
    most WSOL papers' "FLOPs") count it once;
  - attention, in every form the methods run: the fused SDPA kernels (flash, memory-efficient,
    cuDNN, the CPU flash kernel), ``nn.MultiheadAttention``'s inference fast path
    (``aten._native_multi_head_attention``: in-projection, both attention products, output
    projection) and ``nn.TransformerEncoderLayer``'s. Each is counted as the math kernel would run
    it: forward ``Lq·Lk·(d + d_v)`` per head (scores, then weighted values), backward twice that
    (the four products of the two matmuls' gradients). So a model gets the same count whether a
    fast path ran or not, on every device (a fused backward's recomputed scores are not added);
  - element-wise ops, norms, softmax, pooling and interpolation are not multiply-accumulates and
    are not counted (as in fvcore);
  - an op that may multiply-accumulate but has no formula here (an unknown kernel, a library's
    custom op, linear algebra such as SVD) is never silently counted as zero: it is listed in
    ``macs_uncounted``, ``wsolbench profile`` prints a warning (``--strict-macs`` makes it an
    error) and tables mark the MACs as a lower bound (``≥``).

  The counter sees the backward pass, so a method that needs gradients at inference (Grad-CAM) is
  charged for it — a tracing counter (fvcore, mmengine) cannot follow ``torch.autograd.grad``.
- **Latency** at batch 1: median (and p90, IQR, min) over ``runs`` (≥ 50 for a reported figure)
  timed calls after ``warmup`` (≥ 10) untimed ones. A call is
  :func:`wsolbench.evaluate.predict_batch` — the method's ``predict`` with autograd on when it
  declares ``needs_grad_at_inference``, and its maps brought to host memory — on a batch already
  on the device. On CUDA the device is synchronized before the clock starts and before it stops.
- **Throughput** at batch ``batch_size`` (default 64): images per second of the median call.
- **Peak memory**: the most memory the batch-``batch_size`` calls used above what was in use
  before them (weights and inputs excluded: they are reported as ``weights_mb``). On CUDA
  ``torch.cuda.max_memory_allocated``; on CPU the process's resident set size, sampled every
  millisecond from ``/proc/self/statm`` (Linux only; ``None`` elsewhere).
- **Timing conditions** (``timing_conditions``): the machine's cores, the threads the timing used
  (torch's CPU threads; 1 on CUDA, the launching thread), the load averages before and after, and
  — read over the timed calls — how many cores other processes kept busy on average
  (``others_cpu_cores``, ``/proc/stat`` minus ``/proc/self/stat``) and how much of the time
  this process's threads were runnable but waiting for a CPU (``wait_share``,
  ``/proc/self/task/*/schedstat``: the direct measure of a disturbed timing). A timing is
  **clean** (:data:`CLEAN_RULE`) when the threads waited at most 5 % of the time and the other
  processes used at most the cores the timing left free (+ 0.1); where neither can be read, the
  1-minute load average before timing must be at most the free cores. Tables and ``compare``
  print a latency that is not clean (or whose conditions were not recorded) with
  :data:`LATENCY_MARK` and a footnote, never as if it were clean. The load average is recorded
  but is not the rule where /proc is readable: it lags by a minute and counts this process.
- The device (``torch.cuda.get_device_name`` on CUDA, the CPU model on CPU), torch's thread count,
  the parameter dtype, AMP (``torch.autocast`` with ``amp="float16"`` or ``"bfloat16"``) and the
  torch version.

Latency is a property of one device: tables never put figures of two devices in one column.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import platform
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from wsolbench.method import WSOLMethod

logger = logging.getLogger(__name__)

MACS_COUNTER = (
    "wsolbench.profile.MacCounter: torch.utils.flop_counter formulas / 2 for matmul and conv (one "
    "multiply-add = 1 MAC, as fvcore, mmengine, open_clip and timm count; torch's own counter "
    "reports 2 FLOPs per multiply-add), every attention kernel counted as its math form "
    "(fused SDPA, nn.MultiheadAttention's fast path); element-wise ops, norms and pooling not "
    "counted"
)
MACS_COUNTER_SHORT = "torch flop formulas / 2 (one multiply-add = 1), all attention kernels"
MIN_WARMUP = 10
MIN_RUNS = 50
AMP_DTYPES = {"none": None, "float16": torch.float16, "bfloat16": torch.bfloat16}
#: Printed after a latency (and throughput) measured while other processes competed for the cores.
LATENCY_MARK = "§"
LATENCY_NOTE = (
    f"{LATENCY_MARK} latency measured while other processes competed for the cores the timing "
    "needed (not clean by the rule above), or with its conditions not recorded: indicative only"
)
#: Printed before MACs that miss ops the counter has no formula for (a lower bound).
MACS_LOWER_BOUND_MARK = "≥"
MACS_LOWER_BOUND_NOTE = (
    f"{MACS_LOWER_BOUND_MARK} lower bound: the method ran ops the MAC counter has no formula for "
    "(listed in its cost record, macs_uncounted)"
)
CLEAN_RULE = (
    "clean: during the timed calls this process's threads waited for a CPU at most 5 % of the "
    "time they were runnable (/proc/self/task/*/schedstat), and other processes kept busy at "
    "most the cores the timing left free, cores - threads, + 0.1 (/proc/stat minus this "
    "process): every timing thread had a core of its own"
)
CLEAN_SLACK = 0.1  # cores: background noise tolerated on top of the cores the timing left free
MAX_WAIT_SHARE = 0.05  # of the runnable time: waits for a CPU a clean timing tolerates
MIN_WINDOW_S = 0.5  # shortest timed window whose CPU shares /proc/stat can tell (10-ms ticks)


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


class UncountedOpsError(ValueError):
    """The MAC counter met ops it has no formula for (with ``strict_macs``); a ValueError, so the
    command line reports it as one ``error:`` line."""


def _attention_macs(query: Sequence[int], key: Sequence[int], value: Sequence[int]) -> int:
    """Forward MACs of softmax(q kᵀ) v as the math kernel runs it: ``Lq·Lk·d`` for the scores and
    ``Lq·Lk·d_v`` for the weighted values, per (batch, head).

    Args:
        query: [..., Lq, d] (e.g. [B, H, Lq, d]); key: [..., Lk, d]; value: [..., Lk, d_v]. The
            leading dimensions of ``query`` (batch, query heads) count the products, so grouped
            key/value heads are handled.
    """
    *lead, lq, d = query
    lk, dv = key[-2], value[-1]
    return math.prod(lead) * lq * lk * (d + dv)


def _sdpa_forward(args, kwargs, out) -> int:
    query, key, value = args[0], args[1], args[2]
    return _attention_macs(query.shape, key.shape, value.shape)


def _sdpa_backward(args, kwargs, out) -> int:
    # (grad_out, query, key, value, ...): the gradients of both products, two matmuls each.
    query, key, value = args[1], args[2], args[3]
    return 2 * _attention_macs(query.shape, key.shape, value.shape)


def _self_attention_block(batch: int, lq: int, lk: int, embed: int) -> int:
    """In-projection (q from Lq tokens, k and v from Lk), both attention products, output
    projection of an ``embed``-wide multi-head attention (any head count: heads split ``embed``)."""
    projections = batch * (lq + 2 * lk) * embed * embed + batch * lq * embed * embed
    return projections + batch * lq * lk * 2 * embed


def _native_mha(args, kwargs, out) -> int:
    # _native_multi_head_attention(query [B, Lq, E], key [B, Lk, E], value, embed_dim, ...).
    query, key = args[0], args[1]
    if query.is_nested or key.is_nested:
        raise _NoFormula
    batch, lq, embed = query.shape
    return _self_attention_block(batch, lq, key.shape[1], embed)


def _encoder_layer(args, kwargs, out) -> int:
    # _transformer_encoder_layer_fwd(src [B, L, E], ..., ffn_weight_1 [F, E] at index 14, ...).
    src, ffn_weight_1 = args[0], args[14]
    if src.is_nested:
        raise _NoFormula
    batch, length, embed = src.shape
    ffn = ffn_weight_1.shape[0]
    return _self_attention_block(batch, length, length, embed) + 2 * batch * length * embed * ffn


def _matrix_product(m: int, k: int, n: int, batch: int = 1) -> int:
    return batch * m * k * n


def _addmm_activation(args, kwargs, out) -> int:
    (m, k), n = args[1].shape, args[2].shape[1]
    return _matrix_product(m, k, n)


def _matrix_vector(args, kwargs, out) -> int:
    # mv(mat [M, N], vec [N]) / addmv(self, mat, vec)
    mat = args[0] if len(args) == 2 else args[1]
    return mat.shape[0] * mat.shape[1]


def _dot(args, kwargs, out) -> int:
    return args[0].numel()


def _addbmm(args, kwargs, out) -> int:
    (b, m, k), n = args[1].shape, args[2].shape[2]
    return _matrix_product(m, k, n, b)


def _int_mm(args, kwargs, out) -> int:
    (m, k), n = args[0].shape, args[1].shape[1]
    return _matrix_product(m, k, n)


class _NoFormula(Exception):
    """A formula cannot count this call (e.g. nested tensors): report the op as uncounted."""


_aten = torch.ops.aten
#: Formulas of this counter: (args, kwargs, out) → MACs. They take precedence over torch's.
MAC_FORMULAS: dict = {
    _aten._native_multi_head_attention: _native_mha,
    _aten._transformer_encoder_layer_fwd: _encoder_layer,
    _aten._addmm_activation: _addmm_activation,
    _aten.mv: _matrix_vector,
    _aten.addmv: _matrix_vector,
    _aten.dot: _dot,
    _aten.vdot: _dot,
    _aten.addbmm: _addbmm,
    _aten._int_mm: _int_mm,
}
for _name in (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
):
    if hasattr(_aten, _name):
        MAC_FORMULAS[getattr(_aten, _name)] = _sdpa_forward
    if hasattr(_aten, _name + "_backward"):
        MAC_FORMULAS[getattr(_aten, _name + "_backward")] = _sdpa_backward

# Names of aten ops that multiply-accumulate (or may): met without a formula, they are reported.
_MAC_LIKE = re.compile(
    r"mm($|_)|conv(olution|_|\d|$)|attention|(^|_)linear($|_)|matmul|(^|_)mv($|_)|(^|_)v?dot$"
    r"|^_?trilinear$|lstm|gru|rnn|transformer|linalg|svd|(^|_)qr$|eig|cholesky|(^|_)lu(_|$)"
    r"|solve|inverse|triangular|fft|stft|cdist|tensordot|fbgemm|int\dpack|einsum"
)
# Ops of other namespaces known to do no multiply-accumulate; any other non-aten op is reported.
_NO_MAC_FOREIGN = frozenset(
    {
        "torchvision::nms",
        "torchvision::roi_align",
        "torchvision::roi_pool",
        "torchvision::ps_roi_align",
        "torchvision::ps_roi_pool",
    }
)


# aten ops the pattern above matches that are norms or checks: not multiply-accumulates by the
# convention (fvcore's) followed here.
_NO_MAC_ATEN = frozenset({"linalg_vector_norm", "_linalg_check_errors", "linalg_cross"})


def _is_mac_like(func) -> bool:
    namespace = func.namespace
    name = func._overloadpacket.__name__
    if namespace in ("aten", "prims"):
        return name not in _NO_MAC_ATEN and bool(_MAC_LIKE.search(name))
    return namespace != "profiler" and f"{namespace}::{name}" not in _NO_MAC_FOREIGN


class MacCounter(TorchDispatchMode):
    """Counts multiply-accumulates of every matmul, convolution and attention kernel that runs,
    forward and backward (see the module docstring for the rules).

    Use as a context manager; ``macs`` is the total, ``by_op`` the split by aten op, ``uncounted``
    the ops met that may multiply-accumulate but have no formula (name → calls). Ops without a
    formula that decompose into ops with one (composite ops) are decomposed first, as
    ``torch.utils.flop_counter.FlopCounterMode`` does; this class keeps no module hierarchy, whose
    backward hooks break ``torch.autograd.grad`` on leaves. It works on meta tensors too (shapes
    only: a model too big to run can be counted).
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()

    @property
    def macs(self) -> int:
        return int(sum(self.by_op.values()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        formula = MAC_FORMULAS.get(packet)
        torch_formula = None if formula is not None else flop_registry.get(packet)
        if formula is None and torch_formula is None:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        name = str(packet).removeprefix("aten.")
        try:
            if formula is not None:
                self.by_op[name] += int(formula(args, kwargs, out))
            elif torch_formula is not None:
                self.by_op[name] += int(torch_formula(*args, **kwargs, out_val=out)) // 2
            elif _is_mac_like(func):
                self.uncounted[name] += 1
        except _NoFormula:
            self.uncounted[name] += 1
        return out


def count_macs(method: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Multiply-accumulates of one ``predict`` call on ``images`` (whatever attention kernels and
    fast paths torch picks: each is counted, see the module docstring).

    Args:
        method: a :class:`WSOLMethod` (its ``predict`` through ``predict_batch``), or any module
            (its ``forward(images)``).
        images: [B, 3, H, W] normalized images on the method's device.
        labels: [B] int64 target classes.

    Returns:
        ``{"macs": int (whole batch), "by_op": {aten op: MACs}, "uncounted": {op: calls},
        "counter": MACS_COUNTER}``; ``uncounted`` is empty when every op was counted.
    """
    from wsolbench.evaluate import predict_batch

    method.eval()
    counter = MacCounter()
    with torch.no_grad(), counter:
        if isinstance(method, WSOLMethod):
            predict_batch(method, images, labels)
        else:
            method(images)
    return {
        "macs": counter.macs,
        "by_op": dict(sorted(counter.by_op.items())),
        "uncounted": dict(sorted(counter.uncounted.items())),
        "counter": MACS_COUNTER,
    }


def uncounted_message(uncounted: dict[str, int]) -> str:
    """One line naming the ops the counter could not count (empty dict: empty string)."""
    if not uncounted:
        return ""
    ops = ", ".join(
        f"{op} ({calls} call{'s' if calls != 1 else ''})" for op, calls in uncounted.items()
    )
    return (
        f"MACs are a lower bound: no formula for {ops}; add one to wsolbench.profile.MAC_FORMULAS"
    )


# ----------------------------------------------------------------------------------------------
# Timing conditions
# ----------------------------------------------------------------------------------------------


def _cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) from ``/proc``, or
    None where it cannot be read. Busy = every state but idle and iowait; steal (time the
    hypervisor gave to other guests) counts as busy: it is time taken from this machine."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        with open("/proc/self/stat", encoding="ascii") as f:
            own = f.read()
        # Fields after the command name (which may hold spaces): utime, stime are 14th and 15th.
        rest = own[own.rindex(")") + 2 :].split()
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / tick, (int(rest[11]) + int(rest[12])) / tick


def _run_times() -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) summed over this process's
    threads (``/proc/self/task/*/schedstat``, nanoseconds), or None where it cannot be read."""
    on_cpu = waiting = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as f:
                    fields = f.read().split()
            except FileNotFoundError:  # a thread that ended meanwhile
                continue
            on_cpu += int(fields[0])
            waiting += int(fields[1])
    except (OSError, ValueError, IndexError):
        return None
    return on_cpu / 1e9, waiting / 1e9


def _load_averages() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


class TimingMonitor:
    """What else ran while timing: enter before the timed calls, exit after them; ``conditions``
    is then the ``timing_conditions`` record (see the module docstring).

    Args:
        threads: the threads the timing uses (torch CPU threads; 1 on CUDA).
    """

    def __init__(self, threads: int):
        self.threads = int(threads)
        self.conditions: dict = {}

    def __enter__(self) -> TimingMonitor:
        self._load_before = _load_averages()
        self._cpu_before = _cpu_seconds()
        self._run_before = _run_times()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        run_after = _run_times()  # read in the reverse order of __enter__: the windows nest
        cpu_after = _cpu_seconds()
        wall = time.perf_counter() - self._wall
        others = own = wait_share = None
        # /proc/stat counts in clock ticks (10 ms per core): over a shorter window the shares
        # are all rounding and are not recorded; schedstat counts nanoseconds.
        if self._cpu_before is not None and cpu_after is not None and wall >= MIN_WINDOW_S:
            busy = cpu_after[0] - self._cpu_before[0]
            mine = cpu_after[1] - self._cpu_before[1]
            others = round(max(0.0, busy - mine) / wall, 3)
            own = round(mine / wall, 3)
        if self._run_before is not None and run_after is not None:
            on_cpu = run_after[0] - self._run_before[0]
            waiting = run_after[1] - self._run_before[1]
            if on_cpu + waiting > 0:
                wait_share = round(waiting / (on_cpu + waiting), 4)
        self.conditions = timing_conditions(
            cpus=os.cpu_count() or 1,
            threads=self.threads,
            others_cpu_cores=others,
            load_before=self._load_before,
            load_after=_load_averages(),
            own_cpu_cores=own,
            seconds=wall,
            wait_share=wait_share,
        )


def timing_conditions(
    *,
    cpus: int,
    threads: int,
    others_cpu_cores: float | None,
    load_before: list[float] | None,
    load_after: list[float] | None = None,
    own_cpu_cores: float | None = None,
    seconds: float | None = None,
    wait_share: float | None = None,
) -> dict:
    """The ``timing_conditions`` record, with ``clean`` decided by :data:`CLEAN_RULE`.

    Args:
        cpus: the machine's cores.
        threads: threads the timing used.
        others_cpu_cores: mean cores other processes kept busy during the timed calls (None
            where ``/proc/stat`` could not be read or the window was too short).
        load_before, load_after: (1, 5, 15)-minute load averages.
        wait_share: the fraction of their runnable time this process's threads waited for a CPU
            (None where ``schedstat`` could not be read).

    Each figure that was measured must pass; with neither measured, the 1-minute load average
    before timing must be at most the free cores.
    """
    allowed = max(cpus - threads, 0) + CLEAN_SLACK
    checks = {}
    if wait_share is not None:
        checks["wait_share"] = wait_share <= MAX_WAIT_SHARE
    if others_cpu_cores is not None:
        checks["others_cpu_cores"] = others_cpu_cores <= allowed
    if not checks and load_before:
        checks["load_avg_1min_before"] = load_before[0] <= allowed
    clean = bool(checks) and all(checks.values())
    basis = " and ".join(checks) or "nothing readable"
    return {
        "cpus": int(cpus),
        "threads": int(threads),
        "others_cpu_cores": others_cpu_cores,
        "wait_share": wait_share,
        "own_cpu_cores": own_cpu_cores,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "seconds": None if seconds is None else round(seconds, 2),
        "clean": bool(clean),
        "basis": basis,
        "rule": CLEAN_RULE,
    }


def latency_clean(cost: dict) -> bool:
    """True when ``cost``'s timing was clean (:data:`CLEAN_RULE`); False when it was not, or when
    its conditions were not recorded (a record from before they were)."""
    conditions = cost.get("timing_conditions")
    return bool(isinstance(conditions, dict) and conditions.get("clean"))


def macs_complete(cost: dict) -> bool:
    """True when the counter counted every op of ``cost``'s inference (no ``macs_uncounted``)."""
    return not cost.get("macs_uncounted")


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
    timed = _time_inference(call, settings, size, num_classes, device, sync, say, threads_used)
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
        "grad_at_inference": bool(method.needs_grad_at_inference),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        # Kept for older readers; timing_conditions holds the full picture.
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "dtype": str(next(iter(method.parameters()), torch.empty(0)).dtype).removeprefix("torch."),
        "amp": settings.amp,
        "torch": torch.__version__,
    }


def _time_inference(call, settings, size, num_classes, device, sync, say, threads_used) -> dict:
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
    images1, labels1 = _dummy_batch(1, size, num_classes, device)
    batch = settings.batch_size
    images_b, labels_b = _dummy_batch(batch, size, num_classes, device)
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
    from wsolbench.method import resolve_config, without_pretrained
    from wsolbench.protocol import protocol_for_dataset as resolve_protocol
    from wsolbench.rebuild import build_with_weights
    from wsolbench.registry import get_method

    method_cls = get_method(method_name)
    resolved = resolve_protocol(dataset, protocol)
    config = without_pretrained(method_cls, resolve_config(method_cls, dataset, overrides))
    return build_with_weights(method_cls, config, resolved, 0, None), resolved, config


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
    from wsolbench.device import resolve_device

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


def describe_conditions(conditions: dict | None) -> str:
    """``"clean: others used 0.12 of 2 cores (1 timing thread), load 0.40 before"``, or
    ``"not recorded"``."""
    if not isinstance(conditions, dict):
        return "not recorded"
    verdict = "clean" if conditions.get("clean") else f"NOT clean {LATENCY_MARK}"
    threads = conditions.get("threads")
    others = conditions.get("others_cpu_cores")
    text = f"{verdict}: " + (
        f"others used {others:.2f} of {conditions.get('cpus')} cores"
        if others is not None
        else f"{conditions.get('cpus')} cores, others' share not readable"
    )
    text += f" ({threads} timing thread{'' if threads == 1 else 's'})"
    wait = conditions.get("wait_share")
    if wait is not None:
        text += f", waited for a CPU {100 * wait:.1f} % of the time"
    load = conditions.get("load_avg_before")
    if load:
        text += f", load {load[0]:.2f} before"
    return text


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
        mark = "" if latency_clean(cost) else f" {LATENCY_MARK}"
        timing = [
            f"latency:     {lat['median']:.2f} ms median{mark}, {lat['p90']:.2f} ms p90, "
            f"IQR {lat.get('iqr', float('nan')):.2f} ms at batch 1 "
            f"({lat['runs']} timed runs after {lat['warmup']} warm-up){grad}",
            f"throughput:  {thr['images_per_s']:.1f} images/s{mark} at batch {thr['batch']}",
            "peak memory: "
            + ("n/a" if memory is None else f"{memory:.1f} MiB")
            + f" ({cost['peak_memory_kind']})",
            f"conditions:  {describe_conditions(cost.get('timing_conditions'))}",
        ]
        if mark:
            timing.append(f"             {LATENCY_NOTE}")
    bound = "" if macs_complete(cost) else f"{MACS_LOWER_BOUND_MARK} "
    lines = [
        f"parameters:  {p['total'] / 1e6:.3f} M total, {p['trainable'] / 1e6:.3f} M trainable, "
        f"{p['inference'] / 1e6:.3f} M needed at inference ({cost['weights_mb']:.1f} MiB)",
        f"MACs:        {bound}{cost['macs'] / 1e9:.4f} G per image at {height}x{width} "
        f"({MACS_COUNTER_SHORT})",
    ]
    if not macs_complete(cost):
        lines.append(f"WARNING:     {uncounted_message(cost['macs_uncounted'])}")
    lines += [
        *timing,
        f"device:      {cost['device_name']} ({cost['device']}, {threads}), "
        f"dtype {cost['dtype']}, AMP {cost['amp']}, torch {cost['torch']}",
    ]
    return "\n".join(lines)
