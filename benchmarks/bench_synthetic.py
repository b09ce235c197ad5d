"""Time the synthetic dataset generator and print what it made.

Usage: python benchmarks/bench_synthetic.py [--repeat 3] [--num-classes 10] [--image-size 96]

Generates the dataset into a temporary folder ``--repeat`` times and prints the best wall time, the
images per second, the bytes written and the ground-truth statistics of ``synthetic.json`` (mean GT
box area as a fraction of the image, mean object length as a fraction of the side).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from wsolbench.data.generated import SPLITS
from wsolbench.data.synthetic import SyntheticConfig, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=SyntheticConfig.num_classes)
    parser.add_argument("--image-size", type=int, default=SyntheticConfig.image_size)
    args = parser.parse_args()
    config = SyntheticConfig(num_classes=args.num_classes, image_size=args.image_size)
    images = config.num_classes * sum(config.per_class(s) for s in SPLITS)

    times = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            root = generate(Path(tmp) / "synthetic", config)
            times.append(time.perf_counter() - start)
            size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
            stats = json.loads((root / "synthetic.json").read_text())["stats"]
    best = min(times)
    print(f"config: {config}")
    print(f"{images} images in {best:.2f} s (best of {args.repeat}), {images / best:.0f} images/s")
    print(f"{size / 2**20:.1f} MiB written")
    for split, values in stats.items():
        print(f"{split}: {values}")


if __name__ == "__main__":
    main()
