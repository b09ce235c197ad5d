"""A leaderboard row's bootstrap: its runs (seeds) on shared image resamples, and the seed level.

Seeds and images. A row of a leaderboard is the mean over its k seeds, all evaluated on the same
test images, so every seed of every row is evaluated on the same image resamples
(:func:`wsolbench.results.bootstrap.per_seed_resampled_by_key`; rows stay paired). Each run is
resampled on its own (:func:`run_resampled`, so runs can be resampled by separate processes),
then its row combines them (:func:`row_replicates_from_runs`). Two questions, two bootstraps:

- two-level (the default where a row has k >= 3 seeds; 2 are refused, too few to draw): each
  resample also draws k of the row's seeds with replacement and averages the drawn seeds'
  metrics, their deviation from the row's own mean on that resample widened by sqrt(k / (k - 1))
  so that the draws spread as the unbiased seed variance says: "another training run and another
  test set". Two rows draw their seeds independently; a seed-independent or single-seed row has
  no seed level. The jackknife behind BCa's acceleration leaves out images only.
- models fixed: the seed mean of the row's own seeds on every resample: "these trained models on
  another test set".

Paired difference (``wsolbench diff``): the replicates of ``mean(A) - mean(B)`` are the
differences of both rows' replicates on the same image resamples; interval and p-value come from
them by one construction (:mod:`wsolbench.results.confidence`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wsolbench.results.bootstrap import (
    BootstrapError,
    MetricTerms,
    jackknife_values_by_key,
    metric_value,
    per_seed_resampled_by_key,
)
from wsolbench.results.confidence import BCA, PERCENTILE, Replicates, interval, p_value

SEED_DRAWS = 0x5EED  # keys the seed draws' generators apart from the image weights' ones
#: The fewest seeds a row's seed level is drawn from. The draws' spread is widened to the
#: unbiased variance (:func:`row_replicates_from_runs`), but their tails are the few distinct
#: means of k values: with 2 seeds the 95 % test of two rows differing by seed noise only rejects
#: in 11.5 % of trials, with 3 in 6.9 % (``python benchmarks/bench_seed_level.py``, 1,000 trials
#: per k; figures in docs/statistics.md).
MIN_DRAWN_SEEDS = 3


class TooFewSeedsError(BootstrapError):
    """A row's seeds are too few to draw (:data:`MIN_DRAWN_SEEDS`); the message says the fix."""


def draw_seeds(k: int, resamples: int, seed: int, stream: int) -> np.ndarray:
    """float64 [resamples, k]: how often each of a row's k seeds is drawn in each resample (k
    draws with replacement); ``stream`` (the row's, :func:`wsolbench.results.intervals.row_stream`)
    keeps two rows' draws independent."""
    rng = np.random.default_rng([seed, stream, SEED_DRAWS])
    draws = rng.integers(0, k, size=(resamples, k))
    return np.stack([np.bincount(row, minlength=k) for row in draws]).astype(np.float64)


def check_drawn_seeds(k: int, minimum: int = MIN_DRAWN_SEEDS) -> None:
    """Raise unless a row of ``k`` runs has no seeds to draw (k = 1) or at least ``minimum``.

    Raises:
        TooFewSeedsError: why, and the two ways on.
    """
    if 1 < k < minimum:
        raise TooFewSeedsError(
            f"{k} seeds are too few to draw as another training run would: the two-level "
            f"interval needs at least {minimum} (with fewer it is far too narrow, "
            "docs/statistics.md); add seeds, or pass --models-fixed to ask only whether another "
            "test set would change these trained models' figures"
        )


@dataclass
class RunResampled:
    """One run's metrics on the shared image resamples, per metric key: what a row's
    replicates are made of (:func:`row_replicates_from_runs`).

    Attributes:
        values: per key, float64 [B]: the metric on each resample.
        estimate: per key, the metric on all images once.
        jackknife: per key, float64 [N]: the metric with image i left out; None when not asked.
        left_out: per key asked for that the run cannot be resampled on, why.
    """

    values: dict[str, np.ndarray]
    estimate: dict[str, float]
    jackknife: dict[str, np.ndarray] | None
    left_out: dict[str, str] = field(default_factory=dict)


