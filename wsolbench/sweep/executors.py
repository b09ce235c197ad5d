"""Running a sweep's cells through submitit's executors: ``debug`` (in-process, one after the
other), ``local`` (each cell a process, at most ``slots`` at once) and ``slurm`` (one job array).

submitit's local executor starts every job it is handed at once; bounding that to ``slots``,
and giving each running cell a GPU of its own, is the only scheduling done here. Ctrl-C cancels
the jobs this sweep submitted; every outcome (done, failed, cancelled, not started) is returned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import submitit

from wsolbench.sweep.cells import Cell
from wsolbench.sweep.grid import SweepError
from wsolbench.sweep.job import CellRun

POLL_S = 0.5  # how often running local cells are looked at
INTERRUPTED = 130  # the exit status of a wsolbench command stopped by Ctrl-C
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # submitit's local default is 2 minutes; a cell is not bounded
# submitit's local controllers (one process per cell, between the sweep and the cell) write
# here, not to the terminal: Ctrl-C reaches them too, and each would print its KeyboardInterrupt
CONTROLLERS_LOG = "controllers.log"


@dataclass
class Outcome:
    """What became of one cell."""

    cell: Cell
    state: str  # done | skipped | failed | cancelled | not started
    wall_s: float | None = None
    status: int | None = None  # the cell's exit status
    stdout: Path | None = None  # submitit's log files of the job
    stderr: Path | None = None


@dataclass
class SlurmSettings:
    """The job array's resources (``sbatch`` options), each cell one array task."""

    partition: str | None = None
    gpus_per_cell: int = 1
    cpus_per_cell: int = 4
    time_min: int = 24 * 60
    array_parallelism: int = 64
    options: dict[str, str] = field(default_factory=dict)  # any other sbatch option


def submitit_folder(root: Path) -> Path:
    """Where submitit keeps the jobs' pickles and logs (``%j_%t_log.out/.err``)."""
    return Path(root) / ".submitit"


def run_debug(cells: list[Cell], entry: Callable, folder: Path) -> list[Outcome]:
    """Each cell in this process, one after the other, through submitit's DebugExecutor; the
    cell's console output is also written to the job's log files."""
    executor = submitit.DebugExecutor(folder=folder)
    outcomes, pending = [], deque(cells)
    try:
        while pending:
            cell = pending[0]
            job = executor.submit(CellRun(entry, cell.argv))
            job.paths.stdout.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            with _tee(job.paths.stdout, job.paths.stderr):
                status = job.result()
            if status == INTERRUPTED:  # Ctrl-C inside the cell: wsolbench's main caught it
                raise KeyboardInterrupt
            pending.popleft()
            outcomes.append(_outcome(cell, status, started, job))
    except KeyboardInterrupt:
        if pending:
            outcomes.append(Outcome(pending.popleft(), "cancelled"))
    return outcomes + [Outcome(cell, "not started") for cell in pending]


def run_local(
    cells: list[Cell], entry: Callable, folder: Path, *, slots: int, gpus: list[int] = ()
) -> list[Outcome]:
    """Each cell a process of submitit's LocalExecutor, at most ``slots`` at once; with
    ``gpus``, each running cell sees one of them alone (``CUDA_VISIBLE_DEVICES``)."""
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN)
    pending, running, outcomes = deque(cells), {}, []
    free_gpus = list(gpus)
    try:
        while pending or running:
            while pending and len(running) < slots:
                cell = pending.popleft()
                gpu = free_gpus.pop(0) if free_gpus else None
                if gpu is not None:
                    executor.update_parameters(visible_gpus=(gpu,), gpus_per_node=1)
                with _inherited_output(folder / CONTROLLERS_LOG):
                    job = executor.submit(CellRun(entry, cell.argv))
                running[job] = (cell, time.monotonic(), gpu)
                print(f"started {cell.name}" + (f" on GPU {gpu}" if gpu is not None else ""))
            for job in [job for job in running if job.done()]:
                cell, started, gpu = running.pop(job)
                outcomes.append(_outcome(cell, _status(job), started, job))
                if gpu is not None:
                    free_gpus.append(gpu)
                print(f"{outcomes[-1].state:<8} {cell.name}")
            time.sleep(POLL_S if running else 0)
    except KeyboardInterrupt:
        outcomes += _cancel(running)
    return outcomes + [Outcome(cell, "not started") for cell in pending]


