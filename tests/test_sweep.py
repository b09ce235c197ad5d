"""``wsolbench sweep`` (issue 22): a grid of ``wsolbench run`` cells through submitit's debug and
local executors on a tiny synthetic protocol — the same numbers either way, finished cells
skipped on a rerun, a failing cell reported while the others finish, and a grid checked whole
before any cell starts.
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

from wsolbench.cli.main import main
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.sweep.job import CellRun

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


def test_a_finished_cell_of_another_protocol_or_data_is_not_skipped(tiny, tmp_path, capsys):
    """The protocol's rules and the data are part of a run even where their names stay: a cell
    over a run made under an edited protocol file (same id) or on edited metadata is not taken
    as finished; run --resume refuses it, naming what changed."""
    data = shutil.copytree(tiny, tmp_path / "data")
    protocol = data / "mine.yaml"
    rules = (tiny / "protocol.yaml").read_text().split("data_fingerprint:")[0]  # no pins
    rules = rules.replace("id: synthetic-custom-", "id: mine-")
    protocol.write_text(rules)
    root = tmp_path / "root"
    argv = grid_args(tiny, root, "--executor", "debug", seeds="0", methods=["center"])
    argv[argv.index("--protocol") + 1] = str(protocol)
    argv[argv.index("--data-root") + 1] = str(data)
    assert sweep(argv, capsys)[0] == 0

    protocol.write_text(rules.replace("threshold_step: 0.001", "threshold_step: 0.01"))
    status, out, _ = sweep(argv, capsys)
    [cell] = cells(root).values()
    assert status == 1 and cell["state"] == "failed" and "protocol_hash" in cell["error"]

    protocol.write_text(rules)
    boxes = data / "metadata" / "test" / "localization.txt"
    first, rest = boxes.read_text().split("\n", 1)
    boxes.write_text(first.rsplit(",", 4)[0] + ",0,0,31,31\n" + rest)
    status, out, _ = sweep(argv, capsys)
    [cell] = cells(root).values()
    assert status == 1 and cell["state"] == "failed" and "data_fingerprint" in cell["error"]


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
        ("", ["--device", "gpu"], "--device 'gpu': use auto, cpu or cuda[:N]"),  # every cell failed
        ("data_root: /nonexistent/root\n", [], "data_root: /nonexistent/root: no such folder"),
        ("data_root: ''\n", [], "data_root: empty; give a path or an id, or leave data_root out"),
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


def test_one_override_written_as_text_in_the_grid_file_is_one_override(tiny, tmp_path, capsys):
    """``overrides: train.max_epochs=1`` (no list) as methods: takes one name: one override,
    not one per character; a variant's too; the command line's are added after."""
    grid = tmp_path / "ablation.yaml"
    grid.write_text(GRID.replace("[train.max_epochs=1]", "train.max_epochs=1")
                    .replace("narrow: [width=4]", "narrow: width=4"))  # fmt: skip
    argv = ["sweep", grid, "--protocol", tiny / "protocol.yaml", "--dry-run", "-o", "width=6"]
    status, out, err = sweep(argv, capsys)
    assert status == 0, err
    narrow = next(x for x in out.splitlines() if "toycam-narrow/seed1 --resume" in x)
    assert narrow.endswith("-o train.max_epochs=1 -o width=6 -o width=4")


def test_a_data_root_under_home_written_with_a_tilde_is_found(tiny, tmp_path, capsys, monkeypatch):
    """GRID.yaml is not expanded by a shell: ``~`` is the home folder there too, as for run."""
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny, tmp_path / "data")
    grid = tmp_path / "grid.yaml"
    grid.write_text("methods: [center]\ndatasets: [synthetic]\ndata_root: ~/data\n")
    argv = ["sweep", grid, "--protocol", tiny / "protocol.yaml", "--dry-run"]
    status, out, err = sweep(argv, capsys)
    assert status == 0 and f"--data-root {tmp_path / 'data'} " in out, err


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


# A SLURM cluster of one node, as commands on PATH. sbatch keeps the job script and runs its
# (array) tasks here one after the other, in the background (submitit writes the tasks' pickles
# after sbatch returns), with the variables SLURM gives a task; srun starts the step's tasks
# (--ntasks-per-node of the script) as processes with their own rank and logs; sacct reports
# each task's state. squeue and scancel do nothing.
FAKE_SBATCH = """
import os, re, shutil, subprocess, sys
from pathlib import Path

cluster = Path(os.environ["FAKE_SLURM_DIR"])
script = cluster / "job.sh"
shutil.copy(sys.argv[1], script)
array = re.search(r"^#SBATCH --array=0-([0-9]+)", script.read_text(), re.M)
tasks = range(int(array[1]) + 1) if array else [None]
states = cluster / "state"
states.mkdir(exist_ok=True)
for task in tasks:
    (states / ("4242" if task is None else f"4242_{task}")).write_text("PENDING")
