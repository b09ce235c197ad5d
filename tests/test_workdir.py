"""Every result means what it says: data identity, resume that checks before it trusts, the lock,
validation before the first step, a reusable dir after a user mistake, a quiet console.

Each test reproduces a case a hostile user found on the harness (issue 10) end to end through the
command line, on tiny synthetic sets and the tiny trainable ``toy_method:ToyCAM``.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wsolbench.cli.main import main
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.protocol import load_protocol
from wsolbench.results import workdir
from wsolbench.results.per_image import copy_result
from wsolbench.results.record import load_result, save_result

TESTS = Path(__file__).resolve().parent
TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=6, val_per_class=2, test_per_class=3
)
# Issue 10's case: generated "with other generator settings (10/4/6 images per class)".
OTHER = SyntheticConfig(train_per_class=10, val_per_class=4, test_per_class=6, image_size=48)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("workdir") / "tiny", TINY)
    return root, root / "protocol.yaml"


def toy_args(tiny, work, *extra):
    root, protocol = tiny
    argv = ["run", "--method", "toy_method:ToyCAM", "--dataset", "synthetic"]
    argv += ["--data-root", root, "--protocol", protocol, "--work-dir", work, "--device", "cpu"]
    return [str(a) for a in (*argv, *extra)]


def run(argv, capsys):
    """``wsolbench`` in this process: (exit status, stderr)."""
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def subprocess_env():
    return {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


# --- data identity ---------------------------------------------------------------------------


def test_a_data_root_of_other_settings_is_refused_before_any_work(tmp_path, capsys):
    other = generate(tmp_path / "other", OTHER)
    started = time.monotonic()
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", other]
    status, err = run([*argv, "--work-dir", tmp_path / "w"], capsys)
    assert status == 2 and time.monotonic() - started < 30
    pins = load_protocol("synthetic-v1").data_pins
    assert "synthetic-v1" in err and pins["test"][:12] in err  # the protocol's fingerprint ...
    assert "(60 images)" in err  # ... and this root's, with its size
    assert "other settings" in err and "--protocol" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()  # nothing left behind


def test_results_of_different_data_are_never_ranked_together(tmp_path, capsys):
    # One protocol without pins (a user's own file), two data roots: same protocol hash.
    a = generate(tmp_path / "a", TINY)
    b = generate(tmp_path / "b", SyntheticConfig(**{**TINY.__dict__, "seed": 1}))
    content = (a / "protocol.yaml").read_text()
    mine = a / "mine.yaml"
    mine.write_text(content.split("data_fingerprint:")[0])
    for root, leaf in ((a, "a"), (b, "b")):
        argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", root]
        assert (
            run([*argv, "--protocol", mine, "--work-dir", tmp_path / "runs" / leaf], capsys)[0] == 0
        )
    results = [json.loads((tmp_path / "runs" / x / "result.json").read_text()) for x in "ab"]
    fingerprints = [r["data_fingerprint"]["sha256"] for r in results]
    assert fingerprints[0] != fingerprints[1]
    assert results[0]["data_fingerprint"]["splits"]["test"]["n_images"] == 9
    status, err = run(["compare", tmp_path / "runs", "--no-published"], capsys)
    assert status == 2 and "different data" in err
    assert fingerprints[0][:12] in err and fingerprints[1][:12] in err and "--by-data" in err
    assert main(["compare", str(tmp_path / "runs"), "--no-published", "--by-data"]) == 0
    out = capsys.readouterr().out
    assert out.count("| center") == 2  # one table each, never one averaged row
    assert f"Data: {fingerprints[0][:12]}" in out and f"Data: {fingerprints[1][:12]}" in out


def test_edited_mask_pixels_are_other_data(tiny, tmp_path, capsys):
    """The masks are ground truth (PxAP, Dice, mIoU score against their pixels): a copy of the
    root whose masks were blanked is other data, so its results are never ranked with the
    original's, although every record (ids, boxes, mask paths) is the same."""
    import cv2

    root, _ = tiny
    edited = shutil.copytree(root, tmp_path / "edited")
    mine = edited / "mine.yaml"
    mine.write_text((root / "protocol.yaml").read_text().split("data_fingerprint:")[0])
    for mask in sorted((edited / "masks" / "test").rglob("*.png"))[:3]:
        cv2.imwrite(str(mask), 0 * cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE))
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--protocol", mine]
    for data, leaf in ((root, "original"), (edited, "edited")):
        work = tmp_path / "runs" / leaf
        assert run([*argv, "--data-root", data, "--work-dir", work], capsys)[0] == 0
    results = [json.loads((tmp_path / "runs" / x / "result.json").read_text())
               for x in ("original", "edited")]  # fmt: skip
    splits = [r["data_fingerprint"]["splits"] for r in results]
    assert splits[0]["test"]["sha256"] == splits[1]["test"]["sha256"]  # the records: the same
    assert splits[0]["test"]["masks_sha256"] != splits[1]["test"]["masks_sha256"]
    assert splits[0]["val"]["masks_sha256"] == splits[1]["val"]["masks_sha256"]
    assert results[0]["data_fingerprint"]["sha256"] != results[1]["data_fingerprint"]["sha256"]
    status, err = run(["compare", tmp_path / "runs", "--no-published"], capsys)
    assert status == 2 and "different data" in err

    # a result of the same data fingerprinted before mask contents were: never ranked with a
    # newer one (its masks are unknown), and the refusal says why
    result = json.loads((tmp_path / "runs" / "original" / "result.json").read_text())
    assert result["data_fingerprint"]["version"] == 2
    old = load_result(tmp_path / "runs" / "original" / "result.json")
    for split in old.data_fingerprint["splits"].values():
        split.pop("masks_sha256", None)
    old.data_fingerprint.update(version=1, sha256="0" * 64)
    for leaf in ("v1", "v2"):  # as a report keeps them: the result and its records
        copy_result(tmp_path / "runs" / "original", tmp_path / "older" / leaf)
    save_result(tmp_path / "older" / "v1" / "result.json", old)
    status, err = run(["compare", tmp_path / "older", "--no-published"], capsys)
    assert status == 2 and "different data" in err and "(masks not hashed)" in err


