"""Every file a record leans on is its own (issue 20): result, per-image records, counts,
``weights.pt`` and checkpoints are bound to the run by content, and every reader checks.

Each test is one of the hostile cases found on the harness, end to end through the command line,
on a tiny synthetic set and the tiny trainable ``toy_method:ToyCAM``: ``cam0`` is a finished
2-epoch seed-0 run, ``ref3`` a finished 3-epoch seed-3 run, ``unf4`` a seed-4 run that stopped
after its checkpoints (no result).
"""

import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from wsolbench.cli.main import USER_ERRORS, main
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.leaderboard import compare

TESTS = Path(__file__).resolve().parent
TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=6, val_per_class=2, test_per_class=3
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("bindings") / "tiny", TINY)
    return root, root / "protocol.yaml"


def toy_args(tiny, work, *extra, seed=0, epochs=2):
    root, protocol = tiny
    argv = ["run", "--method", "toy_method:ToyCAM", "--dataset", "synthetic", "--device", "cpu"]
    argv += ["--data-root", root, "--protocol", protocol, "--work-dir", work, "--seed", seed]
    argv += ["-o", f"train.max_epochs={epochs}"]
    return [str(a) for a in (*argv, *extra)]


def run(argv, capsys):
    """``wsolbench`` in this process: (exit status, stderr)."""
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


def one_error(err: str) -> str:
    """The single ``error:`` line of a refused command (and that it is the only one)."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    assert main(toy_args(tiny, base / "cam0")) == 0
    assert main(toy_args(tiny, base / "ref3", seed=3, epochs=3)) == 0
    assert main(toy_args(tiny, base / "unf4", seed=4, epochs=3)) == 0
    for name in ("result.json", "weights.pt", "per_image.npz"):  # stopped after its checkpoints
        (base / "unf4" / name).unlink()
    return base


def copy_run(runs, name, target):
    shutil.copytree(runs / name, target)
    return target


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- --resume --------------------------------------------------------------------------------


def test_resume_refuses_a_result_copied_from_another_run(tiny, runs, tmp_path, capsys):
    work = copy_run(runs, "cam0", tmp_path / "w")
    for name in ("result.json", "per_image.npz"):  # another run's result, with its own records
        shutil.copy(runs / "ref3" / name, work / name)
    status, err = run(toy_args(tiny, work, "--resume"), capsys)
    line = one_error(err)
    assert status == 2 and f"{work / 'result.json'} is not the result of the run" in line
    assert "seed: 0 in config.yaml, 3 in result.json" in line


def test_resume_refuses_a_result_json_copied_alone(tiny, runs, tmp_path, capsys):
    """Its counts are in the records file it names by sha256: this one is cam0's."""
    work = copy_run(runs, "cam0", tmp_path / "w")
    shutil.copy(runs / "ref3" / "result.json", work / "result.json")
    status, err = run(toy_args(tiny, work, "--resume"), capsys)
    line = one_error(err)
    assert status == 2 and f"its counts are in {work / 'per_image.npz'}" in line
    assert "not the file its result.json names (sha256 differs)" in line


def test_resume_refuses_a_symlinked_result(tiny, runs, tmp_path, capsys):
    work = copy_run(runs, "cam0", tmp_path / "w")
    (work / "result.json").unlink()
    (work / "result.json").symlink_to(runs / "ref3" / "result.json")
    status, err = run(toy_args(tiny, work, "--resume"), capsys)
    assert status == 2 and "result.json is a symbolic link" in one_error(err)


def test_resume_refuses_another_run_s_checkpoints(tiny, runs, tmp_path, capsys):
    work = copy_run(runs, "ref3", tmp_path / "w")
    for name in ("result.json", "weights.pt", "per_image.npz"):
        (work / name).unlink()  # an unfinished seed-3 run ...
    shutil.rmtree(work / "train")
    shutil.copytree(runs / "unf4" / "train", work / "train")  # ... given seed 4's checkpoints
    status, err = run(toy_args(tiny, work, "--resume", seed=3, epochs=3), capsys)
    line = one_error(err)
    assert status == 2 and "is not this run's checkpoint" in line
    assert "seed: 4 in the checkpoint, 3 now" in line
    assert not (work / "result.json").exists()