print("Submitted batch job 4242", flush=True)
if os.fork():
    sys.exit(0)
log = os.open(cluster / "sbatch.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
for fd in (1, 2):  # free sbatch's output, which the submitter reads to its end
    os.dup2(log, fd)
for task in tasks:
    name = "4242" if task is None else f"4242_{task}"
    env = {"SLURM_JOB_ID": str(5000 + (task or 0)), "SLURM_JOB_NUM_NODES": "1",
           "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "localhost", "SLURM_NODELIST": "localhost"}
    if task is not None:
        env.update(SLURM_ARRAY_JOB_ID="4242", SLURM_ARRAY_TASK_ID=str(task))
    else:
        env.update(SLURM_JOB_ID="4242")
    (states / name).write_text("RUNNING")
    done = subprocess.run(["bash", str(script)], env={**os.environ, **env})
    (states / name).write_text("COMPLETED" if done.returncode == 0 else "FAILED")
os._exit(0)
"""
FAKE_SRUN = """
import os, re, subprocess, sys
from pathlib import Path

args, logs = sys.argv[1:], {}
while args[0].startswith("--"):
    flag = args.pop(0)
    if flag in ("--output", "--error"):
        logs[flag] = args.pop(0)
script = (Path(os.environ["FAKE_SLURM_DIR"]) / "job.sh").read_text()
ntasks = int(re.search(r"^#SBATCH --ntasks-per-node=([0-9]+)", script, re.M)[1])
names = {"%j": os.environ["SLURM_JOB_ID"], "%A": os.environ.get("SLURM_ARRAY_JOB_ID", ""),
         "%a": os.environ.get("SLURM_ARRAY_TASK_ID", "")}
steps = []
for rank in range(ntasks):
    out, err = (re.sub("%[jAat]", lambda m: {**names, "%t": str(rank)}[m[0]], logs[flag])
                for flag in ("--output", "--error"))
    env = {**os.environ, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
           "SLURM_NTASKS": str(ntasks)}
    steps.append(subprocess.Popen(args, env=env, stdout=open(out, "a"), stderr=open(err, "a")))
sys.exit(max(step.wait() for step in steps))
"""
FAKE_SACCT = """
import os
from pathlib import Path

print("JobID|State|NodeList")
for state in sorted((Path(os.environ["FAKE_SLURM_DIR"]) / "state").iterdir()):
    print(f"{state.name}|{state.read_text()}|localhost")
"""


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch, subprocesses_see_tests):
    """The folder where the fake cluster keeps the job script (``job.sh``) and the tasks' states."""
    bin_dir, cluster = tmp_path / "bin", tmp_path / "cluster"
    bin_dir.mkdir()
    cluster.mkdir()
    python = f"#!{sys.executable}\n"
    fakes = {"sbatch": python + FAKE_SBATCH, "srun": python + FAKE_SRUN}
    fakes.update(sacct=python + FAKE_SACCT, squeue="#!/bin/sh\n", scancel="#!/bin/sh\n")
    for name, text in fakes.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(cluster))
    monkeypatch.setenv("MASTER_PORT", "29523")  # the DDP cell's rendezvous (29500 may be taken)
    return cluster


def submitted_argv(root: Path, task: int | None) -> list[str]:
    """The ``wsolbench`` argv submitit pickled for one array task (``None``: a job of one cell,
    no array)."""
    import cloudpickle

    job = "4242" if task is None else f"4242_{task}"
    pickle = root / ".submitit" / f"{job}_submitted.pkl"
    return cloudpickle.loads(pickle.read_bytes()).function.argv


def cluster_states(cluster: Path, timeout_s: float = 60) -> list[str]:
    """The tasks' final states once the fake cluster has run them all (a task's result is
    written just before its process ends)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [p.read_text() for p in sorted((cluster / "state").iterdir())]
        if not {"PENDING", "RUNNING"} & set(states):
            break
        time.sleep(0.2)
    return states


def test_slurm_runs_one_job_array_whose_tasks_are_the_cells(tiny, tmp_path, capsys, fake_slurm):
    """The job script asks for the array and the cells' resources; each array task runs its
    cell's ``wsolbench run`` (run here by the fake cluster), and gives the debug executor's
    numbers."""
    root, debug = tmp_path / "root", tmp_path / "debug"
    slurm = ["--executor", "slurm", "--partition", "gpu", "--time", "30"]
    slurm += ["--array-parallelism", "1", "--slurm-option", "account=mylab"]
    # a seed-dependent method: two cells, one array (center would be one cell, seed 0)
    toycam = ["toy_method:ToyCAM"]
    status, out, _ = sweep(grid_args(tiny, root, *slurm, methods=toycam), capsys)
    script = (fake_slurm / "job.sh").read_text()
    for line in ("#SBATCH --array=0-1%1", "#SBATCH --partition=gpu", "#SBATCH --time=30",
                 "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --account=mylab",
                 "#SBATCH --job-name=wsolbench-sweep"):  # fmt: skip
        assert line in script, script
    assert "submitit.core._submit" in script
    for seed in (0, 1):  # the command each array task runs
        argv = submitted_argv(root, seed)
        assert argv[:2] == ["run", "--method"] and "--launcher" not in argv
        assert f"seed{seed}" in argv[argv.index("--work-dir") + 1]
        assert argv[argv.index("--threads") + 1] == "1" and "--resume" in argv
    assert status == 0 and cluster_states(fake_slurm) == ["COMPLETED", "COMPLETED"], out
    assert "2 done" in out and all(c["state"] == "done" for c in cells(root).values())
    assert sweep(grid_args(tiny, debug, "--executor", "debug", methods=toycam), capsys)[0] == 0
    assert metrics(root) == metrics(debug) and len(metrics(root)) == 2


def test_a_cell_with_several_gpus_is_one_ddp_run_of_as_many_slurm_tasks(
    tiny, tmp_path, capsys, fake_slurm
):
    """--gpus-per-cell 2: the array task asks for two tasks (one GPU each), and both run the
    cell's ``wsolbench run --launcher slurm``, joining as one run of world size 2 (gloo here)."""
    root = tmp_path / "root"
    slurm = ["--executor", "slurm", "--partition", "gpu", "--gpus-per-cell", "2"]
    status, out, _ = sweep(grid_args(tiny, root, *slurm, methods=["toy_method:ToyCAM"],
                                     seeds="0"), capsys)  # fmt: skip
    script = (fake_slurm / "job.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2" in script and "#SBATCH --gpus-per-node=2" in script
    argv = submitted_argv(root, None)  # one cell: a job, not an array
    assert argv[-2:] == ["--launcher", "slurm"] and "--resume" in argv
    assert status == 0 and cluster_states(fake_slurm) == ["COMPLETED"], out
    assert all(cell["state"] == "done" for cell in cells(root).values())
    [result] = root.rglob("result.json")
    assert json.loads(result.read_text())["env"]["world_size"] == 2


def test_a_preempted_cell_is_requeued_as_the_same_resuming_run():
    """On SLURM's preemption or time-out signal, submitit pickles ``checkpoint()``'s submission
    and requeues it: the cell's own ``run ... --resume``, which continues from its checkpoint."""
    calls = []
    cell = CellRun(calls.append, ["run", "--method", "cam", "--resume"])
    requeued = cell.checkpoint()
    assert requeued.result() == 0 and calls == [["run", "--method", "cam", "--resume"]]


def test_ctrl_c_cancels_the_running_cells_without_a_traceback(tiny, tmp_path):
    """Ctrl-C reaches the terminal's whole process group: the sweep, submitit's local controllers
    and the cells. The terminal shows the sweep's table and one 'interrupted' line; whatever the
    controllers print on their way out goes to their log, not to the screen. The same command
    again resumes the cancelled cells and runs the one not started."""
    argv = [sys.executable, "-m", "wsolbench", "sweep", "--methods", "cam"]
    argv += ["--datasets", "synthetic", "--protocol", str(tiny / "protocol.yaml")]
    argv += ["--data-root", str(tiny), "--seeds", "0-2", "-o", "train.max_epochs=60"]
    argv += ["--threads", "1", "--executor", "local", "--slots", "2"]
    argv += ["--root", str(tmp_path / "root")]
    sweep_process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        # with Ctrl-C's default action, as a terminal job has: a suite started in the background
        # by a shell without job control inherits SIGINT ignored, and so would the sweep
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    lines = []
    for line in sweep_process.stdout:
        lines.append(line)
        if line.startswith("started") and line.rstrip().endswith("seed1"):
            break
    # the cells are running (a cell's process takes seconds to start; on a quiet machine its 60
    # tiny epochs then take about two, so waiting longer could find them finished)
    time.sleep(1)
    os.killpg(sweep_process.pid, signal.SIGINT)
    out = "".join(lines) + sweep_process.communicate(timeout=120)[0]
    assert sweep_process.returncode == 130, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "interrupted: cancelled the running cells" in out
    states = {name.rsplit("/", 1)[1]: c["state"] for name, c in cells(tmp_path / "root").items()}
    assert states == {"seed0": "cancelled", "seed1": "cancelled", "seed2": "not started"}
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "3 done" in rerun.stdout, rerun.stdout + rerun.stderr