def test_a_run_begun_before_mask_files_were_hashed_resumes_as_it_began(
    tiny, tmp_path, capsys, monkeypatch
):
    """A work dir whose record names the version-1 fingerprint of this very data (made before
    mask files were hashed) resumes, finished or not, and keeps recording version 1: its record,
    checkpoints and result agree."""
    from wsolbench.data.fingerprint import data_fingerprint

    work = tmp_path / "old"
    with monkeypatch.context() as patch:  # the older recipe: records alone
        patch.setattr(
            "wsolbench.data.sources.data_fingerprint",
            lambda splits, mask_root=None: data_fingerprint(splits),
        )
        assert main(toy_args(tiny, work, "-o", "train.max_epochs=2")) == 0
    capsys.readouterr()
    assert main(toy_args(tiny, work, "-o", "train.max_epochs=2", "--resume")) == 0  # finished
    for name in ("result.json", "weights.pt", "per_image.npz", "train/epoch_2.pth"):
        (work / name).unlink()  # stopped after its first epoch
    status, err = run(toy_args(tiny, work, "-o", "train.max_epochs=2", "--resume"), capsys)
    assert status == 0, err
    assert "begun before mask files were fingerprinted" in err
    old = load_result(work / "result.json").data_fingerprint
    assert old["version"] == 1 and "masks_sha256" not in old["splits"]["test"]
    # (a new run of this data records version 2: test_edited_mask_pixels_are_other_data)


def test_a_pinned_protocol_accepts_its_own_data(tiny, tmp_path, capsys):
    root, protocol = tiny
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", root]
    assert run([*argv, "--protocol", protocol, "--work-dir", tmp_path / "w"], capsys)[0] == 0
    assert main(["fingerprint", "--dataset", "synthetic", "--data-root", str(root)]) == 0
    assert "≠ PINNED" in capsys.readouterr().out  # the tiny set is not synthetic-v1's data


