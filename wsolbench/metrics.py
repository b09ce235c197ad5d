"""The WSOL evaluation protocol: map -> boxes, IoU, per-threshold counters, PxAP, policies.

numpy, OpenCV and numba only (no torch), so results can be recomputed anywhere. The semantics are
those of ``shared/spec/protocol.md`` and reproduce the reference evaluator of Choe et al. (CVPR
2020, clovaai/wsolevaluation) bit for bit: the same per-threshold correct counts on the same maps.

Fast path. The reference runs one contour search per threshold (1,000 per map at step 0.001).
Maps are quantized to uint8 before thresholding, so the binary mask ``u > int(tau * max(u))`` only
changes when the integer threshold crosses a value present in ``u`` (a *level*). Box counting
(:class:`BoxCounter`) does not trace contours at all: :mod:`wsolbench.level_sets` derives every
level's contour boxes, the largest contour and their IoU with the ground truth from two
union-find sweeps over the pixels sorted by value (compiled with numba), and OpenCV traces only
the rare levels where a component sits inside another's hole (~0.5 % of the levels of CAM-like
maps). That module's docstring states each fact about ``cv2.findContours`` it relies on and why
the result is OpenCV's. :func:`boxes_from_map`, which returns the boxes themselves in OpenCV's
contour order, still runs one ``cv2.findContours`` per distinct level (cropped to the on-pixels,
bounding boxes and polygon areas computed in vectorized numpy). ``benchmarks/README.md`` has the
measured figures.

``tests/test_metrics_equivalence.py`` checks the counts against the literal per-threshold
implementation in :mod:`wsolbench.metrics_literal` on thousands of maps.

Counts record (one split; JSON-ready; ``merge`` is an elementwise sum)::

    {"n_images": int, "step": float, "iou_thresholds": [30, 50, 70],
     "box":  {"multi": {"30": [T ints], ...}, "largest": {"30": [T ints], ...},
              "top1_loc": [T ints], "top5_loc": [T ints]},   # top-k only with labels, IoU 0.5
     "cls":  {"n": int, "top1": int, "top5": int},           # only with labels
     "mask": {"fg_hist": [T + 2 ints], "bg_hist": [T + 2 ints]}}
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "BoxCounter",
    "ClsCounter",
    "MaskCounter",
    "SplitCounter",
    "box_iou",
    "boxes_from_map",
    "check_map",
    "merge_counts",
    "normalize_map",
    "parse_policy",
    "pxap",
    "read_mask",
    "rescale_boxes",
    "summarize",
    "threshold_grid",
]

DEFAULT_IOU_THRESHOLDS = (30, 50, 70)
# MaxBoxAccV2 is the mean over exactly these IoU thresholds (percent).
V2_IOU_THRESHOLDS = (30, 50, 70)
# GT-known Loc, MaxBoxAcc (V1) and Top-k Loc are defined at IoU 0.5.
GT_KNOWN_IOU = 50


# ----------------------------------------------------------------------------------------------
# Maps and boxes
# ----------------------------------------------------------------------------------------------


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


def _step_of(thresholds: np.ndarray) -> float:
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


def _quantize(scoremap: np.ndarray) -> np.ndarray:
    """[H, W] map in [0, 1] -> [H, W] uint8 ``floor(map * 255)``, in float64 like the reference."""
    return (np.asarray(scoremap, dtype=np.float64) * 255).astype(np.uint8)


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
    boxes themselves and uses :mod:`wsolbench.level_sets` instead.

    Attributes:
        level_of_tau: [T] index of the level (distinct mask) each threshold uses.
        multi: [N, 4] int64 boxes of all contours of all levels, level by level, in OpenCV's
            contour order (multi rule); a level without contour contributes one [0, 0, 0, 0].
        starts: [L] index in ``multi`` of each level's first box (every level has >= 1 box).
        largest: [L, 4] int64 box of each level's largest contour (largest-contour rule).
    """

    def __init__(self, scoremap: np.ndarray, thresholds: np.ndarray):
        u = _quantize(scoremap)
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


# ----------------------------------------------------------------------------------------------
# Streaming counters
# ----------------------------------------------------------------------------------------------


def _int_array(values, length: int, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64)
    if array.shape != (length,):
        raise ValueError(
            f"counts record: {what} must hold {length} integers; got {array.shape} (one per "
            "threshold of the record's step)"
        )
    return array


