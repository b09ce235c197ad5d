"""``wsolbench sweep`` (issue 22): a grid of ``wsolbench run`` cells through submitit's debug and
local executors on a tiny synthetic protocol — the same numbers either way, finished cells
skipped on a rerun, a failing cell reported while the others finish, and a grid checked whole
before any cell starts.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from wsolbench.cli.main import main
from wsolbench.data.synthetic import SyntheticConfig, generate

TESTS = Path(__file__).resolve().parent
TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=6, val_per_class=2, test_per_class=3
)
METHODS = ["center", "toy_method:ToyCAM"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sweep") / "tiny", TINY)


def grid_args(tiny, root, *extra, methods=METHODS, seeds="0-1"):
    argv = ["sweep", "--methods", *methods, "--datasets", "synthetic"]
    argv += ["--protocol", tiny / "protocol.yaml", "--data-root", tiny, "--seeds", seeds]
    argv += ["-o", "train.max_epochs=1", "--threads", "1", "--root", root]
    return [str(a) for a in (*argv, *extra)]


def sweep(argv, capsys):
    """``wsolbench sweep`` in this process: (exit status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def cells(root: Path) -> dict[str, dict]:
    return {c["cell"]: c for c in json.loads((root / "sweep.json").read_text())["cells"]}


def metrics(root: Path) -> dict[str, dict]:
    return {
        str(p.parent.relative_to(root)): json.loads(p.read_text())["metrics"]
        for p in sorted(root.rglob("result.json"))
    }


@pytest.fixture
def subprocesses_see_tests(monkeypatch):
    """Local cells are processes: they find ``toy_method`` on PYTHONPATH."""
    path = f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    monkeypatch.setenv("PYTHONPATH", path)


def test_debug_and_local_agree_and_a_rerun_skips_every_cell(
    tiny, tmp_path, capsys, subprocesses_see_tests
):
    debug, local = tmp_path / "debug", tmp_path / "local"
    status, out, _ = sweep(grid_args(tiny, debug, "--executor", "debug"), capsys)
    assert status == 0, out
    status, out, _ = sweep(grid_args(tiny, local, "--executor", "local", "--slots", "2"), capsys)
    assert status == 0, out
    assert "local executor: 2 slots, 1 torch thread each" in out
    # center is seed-independent: its seed 0 stands for both seeds
    names = {f"synthetic-custom-{tiny_protocol_hash(tiny)}/{leaf}"
             for leaf in ("center/seed0", "toycam/seed0", "toycam/seed1")}  # fmt: skip
    assert set(cells(local)) == names and all(c["state"] == "done" for c in cells(local).values())
    assert metrics(debug) == metrics(local) and len(metrics(local)) == 3
    for cell in cells(local).values():  # submitit's logs, named in the table and the summary
        assert Path(cell["stdout"]).parent == local / ".submitit" and cell["stdout"] in out

    stamps = {p: p.stat().st_mtime_ns for p in local.rglob("result.json")}
    logs = set((local / ".submitit").iterdir())
    status, out, _ = sweep(grid_args(tiny, local, "--executor", "local", "--slots", "2"), capsys)
    assert status == 0 and "3 skipped" in out
    assert {p: p.stat().st_mtime_ns for p in local.rglob("result.json")} == stamps
    assert set((local / ".submitit").iterdir()) == logs  # nothing submitted


def tiny_protocol_hash(tiny: Path) -> str:
    from wsolbench.protocol import load_protocol

    return load_protocol(tiny / "protocol.yaml").id.removeprefix("synthetic-custom-")


def test_only_the_unfinished_cells_run_and_a_failing_cell_is_reported(tiny, tmp_path, capsys):
    root = tmp_path / "root"
    toycam = ["toy_method:ToyCAM"]  # seed-dependent (center would run seed 0 alone)
    status, out, _ = sweep(grid_args(tiny, root, "--executor", "debug", seeds="0",
                                     methods=toycam), capsys)  # fmt: skip
    assert status == 0
    [seed0] = cells(root)
    # seed 2's dir holds another run (seed 0's): run --resume refuses it; the others go on
    shutil.copytree(root / seed0, root / seed0.replace("seed0", "seed2"))
    status, out, _ = sweep(grid_args(tiny, root, "--executor", "debug", seeds="0-2",
                                     methods=toycam), capsys)  # fmt: skip
    assert status == 1
    states = {name.rsplit("/", 1)[1]: c["state"] for name, c in cells(root).items()}
    assert states == {"seed0": "skipped", "seed1": "done", "seed2": "failed"}
    failed = cells(root)[seed0.replace("seed0", "seed2")]
    assert failed["error"].startswith("error: --resume:") and "another run" in failed["error"]
    assert failed["error"] in out and "1 skipped, 1 done, 1 failed" not in out
    assert "1 done, 1 skipped, 1 failed" in out


def test_a_finished_cell_of_another_thread_count_is_not_skipped(tiny, tmp_path, capsys):
    """The thread count is part of a run: a cell asked with two threads over a one-thread run is
    not taken as finished; run --resume refuses it, naming the count."""
    root = tmp_path / "root"
    argv = grid_args(tiny, root, "--executor", "debug", seeds="0", methods=["center"])
    assert sweep(argv, capsys)[0] == 0
    argv[argv.index("--threads") + 1] = "2"
    status, out, _ = sweep(argv, capsys)
    [cell] = cells(root).values()
    assert status == 1 and cell["state"] == "failed"
    assert "threads: 1 in the work dir, 2 now" in cell["error"]


GRID = """\
methods: [toy_method:ToyCAM]
datasets: [synthetic]
seeds: 0-1
overrides: [train.max_epochs=1]
variants:
  base: []
  narrow: [width=4]
"""


@pytest.mark.parametrize(
    "change, flags, message",
    [
        ("", ["--methods", "centre"], "unknown method 'centre'; did you mean 'center'"),
        ("", ["--datasets", "cubb"], "unknown dataset 'cubb'"),
        ("", ["--seeds", "4-2"], "seeds: '4-2' is not a seed or a range"),
        ("", ["--protocol", "cub-v1"], "is for dataset 'cub'"),
        ("  Narrow!: [width=4]\n", [], "variants: 'Narrow!' is not a plain name"),
        ("colour: red\n", [], "unknown key 'colour'"),
        ("", ["-o", "widht=4"], "widht"),
        ("", ["--methods", "center", "toy_method:ToyCAM"], "variant 'narrow' of method 'center'"),
        ("summed_pxap: maybe\n", [], "summed_pxap: 'maybe' is not true or false"),
        ("", ["--variants", "wide"], "--variants: 'wide' is not a variant of the grid"),
    ],
)
def test_a_bad_grid_is_one_error_line_before_anything_runs(
    tiny, tmp_path, capsys, change, flags, message
):
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID + change)
    argv = ["sweep", grid, "--protocol", tiny / "protocol.yaml", "--root", tmp_path / "r", *flags]
    status, out, err = sweep(argv, capsys)
    assert status == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "r").exists()


