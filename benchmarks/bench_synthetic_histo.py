"""Time drawing the histology world (``synthetic-histo``) and print how fast it went.

Usage: python benchmarks/bench_synthetic_histo.py [--repeat 3] [--image-size 96] [--seed 0]

Generates the set of ``HistoConfig(image_size, seed)`` (the default: the data of the shipped
protocol ``synthetic-histo-v1``, 840 images) into a temporary folder ``--repeat`` times and prints
the best wall and CPU times, the images per second and the sha256 of the sorted file hashes, so
that two versions of the generator can be checked to write the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from wsolbench.data.generated import SPLITS
from wsolbench.data.synthetic_histo import HistoConfig, generate_histo


def tree_digest(root: Path) -> str:
    """sha256 over every file's relative path and sha256, in sorted order."""
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root)}\n"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=HistoConfig.image_size)
    parser.add_argument("--seed", type=int, default=HistoConfig.seed)
    args = parser.parse_args()
    config = HistoConfig(image_size=args.image_size, seed=args.seed)
    images = config.num_classes * sum(config.per_class(s) for s in SPLITS)

    walls, cpus, digests = [], [], set()
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            root = generate_histo(Path(tmp) / "histo", config)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            digests.add(tree_digest(root))
    best = min(walls)
    print(f"config: {config}")
    print(
        f"{images} images in {best:.2f} s wall, {min(cpus):.2f} s CPU (best of {args.repeat}), "
        f"{images / best:.0f} images/s"
    )
    print(f"files sha256: {', '.join(sorted(digests))}")


if __name__ == "__main__":
    main()
