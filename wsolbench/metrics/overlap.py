"""Mask overlap at a threshold: Dice of the foreground and of the background, mIoU, and the
TP / FN / TN / FP rates.

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
    TPR = TP / F    FNR = FN / F    (F = TP + FN, the split's foreground pixels)
    TNR = TN / B    FPR = FP / B    (B = TN + FP, the split's background pixels)

The rates are those LIVIA's evaluator reports beside Dice and mIoU (its ``MaskEvaluator.compute``
in the negev, PixelCAM and survey repositories: the pooled counts over the foreground or the
background total, in percent), so TPR + FNR = TNR + FPR = 100.

A ratio whose numerator and denominator are both 0 (no such pixel in the ground truth and none
predicted: the two sets agree) counts as 1; so with no foreground pixel TPR is 100 and FNR 0 (none
of none missed), and likewise TNR and FPR without background (LIVIA's code divides by zero there).
Ignored pixels are in neither histogram, so they count nowhere.
"""

from __future__ import annotations

import numpy as np

#: The overlap scores, in table order (keys of the result record): higher is better, so each has
#: a best τ of its own (``oracle-separate``).
OVERLAP_KEYS = ("dice_fg", "dice_bg", "miou")
#: The pixel rates, in the spec's order: read at the scores' τ only, having no best of their own
#: (TPR is 100 at τ = 0; FNR's maximum is its worst).
RATE_KEYS = ("tpr", "fnr", "tnr", "fpr")
#: Every metric this module reads, all at one τ (:mod:`wsolbench.metrics.policies`).
MASK_TAU_KEYS = (*OVERLAP_KEYS, *RATE_KEYS)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float = 1.0) -> np.ndarray:
    # 0 / 0 only when the ground-truth set is empty: ``empty`` (1 where the sets then agree;
    # 0 for a miss rate, none of none missed), never NaN in a table.
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, empty)


def overlap_curves(fg_hist: np.ndarray, bg_hist: np.ndarray) -> dict[str, np.ndarray]:
    """Dice FG, Dice BG, mIoU and the four rates (percent) at every threshold of the histograms'
    grid.

    Args:
        fg_hist: [..., T + 2] foreground pixel counts per bin
            (:class:`~wsolbench.metrics.MaskCounter`); leading axes are independent histograms
            (a bootstrap's resamples), each read as a 1-D one would be.
        bg_hist: background pixel counts per bin, the same shape.

    Returns:
        :data:`MASK_TAU_KEYS` (``dice_fg``, ``dice_bg``, ``miou``, ``tpr``, ``fnr``, ``tnr``,
        ``fpr``) -> [..., T] float64 in [0, 100]; entry ``i`` is read at ``τ = thresholds[i]``
        (``threshold_grid(step)[i]``).
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
    n_fg = fg.sum(axis=-1, keepdims=True)
    n_bg = bg.sum(axis=-1, keepdims=True)
    fn = n_fg - tp
    tn = n_bg - fp
    iou_fg = _ratio(tp, tp + fp + fn)
    iou_bg = _ratio(tn, tn + fn + fp)
    return {
        "dice_fg": 100.0 * _ratio(2 * tp, 2 * tp + fp + fn),
        "dice_bg": 100.0 * _ratio(2 * tn, 2 * tn + fn + fp),
        "miou": 100.0 * (iou_fg + iou_bg) / 2,
        "tpr": 100.0 * _ratio(tp, n_fg),
        "fnr": 100.0 * _ratio(fn, n_fg, empty=0.0),
        "tnr": 100.0 * _ratio(tn, n_bg),
        "fpr": 100.0 * _ratio(fp, n_bg, empty=0.0),
    }
