"""Step 4 of the reports, tables: ``cost.md`` and ``cost.json`` from the cost records.

One table per (protocol, device): latencies of two devices never share a table. A latency not
measured clean is marked ``§``, MACs that are a lower bound ``≥``; GenPromp's cost-only row joins
every table of its protocol, with the TeD-Loc / GenPromp ratio. Reads records only (no torch).
"""

from __future__ import annotations

import json
from pathlib import Path

from report_settings import REPORTS

COST_HEADERS = [
    "Method", "Params (M)", "Trainable (M)", "Inference (M)", "MACs (G)",
    "Latency median (ms)", "Latency p90 (ms)", "Runs", "Throughput (img/s)", "Peak mem (MiB)",
    "Grad at inference", "Timing conditions",
]  # fmt: skip


def _cost_row(c: dict) -> list[str]:
    from wsolbench.cost.conditions import latency_clean
    from wsolbench.cost.formatting import (
        LATENCY_MARK,
        MACS_LOWER_BOUND_MARK,
        describe_conditions,
        macs_complete,
    )

    p, lat, thr = c["params"], c.get("latency_ms"), c.get("throughput")
    memory = c.get("peak_memory_mb")
    mark = "" if latency_clean(c) else LATENCY_MARK
    macs = ("" if macs_complete(c) else MACS_LOWER_BOUND_MARK) + f"{c['macs'] / 1e9:.3f}"
    if c.get("cost_only"):
        name, conditions = f"{c['method']} (cost only)", "not timed (see notes)"
    else:
        name = c["method"]
        conditions = describe_conditions(c.get("timing_conditions")) if lat else "not timed"
    return [
        name, f"{p['total'] / 1e6:.3f}", f"{p['trainable'] / 1e6:.3f}",
        f"{p['inference'] / 1e6:.3f}", macs,
        f"{lat['median']:.2f}{mark}" if lat else "–", f"{lat['p90']:.2f}{mark}" if lat else "–",
        f"{lat['warmup']} + {lat['runs']}" if lat else "–",
        f"{thr['images_per_s']:.1f}{mark}" if thr else "–",
        "–" if memory is None else f"{memory:.0f}",
        "yes" if c.get("grad_at_inference") else "no", conditions,
    ]  # fmt: skip


def genpromp_notes(by_method: dict[str, dict]) -> list[str]:
    """The cost-only row's provenance and the TeD-Loc / GenPromp ratios (empty without it)."""
    genpromp = by_method.get("genpromp")
    if not genpromp:
        return []
    parts = genpromp["components"]
    listing = "; ".join(
        f"{name} {c['macs_per_call'] / 1e9:.2f} GMACs x "
        + (f"{c['calls_per_image']} per image" if c["calls_per_image"] else "")
        + (f"{c['calls_per_round']} per round" if c["calls_per_round"] else "")
        + f" ({c['params'] / 1e6:.1f} M params)"
        for name, c in parts.items()
    )
    notes = [
        "genpromp (cost only): GenPromp's inference graph built from its published architecture "
        "(Stable Diffusion v1-4's UNet and VAE encoder, CLIP ViT-L/14 text transformer, "
        "EfficientNet-B7 classifier) with random weights, counted with the same MAC counter "
        "(`python -m wsolbench.cost.genpromp`); no localization figures, not timed. Per image: "
        f"{listing}. The row is one localization round (the ground-truth class) plus the "
        f"classifier; with the top-1 round of its CUB config it is "
        f"{genpromp['macs_two_rounds'] / 1e9:.1f} GMACs.",
    ]
    tedloc = by_method.get("tedloc")
    if tedloc:
        macs = tedloc["macs"] / genpromp["macs"]
        params = tedloc["params"]["inference"] / genpromp["params"]["inference"]
        notes.append(
            f"TeD-Loc / GenPromp: MACs {tedloc['macs'] / 1e9:.3f} G / "
            f"{genpromp['macs'] / 1e9:.1f} G = {macs:.5f} ({1 / macs:.0f}x fewer); inference "
            f"parameters {tedloc['params']['inference'] / 1e6:.2f} M / "
            f"{genpromp['params']['inference'] / 1e6:.1f} M = {params:.4f} ({1 / params:.0f}x "
            "fewer). TeD-Loc at 224 x 224, GenPromp at its 512 x 512 (classifier 600 x 600)."
        )
    return notes


