"""reports/report_cost.py's cost tables: marks, the cost-only GenPromp row, the TeD-Loc ratio."""

import importlib
import json
import sys
from pathlib import Path

from wsolbench.cost.conditions import timing_conditions
from wsolbench.cost.formatting import LATENCY_MARK

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def report_cost():
    """reports/report_cost.py, the step that renders the cost tables (its folder on the path: the
    steps import each other by name, as make_reports.py runs them)."""
    if str(REPORTS) not in sys.path:
        sys.path.insert(0, str(REPORTS))
    return importlib.import_module("report_cost")


def record(method: str, macs: float, params: float, others: float | None) -> dict:
    """A cub-v1 cost record as `wsolbench profile` writes it; ``others`` None: not timed."""
    timed = others is not None
    return {
        "method": method,
        "protocol": "cub-v1",
        "input_size": [224, 224],
        "num_classes": 200,
        "params": {"total": int(params), "trainable": int(params), "inference": int(params)},
        "macs": int(macs),
        "macs_uncounted": {},
        "latency_ms": {"median": 100.0, "p90": 120.0, "warmup": 10, "runs": 50} if timed else None,
        "throughput": {"images_per_s": 9.5, "batch": 4} if timed else None,
        "peak_memory_mb": 12.0 if timed else None,
        "timing_conditions": (
            timing_conditions(cpus=2, threads=1, others_cpu_cores=others, load_before=[0.5, 0, 0])
            if timed
            else None
        ),
        "device": "cpu",
        "device_name": "Test CPU",
        "threads": 1,
        "amp": "none",
        "grad_at_inference": False,
    }


GENPROMP = {
    **record("genpromp", 1.5e12, 1.08e9, None),
    "cost_only": True,
    "input_size": [512, 512],
    "device": "meta",
    "device_name": "not timed",
    "macs_two_rounds": 2.4e12,
    "params": {"total": int(1.08e9), "trainable": 0, "inference": int(1.08e9)},
    "components": {
        "unet": {"macs_per_call": 4e11, "calls_per_image": 0, "calls_per_round": 2, "params": 8e8},
        "vae_encoder": {
            "macs_per_call": 5.6e11,
            "calls_per_image": 1,
            "calls_per_round": 0,
            "params": 3.4e7,
        },
    },
}


def test_cub_table_marks_busy_timings_and_holds_the_cost_only_row_and_the_ratio():
    costs = {
        "cub": {
            "tedloc": record("tedloc", 4.666e9, 22.0e6, others=0.3),  # clean
            "cam": record("cam", 6.287e9, 23.9e6, others=1.4),  # the other core was not enough
            "genpromp": GENPROMP,
        }
    }
    ((title, table, notes),) = report_cost().cost_tables(costs)
    assert "Test CPU, 1 thread" in title and "cub-v1 (224×224, 200 classes)" in title
    lines = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "| 100.00 " in lines["tedloc"] and LATENCY_MARK not in lines["tedloc"]
    assert f"100.00{LATENCY_MARK}" in lines["cam"] and f"9.5{LATENCY_MARK}" in lines["cam"]
    assert "NOT clean" in lines["cam"] and "others used 1.40 of 2 cores" in lines["cam"]
    assert "1500.000" in lines["genpromp (cost only)"]
    assert "not timed" in lines["genpromp (cost only)"]
    assert "10 + 50" in lines["tedloc"]
    ratio = next(n for n in notes if n.startswith("TeD-Loc / GenPromp"))
    assert "= 0.00311 (321x fewer)" in ratio
    assert any("random weights" in n and "2400.0 GMACs" in n for n in notes)


def test_without_genpromp_there_are_no_genpromp_notes():
    costs = {"cub": {"tedloc": record("tedloc", 4.666e9, 22.0e6, others=0.3)}}
    ((_, _, notes),) = report_cost().cost_tables(costs)
    assert notes == ["Measured 1 record(s) without date or code (older)."]


def test_each_table_says_when_and_with_which_code_it_was_measured():
    dated = {
        **record("tedloc", 4.666e9, 22.0e6, others=0.3),
        "measured": "2026-12-07T22:40:00+00:00",
        "env": {"code": {"wsolbench": {"commit": "0123456789abcdef", "dirty": False}}},
    }
    ((_, _, notes),) = report_cost().cost_tables({"cub": {"tedloc": dated}})
    assert notes == ["Measured 2026-12-07 with code 0123456789ab."]


def test_a_latency_of_fewer_calls_than_reported_figures_use_is_marked():
    """Clean, but 5 untimed + 20 timed calls (below 10 + 50): not a figure to report."""
    from wsolbench.cost.conditions import latency_clean

    quick = record("tedloc", 4.666e9, 22.0e6, others=0.3)
    assert latency_clean(quick)
    quick["latency_ms"].update(warmup=5, runs=20)
    assert not latency_clean(quick)
    ((_, table, _),) = report_cost().cost_tables({"cub": {"tedloc": quick}})
    assert "100.00" + LATENCY_MARK in table and "5 + 20" in table


def test_the_macs_docs_quote_are_the_committed_records():
    """docs/cost.md's "Measured MACs" table quotes reports/cost/cub/<method>.json (3 decimals):
    a re-measured count that changes fails here until the page is updated."""
    import re

    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "cost.md").read_text(encoding="utf-8")
    quoted: dict[str, str] = {}  # a method's first row: its default (later rows: -o variants)
    for method, macs in re.findall(r"^\| `(\w+)`[^|]*\| ([\d.]+) G \|$", page, flags=re.M):
        quoted.setdefault(method, macs)
    assert {"tedloc", "cam", "clip_patch", "clip_gradcam"} <= set(quoted)
    for method in ("tedloc", "cam", "clip_patch", "clip_gradcam"):
        record = json.loads((root / "reports" / "cost" / "cub" / f"{method}.json").read_text())
        assert quoted[method] == f"{record['macs'] / 1e9:.3f}", method
