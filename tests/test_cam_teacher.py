"""TeD-Loc's cam teacher (wsolbench/blocks/cam_teacher.py): the cam run on the student's own data
that TeD-Loc takes its pseudo-labels from by default, on every dataset — built once in a child
process, cached whole or not at all by everything that decides its weights (the data fingerprint
and protocol included), and named by its weights in every TeD-Loc result. ``synthcam-v1`` is its
synthetic-v1 case. The conftest makes the teacher a one-epoch tiny cam here."""

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from test_prepare import make_cub

from wsolbench.blocks import cam_teacher
from wsolbench.blocks.cam_teacher import (
    SYNTHCAM,
    CamTeacherError,
    ensure_cam_teacher,
    run_dir,
    synthetic_training_data,
)
from wsolbench.cli.main import main
from wsolbench.config import resolve_config
from wsolbench.data.cub import convert_cub
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.method import TrainingData, build_method
from wsolbench.protocol import PROTOCOL_DIR
from wsolbench.registry import get_method
from wsolbench.runs.rebuild import load_run
from wsolbench.util.cache import default_cache_dir

TOWERS_OFF = ("backbone.pretrained=false", "text.pretrained=false")  # the teacher stays


def _tiny_backbone() -> str:
    """The backbone override of the tiny cam teacher the conftest makes."""
    return next(o for o in cam_teacher.DEFAULT_CONFIG.overrides if o.startswith("backbone.kw"))


def _run_argv(work: Path, *extra: str) -> list[str]:
    argv = ["run", "--method", "tedloc", "--work-dir", str(work), *extra]
    for override in ("text.pretrained=false", "train.max_epochs=1"):
        argv += ["-o", override]
    return argv


def test_the_default_teacher_is_a_cam_run_on_every_dataset():
    tedloc = get_method("tedloc")
    for dataset in ("synthetic", "cub", "ilsvrc", None):
        assert resolve_config(tedloc, dataset)["teacher"] == "cam"


def test_it_is_a_finished_one_thread_cam_run_built_once(monkeypatch):
    data = synthetic_training_data()
    folder = ensure_cam_teacher(data)  # the session's private cache: the other tests reuse it
    assert folder == run_dir(data) and folder.name == f"{SYNTHCAM}-{cam_teacher.digest(data)}"
    assert {p.name for p in folder.iterdir()} >= {"config.yaml", "weights.pt", "result.json"}
    result = json.loads((folder / "result.json").read_text())
    assert result["method"] == "cam" and result["seed"] == 0
    assert result["env"]["torch_threads"] == 1  # whatever this process uses
    assert result["data_fingerprint"]["sha256"] == data.data_fingerprint
    calls = []
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: calls.append(a))
    assert ensure_cam_teacher(data) == folder and calls == []  # cached: no second run
    # no partial work dir left (the build's lock file may stay)
    assert not [p for p in folder.parent.iterdir() if p.is_dir() and p.name.startswith(".")]


def test_a_cache_entry_that_is_not_the_run_its_name_says_is_refused(tmp_path):
    """The entry's name is a digest of what decides the teacher; a folder under that name holding
    another run (placed by hand, another seed) is refused, not taught from."""
    import shutil

    data = synthetic_training_data()
    entry = run_dir(data, cache_dir=tmp_path)
    shutil.copytree(ensure_cam_teacher(data), entry)
    assert ensure_cam_teacher(data, cache_dir=tmp_path) == entry  # the very run: used
    result = json.loads((entry / "result.json").read_text())
    (entry / "result.json").write_text(json.dumps({**result, "seed": 1}))
    with pytest.raises(CamTeacherError, match=r"holds another run \(seed differ\).*delete it"):
        ensure_cam_teacher(data, cache_dir=tmp_path)


def test_the_digest_names_what_decides_the_weights():
    data, base = synthetic_training_data(), cam_teacher.DEFAULT_CONFIG
    digests = {
        cam_teacher.digest(data),
        cam_teacher.digest(data, replace(base, seed=1)),
        cam_teacher.digest(data, replace(base, threads=2)),
        cam_teacher.digest(data, replace(base, overrides=("train.optimizer.lr=0.05",))),
        cam_teacher.digest(replace(data, data_fingerprint="0" * 64)),  # other data
        cam_teacher.digest(replace(data, protocol_hash="1" * 64)),  # another protocol
        cam_teacher.digest(replace(data, device="cuda:1")),
    }
    assert len(digests) == 7
    assert cam_teacher.digest(replace(data, device="cuda:0")) == cam_teacher.digest(
        replace(data, device="cuda")
    )  # the kind of device, not its index


