"""Read, validate and write split metadata in the wsolevaluation format.

A prepared dataset root looks like this::

    <root>/metadata/<split>/image_ids.txt       path              evaluation order
    <root>/metadata/<split>/class_labels.txt    path,label        0-based class index
    <root>/metadata/<split>/image_sizes.txt     path,w,h          original size, pixels
    <root>/metadata/<split>/localization.txt    path,x0,y0,x1,y1  boxes, one line per box, or
                                 path,mask_path,ignore_path  masks, one line per instance
    <root>/metadata/<split>/mask_localization.txt   optional: masks of a set that also has boxes
    <root>/images/...     image ids are paths relative to this folder
    <root>/masks/...      mask paths are relative to this folder (mask sets)

These are the four files of the reference evaluator (Choe et al., CVPR 2020,
clovaai/wsolevaluation), read with the same field semantics; see ``shared/spec/protocol.md``,
"Data contract".

Decisions the reference leaves open, made here:

* Fields are split on ``,`` and surrounding white space (including a ``\\r`` of CRLF files) is
  stripped; blank lines are skipped. An id therefore cannot contain a comma.
* The localization format is detected per file from its first record: 5 fields are boxes, 3 fields
  are masks; a file mixing both is an error.
* Boxes are pixel-inclusive ``x0, y0, x1, y1`` with ``0 <= x0 <= x1 <= w``, ``0 <= y0 <= y1 <= h``.
  ``x1 == w`` (one past the last pixel column) is accepted, because boxes a user builds from
  ``x + width`` reach it and the evaluator copes (a GT box is only rescaled, never indexed);
  ``x1 > w`` is an error. The reference's own metadata never has ``x1 == w``: its CUB boxes are
  clipped to ``w - 1`` (see :mod:`wsolbench.data.cub`), and wsolbench's converters do the same.
* A mask record's ignore path sits on the first line of an image; later lines of that image leave it
  empty (or repeat it). An empty ignore path means "no ignore region" (``MaskRecord.ignore_path is
  None``); the reference crashes on it.
* Every image in ``image_ids.txt`` must have a label and, when ``localization.txt`` has records, at
  least one of them. ``image_sizes.txt`` is required (one line per image) when localization.txt
  holds boxes; otherwise it may be absent or empty (the reference's OpenImages metadata has none,
  its ILSVRC ``train`` ships an empty one), and then ``sizes`` is ``{}``. An absent or empty
  ``localization.txt`` makes a label-only split: ``boxes`` and ``masks`` are both ``None``.

Every defect is reported with the file, the line and the fix; all defects of a split are collected
and raised as one :class:`MetadataError` (the first :data:`MAX_REPORTED` of them), so a user can
fix a split in one pass.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_IDS = "image_ids.txt"
CLASS_LABELS = "class_labels.txt"
IMAGE_SIZES = "image_sizes.txt"
LOCALIZATION = "localization.txt"
MASK_LOCALIZATION = "mask_localization.txt"

#: How many defects one MetadataError lists before summarising the rest.
MAX_REPORTED = 20

_FORMATS = {
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
            after nearest-neighbour resizing, as the protocol reads them).
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


class _Defects:
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


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, stripped fields) for each non-blank line of a metadata file."""
    lineno = 0
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                yield lineno, [field.strip() for field in line.split(",")]
    except UnicodeDecodeError:
        raise MetadataError(
            f"{path} line {lineno + 1}: not UTF-8 text; metadata files are plain UTF-8 text"
        ) from None


def _nonneg_int(text: str) -> int | None:
    """Parse a non-negative decimal integer; None if ``text`` is not one."""
    # str.isdigit also accepts e.g. superscript digits; isascii rules those out.
    if text.isascii() and text.isdigit():
        return int(text)
    return None


def _check_fields(
    defects: _Defects, path: Path, lineno: int, fields: list[str], expected: int
) -> bool:
    if len(fields) != expected:
        defects.at(
            path,
            lineno,
            f"{len(fields)} comma-separated field(s), expected {expected} "
            f"({_FORMATS[path.name]}); an id cannot contain a comma",
        )
        return False
    if not fields[0]:
        defects.at(path, lineno, f"empty image id; each line is {_FORMATS[path.name]}")
        return False
    return True