def run_resampled(
    terms: dict[str, MetricTerms], resamples: int, seed: int, *, jackknife: bool = False
) -> RunResampled:
    """One run's metrics (its ``terms`` per key) on the image resamples of ``seed``, and with
    ``jackknife`` each image left out (BCa's acceleration)."""
    if not terms:  # a run with none of the metrics asked for
        return RunResampled({}, {}, {} if jackknife else None)
    per_seed = per_seed_resampled_by_key({key: [t] for key, t in terms.items()}, resamples, seed)
    return RunResampled(
        {key: values[0] for key, values in per_seed.items()},
        {key: metric_value(t) for key, t in terms.items()},
        jackknife_values_by_key(terms) if jackknife else None,
    )


def row_replicates_from_runs(
    runs: Sequence[RunResampled],
    resamples: int,
    seed: int,
    *,
    seed_stream: int | None = None,
    minimum_seeds: int = MIN_DRAWN_SEEDS,
) -> dict[str, Replicates]:
    """A row's seed mean and its replicates (see the module docs), per metric key every run of
    it has, from its runs' :func:`run_resampled` (each on the same image resamples).

    Args:
        seed: seeded the runs' image resamples; here it seeds the seed draws with the stream.
        seed_stream: the two-level bootstrap: each resample also draws the row's k seeds with
            replacement (:func:`draw_seeds` of this stream) when k >= 2 (refused below
            ``minimum_seeds``); None: models fixed.
        minimum_seeds: the fewest seeds drawn; only a benchmark measuring what fewer
            do passes less than :data:`MIN_DRAWN_SEEDS`.

    Raises:
        TooFewSeedsError: seeds to draw, but fewer than ``minimum_seeds``.
    """
    k = len(runs)
    if seed_stream is not None:
        check_drawn_seeds(k, minimum_seeds)
    keys = [key for key in runs[0].values if all(key in run.values for run in runs)]
    counts = (
        draw_seeds(k, resamples, seed, seed_stream) if seed_stream is not None and k > 1 else None
    )
    out = {}
    for key in keys:
        per_seed = np.stack([run.values[key] for run in runs])  # [k, B]
        values = per_seed.mean(axis=0)
        if counts is not None:
            # the drawn seeds' mean about the row's own, its spread widened by sqrt(k / (k - 1)):
            # drawing k of k values spreads their mean by (k - 1) / k of the unbiased variance
            drawn = np.einsum("bk,kb->b", counts, per_seed) / k
            values = values + math.sqrt(k / (k - 1)) * (drawn - values)
        estimate = float(np.mean([run.estimate[key] for run in runs]))
        jack = None
        if runs[0].jackknife is not None:
            jack = np.mean([run.jackknife[key] for run in runs], axis=0)
        out[key] = Replicates(estimate, values, jack)
    return out


def row_replicates_by_key(
    terms: dict[str, Sequence[MetricTerms]],
    resamples: int,
    seed: int,
    *,
    seed_stream: int | None = None,
    jackknife: bool = False,
) -> dict[str, Replicates]:
    """A row's seed mean and its replicates (see the module docs), per metric key.

    Args:
        terms: per key, the row's runs (seeds), on the same images as every other row.
        seed: seeds the image resamples (every row of one comparison shares them).
        seed_stream: the two-level bootstrap: each resample also draws the row's k seeds with
            replacement (:func:`draw_seeds` of this stream) when k >= 2 (refused below
            ``minimum_seeds``); None: models fixed.
        jackknife: also compute the leave-one-image-out values (BCa's acceleration).
    """
    n = next(iter(terms.values()))[0].n_images
    if any(t.n_images != n for runs in terms.values() for t in runs):
        raise BootstrapError("runs of one row must hold records of the same images")
    k = len(next(iter(terms.values())))
    resampled = [
        run_resampled(
            {key: seeds[j] for key, seeds in terms.items()}, resamples, seed, jackknife=jackknife
        )
        for j in range(k)
    ]
    return row_replicates_from_runs(resampled, resamples, seed, seed_stream=seed_stream)