def _check_gt_boxes(gt_boxes: np.ndarray) -> np.ndarray:
    gt = np.asarray(gt_boxes)
    if gt.ndim != 2 or gt.shape[1] != 4 or len(gt) == 0:
        raise ValueError(f"gt_boxes must have shape [G, 4] with G >= 1; got {gt.shape}")
    gt = gt.astype(np.int64)
    bad = (gt < 0).any(axis=1) | (gt[:, 2] < gt[:, 0]) | (gt[:, 3] < gt[:, 1])
    if bad.any():
        raise ValueError(
            f"gt box {gt[bad][0].tolist()} is not (x0, y0, x1, y1) "
            "with 0 <= x0 <= x1 and 0 <= y0 <= y1"
        )
    return gt


class ClsCounter:
    """Top-1 / Top-5 classification counts (no threshold)."""

    def __init__(self) -> None:
        self.n = 0
        self.top1 = 0
        self.top5 = 0

    @staticmethod
    def hits(label: int, topk: Sequence[int]) -> tuple[bool, bool]:
        """(top-1 correct, top-5 correct) for one image; ``topk`` best first."""
        topk = [int(c) for c in np.asarray(topk).ravel()]
        if not topk:
            raise ValueError("topk must list at least one predicted class index, best first")
        return topk[0] == int(label), int(label) in topk[:5]

    def update(self, label: int, topk: Sequence[int]) -> tuple[bool, bool]:
        """Count one image; returns its (top-1, top-5) hits."""
        top1, top5 = self.hits(label, topk)
        self.n += 1
        self.top1 += top1
        self.top5 += top5
        return top1, top5

    def merge(self, other: ClsCounter) -> None:
        """Add another counter's counts."""
        self.n += other.n
        self.top1 += other.top1
        self.top5 += other.top5

    def to_dict(self) -> dict:
        """The ``cls`` record: {"n", "top1", "top5"}."""
        return {"n": self.n, "top1": self.top1, "top5": self.top5}

    @classmethod
    def from_dict(cls, d: dict) -> ClsCounter:
        """Inverse of :meth:`to_dict`."""
        counter = cls()
        counter.n, counter.top1, counter.top5 = int(d["n"]), int(d["top1"]), int(d["top5"])
        return counter


