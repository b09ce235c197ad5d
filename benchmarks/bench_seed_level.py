"""How often the two-level paired test rejects a true "no difference", by the number of seeds.

The two-level bootstrap (``compare --ci``, ``wsolbench diff``) answers "would another training
run and another test set change this?" by drawing each row's k seeds with replacement on every
resample (their spread widened by sqrt(k / (k - 1)), to the unbiased seed variance). With few
seeds that draw still has little to say: its tails are the few distinct means of k values. This
simulation measures what that does to the test, and so which k the harness accepts
(``MIN_DRAWN_SEEDS``).

Each trial makes two rows that differ by seed noise only: every run draws its true accuracy from
N(``--accuracy``, ``--seed-sd``), then its hits on the same ``--images`` test images (Bernoulli),
for k seeds per row; ``paired_difference`` (two-level, percentile: the metric is a plain mean, no
τ) tests A - B = 0. The rejection rate at p < 0.05 should be 0.05; the script prints it with its
Monte-Carlo error, per k, and the same trials' rate with ``models_fixed`` (which answers another
question, "these trained models on another test set", and so rejects far more often here).

    python benchmarks/bench_seed_level.py                      # k = 2, 3, 4, 5, 8; 1000 trials
    python benchmarks/bench_seed_level.py --seeds 5 10 --trials 1000
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from wsolbench.results.bootstrap import metric_terms
from wsolbench.results.confidence import PERCENTILE
from wsolbench.results.per_image import SplitRecords
from wsolbench.results.row_bootstrap import differences, row_replicates_from_runs, run_resampled


def _terms(hits: np.ndarray):
    """One run's top-1 classification terms from its hits [N] (bool)."""
    ids = np.array([f"{i:05d}" for i in range(len(hits))])
    records = SplitRecords(ids, 0.01, [30, 50, 70], top1=hits, top5=hits)
    return metric_terms(records, "top1_cls", None)


def _row(rng: np.random.Generator, k: int, trial: int, args) -> list:
    """A row's k runs, each resampled on the trial's image resamples."""
    accuracies = np.clip(rng.normal(args.accuracy, args.seed_sd, size=k), 0.0, 1.0)
    hits = [rng.random(args.images) < p for p in accuracies]
    return [run_resampled({"top1_cls": _terms(h)}, args.resamples, trial) for h in hits]


def _p_value(a: list, b: list, models_fixed: bool, trial: int, args) -> float:
    """The paired test's p of mean(A) - mean(B) = 0, as ``wsolbench diff`` computes it, except
    that rows of fewer than ``MIN_DRAWN_SEEDS`` seeds are drawn too (measured here)."""
    streams = (None, None) if models_fixed else (0, 1)
    reps = [
        row_replicates_from_runs(row, args.resamples, trial, seed_stream=stream, minimum_seeds=2)
        for row, stream in zip((a, b), streams, strict=True)
    ]
    seeds = (len(a), len(b))
    [d] = differences(*reps, ["top1_cls"], args.resamples, PERCENTILE, seeds, models_fixed)
    return d.p_value


def rejection_rates(k: int, args) -> tuple[float, float]:
    """(two-level, models-fixed) share of ``args.trials`` null trials with p < 0.05."""
    rng = np.random.default_rng([args.seed, k])
    two_level = fixed = 0
    for trial in range(args.trials):
        a, b = _row(rng, k, trial, args), _row(rng, k, trial, args)
        two_level += _p_value(a, b, False, trial, args) < 0.05
        fixed += _p_value(a, b, True, trial, args) < 0.05
    return two_level / args.trials, fixed / args.trials


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4, 5, 8])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--resamples", type=int, default=400)
    parser.add_argument("--accuracy", type=float, default=0.6)
    parser.add_argument("--seed-sd", type=float, default=0.05, help="sd of a run's true accuracy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        f"{args.trials} null trials per k: {args.images} images, accuracy {args.accuracy} with "
        f"seed sd {args.seed_sd}, {args.resamples} resamples; rejection at p < 0.05 (nominal 0.05)"
    )
    print("seeds  two-level  models-fixed  seconds")
    for k in args.seeds:
        start = time.perf_counter()
        two_level, fixed = rejection_rates(k, args)
        error = math.sqrt(two_level * (1 - two_level) / args.trials)
        seconds = time.perf_counter() - start
        print(f"{k:5d}  {two_level:.3f} ± {error:.3f}  {fixed:.3f}  {seconds:7.1f}")


if __name__ == "__main__":
    main()
