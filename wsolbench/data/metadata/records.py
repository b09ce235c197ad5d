"""The records of a split's metadata: its files, SplitMetadata, MaskRecord, and defect reports.

The layout and field rules are those of :mod:`wsolbench.data.metadata`; every defect a reader or a
writer finds goes to a :class:`Defects` list, raised as one :class:`MetadataError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_IDS = "image_ids.txt"
CLASS_LABELS = "class_labels.txt"
IMAGE_SIZES = "image_sizes.txt"
LOCALIZATION = "localization.txt"
MASK_LOCALIZATION = "mask_localization.txt"

#: How many defects one MetadataError lists before summarising the rest.
MAX_REPORTED = 20

#: The record format of each file, as the error messages name it.
FORMATS = {
    IMAGE_IDS: "path",
    CLASS_LABELS: "path,label",
    IMAGE_SIZES: "path,w,h",
    LOCALIZATION: "path,x0,y0,x1,y1 (boxes) or path,mask_path,ignore_path (masks)",
    MASK_LOCALIZATION: "path,mask_path,ignore_path",
}


class MetadataError(ValueError):
    """Invalid metadata. The message names the file (and line), the offending value and the fix."""


@dataclass
class MaskRecord:
    """The ground-truth masks of one image.

    Attributes:
        mask_paths: one mask file per instance, relative to the mask root (grayscale; on iff > 0.5
            after nearest-neighbour resizing, as the protocol reads them). Empty for an image
            without foreground (its record's mask field is empty: every pixel is background).
        ignore_path: the image's ignore-region mask relative to the mask root, or ``None`` when the
            record's ignore field is empty (no ignore region).
    """

    mask_paths: list[str]
    ignore_path: str | None


@dataclass
class SplitMetadata:
    """All metadata of one split, keyed by image id (a path relative to the image root).

    Attributes:
        split_dir: the folder it was read from (ignored by :func:`write_split`).
        image_ids: evaluation order.
        labels: id -> 0-based class index.
        sizes: id -> (w, h) of the original image, pixels; ``{}`` for a split without boxes whose
            image_sizes.txt is absent or empty.
        boxes: id -> [G, 4] int64 array of (x0, y0, x1, y1), pixel-inclusive, G >= 1; ``None`` for
            mask sets and label-only splits.
        masks: id -> :class:`MaskRecord`; ``None`` for box-only sets and label-only splits.
    """

    split_dir: Path
    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]]
    boxes: dict[str, np.ndarray] | None = None
    masks: dict[str, MaskRecord] | None = None

    def __len__(self) -> int:
        return len(self.image_ids)

    def select(self, image_ids: list[str]) -> SplitMetadata:
        """The records of ``image_ids`` (ids of this split) alone, in that order."""

        def subset(records: dict | None) -> dict | None:
            if records is None:
                return None
            return {i: records[i] for i in image_ids if i in records}

        return SplitMetadata(
            self.split_dir,
            list(image_ids),
            subset(self.labels),
            subset(self.sizes),
            subset(self.boxes),
            subset(self.masks),
        )


class Defects:
    """Collects defects so that one error lists them all (up to MAX_REPORTED)."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.messages: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < MAX_REPORTED:
            self.messages.append(message)

    def at(self, path: Path, lineno: int, message: str) -> None:
        self.add(f"{path} line {lineno}: {message}")

    def known_id(self, path: Path, lineno: int, image_id: str, known) -> bool:
        """True when ``image_id`` is listed in image_ids.txt; otherwise records the defect."""
        if image_id in known:
            return True
        self.at(
            path, lineno, f"id '{image_id}' is not in {IMAGE_IDS}; add it there or delete this line"
        )
        return False

    def raise_if_any(self) -> None:
        if not self.count:
            return
        text = "\n  ".join(self.messages)
        more = self.count - len(self.messages)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        header = f"{self.count} defect(s) in {self.where}:\n  " if self.count > 1 else ""
        raise MetadataError(f"{header}{text}{tail}")
