"""One construction for an interval and its p-value: percentile and BCa intervals of bootstrap
replicates, and the p-value as the smallest level whose interval excludes 0.

A bootstrap gives B replicates θ*_b of an estimate θ̂ (:class:`Replicates`; built from per-image
records in :mod:`wsolbench.results.bootstrap`). Two intervals are read from them:

- **percentile** (``select`` / ``fixed:T``, a τ fixed beforehand): the α/2 and 1 − α/2 quantiles
  of θ*. Right when θ* sits around θ̂ as θ̂ sits around the truth.
- **BCa**, bias-corrected and accelerated (``oracle``): a maximum over τ is optimistic, and its
  resampled version is optimistic again (each resample re-picks its best τ), so θ* sits above θ̂
  about as far as θ̂ sits above the best τ's true value; a percentile interval is then shifted up.
  BCa reads the quantiles ``Φ(z0 + (z0 + z_β) / (1 − a (z0 + z_β)))`` instead of β, where
  ``z0 = Φ⁻¹(share of θ* below θ̂)`` (ties count half) measures that shift and the acceleration
  ``a`` (from the leave-one-image-out values θ_(i)) the skew (Efron 1987). With ``z0 = a = 0`` it
  is the percentile interval.

The p-value of "no difference" (θ = 0) is the smallest α whose (1 − α) interval of the same kind
excludes 0, read by inverting the quantile map: q = the position of 0 in the replicates (a
fraction, from the same interpolated quantile function as the interval's ends), then
``w = Φ⁻¹(q) − z0``, ``β = Φ(w / (1 + a w) − z0)`` and ``p = 2 min(β_low, 1 − β_high)``. So for
every α, ``p < α`` exactly when the (1 − α) interval excludes 0 (up to float rounding): an
interval and its p-value never disagree. A p of 0 means no replicate crossed 0; it is shown as
``< 1/(B + 1)``, the resolution of B replicates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The standard normal's CDF Φ and quantile Φ⁻¹: what scipy.stats.norm.cdf / .ppf compute (they
# call these two), without scipy.stats' import (about half a second of every compare --ci / diff).
from scipy.special import ndtr as normal_cdf
from scipy.special import ndtri as normal_ppf

BCA = "BCa"
PERCENTILE = "percentile"
KINDS = (BCA, PERCENTILE)
LEVEL = 0.95


@dataclass
class Replicates:
    """An estimate and its bootstrap replicates.

    Attributes:
        estimate: θ̂ on the data as observed (for a row: the mean over its seeds).
        values: float64 [B], θ* on each resample.
        jackknife: float64 [N], θ with image i left out (for a row: left out of every seed's
            records, then the seed mean), or None where only the percentile kind is read.
    """

    estimate: float
    values: np.ndarray
    jackknife: np.ndarray | None = None

    def __sub__(self, other: Replicates) -> Replicates:
        """The paired difference: replicates of both on the same resamples (and images)."""
        jack = None
        if self.jackknife is not None and other.jackknife is not None:
            jack = self.jackknife - other.jackknife
        return Replicates(self.estimate - other.estimate, self.values - other.values, jack)


def interval_kind(policy: str) -> str:
    """:data:`BCA` for the oracle policies (a maximum over τ), :data:`PERCENTILE` otherwise."""
    from wsolbench.metrics.policies import ORACLE_POLICIES

    return BCA if policy in ORACLE_POLICIES else PERCENTILE


def acceleration(jackknife: np.ndarray) -> float:
    """BCa's ``a``: the skew of the leave-one-out values θ_(i) [N], ``Σ d³ / (6 (Σ d²)^1.5)``
    with ``d = mean(θ_(·)) − θ_(i)``; 0 when they are all equal."""
    d = jackknife.mean() - jackknife
    spread = float(np.sum(d * d))
    return 0.0 if spread <= 0 else float(np.sum(d**3) / (6 * spread**1.5))


def bias_correction(rep: Replicates) -> float:
    """BCa's ``z0 = Φ⁻¹(#{θ* < θ̂} + #{θ* = θ̂} / 2) / B``, the share clipped to [0.5 / B,
    1 − 0.5 / B] so that a replicate set entirely on one side stays finite."""
    b = len(rep.values)
    below = np.count_nonzero(rep.values < rep.estimate - 1e-9)
    ties = np.count_nonzero(np.abs(rep.values - rep.estimate) <= 1e-9)  # equal up to rounding
    share = min(max((below + ties / 2) / b, 0.5 / b), 1 - 0.5 / b)
    return float(normal_ppf(share))


def _map(kind: str, rep: Replicates) -> tuple[float, float]:
    """``(z0, a)`` of ``kind``: (0, 0) for the percentile interval."""
    if kind == PERCENTILE:
        return 0.0, 0.0
    if kind != BCA:
        raise ValueError(f"unknown interval kind {kind!r}; use one of {', '.join(KINDS)}")
    if rep.jackknife is None:
        raise ValueError("a BCa interval needs the leave-one-out values (jackknife)")
    return bias_correction(rep), acceleration(rep.jackknife)


def _adjusted(beta: float, z0: float, a: float) -> float:
    """The quantile BCa reads for the nominal one ``beta`` (in (0, 1))."""
    u = z0 + normal_ppf(beta)
    denominator = 1 - a * u
    if denominator <= 0:  # beyond the pole the map folds back: the extreme end is meant
        return 1.0 if a > 0 else 0.0
    return float(normal_cdf(z0 + u / denominator))


def _nominal(q: float, z0: float, a: float) -> float:
    """The inverse of :func:`_adjusted`: the nominal β whose adjusted quantile is ``q``."""
    if q <= 0 or q >= 1:
        return float(min(max(q, 0.0), 1.0))
    w = normal_ppf(q) - z0
    denominator = 1 + a * w
    if denominator <= 0:
        return 0.0 if a > 0 else 1.0
    return float(normal_cdf(w / denominator - z0))


def _quantile(ordered: np.ndarray, q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly (numpy's default)."""
    if len(ordered) == 1:
        return float(ordered[0])
    h = q * (len(ordered) - 1)
    j = min(int(np.floor(h)), len(ordered) - 2)  # q = 1: the last segment's end
    return float(ordered[j] + (h - j) * (ordered[j + 1] - ordered[j]))


