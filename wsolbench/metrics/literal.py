"""A deliberately plain, literal implementation of the WSOL box and mask protocol.

This module exists for the tests (``tests/test_metrics_equivalence.py``) and the evaluator speed
benchmark (``benchmarks/bench_evaluator.py``); the harness never uses it. It follows
``shared/spec/protocol.md`` step by step with the structure of the reference evaluator (Choe et al.,
CVPR 2020, clovaai/wsolevaluation): per image, per threshold, ``cv2.threshold`` of the uint8 map,
``cv2.findContours`` on the whole map, contour selection, bounding rectangles, then one IoU matrix
per image sliced back per threshold. It shares no code with the rest of :mod:`wsolbench.metrics`,
so that a mistake in the fast path cannot hide in both.

Two modes of :func:`literal_box_counts` give the same counts:

* default: both rules (multi-contour for MaxBoxAccV2, largest-contour for MaxBoxAcc) come from one
  contour search per threshold, and each box's best IoU is computed once. This is the plain
  baseline, and it is faster than the reference.
* ``reference_structure=True``: the reference's own structure, which runs the whole sweep once per
  rule (its ``multi_contour_eval`` flag) and recomputes the per-box IoU maximum for every
  threshold. This is what obtaining both numbers from the reference costs.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def literal_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """Inclusive-pixel IoU, [A, 4] x [B, 4] int (x0, y0, x1, y1) -> [A, B] float64."""
    box_a = np.asarray(box_a).reshape(-1, 4)
    box_b = np.asarray(box_b).reshape(-1, 4)
    ious = np.zeros((len(box_a), len(box_b)), dtype=np.float64)
    a = box_a[:, None, :]
    b = box_b[None, :, :]
    min_x = np.maximum(a[..., 0], b[..., 0])
    min_y = np.maximum(a[..., 1], b[..., 1])
    max_x = np.minimum(a[..., 2], b[..., 2])
    max_y = np.minimum(a[..., 3], b[..., 3])
    inter = np.maximum(0, max_x - min_x + 1) * np.maximum(0, max_y - min_y + 1)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    denominator = area_a + area_b - inter
    ok = denominator > 0
    ious[ok] = inter[ok] / denominator[ok]
    return ious


def literal_resize_box(box: Sequence[int], image_size: Sequence[int], resize_size: Sequence[int]):
    """One box (x0, y0, x1, y1) from (W, H) to (W', H'): ``int(x * new / old)`` per coordinate."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = (float(v) for v in image_size)
    new_w, new_h = (float(v) for v in resize_size)
    return int(x0 * new_w / w), int(y0 * new_h / h), int(x1 * new_w / w), int(y1 * new_h / h)


def literal_normalize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Reference map post-processing: float64, bicubic resize to (H, W), NaN or constant -> 0,
    else min-max to [0, 1]."""
    cam = np.asarray(cam).astype(np.float64)
    cam = cv2.resize(cam, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    if np.isnan(cam).any():
        return np.zeros_like(cam)
    if cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def _box(contour: np.ndarray, width: int, height: int) -> list[int]:
    x, y, w, h = cv2.boundingRect(contour)
    return [x, y, min(x + w, width - 1), min(y + h, height - 1)]


def literal_boxes(scoremap: np.ndarray, thresholds: Sequence[float], multi_contour: bool):
    """Boxes of one rule at every threshold, one contour search per threshold (reference structure).

    Args:
        scoremap: [H, W] in [0, 1].
        thresholds: taus.
        multi_contour: True for all contours (MaxBoxAccV2), False for the largest one (MaxBoxAcc).

    Returns:
        One [K, 4] int array per threshold ([[0, 0, 0, 0]] where there is no contour).
    """
    height, width = scoremap.shape
    image = np.expand_dims((np.asarray(scoremap, dtype=np.float64) * 255).astype(np.uint8), 2)
    out = []
    for threshold in thresholds:
        _, binary = cv2.threshold(
            src=image, thresh=int(threshold * np.max(image)), maxval=255, type=cv2.THRESH_BINARY
        )
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append(np.asarray([[0, 0, 0, 0]]))
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        out.append(np.asarray([_box(c, width, height) for c in contours]))
    return out


def literal_boxes_both(scoremap: np.ndarray, thresholds: Sequence[float]):
    """Both rules at every threshold from one contour search per threshold.

    Returns:
        (multi, largest): lists with one [K, 4] int array (all contours) and one [1, 4] int array
        (largest contour) per threshold; [[0, 0, 0, 0]] where there is no contour.
    """
    height, width = scoremap.shape
    image = np.expand_dims((np.asarray(scoremap, dtype=np.float64) * 255).astype(np.uint8), 2)
    multi, largest = [], []
    for threshold in thresholds:
        _, binary = cv2.threshold(
            src=image, thresh=int(threshold * np.max(image)), maxval=255, type=cv2.THRESH_BINARY
        )
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            multi.append(np.asarray([[0, 0, 0, 0]]))
            largest.append(np.asarray([[0, 0, 0, 0]]))
            continue
        multi.append(np.asarray([_box(c, width, height) for c in contours]))
        largest.append(np.asarray([_box(max(contours, key=cv2.contourArea), width, height)]))
    return multi, largest


def _per_threshold_scores(boxes: list[np.ndarray], gt: np.ndarray, recompute: bool) -> np.ndarray:
    """Best IoU per threshold: max over the threshold's boxes of the max over GT boxes."""
    ious = literal_iou(np.concatenate(boxes, axis=0), gt)
    best_per_box = ious.max(1)
    scores = []
    idx = 0
    for group in boxes:
        if recompute:
            # The reference evaluates ious.max(1) again for every threshold; kept on purpose in
            # the reference-structure mode so that its cost is the reference's cost.
            scores.append(max(ious.max(1)[idx : idx + len(group)]))
        else:
            scores.append(max(best_per_box[idx : idx + len(group)]))
        idx += len(group)
    return np.asarray(scores)


