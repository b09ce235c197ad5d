"""How much of a metric is the choice of test images: bootstrap intervals and paired tests.

Every metric of the protocol is a function of per-image terms (:mod:`wsolbench.results.per_image`):
BoxAcc at (τ, δ) is the share of images whose best box reaches δ at τ, Top-k Cls a share of
hits, PxAP a function of summed histograms. Resampling the test images with replacement and
recomputing the metric on each resample gives its sampling distribution over images, exactly
under every threshold policy:

- ``oracle`` re-picks the best τ on every resample (the reported figure is a maximum over τ, and
  so is its resampled version); Top-1 / Top-5 Loc are read at the resample's best GT-known τ, as
  the point estimate is (``oracle-separate``: at their own best);
- ``select`` and ``fixed:T`` keep the τ chosen once (on the whole val split, or the fixed one);
  only the test images are resampled.

A resample is a vector of image weights (how often each image was drawn); a per-image curve over
τ changes at a few τ only, so the weighted sum of N curves is a sparse product with their
differences and a cumulative sum: 1,000 resamples of 50,000 images in about two seconds
(``benchmarks/bench_bootstrap.py``).

Seeds and images. A row of a leaderboard is the mean over its seeds. Its interval here is over
images only: every seed of every row is evaluated on the same resamples (the same images drawn,
since all runs of one table saw the same test split), and the interval is the 2.5th-97.5th
percentile of the resampled seed-mean. The spread over seeds is reported beside it (the ± std), not
folded in: the two answer different questions (would another test set change the ranking? would
another training seed?).

Paired difference (``wsolbench diff``). Two rows are compared on the same resamples: the interval
of ``mean(A) - mean(B)`` is the percentile interval of the resampled differences, and the p-value
is two-sided, from the resampled differences recentred on zero (the bootstrap test of "no
difference"): ``p = (1 + #{|d* - d| >= |d|}) / (1 + B)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from wsolbench.results.per_image import SplitRecords

CHUNK = 100  # resamples drawn and evaluated at a time (bounds memory: CHUNK x N weights)


class BootstrapError(ValueError):
    """Runs cannot be resampled together (other images, no records); the message says why."""


@dataclass
class MetricTerms:
    """What a metric sums over images, and how it reads the sums.

    Thresholded metrics are sums of per-image bit curves over τ. A curve changes at a few τ only
    (where the image's best box enters or leaves IoU ≥ δ), so it is stored as its differences
    along τ, a sparse matrix: the weighted sum of the curves is then the cumulative sum of the
    weighted differences, ``B x nnz`` work instead of ``B x N x T``.

    Attributes:
        terms: ``kind == "acc"``: scipy CSR [N, C * width] of per-image differences along τ
            (first column of each curve: its value at τ = 0), C curves of ``width`` values
            (width 1: a rate such as Top-1 Cls). ``kind == "pxap"``: float64 [N, 2 * width],
            the image's foreground then background histogram.
        width: values per curve (T, 1, or T + 2 for PxAP).
        index: per curve, the fixed τ index, or None to take the best τ (oracle).
        kind: ``"acc"`` (percent of images, averaged over the C curves: MaxBoxAccV2 has three),
            ``"acc_at_first_best"`` (two curves: the second read at the first's best τ, Top-k Loc
            at GT-known Loc's τ) or ``"pxap"``.
    """

    terms: object
    width: int
    index: list[int | None]
    kind: str = "acc"

    @property
    def n_images(self) -> int:
        return self.terms.shape[0]


def _curve_terms(
    curves: list[np.ndarray], index: list[int | None], kind: str = "acc"
) -> MetricTerms:
    """Terms of C per-image curves (each bool or float [N, width]), stored as differences."""
    from scipy import sparse

    blocks = [np.diff(c.astype(np.int8), axis=1, prepend=0) for c in curves]
    diffs = np.concatenate(blocks, axis=1)
    rows, cols = np.nonzero(diffs)
    values = diffs[rows, cols].astype(np.float32)
    terms = sparse.csr_matrix((values, (rows, cols)), shape=diffs.shape)
    return MetricTerms(terms, curves[0].shape[1], index, kind)


def _iou_index(records: SplitRecords, delta: int) -> int:
    try:
        return records.iou_thresholds.index(delta)
    except ValueError:
        raise BootstrapError(f"the records have no IoU {delta} curve") from None


def _bits(records: SplitRecords, key: str) -> np.ndarray:
    """[N, T] bool: the per-image curve a thresholded metric counts (see the module docs)."""
    if key.startswith("maxboxacc_iou") and records.multi is not None:
        return records.multi[:, _iou_index(records, int(key.removeprefix("maxboxacc_iou")))]
    if key in ("maxboxacc", "gt_known_loc", "top1_loc", "top5_loc") and records.largest is not None:
        bits = records.largest[:, _iou_index(records, 50)]
        if key in ("maxboxacc", "gt_known_loc"):
            return bits
        hits = records.top1 if key == "top1_loc" else records.top5
        if hits is None:
            raise BootstrapError(f"{key}: the records hold no class predictions")
        return bits & hits[:, None]
    raise BootstrapError(f"metric {key!r} cannot be recomputed from these per-image records")


def metric_terms(
    records: SplitRecords, key: str, tau: dict[str, float] | None, *, separate: bool = False
) -> MetricTerms:
    """The per-image terms of ``key`` (a key of :data:`wsolbench.results.record.METRIC_KEYS`).

    Args:
        tau: the chosen τ per metric key (``summarize``'s ``chosen``) for ``select`` / ``fixed``
            policies; None for the oracle policies (best τ on each resample).
        separate: ``oracle-separate``: Top-k Loc at its own best τ, not GT-known Loc's.
    """

    def fixed(name: str) -> int | None:
        return None if tau is None else int(round(tau[name] / records.step))

    if key in ("top1_loc", "top5_loc") and tau is None and not separate:
        gt_known = _bits(records, "gt_known_loc")
        return _curve_terms([gt_known, _bits(records, key)], [None, None], "acc_at_first_best")
    if key == "maxboxacc_v2":
        names = [f"maxboxacc_iou{d}" for d in (30, 50, 70)]
        return _curve_terms([_bits(records, n) for n in names], [fixed(n) for n in names])
    if key in ("top1_cls", "top5_cls"):
        hits = records.top1 if key == "top1_cls" else records.top5
        if hits is None:
            raise BootstrapError(f"{key}: the records hold no class predictions")
        return _curve_terms([hits[:, None]], [0])
    if key == "pxap":
        if records.fg_hist is None:
            raise BootstrapError(
                "pxap: the records hold no per-image PxAP histograms (a dataset without masks, "
                "or a run made with --summed-pxap, whose PxAP cannot be resampled by image)"
            )
        terms = np.concatenate([records.fg_hist, records.bg_hist], axis=1).astype(np.float64)
        return MetricTerms(terms, records.fg_hist.shape[1], [None, None], kind="pxap")
    return _curve_terms([_bits(records, key)], [fixed(key)])


def _weighted_sums(terms: MetricTerms, weights: np.ndarray) -> np.ndarray:
    """[b, C * width]: the terms summed over images with ``weights`` [b, N]."""
    if terms.kind == "pxap":
        return weights.astype(np.float64) @ terms.terms
    diffs = np.asarray(terms.terms.T @ weights.T).T  # [b, C * width] weighted differences
    b = len(weights)
    return np.cumsum(diffs.reshape(b, -1, terms.width), axis=2).reshape(b, -1)


def _values(terms: MetricTerms, sums: np.ndarray, total: np.ndarray) -> np.ndarray:
    """The metric from weighted sums: sums [b, C * width], total [b] (sum of the weights)."""
    if terms.kind == "pxap":
        from wsolbench.metrics import pxap

        fg, bg = sums[:, : terms.width], sums[:, terms.width :]
        return np.array([pxap(f, b) for f, b in zip(fg, bg, strict=True)])
    curves = sums.reshape(len(sums), len(terms.index), terms.width) * (100.0 / total[:, None, None])
    if terms.kind == "acc_at_first_best":  # ties: the lowest τ, as summarize's argmax
        return curves[np.arange(len(curves)), 1, curves[:, 0].argmax(axis=1)]
    picked = [
        curves[:, c].max(axis=1) if index is None else curves[:, c, index]
        for c, index in enumerate(terms.index)
    ]
    return np.mean(picked, axis=0)


def metric_value(terms: MetricTerms) -> float:
    """The metric on all images once (weights 1): what the counts give."""
    ones = np.ones((1, terms.n_images), dtype=np.float32)
    return float(_values(terms, _weighted_sums(terms, ones), np.array([terms.n_images]))[0])


def resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n] float32: how often each image is drawn in each resample (``n`` draws with
    replacement). Drawn in chunks of :data:`CHUNK`, each from a generator seeded with (``seed``,
    chunk), so :func:`resampled` can draw chunk by chunk and get the same weights."""
    return np.concatenate(list(_weight_chunks(n, resamples, seed)))


def _weight_chunks(n: int, resamples: int, seed: int):
    for chunk, start in enumerate(range(0, resamples, CHUNK)):
        size = min(CHUNK, resamples - start)
        rng = np.random.default_rng([seed, chunk])
        draws = rng.integers(0, n, size=(size, n), dtype=np.int64)
        draws += (np.arange(size, dtype=np.int64) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float32)


def resampled(terms: Sequence[MetricTerms], resamples: int, seed: int) -> np.ndarray:
    """[resamples] values of the mean of several runs' metric (their seed mean), every run on
    the same resamples of the images (its terms are rows of the same images)."""
    n = terms[0].n_images
    if any(t.n_images != n for t in terms):
        raise BootstrapError("runs of one row must hold records of the same images")
    values = []
    for weights in _weight_chunks(n, resamples, seed):
        total = weights.sum(axis=1, dtype=np.float64)
        values.append(np.mean([_values(t, _weighted_sums(t, weights), total) for t in terms], 0))
    return np.concatenate(values)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of resampled values."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class PairedDifference:
    """``mean(A) - mean(B)`` of one metric on the same images, with its uncertainty."""

    key: str
    a: float
    b: float
    low: float
    high: float
    p_value: float
    resamples: int

    @property
    def difference(self) -> float:
        return self.a - self.b


def paired_difference(
    key: str,
    a: Sequence[MetricTerms],
    b: Sequence[MetricTerms],
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> PairedDifference:
    """Compare two rows (each a list of seeds' terms) on shared resamples of the same images."""
    mean_a = float(np.mean([metric_value(t) for t in a]))
    mean_b = float(np.mean([metric_value(t) for t in b]))
    diffs = resampled(a, resamples, seed) - resampled(b, resamples, seed)
    observed = mean_a - mean_b
    extreme = np.count_nonzero(np.abs(diffs - observed) >= abs(observed) - 1e-9)
    low, high = interval(diffs)
    return PairedDifference(
        key, mean_a, mean_b, low, high, (1 + extreme) / (1 + resamples), resamples
    )


def check_same_images(named: Sequence[tuple[str, SplitRecords]]) -> None:
    """Raise unless every run's records cover the same images (ids, in the same order)."""
    first_name, first = named[0]
    for name, records in named[1:]:
        if len(records) != len(first) or not np.array_equal(records.image_ids, first.image_ids):
            raise BootstrapError(
                f"{name} and {first_name} were evaluated on different images; intervals and "
                "paired tests need the same test split (the same data fingerprint)"
            )