# --- resume checks before it trusts ----------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("finished") / "run"
    assert main(toy_args(tiny, work, "-o", "train.max_epochs=2")) == 0
    return work


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--seed", "1"], "seed: 0 in the work dir, 1 now"),
        (["-o", "train.max_epochs=3"], "config.train.max_epochs: 2 in the work dir, 3 now"),
        (["-o", "width=4"], "config.width: 8 in the work dir, 4 now"),
    ],
)
def test_resume_of_another_run_is_refused_naming_the_difference(
    tiny, finished, change, named, capsys
):
    before = (finished / "result.json").read_bytes()
    argv = toy_args(tiny, finished, "-o", "train.max_epochs=2", "--resume")
    status, err = run([*argv, *change], capsys)
    assert (
        status == 2 and "holds a finished run (result.json) of another run" in err and named in err
    )
    assert (finished / "result.json").read_bytes() == before


def test_resume_of_another_method_is_refused(tiny, finished, capsys):
    root, protocol = tiny
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--work-dir", finished, "--resume"]
    status, err = run(argv, capsys)
    assert status == 2 and "method: 'toycam' in the work dir, 'center' now" in err


def test_resume_of_the_same_run_keeps_it(tiny, finished, capsys):
    before = (finished / "result.json").read_bytes()
    argv = toy_args(tiny, finished, "-o", "train.max_epochs=2", "--resume")
    assert run(argv, capsys)[0] == 0
    assert (finished / "result.json").read_bytes() == before


def test_a_truncated_result_names_the_fix_that_works_and_it_works(tiny, finished, tmp_path, capsys):
    work = shutil.copytree(finished, tmp_path / "run")
    text = (work / "result.json").read_text()
    (work / "result.json").write_text(text[:300])
    argv = toy_args(tiny, work, "-o", "train.max_epochs=2", "--resume")
    status, err = run(argv, capsys)
    line = err.strip().splitlines()[-1]
    assert status == 2 and str(work / "result.json") in line, err
    assert "delete it" in line and "--resume" in line and "wsolbench eval` to" not in line
    checkpoints = {p.name: p.stat().st_mtime_ns for p in (work / "train").glob("epoch_*.pth")}
    (work / "result.json").unlink()  # the fix: the finished weights are evaluated, not retrained
    assert run(argv, capsys)[0] == 0
    assert json.loads((work / "result.json").read_text())["metrics"] == json.loads(text)["metrics"]
    assert {p.name: p.stat().st_mtime_ns for p in (work / "train").glob("epoch_*.pth")} == (
        checkpoints
    )


def test_a_copied_work_dir_resumes_from_its_own_checkpoints(tiny, finished, tmp_path, capsys):
    original = tmp_path / "original"
    shutil.copytree(finished, original)
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # the pointer in copy/train/last_checkpoint names this dir
    (copy / "result.json").unlink()  # as if the run had died after its last checkpoint
    (copy / "weights.pt").unlink()
    status, err = run(toy_args(tiny, copy, "-o", "train.max_epochs=2", "--resume"), capsys)
    assert status == 0, err
    assert (
        json.loads((copy / "result.json").read_text())["metrics"]
        == json.loads((finished / "result.json").read_text())["metrics"]
    )


