"""Reading a split folder: which files it holds, in which format, every record checked.

:func:`read_split` applies the rules of :mod:`wsolbench.data.metadata` (the wsolevaluation format
and the decisions the reference leaves open) and raises every defect of the split at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wsolbench.data.metadata.files import check_mask_files, verify_images
from wsolbench.data.metadata.parse import (
    first_record,
    read_boxes,
    read_image_ids,
    read_labels,
    read_masks,
    read_sizes,
)
from wsolbench.data.metadata.records import (
    CLASS_LABELS,
    FORMATS,
    IMAGE_IDS,
    IMAGE_SIZES,
    LOCALIZATION,
    MASK_LOCALIZATION,
    Defects,
    MaskRecord,
    MetadataError,
    SplitMetadata,
)


def read_split(
    split_dir: str | Path,
    *,
    num_classes: int | None = None,
    image_root: str | Path | None = None,
    check_images: bool = False,
    mask_root: str | Path | None = None,
) -> SplitMetadata:
    """Read and validate one split folder.

    Args:
        split_dir: folder holding image_ids.txt, class_labels.txt, and (except for label-only
            splits) localization.txt; image_sizes.txt (required with boxes); optionally
            mask_localization.txt.
        num_classes: when given, labels must lie in [0, num_classes).
        image_root: when given, every image file must exist under it.
        check_images: also decode every image (PIL, else OpenCV) and compare its size with
            image_sizes.txt. Without ``image_root`` the root defaults to ``split_dir/../../images``
            (the prepared-dataset layout).
        mask_root: when given, every mask and ignore file must exist under it and be a mask
            (:func:`wsolbench.metrics.pxap.decode_mask`) of its image's size.

    Returns:
        The split's metadata, image ids in file order.

    Raises:
        MetadataError: listing every defect found (file, line, value and fix).
    """
    split_dir = Path(split_dir)
    defects = Defects(split_dir)
    if not split_dir.is_dir():
        raise MetadataError(
            f"{split_dir}: split folder does not exist; a split folder holds {IMAGE_IDS}, "
            f"{CLASS_LABELS}, {IMAGE_SIZES} and {LOCALIZATION} "
            "(run `wsolbench prepare` to make one)"
        )
    loc = split_dir / LOCALIZATION
    first = first_record(loc) if loc.is_file() else None
    n_fields = first[1] if first else None
    # Sizes only matter for rescaling boxes: the reference's mask sets (OpenImages) and its ILSVRC
    # train split carry no (or an empty) image_sizes.txt.
    sizes_needed = n_fields == 5
    sizes_file = split_dir / IMAGE_SIZES
    sizes_given = sizes_file.is_file() and (sizes_needed or first_record(sizes_file) is not None)
    missing = [name for name in (IMAGE_IDS, CLASS_LABELS) if not (split_dir / name).is_file()]
    if sizes_needed and not sizes_file.is_file():
        missing.append(IMAGE_SIZES)
    if missing:
        raise MetadataError(
            f"{split_dir}: missing {', '.join(missing)}; a split folder must contain "
            f"{IMAGE_IDS} and {CLASS_LABELS}, plus {LOCALIZATION} and {IMAGE_SIZES} for a split "
            "with boxes (or a mask-style localization.txt), in the wsolevaluation format "
            "(run `wsolbench prepare` to make one)"
        )

    known = read_image_ids(defects, split_dir / IMAGE_IDS)
    if not known and not defects.count:
        defects.add(f"{split_dir / IMAGE_IDS}: no image ids; list one image path per line")
    labels = read_labels(defects, split_dir / CLASS_LABELS, known, num_classes)
    sizes = read_sizes(defects, sizes_file, known) if sizes_given else {}

    boxes: dict[str, np.ndarray] | None = None
    masks: dict[str, MaskRecord] | None = None
    if n_fields == 3:
        masks = read_masks(defects, loc, known)
    elif n_fields == 5:
        boxes = read_boxes(defects, loc, known, sizes)
    elif n_fields is not None:
        defects.at(
            loc,
            first[0],
            f"{n_fields} comma-separated fields; localization records are {FORMATS[LOCALIZATION]}",
        )
    extra = split_dir / MASK_LOCALIZATION
    if extra.is_file():
        if masks is not None:
            defects.add(
                f"{extra}: {LOCALIZATION} already holds masks; {MASK_LOCALIZATION} is only for "
                "sets whose localization.txt holds boxes: delete one of the two"
            )
        elif (extra_first := first_record(extra)) is None:
            pass  # an empty file holds no masks, like an absent one
        elif extra_first[1] != 3:
            defects.at(
                extra,
                extra_first[0],
                f"{extra_first[1]} comma-separated fields, not a mask record; each line is "
                f"{FORMATS[MASK_LOCALIZATION]}",
            )
        else:
            masks = read_masks(defects, extra, known)

    if mask_root is not None and masks is not None:
        check_mask_files(defects, masks, Path(mask_root), sizes)
    defects.raise_if_any()

    meta = SplitMetadata(
        split_dir=split_dir,
        image_ids=list(known),
        labels=labels,
        sizes=sizes,
        boxes=boxes,
        masks=masks,
    )
    if check_images or image_root is not None:
        root = Path(image_root) if image_root is not None else split_dir.parent.parent / "images"
        verify_images(meta, root, decode=check_images, progress=False)
    return meta
