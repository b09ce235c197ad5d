"""The worked plugin example, ``examples/wsolbench-has``, as a user installs it (``make install``
does): listed by its entry point, conformant (``wsolbench check has``), and trainable end to end on
a tiny synthetic set under that set's own protocol."""

import importlib.util
import json

import pytest
import yaml

from wsolbench.cli.main import main
from wsolbench.data.synthetic import SyntheticConfig, generate

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("wsolbench_has") is None,
    reason="the example plugin is not installed: make install, or "
    "pip install -c constraints.txt -e examples/wsolbench-has",
)

TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=6, val_per_class=2, test_per_class=3
)


def test_the_example_is_listed_through_its_entry_point(capsys):
    assert main(["list", "-v"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    row = next(line for line in lines if line[:1] == ["has"])
    assert row[1] == "ok" and "wsolbench_has.method:HideAndSeek" in " ".join(row)


def test_wsolbench_check_passes(capsys):
    assert main(["check", "has"]) == 0
    out = capsys.readouterr().out
    assert "has: all" in out and "checks passed" in out and "FAIL" not in out


def test_a_tiny_run_trains_and_evaluates(tmp_path, capsys):
    root = generate(tmp_path / "tiny", TINY)
    work = tmp_path / "run"
    argv = ["run", "--method", "has", "--dataset", "synthetic", "--data-root", str(root)]
    argv += ["--protocol", str(root / "protocol.yaml"), "--work-dir", str(work), "--device", "cpu"]
    argv += ["-o", "grid_size=8", "-o", "train.max_epochs=2", "-o", "train.batch_size=8"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads((work / "result.json").read_text())
    assert result["method"] == "has" and result["pretrained"] == "none"  # from scratch: ‡
    assert result["protocol"] == yaml.safe_load((root / "protocol.yaml").read_text())["id"]
    for split in ("val", "test"):
        metrics = result["metrics"][split]["oracle"]
        assert {"maxboxacc_v2", "top1_loc", "top1_cls", "pxap"} <= set(metrics)
    assert (work / "weights.pt").is_file()