def test_resume_refuses_a_train_folder_linked_into_another_run(tiny, runs, tmp_path, capsys):
    work = copy_run(runs, "ref3", tmp_path / "w")
    for name in ("result.json", "weights.pt", "per_image.npz"):
        (work / name).unlink()
    shutil.rmtree(work / "train")
    other = copy_run(runs, "unf4", tmp_path / "other")
    (work / "train").symlink_to(other / "train")
    before = snapshot(other)
    status, err = run(toy_args(tiny, work, "--resume", seed=3, epochs=3), capsys)
    assert status == 2 and "train is a symbolic link" in one_error(err)
    assert snapshot(other) == before  # nothing trained in, or rotated away from, the other run


# --- weights.pt ------------------------------------------------------------------------------


def test_weights_copied_from_another_run_are_refused_by_visualize_and_eval(
    tiny, runs, tmp_path, capsys
):
    root, protocol = tiny
    work = copy_run(runs, "cam0", tmp_path / "w")
    shutil.copy(runs / "ref3" / "weights.pt", work / "weights.pt")
    argv = ["visualize", work, "--n", "2", "--data-root", root, "--output", tmp_path / "fig"]
    status, err = run(argv, capsys)
    assert status == 2 and f"{work / 'weights.pt'} is not the weights" in one_error(err)
    argv = ["eval", "--method", "toy_method:ToyCAM", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--weights", work / "weights.pt", "--work-dir", tmp_path / "e"]
    status, err = run(argv, capsys)
    assert status == 2 and f"{work / 'weights.pt'} is not the weights" in one_error(err)
    assert not (tmp_path / "e").exists()


def test_eval_of_a_run_s_own_weights_goes_ahead(tiny, runs, tmp_path, capsys):
    root, protocol = tiny
    argv = ["eval", "--method", "toy_method:ToyCAM", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", protocol, "--weights", runs / "cam0" / "weights.pt"]
    assert run([*argv, "--work-dir", tmp_path / "e"], capsys)[0] == 0
    sha256 = json.loads((runs / "cam0" / "result.json").read_text())["weights_file"]["sha256"]
    evaluated = json.loads((tmp_path / "e" / "result.json").read_text())
    assert f"sha256 {sha256[:12]}" in evaluated["pretrained"]


# --- compare ---------------------------------------------------------------------------------


def read_counts(arrays: dict) -> dict:
    """The counts tree of a records file's members (``<split>/counts/<dotted key>``)."""
    counts: dict = {}
    for key, value in arrays.items():
        split, _, rest = key.partition("/")
        if rest.startswith("counts/"):
            *parents, leaf = rest.removeprefix("counts/").split(".")
            node = counts.setdefault(split, {})
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value.tolist()
    return counts


def rewrite_counts(folder: Path, change) -> None:
    """Change the counts a result's records file holds with ``change({"counts": ...})``, and
    bind ``result.json`` to the new file (its sha256): what a careful forger would do."""
    npz, result = folder / "per_image.npz", folder / "result.json"
    with np.load(npz) as archive:
        arrays = {key: archive[key] for key in archive.files}
    holder = {"counts": read_counts(arrays)}
    change(holder)

    def leaves(tree, prefix):
        for key, value in tree.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    for split, split_counts in holder["counts"].items():
        for key, value in leaves(split_counts, ""):
            arrays[f"{split}/counts/{key}"] = np.asarray(value)
    np.savez(npz, **arrays)
    record = json.loads(result.read_text())
    record["per_image"]["sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    result.write_text(json.dumps(record))


def tampered(runs, tmp_path, change) -> Path:
    """A copy of cam0's result and per-image records, its counts changed by ``change``."""
    folder = tmp_path / "board" / "cam0"
    folder.mkdir(parents=True)
    for name in ("result.json", "per_image.npz"):
        shutil.copy(runs / "cam0" / name, folder / name)
    rewrite_counts(folder, change)
    return folder


def test_result_json_holds_no_counts_and_a_changed_records_file_is_refused(runs, tmp_path, capsys):
    """The counts live in the records file; a result.json whose file was swapped is refused."""
    assert "counts" not in json.loads((runs / "cam0" / "result.json").read_text())
    folder = tmp_path / "board" / "cam0"
    folder.mkdir(parents=True)
    shutil.copy(runs / "cam0" / "result.json", folder / "result.json")
    shutil.copy(runs / "ref3" / "per_image.npz", folder / "per_image.npz")
    status, err = run(["compare", folder.parent], capsys)
    assert status == 2 and "not the file its result.json names (sha256 differs)" in one_error(err)


def _reflect(record):
    counts = record["counts"]["test"]
    n = counts["n_images"]
    counts["box"]["multi"]["50"] = [n - c for c in counts["box"]["multi"]["50"]]


def _add_one(record):
    curve = record["counts"]["test"]["box"]["multi"]["50"]
    curve[:] = [min(c + 1, record["counts"]["test"]["n_images"]) for c in curve]


def _more_images(record):
    record["counts"]["test"]["n_images"] = 6000


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_reflect, "per_image.npz (test): the per-image records do not add up"),
        (_add_one, "per_image.npz (test): the per-image records do not add up"),
        (_more_images, "the test counts hold 6000 images, its data fingerprint 9"),
    ],
)
def test_compare_refuses_counts_its_records_contradict(runs, tmp_path, change, named, capsys):
    folder = tampered(runs, tmp_path, change)
    status, err = run(["compare", folder.parent], capsys)
    assert status == 2 and named in one_error(err)


