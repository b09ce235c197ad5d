"""Wall time of a small grid through ``wsolbench sweep``: several cells at once with one torch
thread each, against one cell at a time with all the threads.

    python benchmarks/bench_sweep.py [--methods center cam] [--seeds 0-3] [--epochs 2]
                                     [--threads 2] [--repeat 1]

The same grid (``--methods`` × ``--seeds`` on ``synthetic-v1``, ``-o train.max_epochs=EPOCHS``) runs
into two fresh roots: ``--slots THREADS --threads 1``, then ``--slots 1 --threads THREADS``; with
``--repeat N`` the two alternate N times, so a change in machine load hits both alike. Prints each
wall time, the ratio, and the load average before and after (this machine is shared).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _sweep(root: Path, args, slots: int, threads: int) -> float:
    argv = [sys.executable, "-m", "wsolbench", "sweep", "--methods", *args.methods]
    argv += ["--datasets", "synthetic", "--seeds", args.seeds, "--root", str(root)]
    argv += ["-o", f"train.max_epochs={args.epochs}", "--executor", "local"]
    argv += ["--slots", str(slots), "--threads", str(threads)]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["center", "cam"])
    parser.add_argument("--seeds", default="0-3")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    parallel, serial = [], []
    with tempfile.TemporaryDirectory() as folder:
        for turn in range(args.repeat):
            parallel.append(_sweep(Path(folder) / f"p{turn}", args, args.threads, 1))
            serial.append(_sweep(Path(folder) / f"s{turn}", args, 1, args.threads))
    print(f"load average after: {os.getloadavg()}")
    grid = f"{' '.join(args.methods)} x seeds {args.seeds}, {args.epochs} epochs"
    for p, s in zip(parallel, serial, strict=True):
        print(
            f"{grid}: {args.threads} slots x 1 thread {p:.1f} s; 1 slot x {args.threads} "
            f"threads {s:.1f} s; ratio {s / p:.2f}"
        )


if __name__ == "__main__":
    main()
