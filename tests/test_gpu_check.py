"""benchmarks/gpu_check.sh on CPU (--device cpu --quick): every step runs and writes its files."""

import json
import subprocess
import sys
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
    # the record names what made its figures beyond the device: the code, libraries and TF32
    env = record["env"]
    code = env["code"]["wsolbench"]
    assert len(code.get("commit", code.get("files_sha256", ""))) in (40, 64)
    assert env["torch"] == record["torch"] and "cudnn_allow_tf32" in env["determinism"]
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
    named = f"commit {code['commit'][:12]}" if "commit" in code else "files sha256 "
    assert f"wsolbench {named}" in text
    assert "| clip_gradcam | bfloat16 |" in text and "| tedloc | 96×96 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU-only machine")
def test_without_a_gpu_the_default_device_is_one_error_line(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: no CUDA device here")
    assert not list(tmp_path.iterdir())


def test_a_failing_measurement_is_recorded_and_the_check_goes_on(tmp_path):
    """--dry-run (the CPU path of the GPU check): a method that cannot be built is one recorded
    error; every other measurement is still made and written."""
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(tmp_path)]
        + ["--methods", "center", "nosuchmethod", "cam"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    (record_path,) = tmp_path.glob("gpu_check-*-quick.json")
    record = json.loads(record_path.read_text())
    assert record["finished"] is True
    assert [e["step"] for e in record["errors"]] == [
        "profile nosuchmethod amp=none",
        "profile nosuchmethod amp=bfloat16",
    ]
    assert "nosuchmethod" in record["errors"][0]["error"]
    assert {c["method"] for c in record["inference"]} == {"center", "cam"}
    assert set(record["training"]["methods"]) == {"cam"}
    assert "Failed: profile nosuchmethod amp=none" in record_path.with_suffix(".md").read_text()


def test_a_check_cut_short_keeps_what_it_measured(tmp_path):
    """Killed (as a timeout or a lost machine would) once its first measurement is on disk, the
    check leaves a whole record of what it measured, marked unfinished."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run"]
        + ["--out", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            found = list(tmp_path.glob("gpu_check-*-quick.json"))
            if found and json.loads(found[0].read_text())["inference"]:
                path = found[0]
                break
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait()
    assert path is not None, "no measurement was written before the check ended"
    record = json.loads(path.read_text())  # whole: written atomically
    assert record["finished"] is False and record["inference"][0]["method"] == "center"
    assert "Unfinished: written after" in path.with_suffix(".md").read_text()