def test_compare_refuses_a_result_beside_another_run_s_record(runs, tmp_path, capsys):
    work = copy_run(runs, "cam0", tmp_path / "w")
    for name in ("result.json", "per_image.npz"):
        shutil.copy(runs / "ref3" / name, work / name)
    status, err = run(["compare", work], capsys)
    assert status == 2 and "is not the result of the run recorded in" in one_error(err)


def test_compare_refuses_per_image_records_linked_from_elsewhere(runs, tmp_path, capsys):
    folder = tmp_path / "board" / "cam0"
    folder.mkdir(parents=True)
    shutil.copy(runs / "cam0" / "result.json", folder / "result.json")
    (folder / "per_image.npz").symlink_to(runs / "cam0" / "per_image.npz")
    status, err = run(["compare", folder.parent], capsys)
    assert status == 2 and "per_image.npz is a symbolic link" in one_error(err)


def test_compare_of_untouched_runs_shows_them(runs, capsys):
    assert main(["compare", str(runs / "cam0"), str(runs / "ref3")]) == 0
    assert "toycam" in capsys.readouterr().out


def test_fuzzed_counts_never_reach_a_table(runs, tmp_path):
    """Any change to any count of a result with per-image records is refused; any other
    mutation of its fields is a user error or a table, never a traceback."""
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "0")))
    original = json.loads((runs / "cam0" / "result.json").read_text())
    with np.load(runs / "cam0" / "per_image.npz") as archive:
        counts = read_counts({key: archive[key] for key in archive.files})

    def count_paths(value, path=()):
        if isinstance(value, list) and all(isinstance(v, int) for v in value):
            yield from ((*path, i) for i in range(len(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from count_paths(item, (*path, key))
        elif isinstance(value, int) and not isinstance(value, bool):
            yield path

    paths = [p for p in count_paths(counts) if "iou_thresholds" not in p]
    cases = int(os.environ.get("FUZZ_CASES", "40"))

    def change_one(path, new):
        def change(record):
            holder = record["counts"]
            for key in path[:-1]:
                holder = holder[key]
            holder[path[-1]] = new

        return change

    for case in range(cases):
        path = rng.choice(paths)
        old = counts
        for key in path:
            old = old[key]
        new = rng.choice([old + 1, old - 1, old + rng.randint(2, 50), 0, 6000])
        if new == old:
            continue
        folder = copy_run(runs, "cam0", tmp_path / f"case{case}")
        rewrite_counts(folder, change_one(path, new))
        with pytest.raises(USER_ERRORS):
            compare([folder])
    for case in range(cases):
        record = json.loads(json.dumps(original))
        key = rng.choice(sorted(record))
        record[key] = rng.choice([None, 0, -1, "x", [], {}, 1e308, {"file": "../x", "sha256": 1}])
        folder = tmp_path / f"field{case}"
        folder.mkdir()
        shutil.copy(runs / "cam0" / "per_image.npz", folder / "per_image.npz")
        (folder / "result.json").write_text(json.dumps(record))
        try:
            compare([folder])
        except USER_ERRORS:
            pass


# --- training: atomic checkpoints, divergence ----------------------------------------------


def test_a_full_disk_mid_checkpoint_leaves_no_truncated_file_and_resume_continues(tiny, tmp_path):
    work = tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def small_files():  # a checkpoint of this tiny model is ~29 KB; the logs stay below 20 KB
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.RLIM_INFINITY))

    argv = [sys.executable, "-m", "wsolbench", *toy_args(tiny, work)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, preexec_fn=small_files)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    line = one_error(done.stderr)
    assert f"cannot write {work / 'train' / 'epoch_1.pth'}: File too large" in line
    assert "bytes needed" in line
    left = sorted(p.name for p in (work / "train").iterdir() if p.is_file())
    assert not [name for name in left if name.endswith((".pth", ".tmp"))], left
    done = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "result.json").read_text())["seed"] == 0


