"""Cost columns of leaderboards: Params and MACs, and latency never mixed across devices.

The markdown tables are rendered ``wide``: the default one keeps only what fits a terminal
(tests/test_leaderboard_width.py), which may leave the cost out.
"""

import csv
import io
import json
import shutil
from pathlib import Path

from wsolbench.cost.conditions import timing_conditions
from wsolbench.cost.formatting import LATENCY_MARK, MACS_LOWER_BOUND_MARK
from wsolbench.leaderboard import compare

CAM = Path(__file__).parent / "fixtures" / "results" / "cub" / "cam"


def cost(
    device_name: str,
    median: float,
    params: int = 2_000_000,
    macs: int = 3_000_000_000,
    clean: bool | None = True,
    uncounted: dict | None = None,
):
    """A cost block as wsolbench.cost.profile writes it (the fields the tables read); ``clean`` None
    leaves the timing conditions out (a record from before they were written)."""
    block = {
        "params": {"total": params + 5, "trainable": params, "inference": params},
        "macs": macs,
        "macs_counter": "test",
        "latency_ms": {"median": median, "p90": median * 1.5, "batch": 1, "warmup": 10, "runs": 50},
        "device": "cuda:0" if "GPU" in device_name else "cpu",
        "device_name": device_name,
        "threads": 2,
        "amp": "none",
        "macs_uncounted": uncounted or {},
    }
    if clean is not None:
        others = 0.2 if clean else 2.5  # of the 4 - 2 = 2 cores the timing left free
        block["timing_conditions"] = timing_conditions(
            cpus=4, threads=2, others_cpu_cores=others, load_before=[others, 0.0, 0.0]
        )
        assert block["timing_conditions"]["clean"] is clean
    return block


def results_with_costs(tmp_path, costs):
    """Copies of the cam fixture's seeds, seed i carrying ``costs[i]``."""
    for seed, block in enumerate(costs):
        source = json.loads((CAM / f"seed{seed}" / "result.json").read_text())
        source["cost"] = block
        target = tmp_path / f"seed{seed}" / "result.json"
        target.parent.mkdir(parents=True)
        target.write_text(json.dumps(source))
    return tmp_path


def test_latencies_of_two_devices_get_two_columns(tmp_path):
    root = results_with_costs(
        tmp_path, [cost("Big GPU", 2.0), cost("Small CPU", 40.0), cost("Small CPU", 60.0)]
    )
    table = compare([root], fmt="md", published=False, wide=True)
    header = next(line for line in table.splitlines() if line.startswith("| Method"))
    assert "Params (M)" in header and "MACs (G)" in header
    assert "Latency ms (Big GPU)" in header and "Latency ms (Small CPU, 2 threads)" in header
    row = next(line for line in table.splitlines() if line.startswith("| cam"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    by_column = dict(zip(columns, cells, strict=True))
    assert by_column["Params (M)"] == "2.000" and by_column["MACs (G)"] == "3.000"
    assert by_column["Latency ms (Big GPU)"] == "2.00"
    assert by_column["Latency ms (Small CPU, 2 threads)"] == "50.00"  # mean of that device only
    assert "one multiply-add = 1" in table

    rows = list(csv.DictReader(io.StringIO(compare([root], fmt="csv", published=False))))
    assert rows[0]["latency_ms[Big GPU]"] == "2.0000"
    assert rows[0]["latency_ms[Small CPU, 2 threads]"] == "50.0000"
    assert rows[0]["macs_g"] == "3.0000"


def test_no_cost_columns_without_cost(tmp_path):
    shutil.copytree(CAM, tmp_path / "cam")
    for path in (tmp_path / "cam").rglob("result.json"):
        data = json.loads(path.read_text())
        data.pop("cost", None)
        path.write_text(json.dumps(data))
    table = compare([tmp_path], fmt="md", published=False, wide=True)
    assert "MACs" not in table and "Latency" not in table


def cells_of(table: str, method: str = "cam") -> dict[str, str]:
    header = next(line for line in table.splitlines() if line.startswith("| Method"))
    row = next(line for line in table.splitlines() if line.startswith(f"| {method}"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    return dict(zip(columns, [c.strip() for c in row.strip("|").split("|")], strict=True))


def test_a_latency_measured_under_load_is_marked_never_shown_as_clean(tmp_path):
    root = results_with_costs(
        tmp_path, [cost("CPU", 40.0, clean=False), cost("CPU", 60.0, clean=None)]
    )
    table = compare([root], fmt="md", published=False, wide=True)
    assert cells_of(table)["Latency ms (CPU, 2 threads)"] == f"50.00{LATENCY_MARK}"
    assert f"{LATENCY_MARK} latency measured while other processes" in table
    assert "Latency shown when clean" in table
    latex = compare([root], fmt="latex", published=False)
    assert "50.00\\S{}" in latex and LATENCY_MARK not in latex
    rows = list(csv.DictReader(io.StringIO(compare([root], fmt="csv", published=False))))
    assert rows[0]["latency_ms[CPU, 2 threads]"] == "50.0000"
    assert rows[0]["latency_clean[CPU, 2 threads]"] == "false"


def test_clean_seeds_give_the_latency_and_busy_ones_are_left_out(tmp_path):
    root = results_with_costs(
        tmp_path,
        [cost("CPU", 40.0), cost("CPU", 44.0), cost("CPU", 400.0, clean=False)],
    )
    table = compare([root], fmt="md", published=False, wide=True)
    assert cells_of(table)["Latency ms (CPU, 2 threads)"] == "42.00"  # the clean two only
    assert f"{LATENCY_MARK} latency measured" not in table
    rows = list(csv.DictReader(io.StringIO(compare([root], fmt="csv", published=False))))
    assert rows[0]["latency_clean[CPU, 2 threads]"] == "true"
    assert rows[0]["macs_lower_bound"] == "false"
    # the spread of the seeds shown: min and max of the timings the mean is of
    assert rows[0]["latency_ms_min[CPU, 2 threads]"] == "40.0000"
    assert rows[0]["latency_ms_max[CPU, 2 threads]"] == "44.0000"


def test_the_note_states_the_size_and_calls_and_a_quick_timing_is_marked(tmp_path):
    """The latency note says at which input size and after how many calls; a timing of fewer
    calls than reported figures use (profile --runs 20) is marked, like one under load."""
    quick = cost("CPU", 40.0)
    quick["latency_ms"].update(warmup=5, runs=20)
    blocks = [{**cost("CPU", 44.0), "input_size": [96, 96]}, {**quick, "input_size": [96, 96]}]
    table = compare([results_with_costs(tmp_path, blocks)], fmt="md", published=False, wide=True)
    words = " ".join(table.split())  # the notes are wrapped
    assert "at 96×96" in words and "5 untimed + 20 timed or 10 untimed + 50 timed" in words
    assert "measured after its evaluation" in words and "random-initialised" not in words
    assert cells_of(table)["Latency ms (CPU, 2 threads)"] == "44.00"  # the full timing only


def test_macs_missing_uncounted_ops_are_shown_as_a_lower_bound(tmp_path):
    root = results_with_costs(tmp_path, [cost("CPU", 40.0, uncounted={"_linalg_svd": 1})])
    table = compare([root], fmt="md", published=False, wide=True)
    assert cells_of(table)["MACs (G)"] == f"{MACS_LOWER_BOUND_MARK}3.000"
    assert "lower bound" in table
    rows = list(csv.DictReader(io.StringIO(compare([root], fmt="csv", published=False))))
    assert rows[0]["macs_lower_bound"] == "true" and rows[0]["macs_g"] == "3.0000"
