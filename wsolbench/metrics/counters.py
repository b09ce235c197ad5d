"""Streaming per-threshold counters of one image stream: boxes, classification, mask histograms.

Each counter adds one image at a time (memory constant in the image count), merges with another
counter of the same layout (e.g. from another process), and converts to and from its sections of
the JSON counts record (:mod:`wsolbench.metrics.counts` has the layout): :class:`BoxCounter` the
``box`` curves (MaxBoxAccV2, MaxBoxAcc / GT-known, Top-k Loc), :class:`ClsCounter` the ``cls``
counts, :class:`MaskCounter` the ``mask`` histograms PxAP is computed from.

Box scores come from :mod:`wsolbench.metrics.level_sets`, not from contour tracing: it derives every
level's contour boxes, the largest contour and their IoU with the ground truth from two union-find
sweeps over the pixels sorted by value, and reproduces the reference evaluator's per-threshold
correct counts bit for bit (``tests/test_metrics_equivalence.py`` checks them against the literal
per-threshold implementation, :mod:`wsolbench.metrics.literal`, on thousands of maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsolbench.metrics.maps import check_map, quantize, step_of, threshold_grid

# GT-known Loc, MaxBoxAcc (V1) and Top-k Loc are defined at IoU 0.5.
GT_KNOWN_IOU = 50


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
        self.step = step_of(self.thresholds)
        ious = [int(d) for d in iou_thresholds]
        if not ious or any(not 0 < d <= 100 for d in ious) or len(set(ious)) != len(ious):
            raise ValueError(
                f"IoU thresholds must be distinct integers in (0, 100] (percent); got {ious}"
            )
        self.iou_thresholds = ious
        self._fractions = np.divide(ious, 100)[:, None]  # [D, 1]: d / 100, as floats
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
            What this image added (:mod:`wsolbench.results.per_image` keeps it): ``multi`` and
            ``largest``, bool [len(iou_thresholds), T], whether its best box reaches each IoU
            threshold at each tau under each rule; with class predictions ``top1`` and
            ``top5`` (bool).
        """
        from wsolbench.metrics import level_sets  # numba: compiled or loaded on first use

        u = level_sets.quantized_unit_map(scoremap)  # checked and quantized in one pass
        if u is None:  # not a float map in [0, 1]: check_map names what is wrong, or it is one
            check_map(scoremap, "scoremap")  # of another dtype (float16, int, bool)
            u = quantize(scoremap)
        gt = _check_gt_boxes(gt_boxes)
        if (label is None) != (topk is None):
            raise ValueError("give both label and topk (the method classifies) or neither")
        # Integer threshold of each tau: float64 product as in the reference, truncated like int().
        k = (self.thresholds * float(u.max())).astype(np.int64)
        # Only comparisons with the IoU thresholds are kept: scores below the lowest need not
        # be exact.
        multi_score, largest_score = level_sets.threshold_scores(
            u, gt, k, at_least=min(self.iou_thresholds) / 100
        )
        with_cls = self._check_cls_mode(label, topk)  # only now: a failed update changes nothing
        outcome = {
            "multi": multi_score >= self._fractions,
            "largest": largest_score >= self._fractions,
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
        self.step = step_of(self.thresholds)
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
