"""synthcam (wsolbench/blocks/synthcam.py): the cam run on synthetic that TeD-Loc's synthetic
preset takes its pseudo-labels from — built once in a child process with one torch thread, cached
whole or not at all, and named by its weights in every TeD-Loc result. The conftest makes
``synthcam-v1`` a one-epoch tiny cam here."""

import json
import subprocess
from dataclasses import replace

import pytest
import torch

from wsolbench.blocks import synthcam
from wsolbench.blocks.synthcam import SYNTHCAM, SynthCamError, ensure_synthcam, run_dir
from wsolbench.cli.main import main
from wsolbench.config import resolve_config
from wsolbench.method import build_method
from wsolbench.registry import get_method
from wsolbench.runs.rebuild import load_run


def _tiny_backbone() -> str:
    """The backbone override of the tiny synthcam-v1 the conftest makes."""
    return next(o for o in synthcam.DEFAULT_CONFIG.overrides if o.startswith("backbone."))


def test_the_synthetic_preset_learns_from_synthcam_and_the_spec_default_stays_self():
    tedloc = get_method("tedloc")
    assert resolve_config(tedloc, "synthetic")["teacher"] == SYNTHCAM
    assert resolve_config(tedloc, "cub")["teacher"] == "self"
    assert resolve_config(tedloc, None)["teacher"] == "self"


def test_it_is_a_finished_one_thread_cam_run_built_once(monkeypatch):
    folder = ensure_synthcam()  # the session's private cache: the other tests reuse it
    assert folder == run_dir() and folder.name == f"{SYNTHCAM}-{synthcam.DEFAULT_CONFIG.digest()}"
    assert {p.name for p in folder.iterdir()} >= {"config.yaml", "weights.pt", "result.json"}
    result = json.loads((folder / "result.json").read_text())
    assert result["method"] == "cam" and result["seed"] == 0
    assert result["env"]["torch_threads"] == 1  # whatever this process uses
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: calls.append(a))
    assert ensure_synthcam() == folder and calls == []  # cached: no second run
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]  # no temporary left


def test_the_digest_names_what_decides_the_weights():
    base = synthcam.DEFAULT_CONFIG
    digests = {
        base.digest(),
        replace(base, seed=1).digest(),
        replace(base, threads=2).digest(),
        replace(base, overrides=(*base.overrides, "train.optimizer.lr=0.05")).digest(),
    }
    assert len(digests) == 4
    assert base.digest() == synthcam.SynthCamConfig(overrides=base.overrides).digest()


def test_a_failed_build_caches_nothing_and_says_so():
    broken = synthcam.SynthCamConfig(overrides=("backbone.name=no_such_network",))
    with pytest.raises(SynthCamError, match=f"building {SYNTHCAM} failed .*nothing was cached"):
        ensure_synthcam(broken)
    assert not run_dir(broken).exists()
    assert not [p for p in run_dir(broken).parent.iterdir() if ".tmp-" in p.name]


def test_one_rank_of_several_does_not_build_it(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SynthCamError, match="wsolbench prepare synthcam"):
        ensure_synthcam(cache_dir=tmp_path)
    assert not (tmp_path / "synthcam").exists()


def test_tedloc_names_it_and_learns_from_its_maps():
    names = ["red dotted-headed shape", "blue ringed-headed shape"] + [f"c{i}" for i in range(8)]
    cls = get_method("tedloc")
    tiny = _tiny_backbone()  # the student on synthcam's 24×24 grid
    towers_off = ["backbone.pretrained=false", "text.pretrained=false"]  # the teacher stays
    config = resolve_config(cls, "synthetic", [*towers_off, tiny])
    method = build_method(cls, config, 10, classnames=names)
    assert "teacher" not in method.provenance  # inference and cost never build it
    method.prepare_training()  # what `wsolbench run` does before it records the result
    assert method.provenance["teacher"].startswith(f"run:{run_dir().name} (weights sha256 ")
    assert f"teacher=run:{run_dir().name}" in method.pretrained
    images, labels = torch.randn(2, 3, 96, 96), torch.tensor([0, 3])
    out = method.train().loss(images, labels)
    assert "loss_teacher" not in out and float(out["pl_fg"]) >= 1
    # its pseudo-labels are the cam run's own maps (same 24×24 grid as this tiny student)
    cam = load_run(run_dir()).method
    with torch.no_grad():
        expected = cam.predict(images, labels).maps
    assert torch.allclose(method.teacher_maps(images, labels, torch.zeros(2, 1, 24, 24)), expected)


def test_a_run_records_it_and_a_resume_refuses_another(tmp_path, monkeypatch, capsys):
    work = tmp_path / "run"
    argv = ["run", "--method", "tedloc", "--dataset", "synthetic", "--work-dir", str(work)]
    tiny = _tiny_backbone()  # the student on synthcam's 24×24 grid
    for override in ("text.pretrained=false", tiny, "train.max_epochs=1"):
        argv += ["-o", override]
    assert main(argv) == 0
    result = json.loads((work / "result.json").read_text())
    assert f"teacher=run:{run_dir().name} (weights sha256 " in result["pretrained"]
    # interrupted after training (no result yet), then the teacher changes under the same name
    (work / "result.json").unlink()
    (work / "weights.pt").unlink()
    other = replace(synthcam.DEFAULT_CONFIG, seed=1)
    monkeypatch.setattr(synthcam, "DEFAULT_CONFIG", other)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    error = capsys.readouterr().err
    assert "error: --resume:" in error and "teacher=run:" in error, error


def test_prepare_synthcam_builds_it_explicitly(tmp_path, capsys):
    assert main(["prepare", "synthcam", "--out", str(tmp_path)]) == 0
    folder = run_dir(cache_dir=tmp_path)
    assert (folder / "weights.pt").is_file()
    out = capsys.readouterr().out
    assert str(folder) in out and f"WSOLBENCH_CACHE={tmp_path}" in out
