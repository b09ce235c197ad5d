"""PxAP and masks: pixel average precision from a split's histograms, and reading GT masks.

:class:`wsolbench.metrics.MaskCounter` histograms each image's map values over its foreground and
background pixels; :func:`pxap` turns a split's summed histograms into the precision-recall area
the reference evaluator reports, and :func:`read_mask` reads a mask file as the reference does.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def pxap(fg_hist: np.ndarray, bg_hist: np.ndarray) -> float:
    """Pixel average precision (percent) from the split's score histograms, as the reference.

    Args:
        fg_hist: [T + 2] foreground pixel counts per bin, ascending bins.
        bg_hist: [T + 2] background pixel counts per bin.

    Returns:
        PxAP in [0, 100].

    Raises:
        ValueError: no foreground pixel in the split, or no positive prediction.
    """
    fg = np.asarray(fg_hist, dtype=np.float64)
    bg = np.asarray(bg_hist, dtype=np.float64)
    tp = fg[::-1].cumsum()  # from the highest bin down
    fn = fg.sum() - tp
    fp = bg[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise ValueError("PxAP: the split has no foreground pixel; check the masks")
    if ((tp + fp) <= 0).all():
        raise ValueError("PxAP: no positive prediction in the split (no scored pixel)")
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[~np.isnan(precision[1:])].sum()
    return float(auc * 100)


def read_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Read a ground-truth mask image as the reference does.

    Args:
        path: mask image file (any format OpenCV reads), read as grayscale.
        size: protocol size (H, W).

    Returns:
        [H, W] bool, on where the nearest-neighbour resized gray value is > 0.5.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file {path} does not exist; check the mask root and paths")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"mask file {path} cannot be decoded as an image; re-export it as PNG")
    # float32 before resizing, like the reference (nearest neighbour picks the same pixels anyway).
    image = cv2.resize(
        image.astype(np.float32), (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST
    )
    return image > 0.5