def row_replicates(
    terms: Sequence[MetricTerms],
    resamples: int,
    seed: int,
    *,
    seed_stream: int | None = None,
    jackknife: bool = False,
) -> Replicates:
    """:func:`row_replicates_by_key` of one metric: the row's runs' ``terms``."""
    return row_replicates_by_key(
        {"": terms}, resamples, seed, seed_stream=seed_stream, jackknife=jackknife
    )[""]


@dataclass
class PairedDifference:
    """``mean(A) - mean(B)`` of one metric on the same images, with its uncertainty.

    Attributes:
        low, high: the 95 % interval of ``kind`` (:mod:`wsolbench.results.confidence`).
        p_value: the smallest α whose (1 - α) interval of that kind excludes 0.
        seeds: the number of seeds of A and of B.
        models_fixed: the image-only bootstrap was asked for; otherwise a side with several seeds
            had them resampled too (two-level).
    """

    key: str
    a: float
    b: float
    low: float
    high: float
    p_value: float
    resamples: int
    kind: str = PERCENTILE
    seeds: tuple[int, int] = (1, 1)
    models_fixed: bool = False

    @property
    def difference(self) -> float:
        return self.a - self.b

    @property
    def two_level(self) -> bool:
        """Seeds were resampled on at least one side."""
        return not self.models_fixed and max(self.seeds) > 1


def paired_difference(
    key: str,
    a: Sequence[MetricTerms],
    b: Sequence[MetricTerms],
    *,
    resamples: int = 1000,
    seed: int = 0,
    kind: str = PERCENTILE,
    models_fixed: bool = False,
) -> PairedDifference:
    """Compare two rows (each a list of seeds' terms) on shared resamples of the same images;
    each side with several seeds draws them independently unless ``models_fixed``."""
    return paired_differences(
        {key: a}, {key: b}, resamples=resamples, seed=seed, kind=kind, models_fixed=models_fixed
    )[0]


def paired_differences(
    a: dict[str, Sequence[MetricTerms]],
    b: dict[str, Sequence[MetricTerms]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    kind: str = PERCENTILE,
    models_fixed: bool = False,
) -> list[PairedDifference]:
    """:func:`paired_difference` of every metric key of ``a`` (``b`` has the same keys), each
    row's metrics resampled together (:func:`row_replicates_by_key`)."""
    streams = (None, None) if models_fixed else (0, 1)
    jack = kind == BCA
    reps_a = row_replicates_by_key(a, resamples, seed, seed_stream=streams[0], jackknife=jack)
    reps_b = row_replicates_by_key(b, resamples, seed, seed_stream=streams[1], jackknife=jack)
    seeds = (len(next(iter(a.values()))), len(next(iter(b.values()))))
    return differences(reps_a, reps_b, list(a), resamples, kind, seeds, models_fixed)


def differences(
    reps_a: dict[str, Replicates],
    reps_b: dict[str, Replicates],
    keys: Sequence[str],
    resamples: int,
    kind: str,
    seeds: tuple[int, int],
    models_fixed: bool,
) -> list[PairedDifference]:
    """A - B of every metric of ``keys``, from both rows' replicates on the same resamples (row
    A drew its seeds from stream 0, B from stream 1, unless ``models_fixed``)."""
    return [
        _difference(key, reps_a[key], reps_b[key], resamples, kind, seeds, models_fixed)
        for key in keys
    ]


def _difference(
    key: str,
    rep_a: Replicates,
    rep_b: Replicates,
    resamples: int,
    kind: str,
    seeds: tuple[int, int],
    models_fixed: bool,
) -> PairedDifference:
    diff = rep_a - rep_b
    low, high = interval(diff, kind)
    return PairedDifference(
        key,
        rep_a.estimate,
        rep_b.estimate,
        low,
        high,
        p_value(diff, kind),
        resamples,
        kind,
        seeds,
        models_fixed,
    )