class BoxCounter:
    """Streaming per-threshold correct counts for one split (memory constant in the image count).

    For every tau and IoU threshold delta it counts the images whose best IoU is >= delta / 100,
    under the multi-contour rule (MaxBoxAccV2) and the largest-contour rule (MaxBoxAcc, GT-known).
    With class predictions it also counts Top-1 / Top-5 Loc (largest rule, IoU 0.5, so only when
    50 is among the IoU thresholds) and Top-1 / Top-5 Cls.
    """

    def __init__(self, thresholds: np.ndarray, iou_thresholds: Sequence[int] = (30, 50, 70)):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.step = _step_of(self.thresholds)
        ious = [int(d) for d in iou_thresholds]
        if not ious or any(not 0 < d <= 100 for d in ious) or len(set(ious)) != len(ious):
            raise ValueError(
                f"IoU thresholds must be distinct integers in (0, 100] (percent); got {ious}"
            )
        self.iou_thresholds = ious
        n_tau = len(self.thresholds)
        self.n_images = 0
        self.multi = {d: np.zeros(n_tau, dtype=np.int64) for d in ious}
        self.largest = {d: np.zeros(n_tau, dtype=np.int64) for d in ious}
        # Classification mode is fixed by the first image: mixing would make the counts meaningless.
        self.cls: ClsCounter | None = None
        self.top1_loc: np.ndarray | None = None
        self.top5_loc: np.ndarray | None = None

    def update(
        self,
        scoremap: np.ndarray,
        gt_boxes: np.ndarray,
        label: int | None = None,
        topk: Sequence[int] | None = None,
    ) -> dict:
        """Count one image.

        Args:
            scoremap: [H, W] in [0, 1], already normalized at protocol size.
            gt_boxes: [G, 4] int (x0, y0, x1, y1) in map coordinates, G >= 1.
            label: ground-truth class index; with ``topk``, only when the method classifies.
            topk: predicted class indices, best first (>= 5 of them, or all K when K < 5).

        Returns:
            What this image added (:mod:`wsolbench.per_image` keeps it): ``multi`` and
            ``largest``, bool [len(iou_thresholds), T], whether its best box reaches each IoU
            threshold at each tau under each rule; with class predictions ``top1`` and
            ``top5`` (bool).
        """
        check_map(scoremap, "scoremap")
        gt = _check_gt_boxes(gt_boxes)
        if (label is None) != (topk is None):
            raise ValueError("give both label and topk (the method classifies) or neither")
        from wsolbench import level_sets  # numba: compiled (or loaded from cache) on first use

        u = _quantize(scoremap)
        # Integer threshold of each tau: float64 product as in the reference, truncated like int().
        k = (self.thresholds * float(u.max())).astype(np.int64)
        multi_score, largest_score = level_sets.threshold_scores(u, gt, k)
        with_cls = self._check_cls_mode(label, topk)  # only now: a failed update changes nothing
        outcome = {
            "multi": np.stack([multi_score >= d / 100 for d in self.iou_thresholds]),
            "largest": np.stack([largest_score >= d / 100 for d in self.iou_thresholds]),
        }
        for i, d in enumerate(self.iou_thresholds):
            self.multi[d] += outcome["multi"][i]
            self.largest[d] += outcome["largest"][i]
        if with_cls:
            top1, top5 = self.cls.update(label, topk)
            outcome.update(top1=top1, top5=top5)
            if self.top1_loc is not None:
                known = largest_score >= GT_KNOWN_IOU / 100
                self.top1_loc += known & top1
                self.top5_loc += known & top5
        self.n_images += 1
        return outcome

    def _check_cls_mode(self, label, topk) -> bool:
        with_cls = label is not None
        if self.n_images == 0 and with_cls:
            self.cls = ClsCounter()
            if GT_KNOWN_IOU in self.iou_thresholds:
                self.top1_loc = np.zeros(len(self.thresholds), dtype=np.int64)
                self.top5_loc = np.zeros(len(self.thresholds), dtype=np.int64)
        elif with_cls != (self.cls is not None):
            raise ValueError(
                "every image of a split must come with class predictions (label, topk), or none"
            )
        return with_cls

    def merge(self, other: BoxCounter) -> None:
        """Add another counter's counts (same thresholds, IoU thresholds, classification mode)."""
        if self.step != other.step or self.iou_thresholds != other.iou_thresholds:
            raise ValueError(
                f"cannot merge box counts with step {other.step} / IoU {other.iou_thresholds} "
                f"into step {self.step} / IoU {self.iou_thresholds}"
            )
        if self.n_images == 0:
            self._adopt_cls_mode(other)
        elif other.n_images and (self.cls is None) != (other.cls is None):
            raise ValueError("cannot merge box counts with and without class predictions")
        for d in self.iou_thresholds:
            self.multi[d] += other.multi[d]
            self.largest[d] += other.largest[d]
        if other.cls is not None:
            self.cls.merge(other.cls)
            if self.top1_loc is not None:
                self.top1_loc += other.top1_loc
                self.top5_loc += other.top5_loc
        self.n_images += other.n_images

    def _adopt_cls_mode(self, other: BoxCounter) -> None:
        if other.cls is not None and self.cls is None:
            self.cls = ClsCounter()
            if other.top1_loc is not None:
                self.top1_loc = np.zeros(len(self.thresholds), dtype=np.int64)
                self.top5_loc = np.zeros(len(self.thresholds), dtype=np.int64)

    def to_dict(self) -> dict:
        """The counts record: ``n_images``, ``step``, ``iou_thresholds``, ``box``, maybe ``cls``."""
        box = {
            "multi": {str(d): self.multi[d].tolist() for d in self.iou_thresholds},
            "largest": {str(d): self.largest[d].tolist() for d in self.iou_thresholds},
        }
        if self.top1_loc is not None:
            box["top1_loc"] = self.top1_loc.tolist()
            box["top5_loc"] = self.top5_loc.tolist()
        record = {
            "n_images": self.n_images,
            "step": self.step,
            "iou_thresholds": list(self.iou_thresholds),
            "box": box,
        }
        if self.cls is not None:
            record["cls"] = self.cls.to_dict()
        return record

    @classmethod
    def from_dict(cls, d: dict) -> BoxCounter:
        """Rebuild a counter from a counts record holding ``box``."""
        if "box" not in d:
            raise ValueError("counts record has no 'box' section: the split was not box-scored")
        counter = cls(threshold_grid(d["step"]), d["iou_thresholds"])
        n_tau = len(counter.thresholds)
        box = d["box"]
        for d_iou in counter.iou_thresholds:
            key = str(d_iou)
            counter.multi[d_iou] = _int_array(box["multi"][key], n_tau, f"box.multi.{key}")
            counter.largest[d_iou] = _int_array(box["largest"][key], n_tau, f"box.largest.{key}")
        if "cls" in d:
            counter.cls = ClsCounter.from_dict(d["cls"])
        if "top1_loc" in box:
            counter.top1_loc = _int_array(box["top1_loc"], n_tau, "box.top1_loc")
            counter.top5_loc = _int_array(box["top5_loc"], n_tau, "box.top5_loc")
        counter.n_images = int(d["n_images"])
        return counter


