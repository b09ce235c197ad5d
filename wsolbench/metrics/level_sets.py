"""Box scores of every threshold level of a quantized map, without tracing a contour.

The box protocol (``shared/spec/protocol.md``) thresholds a uint8 map ``u`` at every level ``v``
(mask ``u >= v``), runs ``cv2.findContours(mask, RETR_TREE, CHAIN_APPROX_SIMPLE)`` and scores
either all contours' bounding rectangles (multi-contour rule, MaxBoxAccV2) or the rectangle of the
contour with the largest ``cv2.contourArea``, the first one in contour order on ties
(largest-contour rule, MaxBoxAcc / GT-known). This module gets the same per-level scores from a
flood and union-find sweeps over the pixels sorted by value, compiled with numba, with no contour
search at all. What it relies on, each fact checked against
OpenCV (opencv-python 5.0.0) on thousands of random images while writing it and, end to end, by
``tests/test_metrics_equivalence.py`` against the literal per-threshold implementation:

1. **Outer contours** are one per 8-connected foreground component (OpenCV pads the image with
   zeros, so the image border is background); the bounding rectangle of an outer contour is the
   bounding box of its component, because the traced border holds the component's extreme pixels.
2. **Hole contours** are one per 4-connected background component that does not touch the image
   border. A hole border runs through the foreground pixels 4-adjacent to the hole, so its
   bounding rectangle is the hole's bounding box grown by one pixel on every side (the grown box
   stays inside the image: a hole never touches the border).
3. **Boxes**: a rectangle (x, y, w, h) becomes (x, y, x + w, y + h) clipped to (W - 1, H - 1), so
   a component box (x0, y0, x1, y1) gives (x0, y0, min(x1 + 1, W - 1), min(y1 + 1, H - 1)) and a
   hole box gives (x0 - 1, y0 - 1, min(x1 + 2, W - 1), min(y1 + 2, H - 1)).
4. **Contour order** (``RETR_TREE``): a pre-order of the contour tree in which a parent precedes
   its children and top-level outer contours come in *decreasing* raster index of their first
   pixel (the last one found first). The first pixel of an outer contour is its component's first
   pixel in raster order.
5. **Polygon area** of an outer contour (through pixel centres) is a sum over the 2x2 pixel
   windows of the component with its holes filled: a full window counts 1, a window with three
   on-pixels counts 1/2, any other 0 (the polygon cuts such a window along its diagonal).
6. **Largest contour wins among outer contours**: a hole's polygon lies inside its parent's outer
   polygon and the parent precedes it in contour order, so the first contour of largest area is
   always an outer one; a nested outer contour lies strictly inside its top-level ancestor's
   polygon, so its area is smaller: the winner is always a top-level contour.
7. **The filled map** (:func:`~wsolbench.metrics.pixel_order.flood`, each pixel's lowest possible
   highest value on a 4-path to the border): its level set at ``v`` is the union of the regions
   the top-level outer contours of ``u >= v`` enclose, one 8-connected component each (two
   top-level components are never 8-adjacent, nor are their filled regions), with no hole. A
   filled region's window sum is its contour's area (fact 5), its bounding box and its first pixel
   are the component's (the extreme pixels of a filled region are on its outer contour). So one
   foreground sweep of the filled map scores every level's largest contour (fact 6) and the boxes
   of every top-level outer contour.
8. **Holes** of level ``v`` are the 4-connected components of ``u < v <= filled`` (a background
   pixel is cut off from the border exactly when ``v <= filled``); the pixels of one hole share
   their filled value, the level at which the hole reaches the border. Only the pixels with
   ``filled > u`` are ever in a hole (a sixth of a CAM-like map's, half of a noisy one's).
9. **Nested components** (outer contours that are not top-level) exist at a level only where a
   hole holds one: a hole whose 4-connected Euler number ``V - E + F`` is below 1. Each lies inside
   that hole's box, so its IoU with a GT box ``G`` is at most ``|hole box ∩ G| / |G|``; only the
   levels where that bound could beat every other box get a foreground sweep of ``u`` itself.

The sweeps built on these facts are in :mod:`wsolbench.metrics.sweeps`, their inputs in
:mod:`wsolbench.metrics.pixel_order`; this module runs them on one map and its ground-truth boxes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wsolbench.metrics.pixel_order import flood, pixels_by_value
from wsolbench.metrics.sweeps import best_iou, components_sweep, holes_sweep

__all__ = ["level_scores", "quantized_unit_map", "threshold_scores"]


def quantized_unit_map(scoremap: np.ndarray) -> np.ndarray | None:
    """:func:`~wsolbench.metrics.maps.quantize` of a float32 / float64 map, checked in the same
    pass: [H, W] uint8 ``floor(map * 255)`` (in float64), or None when the map holds NaN, inf or
    a value outside [0, 1], or is of another kind (``check_map`` then names what is wrong; one
    pass instead of its min, max and the quantization's two)."""
    m = np.asarray(scoremap)
    if m.ndim != 2 or m.size == 0 or m.dtype not in (np.float32, np.float64):
        return None
    u, in_range = _quantize_unit(m)
    return u if in_range else None


@njit(cache=True, nogil=True)
def _quantize_unit(m):
    height, width = m.shape
    u = np.empty((height, width), np.uint8)
    in_range = True
    for y in range(height):
        for x in range(width):
            v = np.float64(m[y, x])
            in_range &= (v >= 0.0) & (v <= 1.0)  # NaN fails both
            # clamped so that no value outside [0, 1] is cast (the map is refused anyway)
            u[y, x] = np.uint8(min(max(v, 0.0), 1.0) * 255.0)
    return u, in_range


@njit(cache=True, nogil=True)
def _value_of_tau(counts, k):
    """Mask of each integer threshold k (on iff u > k) as a level: the smallest value present
    above k (u > k is u >= that value), 256 when none is; ``counts``: [256] pixels of each value.
    Returns ([T] levels, [256] used)."""
    above = np.empty(256, np.int64)
    smallest = 256
    for v in range(255, -1, -1):
        above[v] = smallest
        if counts[v]:
            smallest = v
    value = np.empty(k.shape[0], np.int64)
    used = np.zeros(256, np.bool_)
    for t in range(k.shape[0]):
        v = above[k[t]]
        value[t] = v
        if v < 256:
            used[v] = True
    return value, used


def _scores_by_value(u, flooded, gt, used, at_least=0.0):
    """[257] best IoU per level value, multi and largest rule; index 256 is the empty mask
    (``flooded``: :func:`~wsolbench.metrics.pixel_order.flood` of ``u``).

    The filled map's components are the top-level contours (facts 7 to 9): they give the largest
    contour of every level and, with the holes' boxes, the multi rule wherever no hole holds a
    component that could score better; only those levels sweep the map's own components."""
    height, width = u.shape
    filled, hole_order, hole_starts, counts, filled_counts = flooded
    # in raster order within a value (the sweep's memory accesses follow it)
    order, starts = pixels_by_value(filled[1:-1, 1:-1], filled_counts)
    multi, largest = components_sweep(height, width, order, starts, used, gt, np.zeros(256), True)
    if len(hole_order):
        multi, nested = holes_sweep(
            height, width, hole_order, hole_starts, filled, used, gt, multi, at_least
        )
        if nested.any():
            order, starts = pixels_by_value(u, counts)
            multi = components_sweep(height, width, order, starts, nested, gt, multi, False)[0]
    # The reference scores an empty mask as the single box [0, 0, 0, 0].
    empty = best_iou(0, 0, 0, 0, gt)
    return np.append(multi, empty), np.append(largest, empty)


def threshold_scores(
    u: np.ndarray, gt: np.ndarray, k: np.ndarray, at_least: float = 0.0
) -> tuple[np.ndarray, ...]:
    """Best IoU of both box rules at every threshold of a quantized map.

    Args:
        u: [H, W] uint8 quantized map.
        gt: [G, 4] int GT boxes (x0, y0, x1, y1), G >= 1.
        k: [T] int integer thresholds ``int(tau * max(u))`` in [0, 255]; a pixel is on iff
            ``u > k``.
        at_least: the lowest IoU the caller compares with (its lowest IoU threshold): a
            multi-rule score below it may come out lower than it is, still below it, which
            spares a noisy map most of its work (:func:`~wsolbench.metrics.sweeps.holes_sweep`).
            0 (the default): every score exact.

    Returns:
        (multi, largest): [T] float64 each, the best IoU with any GT box over all contour boxes
        of the threshold's mask (multi-contour rule) and the IoU of its largest contour's box
        (largest-contour rule); a mask with no contour scores the box [0, 0, 0, 0].
    """
    u = np.ascontiguousarray(u, dtype=np.uint8)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    k = np.ascontiguousarray(k, dtype=np.int64)
    if k.size and (k.min() < 0 or k.max() > 255):
        raise ValueError("integer thresholds must lie in [0, 255]")
    flooded = flood(u)
    counts = flooded[3]  # how many pixels hold each value
    value, used = _value_of_tau(counts, k)
    multi, largest = _scores_by_value(u, flooded, gt, used, float(at_least))
    return multi[value], largest[value]


def level_scores(u: np.ndarray, gt: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Best IoU of both box rules at given levels (masks ``u >= level``) of a quantized map.

    Args:
        u: [H, W] uint8 quantized map.
        gt: [G, 4] int GT boxes (x0, y0, x1, y1), G >= 1.
        levels: [L] int, each a value present in ``u`` or 256 (the empty mask).

    Returns:
        (multi, largest): [L] float64 each, as :func:`threshold_scores`.
    """
    u = np.ascontiguousarray(u, dtype=np.uint8)
    gt = np.ascontiguousarray(gt, dtype=np.int64).reshape(-1, 4)
    levels = np.asarray(levels, dtype=np.int64)
    flooded = flood(u)
    present = flooded[3] > 0  # the map's value counts
    if (levels < 0).any() or not present[levels[levels <= 255]].all():
        raise ValueError("every level must be a value present in the map, or 256")
    used = np.zeros(256, dtype=np.bool_)
    used[levels[levels <= 255]] = True
    multi, largest = _scores_by_value(u, flooded, gt, used)
    return multi[levels], largest[levels]
