"""How much of a metric is the choice of test images (and of training seeds): bootstrap replicates.

Every metric of the protocol is a function of per-image terms (:mod:`wsolbench.results.per_image`):
BoxAcc at (τ, δ) is the share of images whose best box reaches δ at τ, Top-k Cls a share of
hits, PxAP a function of summed histograms. Resampling the test images with replacement and
recomputing the metric on each resample gives replicates of it under every threshold policy:

- ``oracle`` re-picks the best τ on every resample (the reported figure is a maximum over τ, and
  so is its resampled version); Top-1 / Top-5 Loc are read at the resample's best GT-known τ, as
  the point estimate is (``oracle-separate``: at their own best). A maximum is optimistic, and the
  resampled maximum is optimistic again: its replicates sit above the estimate, so the interval
  read from them must correct for it (BCa, :mod:`wsolbench.results.confidence`);
- ``select`` and ``fixed:T`` keep the τ chosen once (on the whole val split, or the fixed one);
  only the test images are resampled, and the replicates sit around the estimate.

A resample is a vector of image weights (how often each image was drawn); a per-image curve over
τ changes at a few τ only, so the weighted sum of N curves is a sparse product with their
differences and a cumulative sum: 1,000 resamples of 50,000 images in about two seconds
(``benchmarks/bench_bootstrap.py``). The leave-one-image-out values BCa needs are the summed
curves minus each image's own curve (sums are linear), a chunk of images at a time.

A row of a leaderboard (its seeds) is resampled in :mod:`wsolbench.results.row_bootstrap`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from wsolbench.metrics.overlap import MASK_TAU_KEYS, OVERLAP_KEYS, overlap_curves
from wsolbench.results.per_image import SplitRecords

CHUNK = 100  # resamples drawn and evaluated at a time (bounds memory: CHUNK x N weights)
# images left out at a time for the jackknife: bounds memory to about JACKKNIFE_CHUNK x C x T
# float64 (2,000 x 3 x 1,000: 48 MB) whatever N is
JACKKNIFE_CHUNK = 2000
# kinds whose terms are per-image mask histograms (dense), not sparse curve differences
HISTOGRAM_KINDS = ("pxap", "overlap", "overlap_own")


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
            (width 1: a rate such as Top-1 Cls). The histogram kinds (:data:`HISTOGRAM_KINDS`):
            float64 [N, 2 * width], the image's foreground then background histogram.
        width: values per curve (T, 1, or T + 2 for PxAP).
        index: per curve, the fixed τ index, or None to take the best τ (oracle).
        kind: ``"acc"`` (percent of images, averaged over the C curves: MaxBoxAccV2 has three),
            ``"acc_at_first_best"`` (two curves: the second read at the first's best τ, Top-k Loc
            at GT-known Loc's τ), ``"pxap"``, or ``"overlap"`` (``overlap_key`` of
            :func:`~wsolbench.metrics.overlap.overlap_curves` read at the fixed τ, or at the best
            mIoU's; ``"overlap_own"``: at its own best, ``oracle-separate``'s Dice and mIoU).
        overlap_key: the overlap kinds' metric (a key of
            :data:`~wsolbench.metrics.overlap.MASK_TAU_KEYS`: Dice, mIoU or a rate).
    """

    terms: object
    width: int
    index: list[int | None]
    kind: str = "acc"
    overlap_key: str | None = None

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
    if key == "pxap" or key in MASK_TAU_KEYS:
        if records.fg_hist is None:
            raise BootstrapError(
                f"{key}: the records hold no per-image mask histograms (a dataset without masks, "
                "or a run made with --summed-pxap, whose mask metrics cannot be resampled by image)"
            )
        terms = records.mask_terms
        width = records.fg_hist.shape[1]
        if key == "pxap":
            return MetricTerms(terms, width, [None, None], kind="pxap")
        # one τ for all, the best mIoU's, as summarize reads them (oracle-separate: Dice and
        # mIoU at their own; the rates, which have no best, still at mIoU's)
        own = separate and tau is None and key in OVERLAP_KEYS
        kind = "overlap_own" if own else "overlap"
        return MetricTerms(terms, width, [fixed(key)], kind=kind, overlap_key=key)
    return _curve_terms([_bits(records, key)], [fixed(key)])