def run_slurm(
    cells: list[Cell], entry: Callable, folder: Path, settings: SlurmSettings, name: str
) -> list[Outcome]:
    """All cells as one SLURM job array (at most ``array_parallelism`` tasks at once), then wait
    for each; a preempted task is requeued and resumes its cell."""
    if shutil.which("srun") is None:  # submitit's own refusal would be a traceback
        raise SweepError("--executor slurm: no `srun` on PATH; run the sweep on a SLURM login node")
    executor = submitit.SlurmExecutor(folder=folder)
    # a cell with several GPUs is one DDP run: one task per GPU, each the same `wsolbench run
    # --launcher slurm`, whose ranks join through mmengine's SLURM launcher (docs/training.md)
    tasks = max(1, settings.gpus_per_cell)
    launcher = ["--launcher", "slurm"] if tasks > 1 else []
    executor.update_parameters(
        job_name=f"wsolbench-{name}",
        partition=settings.partition,
        gpus_per_node=settings.gpus_per_cell,
        cpus_per_task=settings.cpus_per_cell,
        ntasks_per_node=tasks,
        nodes=1,
        time=settings.time_min,
        array_parallelism=settings.array_parallelism,
        additional_parameters=dict(settings.options),
    )
    with executor.batch():
        jobs = [executor.submit(CellRun(entry, [*cell.argv, *launcher])) for cell in cells]
    started = time.monotonic()
    running = {job: (cell, started, None) for job, cell in zip(jobs, cells, strict=True)}
    array = f"job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} cells)"
    print(f"submitted {array if len(jobs) > 1 else f'job {jobs[0].job_id} (1 cell)'}")
    outcomes = []
    try:
        while running:
            for job in [job for job in running if job.done()]:
                cell, started, _ = running.pop(job)
                outcomes.append(_outcome(cell, _status(job), started, job))
                print(f"{outcomes[-1].state:<8} {cell.name}")
            time.sleep(POLL_S * 10 if running else 0)
    except KeyboardInterrupt:
        outcomes += _cancel(running)
    return outcomes


def _status(job) -> int:
    """The cell's exit status, the worst of its tasks' (a DDP cell on SLURM has one per GPU); a
    job that died without one (killed, out of memory) is 1."""
    try:
        return max(int(status) for status in job.results())
    except (submitit.core.utils.FailedJobError, submitit.core.utils.UncompletedJobError):
        return 1


def _outcome(cell: Cell, status: int, started: float, job) -> Outcome:
    return Outcome(
        cell,
        "done" if status == 0 else "failed",
        wall_s=time.monotonic() - started,
        status=status,
        stdout=job.paths.stdout,
        stderr=job.paths.stderr,
    )


def _cancel(running: dict) -> list[Outcome]:
    """Ctrl-C: cancel every job still running (a ``run --resume`` continues it later)."""
    outcomes = []
    for job, (cell, started, _) in running.items():
        job.cancel(check=False)
        outcomes.append(
            Outcome(
                cell,
                "cancelled",
                time.monotonic() - started,
                None,
                job.paths.stdout,
                job.paths.stderr,
            )
        )
    return outcomes


@contextlib.contextmanager
def _inherited_output(log: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2) point at ``log`` meanwhile,
    so that a process started inside (submitit opens it with no streams of its own) writes there."""
    sys.stdout.flush()
    sys.stderr.flush()
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = [os.dup(1), os.dup(2)]
    target = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


class _Tee:
    """A stream writing to the console and a log file at once."""

    def __init__(self, console, log):
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.console.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _tee(stdout: Path, stderr: Path) -> Iterator[None]:
    with open(stdout, "a", encoding="utf-8") as out, open(stderr, "a", encoding="utf-8") as err:
        with contextlib.redirect_stdout(_Tee(sys.stdout, out)):
            with contextlib.redirect_stderr(_Tee(sys.stderr, err)):
                yield
