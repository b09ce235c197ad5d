"""Step 4 of the reports, measuring: one ``wsolbench profile`` record per (dataset, method).

Each method is built from its preset for the dataset, random initialisation, and profiled with
one torch thread and the flags of :data:`PROFILE_FLAGS`; GenPromp's cost-only record comes from
``python -m wsolbench.cost.genpromp``. A timing that was not clean can be measured again after
waiting for a quiet machine (:func:`wait_for_quiet`, the timing's own rule).
"""

from __future__ import annotations

import json
import subprocess
import sys

from report_settings import COST_DIR, PROFILE_THREADS, REPO, wsolbench

COST_DATASETS = ("synthetic", "cub")
# `wsolbench profile` flags per dataset. At 224 px a batch-1 call of the ViT-B/16 methods takes
# about a second on one thread of this CPU, so CUB is timed with fewer calls (5 warm-up, 20 timed)
# and a throughput batch of 4; synthetic (96 px) with the full 10 + 50 and a batch of 64.
PROFILE_FLAGS: dict[str, list[str]] = {
    "synthetic": ["--batch-size", "64"],
    "cub": ["--batch-size", "4", "--throughput-runs", "3"],  # 10 + 50 batch-1 calls, as reported
}
GENPROMP_DATASET = "cub"  # GenPromp's cost-only row (wsolbench.cost.genpromp) goes in this table


def wait_for_quiet(max_wait: float, probe: float = 3.0) -> bool:
    """Wait until a timing would be clean: every ``probe`` seconds, spin one thread for ``probe``
    seconds under the same monitor as ``profile`` and apply its rule (``CLEAN_RULE``); False when
    ``max_wait`` seconds pass first."""
    import time

    from wsolbench.cost.conditions import TimingMonitor
    from wsolbench.cost.formatting import describe_conditions

    deadline = time.monotonic() + max_wait
    while True:
        with TimingMonitor(int(PROFILE_THREADS)) as monitor:
            end = time.perf_counter() + probe
            while time.perf_counter() < end:
                pass
        if monitor.conditions["clean"]:
            return True
        if time.monotonic() > deadline:
            return False
        print(f"  waiting for a quiet machine: {describe_conditions(monitor.conditions)}")
        time.sleep(probe)


def measure_cost(
    methods: list[str], datasets: tuple[str, ...], retries: int = 0, max_wait: float = 300.0
) -> dict[str, dict[str, dict]]:
    """Step 4: ``wsolbench profile`` per (dataset, method) → {dataset: {method: cost}}, and
    GenPromp's cost-only record. Only the records measured are rewritten: other methods' records
    and the device checks under ``cost/`` (``benchmarks/gpu_check.sh``) are kept.

    ``retries``: a timing that was not clean (``wsolbench.cost.conditions.CLEAN_RULE``) is measured
    again, up to this many times, each after waiting (at most ``max_wait`` s) for a quiet machine.
    """
    from wsolbench.cost.conditions import latency_clean

    costs: dict[str, dict[str, dict]] = {}
    for dataset in datasets:
        for method in methods:
            out = COST_DIR / dataset / f"{method}.json"
            extra = [*PROFILE_FLAGS.get(dataset, ["--no-timing"]), "--threads", PROFILE_THREADS]
            for attempt in range(retries + 1):
                if attempt:
                    print(f"{method} on {dataset}: timing not clean; again ({attempt}/{retries})")
                    wait_for_quiet(max_wait)
                status = wsolbench(
                    "profile", "--method", method, "--dataset", dataset, "--json", out, *extra
                )
                if status != 0 or not out.is_file():
                    break
                cost = json.loads(out.read_text())
                if cost.get("latency_ms") is None or latency_clean(cost):
                    break
            if status == 0 and out.is_file():
                costs.setdefault(dataset, {})[method] = json.loads(out.read_text())
            else:
                print(f"profile {method} on {dataset} failed (exit status {status}); left out")
        if dataset == GENPROMP_DATASET:
            out = COST_DIR / dataset / "genpromp.json"
            command = [sys.executable, "-m", "wsolbench.cost.genpromp", "--json", str(out)]
            print("$ python -m wsolbench.cost.genpromp --json " + str(out), flush=True)
            if subprocess.call(command, cwd=REPO) == 0 and out.is_file():
                costs.setdefault(dataset, {})["genpromp"] = json.loads(out.read_text())
            else:
                print("GenPromp's cost not measured (pip install -e '.[genpromp-cost]'); left out")
    return costs


def load_cost() -> dict[str, dict[str, dict]]:
    """The cost records already in ``reports/cost/`` (``--reuse-cost``)."""
    costs: dict[str, dict[str, dict]] = {}
    for path in sorted(COST_DIR.glob("*/*.json")):
        costs.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())
    return costs
