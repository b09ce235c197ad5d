"""Convert ILSVRC 2012 validation annotations into wsolevaluation metadata (`prepare ilsvrc`).

The reference's ``test`` split of ILSVRC is the 50,000-image ILSVRC 2012 validation set. Inputs:

* Validation XML annotations, one per image (``ILSVRC2012_val_00000001.xml``: ``<size>`` width and
  height, and one ``<object>`` per box with ``<name>`` = wnid and ``<bndbox>`` xmin/ymin/xmax/ymax).
  Found under ``src`` (first match) when ``annotations`` is not given:

  - ``ILSVRC/Annotations/CLS-LOC/val`` or ``Annotations/CLS-LOC/val`` (the Kaggle / LOC release);
  - ``val`` holding the ``*.xml`` files (the official ``ILSVRC2012_bbox_val_v3.tgz`` extracts to
    ``val/``), or ``bbox_val/val``;
  - ``src`` itself when it holds ``ILSVRC2012_val_*.xml``.

* The synset list, whose 0-based line index is the class label: ``LOC_synset_mapping.txt`` style
  (``n01440764 tench, Tinca tinca``) or one wnid per line. Found as ``LOC_synset_mapping.txt``,
  ``synset_words.txt``, ``synsets.txt`` or ``wnids.txt`` in ``src`` (or ``src/..``) when ``synsets``
  is not given. The standard order is sorted by wnid; another order is accepted with a warning
  (its labels then differ from every published ImageNet model).

Output, matching the reference's published ``metadata/ILSVRC/test`` line for line:

* ids ``val/ILSVRC2012_val_00000001.JPEG``, sorted; image sizes from the XML ``<size>``;
* one box line per ``<object>``, in XML order, with the XML values unchanged: the reference's
  boxes are not shifted by one. Evidence: ``ILSVRC2012_val_00000001.xml`` (500x375, ``n01751748``,
  xmin 111, ymin 108, xmax 441, ymax 193) is ``val/ILSVRC2012_val_00000001.JPEG,111,108,441,193``
  in the reference, label 65 (= the index of n01751748 in sorted order); and
  ``ILSVRC2012_val_00008726`` (``n02119789 255 142 454 329 n02119789 44 21 322 295`` in
  LOC_val_solution.csv) gives the two lines ``255,142,454,329`` and ``44,21,322,295``;
* the label is the index of the first object's wnid (the image's class; the validation set has one
  class per image, a differing object name is logged). ``xmax``/``ymax`` are clipped to ``w - 1`` /
  ``h - 1`` as for CUB; none of the reference's 80,477 boxes reaches ``w`` or ``h``.
* ``images/val`` is a symbolic link to the validation images when found
  (``ILSVRC/Data/CLS-LOC/val``, ``Data/CLS-LOC/val`` or ``val`` holding ``*.JPEG``); otherwise a
  warning says where to put them (the metadata itself needs no image).
* A ``train`` split (labels only, like the reference's: empty ``image_sizes.txt``, no
  ``localization.txt``) is listed from a train folder of ``<wnid>/`` subfolders when one is found
  (``ILSVRC/Data/CLS-LOC/train``, ``Data/CLS-LOC/train`` or ``train``), with ids
  ``train/<wnid>/<file>`` and ``images/train`` linked to it.

The reference's ``val`` split (ImageNetV2 with boxes annotated by its authors) is a separate
download and is not produced here: copied into ``metadata/val``, it is kept when the conversion
runs again (which replaces the rest of ``metadata/`` whole).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from wsolbench.data.metadata import MetadataError, SplitMetadata
from wsolbench.data.prepared import write_prepared_root

logger = logging.getLogger(__name__)

SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "synsets.txt", "wnids.txt")
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def read_synsets(path: Path) -> list[str]:
    """Read a synset list: the first token of each non-blank line is a wnid; line index = label.

    Raises:
        MetadataError: on a duplicate wnid or an empty file.
    """
    wnids: list[str] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split(maxsplit=1)
            if not fields:
                continue
            wnid = fields[0]
            if wnid in seen:
                raise MetadataError(
                    f"{path} line {lineno}: duplicate wnid {wnid} (first on line {seen[wnid]}); "
                    "each class appears once"
                )
            seen[wnid] = lineno
            wnids.append(wnid)
    if not wnids:
        raise MetadataError(f"{path}: no synsets; expected one wnid per line (n01440764 ...)")
    if wnids != sorted(wnids):
        logger.warning(
            "%s is not in sorted-wnid order: labels will differ from the standard ImageNet indices",
            path,
        )
    return wnids


def _first_dir(candidates: list[Path], pattern: str) -> Path | None:
    for folder in candidates:
        if folder.is_dir() and next(folder.glob(pattern), None) is not None:
            return folder
    return None


def _find_annotations(src: Path) -> Path:
    candidates = [
        src / "ILSVRC" / "Annotations" / "CLS-LOC" / "val",
        src / "Annotations" / "CLS-LOC" / "val",
        src / "val",
        src / "bbox_val" / "val",
        src,
    ]
    found = _first_dir(candidates, "ILSVRC2012_val_*.xml")
    if found is None:
        raise MetadataError(
            f"no ILSVRC2012_val_*.xml found under {src} (looked in "
            f"{', '.join(str(c) for c in candidates)}); pass the XML folder as --annotations"
        )
    return found


def _find_synsets(src: Path) -> Path:
    for folder in (src, src.parent):
        for name in SYNSET_FILES:
            if (folder / name).is_file():
                return folder / name
    raise MetadataError(
        f"no synset list ({', '.join(SYNSET_FILES)}) found in {src} or {src.parent}; pass "
        "LOC_synset_mapping.txt (1,000 lines, sorted wnids) as --synsets"
    )


def _xml_int(node: ET.Element, tag: str, path: Path) -> int:
    text = node.findtext(tag)
    try:
        # Some annotation tools write "111.0"; the official files hold integers.
        return int(float(text))
    except (TypeError, ValueError):
        raise MetadataError(
            f"{path}: <{tag}> is {text!r}, not a number; restore the original annotation file"
        ) from None


def parse_annotation(path: Path) -> tuple[tuple[int, int], list[str], list[list[int]]]:
    """Parse one ILSVRC validation XML.

    Returns:
        ((w, h), wnids, boxes): the image size, each object's wnid, and each object's
        [xmin, ymin, xmax, ymax] exactly as in the file.

    Raises:
        MetadataError: unreadable XML, missing size, no object, or a malformed box.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise MetadataError(f"{path}: not valid XML ({exc}); restore the original file") from None
    size = root.find("size")
    if size is None:
        raise MetadataError(f"{path}: no <size> element; restore the original annotation file")
    w, h = _xml_int(size, "width", path), _xml_int(size, "height", path)
    wnids, boxes = [], []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        if box is None:
            raise MetadataError(f"{path}: an <object> without <bndbox>; restore the original file")
        wnids.append((obj.findtext("name") or "").strip())
        boxes.append([_xml_int(box, tag, path) for tag in ("xmin", "ymin", "xmax", "ymax")])
    if not boxes:
        raise MetadataError(f"{path}: no <object>; every validation image has at least one box")
    return (w, h), wnids, boxes