def _weighted_sums(terms: MetricTerms, weights: np.ndarray) -> np.ndarray:
    """[b, C * width]: the terms summed over images with ``weights`` [b, N]."""
    if terms.kind in HISTOGRAM_KINDS:
        return weights.astype(np.float64) @ terms.terms
    diffs = np.asarray(terms.terms.T @ weights.T).T  # [b, C * width] weighted differences
    b = len(weights)
    return np.cumsum(diffs.reshape(b, -1, terms.width), axis=2).reshape(b, -1)


def _values(
    terms: MetricTerms, sums: np.ndarray, total: np.ndarray, shared: dict | None = None
) -> np.ndarray:
    """The metric from weighted sums: sums [b, C * width], total [b] (sum of the weights);
    ``shared`` (see :func:`_shared`) keeps the overlap curves of these sums for other keys."""
    if terms.kind == "pxap":
        from wsolbench.metrics import pxap

        fg, bg = sums[:, : terms.width], sums[:, terms.width :]
        return np.array([pxap(f, b) for f, b in zip(fg, bg, strict=True)])
    if terms.kind in ("overlap", "overlap_own"):
        return _overlap_values(terms, sums, shared)
    curves = sums.reshape(len(sums), len(terms.index), terms.width) * (100.0 / total[:, None, None])
    if terms.kind == "acc_at_first_best":  # ties: the lowest τ, as summarize's argmax
        return curves[np.arange(len(curves)), 1, curves[:, 0].argmax(axis=1)]
    picked = [
        curves[:, c].max(axis=1) if index is None else curves[:, c, index]
        for c, index in enumerate(terms.index)
    ]
    return np.mean(picked, axis=0)


def _overlap_values(terms: MetricTerms, sums: np.ndarray, shared: dict | None) -> np.ndarray:
    """[b] Dice FG / BG, mIoU or a rate from b pairs of summed histograms [b, 2 * width], each at
    the fixed τ or (oracle) at its best mIoU's τ, or its own best (``overlap_own``); ties: the
    lowest τ."""
    fg, bg = sums[:, : terms.width], sums[:, terms.width :]
    if shared is None:
        curves = overlap_curves(fg, bg)
    else:
        curves = _shared(shared, sums, partial(overlap_curves, fg, bg))
    values = curves[terms.overlap_key]
    index = terms.index[0]
    if index is not None:
        return values[:, index].astype(np.float64)
    best = curves[terms.overlap_key if terms.kind == "overlap_own" else "miou"]
    return np.take_along_axis(values, best.argmax(axis=1)[:, None], axis=1)[:, 0]


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


def _shared(shared: dict, source, compute):
    """``compute()``, done once per ``source`` object while ``shared`` lives (it holds the
    source, so its id stays its own)."""
    held = shared.get(id(source))
    if held is None or held[0] is not source:
        held = shared[id(source)] = (source, compute())
    return held[1]


def per_seed_resampled_by_key(
    terms: dict[str, Sequence[MetricTerms]], resamples: int, seed: int
) -> dict[str, np.ndarray]:
    """Per metric key, [k, resamples]: each of k runs' metric (a row's seeds) on the same
    resamples of the images (its terms are rows of the same images). The keys are resampled
    together, a chunk of resamples at a time, so that metrics summing the same terms (the mask
    metrics: :attr:`~wsolbench.results.per_image.SplitRecords.mask_terms`) sum them, and read
    their overlap curves, once."""
    n = next(iter(terms.values()))[0].n_images
    if any(t.n_images != n for runs in terms.values() for t in runs):
        raise BootstrapError("runs of one row must hold records of the same images")
    values: dict[str, list] = {key: [] for key in terms}
    for weights in _weight_chunks(n, resamples, seed):
        total = weights.sum(axis=1, dtype=np.float64)
        shared: dict = {}  # this chunk's sums per terms array, overlap curves per sums
        for key, runs in terms.items():
            row = []
            for t in runs:
                sums = _shared(shared, t.terms, partial(_weighted_sums, t, weights))
                row.append(_values(t, sums, total, shared))
            values[key].append(row)
    return {key: np.concatenate(chunks, axis=1) for key, chunks in values.items()}


