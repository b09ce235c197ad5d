"""Former home of :mod:`wsolbench.metrics.literal` (the literal protocol), still importable."""

from wsolbench.metrics.literal import (
    literal_box_counts,
    literal_boxes,
    literal_boxes_both,
    literal_iou,
    literal_normalize,
    literal_pxap,
    literal_resize_box,
)

__all__ = [
    "literal_box_counts",
    "literal_boxes",
    "literal_boxes_both",
    "literal_iou",
    "literal_normalize",
    "literal_pxap",
    "literal_resize_box",
]
