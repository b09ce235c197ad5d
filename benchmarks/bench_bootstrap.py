"""Per-image records: file size at CUB and ILSVRC scale, and the bootstrap's speed.

Size: CAM-like maps (``bench_evaluator.iter_workload``: random 7x7 / 14x14 maps resized bicubic to
224 px, one or two GT boxes) are counted through the real counter with per-image records, with
class predictions (top-1 right on ~70 % of the images) and no masks (CUB and ILSVRC have boxes
only), at step 0.001; the records are written as a run writes them and the file's size printed,
for 5,794 images (CUB's test split) and 50,000 (ILSVRC's).

Speed: 1,000 bootstrap resamples of one metric (MaxBoxAcc at IoU 50, oracle: the best τ re-picked
on every resample) over ``--n-records`` per-image records (default 50,000), timed as a whole:
drawing the resample weights and the resampled metric. The records here are synthetic bits (each
image reaches IoU 0.5 on a random interval of τ), the same shape as a real run's.

    python benchmarks/bench_bootstrap.py                        # sizes for 5,794 and 50,000
    python benchmarks/bench_bootstrap.py --sizes 5794 --n-records 50000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_evaluator import iter_workload  # noqa: E402

from wsolbench import metrics as M  # noqa: E402
from wsolbench.results.bootstrap import (  # noqa: E402
    jackknife_values,
    metric_terms,
    metric_value,
    resampled,
)
from wsolbench.results.confidence import BCA, Replicates, interval  # noqa: E402
from wsolbench.results.per_image import RecordCollector, SplitRecords, save_records  # noqa: E402

STEP = 0.001


def record_size(n: int, seed: int = 0) -> tuple[int, float]:
    """(bytes of the records file of n CAM-like 224-px maps with boxes and labels, seconds)."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    counter = M.SplitCounter(M.threshold_grid(STEP), (30, 50, 70))
    collector = RecordCollector(STEP, [30, 50, 70])
    for i, (scoremap, gt) in enumerate(iter_workload(n, 224, seed)):  # one map in memory at a time
        label = int(rng.integers(0, 200))
        others = [c for c in rng.permutation(200)[:6].tolist() if c != label][:4]
        topk = [label, *others] if rng.random() < 0.7 else [*others, label]
        collector.add(f"{i:06d}.jpg", counter.update(scoremap, gt, label, topk))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "per_image.npz"
        save_records(path, {"test": collector.records()}, {"test": counter.to_dict()})
        return path.stat().st_size, time.perf_counter() - started


def synthetic_records(n: int, seed: int = 0) -> SplitRecords:
    """n images whose best box reaches IoU 0.5 on a random interval of the 1,000 τ."""
    rng = np.random.default_rng(seed)
    t = len(M.threshold_grid(STEP))
    start = rng.integers(0, t, n)
    stop = np.minimum(start + rng.integers(0, t // 2, n), t)
    taus = np.arange(t)
    bits = (taus >= start[:, None]) & (taus < stop[:, None])
    largest = np.repeat(bits[:, None, :], 3, axis=1)
    return SplitRecords(
        np.array([f"{i:06d}" for i in range(n)]), STEP, [30, 50, 70], largest, largest
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[5794, 50000])
    parser.add_argument("--n-records", type=int, default=50000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for n in args.sizes:
        size, seconds = record_size(n)
        print(
            f"records of {n} images (boxes, labels, 224 px, step {STEP}): {size / 1e6:.2f} MB, "
            f"{size / n:.0f} B per image (made in {seconds:.0f} s)"
        )
    records = synthetic_records(args.n_records)
    started = time.perf_counter()
    terms = [metric_terms(records, "maxboxacc", None)]
    built = time.perf_counter()
    values = resampled(terms, args.resamples, seed=0)
    done = time.perf_counter()
    jackknife = jackknife_values(terms[0])  # BCa's leave-one-image-out values
    jacked = time.perf_counter()
    low, high = interval(Replicates(metric_value(terms[0]), values, jackknife), BCA)
    print(
        f"bootstrap: {args.resamples} resamples of MaxBoxAcc (oracle) over {args.n_records} "
        f"images in {done - started:.2f} s (per-image terms {built - started:.2f} s, resampling "
        f"{done - built:.2f} s); leave-one-out values for BCa {jacked - done:.2f} s; 95 % BCa "
        f"interval [{low:.2f}, {high:.2f}]"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
