"""Box extraction and IoU: the boxes of a map at every threshold, rescaled GT boxes, their IoU.

:func:`boxes_from_map` returns the boxes themselves, multi-contour and largest-contour rules, in
OpenCV's contour order. The reference runs one contour search per threshold (1,000 per map at step
0.001); maps are quantized to uint8 before thresholding, so the binary mask
``u > int(tau * max(u))`` only changes when the integer threshold crosses a value present in ``u``
(a *level*), and this module runs one ``cv2.findContours`` per distinct level (cropped to the
on-pixels, bounding boxes and polygon areas computed in vectorized numpy). Counting does not need
the boxes themselves: :class:`wsolbench.metrics.BoxCounter` scores them with
:mod:`wsolbench.metrics.level_sets`, without tracing contours.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from wsolbench.metrics.maps import check_map, quantize


def rescale_boxes(
    boxes: np.ndarray, orig_size: tuple[int, int], new_size: tuple[int, int]
) -> np.ndarray:
    """Rescale ground-truth boxes from the original image size to the map size.

    Each coordinate becomes ``int(x * new / old)`` computed in float64, multiplication first, as in
    the reference (``x * (new / old)`` can truncate to a different integer).

    Args:
        boxes: [G, 4] (x0, y0, x1, y1), non-negative, in original pixels.
        orig_size: original (W, H), as in image_sizes.txt.
        new_size: target (W, H).

    Returns:
        [G, 4] int64 boxes in target pixels.
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape [G, 4] (x0, y0, x1, y1); got {boxes.shape}")
    old_w, old_h = (float(v) for v in orig_size)
    new_w, new_h = (float(v) for v in new_size)
    if old_w <= 0 or old_h <= 0:
        raise ValueError(f"original image size must be positive; got (W, H) = {orig_size}")
    scaled = boxes.astype(np.float64)
    scaled[:, 0::2] = scaled[:, 0::2] * new_w / old_w
    scaled[:, 1::2] = scaled[:, 1::2] * new_h / old_h
    return scaled.astype(np.int64)  # truncation toward zero, like int()


def box_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU between boxes in inclusive pixel coordinates.

    Area is ``(x1 - x0 + 1) * (y1 - y0 + 1)``; the intersection likewise, clamped at 0; a
    non-positive union gives IoU 0.

    Args:
        pred: [P, 4] int (x0, y0, x1, y1).
        gt: [G, 4] int (x0, y0, x1, y1).

    Returns:
        [P, G] float64 in [0, 1].
    """
    pred = np.asarray(pred, dtype=np.int64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.int64).reshape(-1, 4)
    ix0 = np.maximum(pred[:, None, 0], gt[None, :, 0])
    iy0 = np.maximum(pred[:, None, 1], gt[None, :, 1])
    ix1 = np.minimum(pred[:, None, 2], gt[None, :, 2])
    iy1 = np.minimum(pred[:, None, 3], gt[None, :, 3])
    inter = np.maximum(0, ix1 - ix0 + 1) * np.maximum(0, iy1 - iy0 + 1)
    area_p = (pred[:, 2] - pred[:, 0] + 1) * (pred[:, 3] - pred[:, 1] + 1)
    area_g = (gt[:, 2] - gt[:, 0] + 1) * (gt[:, 3] - gt[:, 1] + 1)
    union = area_p[:, None] + area_g[None, :] - inter
    degenerate = union <= 0
    iou = inter / np.where(degenerate, 1, union)
    iou[degenerate] = 0.0
    return iou


def _levels(u: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct masks of a quantized map over the thresholds.

    Args:
        u: [H, W] uint8 quantized map.
        thresholds: [T] taus.

    Returns:
        (levels, level_of_tau): [L] sorted values v such that the mask of a tau is ``u >= v``
        (256: the empty mask), and [T] the index in ``levels`` of each tau's mask.
    """
    # Integer threshold of each tau: float64 product as in the reference, truncated like int().
    k = (thresholds * float(u.max())).astype(np.int64)
    values = np.flatnonzero(np.bincount(u.ravel(), minlength=256))
    # The mask u > k equals u >= (smallest value present above k); 256 = nothing above k.
    pos = np.searchsorted(values, k, side="right")
    level_value = np.where(pos < len(values), values[np.minimum(pos, len(values) - 1)], 256)
    return np.unique(level_value, return_inverse=True)


