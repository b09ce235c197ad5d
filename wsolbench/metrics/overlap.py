"""Mask overlap at a threshold: Dice of the foreground and of the background, and mIoU.

The histology protocols (``shared/spec/histology.md``) read, at one selected τ, how well the
binarized map ``map >= τ`` overlaps the ground-truth mask, pooled over every pixel of the split
(not averaged over images). The counts come from the histograms PxAP is computed from
(:class:`wsolbench.metrics.MaskCounter`): bin ``i`` holds ``thresholds[i] <= v < thresholds[i+1]``
(bins ``T`` and ``T + 1`` hold ``[1, 2)`` and ``[2, 3]``), so at ``τ = thresholds[i]``::

    TP = fg_hist[i:].sum()   foreground pixels with map >= τ     FN = F - TP
    FP = bg_hist[i:].sum()   background pixels with map >= τ     TN = B - FP

the same cumulative sums, from the highest bin down, that PxAP's precision and recall use (PxAP's
``τ_i`` predicts a pixel positive when its value is >= ``τ_i``; so do these). Then::

    Dice FG = 2 TP / (2 TP + FP + FN)      IoU FG = TP / (TP + FP + FN)
    Dice BG = 2 TN / (2 TN + FN + FP)      IoU BG = TN / (TN + FN + FP)
    mIoU    = (IoU FG + IoU BG) / 2

A ratio whose numerator and denominator are both 0 (no such pixel in the ground truth and none
predicted: the two sets agree) counts as 1. Ignored pixels are in neither histogram, so they count
nowhere.
"""

from __future__ import annotations

import numpy as np

#: The metrics this module reads, in table order (keys of the result record).
OVERLAP_KEYS = ("dice_fg", "dice_bg", "miou")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0 / 0 only when both sets are empty: they agree, so 1 (never NaN in a table).
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 1.0)


def overlap_curves(fg_hist: np.ndarray, bg_hist: np.ndarray) -> dict[str, np.ndarray]:
    """Dice FG, Dice BG and mIoU (percent) at every threshold of the histograms' grid.

    Args:
        fg_hist: [..., T + 2] foreground pixel counts per bin
            (:class:`~wsolbench.metrics.MaskCounter`); leading axes are independent histograms
            (a bootstrap's resamples), each read as a 1-D one would be.
        bg_hist: background pixel counts per bin, the same shape.

    Returns:
        ``{"dice_fg", "dice_bg", "miou"}`` -> [..., T] float64 in [0, 100]; entry ``i`` is read at
        ``τ = thresholds[i]`` (``threshold_grid(step)[i]``).
    """
    fg = np.asarray(fg_hist, dtype=np.float64)
    bg = np.asarray(bg_hist, dtype=np.float64)
    if fg.ndim < 1 or fg.shape != bg.shape or fg.shape[-1] < 3:
        raise ValueError(
            f"mask histograms must be two [..., T + 2] arrays of the same shape; got {fg.shape} "
            f"and {bg.shape}"
        )
    n_tau = fg.shape[-1] - 2
    # predicted positive at τ_i: every bin from i up (reversed cumulative sums, as PxAP's)
    tp = fg[..., ::-1].cumsum(axis=-1)[..., ::-1][..., :n_tau]
    fp = bg[..., ::-1].cumsum(axis=-1)[..., ::-1][..., :n_tau]
    fn = fg.sum(axis=-1, keepdims=True) - tp
    tn = bg.sum(axis=-1, keepdims=True) - fp
    iou_fg = _ratio(tp, tp + fp + fn)
    iou_bg = _ratio(tn, tn + fn + fp)
    return {
        "dice_fg": 100.0 * _ratio(2 * tp, 2 * tp + fp + fn),
        "dice_bg": 100.0 * _ratio(2 * tn, 2 * tn + fn + fp),
        "miou": 100.0 * (iou_fg + iou_bg) / 2,
    }