def _read_keyed(
    defects: _Defects, path: Path, known: dict[str, int], expected_fields: int
) -> dict[str, tuple[int, list[str]]]:
    """Read a one-line-per-image file (class_labels / image_sizes): id -> (line, fields)."""
    out: dict[str, tuple[int, list[str]]] = {}
    for lineno, fields in _records(path):
        if not _check_fields(defects, path, lineno, fields, expected_fields):
            continue
        image_id = fields[0]
        if image_id in out:
            defects.at(
                path,
                lineno,
                f"duplicate id '{image_id}' (first on line {out[image_id][0]}); "
                "keep one line per image",
            )
            continue
        if not defects.known_id(path, lineno, image_id, known):
            continue
        out[image_id] = (lineno, fields)
    for image_id in known:
        if image_id not in out:
            defects.at(
                path.parent / IMAGE_IDS,
                known[image_id],
                f"id '{image_id}' has no line in {path.name}; add one ({_FORMATS[path.name]})",
            )
    return out


def _read_image_ids(defects: _Defects, path: Path) -> dict[str, int]:
    """id -> line number, in file order (dicts keep insertion order)."""
    ids: dict[str, int] = {}
    for lineno, fields in _records(path):
        if not _check_fields(defects, path, lineno, fields, 1):
            continue
        image_id = fields[0]
        if image_id in ids:
            defects.at(
                path,
                lineno,
                f"duplicate id '{image_id}' (first on line {ids[image_id]}); list each image once",
            )
            continue
        ids[image_id] = lineno
    return ids


def _read_labels(
    defects: _Defects, path: Path, known: dict[str, int], num_classes: int | None
) -> dict[str, int]:
    labels: dict[str, int] = {}
    limit = f" and < num_classes ({num_classes})" if num_classes is not None else ""
    for image_id, (lineno, fields) in _read_keyed(defects, path, known, 2).items():
        text = fields[1]
        value = _nonneg_int(text)
        if value is None and text.startswith("-") and _nonneg_int(text[1:]) is not None:
            defects.at(path, lineno, f"negative class index ({text}); labels are 0-based{limit}")
        elif value is None:
            defects.at(path, lineno, f"class index '{text}' is not an integer; labels are 0-based")
        elif num_classes is not None and value >= num_classes:
            defects.at(
                path,
                lineno,
                f"unknown class index ({value}); labels are 0-based and must be < num_classes "
                f"({num_classes}): check the dataset's class count or the label offset",
            )
        else:
            labels[image_id] = value
    return labels


def _read_sizes(defects: _Defects, path: Path, known: dict[str, int]) -> dict[str, tuple[int, int]]:
    sizes: dict[str, tuple[int, int]] = {}
    for image_id, (lineno, fields) in _read_keyed(defects, path, known, 3).items():
        w, h = _nonneg_int(fields[1]), _nonneg_int(fields[2])
        bad = [
            f"{name} ({text})"
            for name, text, value in (("w", fields[1], w), ("h", fields[2], h))
            if value is None or value == 0
        ]
        if bad:
            defects.at(
                path,
                lineno,
                f"{', '.join(bad)} is not a positive integer; sizes are the original image's "
                "width,height in pixels",
            )
            continue
        sizes[image_id] = (w, h)
    return sizes


def _first_record(path: Path) -> tuple[int, int] | None:
    """(line number, field count) of a file's first record (5 boxes, 3 masks); None if empty."""
    for lineno, fields in _records(path):
        return lineno, len(fields)
    return None


