"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Write to a temporary file in the destination folder, flush and fsync it, then ``os.replace`` it over
the destination (atomic on POSIX within one file system). An exception on the way removes the
temporary file and leaves the destination untouched. A folder built whole in a temporary sibling
is published the same way (:func:`rename_into_place`, :func:`replace_folder`); that sibling is
made by :func:`building_folder`, and :func:`build_lock` keeps cached builds one at a time and
removes what a killed one left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set, then restore at once
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import, before any thread of ours runs


# errno values that mean "no room for this file": a full disk, a quota, a file-size limit
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


# write_bytes_atomic's temporary beside ``name``: ".<name>.<8 random characters>.tmp"
_TEMPORARY_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")


class NoRoomError(OSError):
    """A file did not fit (disk full, quota, ``ulimit -f``); the message names the file, the
    space it needs and the fix. Nothing was written: the destination is as it was."""


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, creating parent folders.

    Raises:
        NoRoomError: the disk, a quota or the file-size limit has no room for ``data``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = None
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX
        )
        # mkstemp creates the file private (0600); the result should read like any other file
        os.chmod(temporary, 0o666 & ~_UMASK)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if not isinstance(exc, OSError) or exc.errno is None:
            raise
        if exc.errno in _NO_ROOM:
            raise NoRoomError(
                f"cannot write {path}: {exc.strerror} ({_size(len(data))} needed); free disk "
                "space (or raise the file-size limit, `ulimit -f`) and run the command again"
            ) from None
        # the error names the file asked for, not our temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def remove_leftovers(folder: str | Path, only: Collection[str] | None = None) -> list[Path]:
    """Remove the temporary files of :func:`write_bytes_atomic` that a killed writer left in
    ``folder`` (SIGKILL skips its cleanup); call it only holding the folder alone (its lock),
    since another writer's file in progress looks the same.

    Args:
        only: the file names whose temporaries to remove (None: all), when writers that do not
            hold the lock write there too.

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _TEMPORARY.fullmatch(path.name)
        if match and (only is None or match["name"] in only) and path.is_file():
            found.append(path)
    for path in found:
        path.unlink(missing_ok=True)
    return found


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 100_000 else f"{n_bytes} bytes"


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) atomically, creating parent folders."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, content: Any) -> None:
    """Replace ``path`` with ``content`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(content, indent=2, sort_keys=False) + "\n")


def rename_into_place(built: Path, final: Path) -> bool:
    """Rename the finished folder ``built`` (a sibling of ``final``) to ``final``: a reader sees
    no folder or a complete one. Several processes may race to build the same cached folder.

    Returns:
        True if ours is now ``final``; False if another process renamed its copy first (ours is
        removed: both are the same build).

    Raises:
        OSError: any other failure (``built`` is removed).
    """
    try:
        os.rename(built, final)
        return True
    except OSError as exc:
        shutil.rmtree(built, ignore_errors=True)
        # rename onto a non-empty folder fails: the other process's copy is there
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.exists():
            raise
        return False


def replace_folder(built: Path, final: Path) -> None:
    """Rename the finished folder ``built`` (a sibling of ``final``) to ``final``, replacing an
    existing ``final`` as a whole; ``built`` is removed if that fails. ``rename()`` cannot replace
    a non-empty folder, so the old one is moved aside first: for that moment ``final`` is absent,
    never half-written."""
    try:
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old.", dir=final.parent))
            os.rename(final, old / final.name)
            os.rename(built, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(built, final)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise


@contextlib.contextmanager
def build_lock(final: Path) -> Iterator[None]:
    """One build of ``final`` (a folder, or a file written by :func:`write_bytes_atomic`) at a
    time, across processes: an ``flock`` on the sibling file ``.<final>.lock``, which the kernel
    drops when its holder ends, killed or not. A process that waited must look again whether
    ``final`` exists (the holder may have built it). Not reentrant: a process holding it must not
    ask again for the same ``final``.

    While it is held no other build of ``final`` runs (every builder takes it), so what a build
    killed outright (SIGKILL, a power cut) left is a dead one's: the ``.<final>.tmp-*`` folders of
    :func:`building_folder` and the temporaries of ``final`` itself are removed on taking it. The
    lock file is never removed (a process may be waiting on it). It is opened for writing, as an
    exclusive ``flock`` on NFS needs, or read-only where another user made it (a shared cache).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.parent / f".{final.name}.lock"
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        descriptor = os.open(lock, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.warning("waiting for another process to finish building %s", final)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        for dead in final.parent.glob(f"{glob.escape(f'.{final.name}.tmp-')}*"):
            shutil.rmtree(dead, ignore_errors=True)
        remove_leftovers(final.parent, only=(final.name,))
        yield
    finally:
        os.close(descriptor)  # releases the lock


@contextlib.contextmanager
def building_folder(final: Path) -> Iterator[Path]:
    """A new empty hidden sibling of ``final`` (``.<final>.tmp-XXXX``, with the mode the umask
    gives a new folder) to build ``final`` in and rename into place (:func:`rename_into_place`)
    inside the ``with``; whatever is left of it on leaving (an error, a lost race) is removed.
    Under :func:`build_lock`, a build killed outright leaves it to the next build to remove."""
    final.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        os.chmod(folder, 0o777 & ~_UMASK)  # mkdtemp makes it private; a cache is shared
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
