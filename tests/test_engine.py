"""Training through mmengine: determinism, resume after SIGKILL, torchrun, weights, bad input."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.results.record import load_result

TESTS = Path(__file__).resolve().parent
TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=8, val_per_class=2, test_per_class=4
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny synthetic root and its own protocol (its 32×32 size, 3 classes, its data pinned)."""
    root = generate(tmp_path_factory.mktemp("engine") / "data", TINY)
    return root, root / "protocol.yaml"


def wsolbench(*argv, check=True, **kwargs):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    command = [sys.executable, "-m", "wsolbench", *map(str, argv)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, **kwargs)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def run_args(tiny, work_dir, *extra):
    root, protocol = tiny
    return [
        "run",
        "--method",
        "toy_method:ToyCAM",
        "--dataset",
        "synthetic",
        "--data-root",
        root,
        "--protocol",
        protocol,
        "--work-dir",
        work_dir,
        "--device",
        "cpu",
        *extra,
    ]


def eval_args(tiny, weights, work_dir, *extra):
    root, protocol = tiny
    return [
        "eval",
        "--method",
        "toy_method:ToyCAM",
        "--weights",
        weights,
        "--dataset",
        "synthetic",
        "--data-root",
        root,
        "--protocol",
        protocol,
        "--work-dir",
        work_dir,
        *extra,
    ]


def metrics(work_dir):
    return json.loads((Path(work_dir) / "result.json").read_text())["metrics"]