def test_a_run_resumed_under_other_code_records_which_code_trained_which_epochs(
    tiny, finished, tmp_path, capsys, monkeypatch
):
    """A checkpoint carries the code that trained each of its epochs: a run interrupted at
    commit A and finished at B says so in its result, not B alone."""
    work = tmp_path / "upgraded"
    shutil.copytree(finished, work)
    for name in ("result.json", "weights.pt", "train/epoch_2.pth"):
        (work / name).unlink()  # as if it had died after its first epoch
    before = json.loads((finished / "result.json").read_text())["env"]
    assert "training_code" not in before  # one code, from the first epoch: nothing more to say
    upgraded = {"commit": "b" * 40, "dirty": False}
    monkeypatch.setattr("wsolbench.util.code_version.code_version", lambda folder: upgraded)
    status, err = run(toy_args(tiny, work, "-o", "train.max_epochs=2", "--resume"), capsys)
    assert status == 0, err
    env = json.loads((work / "result.json").read_text())["env"]
    assert env["code"]["wsolbench"]["commit"] == "b" * 40  # what evaluated it
    assert env["training_code"] == [
        {"start_epoch": 0, "code": before["code"]},
        {"start_epoch": 1, "code": env["code"]},
    ]
    # a checkpoint of a wsolbench too old to stamp it: its code is unknown, and said so
    old = tmp_path / "old"
    shutil.copytree(finished, old)
    for name in ("result.json", "weights.pt", "train/epoch_1.pth"):
        (old / name).unlink()  # trained to its end; died before evaluating
    checkpoint = torch.load(old / "train/epoch_2.pth", weights_only=False)
    del checkpoint["wsolbench_training_code"]
    torch.save(checkpoint, old / "train/epoch_2.pth")
    status, err = run(toy_args(tiny, old, "-o", "train.max_epochs=2", "--resume"), capsys)
    assert status == 0, err
    training_code = json.loads((old / "result.json").read_text())["env"]["training_code"]
    assert training_code == [{"start_epoch": 0, "code": None}]
    # reproduce names it first among the conditions that differ from a rerun's
    from wsolbench.results.environment import code_label
    from wsolbench.runs.reproduce import env_differences

    resumed, rerun = load_result(work / "result.json"), load_result(finished / "result.json")
    assert env_differences(resumed, rerun)[0] == (
        f"training_code: a resumed run, trained from epoch 1 by {code_label(before['code'])}, "
        "from epoch 2 by bbbbbbbbbbbb + toy_method bbbbbbbbbbbb; one code here"  # and the plugin's
    )


def test_a_corrupt_last_checkpoint_resumes_from_the_previous_one(tiny, finished, tmp_path, capsys):
    work = tmp_path / "corrupt"
    shutil.copytree(finished, work)
    (work / "result.json").unlink()
    (work / "train" / "epoch_2.pth").write_bytes(os.urandom(4096))
    status, err = run(toy_args(tiny, work, "-o", "train.max_epochs=2", "--resume"), capsys)
    assert status == 0, err
    assert "epoch_2.pth is unreadable" in err and "resuming from epoch_1.pth" in err
    # the redone epoch 2 gives the same weights as the uninterrupted run
    assert (
        json.loads((work / "result.json").read_text())["metrics"]
        == json.loads((finished / "result.json").read_text())["metrics"]
    )


def test_no_readable_checkpoint_gives_an_instruction_that_works(tiny, finished, tmp_path, capsys):
    work = tmp_path / "garbage"
    shutil.copytree(finished, work)
    (work / "result.json").unlink()
    for checkpoint in (work / "train").glob("epoch_*.pth"):
        checkpoint.write_bytes(b"random bytes")
    argv = toy_args(tiny, work, "-o", "train.max_epochs=2", "--resume")
    status, err = run(argv, capsys)
    assert status == 2 and f"delete {work / 'train'} and run the same command again" in err
    shutil.rmtree(work / "train")  # followed literally
    assert run(argv, capsys)[0] == 0


def test_a_second_process_on_a_busy_work_dir_stops_at_once(tiny, tmp_path):
    work = tmp_path / "busy"
    first = subprocess.Popen(
        [sys.executable, "-m", "wsolbench", *toy_args(tiny, work, "-o", "train.max_epochs=50")],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not (work / workdir.RECORD_FILE).is_file():  # the first holds the lock by now
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "wsolbench", *toy_args(tiny, work, "-o", "train.max_epochs=50")]
            + ["--resume"],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 2 and time.monotonic() - started < 10
        assert f"is in use by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()


def test_the_lock_is_exclusive_and_released(tmp_path):
    with workdir.locked(tmp_path / "w"):
        with pytest.raises(workdir.WorkDirError, match=f"in use by process {os.getpid()}"):
            with workdir.locked(tmp_path / "w"):
                pass
    with workdir.locked(tmp_path / "w"):  # released: free again
        pass