def test_a_failed_build_caches_nothing_and_says_so():
    data = synthetic_training_data()
    broken = cam_teacher.CamTeacherConfig(overrides=("backbone.name=no_such_network",))
    with pytest.raises(CamTeacherError, match=f"teacher {SYNTHCAM} failed .*nothing was cached"):
        ensure_cam_teacher(data, broken)
    assert not run_dir(data, broken).exists()
    left = run_dir(data, broken).parent.iterdir()
    assert not [p for p in left if p.is_dir() and p.name.startswith(".")]


def test_an_interrupted_build_resumes_where_it_stopped(tmp_path, monkeypatch):
    """The teacher is a whole cam run (hours on CUB): Ctrl-C keeps its checkpoints, and the next
    build resumes them; a build that fails leaves nothing."""
    # no data is read: the child run is a stand-in
    data = TrainingData("synthetic", "synthetic-v1", "synthetic-v1", "h", tmp_path, "f", "cpu")
    seen = []

    def call(command, env):
        work = Path(command[command.index("--work-dir") + 1])
        seen.append((command, sorted(p.name for p in work.iterdir()) if work.is_dir() else []))
        if len(seen) == 1:
            work.mkdir()
            (work / "epoch_3.pth").write_bytes(b"")
            raise KeyboardInterrupt
        return 1

    monkeypatch.setattr(subprocess, "call", call)
    with pytest.raises(KeyboardInterrupt):
        ensure_cam_teacher(data, cache_dir=tmp_path)
    with pytest.raises(CamTeacherError, match="nothing was cached"):
        ensure_cam_teacher(data, cache_dir=tmp_path)
    assert "--resume" in seen[1][0] and seen[1][1] == ["epoch_3.pth"]
    assert not [p for p in run_dir(data, cache_dir=tmp_path).parent.iterdir() if p.is_dir()]


def test_one_rank_of_several_does_not_build_it_and_says_how(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CamTeacherError) as error:
        ensure_cam_teacher(synthetic_training_data(), cache_dir=tmp_path)
    message = str(error.value)
    assert "wsolbench run --method cam --dataset synthetic --protocol synthetic-v1" in message
    assert "--work-dir DIR`, then pass -o teacher=run:DIR" in message
    assert not (tmp_path / "cam-teacher").exists()


def test_tedloc_names_it_and_learns_from_its_maps():
    names = ["red dotted-headed shape", "blue ringed-headed shape"] + [f"c{i}" for i in range(8)]
    cls = get_method("tedloc")
    data = synthetic_training_data()
    config = resolve_config(cls, "synthetic", [*TOWERS_OFF, _tiny_backbone()])
    method = build_method(cls, config, 10, classnames=names)
    assert "teacher" not in method.provenance  # inference and cost never build it
    method.prepare_training(data)  # what `wsolbench run` does before it records the result
    assert method.provenance["teacher"].startswith(f"run:{run_dir(data).name} (weights sha256 ")
    assert f"teacher=run:{SYNTHCAM}-" in method.pretrained
    images, labels = torch.randn(2, 3, 96, 96), torch.tensor([0, 3])
    out = method.train().loss(images, labels)
    assert "loss_teacher" not in out and float(out["pl_fg"]) >= 1
    # its pseudo-labels are the cam run's own maps (same 24×24 grid as this tiny student)
    cam = load_run(run_dir(data)).method
    with torch.no_grad():
        expected = cam.predict(images, labels).maps
    assert torch.allclose(method.teacher_maps(images, labels, torch.zeros(2, 1, 24, 24)), expected)


def test_a_run_records_it_and_a_resume_refuses_another(tmp_path, monkeypatch, capsys):
    work = tmp_path / "run"
    argv = _run_argv(work, "--dataset", "synthetic", "-o", _tiny_backbone())
    assert main(argv) == 0
    result = json.loads((work / "result.json").read_text())
    assert f"teacher=run:{SYNTHCAM}-" in result["pretrained"]
    assert result["config"]["teacher"] == "cam"
    # interrupted after training (no result yet), then the teacher changes under the same name
    (work / "result.json").unlink()
    (work / "weights.pt").unlink()
    other = replace(cam_teacher.DEFAULT_CONFIG, seed=1)
    monkeypatch.setattr(cam_teacher, "DEFAULT_CONFIG", other)
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    error = capsys.readouterr().err
    assert "error: --resume:" in error and "teacher=run:" in error, error


