"""Convert the CUB-200-2011 release into wsolevaluation metadata (`wsolbench prepare cub`).

Input: the ``CUB_200_2011`` folder of the official release (``--src`` may also be its parent)::

    images.txt               <image id> <class folder>/<file>.jpg
    image_class_labels.txt   <image id> <class id>          (1-based)
    train_test_split.txt     <image id> <is_training_image>  (1 train, 0 test)
    bounding_boxes.txt       <image id> <x> <y> <width> <height>   (floats)
    classes.txt              <class id> <class folder>
    images/<class folder>/<file>.jpg

Output (``--out``), matching the reference's published ``metadata/CUB/{train,test}`` line for line:

* ``metadata/train`` = every training image, ``metadata/test`` = every test image (5,794), each in
  images.txt order; ids are the images.txt paths; labels are 0-based (class id − 1).
* ``image_sizes.txt`` holds each image's (w, h), read from the image file header, so the images
  must be present: a missing or unreadable image is an error naming the file. (Sizes cannot be
  derived from the annotations, and ground-truth boxes are rescaled from them.)
* ``images`` is a symbolic link to ``<src>/images`` (nothing is copied).
* ``metadata/README.txt`` says where each split came from.

Box rule (float x, y, w, h → integer pixel-inclusive x0, y0, x1, y1)::

    x0 = int(x)                   y0 = int(y)
    x1 = min(int(x + w), W - 1)   y1 = min(int(y + h), H - 1)      (W, H: image size)

Evidence: the reference's published CUB train + test metadata against CUB's bounding_boxes.txt
for the 2,889 images of classes 001-050 agree with this rule on every box, e.g.

* id 1, ``Black_Footed_Albatross_0046_18.jpg`` (500x335): ``60.0 27.0 325.0 304.0`` →
  ``60,27,385,331`` (x + w, y + h: no ``- 1``);
* id 47, ``Black_Footed_Albatross_0050_796125.jpg`` (500x275): ``5.0 127.0 496.0 131.0`` →
  ``5,127,499,258`` (x + w = 501 clipped to W − 1);
* id 272, ``Crested_Auklet_0071_785255.jpg`` (500x375): ``0.0 0.0 500.0 375.0`` → ``0,0,499,374``;
* id 338, ``Parakeet_Auklet_0036_795943.jpg`` (500x375): ``162.0 11.0 174.0 364.0`` →
  ``162,11,336,374`` (y + h = 375 = H clipped).

Every value in those records is integral, so truncation versus rounding of fractional values could
not be observed; ``int()`` of the float sum is used.

Selection split (``val``): the reference's is CUBV2 (5 images per class, a separate image download).

* ``cubv2=DIR``: a folder with the four files of the reference's ``metadata/CUB/val``; its images
  must already be under ``<src>/images`` (CUBV2's class folders match CUB's). It is validated and
  written to ``metadata/val``.
* ``val_per_class=N``: N training images per class, chosen by a seeded hash of their ids
  (deterministic on every platform and version), are moved from ``train`` to ``val``. This is NOT
  the official CUBV2 set, and README.txt says so: numbers selected on it are not comparable with
  papers that select on CUBV2.
* Neither: no ``val`` split (``wsolbench prepare cub`` refuses this: cub-v1 evaluates ``val``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from wsolbench.data.metadata import MetadataError, SplitMetadata, read_split
from wsolbench.data.prepared import write_prepared_root
from wsolbench.util.progress import progress as progress_bar
from wsolbench.util.text_files import read_utf8

logger = logging.getLogger(__name__)

NUM_CLASSES = 200
RELEASE_FILES = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
)


def cub_box(x: float, y: float, w: float, h: float, width: int, height: int) -> list[int]:
    """CUB's (x, y, w, h) float box → the reference's integer (x0, y0, x1, y1); see the module doc.

    Args:
        x, y, w, h: top-left corner and extent from bounding_boxes.txt, pixels.
        width, height: the image size, pixels.

    Returns:
        [x0, y0, x1, y1], pixel-inclusive, 0 <= x0 <= x1 <= width - 1 (likewise for y).
    """
    x1 = min(int(x + w), width - 1)
    y1 = min(int(y + h), height - 1)
    return [min(int(x), x1), min(int(y), y1), x1, y1]


def _find_release(src: Path) -> Path:
    for root in (src, src / "CUB_200_2011"):
        if all((root / name).is_file() for name in RELEASE_FILES):
            return root
    missing = [name for name in RELEASE_FILES if not (src / name).is_file()]
    raise MetadataError(
        f"{src}: not a CUB_200_2011 release folder (missing {', '.join(missing)}); pass the "
        "extracted CUB_200_2011 folder (or its parent) as --src"
    )


def _read_table(path: Path, n_values: int, parse: Callable[[str], object]) -> dict[str, list]:
    """Read '<image id> <value>...' lines: id -> parsed values. Errors name the file and line."""
    table: dict[str, list] = {}
    for lineno, line in enumerate(read_utf8(path).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != n_values + 1:
            raise MetadataError(
                f"{path} line {lineno}: {len(fields)} fields, expected {n_values + 1} "
                "(an id and its values, space-separated); is this the original release file?"
            )
        try:
            values = [parse(v) for v in fields[1:]]
        except ValueError:
            raise MetadataError(
                f"{path} line {lineno}: cannot parse {fields[1:]}; restore the original file"
            ) from None
        if fields[0] in table:
            raise MetadataError(f"{path} line {lineno}: duplicate image id {fields[0]}")
        table[fields[0]] = values
    return table


def _image_sizes(image_root: Path, paths: list[str], progress: bool) -> dict[str, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    sizes: dict[str, tuple[int, int]] = {}
    missing: list[str] = []
    iterator = paths
    if progress:
        iterator = progress_bar(paths, desc="reading CUB image sizes", unit="img")
    for rel in iterator:
        try:
            with Image.open(image_root / rel) as image:  # reads the header only
                sizes[rel] = image.size
        except (FileNotFoundError, UnidentifiedImageError, OSError):
            missing.append(rel)
    if missing:
        raise MetadataError(
            f"{len(missing)} CUB image(s) missing or unreadable under {image_root}, e.g. "
            f"{image_root / missing[0]}; the converter reads image sizes from the files "
            "(boxes are rescaled from them): extract CUB_200_2011.tgz completely"
        )
    return sizes


def _hash_rank(seed: int, image_id: str) -> str:
    # A hash, unlike a random generator's stream, gives the same selection on every platform and
    # library version; adding images to a class does not reshuffle the others.
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def select_per_class(
    ids: list[str], labels: dict[str, int], n: int, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split ``ids`` into (kept, selected): ``n`` selected per class, both in the order of ``ids``.

    Raises:
        MetadataError: when a class has ``n`` or fewer images (it would leave train empty).
    """
    if n < 1:
        raise MetadataError(f"val_per_class must be >= 1 (got {n})")
    by_class: dict[int, list[str]] = {}
    for image_id in ids:
        by_class.setdefault(labels[image_id], []).append(image_id)
    selected: set[str] = set()
    for label, members in sorted(by_class.items()):
        if len(members) <= n:
            raise MetadataError(
                f"class {label} has only {len(members)} training image(s); val_per_class={n} would "
                "leave it none: use a smaller --val-per-class"
            )
        selected.update(sorted(members, key=lambda i: _hash_rank(seed, i))[:n])
    return [i for i in ids if i not in selected], [i for i in ids if i in selected]