class MaskCounter:
    """Streaming PxAP histograms for one split (OpenImages-style masks).

    Per image, map values are histogrammed over foreground and over background pixels with bin
    edges ``thresholds ++ [1.0, 2.0, 3.0]`` (numpy histogram semantics); ignored pixels are in
    neither histogram. Counts are kept as exact integers.
    """

    def __init__(self, thresholds: np.ndarray):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.step = _step_of(self.thresholds)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.n_images = 0
        self.fg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.bg_hist = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def _hist(self, values: np.ndarray) -> np.ndarray:
        # Equal to np.histogram(values, self.edges)[0] for values in [0, 3) (checked by the tests):
        # bin i holds edges[i] <= v < edges[i + 1]; values here never reach the closed last bin.
        bins = np.searchsorted(self.edges, values, side="right") - 1
        return np.bincount(bins, minlength=len(self.edges) - 1)

    def update(
        self, scoremap: np.ndarray, foreground: np.ndarray, ignore: np.ndarray | None
    ) -> dict:
        """Count one image.

        Args:
            scoremap: [H, W] in [0, 1].
            foreground: [H, W] bool, union of the image's instance masks.
            ignore: [H, W] bool ignore region or None; pixels ``ignore & ~foreground`` are skipped.

        Returns:
            What this image added: ``fg_hist`` and ``bg_hist``, int64 [T + 2].
        """
        check_map(scoremap, "scoremap")
        scoremap = np.asarray(scoremap, dtype=np.float64)
        fg = np.asarray(foreground, dtype=bool)
        if fg.shape != scoremap.shape:
            raise ValueError(f"foreground mask shape {fg.shape} != map shape {scoremap.shape}")
        bg = ~fg
        if ignore is not None:
            ign = np.asarray(ignore, dtype=bool)
            if ign.shape != scoremap.shape:
                raise ValueError(f"ignore mask shape {ign.shape} != map shape {scoremap.shape}")
            bg &= ~ign
        outcome = {"fg_hist": self._hist(scoremap[fg]), "bg_hist": self._hist(scoremap[bg])}
        self.fg_hist += outcome["fg_hist"]
        self.bg_hist += outcome["bg_hist"]
        self.n_images += 1
        return outcome

    def merge(self, other: MaskCounter) -> None:
        """Add another counter's histograms (same step)."""
        if self.step != other.step:
            raise ValueError(f"cannot merge mask counts of step {other.step} into step {self.step}")
        self.fg_hist += other.fg_hist
        self.bg_hist += other.bg_hist
        self.n_images += other.n_images

    def to_dict(self) -> dict:
        """The counts record (``n_images``, ``step``, ``mask``)."""
        return {
            "n_images": self.n_images,
            "step": self.step,
            "mask": {"fg_hist": self.fg_hist.tolist(), "bg_hist": self.bg_hist.tolist()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> MaskCounter:
        """Rebuild a counter from a counts record holding ``mask``."""
        if "mask" not in d:
            raise ValueError("counts record has no 'mask' section: the split was not mask-scored")
        counter = cls(threshold_grid(d["step"]))
        n_bins = len(counter.edges) - 1
        counter.fg_hist = _int_array(d["mask"]["fg_hist"], n_bins, "mask.fg_hist")
        counter.bg_hist = _int_array(d["mask"]["bg_hist"], n_bins, "mask.bg_hist")
        counter.n_images = int(d["n_images"])
        return counter


class SplitCounter:
    """All counts of one split: boxes, masks and classification, one :meth:`update` per image.

    The box and mask counters are created by the first image that brings boxes or masks; after
    that every image must bring the same kinds of annotation.
    """

    def __init__(self, thresholds: np.ndarray, iou_thresholds: Sequence[int] = (30, 50, 70)):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.step = _step_of(self.thresholds)
        self.iou_thresholds = [int(d) for d in iou_thresholds]
        self.n_images = 0
        self.box: BoxCounter | None = None
        self.mask: MaskCounter | None = None
        self.cls: ClsCounter | None = None  # classification counts when there are no boxes

    def update(
        self,
        scoremap: np.ndarray,
        gt_boxes: np.ndarray | None = None,
        label: int | None = None,
        topk: Sequence[int] | None = None,
        foreground: np.ndarray | None = None,
        ignore: np.ndarray | None = None,
    ) -> dict:
        """Count one image; see :meth:`BoxCounter.update` and :meth:`MaskCounter.update`.

        Returns:
            What this image added: the union of the box and mask counters' outcomes (``top1`` /
            ``top5`` also for a split with labels only).
        """
        has_box, has_mask = gt_boxes is not None, foreground is not None
        if self.n_images == 0:
            self.box = BoxCounter(self.thresholds, self.iou_thresholds) if has_box else None
            self.mask = MaskCounter(self.thresholds) if has_mask else None
            if not has_box and (label is not None or topk is not None):
                self.cls = ClsCounter()
        elif has_box != (self.box is not None) or has_mask != (self.mask is not None):
            raise ValueError(
                "every image of a split must bring the same annotations "
                f"(boxes: {self.box is not None}, masks: {self.mask is not None})"
            )
        outcome: dict = {}
        if self.box is not None:
            outcome.update(self.box.update(scoremap, gt_boxes, label=label, topk=topk))
        elif self.cls is not None:
            if label is None or topk is None:
                raise ValueError("every image of a split must come with (label, topk), or none")
            outcome["top1"], outcome["top5"] = self.cls.update(label, topk)
        if self.mask is not None:
            outcome.update(self.mask.update(scoremap, foreground, ignore))
        self.n_images += 1
        return outcome

    def merge(self, other: SplitCounter) -> None:
        """Add another split counter's counts (e.g. from another process)."""
        if self.step != other.step or self.iou_thresholds != other.iou_thresholds:
            raise ValueError(
                f"cannot merge counts of step {other.step} / IoU {other.iou_thresholds} into "
                f"step {self.step} / IoU {self.iou_thresholds}"
            )
        if other.n_images == 0:
            return
        if self.n_images == 0:
            self.box = BoxCounter(self.thresholds, self.iou_thresholds) if other.box else None
            self.mask = MaskCounter(self.thresholds) if other.mask else None
            self.cls = ClsCounter() if other.cls else None
        pairs = [(self.box, other.box), (self.mask, other.mask), (self.cls, other.cls)]
        for (mine, theirs), what in zip(pairs, ("box", "mask", "cls"), strict=True):
            if (mine is None) != (theirs is None):
                raise ValueError(f"cannot merge counts with and without a '{what}' section")
        if self.box is not None:
            self.box.merge(other.box)  # checks its own compatibility before adding anything
        for mine, theirs in pairs[1:]:
            if mine is not None:
                mine.merge(theirs)
        self.n_images += other.n_images

    def to_dict(self) -> dict:
        """The JSON counts record of the split (see the module docstring)."""
        record = {
            "n_images": self.n_images,
            "step": self.step,
            "iou_thresholds": list(self.iou_thresholds),
        }
        if self.box is not None:
            record.update({k: v for k, v in self.box.to_dict().items() if k in ("box", "cls")})
        if self.cls is not None:
            record["cls"] = self.cls.to_dict()
        if self.mask is not None:
            record["mask"] = self.mask.to_dict()["mask"]
        return record

    @classmethod
    def from_dict(cls, d: dict) -> SplitCounter:
        """Rebuild from a counts record (validates lengths against the step)."""
        for key in ("n_images", "step"):
            if key not in d:
                raise ValueError(f"counts record lacks '{key}'")
        counter = cls(
            threshold_grid(d["step"]), d.get("iou_thresholds", list(DEFAULT_IOU_THRESHOLDS))
        )
        counter.n_images = int(d["n_images"])
        if "box" in d:
            counter.box = BoxCounter.from_dict({**d, "iou_thresholds": counter.iou_thresholds})
        elif "cls" in d:
            counter.cls = ClsCounter.from_dict(d["cls"])
        if "mask" in d:
            counter.mask = MaskCounter.from_dict(d)
        return counter


def check_counts(counts: dict) -> None:
    """Validate a counts record read from disk before anything indexes it.

    Every array must have the grid's length and hold integers in ``[0, n_images]`` (histograms:
    ``>= 0``), the IoU curves must match ``iou_thresholds``, classification counts must satisfy
    ``0 <= top1 <= top5 <= n``: a hand-edited or truncated record fails here, with the field named,
    instead of deep inside a policy.

    Raises:
        ValueError: naming the field and what it must hold.
    """
    try:
        counter = SplitCounter.from_dict(counts)
    except ValueError:
        raise
    except (KeyError, TypeError, AttributeError, OverflowError) as exc:
        raise ValueError(f"counts record is malformed ({type(exc).__name__}: {exc})") from None
    n = counter.n_images
    if n < 1:
        raise ValueError(f"counts record holds no image (n_images={n}); evaluate a non-empty split")
    curves = {}
    if counter.box is not None:
        box = counter.box
        curves.update({f"box.multi.{d}": box.multi[d] for d in box.iou_thresholds})
        curves.update({f"box.largest.{d}": box.largest[d] for d in box.iou_thresholds})
        if box.top1_loc is not None:
            curves.update({"box.top1_loc": box.top1_loc, "box.top5_loc": box.top5_loc})
        if (box.cls is None) != (box.top1_loc is None):
            raise ValueError("counts record: top1_loc/top5_loc and cls come together")
    for what, curve in curves.items():
        if curve.min(initial=0) < 0 or curve.max(initial=0) > n:
            raise ValueError(f"counts record: {what} must lie in [0, n_images={n}]")
    cls = counter.cls or (counter.box.cls if counter.box is not None else None)
    if cls is not None and not 0 <= cls.top1 <= cls.top5 <= cls.n:
        raise ValueError(f"counts record: cls needs 0 <= top1 <= top5 <= n, got {cls.to_dict()}")
    if counter.mask is not None:
        for what in ("fg_hist", "bg_hist"):
            if getattr(counter.mask, what).min(initial=0) < 0:
                raise ValueError(f"counts record: mask.{what} must hold counts >= 0")


def merge_counts(a: dict, b: dict) -> dict:
    """Elementwise sum of two counts records of the same split layout (same step, IoU, sections)."""
    counter = SplitCounter.from_dict(a)
    counter.merge(SplitCounter.from_dict(b))
    return counter.to_dict()


# ----------------------------------------------------------------------------------------------
# PxAP and masks
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Threshold policies and summaries
# ----------------------------------------------------------------------------------------------


def parse_policy(text: str) -> str:
    """Validate a threshold policy: ``oracle``, ``select`` or ``fixed:<tau in [0, 1)>``.

    Returns:
        The canonical spelling (``fixed:0.2`` for ``fixed:.20``).
    """
    policy = str(text).strip().lower()
    if policy in ("oracle", "select"):
        return policy
    if policy.startswith("fixed:"):
        try:
            tau = float(policy.split(":", 1)[1])
        except ValueError:
            tau = float("nan")
        if not 0.0 <= tau < 1.0:  # also rejects NaN
            raise ValueError(
                f"policy '{text}': the fixed threshold must be a number in [0, 1), e.g. fixed:0.2"
            )
        return f"fixed:{tau!r}"
    raise ValueError(
        f"unknown threshold policy '{text}'; "
        "use 'oracle', 'select' or 'fixed:<tau>' (e.g. fixed:0.2)"
    )


def _acc(counts, n: int) -> np.ndarray:
    # Same expression as the reference: num_correct * 100. / float(cnt).
    return np.asarray(counts, dtype=np.float64) * 100.0 / float(n)


def summarize(
    counts: dict, policy: str = "oracle", val_counts: dict | None = None
) -> tuple[dict, dict]:
    """counts -> (metrics, chosen) for one split.

    Args:
        counts: the split's counts record (see the module docstring).
        policy: ``oracle`` (each metric at its own best tau on this split), ``select`` (taus chosen
            on ``val_counts``: per IoU threshold for ``maxboxacc_iouXX`` / ``maxboxacc_v2``,
            GT-known's tau for ``maxboxacc`` / ``gt_known_loc`` / ``top1_loc`` / ``top5_loc``), or
            ``fixed:<tau>`` (the grid tau nearest to the given one). Ties go to the lowest tau.
        val_counts: counts record of the selection split (``select`` only).

    Returns:
        metrics: {key: percent as float} with keys among maxboxacc_v2, maxboxacc_iou30/50/70,
            maxboxacc, gt_known_loc, top1_loc, top5_loc, top1_cls, top5_cls, pxap; a metric that
            does not apply is absent. ``maxboxacc`` equals ``gt_known_loc`` (largest rule, IoU 50).
        chosen: {key: tau} for the thresholded metrics (maxboxacc_v2 uses the taus of its
            maxboxacc_iouXX entries, so it has none of its own).
    """
    policy = parse_policy(policy)
    check_counts(counts)
    n = int(counts["n_images"])
    thresholds = threshold_grid(counts["step"])
    metrics: dict[str, float] = {}
    chosen: dict[str, float] = {}
    box = counts.get("box")

    if box is not None:
        # (metric, curve, val-side curve that picks its tau under "select")
        plan = [
            (f"maxboxacc_iou{d}", box["multi"][str(d)], ("multi", str(d)))
            for d in counts["iou_thresholds"]
        ]
        if str(GT_KNOWN_IOU) in box["largest"]:
            gt_known = box["largest"][str(GT_KNOWN_IOU)]
            for key in ("maxboxacc", "gt_known_loc"):
                plan.append((key, gt_known, ("largest", str(GT_KNOWN_IOU))))
            for key in ("top1_loc", "top5_loc"):
                if key in box:
                    plan.append((key, box[key], ("largest", str(GT_KNOWN_IOU))))
        if policy == "select" and isinstance(val_counts, dict) and "box" in val_counts:
            check_counts(val_counts)  # (without boxes, the picker's message says more)
        pick = _tau_picker(
            policy, thresholds, val_counts if isinstance(val_counts, dict) else None, counts["step"]
        )
        for key, curve, val_key in plan:
            acc = _acc(curve, n)
            idx = int(np.argmax(acc)) if pick is None else pick(val_key)
            metrics[key] = float(acc[idx])
            chosen[key] = float(thresholds[idx])
        if all(f"maxboxacc_iou{d}" in metrics for d in V2_IOU_THRESHOLDS):
            metrics["maxboxacc_v2"] = float(
                np.mean([metrics[f"maxboxacc_iou{d}"] for d in V2_IOU_THRESHOLDS])
            )

    cls = counts.get("cls")
    if cls is not None and int(cls["n"]) > 0:
        metrics["top1_cls"] = float(int(cls["top1"]) * 100.0 / float(cls["n"]))
        metrics["top5_cls"] = float(int(cls["top5"]) * 100.0 / float(cls["n"]))
    if counts.get("mask") is not None:
        metrics["pxap"] = pxap(counts["mask"]["fg_hist"], counts["mask"]["bg_hist"])
    return metrics, chosen


def _tau_picker(policy: str, thresholds: np.ndarray, val_counts: dict | None, step: float):
    """None for oracle; else a function (section, delta) -> threshold index."""
    if policy == "oracle":
        return None
    if policy.startswith("fixed:"):
        idx = int(np.argmin(np.abs(thresholds - float(policy.split(":", 1)[1]))))
        return lambda _val_key: idx
    if val_counts is None or "box" not in val_counts or not int(val_counts.get("n_images", 0)):
        raise ValueError(
            "policy 'select' needs the counts of a validation split with boxes (val_counts); "
            "this protocol has none: use --policy oracle or fixed:<tau>"
        )
    if float(val_counts["step"]) != float(step):
        raise ValueError(
            f"policy 'select': validation step {val_counts['step']} != split step {step}"
        )

    def pick(val_key: tuple[str, str]) -> int:
        section, delta = val_key
        curve = val_counts["box"][section].get(delta)
        if curve is None:
            raise ValueError(
                f"policy 'select': the validation counts have no {section} curve at IoU {delta}"
            )
        return int(np.argmax(np.asarray(curve, dtype=np.int64)))

    return pick