def test_on_other_data_the_teacher_is_trained_on_that_data(tmp_path, capsys):
    """A custom synthetic world gets its own teacher (cam-<protocol id>), never synthetic-v1's;
    synthcam-v1 by name is refused there."""
    tiny = SyntheticConfig(
        num_classes=3, image_size=32, train_per_class=4, val_per_class=2, test_per_class=2
    )
    root = generate(tmp_path / "tiny", tiny)
    args = ["--dataset", "synthetic", "--protocol", str(root / "protocol.yaml")]
    args += ["--data-root", str(root)]
    assert main(_run_argv(tmp_path / "run", *args)) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    protocol = result["protocol"]
    assert f"teacher=run:cam-{protocol}-" in result["pretrained"]
    [teacher] = (default_cache_dir() / "cam-teacher").glob(f"cam-{protocol}-*")
    recorded = json.loads((teacher / "result.json").read_text())
    assert recorded["data_fingerprint"] == result["data_fingerprint"]  # the same splits
    capsys.readouterr()
    argv = _run_argv(tmp_path / "named", *args, "-o", f"teacher={SYNTHCAM}")
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"teacher {SYNTHCAM} is the cam teacher of synthetic-v1" in error
    assert "use teacher=cam" in error and "Traceback" not in error


@pytest.fixture
def tiny_cub(tmp_path):
    """A fabricated CUB release, prepared, and cub-v1 without its pin on the real test split."""
    root = tmp_path / "cub"
    convert_cub(make_cub(tmp_path / "release"), root, val_per_class=1)
    protocol = yaml.safe_load((PROTOCOL_DIR / "cub-v1.yaml").read_text())
    protocol.pop("data_fingerprint")
    protocol["id"] = "cub-fixture"
    protocol["classnames"] = str(PROTOCOL_DIR / protocol["classnames"])
    (tmp_path / "cub-fixture.yaml").write_text(yaml.safe_dump(protocol))
    return root, tmp_path / "cub-fixture.yaml"


def test_on_cub_the_teacher_is_trained_first_then_reused(tiny_cub, tmp_path, monkeypatch):
    root, protocol = tiny_cub
    args = ["--dataset", "cub", "--protocol", str(protocol), "--data-root", str(root)]
    # tiny towers: the teacher is what this test is about (a ViT-S student and a ViT-B/16 text
    # tower embedding 200 classes cost a minute here)
    args += ["-o", "backbone.pretrained=false", "-o", _tiny_backbone()]
    args += ["-o", "backbone.name=wsolcnn", "-o", "text.model=wsolbench-tiny-clip"]
    calls = []
    real_call = subprocess.call
    monkeypatch.setattr(subprocess, "call", lambda *a, **k: calls.append(a) or real_call(*a, **k))
    assert main(_run_argv(tmp_path / "first", *args)) == 0
    assert len(calls) == 1 and calls[0][0][3:7] == ["run", "--method", "cam", "--dataset"]
    first = json.loads((tmp_path / "first" / "result.json").read_text())
    assert "teacher=run:cam-cub-fixture-" in first["pretrained"]
    assert main(_run_argv(tmp_path / "second", *args, "--seed", "1")) == 0
    second = json.loads((tmp_path / "second" / "result.json").read_text())
    assert len(calls) == 1  # the cached teacher, not a second cam run
    assert second["provenance"]["teacher"] == first["provenance"]["teacher"]
    assert main(_run_argv(tmp_path / "self", *args, "-o", "teacher=self")) == 0
    alone = json.loads((tmp_path / "self" / "result.json").read_text())
    assert "teacher" not in alone["pretrained"]
    assert len(calls) == 1


def test_prepare_synthcam_names_the_folder_and_the_cache_runs_find_it_in(tmp_path, capsys):
    """prepare builds it with ensure_cam_teacher (the first test here), so the session's build is
    copied in rather than trained again: the command names the folder and the cache variable."""
    import shutil

    data = synthetic_training_data()
    shutil.copytree(ensure_cam_teacher(data), run_dir(data, cache_dir=tmp_path))
    assert main(["prepare", "synthcam", "--out", str(tmp_path)]) == 0
    folder = run_dir(data, cache_dir=tmp_path)
    assert (folder / "weights.pt").is_file()
    out = capsys.readouterr().out
    assert str(folder) in out and f"WSOLBENCH_CACHE={tmp_path}" in out