def test_a_diverged_run_is_recorded_and_never_evaluated(tiny, tmp_path, capsys):
    work = tmp_path / "w"
    status, err = run(toy_args(tiny, work, "-o", "train.optimizer.lr=1e30"), capsys)
    line = one_error(err)
    assert status == 2 and "training diverged in epoch 1" in line and "lower learning rate" in line
    record = yaml.safe_load((work / "config.yaml").read_text())
    assert record["diverged"]["epoch"] == 1
    assert not (work / "result.json").exists() and not (work / "weights.pt").exists()
    assert not list((work / "train").glob("*.pth"))  # the diverged epoch was never saved


def test_checkpoints_carry_their_run_s_identity(runs):
    from wsolbench.train.checkpoints import checkpoint_identity

    identity = checkpoint_identity(runs / "ref3" / "train" / "epoch_3.pth")
    assert identity["seed"] == 3 and identity["config"]["train"]["max_epochs"] == 3
    assert all(k in identity for k in ("method", "protocol_hash", "data_fingerprint"))


# --- a report's copy of a run --------------------------------------------------------------


def test_a_report_s_copy_is_written_whole_and_never_pairs_files_of_two_runs(
    runs, tmp_path, monkeypatch
):
    """``copy_result`` (reports/, the TeD-Loc ablations): each file is replaced whole, the
    per-image records before the result that names them, and a run without records leaves none of
    an earlier copy's behind."""
    from wsolbench.results import per_image
    from wsolbench.util.atomic import write_bytes_atomic

    target = tmp_path / "copy"
    per_image.copy_result(runs / "cam0", target)
    assert snapshot(target) == {
        name: (runs / "cam0" / name).read_bytes() for name in ("result.json", "per_image.npz")
    }
    old = snapshot(target)

    def interrupted(path, data):  # the process dies while the result is written
        if Path(path).name == "result.json":
            raise KeyboardInterrupt
        write_bytes_atomic(path, data)

    with monkeypatch.context() as patch:
        patch.setattr("wsolbench.results.per_image.write_bytes_atomic", interrupted)
        with pytest.raises(KeyboardInterrupt):
            per_image.copy_result(runs / "ref3", target)
    now = snapshot(target)
    assert now["result.json"] == old["result.json"]  # whole: the old one, not a torn new one
    assert now["per_image.npz"] == (runs / "ref3" / "per_image.npz").read_bytes()

    without = copy_run(runs, "ref3", tmp_path / "ref3-no-records")
    (without / "per_image.npz").unlink()
    per_image.copy_result(without, target)
    assert snapshot(target) == {"result.json": (without / "result.json").read_bytes()}
