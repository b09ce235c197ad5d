"""A run's work dir: what it records, who holds it, and what ``--resume`` may trust.

Layout::

    <work_dir>/config.yaml    the run record (below), written before any work
    <work_dir>/.lock          held (flock) by the process working in the dir; holds its PID
    <work_dir>/train/         mmengine: epoch_N.pth checkpoints, logs (trainable methods)
    <work_dir>/weights.pt     exported inference weights (trainable methods)
    <work_dir>/result.json    written last, atomically: its presence means "finished"

The record says what the dir is: method, dataset, protocol id and hash, the protocol itself (so a
``--protocol FILE`` run can be rebuilt after the file moved), the data fingerprint, the seed, the
resolved config, and for ``eval`` the weights file's content hash. A command may continue or keep
a dir only if it asks for exactly what the dir holds; otherwise the error names every difference.

States (:func:`inspect`): ``new`` (nothing to keep), ``started`` (a record but no checkpoint and no
result: a start that failed before saving anything; the next command may reuse it, whatever it
asks for), ``unfinished`` (checkpoints, no result: only ``--resume`` with the same record
continues it), ``finished`` (a result: ``--resume`` with the same record keeps it).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from wsolbench.config import dotted_leaves
from wsolbench.results.per_image import PER_IMAGE_FILE
from wsolbench.results.record import RESULT_FILENAME as RESULT_FILE
from wsolbench.util.atomic import remove_leftovers, write_text_atomic
from wsolbench.util.yaml_errors import yaml_problem

logger = logging.getLogger(__name__)

RECORD_FILE = "config.yaml"
RECORD_MARK = "wsolbench_record"  # first key of every record: which layout it has
RECORD_VERSION = 1
LOCK_FILE = ".lock"
WEIGHTS_FILE = "weights.pt"
TRAIN_SUBDIR = "train"
#: what a run writes at the top of its work dir (``train/`` holds only its own files)
RUN_FILES = (RECORD_FILE, WEIGHTS_FILE, PER_IMAGE_FILE, RESULT_FILE)

# The keys that make a run what it is, in the order differences are reported.
IDENTITY_KEYS = (
    "method",
    "dataset",
    "protocol",
    "protocol_hash",
    "data_fingerprint",
    "seed",
    "threads",
    "weights",
    "config",
)  # (the weights a method loaded, "pretrained", are known once it is built: run checks them)


class WorkDirError(ValueError):
    """A work dir cannot be used as asked; the message names the dir, the reason and the fix."""


def read_record(work_dir: Path) -> dict | None:
    """The run record of a work dir, or None when it has none.

    Raises:
        WorkDirError: ``config.yaml`` exists but is not a wsolbench run record.
    """
    path = Path(work_dir) / RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise WorkDirError(
            f"{path} is unreadable ({yaml_problem(exc)}); it is the record of the run in "
            f"{work_dir}: restore it, or choose a new --work-dir"
        ) from None
    if not isinstance(record, dict) or RECORD_MARK not in record:
        raise WorkDirError(
            f"{path} is not a wsolbench run record (another tool's file?); choose a new --work-dir"
        )
    return record


def write_record(work_dir: Path, record: dict) -> None:
    """Write the run record atomically (marked as one, so another tool's file is never taken
    for it)."""
    text = yaml.safe_dump({RECORD_MARK: RECORD_VERSION, **record}, sort_keys=False)
    write_text_atomic(Path(work_dir) / RECORD_FILE, text)


def differences(
    stored: dict, wanted: dict, stored_in: str = "in the work dir", wanted_in: str = "now"
) -> list[str]:
    """Human-readable differences between the record a dir holds and the one a command wants.

    Returns:
        One ``"<key>: <stored> <stored_in>, <wanted> <wanted_in>"`` line per differing identity key
        (config keys dotted); empty when the two describe the same run.
    """
    missing = object()
    lines = []
    for key in IDENTITY_KEYS:
        old = dotted_leaves({key: stored.get(key, missing)})
        new = dotted_leaves({key: wanted.get(key, missing)})
        for name in sorted(set(old) | set(new)):
            a, b = old.get(name, missing), new.get(name, missing)
            if a != b:
                shown_a = "absent" if a is missing else repr(a)
                shown_b = "absent" if b is missing else repr(b)
                lines.append(f"{name}: {shown_a} {stored_in}, {shown_b} {wanted_in}")
    return lines


def identity(record: dict) -> dict:
    """The part of a record that makes the run what it is (``IDENTITY_KEYS``): what each of its
    checkpoints carries, so that ``--resume`` continues only this run's own."""
    return {key: record[key] for key in IDENTITY_KEYS if key in record}