def per_seed_resampled(terms: Sequence[MetricTerms], resamples: int, seed: int) -> np.ndarray:
    """[k, resamples]: each of k runs' metric (a row's seeds) on the same resamples of the images
    (its terms are rows of the same images)."""
    return per_seed_resampled_by_key({"": terms}, resamples, seed)[""]


def resampled(terms: Sequence[MetricTerms], resamples: int, seed: int) -> np.ndarray:
    """[resamples] values of the mean of several runs' metric (their seed mean), every run on
    the same resamples of the images: the models-fixed replicates."""
    return per_seed_resampled(terms, resamples, seed).mean(axis=0)


def _image_terms(terms: MetricTerms, start: int, stop: int) -> np.ndarray:
    """[stop - start, C * width]: what images ``start:stop`` add to the sums, each on its own."""
    if terms.kind in HISTOGRAM_KINDS:
        return terms.terms[start:stop]
    diffs = terms.terms[start:stop].toarray()
    return np.cumsum(diffs.reshape(stop - start, -1, terms.width), axis=2).reshape(stop - start, -1)


def jackknife_values_by_key(terms: dict[str, MetricTerms]) -> dict[str, np.ndarray]:
    """Per metric key of one run, float64 [N]: the metric with image i left out, for every i
    (the policy's reading: under ``oracle`` the best τ of the other N - 1 images). The sums minus
    the image's own terms, :data:`JACKKNIFE_CHUNK` images at a time, every key in turn, so that
    metrics summing the same terms share them (as :func:`per_seed_resampled_by_key`)."""
    n = next(iter(terms.values())).n_images
    if n < 2:  # nothing to leave out: no skew to measure
        return {key: np.full(n, metric_value(t)) for key, t in terms.items()}
    ones = np.ones((1, n), dtype=np.float32)
    totals: dict = {}  # the sums over every image, per terms array
    out = {key: np.empty(n) for key in terms}
    for start in range(0, n, JACKKNIFE_CHUNK):
        stop = min(n, start + JACKKNIFE_CHUNK)
        shared: dict = {}  # this chunk's leave-one-out sums per terms array, curves per sums
        for key, t in terms.items():
            sums = _shared(totals, t.terms, partial(_weighted_sums, t, ones))[0]
            rest = _shared(shared, t.terms, partial(_left_out, t, sums, start, stop))
            out[key][start:stop] = _values(t, rest, np.full(stop - start, n - 1.0), shared)
    return out


def jackknife_values(terms: MetricTerms) -> np.ndarray:
    """:func:`jackknife_values_by_key` of one metric."""
    return jackknife_values_by_key({"": terms})[""]


def _left_out(terms: MetricTerms, sums: np.ndarray, start: int, stop: int) -> np.ndarray:
    """[stop - start, C * width]: ``sums`` without each of images ``start:stop`` in turn."""
    return sums[None, :] - _image_terms(terms, start, stop)


def check_same_images(named: Sequence[tuple[str, SplitRecords]]) -> None:
    """Raise unless every run's records cover the same images (ids, in the same order)."""
    first_name, first = named[0]
    for name, records in named[1:]:
        if len(records) != len(first) or not np.array_equal(records.image_ids, first.image_ids):
            raise BootstrapError(
                f"{name} and {first_name} were evaluated on different images; intervals and "
                "paired tests need the same test split (the same data fingerprint)"
            )
