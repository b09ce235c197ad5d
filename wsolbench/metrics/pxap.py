"""PxAP and masks: pixel average precision from a split's histograms, and reading GT masks.

:class:`wsolbench.metrics.MaskCounter` histograms each image's map values over its foreground and
background pixels; :func:`pxap` turns a split's summed histograms into the precision-recall area
the reference evaluator reports; :func:`decode_mask` checks that a file is a mask and
:func:`read_mask` reads it as the reference does.
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


class MaskError(ValueError):
    """A ground-truth mask file is missing, undecodable or not a mask; the message names it."""


#: What a mask file must be, as the errors say it.
MASK_FORM = (
    "a mask is an 8-bit single-channel image (or an RGB / palette file whose channels are equal) "
    "of its image's size, holding 0/255 or 0/1"
)


def decode_mask(path: str | Path, image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a ground-truth mask file and check that it is a mask.

    Accepted: 8 bits per channel; one channel (grayscale, 1-bit), or colour channels (RGB,
    palette) that are all equal (an alpha channel is ignored, as grayscale reading ignores it);
    values binary, 0/255 or 0/1. The protocol reads a mask as grayscale and turns it on where the
    value is > 0.5, so for a binary mask "on" is "non-zero"; a grey level such as 128 or a photo
    is refused instead of being counted as foreground. The checks cost one pass over the pixels
    (channel comparison, a 256-bin count).

    Args:
        path: mask image file (any format OpenCV reads).
        image_size: (w, h) the mask must have, its image's size from ``image_sizes.txt``; None
            skips the size check (a split without sizes).

    Returns:
        [h, w] uint8 gray values, the file's own size, each 0 and 1 or 0 and 255.

    Raises:
        MaskError: naming the file and what a mask must be.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"mask file {path} does not exist; check the mask root and paths")
    # ANYCOLOR keeps one channel as one, drops alpha, and applies EXIF orientation like GRAYSCALE.
    image = cv2.imread(str(path), cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise MaskError(f"mask file {path} cannot be decoded as an image; re-export it as PNG")
    if image.dtype != np.uint8:
        bits = 8 * image.dtype.itemsize
        raise MaskError(f"mask file {path} is a {bits}-bit image; {MASK_FORM}")
    if image.ndim == 3:
        if not ((image[..., 1:] == image[..., :1]).all()):
            raise MaskError(
                f"mask file {path} is a colour image (its channels differ), not a mask; "
                f"{MASK_FORM} (is the mask root the image folder?)"
            )
        image = image[..., 0]
    values = np.flatnonzero(np.bincount(image.ravel(), minlength=256))
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise MaskError(
            f"mask file {path} holds values other than 0/255 or 0/1 ({shown}); {MASK_FORM}"
        )
    height, width = image.shape
    if image_size is not None and (width, height) != tuple(image_size):
        raise MaskError(
            f"mask file {path} is {width}x{height} but its image is "
            f"{image_size[0]}x{image_size[1]} (image_sizes.txt); {MASK_FORM}"
        )
    return image


def read_mask(
    path: str | Path, size: tuple[int, int], image_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Read a ground-truth mask image as the reference does, after :func:`decode_mask` checks it.

    Args:
        path: mask image file (any format OpenCV reads).
        size: protocol size (H, W).
        image_size: (w, h) the file must have (its image's); None skips that check.

    Returns:
        [H, W] bool, on where the nearest-neighbour resized gray value is > 0.5.

    Raises:
        MaskError: the file is missing, undecodable or not a mask (see :func:`decode_mask`).
    """
    image = decode_mask(path, image_size)
    # float32 before resizing, like the reference (nearest neighbour picks the same pixels anyway).
    image = cv2.resize(
        image.astype(np.float32), (int(size[1]), int(size[0])), interpolation=cv2.INTER_NEAREST
    )
    return image > 0.5
