"""benchmarks/gpu_check.sh on CPU (--device cpu --quick): every step runs and writes its files."""

import json
import subprocess
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_quick_cpu_check_runs_every_step_in_under_a_minute(tmp_path):
    start = time.perf_counter()
    done = subprocess.run(
        ["bash", str(SCRIPT), "--device", "cpu", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert elapsed < 60, f"gpu_check --quick took {elapsed:.0f} s"
    (record_path,) = tmp_path.glob("gpu_check-*-quick.json")
    record = json.loads(record_path.read_text())
    assert record["device"] == "cpu" and record["device_name"] and record["quick"] is True
    assert record["skipped"] == []
    profiled = {(c["method"], c["amp"]) for c in record["inference"]}
    methods = {"center", "cam", "tedloc", "clip_patch", "clip_gradcam"}
    assert profiled == {(m, a) for m in methods for a in ("none", "bfloat16")}
    for cost in record["inference"]:
        assert cost["latency_ms"]["median"] > 0 and cost["timing_conditions"]["cpus"] >= 1
    for name in ("cam", "tedloc"):
        train = record["training"]["methods"][name]
        assert train["model_step_images_per_s"] > 0 and train["data_images_per_s"] > 0
        assert train["end_to_end_images_per_s"] > 0 and train["loader_workers"] >= 0
    text = record_path.with_suffix(".md").read_text()
    assert text.startswith(f"# Device check: {record['device_name']}")
    assert "| clip_gradcam | bfloat16 |" in text and "| tedloc | 96×96 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only machine")
def test_without_a_gpu_the_default_device_is_one_error_line(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: no CUDA device here")
    assert not list(tmp_path.iterdir())
