"""A cost record in words: the counter's name, the marks and notes tables print, ``format_cost``.

No torch: ``compare``, the leaderboards and the cost tables of ``reports/`` read cost records
(the ``cost`` block of a result, a ``wsolbench profile`` record) through this module only.

- A latency that was not clean (:func:`wsolbench.cost.conditions.latency_clean`), or whose
  conditions were not recorded, is printed with :data:`LATENCY_MARK` and :data:`LATENCY_NOTE`,
  never as if it were clean.
- MACs that miss ops the counter has no formula for (``macs_uncounted``) are printed as a lower
  bound, :data:`MACS_LOWER_BOUND_MARK`.
- Latency is a property of one device (:func:`latency_device`): tables never put figures of two
  devices in one column.
"""

from __future__ import annotations

from wsolbench.cost.conditions import MIN_RUNS, MIN_WARMUP, latency_clean

# The counter as records and tables name it, by its home. Records made before the package was
# grouped by role name it wsolbench.profile.MacCounter: the same counter.
MACS_COUNTER = (
    "wsolbench.cost.macs.MacCounter: torch.utils.flop_counter formulas / 2 for matmul and conv "
    "(one multiply-add = 1 MAC, as fvcore, mmengine, open_clip and timm count; torch's own counter "
    "reports 2 FLOPs per multiply-add), every attention kernel counted as its math form "
    "(fused SDPA, nn.MultiheadAttention's fast path); element-wise ops, norms and pooling not "
    "counted"
)
MACS_COUNTER_SHORT = "torch flop formulas / 2 (one multiply-add = 1), all attention kernels"
#: Printed after a latency (and throughput) measured while other processes competed for the cores.
LATENCY_MARK = "§"
LATENCY_NOTE = (
    f"{LATENCY_MARK} latency measured while other processes competed for the cores the timing "
    f"needed (not clean by the rule above), after fewer than {MIN_WARMUP} untimed + {MIN_RUNS} "
    "timed calls, or with its conditions not recorded: indicative only"
)
#: Printed before MACs that miss ops the counter has no formula for (a lower bound).
MACS_LOWER_BOUND_MARK = "≥"
MACS_LOWER_BOUND_NOTE = (
    f"{MACS_LOWER_BOUND_MARK} lower bound: the method ran ops the MAC counter has no formula for "
    "(listed in its cost record, macs_uncounted)"
)


def macs_complete(cost: dict) -> bool:
    """True when the counter counted every op of ``cost``'s inference (no ``macs_uncounted``)."""
    return not cost.get("macs_uncounted")


def uncounted_message(uncounted: dict[str, int]) -> str:
    """One line naming the ops the counter could not count (empty dict: empty string)."""
    if not uncounted:
        return ""
    ops = ", ".join(
        f"{op} ({calls} call{'s' if calls != 1 else ''})" for op, calls in uncounted.items()
    )
    return (
        f"MACs are a lower bound: no formula for {ops}; add one to wsolbench.cost.macs.MAC_FORMULAS"
    )


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
