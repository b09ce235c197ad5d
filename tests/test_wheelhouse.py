"""The offline install of a GPU machine, here: ``gpu_check.sh --wheelhouse`` installs the
wheelhouse into a folder beside a machine's own packages (torch, torchvision, timm, numpy, scipy,
OpenCV, numba), nothing else on the path, and runs the GPU check's dry run; then ``wsolbench
check`` from that layout.

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
#: and pip, which installs the wheelhouse there
MACHINE_TOOLS = ("pip",)


def _wheelhouse_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import wheelhouse
    finally:
        sys.path.pop(0)
    return wheelhouse


def test_a_headless_opencv_on_the_machine_stands_for_opencv_python():
    """GPU images ship opencv-python-headless (this workplace's does); it provides the same cv2
    as the opencv-python that wsolbench and mmengine name, so no second OpenCV is downloaded."""
    wanted = _wheelhouse_module().wanted
    names = [spec.split("==")[0] for spec in wanted("3.12", ["opencv-python-headless"])]
    assert "mmengine" in names and "opencv-python" not in names
    assert "opencv-python" in [spec.split("==")[0] for spec in wanted("3.12", [])]


def test_a_python_without_wsolbench_installed_makes_no_wheelhouse(tmp_path, monkeypatch, capsys):
    """The dependency list is read from wsolbench's installed metadata: without it the list would
    be empty and the folder silently useless."""
    wheelhouse = _wheelhouse_module()
    distribution = metadata.distribution

    def installed(name):
        if name == "wsolbench":
            raise metadata.PackageNotFoundError(name)
        return distribution(name)

    monkeypatch.setattr(metadata, "distribution", installed)
    assert wheelhouse.main(["--out", str(tmp_path / "wheels")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "make install" in error and error.count("\n") == 1
    assert not (tmp_path / "wheels").exists()


def _machine_site(folder: Path) -> Path:
    """A site folder holding only what the machine has: links to this environment's files of
    those distributions and of everything they need."""
    wheelhouse = _wheelhouse_module()
    _target_environment, closure = wheelhouse._target_environment, wheelhouse.closure
    version = "{}.{}".format(*sys.version_info[:2])
    folder.mkdir()
    for name in sorted(closure((*MACHINE_HAS, *MACHINE_TOOLS), _target_environment(version))):
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
    machine = _machine_site(tmp_path / "machine")
    # python -S: no site folder at all; only the machine's packages, the code and (below) the
    # install
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    python.chmod(0o755)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, (machine, REPO))),
        "PYTHON": str(python),
        "HF_HUB_OFFLINE": "1",
    }

    def run(*argv, timeout=300):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    # the one command of a GPU machine: gpu_check.sh installs the wheelhouse itself (pip
    # --no-index --no-deps --target, into the checkout's build/gpu-check-site), beside the
    # machine's packages alone: without that install, mmengine would not import
    run("bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--wheelhouse", str(WHEELHOUSE),
        "--dry-run", "--out", str(tmp_path / "cost"), "--methods", "center")  # fmt: skip
    assert list((tmp_path / "cost").glob("gpu_check-*-quick.json"))
    # the same install serves every other command (benchmarks/wheelhouse.py documents it)
    target = REPO / "build" / "gpu-check-site"
    env["PYTHONPATH"] = os.pathsep.join(map(str, (target, machine, REPO)))
    probe = (
        "from wsolbench.util.compat import ensure_torchvision; ensure_torchvision(); "
        "import mmengine, open_clip, torch; "
        "print(mmengine.__file__); print(open_clip.__file__); print(torch.__file__)"
    )
    mmengine_file, open_clip_file, torch_file = run(str(python), "-c", probe).split()
    assert mmengine_file.startswith(str(target)) and open_clip_file.startswith(str(target))
    assert torch_file.startswith(str(machine))  # the machine's own, untouched
    run(str(python), "-m", "wsolbench", "check", "center")