def test_a_grid_file_with_variants_names_each_cell_and_its_argv(tiny, tmp_path, capsys):
    grid = tmp_path / "ablation.yaml"
    grid.write_text(GRID)
    argv = ["sweep", grid, "--protocol", tiny / "protocol.yaml", "--data-root", tiny, "--dry-run"]
    status, out, _ = sweep(argv, capsys)
    assert status == 0 and "4 cells under work_dirs/sweeps/ablation (dry run" in out
    lines = out.splitlines()
    narrow = lines[lines.index(next(x for x in lines if x.endswith("toycam-narrow/seed1"))) + 1]
    assert "--seed 1 --work-dir work_dirs/sweeps/ablation/" in narrow and "--resume" in narrow
    assert narrow.endswith("-o train.max_epochs=1 -o width=4")
    assert not Path("work_dirs/sweeps/ablation").exists()


def test_the_issue_command_runs_as_written(tiny, tmp_path, capsys):
    """Issue 22's acceptance command; a training-free method gets no schedule (``train.*``)."""
    argv = [
        "sweep",
        "--methods",
        "center",
        "cam",
        "--datasets",
        "synthetic",
        "--protocol",
        tiny / "protocol.yaml",
        "--seeds",
        "0-1",
        "-o",
        "train.max_epochs=1",
        "--executor",
        "local",
        "--slots",
        "2",
        "--threads",
        "1",
        "--root",
        tmp_path / "dir",
        "--dry-run",
    ]
    status, out, _ = sweep(argv, capsys)
    assert status == 0 and "3 cells under" in out and "cam/seed1" in out  # center: seed 0 alone
    center = next(x for x in out.splitlines() if "--method center" in x)
    assert "train.max_epochs" not in center