def _clip_boxes(path: Path, boxes: list[list[int]], w: int, h: int) -> tuple[np.ndarray, int]:
    array = np.asarray(boxes, dtype=np.int64)
    bad = (array[:, 0] > array[:, 2]) | (array[:, 1] > array[:, 3]) | (array < 0).any(axis=1)
    if bad.any():
        raise MetadataError(
            f"{path}: box {array[bad][0].tolist()} is not xmin <= xmax, ymin <= ymax, all >= 0; "
            "fix the annotation"
        )
    clipped = array.copy()
    clipped[:, [0, 2]] = np.minimum(clipped[:, [0, 2]], w - 1)
    clipped[:, [1, 3]] = np.minimum(clipped[:, [1, 3]], h - 1)
    return clipped, int((clipped != array).any(axis=1).sum())


def _val_split(xml_dir: Path, wnids: list[str], split_dir: Path) -> SplitMetadata:
    index = {wnid: i for i, wnid in enumerate(wnids)}
    meta = SplitMetadata(split_dir=split_dir, image_ids=[], labels={}, sizes={}, boxes={})
    n_clipped = n_mixed = 0
    for path in sorted(xml_dir.glob("ILSVRC2012_val_*.xml")):
        (w, h), names, boxes = parse_annotation(path)
        if names[0] not in index:
            raise MetadataError(
                f"{path}: wnid {names[0]!r} is not in the synset list; use the synset list that "
                "goes with these annotations"
            )
        n_mixed += len(set(names)) > 1
        image_id = f"val/{path.stem}.JPEG"
        meta.image_ids.append(image_id)
        meta.labels[image_id] = index[names[0]]
        meta.sizes[image_id] = (w, h)
        meta.boxes[image_id], clipped = _clip_boxes(path, boxes, w, h)
        n_clipped += clipped
    if n_clipped:
        logger.info("%d box(es) reached the image border and were clipped to w-1/h-1", n_clipped)
    if n_mixed:
        logger.warning("%d image(s) have objects of several classes; label = first", n_mixed)
    return meta