def literal_box_counts(
    maps: Sequence[np.ndarray],
    gt_boxes_list: Sequence[np.ndarray],
    thresholds: Sequence[float],
    iou_thresholds: Sequence[int] = (30, 50, 70),
    reference_structure: bool = False,
) -> dict:
    """Per-threshold correct counts of a set of maps.

    Args:
        maps: N maps, each [H, W] in [0, 1].
        gt_boxes_list: N arrays [G, 4] int (x0, y0, x1, y1), map coordinates.
        thresholds: [T] taus.
        iou_thresholds: IoU thresholds in percent.
        reference_structure: False (default): both rules from one contour search per threshold,
            each box's best IoU computed once. True: the reference evaluator's own structure, one
            full run per rule (its ``multi_contour_eval`` flag) and its per-threshold IoU slicing,
            i.e. what obtaining MaxBoxAccV2 and MaxBoxAcc from the reference costs. Same counts.

    Returns:
        {"multi": {"30": [T ints], ...}, "largest": {"30": [T ints], ...}}, the ``box`` counts
        layout of :mod:`wsolbench.metrics`.
    """
    n_tau = len(thresholds)
    correct = {rule: {d: np.zeros(n_tau) for d in iou_thresholds} for rule in ("multi", "largest")}
    for scoremap, gt in zip(maps, gt_boxes_list, strict=True):
        gt = np.asarray(gt).reshape(-1, 4)
        if reference_structure:
            scores = {
                "multi": _per_threshold_scores(literal_boxes(scoremap, thresholds, True), gt, True),
                "largest": _per_threshold_scores(
                    literal_boxes(scoremap, thresholds, False), gt, True
                ),
            }
        else:
            multi, largest = literal_boxes_both(scoremap, thresholds)
            scores = {
                "multi": _per_threshold_scores(multi, gt, False),
                "largest": literal_iou(np.concatenate(largest, axis=0), gt).max(1),
            }
        for rule, rule_scores in scores.items():
            for d in iou_thresholds:
                correct[rule][d][np.where(rule_scores >= (d / 100))[0]] += 1
    return {
        rule: {str(d): [int(c) for c in counts[d]] for d in iou_thresholds}
        for rule, counts in correct.items()
    }


def literal_pxap(
    maps: Sequence[np.ndarray],
    foregrounds: Sequence[np.ndarray],
    ignores: Sequence[np.ndarray | None],
    thresholds: Sequence[float],
) -> float:
    """PxAP (percent) of a set of maps, with ``np.histogram`` per image and the reference's sums.

    Args:
        maps: N maps [H, W] in [0, 1].
        foregrounds: N [H, W] bool foreground masks.
        ignores: N [H, W] bool ignore masks or None.
        thresholds: [T] taus; bin edges are ``thresholds ++ [1, 2, 3]``.
    """
    edges = np.append(np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0])
    true_hist = np.zeros(len(edges) - 1, dtype=np.float64)
    false_hist = np.zeros(len(edges) - 1, dtype=np.float64)
    for scoremap, fg, ignore in zip(maps, foregrounds, ignores, strict=True):
        fg = np.asarray(fg, dtype=bool)
        ignore_mask = np.zeros_like(fg) if ignore is None else np.asarray(ignore, dtype=bool) & ~fg
        gt_mask = fg.astype(np.uint8) + 255 * ignore_mask.astype(np.uint8)
        true_hist += np.histogram(scoremap[gt_mask == 1], bins=edges)[0].astype(np.float64)
        false_hist += np.histogram(scoremap[gt_mask == 0], bins=edges)[0].astype(np.float64)
    tp = true_hist[::-1].cumsum()
    fn = true_hist.sum() - tp
    fp = false_hist[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise RuntimeError("No positive ground truth in the eval set.")
    if ((tp + fp) <= 0).all():
        raise RuntimeError("No positive prediction in the eval set.")
    non_zero = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[non_zero[1:]].sum()
    return float(auc * 100)