def _killed_while_writing(path: Path) -> None:
    """Write ``path`` atomically in a child process that is SIGKILLed before the rename: what a
    run killed while saving a checkpoint, weights.pt or per_image.npz leaves."""
    from wsolbench.util import atomic

    child = os.fork()
    if child == 0:  # the child dies in the writer, as a killed run does: no cleanup runs
        atomic.os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        atomic.write_bytes_atomic(path, b"half")
        os._exit(1)
    assert os.waitpid(child, 0)[1] == signal.SIGKILL


def test_the_next_holder_removes_what_a_killed_writer_left(tmp_path):
    """A run SIGKILLed while writing a checkpoint (2.4 MB on synthetic cam, hundreds on CUB),
    its weights or its per-image records left the hidden temporary file in the work dir, and
    --resume, which finished the run, never removed it."""
    work = tmp_path / "w"
    _killed_while_writing(work / "train" / "epoch_2.pth")
    _killed_while_writing(work / "weights.pt")
    (work / ".keep.tmp").write_text("not the writer's")  # not named as its temporaries are
    # visualize writes its figures into the work dir without the lock: one being written now
    (work / ".overlays.png.abcd1234.tmp").write_bytes(b"half a png")
    assert len([*work.rglob(".*.tmp")]) == 4
    with workdir.locked(work):
        pass
    left = sorted(p.name for p in work.rglob("*"))
    assert left == [".keep.tmp", ".lock", ".overlays.png.abcd1234.tmp", "train"]


# --- validation before the first step, and a reusable dir after a mistake --------------------


def test_a_test_split_defect_stops_cam_before_training(tiny, tmp_path, capsys):
    root = tmp_path / "broken"
    shutil.copytree(tiny[0], root)
    localization = root / "metadata" / "test" / "localization.txt"
    lines = localization.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",oops"
    localization.write_text("\n".join(lines) + "\n")
    work = tmp_path / "w"
    argv = ["run", "--method", "cam", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", root / "protocol.yaml", "--work-dir", work, "-o", "train.max_epochs=1"]
    started = time.monotonic()
    status, err = run(argv, capsys)
    assert status == 2 and time.monotonic() - started < 30
    assert "localization.txt" in err and "line 3" in err and "Traceback" not in err
    assert not work.exists()  # no training started, nothing left behind


def test_a_missing_image_is_found_before_training(tiny, tmp_path, capsys):
    root = tmp_path / "missing"
    shutil.copytree(tiny[0], root)
    victim = sorted((root / "images" / "train").rglob("*.png"))[-1]
    victim.unlink()
    status, err = run(toy_args((root, root / "protocol.yaml"), tmp_path / "w"), capsys)
    assert status == 2 and str(victim) in err and "does not exist" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.max_epochs=1.5", "train.max_epochs expects an integer, got 1.5"),
        ("train.augment.hflip=maybe", "train.augment.hflip expects true or false, got 'maybe'"),
        ("train.optimizer.lr=fast", "train.optimizer.lr expects a number, got 'fast'"),
        ("train.optimizer.lr=-1", "Invalid learning rate"),
        ("train.optimizer.type=Sgd", "not an optimizer mmengine knows"),
        ("train.augment.crop_scale=[0.5, 2]", "0 < min <= max <= 1"),
        ("width=wide", "width expects an integer, got 'wide'"),
        ("train.optimizer.lr=nan", "train.optimizer.lr expects a number, got 'nan'"),
        ("train.optimizer.lr=.inf", "is not a plain value"),
        ("train.augment={crop_scale: [0.5, 1.0], hflip: maybe}", "hflip expects true or false"),
        ("train.optimizer={type: SGD, lr: 0.1, nesterov: sometimes}", "nesterov expects true"),
        ("train.lr_mult={a:1}", "expects a number, got None"),
        (
            "train.lr_mult={classifer: 10}",
            "train.lr_mult key 'classifer' is part of no parameter name of method 'toycam' (it "
            "would change nothing); did you mean 'classifier'? The parameter names start with: "
            "classifier, features",
        ),
        (
            "train.lr_mult={classifier: -10}",
            "train.lr_mult.classifier must be a number >= 0 (0 freezes those parameters), not -10",
        ),
        ("train.scheduler.type=StepLR", "missing 1 required positional argument: 'step_size'"),
        ("train.scheduler.type=OneCycleLR", "a resume could not read it"),
        (
            "train.scheduler={type: MultiStepLR, milestones: [1], gamma: -5}",
            "train.scheduler.gamma must be a number > 0",
        ),
        ("train.scheduler={type: ExponentialLR, gamma: 0}", "gamma must be a number > 0"),
        (
            "train.scheduler={type: PolyLR, eta_min: -0.01}",
            "train.scheduler.eta_min must be a number >= 0",
        ),
        (
            "train.scheduler={type: MultiStepLR, milestones: [x]}",
            "train.scheduler.milestones must be epochs (positive integers such as [15, 30]), not",
        ),
        ("train.scheduler={type: MultiStepLR, milestones: [0.5]}", "milestones must be epochs"),
        ("train.optimizer.type=SparseAdam", "does not support dense gradients"),
        (
            "train.optimizer={type: Adam, betas: [0.9]}",
            "train.optimizer.betas must be two numbers in [0, 1) such as [0.9, 0.999], not [0.9]",
        ),
        ("train.max_epochs=100000000000000000000", "train.max_epochs must be an integer in"),
    ],
)
def test_override_values_are_typed_before_anything_runs(tiny, tmp_path, override, message, capsys):
    work = tmp_path / "w"
    status, err = run(toy_args(tiny, work, "-o", override), capsys)
    assert status == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not work.exists()


