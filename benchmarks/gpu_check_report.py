"""Device check, report: the record as markdown (inference, training and data, GenPromp, skips).

A latency or rate not measured clean is marked ``§``. Imported by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import re

from wsolbench.cost.conditions import latency_clean
from wsolbench.cost.formatting import LATENCY_MARK, describe_conditions


def _megabytes(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _mark(cost: dict) -> str:
    return "" if latency_clean(cost) else LATENCY_MARK


def _code(record: dict) -> str:
    """wsolbench's code as the record names it: ``commit 1a2b3c4d5e6f`` (``+ uncommitted
    changes``) or ``files sha256 …``."""
    code = record.get("env", {}).get("code", {}).get("wsolbench", {})
    if "commit" in code:
        return f"commit {code['commit'][:12]}" + (" + uncommitted changes" if code["dirty"] else "")
    return f"files sha256 {code['files_sha256'][:12]}" if "files_sha256" in code else "code unknown"


def markdown(record: dict) -> str:
    lines = [
        f"# Device check: {record['device_name']}",
        "",
        f"`{record['command']}` — {record['date']}, wsolbench {_code(record)}, "
        f"torch {record['torch']}, {record['cpus']} CPU cores, {record['elapsed_s']:.0f} s"
        + (" (--quick: a test of the script, not a measurement)" if record["quick"] else ""),
        "",
        "## Inference (batch-1 latency median; throughput and peak memory at batch "
        f"{record['batch_size']})",
        "",
        "| Method | AMP | MACs (G) | Latency (ms) | Throughput (img/s) | Peak mem (MiB) | "
        "Conditions |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for c in record["inference"]:
        lat, thr = c["latency_ms"], c["throughput"]
        memory = c.get("peak_memory_mb")
        lines.append(
            f"| {c['method']} | {c['amp']} | {c['macs'] / 1e9:.3f} | "
            f"{lat['median']:.2f}{_mark(c)} | {thr['images_per_s']:.1f}{_mark(c)} | "
            f"{_megabytes(memory)} | "
            f"{describe_conditions(c.get('timing_conditions'))} |"
        )
    train = record["training"]
    lines += [
        "",
        f"## Training steps (AMP {train.get('amp', '–')}, batch {train.get('batch', '–')}) and "
        "data pipeline",
        "",
        "| Method | Size | Model step (img/s) | Step (ms) | float32 step (img/s) | "
        "Peak mem (MiB) | Data alone (img/s) | Data + step (img/s) | Loader workers | "
        "Data-bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, t in train["methods"].items():
        mark = "" if t["timing_conditions"].get("clean") else LATENCY_MARK
        lines.append(
            f"| {name} | {t['input_size'][0]}×{t['input_size'][1]} | "
            f"{t['model_step_images_per_s']:.1f}{mark} | {t['model_step_ms']:.1f} | "
            f"{t['model_step_float32_images_per_s']:.1f} | {_megabytes(t['peak_memory_mb'])} | "
            f"{t['data_images_per_s']:.1f} | {t['end_to_end_images_per_s']:.1f} | "
            f"{t['loader_workers']} | {'yes' if t['data_bound'] else 'no'} |"
        )
    genpromp = record.get("genpromp") or {}
    lines += ["", "## GenPromp graph", ""]
    if not genpromp:
        lines.append("Not measured (yet).")
    elif "skipped" in genpromp:
        lines.append(f"Not timed: {genpromp['skipped']}.")
    else:
        lines.append(
            f"{genpromp['latency_ms_median']:.1f} ms per image ({genpromp['what']}; "
            f"{describe_conditions(genpromp['timing_conditions'])})."
        )
    if record["skipped"]:
        lines += ["", "Skipped (time budget): " + "; ".join(record["skipped"]) + "."]
    for error in record.get("errors", []):
        lines += ["", f"Failed: {error['step']}: {error['error']}"]
    if not record.get("finished", True):
        lines += [
            "",
            f"Unfinished: written after {record['elapsed_s']:.0f} s; the check went no further.",
        ]
    lines += [
        "",
        f"{LATENCY_MARK}: measured while other processes used the cores the timing needed "
        "(wsolbench.cost.conditions.CLEAN_RULE); indicative only.",
        "",
    ]
    return "\n".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]