def refuse_symlinks(work_dir: Path) -> None:
    """Refuse a work dir holding a symbolic link anywhere: through a link ``--resume`` would keep
    another run's result, or train in and rotate away another run's checkpoints.

    Raises:
        WorkDirError: naming the first link found.
    """
    for folder, subfolders, files in os.walk(work_dir):
        for name in sorted(subfolders + files):
            path = Path(folder) / name
            if path.is_symlink():
                raise WorkDirError(
                    f"{path} is a symbolic link (to {os.readlink(path)}); a work dir holds only "
                    "its own run's files: replace the link by a copy, or choose a new --work-dir"
                )


def checkpoints(work_dir: Path, prefix: str = "") -> list[Path]:
    """The training checkpoints a dir holds (``train/<prefix>*.pth``), newest epoch first: the
    one place that finds them (latest, resume and best all come from here)."""

    def epoch(path: Path) -> int:
        digits = path.stem.rpartition("_")[2]
        return int(digits) if digits.isdigit() else -1

    folder = Path(work_dir) / TRAIN_SUBDIR
    found = [p for p in folder.glob(f"{prefix}*.pth") if p.is_file()] if folder.is_dir() else []
    return sorted(found, key=lambda p: (epoch(p), p.name), reverse=True)


def inspect(work_dir: Path) -> str:
    """``new``, ``started``, ``unfinished`` or ``finished`` (see the module docstring).

    Raises:
        WorkDirError: the folder holds files but no wsolbench run (another tool's folder), or a
            symbolic link (:func:`refuse_symlinks`).
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        return "new"
    refuse_symlinks(work_dir)
    if (work_dir / RESULT_FILE).is_file():
        return "finished"
    if checkpoints(work_dir):
        return "unfinished"
    if read_record(work_dir) is not None:
        return "started"
    others = sorted(p.name for p in work_dir.iterdir() if p.name != LOCK_FILE)
    if others:
        raise WorkDirError(
            f"{work_dir} holds files that are not a wsolbench run ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}); choose a new or an empty --work-dir"
        )
    return "new"


def check_reuse(work_dir: Path, wanted: dict, *, resume: bool) -> str:
    """Decide whether a command asking for ``wanted`` may use ``work_dir``; returns its state.

    Raises:
        WorkDirError: the dir holds an unfinished or finished run and ``--resume`` was not given,
            or it holds another run (every differing key is named).
    """
    state = inspect(work_dir)
    if state in ("new", "started"):
        return state
    what = "a finished run (result.json)" if state == "finished" else "an unfinished run"
    if not resume:
        keep = "keep it" if state == "finished" else "continue it"
        raise WorkDirError(
            f"{work_dir} already holds {what}; pass --resume to {keep}, or choose a new --work-dir"
        )
    stored = read_record(work_dir)
    if stored is None:
        raise WorkDirError(
            f"{work_dir} holds {what} but no {RECORD_FILE} saying what it is (made by an older "
            "wsolbench, or the file was deleted); choose a new --work-dir"
        )
    diff = differences(stored, wanted)
    if diff:
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise WorkDirError(
            f"--resume: {work_dir} holds {what} of another run ({shown}). Resume with the "
            "arguments it was started with, or choose a new --work-dir"
        )
    return state


@contextlib.contextmanager
def locked(work_dir: Path | None, *, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``work_dir`` (created if needed) for the ``with`` block.

    The lock is an ``flock`` on ``<work_dir>/.lock``, released by the kernel when the process ends,
    however it ends: a killed run never leaves a stale lock. A second process fails at once. The
    holder first removes the temporary files a killed writer left in the dir and its ``train/``.
    If the block raises and the dir was created here and holds nothing but the lock, the dir is
    removed, so a command that failed on a user mistake leaves nothing behind.

    Args:
        enabled: False does nothing (ranks other than 0 under torchrun share rank 0's lock).

    Raises:
        WorkDirError: another process holds the lock; the message names its PID and command.
    """
    if not enabled:
        yield
        return
    work_dir = Path(work_dir)
    if work_dir.exists() and not work_dir.is_dir():
        raise WorkDirError(f"--work-dir {work_dir} is a file; pass a folder (new or empty)")
    created = not work_dir.exists()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkDirError(f"--work-dir {work_dir} cannot be created ({exc.strerror})") from None
    handle = open(work_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise WorkDirError(
            f"{work_dir} is in use by {holder}; wait for it to finish, or choose another --work-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]
    handle.write(f"process {os.getpid()} ({command})\n")
    handle.flush()
    try:
        # a run killed while writing a checkpoint, its weights or records left the temporary
        # file; only the run's own files' (visualize writes beside them without the lock)
        left = remove_leftovers(work_dir, only=RUN_FILES) + remove_leftovers(
            work_dir / TRAIN_SUBDIR
        )
        for path in left:
            logger.info("removed %s, half a file a killed run left", path)
        yield
    except BaseException:
        if created and [p.name for p in work_dir.iterdir()] == [LOCK_FILE]:
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