def test_a_step_schedule_that_never_steps_is_said_once(tiny, tmp_path, capsys):
    """Every milestone at or past max_epochs (a preset's [15, 30, 45] in a run shortened to 2
    epochs): the rate stays flat, and the record would claim a step schedule; one warning line
    says so before training. A milestone within the run: no warning."""

    def warnings_of(milestones: list[int]) -> list[str]:
        schedule = f"train.scheduler={{type: MultiStepLR, milestones: {milestones}}}"
        overrides = ["-o", "train.max_epochs=2", "-o", schedule]
        status, err = run(toy_args(tiny, tmp_path / str(milestones), *overrides), capsys)
        assert status == 0, err
        return [line for line in err.splitlines() if "never steps" in line]

    [warned] = warnings_of([2])
    assert warned.startswith("warning: train.scheduler.milestones [2] all lie at or after")
    assert "-o train.scheduler.milestones=[...]" in warned
    assert warnings_of([1]) == []


def test_numbers_yaml_reads_as_text_are_numbers(tiny, tmp_path, capsys):
    argv = toy_args(
        tiny, tmp_path / "w", "-o", "train.optimizer.lr=1e-3", "-o", "train.max_epochs=1"
    )
    assert run(argv, capsys)[0] == 0
    config = json.loads((tmp_path / "w" / "result.json").read_text())["config"]
    assert config["train"]["optimizer"]["lr"] == 0.001 and config["train"]["max_epochs"] == 1


def test_a_start_that_saved_nothing_leaves_the_dir_reusable(tiny, tmp_path, capsys):
    work = tmp_path / "w"
    # A start that wrote its record and then died before the first checkpoint.
    workdir.write_record(work, {"method": "toycam", "seed": 0, "config": {"width": 99}})
    status, err = run(toy_args(tiny, work, "-o", "train.max_epochs=1"), capsys)
    assert status == 0, err
    assert json.loads((work / "result.json").read_text())["config"]["width"] == 8


# --- console ---------------------------------------------------------------------------------


