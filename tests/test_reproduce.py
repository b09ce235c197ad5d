"""A result another lab can reproduce (issue 21): the record names what made its numbers (code,
threads, determinism, hardware), identical records give identical metrics, and ``wsolbench
reproduce`` reruns a result from its record alone."""

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from wsolbench.cli.main import main
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.registry import get_method
from wsolbench.results.record import load_result, save_result

TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=6, val_per_class=2, test_per_class=3
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("reproduce") / "tiny", TINY)
    return root, root / "protocol.yaml"


def toy_run(tiny, work, *extra):
    root, protocol = tiny
    argv = ["run", "--method", "toy_method:ToyCAM", "--dataset", "synthetic", "--device", "cpu"]
    argv += ["--data-root", root, "--protocol", protocol, "--work-dir", work]
    return main([str(a) for a in (*argv, "-o", "train.max_epochs=2", *extra)])


@pytest.fixture(scope="module")
def one_thread(tiny, tmp_path_factory):
    work = tmp_path_factory.mktemp("runs") / "one"
    assert toy_run(tiny, work, "--threads", "1") == 0
    return work


def without_time(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "created"}


def test_identical_records_give_identical_metrics(tiny, one_thread, tmp_path):
    assert toy_run(tiny, tmp_path / "again", "--threads", "1") == 0
    first = json.loads((one_thread / "result.json").read_text())
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert without_time(first) == without_time(again)  # metrics, counts, env and all


def test_the_record_names_code_threads_determinism_and_hardware(one_thread):
    env = load_result(one_thread / "result.json").env
    assert env["torch_threads"] == 1 and env["torch_interop_threads"] >= 1
    assert (
        len(env["code"]["wsolbench"]["commit"]) == 40 or "files_sha256" in env["code"]["wsolbench"]
    )
    assert "toy_method" in env["code"]  # the plugin's own code
    assert env["determinism"] == {
        "deterministic_algorithms": False,
        "cudnn_benchmark": False,
        "cudnn_deterministic": False,
        # TF32 (GPUs of the Ampere generation on): what float32 convolutions and matmuls may use
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_precision": torch.get_float32_matmul_precision(),
    }
    assert env["cpu_model"] and env["device"] == "cpu" and env["eval_workers"] == 0
    record = yaml.safe_load((one_thread / "config.yaml").read_text())
    assert record["threads"] == 1


def test_another_thread_count_is_another_record(tiny, one_thread, tmp_path, capsys):
    assert toy_run(tiny, tmp_path / "two", "--threads", "2") == 0
    assert load_result(tmp_path / "two" / "result.json").env["torch_threads"] == 2
    assert yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())["threads"] == 2
    capsys.readouterr()
    assert toy_run(tiny, one_thread, "--threads", "2", "--resume") == 2  # not this run's
    assert "threads: 1 in the work dir, 2 now" in capsys.readouterr().err


def metric_count(run_dir) -> int:
    """How many figures the run's record holds: every metric of every split and policy."""
    metrics = load_result(run_dir / "result.json").metrics
    return sum(len(by_policy) for split in metrics.values() for by_policy in split.values())


def test_reproduce_gives_back_every_metric(tiny, one_thread, tmp_path, capsys):
    root, _ = tiny
    argv = ["reproduce", one_thread, "--data-root", root, "--work-dir", tmp_path / "again"]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert f"reproduced: all {metric_count(one_thread)} metrics equal" in out
    assert load_result(tmp_path / "again" / "result.json").env["torch_threads"] == 1


def test_reproduce_names_what_differs_when_a_number_does_not_come_back(
    tiny, one_thread, tmp_path, monkeypatch, capsys
):
    """The rerun is replaced by one that ends elsewhere with another thread count: exit 1, the
    differing metrics shown and the thread count named as the first difference."""
    import wsolbench.runs.execute

    def elsewhere(spec):
        result = load_result(one_thread / "result.json")
        result.metrics["test"]["oracle"]["maxboxacc_v2"] += 1.0
        result.env = {**result.env, "torch_threads": 3}
        return result

    monkeypatch.setattr(wsolbench.runs.execute, "execute", elsewhere)
    root, _ = tiny
    argv = ["reproduce", one_thread, "--data-root", root, "--work-dir", tmp_path / "x"]
    assert main([str(a) for a in argv]) == 1
    out = capsys.readouterr().out
    assert f"not reproduced: 1 of {metric_count(one_thread)} metrics differ" in out
    assert "first difference: torch_threads: 1 recorded, 3 here" in out


