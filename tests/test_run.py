"""`wsolbench run` of training-free methods, end to end on a tiny synthetic set, via the CLI."""

import json

import numpy as np
import pytest

from wsolbench.cli.main import main
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.results.record import load_result

TINY = SyntheticConfig(
    num_classes=3, image_size=48, train_per_class=2, val_per_class=3, test_per_class=4
)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", TINY)


def run_cli(*argv):
    return main([str(a) for a in argv])


def run_center(root, work_dir, *extra):
    """``wsolbench run --method center`` on the tiny set; returns the exit status."""
    return run_cli(
        "run",
        "--method",
        "center",
        "--dataset",
        "synthetic",
        "--data-root",
        root,
        "--protocol",
        root / "protocol.yaml",  # the tiny set's own protocol (generate writes it)
        "--work-dir",
        work_dir,
        *extra,
    )


def test_center_run_writes_a_complete_result(tiny_root, tmp_path, capsys):
    work = tmp_path / "center"
    assert run_center(tiny_root, work, "-o", "sigma=0.3") == 0
    result = load_result(work / "result.json")
    assert (result.method, result.dataset, result.protocol, result.pretrained) == (
        "center",
        "synthetic",
        f"synthetic-custom-{TINY.digest()[:8]}",
        "n/a",
    )
    assert result.config == {"sigma": 0.3}
    # what -o changed from the preset (sigma 0.25) is recorded: a table names the row by it
    assert result.overrides == {"sigma": 0.3}
    assert set(result.metrics) == {"val", "test"}
    test = result.metrics["test"]["oracle"]
    # center cannot classify: Top-k metrics are absent, not zero
    assert "top1_loc" not in test and "top1_cls" not in test
    assert 0 <= test["maxboxacc_v2"] <= 100 and 0 <= test["pxap"] <= 100
    assert test["maxboxacc_v2"] == pytest.approx(
        np.mean([test["maxboxacc_iou30"], test["maxboxacc_iou50"], test["maxboxacc_iou70"]])
    )
    assert result.counts["test"]["n_images"] == 3 * 4
    assert len(result.counts["test"]["box"]["multi"]["50"]) == 1000
    assert "select" in result.metrics["test"]
    printed = capsys.readouterr().out
    assert "maxboxacc_v2" in printed and "test split" in printed
    on_disk = json.loads((work / "result.json").read_text())
    assert on_disk["schema"] == 3 and on_disk["protocol_hash"] == result.protocol_hash
    # the counts live in the records file the result names; result.json stays a summary
    assert "counts" not in on_disk and on_disk["per_image"]["file"] == "per_image.npz"
    assert load_result(work / "result.json").counts == result.counts
    assert (work / "result.json").stat().st_size < 20_000


def test_same_seed_same_numbers_and_no_overwrite(tiny_root, tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    for work in (first, second):
        assert run_center(tiny_root, work) == 0
    assert load_result(first / "result.json").metrics == load_result(second / "result.json").metrics
    capsys.readouterr()
    assert run_center(tiny_root, first) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert run_center(tiny_root, first, "--resume") == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "centre", "--dataset", "synthetic"], "did you mean 'center'"),
        (["--method", "center", "--dataset", "cubb"], "did you mean 'cub'"),
        (["--method", "center", "--dataset", "cub"], "needs --data-root"),
        (
            ["--method", "center", "--dataset", "cub", "--data-root", "/nonexistent/x"],
            "does not exist",
        ),
        (
            ["--method", "center", "--dataset", "synthetic", "-o", "sigmaa=1"],
            "did you mean 'sigma'",
        ),
        (
            ["--method", "center", "--dataset", "synthetic", "--protocol", "cub-v1"],
            "is for dataset 'cub'",
        ),
    ],
)
def test_user_mistakes_are_one_clear_line(argv, message, tmp_path, capsys):
    assert run_cli("run", *argv, "--work-dir", tmp_path / "w") == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "w" / "result.json").exists()