def test_a_seed_independent_method_gets_one_cell_for_every_seed(tiny, tmp_path, capsys):
    """center's numbers do not depend on the seed: one cell, the grid's first seed, stands for
    all of them (said once); cam runs each seed."""
    argv = ["sweep", "--methods", "center", "cam", "--datasets", "synthetic"]
    argv += ["--protocol", tiny / "protocol.yaml", "--seeds", "0-2", "--dry-run"]
    status, out, _ = sweep(argv, capsys)
    leaves = [x.split("/", 1)[1] for x in out.splitlines() if x.startswith("synthetic-custom-")]
    assert status == 0 and leaves == ["center/seed0", "cam/seed0", "cam/seed1", "cam/seed2"]
    note = "center is seed-independent: one cell (seed 0) stands for seeds 0-2"
    assert out.count(note) == 1 and "cam is seed-independent" not in out
    assert "4 cells under" in out

    from wsolbench.sweep.cells import expand
    from wsolbench.sweep.grid import build_grid

    grid = build_grid({"methods": ["center", "cam"], "datasets": ["synthetic"], "seeds": [3, 7],
                       "protocol": str(tiny / "protocol.yaml")})  # fmt: skip
    stands_for = {(c.method, c.seed): c.stands_for for c in expand(grid)}
    assert stands_for == {("center", 3): (3, 7), ("cam", 3): (3,), ("cam", 7): (7,)}


def test_summed_pxap_from_the_grid_or_the_flag_goes_to_every_cell(tiny, tmp_path, capsys):
    grid = tmp_path / "ablation.yaml"
    base = ["sweep", grid, "--protocol", tiny / "protocol.yaml", "--data-root", tiny, "--dry-run"]
    for text, flags in ((GRID + "summed_pxap: true\n", []), (GRID, ["--summed-pxap"])):
        grid.write_text(text)
        status, out, _ = sweep([*base, *flags], capsys)
        commands = [x for x in out.splitlines() if x.startswith("  wsolbench run")]
        assert status == 0 and len(commands) == 4
        assert all("--resume --summed-pxap" in x for x in commands)
    grid.write_text(GRID)
    status, out, _ = sweep(base, capsys)
    assert status == 0 and "--summed-pxap" not in out


def test_variants_chooses_among_the_grid_files_variants(tiny, tmp_path, capsys):
    grid = tmp_path / "ablation.yaml"
    grid.write_text(GRID)
    argv = ["sweep", grid, "--protocol", tiny / "protocol.yaml", "--variants", "narrow",
            "--dry-run"]  # fmt: skip
    status, out, _ = sweep(argv, capsys)
    leaves = [x.split("/", 1)[1] for x in out.splitlines() if x.startswith("synthetic-custom-")]
    assert status == 0 and leaves == ["toycam-narrow/seed0", "toycam-narrow/seed1"]


FAKE_SBATCH = """#!/bin/sh
cp "$1" "$FAKE_SLURM_DIR/job.sh"
echo "Submitted batch job 4242"
"""
# every task ends without a result (as a job killed by the cluster would)
FAKE_SACCT = """#!/bin/sh
echo "JobID|State|NodeList"
for i in 0 1; do echo "4242_$i|FAILED|node1"; done
"""


def test_slurm_submits_one_job_array_with_the_cells_resources(tiny, tmp_path, capsys, monkeypatch):
    import cloudpickle

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fakes = {"sbatch": FAKE_SBATCH, "sacct": FAKE_SACCT}
    fakes.update({name: "#!/bin/sh\n" for name in ("squeue", "scancel", "srun")})
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(tmp_path))
    root = tmp_path / "root"
    slurm = ["--executor", "slurm", "--partition", "gpu", "--time", "30"]
    slurm += ["--array-parallelism", "1"]
    # a seed-dependent method: two cells, one array (center would be one cell, seed 0)
    toycam = ["toy_method:ToyCAM"]
    argv = grid_args(tiny, root, *slurm, "--slurm-option", "account=mylab", methods=toycam)
    status, out, _ = sweep(argv, capsys)
    script = (tmp_path / "job.sh").read_text()
    for line in ("#SBATCH --array=0-1%1", "#SBATCH --partition=gpu", "#SBATCH --time=30",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --account=mylab", "#SBATCH --job-name=wsolbench-sweep"):  # fmt: skip
        assert line in script, script
    assert "submitit.core._submit" in script
    for seed in (0, 1):  # the command each array task runs
        pickle = root / ".submitit" / f"4242_{seed}_submitted.pkl"
        task = cloudpickle.loads(pickle.read_bytes()).function
        assert (
            task.argv[:2] == ["run", "--method"]
            and f"seed{seed}" in task.argv[task.argv.index("--work-dir") + 1]
        )
        assert task.argv[task.argv.index("--threads") + 1] == "1" and "--resume" in task.argv
    assert status == 1 and "2 failed" in out  # no task left a result
