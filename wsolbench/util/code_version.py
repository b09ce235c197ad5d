"""Which code made a result: a git commit with a dirty flag, or a digest of the installed files.

A result names the code of wsolbench and of the method's plugin. From a git checkout (an editable
install, the usual case for a lab) that is the commit and whether the files under the package
differ from it (``dirty``: a result made from uncommitted code cannot be rebuilt from the commit
alone). From an installed wheel, which carries no git history, it is the sha256 of the package's
Python files, so two installations of the same code agree and any edit shows.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
from pathlib import Path


def _git(folder: Path, *args: str) -> str | None:
    """``git -C folder args`` stdout, or None when git or a repository is not there."""
    if shutil.which("git") is None:
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def files_sha256(folder: Path) -> str:
    """sha256 over the relative paths and contents of every ``*.py`` file under ``folder``."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def code_version(folder: Path) -> dict:
    """The code of the package in ``folder`` (its top-level directory).

    Returns:
        ``{"commit": <40 hex>, "dirty": bool}`` inside a git work tree (dirty: a file under
        ``folder`` is modified, staged or untracked), else ``{"files_sha256": <64 hex>}``.
    """
    folder = Path(folder).resolve()
    commit = _git(folder, "rev-parse", "HEAD")
    if commit:
        status = _git(folder, "status", "--porcelain", "--untracked-files=normal", "--", ".")
        return {"commit": commit, "dirty": bool(status)}
    return {"files_sha256": files_sha256(folder)}
