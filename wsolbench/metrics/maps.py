"""Map post-processing: a predicted map at protocol size, normalized, checked, thresholded.

The protocol (``shared/spec/protocol.md``) resizes every predicted map to the protocol size,
min-max normalizes it to [0, 1] as the reference evaluator does, and thresholds it on the grid
``np.arange(0, 1, step)``; box scoring works on the map quantized to uint8 (:func:`quantize`).
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def threshold_grid(step: float) -> np.ndarray:
    """Map thresholds of the protocol: ``np.arange(0, 1, step)``.

    Args:
        step: threshold spacing, ``0 < step < 1`` (protocol default 0.001).

    Returns:
        [T] float64 thresholds in [0, 1), starting at 0.
    """
    step = float(step)
    if not (0.0 < step < 1.0) or math.isnan(step):
        raise ValueError(f"threshold step must be in (0, 1), got {step}; the protocol uses 0.001")
    return np.arange(0, 1, step)


def step_of(thresholds: np.ndarray) -> float:
    """The step of a :func:`threshold_grid` (``arange`` makes ``grid[1] == step`` exactly)."""
    thresholds = np.asarray(thresholds)
    if thresholds.ndim != 1 or len(thresholds) < 2:
        raise ValueError("thresholds must be a 1-D grid from threshold_grid(step)")
    step = float(thresholds[1])
    if not np.array_equal(thresholds, threshold_grid(step)):
        raise ValueError(
            "thresholds must be exactly threshold_grid(step) (np.arange(0, 1, step)); "
            "build them with wsolbench.metrics.threshold_grid"
        )
    return step


def normalize_map(scoremap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a predicted map to the protocol size and min-max normalize it, as the reference does.

    The reference converts model maps to float64 before anything else (``t2n``), resizes them with
    bicubic interpolation and normalizes in place; this function does the same, so a float32 input
    gives a float64 output, bit-identical to the reference's.

    Args:
        scoremap: [h, w] map, any real dtype, any range.
        size: protocol size (H, W).

    Returns:
        [H, W] float64 in [0, 1]: all zeros when the resized map holds a NaN or is constant.

    Raises:
        ValueError: the map is not 2-D, or holds an infinite value after resizing (the reference
            crashes there; bicubic up-sampling usually turns an inf into NaN first, hence zeros).
    """
    cam = np.asarray(scoremap)
    if cam.ndim != 2:
        raise ValueError(f"a localization map must be 2-D [h, w]; got shape {cam.shape}")
    cam = cam.astype(np.float64)  # always a copy: normalization below works in place
    height, width = int(size[0]), int(size[1])
    if cam.shape != (height, width):
        # OpenCV's resize copies a same-size input unchanged, so skipping it then is exact.
        cam = cv2.resize(cam, (width, height), interpolation=cv2.INTER_CUBIC)
    # NaN is tested after resizing, like the reference: a down-sampling resize can drop a NaN.
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if np.isinf(cam).any():
        raise ValueError(
            "localization map holds an infinite value; the method must predict finite scores"
        )
    low, high = cam.min(), cam.max()
    if low == high:
        return np.zeros_like(cam)
    # Same operation order as the reference: subtract, then divide by the max of the shifted map.
    cam -= low
    cam /= cam.max()
    return cam


def check_map(scoremap: np.ndarray, name: str) -> None:
    """Check that a map is ready for box or mask scoring.

    Args:
        scoremap: [H, W] map, expected in [0, 1] (see :func:`normalize_map`).
        name: how to name the map in the error (an image id or a file).

    Raises:
        ValueError: naming ``name``, when the map is not 2-D, holds NaN or inf, or leaves [0, 1].
    """
    scoremap = np.asarray(scoremap)
    if scoremap.ndim != 2:
        raise ValueError(f"{name}: a map must be 2-D [H, W]; got shape {scoremap.shape}")
    if not np.issubdtype(scoremap.dtype, np.floating) and not np.issubdtype(
        scoremap.dtype, np.integer
    ):
        raise ValueError(f"{name}: a map must hold real numbers; got dtype {scoremap.dtype}")
    if scoremap.size == 0:
        raise ValueError(f"{name}: the map is empty (shape {scoremap.shape})")
    if not np.isfinite(scoremap).all():
        raise ValueError(f"{name}: the map holds NaN or inf; normalize it with normalize_map()")
    low, high = scoremap.min(), scoremap.max()
    if low < 0 or high > 1:
        raise ValueError(
            f"{name}: map values must lie in [0, 1]; got min {low}, max {high}. "
            "Normalize it with normalize_map()"
        )


def quantize(scoremap: np.ndarray) -> np.ndarray:
    """[H, W] map in [0, 1] -> [H, W] uint8 ``floor(map * 255)``, in float64 like the reference."""
    return (np.asarray(scoremap, dtype=np.float64) * 255).astype(np.uint8)