def _train_split(train_dir: Path, wnids: list[str], split_dir: Path) -> SplitMetadata:
    meta = SplitMetadata(split_dir=split_dir, image_ids=[], labels={}, sizes={})
    for label, wnid in enumerate(wnids):
        folder = train_dir / wnid
        if not folder.is_dir():
            logger.warning("no training folder %s: class %d has no train images", folder, label)
            continue
        # os.scandir, not Path.glob: 1.28 M files, and only names are needed.
        names = sorted(
            e.name
            for e in os.scandir(folder)
            if e.is_file() and os.path.splitext(e.name)[1].lower() in _IMAGE_SUFFIXES
        )
        for name in names:
            image_id = f"train/{wnid}/{name}"
            meta.image_ids.append(image_id)
            meta.labels[image_id] = label
    return meta


def convert_ilsvrc(
    src: Path,
    out: Path,
    *,
    annotations: Path | None = None,
    synsets: Path | None = None,
) -> dict[str, int]:
    """Write ``out/metadata/test`` (and ``train`` when a train folder is found) from ILSVRC 2012.

    Args:
        src: the ILSVRC release folder (see the module docstring for the layouts searched).
        out: the prepared dataset root to write (created if needed; its metadata/ is replaced
            whole, a val split copied in kept: see the module docstring).
        annotations: the folder of ``ILSVRC2012_val_*.xml`` files (default: searched under src).
        synsets: the synset list (default: searched in src and its parent).

    Returns:
        Split name → image count, e.g. ``{"test": 50000, "train": 1281167}``.

    Raises:
        MetadataError: missing inputs or malformed annotations (the file is named).
    """
    src, out = Path(src), Path(out)
    xml_dir = Path(annotations) if annotations is not None else _find_annotations(src)
    if next(xml_dir.glob("ILSVRC2012_val_*.xml"), None) is None:
        raise MetadataError(f"{xml_dir}: no ILSVRC2012_val_*.xml files; check --annotations")
    wnids = read_synsets(Path(synsets) if synsets is not None else _find_synsets(src))
    meta_dir = out / "metadata"
    splits = {"test": _val_split(xml_dir, wnids, meta_dir / "test")}
    links: dict[str, Path] = {}
    val_images = _first_dir(
        [
            src / "ILSVRC" / "Data" / "CLS-LOC" / "val",
            src / "Data" / "CLS-LOC" / "val",
            src / "val",
        ],
        "ILSVRC2012_val_*.JPEG",
    )
    if val_images is not None:
        links["images/val"] = val_images
    else:
        logger.warning(
            "validation images not found under %s: put them (ILSVRC2012_val_*.JPEG) in %s",
            src,
            out / "images" / "val",
        )

    train_candidates = [
        src / "ILSVRC" / "Data" / "CLS-LOC" / "train",
        src / "Data" / "CLS-LOC" / "train",
        src / "train",
    ]
    train_dir = next(
        (d for d in train_candidates if d.is_dir() and any((d / w).is_dir() for w in wnids)), None
    )
    if train_dir is not None:
        train = _train_split(train_dir, wnids, meta_dir / "train")
        if len(train):
            splits["train"] = train
            links["images/train"] = train_dir
    write_prepared_root(
        out,
        splits,
        num_classes=len(wnids),
        links=links,
        # write_split has checked the label-only train split: re-reading 1.28 M lines adds nothing
        unchecked=("train",),
        kept=("val",),  # the reference's ImageNetV2 val, copied in by hand
    )
    counts = {split: len(meta) for split, meta in splits.items()}
    logger.info("ILSVRC written to %s: %s", out, counts)
    return counts
