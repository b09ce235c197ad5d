"""Cost columns of leaderboards: Params and MACs, and latency never mixed across devices."""

import csv
import io
import json
import shutil
from pathlib import Path

from wsolbench.leaderboard import compare

CAM = Path(__file__).parent / "fixtures" / "results" / "cub" / "cam"


def cost(device_name: str, median: float, params: int = 2_000_000, macs: int = 3_000_000_000):
    """A cost block as wsolbench.profile writes it (the fields the tables read)."""
    return {
        "params": {"total": params + 5, "trainable": params, "inference": params},
        "macs": macs,
        "macs_counter": "test",
        "latency_ms": {"median": median, "p90": median * 1.5, "batch": 1, "warmup": 10, "runs": 50},
        "device": "cuda:0" if "GPU" in device_name else "cpu",
        "device_name": device_name,
        "threads": 2,
        "amp": "none",
    }


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
    table = compare([root], fmt="md", published=False)
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
    table = compare([tmp_path], fmt="md", published=False)
    assert "MACs" not in table and "Latency" not in table