def test_a_finished_cam_run_of_the_same_settings_is_adopted_not_retrained(tmp_path, capsys):
    """A cam run of the teacher's very settings (the board's seed 0) is the teacher:
    `prepare synthcam --from RUN` takes it when every setting agrees, and names the one that
    does not."""
    cam = ["run", "--method", "cam", "--dataset", "synthetic", "--protocol", "synthetic-v1"]
    cam += ["--device", "cpu", "--threads", "1"]
    for override in cam_teacher.DEFAULT_CONFIG.overrides:
        cam += ["-o", override]
    assert main([*cam, "--seed", "1", "--work-dir", str(tmp_path / "seed1")]) == 0
    cache = tmp_path / "cache"
    capsys.readouterr()
    argv = ["prepare", "synthcam", "--out", str(cache), "--from", str(tmp_path / "seed1")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "is not the run the cam teacher synthcam-v1 would be (seed differ)" in error
    assert "--seed 0" in error and not (cache / "cam-teacher").exists()
    assert main([*cam, "--seed", "0", "--work-dir", str(tmp_path / "seed0")]) == 0
    argv[-1] = str(tmp_path / "seed0")
    assert main(argv) == 0
    folder = run_dir(synthetic_training_data(), cache_dir=cache)
    assert f"{folder}, the run of {tmp_path / 'seed0'}" in capsys.readouterr().out
    weights = (tmp_path / "seed0" / "weights.pt").read_bytes()
    assert (folder / "weights.pt").read_bytes() == weights and not (folder / "train").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # a folder like any other, shared
    assert main(["prepare", "cub", "--out", str(tmp_path / "x"), "--from", str(folder)]) == 2


def test_an_interrupted_adoption_leaves_no_hidden_folder_and_runs_again(tmp_path, monkeypatch):
    """`prepare synthcam --from RUN` copies the run into a hidden sibling of the entry: Ctrl-C (or
    a full disk) during the copy left `.synthcam-v1-<digest>.tmp-<pid>` in the cache, named by a
    process id no later command looks for."""
    import shutil

    data = synthetic_training_data()
    run = ensure_cam_teacher(data)  # the session's build: a finished cam run of these settings
    copies, copy = [], shutil.copy2

    def interrupted_copy(source, target):
        copies.append(source)
        if len(copies) == 2:  # the first file is there, the second is not
            raise KeyboardInterrupt
        return copy(source, target)

    monkeypatch.setattr(shutil, "copy2", interrupted_copy)
    with pytest.raises(KeyboardInterrupt):
        cam_teacher.adopt_run(run, data, cache_dir=tmp_path)
    assert len(copies) == 2
    assert sorted(p.name for p in (tmp_path / "cam-teacher").iterdir() if p.is_dir()) == []
    monkeypatch.setattr(shutil, "copy2", copy)
    folder = cam_teacher.adopt_run(run, data, cache_dir=tmp_path)
    assert (folder / "weights.pt").read_bytes() == (run / "weights.pt").read_bytes()
    assert [p.name for p in folder.parent.iterdir() if p.is_dir()] == [folder.name]


def test_a_failed_build_leaves_an_orphaned_build_s_folder_alone(tmp_path):
    """A tedloc run SIGKILLed alone leaves its teacher's child building on, holding
    .<entry>.partial; the next build's child is refused that folder and fails, and that failure
    must not remove the folder the orphan is still training in (hours of a CUB teacher)."""
    import fcntl

    data = synthetic_training_data()
    final = run_dir(data, cache_dir=tmp_path)
    work = final.parent / f".{final.name}.partial"
    (work / "train").mkdir(parents=True)
    (work / "train" / "epoch_7.pth").write_bytes(b"the orphan's progress")
    with open(work / ".lock", "a+") as orphan:
        fcntl.flock(orphan, fcntl.LOCK_EX)
        orphan.write("process 4242 (wsolbench run --method cam)\n")
        orphan.flush()
        with pytest.raises(cam_teacher.CamTeacherError, match="failed"):
            ensure_cam_teacher(data, cache_dir=tmp_path)
    assert (work / "train" / "epoch_7.pth").read_bytes() == b"the orphan's progress"
