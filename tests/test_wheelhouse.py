"""The offline install of a GPU machine, here: the wheelhouse installed into a fresh folder beside
a machine's own packages (torch, torchvision, timm, numpy, scipy, OpenCV, numba), nothing else on
the path, then ``wsolbench check`` and the GPU check's dry run from that layout.

``make test`` downloads the wheelhouse first (``build/wheelhouse-test``: ``benchmarks/wheelhouse.py
--have timm numpy scipy opencv-python numba``), so this test needs no network.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = REPO / "build" / "wheelhouse-test"
MACHINE_HAS = ("torch", "torchvision", "timm", "numpy", "scipy", "opencv-python", "numba")


def _machine_site(folder: Path) -> Path:
    """A site folder holding only what the machine has: links to this environment's files of
    those distributions and of everything they need."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from wheelhouse import _target_environment, closure
    finally:
        sys.path.pop(0)
    version = "{}.{}".format(*sys.version_info[:2])
    folder.mkdir()
    for name in sorted(closure(MACHINE_HAS, _target_environment(version))):
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        site = Path(dist.locate_file(""))
        for entry in {Path(str(f)).parts[0] for f in dist.files or ()}:
            if entry.startswith("..") or entry.endswith(".pth") or entry == "__pycache__":
                continue
            if (site / entry).exists() and not (folder / entry).exists():
                (folder / entry).symlink_to(site / entry)
    return folder


def test_the_wheelhouse_installs_beside_the_machines_torch_and_runs(tmp_path):
    if not (WHEELHOUSE / "requirements.txt").is_file():
        pytest.fail(f"{WHEELHOUSE} is missing: `make test` downloads it (see the Makefile)")
    wheels = sorted(WHEELHOUSE.glob("*.whl"))
    assert not [w for w in wheels if w.name.startswith(("torch-", "torchvision-"))]
    target = tmp_path / "target"
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet"]
    pip += ["--disable-pip-version-check", "--target", str(target), *map(str, wheels)]
    subprocess.run(pip, check=True, timeout=300, env={**os.environ, "PIP_CONSTRAINT": ""})
    machine = _machine_site(tmp_path / "machine")
    # python -S: no site folder at all; only the install, the machine's packages and the code
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, (target, machine, REPO))),
        "PYTHON": str(python),
        "HF_HUB_OFFLINE": "1",
    }

    def run(*argv, timeout=300):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    probe = (
        "from wsolbench.util.compat import ensure_torchvision; ensure_torchvision(); "
        "import mmengine, open_clip, torch; "
        "print(mmengine.__file__); print(open_clip.__file__); print(torch.__file__)"
    )
    where = run(str(python), "-c", probe)
    mmengine_file, open_clip_file, torch_file = where.split()
    assert mmengine_file.startswith(str(target)) and open_clip_file.startswith(str(target))
    assert torch_file.startswith(str(machine))  # the machine's own, untouched
    run(str(python), "-m", "wsolbench", "check", "center")
    run("bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out",
        str(tmp_path / "cost"), "--methods", "center", "cam")  # fmt: skip
    assert list((tmp_path / "cost").glob("gpu_check-*-quick.json"))