def _subset(fields: dict[str, dict], ids: list[str], split_dir: Path) -> SplitMetadata:
    return SplitMetadata(
        split_dir=split_dir,
        image_ids=ids,
        labels={i: fields["labels"][i] for i in ids},
        sizes={i: fields["sizes"][i] for i in ids},
        boxes={i: fields["boxes"][i] for i in ids},
    )


def _readme(src: Path, val_note: str, counts: dict[str, int], val_from_train: bool) -> str:
    lines = [
        "CUB-200-2011 in the wsolevaluation metadata format, written by `wsolbench prepare cub`.",
        f"Source: {src}",
        "images -> a symbolic link to the source's images/ folder (nothing copied).",
        "",
        "train: the official CUB-200-2011 training images"
        + (" minus those moved to val" if val_from_train else "")
        + f" ({counts['train']} images).",
        f"test:  the official CUB-200-2011 test images ({counts['test']} images).",
        f"val:   {val_note}",
        "",
        "Boxes: x0=int(x), y0=int(y), x1=min(int(x+w), W-1), y1=min(int(y+h), H-1), as in the",
        "reference's published metadata (see wsolbench/data/cub.py). Labels are 0-based.",
    ]
    return "\n".join(lines) + "\n"


def convert_cub(
    src: Path,
    out: Path,
    *,
    val_per_class: int | None = None,
    cubv2: Path | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, int]:
    """Write ``out/metadata/{train,test[,val]}`` and ``out/images`` from the CUB-200-2011 release.

    Args:
        src: the extracted ``CUB_200_2011`` folder (or its parent).
        out: the prepared dataset root to write (created if needed; its split folders are replaced).
        val_per_class: move this many training images per class into a ``val`` split (seeded; not
            the official CUBV2 set). Excludes ``cubv2``.
        cubv2: folder with the official CUBV2 metadata (the reference's ``metadata/CUB/val``), whose
            images are under ``<src>/images``.
        seed: seed of the ``val_per_class`` selection.
        progress: show a progress bar while reading image sizes.

    Returns:
        Split name → image count, e.g. ``{"train": 5994, "test": 5794}``.

    Raises:
        MetadataError: malformed release files (a bad box names its bounding_boxes.txt line),
            missing images, or invalid CUBV2 metadata.
    """
    if val_per_class is not None and cubv2 is not None:
        raise MetadataError(
            "val_per_class and cubv2 both define the val split; give only one of them"
        )
    src, out = Path(src), Path(out)
    root = _find_release(src)
    image_root = root / "images"
    paths = {k: v[0] for k, v in _read_table(root / "images.txt", 1, str).items()}
    classes = _read_table(root / "image_class_labels.txt", 1, int)
    is_train = _read_table(root / "train_test_split.txt", 1, int)
    raw_boxes = _read_table(root / "bounding_boxes.txt", 4, float)
    n_classes = len(_read_table(root / "classes.txt", 1, str))
    for name, table in (
        ("image_class_labels.txt", classes),
        ("train_test_split.txt", is_train),
        ("bounding_boxes.txt", raw_boxes),
    ):
        absent = [k for k in paths if k not in table]
        if absent:
            raise MetadataError(
                f"{root / name}: no line for image id {absent[0]} ({paths[absent[0]]}) of "
                f"images.txt ({len(absent)} missing); restore the original release file"
            )
    bad = [k for k in paths if not 1 <= classes[k][0] <= n_classes]
    if bad:
        raise MetadataError(
            f"{root / 'image_class_labels.txt'}: image id {bad[0]} has class {classes[bad[0]][0]}, "
            f"outside 1..{n_classes} (classes.txt); restore the original release file"
        )

    order = list(paths)  # images.txt order, as the reference keeps it
    sizes_by_path = _image_sizes(image_root, [paths[k] for k in order], progress)
    fields: dict[str, dict] = {"labels": {}, "sizes": {}, "boxes": {}}
    for k in order:
        rel = paths[k]
        w, h = sizes_by_path[rel]
        fields["labels"][rel] = classes[k][0] - 1
        fields["sizes"][rel] = (w, h)
        _check_box(root / "bounding_boxes.txt", k, rel, raw_boxes[k], (w, h))
        fields["boxes"][rel] = np.asarray([cub_box(*raw_boxes[k], w, h)], dtype=np.int64)
    train_ids = [paths[k] for k in order if is_train[k][0] == 1]
    test_ids = [paths[k] for k in order if is_train[k][0] == 0]

    val_meta: SplitMetadata | None = None
    if val_per_class is not None:
        train_ids, val_ids = select_per_class(train_ids, fields["labels"], val_per_class, seed)
        val_meta = _subset(fields, val_ids, Path("val"))
        val_note = (
            f"{val_per_class} training image(s) per class chosen with seed {seed} and removed from "
            "train. This is NOT the official CUBV2 selection set (whose images are a separate "
            "download): numbers selected on it are not comparable with papers using CUBV2."
        )
    elif cubv2 is not None:
        val_meta = read_split(cubv2, num_classes=n_classes, image_root=image_root)
        val_note = f"the official CUBV2 metadata from {Path(cubv2).resolve()}."
    else:
        val_note = "none (pass cubv2=DIR for the official CUBV2 set, or val_per_class=N)."

    splits = {
        "train": _subset(fields, train_ids, Path("train")),
        "test": _subset(fields, test_ids, Path("test")),
    }
    if val_meta is not None:
        splits["val"] = val_meta
    counts = {split: len(meta) for split, meta in splits.items()}
    readme = _readme(root, val_note, counts, val_from_train=val_per_class is not None)
    write_prepared_root(
        out, splits, num_classes=n_classes, links={"images": image_root}, readme=readme
    )
    logger.info("CUB written to %s: %s", out, counts)
    return counts


def _check_box(path: Path, image_id: str, rel: str, box: list[float], size: tuple[int, int]):
    """Refuse a source box the box rule would turn into a wrong one (a negative extent, a box
    clamped to a zero-area one outside the image, NaN), naming its bounding_boxes.txt line."""
    x, y, w, h = box
    width, height = size
    why = None
    if not all(np.isfinite(box)):
        why = "is not finite"
    elif w <= 0 or h <= 0:
        why = "has a width or height <= 0"
    elif x < 0 or y < 0 or x >= width or y >= height:
        why = f"lies outside the {width}x{height} image"
    if why is not None:
        lineno = next(
            n
            for n, line in enumerate(read_utf8(path).splitlines(), 1)
            if line.split()[:1] == [image_id]
        )
        raise MetadataError(
            f"{path} line {lineno}: image id {image_id} ({rel}): the box x={x:g} y={y:g} "
            f"width={w:g} height={h:g} {why}; restore the original release file"
        )