def _position(ordered: np.ndarray, strict: bool) -> float:
    """Where 0 sits in sorted values, as a quantile level of :func:`_quantile`: the largest q
    whose quantile is <= 0 (``strict`` False), or the smallest whose quantile is >= 0 (True)."""
    n = len(ordered)
    count = int(np.searchsorted(ordered, 0.0, side="left" if strict else "right"))
    if count == 0:
        return 0.0
    if count == n:
        return 1.0
    x0, x1 = ordered[count - 1], ordered[count]  # x0 <= 0 < x1 (or x0 < 0 <= x1 when strict)
    return float((count - 1 + (0.0 - x0) / (x1 - x0)) / (n - 1))


def interval(rep: Replicates, kind: str, level: float = LEVEL) -> tuple[float, float]:
    """The ``level`` interval of ``kind`` (:data:`BCA` or :data:`PERCENTILE`) from ``rep``."""
    z0, a = _map(kind, rep)
    ordered = np.sort(rep.values)
    tail = (1 - level) / 2
    return (
        _quantile(ordered, _adjusted(tail, z0, a)),
        _quantile(ordered, _adjusted(1 - tail, z0, a)),
    )


def _tails(rep: Replicates, kind: str) -> tuple[float, float]:
    """The α / 2 beyond which the interval's lower end is above 0, and the one beyond which its
    upper end is below 0."""
    z0, a = _map(kind, rep)
    ordered = np.sort(rep.values)
    low = _nominal(_position(ordered, strict=False), z0, a)
    high = _nominal(_position(ordered, strict=True), z0, a)
    return low, 1 - high


def p_value(rep: Replicates, kind: str) -> float:
    """Two-sided p of θ = 0: the smallest α whose (1 − α) interval of ``kind`` excludes 0."""
    return float(min(1.0, 2 * min(_tails(rep, kind))))


def direction(rep: Replicates, kind: str) -> int:
    """+1 when the intervals that exclude 0 lie above it (θ > 0), -1 when below."""
    low, high = _tails(rep, kind)
    return 1 if low <= high else -1


def format_p(p: float, resamples: int) -> str:
    """A p-value as text; below the resolution of ``resamples`` it is ``< 1/(B+1)``."""
    floor = 1 / (resamples + 1)
    return f"< {floor:.4f}" if p < floor else f"{p:.4f}"