def test_a_cam_run_keeps_mmengine_s_dump_in_the_log_file(tiny, tmp_path):
    work = tmp_path / "cam"
    root, protocol = tiny
    argv = ["run", "--method", "cam", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--work-dir", work, "-o", "train.max_epochs=2"]
    argv += ["-o", "backbone.kwargs={channels: [8], strides: [4], dilations: [1]}"]
    done = subprocess.run(
        [sys.executable, "-m", "wsolbench", *map(str, argv)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stdout + done.stderr
    log = "".join(p.read_text() for p in (work / "train").rglob("*.log"))
    for dump in ("System environment", "Runtime environment", "paramwise_options"):
        assert dump in log and dump not in console
    assert "\r" not in console  # not a terminal: plain lines, no bar redrawn in place
    lines = done.stderr.splitlines()
    what = next(i for i, line in enumerate(lines) if line.startswith("cam on synthetic-custom-"))
    assert "· data " in lines[what] and "seed 0" in lines[what] and "device cpu" in lines[what]
    assert lines[what + 1].startswith("pretrained: none (no pretrained weights ‡)")
    assert any(line.startswith("epoch 2/2:") and "loss_cls=" in line for line in lines)
    assert len(console.splitlines()) < 40, console
    assert "maxboxacc_v2" in done.stdout  # the result table


def test_evaluate_maps_prints_a_column_for_every_requested_iou(tiny, tmp_path, capsys):
    import numpy as np

    root = tiny[0]
    meta_dir = root / "metadata" / "test"
    maps = tmp_path / "maps"
    for image_id in (meta_dir / "image_ids.txt").read_text().split():
        path = maps / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.random.default_rng(0).random((32, 32)).astype(np.float32))
    argv = ["evaluate-maps", "--maps", maps, "--metadata", meta_dir]
    assert main([str(a) for a in (*argv, "--size", 32, 32, "--iou", 40, 60)]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if "policy" in line)
    assert "maxboxacc_iou40" in header and "maxboxacc_iou60" in header
    status, err = run([*argv, "--size", "0", "0"], capsys)
    assert status == 2 and "--size 0 0" in err and "Traceback" not in err


def test_a_command_line_mistake_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate-maps", "--maps", "m", "--metadata", "x", "--size", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "--size" in err and "wsolbench evaluate-maps --help" in err


def test_a_tampered_count_array_is_an_error_naming_the_file(tmp_path, capsys):
    fixture = TESTS / "fixtures" / "results" / "cub" / "cam" / "seed0" / "result.json"
    record = json.loads(fixture.read_text())
    record["counts"]["test"]["box"]["multi"]["50"] = record["counts"]["test"]["box"]["multi"]["50"][
        :3
    ]
    path = tmp_path / "run" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    for policy in ("fixed:0.5", "oracle", "select"):
        status, err = run(["compare", path.parent, "--policy", policy, "--no-published"], capsys)
        assert status == 2 and str(path) in err and "box.multi.50 must hold 10 integers" in err
        assert "Traceback" not in err


# --- what the review of this work found ------------------------------------------------------


def test_torchrun_processes_without_the_pytorch_launcher_are_refused(
    tiny, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    status, err = run(toy_args(tiny, tmp_path / "w"), capsys)
    assert status == 2 and "--launcher pytorch" in err
    assert not (tmp_path / "w").exists()


def test_another_tool_s_folder_is_not_taken_for_a_work_dir(tiny, tmp_path, capsys):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "config.yaml").write_text("my: important\n")
    status, err = run(toy_args(tiny, folder), capsys)
    assert status == 2 and "not a wsolbench run record" in err
    assert (folder / "config.yaml").read_text() == "my: important\n"
    (folder / "config.yaml").unlink()
    (folder / "notes.txt").write_text("mine")
    status, err = run(toy_args(tiny, folder), capsys)
    assert status == 2 and "not a wsolbench run (notes.txt)" in err
    afile = tmp_path / "afile"
    afile.write_text("x")
    status, err = run(toy_args(tiny, afile), capsys)
    assert status == 2 and "is a file; pass a folder" in err


def test_eval_takes_the_config_of_the_run_that_made_the_weights(tiny, finished, tmp_path, capsys):
    root, protocol = tiny
    argv = ["eval", "--method", "toy_method:ToyCAM", "--weights", finished / "weights.pt"]
    argv += ["--dataset", "synthetic", "--data-root", root, "--protocol", protocol]
    assert run([*argv, "--work-dir", tmp_path / "e"], capsys)[0] == 0
    made = json.loads((finished / "result.json").read_text())
    evaluated = json.loads((tmp_path / "e" / "result.json").read_text())
    assert evaluated["config"] == made["config"]  # max_epochs 2, not the default 3
    assert evaluated["metrics"] == made["metrics"]
    status, err = run([*argv, "--work-dir", tmp_path / "e2", "-o", "train.max_epochs=5"], capsys)
    assert status == 2 and "contradicts the config that made" in err
    again = [*argv, "--work-dir", tmp_path / "e"]
    status, err = run(again, capsys)
    assert status == 2 and "pass --resume" in err
    assert run([*again, "--resume"], capsys)[0] == 0  # the advice works


def test_a_run_of_a_method_given_by_import_path_can_be_rebuilt(finished):
    from wsolbench.runs.rebuild import load_run

    assert type(load_run(finished).method).__name__ == "ToyCAM"


def test_resume_with_other_weights_loaded_is_refused(tiny, finished, tmp_path, capsys):
    work = tmp_path / "other_weights"
    shutil.copytree(finished, work)
    (work / "result.json").unlink()
    record = workdir.read_record(work)
    record["pretrained"] = "run:/somewhere (weights sha256 0123456789ab)"
    workdir.write_record(work, {k: v for k, v in record.items() if k != workdir.RECORD_MARK})
    status, err = run(toy_args(tiny, work, "-o", "train.max_epochs=2", "--resume"), capsys)
    assert status == 2 and "was started with pretrained weights" in err


def test_a_resumed_run_keeps_stdout_for_results(tiny, finished, tmp_path):
    work = tmp_path / "resumed"
    shutil.copytree(finished, work)
    (work / "result.json").unlink()
    (work / "train" / "epoch_2.pth").unlink()
    # the threads it was started with: this process's count, which an earlier test's --threads
    # may have changed (a fresh process would take the machine's and be refused)
    threads = str(workdir.read_record(work)["threads"])
    done = subprocess.run(
        [sys.executable, "-m", "wsolbench", *toy_args(tiny, work, "-o", "train.max_epochs=2")]
        + ["--resume", "--threads", threads],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loads checkpoint" not in done.stdout and done.stdout.startswith("toycam on ")


def test_the_checkpoint_hook_s_paths_follow_a_copied_dir(tmp_path):
    from types import SimpleNamespace

    from wsolbench.train.checkpoints import best_checkpoint
    from wsolbench.train.engine import ReplayHook

    checkpoint = {
        "message_hub": {
            "runtime_info": {
                "best_ckpt": "/elsewhere/train/best_maxboxacc_v2_epoch_3.pth",
                "last_ckpt": "/elsewhere/train/epoch_4.pth",
                "epoch": 4,
            }
        }
    }
    ReplayHook().after_load_checkpoint(SimpleNamespace(work_dir=str(tmp_path)), checkpoint)
    info = checkpoint["message_hub"]["runtime_info"]
    assert info["best_ckpt"] == str(tmp_path / "best_maxboxacc_v2_epoch_3.pth")
    assert info["last_ckpt"] == str(tmp_path / "epoch_4.pth") and info["epoch"] == 4
    train = tmp_path / "w" / "train"
    train.mkdir(parents=True)
    for epoch in (9, 12):
        (train / f"best_maxboxacc_v2_epoch_{epoch}.pth").write_bytes(b"")
    assert best_checkpoint(tmp_path / "w").name == "best_maxboxacc_v2_epoch_12.pth"


def test_a_result_claiming_a_shipped_protocol_on_other_data_is_refused(tmp_path, capsys):
    fixture = TESTS / "fixtures" / "results" / "cub" / "cam" / "seed0" / "result.json"
    record = json.loads(fixture.read_text())
    shipped = load_protocol("synthetic-v1")
    record.update(protocol="synthetic-v1", protocol_hash=shipped.hash, dataset="synthetic")
    path = tmp_path / "fake" / "result.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    status, err = run(["compare", path.parent, "--no-published"], capsys)
    assert status == 2 and "is not the data synthetic-v1 pins" in err