def _read_boxes(
    defects: _Defects,
    path: Path,
    known: dict[str, int],
    sizes: dict[str, tuple[int, int]],
) -> dict[str, np.ndarray]:
    rows: dict[str, list[tuple[int, int, int, int]]] = {}
    for lineno, fields in _records(path):
        if len(fields) == 3:
            defects.at(
                path,
                lineno,
                "a mask record (3 fields) in a box file (5 fields on the first line); "
                "localization.txt holds either boxes or masks: put masks in mask_localization.txt",
            )
            continue
        if not _check_fields(defects, path, lineno, fields, 5):
            continue
        image_id = fields[0]
        if not defects.known_id(path, lineno, image_id, known):
            continue
        coords = [_nonneg_int(t) for t in fields[1:]]
        bad = [
            f"{name} ({text})"
            for name, text, value in zip(("x0", "y0", "x1", "y1"), fields[1:], coords, strict=True)
            if value is None
        ]
        if bad:
            defects.at(
                path,
                lineno,
                f"{', '.join(bad)} is not a non-negative integer; boxes are integer pixel "
                "coordinates x0,y0,x1,y1",
            )
            continue
        x0, y0, x1, y1 = coords
        if x1 < x0 or y1 < y0:
            what = [f"x1 ({x1}) < x0 ({x0})"] if x1 < x0 else []
            what += [f"y1 ({y1}) < y0 ({y0})"] if y1 < y0 else []
            defects.at(path, lineno, f"{'; '.join(what)}; boxes are x0,y0,x1,y1 (not x,y,w,h)")
            continue
        if image_id in sizes:
            w, h = sizes[image_id]
            if x1 > w or y1 > h:
                defects.at(
                    path,
                    lineno,
                    f"box ({x0},{y0},{x1},{y1}) lies outside the {w}x{h} image "
                    f"(needs x1 <= {w}, y1 <= {h}); fix the box or the size in {IMAGE_SIZES}",
                )
                continue
        rows.setdefault(image_id, []).append((x0, y0, x1, y1))
    _require_every_image(defects, path, known, rows, "box")
    return {i: np.asarray(rows[i], dtype=np.int64).reshape(-1, 4) for i in known if i in rows}


def _read_masks(defects: _Defects, path: Path, known: dict[str, int]) -> dict[str, MaskRecord]:
    records: dict[str, MaskRecord] = {}
    first_line: dict[str, int] = {}
    for lineno, fields in _records(path):
        if len(fields) == 5:
            defects.at(
                path,
                lineno,
                "a box record (5 fields) in a mask file (3 fields on the first line); a "
                "localization file holds either boxes or masks, not both",
            )
            continue
        if not _check_fields(defects, path, lineno, fields, 3):
            continue
        image_id, mask_path, ignore = fields
        if not defects.known_id(path, lineno, image_id, known):
            continue
        if not mask_path:
            defects.at(path, lineno, f"empty mask path for '{image_id}'; give a mask file")
            continue
        record = records.get(image_id)
        if record is None:
            records[image_id] = MaskRecord([mask_path], ignore or None)
            first_line[image_id] = lineno
            continue
        if ignore and ignore != record.ignore_path:
            defects.at(
                path,
                lineno,
                f"ignore path '{ignore}' differs from the one on line {first_line[image_id]} "
                f"('{record.ignore_path or ''}'); an image has one ignore mask, given on its "
                "first line (leave the field empty on later lines)",
            )
            continue
        record.mask_paths.append(mask_path)
    _require_every_image(defects, path, known, records, "mask")
    return {i: records[i] for i in known if i in records}


def _require_every_image(
    defects: _Defects, path: Path, known: dict[str, int], found: dict, what: str
) -> None:
    for image_id, lineno in known.items():
        if image_id not in found:
            defects.at(
                path.parent / IMAGE_IDS,
                lineno,
                f"id '{image_id}' has no {what} in {path.name}; add at least one line for it",
            )


def _mask_paths(masks: dict[str, MaskRecord]) -> Iterator[tuple[str, str]]:
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


