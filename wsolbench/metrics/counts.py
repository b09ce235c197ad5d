"""The counts record of one split: all its counters in one, validated, merged, JSON-ready.

Counts record (one split; JSON-ready; ``merge`` is an elementwise sum)::

    {"n_images": int, "step": float, "iou_thresholds": [30, 50, 70],
     "box":  {"multi": {"30": [T ints], ...}, "largest": {"30": [T ints], ...},
              "top1_loc": [T ints], "top5_loc": [T ints]},   # top-k only with labels, IoU 0.5
     "cls":  {"n": int, "top1": int, "top5": int},           # only with labels
     "mask": {"fg_hist": [T + 2 ints], "bg_hist": [T + 2 ints]}}

It holds sufficient statistics: every metric of :mod:`wsolbench.metrics.policies` is computed from
it, under any threshold policy, without the maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wsolbench.metrics.counters import BoxCounter, ClsCounter, MaskCounter
from wsolbench.metrics.maps import step_of, threshold_grid

DEFAULT_IOU_THRESHOLDS = (30, 50, 70)


class SplitCounter:
    """All counts of one split: boxes, masks and classification, one :meth:`update` per image.

    The box and mask counters are created by the first image that brings boxes or masks; after
    that every image must bring the same kinds of annotation.
    """

    def __init__(self, thresholds: np.ndarray, iou_thresholds: Sequence[int] = (30, 50, 70)):
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.step = step_of(self.thresholds)
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
