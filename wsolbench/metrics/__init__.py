"""The WSOL evaluation protocol: map -> boxes, IoU, per-threshold counters, PxAP, policies.

numpy, OpenCV and numba only (no torch), so results can be recomputed anywhere. The semantics are
those of ``shared/spec/protocol.md`` and reproduce the reference evaluator of Choe et al. (CVPR
2020, clovaai/wsolevaluation) bit for bit: the same per-threshold correct counts on the same maps.
One idea per module, each importing only those above it in this list:

- :mod:`~wsolbench.metrics.maps`: map post-processing (threshold grid, normalization, checks);
- :mod:`~wsolbench.metrics.boxes`: box extraction per threshold, GT box rescaling, IoU;
- :mod:`~wsolbench.metrics.pixel_order`, :mod:`~wsolbench.metrics.sweeps`,
  :mod:`~wsolbench.metrics.level_sets`: every level's box scores without tracing contours (the
  flood and the pixels by value, the sweeps over them, one map's scores; numba, imported on
  first use);
- :mod:`~wsolbench.metrics.counters`: streaming box, classification and mask counters;
- :mod:`~wsolbench.metrics.pxap`: PxAP from the mask histograms, reading GT masks;
- :mod:`~wsolbench.metrics.overlap`: Dice FG / BG, mIoU and the TP / FN / TN / FP rates per
  threshold, from the same histograms;
- :mod:`~wsolbench.metrics.counts`: the counts record of a split (validated, merged);
- :mod:`~wsolbench.metrics.policies`: threshold policies, counts record -> metrics;
- :mod:`~wsolbench.metrics.literal`: the literal per-threshold oracle the tests hold them to.
"""

from wsolbench.metrics.boxes import box_iou, boxes_from_map, rescale_boxes
from wsolbench.metrics.counters import GT_KNOWN_IOU, BoxCounter, ClsCounter, MaskCounter
from wsolbench.metrics.counts import (
    DEFAULT_IOU_THRESHOLDS,
    SplitCounter,
    check_counts,
    merge_counts,
)
from wsolbench.metrics.maps import check_map, normalize_map, threshold_grid
from wsolbench.metrics.policies import V2_IOU_THRESHOLDS, parse_policy, summarize
from wsolbench.metrics.pxap import pxap, read_mask

__all__ = [
    "DEFAULT_IOU_THRESHOLDS",
    "GT_KNOWN_IOU",
    "V2_IOU_THRESHOLDS",
    "BoxCounter",
    "ClsCounter",
    "MaskCounter",
    "SplitCounter",
    "box_iou",
    "boxes_from_map",
    "check_counts",
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