def _check_masks(
    defects: _Defects,
    masks: dict[str, MaskRecord],
    mask_root: Path,
    decode_sample: int | None = None,
) -> None:
    import cv2  # only needed for this optional check

    paths = list(_mask_paths(masks))
    decoded = set(spread(paths, decode_sample))
    for image_id, rel in paths:
        path = mask_root / rel
        if not path.is_file():
            defects.add(
                f"mask file {path} (of '{image_id}') does not exist; check mask_root or the path"
            )
        elif (image_id, rel) in decoded and cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) is None:
            defects.add(
                f"mask file {path} (of '{image_id}') cannot be decoded as a grayscale image; "
                "re-export it as PNG"
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
        mask_root: when given, every mask and ignore file must exist under it and decode as
            grayscale.

    Returns:
        The split's metadata, image ids in file order.

    Raises:
        MetadataError: listing every defect found (file, line, value and fix).
    """
    split_dir = Path(split_dir)
    defects = _Defects(split_dir)
    if not split_dir.is_dir():
        raise MetadataError(
            f"{split_dir}: split folder does not exist; a split folder holds {IMAGE_IDS}, "
            f"{CLASS_LABELS}, {IMAGE_SIZES} and {LOCALIZATION} "
            "(run `wsolbench prepare` to make one)"
        )
    loc = split_dir / LOCALIZATION
    first = _first_record(loc) if loc.is_file() else None
    n_fields = first[1] if first else None
    # Sizes only matter for rescaling boxes: the reference's mask sets (OpenImages) and its ILSVRC
    # train split carry no (or an empty) image_sizes.txt.
    sizes_needed = n_fields == 5
    sizes_file = split_dir / IMAGE_SIZES
    sizes_given = sizes_file.is_file() and (sizes_needed or _first_record(sizes_file) is not None)
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

    known = _read_image_ids(defects, split_dir / IMAGE_IDS)
    if not known and not defects.count:
        defects.add(f"{split_dir / IMAGE_IDS}: no image ids; list one image path per line")
    labels = _read_labels(defects, split_dir / CLASS_LABELS, known, num_classes)
    sizes = _read_sizes(defects, sizes_file, known) if sizes_given else {}

    boxes: dict[str, np.ndarray] | None = None
    masks: dict[str, MaskRecord] | None = None
    if n_fields == 3:
        masks = _read_masks(defects, loc, known)
    elif n_fields == 5:
        boxes = _read_boxes(defects, loc, known, sizes)
    elif n_fields is not None:
        defects.at(
            loc,
            first[0],
            f"{n_fields} comma-separated fields; localization records are {_FORMATS[LOCALIZATION]}",
        )
    extra = split_dir / MASK_LOCALIZATION
    if extra.is_file():
        if masks is not None:
            defects.add(
                f"{extra}: {LOCALIZATION} already holds masks; {MASK_LOCALIZATION} is only for "
                "sets whose localization.txt holds boxes: delete one of the two"
            )
        elif (extra_first := _first_record(extra)) is None:
            pass  # an empty file holds no masks, like an absent one
        elif extra_first[1] != 3:
            defects.at(
                extra,
                extra_first[0],
                f"{extra_first[1]} comma-separated fields, not a mask record; each line is "
                f"{_FORMATS[MASK_LOCALIZATION]}",
            )
        else:
            masks = _read_masks(defects, extra, known)

    if mask_root is not None and masks is not None:
        _check_masks(defects, masks, Path(mask_root))
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
        _verify_images(meta, root, decode=check_images, progress=False)
    return meta


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


def _verify_images(
    meta: SplitMetadata,
    image_root: Path,
    *,
    decode: bool,
    progress: bool,
    decode_sample: int | None = None,
) -> None:
    defects = _Defects(meta.split_dir)
    if not image_root.is_dir():
        raise MetadataError(
            f"image root {image_root} does not exist; pass the folder that image ids in "
            f"{meta.split_dir / IMAGE_IDS} are relative to"
        )
    ids = meta.image_ids
    decoded = set(spread(ids, decode_sample)) if decode else set()
    if progress:
        from wsolbench.progress import progress as progress_bar

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
        mask_root: also check the split's mask files there (existence of all, decoding of the
            same sample).

    Raises:
        MetadataError: listing missing, undecodable or mis-sized images and masks.
    """
    _verify_images(
        meta, Path(image_root), decode=decode, progress=progress, decode_sample=decode_sample
    )
    if mask_root is not None and meta.masks is not None:
        defects = _Defects(meta.split_dir)
        _check_masks(defects, meta.masks, Path(mask_root), decode_sample if decode else 0)
        defects.raise_if_any()


def _validate_for_write(split_dir: Path, meta: SplitMetadata) -> None:
    defects = _Defects(split_dir)
    seen: set[str] = set()
    # A split without boxes may carry no sizes at all (written as an empty image_sizes.txt).
    need_sizes = meta.boxes is not None or bool(meta.sizes)
    for image_id in meta.image_ids:
        if not image_id or "," in image_id or "\n" in image_id or image_id != image_id.strip():
            defects.add(
                f"cannot write id {image_id!r} to {split_dir}: ids must be non-empty, without "
                "commas, newlines or surrounding spaces"
            )
        if image_id in seen:
            defects.add(f"cannot write {split_dir}: id '{image_id}' appears twice in image_ids")
        seen.add(image_id)
        if image_id not in meta.labels:
            defects.add(f"cannot write {split_dir}: id '{image_id}' has no label")
        if need_sizes and image_id not in meta.sizes:
            defects.add(f"cannot write {split_dir}: id '{image_id}' has no size")
        if meta.boxes is not None:
            b = meta.boxes.get(image_id)
            if b is None or np.asarray(b).reshape(-1, 4).shape[0] == 0:
                defects.add(f"cannot write {split_dir}: id '{image_id}' has no box")
        if meta.masks is not None:
            m = meta.masks.get(image_id)
            if m is None or not m.mask_paths:
                defects.add(f"cannot write {split_dir}: id '{image_id}' has no mask")
    defects.raise_if_any()


def _mask_lines(meta: SplitMetadata) -> list[str]:
    lines = []
    for image_id in meta.image_ids:
        record = meta.masks[image_id]
        for k, mask_path in enumerate(record.mask_paths):
            # The ignore path goes on the first line only, as the reference expects.
            ignore = (record.ignore_path or "") if k == 0 else ""
            lines.append(f"{image_id},{mask_path},{ignore}\n")
    return lines


def write_split(split_dir: str | Path, meta: SplitMetadata) -> None:
    """Write a split folder atomically (a temporary sibling folder renamed into place).

    An existing ``split_dir`` is replaced as a whole (files not written here are not kept).
    ``localization.txt`` holds the boxes when ``meta.boxes`` is set, else the masks; when both are
    set, the masks go to ``mask_localization.txt``. Neither set: no localization file (a label-only
    split). ``meta.sizes`` may be ``{}`` when there are no boxes: image_sizes.txt is then written
    empty, as in the reference's ILSVRC ``train``. ``meta.split_dir`` is ignored.

    Raises:
        MetadataError: when an image lacks a label, size, box or mask, or an id cannot be written.
    """
    split_dir = Path(split_dir)
    _validate_for_write(split_dir, meta)
    files: dict[str, list[str]] = {
        IMAGE_IDS: [f"{i}\n" for i in meta.image_ids],
        CLASS_LABELS: [f"{i},{int(meta.labels[i])}\n" for i in meta.image_ids],
        IMAGE_SIZES: [
            f"{i},{int(meta.sizes[i][0])},{int(meta.sizes[i][1])}\n"
            for i in meta.image_ids
            if meta.sizes
        ],
    }
    if meta.boxes is not None:
        files[LOCALIZATION] = [
            f"{i},{x0},{y0},{x1},{y1}\n"
            for i in meta.image_ids
            for x0, y0, x1, y1 in np.asarray(meta.boxes[i], dtype=np.int64).reshape(-1, 4).tolist()
        ]
    if meta.masks is not None:
        files[MASK_LOCALIZATION if meta.boxes is not None else LOCALIZATION] = _mask_lines(meta)

    split_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split_dir.name}.", dir=split_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a dataset folder is meant to be shared
        for name, lines in files.items():
            with open(tmp / name, "w", encoding="utf-8", newline="\n") as f:
                f.writelines(lines)
        if split_dir.exists():
            # rename() cannot replace a non-empty folder: move the old one aside first.
            old = Path(tempfile.mkdtemp(prefix=f".{split_dir.name}.old.", dir=split_dir.parent))
            os.rename(split_dir, old / split_dir.name)
            os.rename(tmp, split_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, split_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("wrote %d images to %s", len(meta.image_ids), split_dir)


def link_dir(link: str | Path, target: str | Path) -> None:
    """Make ``link`` a symbolic link to the folder ``target`` (absolute), replacing an older link.

    Converters use it to expose an original release's images under ``<root>/images`` without
    copying them.

    Raises:
        MetadataError: when ``target`` is not a folder, or ``link`` exists and is not a symlink (a
            real folder is never deleted).
    """
    link, target = Path(link), Path(target).resolve()
    if not target.is_dir():
        raise MetadataError(f"{target} is not a folder; cannot link {link} to it")
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise MetadataError(
            f"{link} exists and is not a symbolic link; remove it (or pick another output folder) "
            f"so that it can point to {target}"
        )
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
