"""One way to rebuild a method from a run folder (wsolbench.runs.rebuild): eval, visualize,
--profile, TeD-Loc's run: teacher and diagnose all get the same method, with pretrained loading
off, checked weights, and the protocol the run was made under even after its file moved."""

import json
import shutil

import pytest
import torch
import yaml

from wsolbench.cli.main import main
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.results.verify import BindingError
from wsolbench.runs.rebuild import load_run
from wsolbench.train.checkpoints import CheckpointError

TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=4, val_per_class=2, test_per_class=3
)
CNN = "backbone.kwargs={channels: [8], strides: [4], dilations: [1]}"


@pytest.fixture(scope="module")
def cam_run(tmp_path_factory):
    """A finished cam run made under a protocol FILE, whose record then claims pretrained
    weights: what a run made on a machine with a weight cache looks like elsewhere."""
    folder = tmp_path_factory.mktemp("rebuild")
    root = generate(folder / "data", TINY)
    protocol = folder / "elsewhere" / "tiny.yaml"
    protocol.parent.mkdir()
    shutil.copy(root / "protocol.yaml", protocol)
    shutil.copy(root / "classnames.txt", protocol.parent / "classnames.txt")
    work = folder / "run"
    argv = ["run", "--method", "cam", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--work-dir", work, "-o", "train.max_epochs=1", "-o", CNN]
    assert main([str(a) for a in argv]) == 0
    shutil.rmtree(protocol.parent)  # the protocol file is gone: the record must carry it
    # no such weights exist for wsolcnn; the record and the result say the same (they must)
    record = yaml.safe_load((work / "config.yaml").read_text())
    record["config"]["backbone"]["pretrained"] = True
    (work / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    result = json.loads((work / "result.json").read_text())
    result["config"]["backbone"]["pretrained"] = True
    (work / "result.json").write_text(json.dumps(result))
    return root, work


def test_a_run_is_rebuilt_with_its_own_protocol_and_weights(cam_run):
    root, work = cam_run
    loaded = load_run(work)
    assert loaded.protocol.num_classes == 3 and loaded.protocol.id.startswith("synthetic-custom")
    assert loaded.protocol.hash == loaded.result.protocol_hash
    saved = torch.load(work / "weights.pt", weights_only=True)
    for key, value in loaded.method.inference_state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not loaded.method.training


def test_every_weight_source_switches_pretrained_loading_off(cam_run):
    _, work = cam_run
    for weights in ("exported", "checkpoint", "none"):
        assert load_run(work, weights=weights).method.pretrained == "none"


def test_visualize_rebuilds_a_protocol_file_run_after_the_file_moved(cam_run, tmp_path):
    root, work = cam_run
    out = tmp_path / "figures"
    assert (
        main(["visualize", str(work), "--n", "4", "--data-root", str(root), "--output", str(out)])
        == 0
    )
    assert (out / "cam-seed0-overlays.png").is_file()


def test_visualize_refuses_other_data_than_the_run_s(cam_run, tmp_path, capsys):
    _, work = cam_run
    other = generate(tmp_path / "other", SyntheticConfig(**{**TINY.__dict__, "seed": 3}))
    argv = ["visualize", str(work), "--n", "2", "--data-root", str(other)]
    assert main([*argv, "--output", str(tmp_path / "f")]) == 2
    assert "is not the data" in capsys.readouterr().err


def test_profile_of_a_finished_run_rebuilds_without_weights(cam_run, tmp_path):
    root, work = cam_run
    copy = tmp_path / "copy"
    shutil.copytree(work, copy)
    record = yaml.safe_load((copy / "config.yaml").read_text())
    record["config"]["backbone"]["pretrained"] = False  # as the run was made
    (copy / "config.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    result = json.loads((copy / "result.json").read_text())
    result["config"]["backbone"]["pretrained"] = False
    (copy / "result.json").write_text(json.dumps(result))
    argv = ["run", "--method", "cam", "--dataset", "synthetic", "--data-root", str(root)]
    argv += ["--protocol", str(root / "protocol.yaml"), "--work-dir", str(copy), "--resume"]
    argv += ["-o", "train.max_epochs=1", "-o", CNN, "--profile", "--profile-runs", "1"]
    argv += ["--profile-warmup", "0", "--profile-throughput-runs", "1", "--profile-threads", "1"]
    assert main(argv) == 0
    cost = json.loads((copy / "result.json").read_text())["cost"]
    assert cost["params"]["inference"] > 0


def test_missing_or_foreign_weights_are_clear_errors(cam_run, tmp_path):
    _, work = cam_run
    bare = tmp_path / "bare"
    shutil.copytree(work, bare)
    (bare / "weights.pt").unlink()
    with pytest.raises(CheckpointError, match="holds no exported weights"):
        load_run(bare)
    torch.save({"something": torch.zeros(2)}, bare / "weights.pt")
    with pytest.raises(BindingError, match="is not the weights .* records"):
        load_run(bare)
