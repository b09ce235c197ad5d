"""Checking the files a split names: every image and mask exists, decodes, and has its size.

Existence is cheap; decoding 50,000 ILSVRC images takes minutes, so callers may decode a sample
spread evenly over the split (:func:`spread`) and show progress.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from wsolbench.data.metadata.records import (
    IMAGE_IDS,
    IMAGE_SIZES,
    Defects,
    MaskRecord,
    MetadataError,
    SplitMetadata,
)


def mask_files(masks: dict[str, MaskRecord]) -> Iterator[tuple[str, str]]:
    """``(image id, path under the mask root)`` of every mask and ignore file of a split."""
    for image_id, record in masks.items():
        for mask_path in record.mask_paths:
            yield image_id, mask_path
        if record.ignore_path is not None:
            yield image_id, record.ignore_path


def spread(items: list, n: int | None) -> list:
    """``n`` items spread evenly over ``items`` (all of them when ``n`` is None or large)."""
    if n is None or n >= len(items):
        return list(items)
    step = (len(items) - 1) / max(n - 1, 1)
    return [items[round(i * step)] for i in range(n)]


def check_mask_files(
    defects: Defects,
    masks: dict[str, MaskRecord],
    mask_root: Path,
    sizes: dict[str, tuple[int, int]],
    decode_sample: int | None = None,
) -> None:
    """Record each mask or ignore file missing under ``mask_root``, and the first one that is not
    a mask (:func:`wsolbench.metrics.pxap.decode_mask`: undecodable, colour, not binary, or not
    of its image's size in ``sizes`` when given), decoding ``decode_sample`` files spread over the
    split (None decodes all).

    Decoding stops at the first bad file: a wrong mask root makes every file bad the same way, and
    one line naming the first says so.
    """
    from wsolbench.metrics.pxap import MaskError, decode_mask  # OpenCV: only for this check

    paths = list(mask_files(masks))
    decoded = set(spread(paths, decode_sample))
    for image_id, rel in paths:
        path = mask_root / rel
        if not path.is_file():
            defects.add(
                f"mask file {path} (of '{image_id}') does not exist; check mask_root or the path"
            )
        elif (image_id, rel) in decoded:
            try:
                decode_mask(path, sizes.get(image_id))
            except MaskError as exc:
                defects.add(str(exc))
                decoded = set()


def _decoded_size(path: Path) -> tuple[int, int] | None:
    """(w, h) of a fully decoded image, or None if neither PIL nor OpenCV can decode it."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except Exception:  # any decoder failure means "try the other decoder"
        pass
    import cv2

    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        return None
    return int(array.shape[1]), int(array.shape[0])


def verify_images(
    meta: SplitMetadata,
    image_root: Path,
    *,
    decode: bool,
    progress: bool,
    decode_sample: int | None = None,
) -> None:
    """The image part of :func:`check_images`; ``read_split`` runs it too."""
    defects = Defects(meta.split_dir)
    if not image_root.is_dir():
        raise MetadataError(
            f"image root {image_root} does not exist; pass the folder that image ids in "
            f"{meta.split_dir / IMAGE_IDS} are relative to"
        )
    ids = meta.image_ids
    decoded = set(spread(ids, decode_sample)) if decode else set()
    if progress:
        from wsolbench.util.progress import progress as progress_bar

        ids = progress_bar(ids, desc=f"checking images of {meta.split_dir.name}", unit="img")
    for image_id in ids:
        path = image_root / image_id
        if not path.is_file():
            defects.add(
                f"image {path} (id '{image_id}' in {meta.split_dir / IMAGE_IDS}) does not exist; "
                "check the image root or the id"
            )
            continue
        if image_id not in decoded:
            continue
        size = _decoded_size(path)
        if size is None:
            defects.add(
                f"image {path} (id '{image_id}') cannot be decoded by PIL or OpenCV; "
                "replace the file (it may be truncated)"
            )
        elif image_id in meta.sizes and size != meta.sizes[image_id]:
            w, h = meta.sizes[image_id]
            defects.add(
                f"image {path} is {size[0]}x{size[1]} but {IMAGE_SIZES} says {w}x{h}; "
                "fix image_sizes.txt (boxes are rescaled from it)"
            )
    defects.raise_if_any()


def check_images(
    meta: SplitMetadata,
    image_root: str | Path,
    *,
    decode: bool = True,
    progress: bool = False,
    decode_sample: int | None = None,
    mask_root: str | Path | None = None,
) -> None:
    """Check that every image of a split exists under ``image_root``, decodes, and has its size.

    Args:
        meta: the split to check.
        image_root: folder the image ids are relative to.
        decode: also decode images (PIL, falling back to OpenCV) and compare their (w, h) with
            ``meta.sizes``; without it only existence is checked.
        progress: show a progress bar (50,000 ILSVRC images take minutes to decode).
        decode_sample: decode only this many images spread over the split (every one exists
            still); None decodes all.
        mask_root: also check the split's mask files there (existence of all; for the same
            sample, that each is a mask of its image's size).

    Raises:
        MetadataError: listing missing, undecodable or mis-sized images and masks.
    """
    verify_images(
        meta, Path(image_root), decode=decode, progress=progress, decode_sample=decode_sample
    )
    if mask_root is not None and meta.masks is not None:
        defects = Defects(meta.split_dir)
        check_mask_files(
            defects, meta.masks, Path(mask_root), meta.sizes, decode_sample if decode else 0
        )
        defects.raise_if_any()