@pytest.fixture(scope="module")
def reference_run(tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("reference") / "run"
    wsolbench(*run_args(tiny, work))
    return work


def test_training_writes_result_weights_and_checkpoints(reference_run):
    result = json.loads((reference_run / "result.json").read_text())
    assert result["method"] == "toycam" and result["pretrained"] == "none"
    assert result["config"]["train"]["max_epochs"] == 3
    assert "top1_cls" in result["metrics"]["test"]["oracle"]
    assert result["env"]["torch_threads"] >= 1  # float reductions depend on it
    state = torch.load(reference_run / "weights.pt", weights_only=True)
    assert set(state) == {
        "features.0.weight",
        "features.0.bias",
        "features.2.weight",
        "features.2.bias",
        "classifier.weight",
        "classifier.bias",
    }
    assert (reference_run / "train" / "epoch_3.pth").is_file()


def test_same_seed_twice_gives_identical_metrics(tiny, reference_run, tmp_path, capsys):
    wsolbench(*run_args(tiny, tmp_path / "again"))  # another process, as a rerun would be
    assert metrics(tmp_path / "again") == metrics(reference_run)
    assert in_process(run_args(tiny, tmp_path / "seed1", "--seed", "1"), capsys)[0] == 0
    assert metrics(tmp_path / "seed1") != metrics(reference_run)


def test_resume_after_sigkill_matches_uninterrupted_run(tiny, tmp_path, capsys):
    longer = ("-o", "train.max_epochs=8")  # a window between the first checkpoint and the end
    wsolbench(*run_args(tiny, tmp_path / "whole", *longer))
    work = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "wsolbench", *map(str, run_args(tiny, work, *longer))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not (work / "train" / "last_checkpoint").exists():
        assert process.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (work / "result.json").exists()
    status, err = in_process(run_args(tiny, work, *longer), capsys)
    assert status == 2 and "unfinished run" in err
    wsolbench(*run_args(tiny, work, *longer, "--resume"))
    assert metrics(work) == metrics(tmp_path / "whole")


def ddp_env():
    """The environment of a two-process run: the test methods importable, one thread a rank."""
    path = f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def ddp_run_args(tiny, work_dir, launcher):
    """Two epochs of ToySlowSave (rank 0 writes each checkpoint two seconds late), one image per
    evaluation batch: a convolution's floats depend on the batch it runs in, and a rank's shard
    of batches is not the whole split's, so only batches of one compare across launches."""
    argv = run_args(tiny, work_dir, "--launcher", launcher, "-o", "train.max_epochs=2")
    argv[argv.index("toy_method:ToyCAM")] = "slow_checkpoints:ToySlowSave"
    return [*argv, "--batch-size", "1"]


@pytest.fixture(scope="module")
def torchrun_run(tiny, tmp_path_factory):
    """A torchrun launch of two ranks (:func:`ddp_run_args`), shared by the tests of DDP."""
    work = tmp_path_factory.mktemp("torchrun") / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-port", "29517", "-m", "wsolbench"]
    command += map(str, ddp_run_args(tiny, work, "pytorch"))
    done = subprocess.run(command, env=ddp_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return work


def test_torchrun_two_ranks_write_one_whole_result(torchrun_run):
    assert sorted(p.name for p in torchrun_run.glob("result*.json")) == ["result.json"]
    result = load_result(torchrun_run / "result.json")
    assert result.env["world_size"] == 2
    assert result.counts["test"]["n_images"] == 3 * 4  # the whole split, each image once
    assert result.counts["val"]["n_images"] == 3 * 2


def test_ddp_ranks_evaluate_the_weights_rank_0_exported(tiny, torchrun_run, tmp_path):
    """Rank 0 alone writes checkpoints, here slowly: every rank must evaluate the last one, so the
    two ranks' sharded counts equal a single process's evaluation of the exported weights.pt,
    metric for metric (a rank reading epoch 1's checkpoint would differ)."""
    single = tmp_path / "single"
    eval_argv = eval_args(tiny, torchrun_run / "weights.pt", single, "--device", "cpu")
    eval_argv[eval_argv.index("toy_method:ToyCAM")] = "slow_checkpoints:ToySlowSave"
    wsolbench(*eval_argv, "--batch-size", "1", "-o", "train.max_epochs=2")
    assert metrics(torchrun_run) == metrics(single)


def test_slurm_tasks_write_the_result_torchrun_ranks_write(tiny, torchrun_run, tmp_path):
    """``--launcher slurm``: the two tasks of one job step (as ``srun --ntasks 2`` sets them up,
    faked here by their environment) train as one run, and give torchrun's two ranks' numbers."""
    work = tmp_path / "slurm"
    argv = [sys.executable, "-m", "wsolbench", *map(str, ddp_run_args(tiny, work, "slurm"))]
    step = {"SLURM_NTASKS": "2", "SLURM_NODELIST": "localhost", "MASTER_PORT": "29521"}
    tasks = [
        subprocess.Popen(
            argv,
            env={**ddp_env(), **step, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    outputs = [task.communicate(timeout=300) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs[0][1][-3000:]
    result = load_result(work / "result.json")
    assert result.env["world_size"] == 2 and result.counts["test"]["n_images"] == 3 * 4
    assert result.metrics == load_result(torchrun_run / "result.json").metrics


def test_slurm_launcher_outside_a_job_step_is_one_error_line(tiny, tmp_path, capsys, monkeypatch):
    from wsolbench.cli.main import main

    for name in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"):
        monkeypatch.delenv(name, raising=False)
    status = main([str(a) for a in run_args(tiny, tmp_path / "w", "--launcher", "slurm")])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert "error: --launcher slurm runs as the tasks of a SLURM job step" in err
    assert "srun --ntasks N" in err and not (tmp_path / "w" / "result.json").exists()


def test_eval_reproduces_the_run_from_its_weights(tiny, reference_run, tmp_path):
    wsolbench(*eval_args(tiny, reference_run / "weights.pt", tmp_path / "eval"))
    evaluated = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert evaluated["metrics"] == metrics(reference_run)
    sha256 = hashlib.sha256((reference_run / "weights.pt").read_bytes()).hexdigest()
    assert evaluated["pretrained"] == f"file:weights.pt (sha256 {sha256[:12]})"


def in_process(argv, capsys) -> tuple[int, str]:
    """``wsolbench ARGV`` in this process (a refusal needs no second start-up): (status, stderr)."""
    from wsolbench.cli.main import main

    capsys.readouterr()
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def test_weights_of_another_architecture_are_a_clear_error(tiny, reference_run, tmp_path, capsys):
    # a weights file on its own (outside its run folder: no record says which config made it)
    weights = tmp_path / "loose" / "weights.pt"
    weights.parent.mkdir()
    weights.write_bytes((reference_run / "weights.pt").read_bytes())
    status, err = in_process(eval_args(tiny, weights, tmp_path / "e", "-o", "width=4"), capsys)
    assert status == 2
    assert "does not fit method 'toycam'" in err and "of another shape" in err
    assert "Traceback" not in err
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    status, err = in_process(eval_args(tiny, garbage, tmp_path / "g"), capsys)
    assert status == 2 and "is a text file beginning 'not a torch file'" in err


def test_corrupt_checkpoint_on_resume_is_a_clear_error(tiny, reference_run, tmp_path, capsys):
    work = tmp_path / "corrupt"
    assert in_process(run_args(tiny, work, "-o", "train.max_epochs=1"), capsys)[0] == 0
    (work / "result.json").unlink()  # pretend it died after its checkpoint
    checkpoint = work / "train" / "epoch_1.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    status, err = in_process(run_args(tiny, work, "-o", "train.max_epochs=1", "--resume"), capsys)
    assert status == 2
    assert "epoch_1.pth is unreadable" in err and "Traceback" not in err


def test_unknown_train_override_is_named(tiny, tmp_path, capsys):
    status, err = in_process(run_args(tiny, tmp_path / "w", "-o", "train.max_epoch=2"), capsys)
    assert status == 2 and "did you mean 'max_epochs'" in err


def test_best_checkpoint_protocol_validates_each_epoch_and_keeps_the_best(tiny, tmp_path):
    root, protocol = tiny
    best = root / "best.yaml"  # beside the class-name file the protocol names
    best.write_text(protocol.read_text().replace("checkpoint: last", "checkpoint: best"))
    work = tmp_path / "run"
    wsolbench(*run_args((root, best), work))
    kept = list((work / "train").glob("best_maxboxacc_v2_epoch_*.pth"))
    assert len(kept) == 1
    logs = "".join(p.read_text() for p in (work / "train").rglob("*.log"))
    assert logs.count("Epoch(val)") == 3  # the selection split, once per epoch
    assert load_result(work / "result.json").counts["test"]["n_images"] == 12


def test_training_and_resuming_run_on_the_device_asked_for(tiny, tmp_path, monkeypatch):
    """mmengine moves the model to its get_device() (a GPU whenever the host has one) and loads
    a resumed checkpoint there, whatever the run asked for. Here its choice is the meta device: a
    run with --device cpu must still train and resume on the CPU, with the metrics of a run that
    was never interrupted."""
    import mmengine.runner.runner as mmengine_runner

    from wsolbench.cli.main import main

    argv = [str(a) for a in run_args(tiny, tmp_path / "run", "-o", "train.max_epochs=2")]
    assert main(argv) == 0
    whole = metrics(tmp_path / "run")
    train = tmp_path / "run" / "train"
    for leftover in (train / "epoch_2.pth", train / "last_checkpoint"):
        leftover.unlink(missing_ok=True)
    for finished in ("result.json", "weights.pt", "per_image.npz"):
        (tmp_path / "run" / finished).unlink(missing_ok=True)
    monkeypatch.setattr(mmengine_runner, "get_device", lambda: "meta")
    assert main([*argv, "--resume"]) == 0
    assert metrics(tmp_path / "run") == whole
    fresh = [str(a) for a in run_args(tiny, tmp_path / "fresh", "-o", "train.max_epochs=2")]
    assert main(fresh) == 0
    assert metrics(tmp_path / "fresh") == whole


@pytest.mark.parametrize("declared", [True, False])
def test_ddp_trains_a_method_whose_loss_drops_a_head(tiny, tmp_path, declared):
    """After its first epoch ToyFreeze's auxiliary head leaves the loss (TeD-Loc's CAM head once
    the frozen teacher is taken). Declared (``unused_parameters``), DDP finds it at every step;
    undeclared, DDP stops at the next step: the declaration is what makes it train."""
    work = tmp_path / "ddp"
    extra = ["--launcher", "pytorch", "-o", f"declare={str(declared).lower()}"]
    argv = run_args(tiny, work, *extra)
    argv[argv.index("toy_method:ToyCAM")] = "toy_method:ToyFreeze"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2"]
    command += ["--master-port", "29519", "-m", "wsolbench", *map(str, argv)]
    done = subprocess.run(command, env=ddp_env(), capture_output=True, text=True, timeout=300)
    if declared:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert load_result(work / "result.json").env["world_size"] == 2
    else:
        assert done.returncode != 0 and "find_unused_parameters" in done.stderr


def test_tedloc_declares_its_frozen_teachers_head():
    from wsolbench.config import resolve_config
    from wsolbench.method import build_method
    from wsolbench.registry import get_method

    tedloc = get_method("tedloc")
    towers_off = ["backbone.pretrained=false", "text.pretrained=false", "teacher=self"]
    for self_teacher, expected in (("frozen", True), ("live", False)):
        config = resolve_config(tedloc, "synthetic", [*towers_off, f"self_teacher={self_teacher}"])
        assert build_method(tedloc, config, 10).unused_parameters is expected


def test_two_runs_started_in_one_second_in_one_process_keep_their_own_logs(
    tiny, tmp_path, monkeypatch
):
    """mmengine names its logger and visualizer instances by the second a Runner starts, and a
    second Runner of that name reuses the first's (its files, in the first run's folder): each
    run's own log must land in its own folder, even when the first folder has moved since."""
    import mmengine.runner.runner as mmengine_runner

    from wsolbench.cli.main import main

    second = "20260101_000000"
    monkeypatch.setattr(mmengine_runner.time, "strftime", lambda *args: second)
    assert main([str(a) for a in run_args(tiny, tmp_path / "a", "-o", "train.max_epochs=1")]) == 0
    (tmp_path / "a").rename(tmp_path / "moved")  # as reproduce renames a rerun into place
    assert main([str(a) for a in run_args(tiny, tmp_path / "b", "-o", "train.max_epochs=1")]) == 0
    for run in ("moved", "b"):
        assert (tmp_path / run / "train" / second / f"{second}.log").stat().st_size > 0


def test_checkpoints_never_format_the_config_where_ctrl_c_became_a_syntax_error(
    tiny, tmp_path, capsys
):
    """mmengine formats its config with yapf for every checkpoint's meta, inside a bare
    ``except:`` that turns a Ctrl-C landing there into a SyntaxError traceback (seen at an
    epoch's end). The runner's config is never formatted: a yapf that is interrupted if called
    leaves the run finishing."""
    import mmengine.config.config as mmengine_config

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    original = mmengine_config.FormatCode
    mmengine_config.FormatCode = interrupted
    try:
        status, err = in_process(
            run_args(tiny, tmp_path / "run", "-o", "train.max_epochs=1"), capsys
        )
    finally:
        mmengine_config.FormatCode = original
    assert status == 0, err
    assert (tmp_path / "run" / "result.json").is_file()
