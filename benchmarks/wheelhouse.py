"""The wheels an offline machine with its own torch needs to run wsolbench (``make wheelhouse``).

A GPU machine usually has Python, a CUDA build of torch and torchvision, and often timm, numpy,
scipy, OpenCV (often opencv-python-headless) and numba; it rarely has mmengine, open_clip,
submitit or their small dependencies, and it has no network. This script downloads, here, every
wheel wsolbench needs beyond what the target has (``--have``, with everything those packages
need), for the target's Python and platform, at the versions ``constraints.txt`` pins::

    python benchmarks/wheelhouse.py --python-version 3.12 --out wheelhouse-py3.12
    python benchmarks/wheelhouse.py --python-version 3.12 --have timm numpy scipy \\
        opencv-python-headless numba --out wheelhouse-py3.12   # smaller: what such a box has

Copy the folder and this repository to the target, then, with no network::

    python3 -m pip install --isolated --no-index --no-deps --target .wsolbench-site \\
        wheelhouse-py3.12/*.whl
    export PYTHONPATH=$PWD/.wsolbench-site:$PWD
    python3 -m wsolbench check center

or, for the device check alone, ``bash benchmarks/gpu_check.sh --wheelhouse wheelhouse-py3.12``,
which does the same in the checkout's ``build/gpu-check-site``. A folder on ``PYTHONPATH``
rather than a venv: ``python3 -m venv --system-site-packages`` made from a Python that is itself
a venv (GPU images keep torch in one) sees the base Python's packages, not that torch.
``--no-deps``: the folder already holds everything the machine lacks, and pip's resolver would
insist on the ``opencv-python`` that wsolbench and mmengine name even where
``opencv-python-headless`` provides the same ``cv2``. The folder also holds ``requirements.txt``
(what it holds, pinned). The dependency list is read from this environment's installed metadata
(``make install`` first), with the target's Python version in the markers.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
#: always on the target: the machine's own CUDA build, never replaced
MACHINE_OWN = ("torch", "torchvision")
#: distributions that each install the same ``cv2`` module: a machine with any of them (GPU images
#: often ship opencv-python-headless) needs none of the others, whichever one a package names
CV2_DISTRIBUTIONS = frozenset(
    ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
     "opencv-contrib-python-headless")
)  # fmt: skip
#: wheel platform tags accepted for the target (manylinux x86_64, and pure-Python wheels)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")


def _target_environment(python_version: str) -> dict:
    environment = default_environment()
    environment.update(
        python_version=python_version,
        python_full_version=f"{python_version}.0",
        sys_platform="linux",
        platform_system="Linux",
        os_name="posix",
        implementation_name="cpython",
    )
    return environment


def _requirements(name: str, environment: dict) -> list[str]:
    """The names a distribution requires on the target (no extras), from installed metadata."""
    try:
        requires = metadata.distribution(name).requires or []
    except metadata.PackageNotFoundError:
        return []
    names = []
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate({**environment, "extra": ""}):
            continue
        names.append(canonicalize_name(requirement.name))
    return names


def closure(roots, environment: dict) -> set[str]:
    """Every distribution ``roots`` need on the target, the roots included (canonical names)."""
    seen: set[str] = set()
    stack = [canonicalize_name(r) for r in roots]
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(_requirements(name, environment))
    return seen


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    found = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            found[canonicalize_name(match.group(1))] = match.group(2)
    return found


def wanted(python_version: str, have: list[str]) -> list[str]:
    """``name==version`` of every wheel the target lacks, sorted: wsolbench's runtime closure
    minus what ``have`` (and the machine's own torch) bring; any OpenCV distribution there
    stands for all of them."""
    try:
        metadata.distribution("wsolbench")
    except metadata.PackageNotFoundError:  # every dependency would go unseen: an empty folder
        raise LookupError(
            f"wsolbench is not installed in {sys.executable}, and its dependency list is read "
            "from the installed metadata: run make install, then .venv/bin/python "
            "benchmarks/wheelhouse.py (or make wheelhouse)"
        ) from None
    environment = _target_environment(python_version)
    needed = closure(["wsolbench"], environment) - {"wsolbench"}
    machine_has = closure([*MACHINE_OWN, *have], environment)
    needed -= machine_has
    if machine_has & CV2_DISTRIBUTIONS:
        needed -= CV2_DISTRIBUTIONS
    versions = pins()
    unpinned = sorted(needed - versions.keys())
    if unpinned:  # a wheelhouse of unpinned versions would not be the install the tests ran on
        raise LookupError(f"constraints.txt pins no version of {', '.join(unpinned)}: add them")
    return [f"{name}=={versions[name]}" for name in sorted(needed)]


def download(specs: list[str], python_version: str, out: Path) -> None:
    digits = python_version.replace(".", "")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--python-version", python_version, "--implementation", "cp"]
    command += ["--abi", f"cp{digits}", "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run([*command, "--dest", str(out), *specs], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python-version", default="3.12", help="the target's (default 3.12)")
    parser.add_argument(
        "--have",
        nargs="*",
        default=[],
        help="packages the target already has (with all they need); torch and torchvision always",
    )
    parser.add_argument("--out", type=Path, help="default: wheelhouse-py<VERSION>")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        parser.error(f"--python-version {args.python_version}: use MAJOR.MINOR, e.g. 3.12")
    out = args.out or REPO / f"wheelhouse-py{args.python_version}"
    try:
        specs = wanted(args.python_version, args.have)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    download(specs, args.python_version, out)
    (out / "requirements.txt").write_text("".join(f"{s}\n" for s in specs), encoding="utf-8")
    size = sum(p.stat().st_size for p in out.glob("*.whl"))
    print(f"{len(specs)} wheels for Python {args.python_version} in {out} ({size / 2**20:.1f} MiB)")
    print(f"on the target: bash benchmarks/gpu_check.sh --wheelhouse {out.name} --out reports/cost")
    print("  (or install it for every command: see this script's docstring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
