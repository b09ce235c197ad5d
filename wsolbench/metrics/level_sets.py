"""Box scores of every threshold level of a quantized map, without tracing a contour.

The box protocol (``shared/spec/protocol.md``) thresholds a uint8 map ``u`` at every level ``v``
(mask ``u >= v``), runs ``cv2.findContours(mask, RETR_TREE, CHAIN_APPROX_SIMPLE)`` and scores
either all contours' bounding rectangles (multi-contour rule, MaxBoxAccV2) or the rectangle of the
contour with the largest ``cv2.contourArea``, the first one in contour order on ties
(largest-contour rule, MaxBoxAcc / GT-known). This module gets the same per-level scores from two
union-find sweeps over the pixels sorted by value (three on a map with components inside holes),
compiled with numba, with no contour search at all. What it relies on, each fact checked against
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
   on-pixels counts 1/2, any other 0 (the polygon cuts such a window along its diagonal). All
   on-pixels of a window belong to one 8-connected component, so the unfilled sum ``S(C)`` is
   additive under union. Filling a hole ``H`` that holds no other component adds
   ``sum over windows of h(#pixels of H in the window)`` with ``h(1) = 1/2`` and
   ``h(2..4) = 1``: a window's pixels not in ``H`` are 4-adjacent to ``H``, hence foreground of
   ``C``, except, with a single ``H`` pixel, possibly the diagonal one (outside, or in another
   hole), and case by case the window's value in the filled set minus its value in ``S(C)`` is
   ``h`` (or ``h(1) + h(1)`` for two diagonal holes). Since ``h(1) + h(1) = h(2)``, the sum is
   additive too when two diagonal background pixels of one window join later.
6. **Largest contour wins among outer contours**: a hole's polygon lies inside its parent's outer
   polygon and the parent precedes it in contour order, so the first contour of largest area is
   always an outer one. Outer contours nested in a hole are the only ones that are not top-level;
   where no hole holds another component, the winner is the component of largest ``S(C) + sum
   of its holes' fills``, ties to the larger first pixel. A hole's parent is the component of
   the pixel left of the hole's first pixel: that pixel is foreground (a background one would
   belong to the hole and come first) and adjacent to the hole, and with no component inside the
   hole only the parent is.
7. **Levels with components inside holes** (a background component whose 4-connected Euler
   number ``V - E + F`` is below 1: about 0.5 % of the levels of CAM-like maps, most levels of a
   noisy one) are scored on the map with its holes filled (:func:`~wsolbench.metrics.sweeps.
   fill_holes`): its level set at ``v`` is the union of the regions the top-level outer contours
   of ``u >= v`` enclose, one 8-connected component each (two top-level components are never
   8-adjacent, nor are their filled regions), with no hole. A nested contour lies strictly inside
   its top-level ancestor's polygon, so its area is smaller and it never wins; a filled region's
   window sum is its contour's area (fact 5), its bounding box and its first pixel are the
   component's (the extreme pixels of a filled region are on its outer contour). So the
   foreground sweep run on the filled map scores those levels' largest contour, with no contour
   traced.

The sweeps built on these facts are in :mod:`wsolbench.metrics.sweeps`; this module runs them on
one map and its ground-truth boxes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from wsolbench.metrics.sweeps import (
    best_iou,
    components_sweep,
    fill_holes,
    holes_sweep,
    no_holes,
    pixels_by_value,
)

__all__ = ["level_scores", "threshold_scores"]


def _largest_of_filled(u: np.ndarray, gt: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """[256] IoU of the largest contour's box at each level of ``levels`` ([256] bool), from the
    map with its holes filled (fact 7)."""
    height, width = u.shape
    order, starts = pixels_by_value(fill_holes(u))
    return components_sweep(height, width, order, starts, levels, gt, no_holes())[1]


@njit(cache=True, nogil=True)
def _value_of_tau(starts, k):
    """Mask of each integer threshold k (on iff u > k) as a level: the smallest value present
    above k (u > k is u >= that value), 256 when none is. Returns ([T] levels, [256] used)."""
    above = np.empty(256, np.int64)
    smallest = 256
    for v in range(255, -1, -1):
        above[v] = smallest
        if starts[v + 1] > starts[v]:
            smallest = v
    value = np.empty(k.shape[0], np.int64)
    used = np.zeros(256, np.bool_)
    for t in range(k.shape[0]):
        v = above[k[t]]
        value[t] = v
        if v < 256:
            used[v] = True
    return value, used


def _scores_by_value(u, gt, order, starts, used):
    """[257] best IoU per level value, multi and largest rule; index 256 is the empty mask."""
    height, width = u.shape
    holes = holes_sweep(height, width, order, starts, used, gt)
    multi, largest, nested = components_sweep(height, width, order, starts, used, gt, holes)
    if nested.any():
        largest[nested] = _largest_of_filled(u, gt, nested)[nested]
    # The reference scores an empty mask as the single box [0, 0, 0, 0].
    empty = best_iou(0, 0, 0, 0, gt)
    return np.append(multi, empty), np.append(largest, empty)


def threshold_scores(u: np.ndarray, gt: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, ...]:
    """Best IoU of both box rules at every threshold of a quantized map.

    Args:
        u: [H, W] uint8 quantized map.
        gt: [G, 4] int GT boxes (x0, y0, x1, y1), G >= 1.
        k: [T] int integer thresholds ``int(tau * max(u))`` in [0, 255]; a pixel is on iff
            ``u > k``.

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
    order, starts = pixels_by_value(u)
    value, used = _value_of_tau(starts, k)
    multi, largest = _scores_by_value(u, gt, order, starts, used)
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
    order, starts = pixels_by_value(u)
    used = np.zeros(256, dtype=np.bool_)
    used[levels[levels <= 255]] = True
    if (np.diff(starts)[levels[levels <= 255]] == 0).any() or (levels < 0).any():
        raise ValueError("every level must be a value present in the map, or 256")
    multi, largest = _scores_by_value(u, gt, order, starts, used)
    return multi[levels], largest[levels]
