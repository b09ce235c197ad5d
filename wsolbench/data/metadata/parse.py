"""Parsing one metadata file at a time into records, collecting every defect with its line.

Each reader takes the split's :class:`~wsolbench.data.metadata.records.Defects`, the file and the
image ids of ``image_ids.txt`` (id -> line), and returns what the file holds for those ids; a
defect is recorded (file, line, value, fix) and the line skipped, so that one pass finds them all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wsolbench.data.metadata.records import (
    FORMATS,
    IMAGE_IDS,
    IMAGE_SIZES,
    Defects,
    MaskRecord,
    MetadataError,
)
from wsolbench.util.text_files import first_non_utf8_line


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based line number, stripped fields) for each non-blank line of a metadata file.

    A UTF-8 byte order mark at the start of the file (spreadsheets and some Windows editors write
    one) is dropped: it would otherwise become part of the first id.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                yield lineno, [field.strip() for field in line.split(",")]
    except UnicodeDecodeError:
        # the decoder reads ahead of the lines handed out: find the line that holds the byte
        raise MetadataError(
            f"{path} line {first_non_utf8_line(path)}: not UTF-8 text; metadata files are "
            "plain UTF-8 text"
        ) from None


def _nonneg_int(text: str) -> int | None:
    """Parse a non-negative decimal integer; None if ``text`` is not one."""
    # str.isdigit also accepts e.g. superscript digits; isascii rules those out.
    if text.isascii() and text.isdigit():
        return int(text)
    return None


def _check_fields(
    defects: Defects, path: Path, lineno: int, fields: list[str], expected: int
) -> bool:
    if len(fields) != expected:
        defects.at(
            path,
            lineno,
            f"{len(fields)} comma-separated field(s), expected {expected} "
            f"({FORMATS[path.name]}); an id cannot contain a comma",
        )
        return False
    if not fields[0]:
        defects.at(path, lineno, f"empty image id; each line is {FORMATS[path.name]}")
        return False
    return True


def _read_keyed(
    defects: Defects, path: Path, known: dict[str, int], expected_fields: int
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
                f"id '{image_id}' has no line in {path.name}; add one ({FORMATS[path.name]})",
            )
    return out


def count_lines(path: Path) -> int:
    """The number of non-blank lines of a metadata file, unchecked (0 if it cannot be read):
    to size work before the file is read with its checks."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    return sum(1 for line in data.splitlines() if line.strip())


def read_image_ids(defects: Defects, path: Path) -> dict[str, int]:
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


def read_labels(
    defects: Defects, path: Path, known: dict[str, int], num_classes: int | None
) -> dict[str, int]:
    """id -> 0-based class index from class_labels.txt (below ``num_classes`` when given)."""
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


def read_sizes(defects: Defects, path: Path, known: dict[str, int]) -> dict[str, tuple[int, int]]:
    """id -> (w, h) of the original image from image_sizes.txt, positive integers."""
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


def first_record(path: Path) -> tuple[int, int] | None:
    """(line number, field count) of a file's first record (5 boxes, 3 masks); None if empty."""
    for lineno, fields in _records(path):
        return lineno, len(fields)
    return None


def read_boxes(
    defects: Defects,
    path: Path,
    known: dict[str, int],
    sizes: dict[str, tuple[int, int]],
) -> dict[str, np.ndarray]:
    """id -> [G, 4] int64 boxes (x0, y0, x1, y1), G >= 1 per known id, inside ``sizes``."""
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


def read_masks(defects: Defects, path: Path, known: dict[str, int]) -> dict[str, MaskRecord]:
    """id -> its :class:`MaskRecord` (>= 1 line per known id, one ignore path per image; an empty
    mask path adds no mask, so an image with only empty ones is all background)."""
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
        # An empty mask path adds no foreground: `id,,` alone is an all-background image (a
        # CAMELYON normal patch in LIVIA's histology splits).
        masks = [mask_path] if mask_path else []
        record = records.get(image_id)
        if record is None:
            records[image_id] = MaskRecord(masks, ignore or None)
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
        record.mask_paths.extend(masks)
    _require_every_image(defects, path, known, records, "mask record")
    return {i: records[i] for i in known if i in records}


def _require_every_image(
    defects: Defects, path: Path, known: dict[str, int], found: dict, what: str
) -> None:
    for image_id, lineno in known.items():
        if image_id not in found:
            defects.at(
                path.parent / IMAGE_IDS,
                lineno,
                f"id '{image_id}' has no {what} in {path.name}; add at least one line for it",
            )


#: The format of a predictions file (``evaluate-maps --predictions``), one line per image.
PREDICTIONS_FORMAT = "path,class[,class...] (predicted class indices, best first)"


def read_predictions(
    path: Path, image_ids: list[str], classes_in_split: int
) -> dict[str, list[int]]:
    """id -> predicted class indices, best first, from a predictions file: one line per image of
    ``image_ids``, :data:`PREDICTIONS_FORMAT` (Top-1 reads the first class, Top-5 the first
    five). Every line gives at least five, or all ``classes_in_split`` when fewer: a line with
    only the best class would make Top-5 a copy of Top-1, reported as if measured.

    Raises:
        MetadataError: every defect, each with its line and the fix.
    """
    need = min(5, classes_in_split)
    defects = Defects(path)
    known = set(image_ids)
    out: dict[str, list[int]] = {}
    first_line: dict[str, int] = {}
    for lineno, fields in _records(path):
        if len(fields) < 2 or not fields[0]:
            defects.at(path, lineno, f"expected {PREDICTIONS_FORMAT}")
            continue
        image_id = fields[0]
        if image_id in first_line:
            defects.at(
                path,
                lineno,
                f"duplicate id '{image_id}' (first on line {first_line[image_id]}); "
                "keep one line per image",
            )
            continue
        first_line[image_id] = lineno
        if image_id not in known:
            defects.at(path, lineno, f"id '{image_id}' is not in the split; delete this line")
            continue
        classes = [_nonneg_int(text) for text in fields[1:]]
        bad = [text for text, value in zip(fields[1:], classes, strict=True) if value is None]
        if bad:
            defects.at(
                path,
                lineno,
                f"class '{bad[0]}' is not a non-negative integer; classes are 0-based indices, "
                "best first",
            )
            continue
        if len(classes) < need:
            defects.at(
                path,
                lineno,
                f"{len(classes)} class{'es' if len(classes) > 1 else ''}; Top-5 reads the {need} "
                f"best (the split has {classes_in_split} classes): give {need} or more, best first",
            )
            continue
        out[image_id] = classes
    missing = [image_id for image_id in image_ids if image_id not in first_line]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        defects.add(
            f"{path}: no line for id '{missing[0]}'{more}; add one line per image of the split "
            f"({PREDICTIONS_FORMAT})"
        )
    defects.raise_if_any()
    return out