class _ContourStats:
    """Bounding boxes and areas of many contours, computed in vectorized chunks.

    Chunks keep the temporaries small: one array over all points of a map (1e5+ points) makes
    the allocator hand memory back to the OS after every map and fault it in again, which costs
    more than the arithmetic.
    """

    CHUNK = 128  # contours per chunk (fastest on 224 px CAM-like maps)

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self.pending: list[np.ndarray] = []
        self.boxes: list[np.ndarray] = []
        self.areas: list[np.ndarray] = []

    def add(self, contours: Sequence[np.ndarray]) -> None:
        self.pending.extend(contours)
        if len(self.pending) >= self.CHUNK:
            self._flush()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """([n, 4] int64 boxes (x0, y0, x1, y1), [n] int64 twice the contour areas)."""
        self._flush()
        if not self.boxes:
            return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(self.boxes), np.concatenate(self.areas)

    def _flush(self) -> None:
        if not self.pending:
            return
        contours, self.pending = self.pending, []
        lengths = np.fromiter(map(len, contours), dtype=np.int64, count=len(contours))
        first = np.zeros(len(contours), dtype=np.int64)
        np.cumsum(lengths[:-1], out=first[1:])
        points = np.concatenate(contours).reshape(-1, 2)
        # int32 products (below) are exact up to 46,340 px a side.
        dtype = np.int32 if max(self.width, self.height) <= 46_340 else np.int64
        xs = np.ascontiguousarray(points[:, 0], dtype=dtype)
        ys = np.ascontiguousarray(points[:, 1], dtype=dtype)
        # boundingRect: (xmin, ymin, w, h) -> box (x, y, x + w, y + h), clipped to the map.
        boxes = np.empty((len(contours), 4), dtype=np.int64)
        boxes[:, 0] = np.minimum.reduceat(xs, first)
        boxes[:, 1] = np.minimum.reduceat(ys, first)
        boxes[:, 2] = np.minimum(np.maximum.reduceat(xs, first) + 1, self.width - 1)
        boxes[:, 3] = np.minimum(np.maximum.reduceat(ys, first) + 1, self.height - 1)
        # Twice cv2.contourArea: shoelace over (previous point, point), the previous of a
        # contour's first point being its last. Integer sums are exact, so comparisons agree.
        last = first + lengths - 1
        x_prev, y_prev = np.empty_like(xs), np.empty_like(ys)
        x_prev[1:], y_prev[1:] = xs[:-1], ys[:-1]
        x_prev[first], y_prev[first] = xs[last], ys[last]
        x_prev *= ys
        y_prev *= xs
        x_prev -= y_prev
        self.boxes.append(boxes)
        self.areas.append(np.abs(np.add.reduceat(x_prev, first, dtype=np.int64)))


class _LevelBoxes:
    """Boxes of every distinct binary mask of one quantized map, in OpenCV's contour order.

    One ``cv2.findContours`` per level; :func:`boxes_from_map` uses it. Counting does not need the
    boxes themselves and uses :mod:`wsolbench.metrics.level_sets` instead.

    Attributes:
        level_of_tau: [T] index of the level (distinct mask) each threshold uses.
        multi: [N, 4] int64 boxes of all contours of all levels, level by level, in OpenCV's
            contour order (multi rule); a level without contour contributes one [0, 0, 0, 0].
        starts: [L] index in ``multi`` of each level's first box (every level has >= 1 box).
        largest: [L, 4] int64 box of each level's largest contour (largest-contour rule).
    """

    def __init__(self, scoremap: np.ndarray, thresholds: np.ndarray):
        u = quantize(scoremap)
        height, width = u.shape
        levels, self.level_of_tau = _levels(u, thresholds)

        # Bounding box of the on-pixels of each level, from per-row and per-column maxima.
        row_on = u.max(axis=1)[None, :] >= levels[:, None]
        col_on = u.max(axis=0)[None, :] >= levels[:, None]
        y0s, y1s = row_on.argmax(1), height - 1 - row_on[:, ::-1].argmax(1)
        x0s, x1s = col_on.argmax(1), width - 1 - col_on[:, ::-1].argmax(1)

        stats = _ContourStats(width, height)
        n_per_level = []
        bounds = np.stack([y0s, y1s + 1, x0s, x1s + 1], axis=1).tolist()
        for value, (y0, y1, x0, x1) in zip(levels.tolist(), bounds, strict=True):
            if value > 255:  # nothing is on: no contour
                n_per_level.append(0)
                continue
            # u > value - 1 is u >= value: the mask of every tau of this level.
            crop = cv2.threshold(u[y0:y1, x0:x1], value - 1, 1, cv2.THRESH_BINARY)[1]
            found, _ = cv2.findContours(
                crop, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0)
            )
            stats.add(found)
            n_per_level.append(len(found))
        boxes, area2 = stats.result()
        self._select(boxes, area2, np.asarray(n_per_level, dtype=np.int64))

    def _select(self, boxes: np.ndarray, area2: np.ndarray, counts: np.ndarray) -> None:
        if counts[-1] == 0:
            # Only the top level can be empty (all others hold a value present in the map); the
            # reference scores an empty mask as the single box [0, 0, 0, 0].
            boxes = np.concatenate([boxes, np.zeros((1, 4), dtype=np.int64)])
            area2 = np.append(area2, 0)
            counts[-1] = 1

        self.multi = boxes
        self.starts = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=self.starts[1:])
        # Largest contour of each level: the first maximum of the area in contour order, as
        # Python's max() picks it.
        is_max = np.flatnonzero(area2 == np.repeat(np.maximum.reduceat(area2, self.starts), counts))
        level = np.repeat(np.arange(len(counts)), counts)[is_max]
        first_of_level = np.ones(len(is_max), dtype=bool)
        first_of_level[1:] = level[1:] != level[:-1]
        self.largest = boxes[is_max[first_of_level]]


def boxes_from_map(
    scoremap: np.ndarray, thresholds: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Boxes of a map at every threshold, multi-contour and largest-contour rules.

    Args:
        scoremap: [H, W] in [0, 1] at protocol size.
        thresholds: [T] taus, e.g. :func:`threshold_grid`.

    Returns:
        (multi, largest): lists of T arrays; ``multi[t]`` is [K_t, 4] int64 (one box per contour,
        in OpenCV's contour order), ``largest[t]`` is [1, 4] int64. Boxes are (x0, y0, x1, y1);
        a threshold with no contour gives the single box [0, 0, 0, 0].
    """
    check_map(scoremap, "scoremap")
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if len(thresholds) == 0:
        raise ValueError("thresholds is empty; use threshold_grid(step)")
    lv = _LevelBoxes(scoremap, thresholds)
    ends = np.append(lv.starts[1:], len(lv.multi))
    per_level_multi = [lv.multi[s:e] for s, e in zip(lv.starts, ends, strict=True)]
    multi = [per_level_multi[j] for j in lv.level_of_tau]
    largest = [lv.largest[j : j + 1] for j in lv.level_of_tau]
    return multi, largest