def cost_tables(
    costs: dict[str, dict[str, dict]], fmt: str = "github"
) -> list[tuple[str, str, list[str]]]:
    """(title, table, notes) per (protocol, device): latencies of two devices never share a table.
    Cost-only records (GenPromp) join every table of their protocol, untimed."""
    from tabulate import tabulate

    from wsolbench.cost.formatting import latency_device

    tables = []
    for by_method in costs.values():
        cost_only = [c for c in by_method.values() if c.get("cost_only")]
        by_device: dict[str, list[dict]] = {}
        for cost in by_method.values():
            if not cost.get("cost_only"):
                by_device.setdefault(latency_device(cost), []).append(cost)
        for device, group in by_device.items():
            first = group[0]
            height, width = first["input_size"]
            rows = [_cost_row(c) for c in sorted(group + cost_only, key=lambda c: c["macs"])]
            title = f"{first['protocol']} ({height}×{width}, {first['num_classes']} classes), "
            if first.get("latency_ms"):
                batches = sorted({c["throughput"]["batch"] for c in group if c.get("throughput")})
                title += f"{device}, throughput at batch {' / '.join(map(str, batches))}"
            else:
                title += "parameters and MACs only"
            table = tabulate(rows, headers=COST_HEADERS, tablefmt=fmt, disable_numparse=True)
            tables.append((title, table, [measured_note(group), *genpromp_notes(by_method)]))
    return tables


COST_HEADER = """\
Generated by `make reports` (`python reports/make_reports.py`) with `wsolbench profile --method M
--dataset D --threads 1 --json reports/cost/D/M.json` (flags per dataset: `PROFILE_FLAGS` in
`make_reports.py`; {calls}) and `python -m wsolbench.cost.genpromp --json
reports/cost/cub/genpromp.json`: each method built from its preset for the dataset, random
initialisation (cost does not depend on the weights), no training.

- Params: total / trainable / needed at inference (what `weights.pt` holds), millions.
- MACs (G): multiply-accumulates of one image at the protocol size. Counter: {counter}.
  {lower_bound}
- Latency: batch 1, median and p90 over the timed calls after the warm-up (Runs: warm-up + timed),
  `predict` plus the maps' copy to host memory, one torch thread (`--threads 1`); methods that
  need gradients at inference are timed with them.
- Throughput: images per second of the median call at the table's batch. Peak mem: {memory}.
- Timing conditions: how many of the machine's cores other processes kept busy during the timed
  calls (read from /proc/stat minus the profiling process), how much of the time the timing
  thread waited for a CPU (/proc/self/task/*/schedstat), and the 1-minute load average before
  them. A latency is {rule}. {mark}
- Each table holds one device: latencies of different devices are not comparable. GPU figures:
  `bash benchmarks/gpu_check.sh` writes `reports/cost/gpu_check-<device>.json` / `.md`.
"""


def measured_note(group: list[dict]) -> str:
    """When and with which code a table's records were measured (records made before
    ``profile`` wrote it: "not recorded")."""
    from wsolbench.results.environment import code_label

    dates = sorted({c["measured"][:10] for c in group if c.get("measured")})
    codes = sorted({code_label(c["env"].get("code")) for c in group if c.get("env")})
    unrecorded = sum(1 for c in group if not c.get("measured"))
    text = f"Measured {', '.join(dates)} with code {', '.join(codes)}" if dates else "Measured"
    if unrecorded:
        text += f"{';' if dates else ''} {unrecorded} record(s) without date or code (older)"
    return text + "."


def recorded_calls(costs: dict[str, dict[str, dict]]) -> str:
    """What the records say was timed, per dataset: ``"synthetic: 10 warm-up + 50 timed calls,
    throughput batch 64 (2 + 5 calls)"`` (several settings joined by " / ")."""
    parts = []
    for dataset, by_method in costs.items():
        settings = sorted(
            {
                (c["latency_ms"]["warmup"], c["latency_ms"]["runs"], t["batch"])
                + (t.get("warmup"), t.get("runs"))
                for c in by_method.values()
                if c.get("latency_ms") and (t := c.get("throughput"))
            },
            key=str,
        )
        texts = [
            f"{w} warm-up + {n} timed calls, throughput batch {b} ({tw} + {tn} calls)"
            for w, n, b, tw, tn in settings
        ]
        if texts:
            parts.append(f"{dataset}: {' / '.join(texts)}")
    return "; ".join(parts) or "none timed"


def write_cost(costs: dict[str, dict[str, dict]]) -> Path:
    from wsolbench.cost.conditions import CLEAN_RULE
    from wsolbench.cost.formatting import LATENCY_NOTE, MACS_COUNTER, MACS_LOWER_BOUND_NOTE
    from wsolbench.util.atomic import write_text_atomic

    memory = (
        "peak extra memory of the throughput calls, above what was in use before them (CPU: "
        "resident set size, warm-up included; CUDA: allocated)"
    )
    header = COST_HEADER.format(
        calls=recorded_calls(costs),
        counter=MACS_COUNTER,
        lower_bound=MACS_LOWER_BOUND_NOTE + ".",
        memory=memory,
        rule=CLEAN_RULE,
        mark=LATENCY_NOTE + ".",
    )
    lines = ["# Cost", "", header]
    for title, table, notes in cost_tables(costs):
        lines += [f"## {title}", "", table, ""]
        lines += [f"- {note}" for note in notes] + ([""] if notes else [])
    write_text_atomic(REPORTS / "cost.md", "\n".join(lines))
    write_text_atomic(
        REPORTS / "cost.json", json.dumps(costs, indent=2, sort_keys=True, default=str) + "\n"
    )
    return REPORTS / "cost.md"
