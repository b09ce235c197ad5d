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


#: How a map may be resized to the protocol size (a protocol's ``map_resize``): the reference
#: evaluator's bicubic, or bilinear (the histology protocols'), as OpenCV interpolations.
RESIZE_INTERPOLATION = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}


class NonFiniteError(ValueError):
    """A map (or a method's class scores) holds NaN or inf where a number is needed; the message
    names the image or the file."""


class MapRangeError(ValueError):
    """A map to be scored as given leaves [0, 1]; the message names it and its range."""


#: What a map may hold: real numbers (bool counts as 0 / 1).
_REAL_KINDS = "biuf"


def _check_real(scoremap: np.ndarray, name: str) -> tuple:
    """Refuse what is not a non-empty 2-D map of finite real numbers, naming ``name``; returns
    its (min, max) as NumPy scalars."""
    if scoremap.ndim != 2:
        raise ValueError(f"{name}: a map must be 2-D [h, w]; got shape {scoremap.shape}")
    if scoremap.dtype.kind not in _REAL_KINDS:
        raise ValueError(f"{name}: a map must hold real numbers; got dtype {scoremap.dtype}")
    if scoremap.size == 0:
        raise ValueError(f"{name}: the map is empty (shape {scoremap.shape})")
    # min and max propagate NaN, and an inf is one of them: no pass of its own for finiteness
    low, high = scoremap.min(), scoremap.max()
    if not (math.isfinite(float(low)) and math.isfinite(float(high))):
        raise NonFiniteError(
            f"{name}: the map holds NaN or inf; a map must hold finite scores (a NaN is never "
            "scored, not even as zeros)"
        )
    return low, high


def normalize_map(
    scoremap: np.ndarray,
    size: tuple[int, int],
    name: str = "localization map",
    resize: str = "bicubic",
) -> np.ndarray:
    """Resize a predicted map to the protocol size and min-max normalize it, as the reference does.

    The reference converts model maps to float64 before anything else (``t2n``), resizes them with
    bicubic interpolation and normalizes in place; this function does the same, so a float32 input
    gives a float64 output, bit-identical to the reference's. A protocol may ask for bilinear
    resizing instead (``map_resize``; OpenCV ``INTER_LINEAR``, the half-pixel-centre rule of
    torch's ``interpolate(..., mode="bilinear", align_corners=False)``).

    One deliberate difference: the reference scores a map holding NaN as all zeros (and crashes
    on an inf); here NaN or inf anywhere in the input is an error, before resizing (a down-sampling
    resize could drop it). So is a finite map whose values overflow float64 when resized or
    shifted (values near ±1e308).

    Args:
        scoremap: [h, w] map of real numbers (bool, int, float), any range, finite.
        size: protocol size (H, W).
        name: how errors name the map (an image id or a file).
        resize: a key of :data:`RESIZE_INTERPOLATION` (the protocol's ``map_resize``).

    Returns:
        [H, W] float64 in [0, 1]: all zeros when the resized map is constant.

    Raises:
        NonFiniteError: naming ``name``, when the map holds NaN or inf, or overflows.
        ValueError: naming ``name``, when the map is not 2-D, empty, or not real numbers.
    """
    if resize not in RESIZE_INTERPOLATION:
        raise ValueError(
            f"unknown map resize {resize!r}; use one of {', '.join(RESIZE_INTERPOLATION)}"
        )
    cam = np.asarray(scoremap)
    _check_real(cam, name)
    cam = cam.astype(np.float64)  # always a copy: normalization below works in place
    height, width = int(size[0]), int(size[1])
    if cam.shape != (height, width):
        # OpenCV's resize copies a same-size input unchanged, so skipping it then is exact.
        cam = cv2.resize(cam, (width, height), interpolation=RESIZE_INTERPOLATION[resize])
    low, high = cam.min(), cam.max()
    # NaN and inf propagate into the span (Python floats: no overflow warning), so this also
    # catches what resizing made of huge values.
    if not math.isfinite(float(high) - float(low)):
        raise NonFiniteError(
            f"{name}: the map's values (min {low}, max {high} after resizing) overflow float64; "
            "rescale the map"
        )
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
        NonFiniteError: naming ``name``, when the map holds NaN or inf.
        MapRangeError: naming ``name``, when the map leaves [0, 1].
        ValueError: naming ``name``, when the map is not 2-D, empty, or not real numbers.
    """
    low, high = _check_real(np.asarray(scoremap), name)
    if low < 0 or high > 1:
        raise MapRangeError(
            f"{name}: map values must lie in [0, 1]; got min {low}, max {high}. "
            "Normalize it with normalize_map()"
        )


def quantize(scoremap: np.ndarray) -> np.ndarray:
    """[H, W] map in [0, 1] -> [H, W] uint8 ``floor(map * 255)``, in float64 like the reference."""
    return np.multiply(scoremap, 255, dtype=np.float64).astype(np.uint8)