def test_reproduce_refuses_a_hand_edited_metric(tiny, one_thread, tmp_path, capsys):
    work = tmp_path / "edited"
    shutil.copytree(one_thread, work)
    result = load_result(work / "result.json")
    result.metrics["test"]["oracle"]["pxap"] = 99.0
    save_result(work / "result.json", result)
    root, _ = tiny
    assert main(["reproduce", str(work), "--data-root", str(root)]) == 2
    assert "its metrics do not follow from its counts" in capsys.readouterr().err


# --- weights by content --------------------------------------------------------------------

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def test_nothing_in_reports_names_a_machine_path():
    """No committed text names where a machine kept its files (``file:/…``, ``run:/…``, an
    expanded home cache): weights are named by file name and content."""
    machine_path = re.compile(r"(file|run|cache):/|/root/|/home/\w+/|\.cache/wsolbench")
    found = [
        str(path.relative_to(REPORTS))
        for path in REPORTS.rglob("*")
        if path.is_file()
        and path.suffix in (".json", ".md", ".csv", ".tex", ".html", ".yaml")
        and machine_path.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_same_weights_under_another_name_are_one_row(tmp_path, capsys):
    """A committed tedloc run copied with its text weights renamed (another machine's copy of
    the same file): compare shows one row of all three seeds, and diff runs on it (two-level:
    three seeds to draw)."""
    board = tmp_path / "board"
    for seed in (0, 1, 2):
        shutil.copytree(
            REPORTS / "results" / "synthetic-v1" / "tedloc" / f"seed{seed}", board / f"s{seed}"
        )
    result = load_result(board / "s1" / "result.json")
    renamed = result.pretrained.replace("file:synthclip-v1-db89e33c5b28.pt", "file:my-copy.pt")
    assert renamed != result.pretrained
    result.pretrained = renamed
    result.provenance["text"] = result.provenance["text"].replace(
        "synthclip-v1-db89e33c5b28.pt", "my-copy.pt"
    )
    save_result(board / "s1" / "result.json", result)
    assert main(["compare", str(board), "--no-published", "--format", "csv"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tedloc,")]
    assert len(rows) == 1 and ",3," in rows[0]  # one row, three seeds
    center = REPORTS / "results" / "synthetic-v1" / "center"
    assert main(["diff", str(board), str(center), "--resamples", "100"]) == 0


# --- seed-independent methods --------------------------------------------------------------


def center_run(tiny, work, seed, *extra):
    root, protocol = tiny
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--work-dir", work, "--seed", seed, *extra]
    return main([str(a) for a in argv])


def test_a_seed_independent_method_is_one_row_of_any_seed(tiny, one_thread, tmp_path, capsys):
    for seed in (0, 3):
        assert center_run(tiny, tmp_path / f"center{seed}", seed) == 0
    assert load_result(tmp_path / "center0" / "result.json").seed_independent
    assert not load_result(one_thread / "result.json").seed_independent  # trained: seeds matter
    # what the method computes against its namesake, as it declares it; a plugin declaring none
    reference = get_method("center").capabilities.reference
    assert reference and load_result(tmp_path / "center0" / "result.json").method_reference == (
        reference
    )
    assert load_result(one_thread / "result.json").method_reference == ""
    capsys.readouterr()
    argv = ["compare", tmp_path / "center0", tmp_path / "center3", "--format", "csv"]
    assert main([str(a) for a in argv]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["method"], r["seeds"], r["reference"]) for r in rows] == [
        ("center", "any", reference)
    ]


def test_seed_independent_copies_that_differ_are_refused(tiny, tmp_path, capsys):
    """Two seeds of a method that declares seed independence, with other numbers (here a copy
    whose counts were changed and whose records were dropped): refused, not averaged."""
    assert center_run(tiny, tmp_path / "a", 0) == 0
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    result = load_result(tmp_path / "b" / "result.json")  # its counts, from its records file
    for name in ("per_image.npz", "config.yaml"):
        (tmp_path / "b" / name).unlink()
    result.seed, result.per_image = 1, None
    for curve in result.counts["test"]["box"]["multi"].values():
        curve[:] = [0] * len(curve)
    save_result(tmp_path / "b" / "result.json", result)
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "declares its runs seed-independent, but" in capsys.readouterr().err


def test_a_record_older_than_a_metric_still_reproduces(
    tiny, one_thread, tmp_path, monkeypatch, capsys
):
    """A record made before a metric existed (here: its mIoU dropped, as records made before Dice
    and mIoU lack them) is no edit: its own figures are checked and compared, the new one is not;
    a changed figure is still refused."""
    import json
    import shutil

    import wsolbench.runs.execute

    old = tmp_path / "old"
    shutil.copytree(one_thread, old)
    record = json.loads((old / "result.json").read_text())
    for policies in record["metrics"].values():
        for values in policies.values():
            values.pop("miou", None)
    (old / "result.json").write_text(json.dumps(record))
    monkeypatch.setattr(
        wsolbench.runs.execute, "execute", lambda spec: load_result(one_thread / "result.json")
    )
    root, _ = tiny
    argv = ["reproduce", old, "--data-root", root, "--work-dir", tmp_path / "x"]
    assert main([str(a) for a in argv]) == 0
    assert f"reproduced: all {metric_count(old)} metrics equal" in capsys.readouterr().out

    split = next(iter(record["metrics"]))
    record["metrics"][split]["oracle"]["maxboxacc_v2"] += 1.0
    (old / "result.json").write_text(json.dumps(record))
    assert main([str(a) for a in argv]) == 2
    assert "do not follow from its counts" in capsys.readouterr().err


def test_a_record_fingerprinted_before_mask_files_were_names_the_version_not_other_data():
    """A committed result (version-1 fingerprint: its mask files were not hashed) against a
    rerun on the same data (version 2): the difference named is the version, with the split
    records found the same, not a data change; other records are still other data."""
    from wsolbench.data.fingerprint import data_fingerprint
    from wsolbench.data.sources import read_data
    from wsolbench.protocol import load_protocol
    from wsolbench.runs.reproduce import env_differences

    committed = REPORTS / "results" / "synthetic-v1" / "center" / "seed0" / "result.json"
    recorded = load_result(committed)
    assert recorded.data_fingerprint["version"] == 1
    _, splits, now = read_data(
        "synthetic", None, load_protocol("synthetic-v1"), trains=False, check_files=False
    )
    assert now["version"] == 2 and now["sha256"] != recorded.data_sha256
    rerun = load_result(committed)
    rerun.data_fingerprint = now
    rerun.env = {**rerun.env, "eval_batch_size": 64}  # what the older record's run used too
    assert not [d for d in env_differences(recorded, rerun) if d.startswith("eval_batch_size")]
    [line] = [d for d in env_differences(recorded, rerun) if d.startswith("data:")]
    assert "fingerprint version 1 recorded, 2 here" in line and "records are the same" in line
    rerun.data_fingerprint = data_fingerprint({"test": splits["test"]})
    [line] = [d for d in env_differences(recorded, rerun) if d.startswith("data:")]
    assert line == f"data: {recorded.data_sha256} recorded, {rerun.data_sha256} here"


def test_the_evaluation_batch_size_is_recorded_and_reproduced(tiny, tmp_path, capsys):
    """Batching changes float sums (PxAP moved in its 7th digit between batches of 64 and 7 on a
    cam run): the record names the evaluation batch size, and reproduce evaluates at it."""
    assert center_run(tiny, tmp_path / "seven", 0, "--batch-size", "7") == 0
    assert load_result(tmp_path / "seven" / "result.json").env["eval_batch_size"] == 7
    argv = ["reproduce", tmp_path / "seven", "--work-dir", tmp_path / "again"]
    assert main([str(a) for a in argv]) == 0
    assert load_result(tmp_path / "again" / "result.json").env["eval_batch_size"] == 7
    argv = [*argv[:-1], tmp_path / "other", "--batch-size", "5"]
    assert main([str(a) for a in argv]) == 0  # center's numbers do not depend on it ...
    assert "differs: eval_batch_size: 7 recorded, 5 here" in capsys.readouterr().out  # ... named


def test_reproduce_refuses_a_work_dir_that_already_holds_a_result(tiny, tmp_path, capsys):
    """A finished result there (the recorded run's own folder, or an earlier rerun made by other
    code) would be compared instead of a rerun: a success that proves nothing."""
    assert center_run(tiny, tmp_path / "run", 0) == 0
    for work in (tmp_path / "run", tmp_path / "again"):
        if work.name == "again":
            assert main(["reproduce", str(tmp_path / "run"), "--work-dir", str(work)]) == 0
            capsys.readouterr()
        status = main(["reproduce", str(tmp_path / "run"), "--work-dir", str(work)])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert status == 2 and len(errors) == 1 and "Traceback" not in err
        assert f"{work} already holds a finished result" in errors[0]
        assert "another --work-dir" in errors[0]


def test_an_eval_result_is_reproduced_by_evaluating_its_weights_file(tiny, one_thread, tmp_path,
                                                                      capsys):  # fmt: skip
    """An eval's record names a weights file by content: reproduce evaluates that very file
    (given with --weights, its sha256 checked), never trains a network of its own."""
    root, protocol = tiny
    weights = one_thread / "weights.pt"
    argv = ["eval", "--method", "toy_method:ToyCAM", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--weights", weights, "--work-dir", tmp_path / "ev"]
    assert main([str(a) for a in (*argv, "--threads", "1")]) == 0
    capsys.readouterr()

    again = ["reproduce", tmp_path / "ev", "--data-root", root]
    status = main([str(a) for a in (*again, "--work-dir", tmp_path / "a")])
    err = capsys.readouterr().err
    assert status == 2 and "evaluated a weights file" in err and "--weights" in err
    assert not (tmp_path / "a" / "train").exists()  # nothing trained

    other = tmp_path / "other.pt"
    other.write_bytes(weights.read_bytes() + b"\0")
    status = main([str(a) for a in (*again, "--work-dir", tmp_path / "b", "--weights", other)])
    assert status == 2 and "is not the file the result evaluated" in capsys.readouterr().err

    copy = shutil.copy(weights, tmp_path / "copy.pt")  # the same file, elsewhere
    status = main([str(a) for a in (*again, "--work-dir", tmp_path / "c", "--weights", copy)])
    out = capsys.readouterr().out
    assert status == 0 and f"reproduced: all {metric_count(tmp_path / 'ev')} metrics equal" in out
    assert not (tmp_path / "c" / "train").exists()

    # a report's copy of the result, without the run record beside it, still says it was an eval
    report = tmp_path / "report"
    report.mkdir()
    for name in ("result.json", "per_image.npz"):
        shutil.copy(tmp_path / "ev" / name, report / name)
    argv = ["reproduce", report / "result.json", "--data-root", root, "--work-dir", tmp_path / "d"]
    status = main([str(a) for a in argv])
    assert status == 2 and "evaluated a weights file" in capsys.readouterr().err
    # an eval of a loose copy (the preset's config recorded) reruns on the same bytes wherever
    # they sit, a run's folder with another config included
    argv = ["eval", "--method", "toy_method:ToyCAM", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--weights", copy, "--work-dir", tmp_path / "loose"]
    assert main([str(a) for a in (*argv, "--threads", "1")]) == 0
    argv = ["reproduce", tmp_path / "loose", "--data-root", root, "--weights", weights]
    assert main([str(a) for a in (*argv, "--work-dir", tmp_path / "f")]) == 0
    capsys.readouterr()
    # and a trained run's result is not evaluated from a file given to it
    argv = ["reproduce", one_thread, "--weights", weights, "--work-dir", tmp_path / "e"]
    assert main([str(a) for a in argv]) == 2
    assert "is not the result of an eval" in capsys.readouterr().err


def test_a_teacher_run_not_here_is_rerun_from_its_embedded_record(tiny, one_thread, tmp_path,
                                                                  capsys):  # fmt: skip
    """TeD-Loc taught by a finished run (teacher=run:DIR) names it by content and embeds what
    rebuilds it; on a machine without DIR, reproduce reruns the teacher from that record (its
    weights checked by sha256), then the student, and every metric comes back."""
    from test_tedloc import TINY_BACKBONE

    from wsolbench.util.weights_source import file_sha256

    root, protocol = tiny
    teacher = shutil.copytree(
        one_thread, tmp_path / "teacher", ignore=shutil.ignore_patterns("train")
    )
    argv = ["run", "--method", "tedloc", "--dataset", "synthetic", "--device", "cpu"]
    argv += ["--data-root", root, "--protocol", protocol, "--threads", "1"]
    overrides = [*TINY_BACKBONE, "text.pretrained=false", "train.max_epochs=1"]
    text_cache = tmp_path / "text-cache"  # a folder of this machine only
    for override in (*overrides, f"teacher=run:{teacher}", f"text.cache_dir={text_cache}"):
        argv += ["-o", override]
    assert main([str(a) for a in (*argv, "--work-dir", tmp_path / "student")]) == 0
    shutil.rmtree(text_cache)
    text_cache.write_text("")  # another machine: no folder can be made there
    result = json.loads((tmp_path / "student" / "result.json").read_text())
    embedded = result["input_runs"]["teacher"]
    assert embedded["weights_sha256"] == file_sha256(one_thread / "weights.pt")
    assert embedded["record"]["seed"] == 0 and embedded["record"]["threads"] == 1
    shutil.rmtree(teacher)  # another machine: the folder the config names is not there
    capsys.readouterr()
    from wsolbench.util.cache import default_cache_dir

    reruns = default_cache_dir() / "input-runs"
    shutil.rmtree(reruns, ignore_errors=True)

    # a mistake in the student's own command is said before the teacher is retrained
    busy = shutil.copytree(one_thread, tmp_path / "busy")
    (busy / "result.json").unlink()  # an unfinished run of another method
    again = ["reproduce", tmp_path / "student", "--data-root", root]
    assert main([str(a) for a in (*again, "--work-dir", busy)]) == 2
    assert "holds an unfinished run of another run" in capsys.readouterr().err
    assert not reruns.exists()

    assert main([str(a) for a in (*again, "--work-dir", tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert f"reproduced: all {metric_count(tmp_path / 'student')} metrics equal" in out
    rerun = reruns / f"toycam-{embedded['weights_sha256'][:12]}"  # named by the weights it gave
    assert file_sha256(rerun / "weights.pt") == embedded["weights_sha256"]

    # a teacher that does not come back stops the rerun before the student trains on it
    embedded["weights_sha256"] = "0" * 64
    (tmp_path / "student" / "result.json").write_text(json.dumps(result))
    status = main([str(a) for a in (*again, "--work-dir", tmp_path / "b")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1, errors
    assert "gave weights sha256" in errors[0] and "not the recorded 000000000000" in errors[0]
    assert (
        "nothing was kept" in errors[0] and f"place that run's own folder at {teacher}" in errors[0]
    )
    assert sorted(p.name for p in reruns.iterdir()) == [rerun.name]  # nothing under a wrong name
    assert not (tmp_path / "b").exists()


def test_a_config_with_an_open_mapping_is_rebuilt_from_its_overrides():
    """``backbone.kwargs`` is {} by default (an open mapping, taken whole): the rerun's overrides
    must give back a config that set keys under it, as every recorded config."""
    from test_tedloc import TINY_BACKBONE

    from wsolbench.config import resolve_config
    from wsolbench.registry import get_method
    from wsolbench.runs.record_spec import config_overrides

    tedloc = get_method("tedloc")
    config = resolve_config(tedloc, "synthetic", [*TINY_BACKBONE, "train.optimizer.type=AdamW"])
    assert config["backbone"]["kwargs"] and config["train"]["optimizer"]["type"] == "AdamW"
    assert resolve_config(tedloc, "synthetic", config_overrides(config)) == config
    assert resolve_config(tedloc, "cub", config_overrides(config)) == config  # another preset


def test_a_result_json_alone_reproduces_a_plugin_run_of_a_protocol_file(tiny, one_thread, tmp_path,
                                                                        capsys):  # fmt: skip
    """The record is result.json: a copy without config.yaml names where the plugin's class
    lives and holds its protocol file's content (checked by hash), so it reruns elsewhere."""
    root, _ = tiny
    report = tmp_path / "report"
    report.mkdir()
    for name in ("result.json", "per_image.npz"):
        shutil.copy(one_thread / name, report / name)
    argv = ["reproduce", report / "result.json", "--data-root", root, "--work-dir", tmp_path / "r"]
    assert main([str(a) for a in argv]) == 0
    assert f"reproduced: all {metric_count(one_thread)} metrics equal" in capsys.readouterr().out
    (report / "per_image.npz").unlink()  # its counts: the one file it cannot do without
    argv[-1] = tmp_path / "s"
    assert main([str(a) for a in argv]) == 2
    assert "copy the run's per_image.npz beside it" in capsys.readouterr().err


def test_a_weights_file_not_here_is_refused_before_training_and_can_be_given(tiny, tmp_path,
                                                                              capsys):  # fmt: skip
    """A run that loaded a file by path (backbone.checkpoint) names it by sha256: on a machine
    where that path holds other bytes, reproduce stops before training and says which -o gives
    the file; given there, it is checked by content and the run comes back."""
    from test_cam_teacher import _tiny_backbone

    from wsolbench.blocks.backbones import build_backbone

    root, protocol = tiny
    backbone = tmp_path / "backbone.pth"
    torch.manual_seed(0)
    kwargs = yaml.safe_load(_tiny_backbone().partition("=")[2])
    torch.save(build_backbone("wsolcnn", pretrained=False, **kwargs).model.state_dict(), backbone)
    argv = ["run", "--method", "cam", "--dataset", "synthetic", "--device", "cpu", "--threads", "1"]
    argv += ["--data-root", root, "--protocol", protocol, "--work-dir", tmp_path / "cam"]
    for override in (_tiny_backbone(), "backbone.name=wsolcnn", "train.max_epochs=1"):
        argv += ["-o", override]
    argv += ["-o", "backbone.pretrained=true", "-o", f"backbone.checkpoint={backbone}"]
    assert main([str(a) for a in argv]) == 0
    kept = shutil.copy(backbone, tmp_path / "kept.pth")
    backbone.write_bytes(kept.read_bytes()[:-8] + bytes(8))  # this machine: other bytes there
    capsys.readouterr()

    again = ["reproduce", tmp_path / "cam", "--data-root", root]
    status = main([str(a) for a in (*again, "--work-dir", tmp_path / "a")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert status == 2 and len(errors) == 1, errors
    assert (
        "backbone: this machine loads" in errors[0] and "-o backbone.checkpoint=PATH" in errors[0]
    )
    assert not (tmp_path / "a" / "train").exists()  # refused before training

    status = main([str(a) for a in (*again, "--work-dir", tmp_path / "b", "-o", "seed=3")])
    assert status == 2 and "reproduce takes -o only to say where" in capsys.readouterr().err
    status = main(
        [str(a) for a in (*again, "--work-dir", tmp_path / "b", "-o", "backbone.checkpoint=")]
    )
    refused = capsys.readouterr().err
    assert status == 2 and "backbone.checkpoint is an empty path" in refused
    assert "null" not in refused  # reproduce takes a file here, never "no file"
    given = ["-o", f"backbone.checkpoint={kept}"]
    assert main([str(a) for a in (*again, "--work-dir", tmp_path / "c", *given)]) == 0
    assert (
        f"reproduced: all {metric_count(tmp_path / 'cam')} metrics equal" in capsys.readouterr().out
    )


def test_weights_are_compared_part_by_part_by_kind_and_digest():
    """What the pre-training check compares: the same bytes from a cache and from a file are two
    rows (content_key keeps the kind), a part that loads nothing here is named as such, parts
    built from the data (the teacher) are left to the comparison after the rerun."""
    from wsolbench.util.weights_source import content_differences, content_key

    cached, loose = f"cache:r (sha256 {'0a1b' * 3})", f"file:r.pth (sha256 {'0a1b' * 3})"
    assert content_key(cached) != content_key(loose)
    assert content_differences(cached, loose) == [("", cached, loose)]
    assert content_differences(cached, f"cache:other-name (sha256 {'0a1b' * 3})") == []
    recorded = f"backbone={cached}; text=none; teacher=run:t (weights sha256 {'c' * 12})"
    assert content_differences(recorded, "none") == [
        ("backbone", cached, "none"),
        ("teacher", f"run:t (weights sha256 {'c' * 12})", "none"),
    ]
    assert content_differences(recorded, "none", parts={"backbone"}) == [
        ("backbone", cached, "none")
    ]


def test_a_plugin_run_reproduced_without_the_plugin_names_what_to_install():
    """The record knows the plugin's distribution and version: the error says to install it."""
    from wsolbench.registry import PluginError
    from wsolbench.runs.record_spec import record_method

    plugin = {"distribution": "wsolbench-gapmax", "version": "0.2.0", "files_sha256": "ab" * 32}
    env = {"code": {"wsolbench": {"commit": "c" * 40}, "wsolbench_gapmax": plugin}}
    with pytest.raises(KeyError, match="made with the plugin wsolbench-gapmax 0.2.0: install it"):
        record_method("gapmax", None, env)
    with pytest.raises(PluginError, match="wsolbench-gapmax 0.2.0: install it here"):
        record_method("gapmax", "wsolbench_gapmax.method:GapMax", env)
    folder = {"code": {"maxcam": {"files_sha256": "cd" * 32}}}
    with pytest.raises(PluginError, match=r"the package 'maxcam' \(cdcdcdcdcdcd\)"):
        record_method("maxcam", "maxcam.method:MaxCAM", folder)
    assert record_method("center", None, env) == "center"
