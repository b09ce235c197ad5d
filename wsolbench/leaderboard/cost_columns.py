"""A leaderboard's cost columns: each row's mean cost over seeds, its cells and the notes.

When results carry cost (``run --profile``), a table adds the parameters inference needs, the MACs
of one image (the counter is named in a note) and the batch-1 median latency — one column per
device (name, CPU threads, AMP), since latencies of two devices are not comparable. A latency not
measured clean, and MACs that are a lower bound, are marked. Reads cost records only
(:mod:`wsolbench.cost.formatting`): no torch.
"""

from __future__ import annotations

import statistics
from typing import Any

from wsolbench.cost.conditions import CLEAN_RULE, latency_clean
from wsolbench.cost.formatting import (
    LATENCY_MARK,
    LATENCY_NOTE,
    MACS_COUNTER_SHORT,
    MACS_LOWER_BOUND_MARK,
    MACS_LOWER_BOUND_NOTE,
    latency_device,
    macs_complete,
)
from wsolbench.leaderboard.rows import MISSING, Leaderboard, Row

COST_NOTE = (
    "Cost (each run's own method, measured after its evaluation by `wsolbench run --profile`): "
    "Params = parameters inference needs, in millions; MACs = multiply-accumulates of one image "
    "at {sizes}, in G ({counter}); Latency = median in ms of batch-1 calls at that size "
    "({calls}), the mean over seeds of each run's own timing (min-max in the CSV), one column "
    "per device."
)


def row_cost(costs: list[dict]) -> dict:
    """Mean cost over seeds: params (M), MACs (G), and latency (ms) per device, with the input
    sizes and (untimed, timed) call counts of the records (the note states them) and each
    device's min and max over the seeds (the CSV shows them).

    A device's latency is the mean of its clean timings
    (:func:`wsolbench.cost.conditions.latency_clean`); with none clean, the mean of all of them,
    and the device is listed in ``unclean`` (the cell is then marked). ``macs_lower_bound``: some
    seed's count missed ops without a formula.
    """
    # Only cost blocks written by wsolbench.cost.profile are shown; another layout is not guessed
    # at.
    costs = [c for c in costs if _profile_layout(c)]
    if not costs:
        return {}
    latency: dict[str, list[float]] = {}
    clean: dict[str, list[float]] = {}
    for cost in costs:
        if cost.get("latency_ms"):
            device, median = latency_device(cost), cost["latency_ms"]["median"]
            latency.setdefault(device, []).append(median)
            if latency_clean(cost):
                clean.setdefault(device, []).append(median)
    shown = {d: clean.get(d) or v for d, v in latency.items()}
    timed = [c["latency_ms"] for c in costs if c.get("latency_ms")]
    out: dict[str, Any] = {
        "latency": {d: statistics.fmean(v) for d, v in shown.items()},
        "latency_range": {d: (min(v), max(v)) for d, v in shown.items()},
        "unclean": sorted(d for d in latency if d not in clean),
        "input_sizes": sorted({tuple(c["input_size"]) for c in costs if c.get("input_size")}),
        "calls": sorted({(t.get("warmup"), t.get("runs")) for t in timed if "runs" in t}),
        "macs_lower_bound": any(not macs_complete(c) for c in costs if "macs" in c),
        "counters": sorted({MACS_COUNTER_SHORT for c in costs if "macs" in c}),
    }
    params = [c["params"]["inference"] for c in costs if "params" in c]
    if params:
        out["params"] = statistics.fmean(params) / 1e6
    macs = [c["macs"] for c in costs if "macs" in c]
    if macs:
        out["macs"] = statistics.fmean(macs) / 1e9
    return out


def _profile_layout(cost: dict) -> bool:
    """Whether a cost block has the fields tables read, with the types
    :mod:`wsolbench.cost.profile` writes."""

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    params, latency = cost.get("params"), cost.get("latency_ms")
    return (
        isinstance(params, dict)
        and number(params.get("inference"))
        and ("macs" not in cost or number(cost["macs"]))
        and (not latency or isinstance(latency, dict) and number(latency.get("median")))
    )


def cost_cells(board: Leaderboard, row: Row) -> list[str]:
    """A row's cost cells, one per :func:`cost_headers` column (none when no row has cost)."""
    if not board.has_cost:
        return []
    cost = row.cost

    def fmt(value: float | None, digits: int) -> str:
        return MISSING if value is None else f"{value:.{digits}f}"

    macs = fmt(cost.get("macs"), 3)
    if cost.get("macs_lower_bound") and macs != MISSING:
        macs = MACS_LOWER_BOUND_MARK + macs
    cells = [fmt(cost.get("params"), 3), macs]
    for device in board.cost_devices:
        latency = fmt(cost.get("latency", {}).get(device), 2)
        marked = latency != MISSING and device in cost.get("unclean", ())
        cells.append(latency + LATENCY_MARK if marked else latency)
    return cells


def cost_notes(rows: list[Row]) -> list[str]:
    """The cost footnotes: the counter, the latency rule, and what the marks mean (if used)."""
    counters = sorted({c for r in rows for c in r.cost.get("counters", [])})
    if not counters:
        return []
    sizes = sorted({tuple(size) for r in rows for size in r.cost.get("input_sizes", [])})
    calls = sorted({tuple(c) for r in rows for c in r.cost.get("calls", [])})
    notes = [
        COST_NOTE.format(
            counter="; ".join(counters),
            sizes=" or ".join(f"{h}×{w}" for h, w in sizes) or "the protocol size",
            calls=" or ".join(f"{w} untimed + {n} timed" for w, n in calls) or "calls not recorded",
        )
    ]
    if any(r.cost.get("latency") for r in rows):
        notes.append(f"Latency shown when {CLEAN_RULE}.")
    if any(r.cost.get("unclean") for r in rows):
        notes.append(LATENCY_NOTE + ".")
    if any(r.cost.get("macs_lower_bound") for r in rows):
        notes.append(MACS_LOWER_BOUND_NOTE + ".")
    return notes


def cost_headers(board: Leaderboard) -> list[str]:
    """Params, MACs, then one latency column per device (none when no row has cost)."""
    if not board.has_cost:
        return []
    return ["Params (M)", "MACs (G)"] + [f"Latency ms ({d})" for d in board.cost_devices]
