"""Convert the GlaS release (Warwick QU, MICCAI 2015) to a prepared root: `wsolbench prepare glas`.

Input: the release folder ``Warwick_QU_Dataset_(Released_2016_07_08)`` (``--src`` may also be its
parent; the folder is the one holding ``Grade.csv``)::

    train_<k>.bmp  testA_<k>.bmp  testB_<k>.bmp   165 images, BMP
    <name>_anno.bmp                                gland instance masks (0 background, 1..N glands)
    Grade.csv                                      name, patient ID, grade (GlaS), grade (...)

Labels come from ``Grade.csv``'s ``grade (GlaS)`` column: ``benign`` → 0, ``malignant`` → 1 (the
``encoding.yaml`` of LIVIA's GLAS splits). The file is read tolerantly: a byte order mark, CRLF
line ends, spaces around fields (the release writes ``" benign"``) and header spelling (case,
spaces) do not matter; a name may carry ``.bmp``. A bad line is one error naming the file and line.

Output (``--out``), the layout every prepared root has (:mod:`wsolbench.data.sources`):

* ``metadata/{train,valcl,valpx,test}``: ids ``<name>.bmp``, labels, image sizes (from the BMP
  headers), mask records ``<name>.bmp,<name>_anno.bmp,`` (no ignore mask);
* ``images``: a symbolic link to the release folder (nothing copied);
* ``masks/<name>_anno.bmp``: binary copies of the annotation masks (gland > 0 → 255;
  :mod:`wsolbench.data.masks` says why a copy, and why it scores the same);
* ``metadata/README.txt``: where each split came from.

Splits: ``test`` = testA + testB (80 images), as in every LIVIA fold. The 85 training images are
split per class by a seeded hash of their names (deterministic everywhere): ``valcl`` takes
``ceil(20 %)`` of each class (8 benign and 10 malignant: the sizes of LIVIA's fold 0, 18 images),
``valpx`` the first 3 per class of those (6, ⊂ valcl), ``train`` the rest (67). These are the fold's
sizes, **not** its membership: for LIVIA's official folds, prepare their split files with
``wsolbench prepare wsol-splits`` (:mod:`wsolbench.data.wsol_splits`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import re
from pathlib import Path

from wsolbench.data.metadata import MaskRecord, MetadataError, SplitMetadata
from wsolbench.data.prepared import write_prepared_root

logger = logging.getLogger(__name__)

GRADE_CSV = "Grade.csv"
CLASSES = ("benign", "malignant")  # label = index (LIVIA's GLAS encoding.yaml)
SPLITS = ("train", "valcl", "valpx", "test")
VALCL_FRACTION = 0.2
VALPX_PER_CLASS = 3
# train_<k> / testA_<k> / testB_<k>: the release's three parts, in this order
_NAME = re.compile(r"(train|testA|testB)_(\d+)")


def _normalize(text: str) -> str:
    return " ".join(text.strip().lower().split())


def find_release(src: Path) -> Path:
    """The folder holding ``Grade.csv``: ``src`` itself or one folder below it."""
    if (src / GRADE_CSV).is_file():
        return src
    below = sorted(p.parent for p in src.glob(f"*/{GRADE_CSV}")) if src.is_dir() else []
    if len(below) == 1:
        return below[0]
    found = f" (found {len(below)}: {', '.join(map(str, below))})" if below else ""
    raise MetadataError(
        f"{src}: not a GlaS release folder: no {GRADE_CSV} in it or in one folder below{found}; "
        "pass the extracted Warwick_QU_Dataset_(Released_2016_07_08) folder (or its parent) as "
        "--src"
    )


def read_grades(path: Path) -> dict[str, int]:
    """``Grade.csv`` → {image name without extension: label (benign 0, malignant 1)}, file order.

    Raises:
        MetadataError: naming the file and line of a missing column, an unknown name or grade, or
            a duplicate.
    """
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise MetadataError(f"{path}: not UTF-8 text; restore the release's {GRADE_CSV}") from None
    header_line = next((i for i, row in enumerate(rows) if any(c.strip() for c in row)), None)
    if header_line is None:
        raise MetadataError(f"{path}: empty; restore the release's {GRADE_CSV}")
    header = [_normalize(c) for c in rows[header_line]]
    grade_column = next((h for h in ("grade (glas)", "grade") if h in header), None)
    if "name" not in header or grade_column is None:
        raise MetadataError(
            f"{path} line {header_line + 1}: expected the columns 'name' and 'grade (GlaS)', found "
            f"{', '.join(repr(c) for c in rows[header_line])}; restore the release's {GRADE_CSV}"
        )
    name_at, grade_at = header.index("name"), header.index(grade_column)
    grades: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, row in enumerate(rows[header_line + 1 :], header_line + 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(name_at, grade_at):
            raise MetadataError(
                f"{path} line {i}: {len(row)} field(s), expected {len(header)} like the header"
            )
        name = row[name_at].strip().removesuffix(".bmp")
        grade = _normalize(row[grade_at])
        if not _NAME.fullmatch(name):
            raise MetadataError(
                f"{path} line {i}: image name {row[name_at].strip()!r} is not train_<k>, testA_<k> "
                "or testB_<k>; restore the release's file"
            )
        if grade not in CLASSES:
            raise MetadataError(
                f"{path} line {i}: grade {row[grade_at].strip()!r} of {name} is neither benign nor "
                "malignant (the 'grade (GlaS)' column); restore the release's file"
            )
        if name in grades:
            raise MetadataError(f"{path} line {i}: {name} again (first on line {first[name]})")
        grades[name], first[name] = CLASSES.index(grade), i
    if not grades:
        raise MetadataError(f"{path}: no image lines under the header")
    return grades


def _order(name: str) -> tuple[int, int]:
    part, number = _NAME.fullmatch(name).groups()
    return ("train", "testA", "testB").index(part), int(number)


def _hash_rank(seed: int, name: str) -> str:
    # a hash, not a random stream: the same choice on every platform and library version
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split_training(
    names: list[str],
    labels: dict[str, int],
    seed: int = 0,
    valcl_fraction: float = VALCL_FRACTION,
    valpx_per_class: int = VALPX_PER_CLASS,
) -> dict[str, list[str]]:
    """The training images → ``train`` / ``valcl`` / ``valpx`` (⊂ valcl), per class by
    :func:`_hash_rank`, each list in the order of ``names``.

    Raises:
        MetadataError: when a class is too small to give valcl ``valpx_per_class`` images and
            keep one for train.
    """
    valcl: set[str] = set()
    valpx: set[str] = set()
    for label, name_of_class in enumerate(CLASSES):
        members = sorted(
            (n for n in names if labels[n] == label), key=lambda n: _hash_rank(seed, n)
        )
        n_valcl = math.ceil(valcl_fraction * len(members))
        if not valpx_per_class <= n_valcl < len(members):
            raise MetadataError(
                f"GlaS: {len(members)} {name_of_class} training image(s) cannot give valcl "
                f"{n_valcl} (of which valpx {valpx_per_class}) and keep one for train; is the "
                "release complete?"
            )
        valcl.update(members[:n_valcl])
        valpx.update(members[:valpx_per_class])
    return {
        "train": [n for n in names if n not in valcl],
        "valcl": [n for n in names if n in valcl],
        "valpx": [n for n in names if n in valpx],
    }


def _image_sizes(release: Path, names: list[str]) -> dict[str, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    sizes = {}
    for name in names:
        path = release / f"{name}.bmp"
        try:
            with Image.open(path) as image:  # the header only
                sizes[name] = image.size
        except (FileNotFoundError, UnidentifiedImageError, OSError):
            raise MetadataError(
                f"GlaS image {path} (listed in {GRADE_CSV}) is missing or unreadable; extract "
                "the release completely"
            ) from None
    return sizes


def _readme(release: Path, counts: dict[str, int], seed: int) -> str:
    return (
        "GlaS (Warwick QU) in the wsolevaluation metadata format, written by "
        "`wsolbench prepare glas`.\n"
        f"Source: {release}\n"
        "images -> a symbolic link to the release folder; masks/ holds binary copies of its\n"
        "<name>_anno.bmp (gland > 0 -> 255). Labels: Grade.csv 'grade (GlaS)', benign 0, "
        "malignant 1.\n\n"
        f"test:  testA + testB ({counts['test']} images).\n"
        f"train, valcl, valpx: the training images split per class by a hash of their names "
        f"(seed {seed}):\n"
        f"valcl ceil(20 %) per class ({counts['valcl']}), valpx 3 per class of those "
        f"({counts['valpx']}), train the rest ({counts['train']}).\n"
        "These are the sizes of LIVIA's fold 0, NOT its membership: prepare the official folds "
        "with\n`wsolbench prepare wsol-splits`.\n"
    )


def convert_glas(
    src: Path,
    out: Path,
    *,
    seed: int = 0,
    valcl_fraction: float = VALCL_FRACTION,
    valpx_per_class: int = VALPX_PER_CLASS,
    progress: bool = False,
) -> dict[str, int]:
    """Write ``out/metadata/{train,valcl,valpx,test}``, ``out/images`` and ``out/masks`` from the
    GlaS release (see the module docstring).

    Args:
        src: the release folder (the one holding ``Grade.csv``) or its parent.
        out: the prepared root to write (its metadata/ and masks/ are replaced whole, at the end).
        seed: seed of the train / valcl / valpx choice.
        valcl_fraction, valpx_per_class: the sizes of valcl (per class, rounded up) and valpx.
        progress: show a progress bar while writing the masks.

    Returns:
        Split name → image count, e.g. ``{"train": 67, "valcl": 18, "valpx": 6, "test": 80}``.

    Raises:
        MetadataError: a bad Grade.csv line, a missing image or mask, a class too small to split.
    """
    src, out = Path(src), Path(out)
    release = find_release(src)
    labels = read_grades(release / GRADE_CSV)
    names = sorted(labels, key=_order)
    sizes = _image_sizes(release, names)
    parts = split_training(
        [n for n in names if n.startswith("train_")], labels, seed, valcl_fraction, valpx_per_class
    )
    parts["test"] = [n for n in names if not n.startswith("train_")]
    splits = {}
    for split in SPLITS:
        ids = [f"{n}.bmp" for n in parts[split]]
        splits[split] = SplitMetadata(
            split_dir=out / "metadata" / split,
            image_ids=ids,
            labels={f"{n}.bmp": labels[n] for n in parts[split]},
            sizes={f"{n}.bmp": sizes[n] for n in parts[split]},
            masks={f"{n}.bmp": MaskRecord([f"{n}_anno.bmp"], None) for n in parts[split]},
        )
    counts = {split: len(meta) for split, meta in splits.items()}
    write_prepared_root(
        out,
        splits,
        num_classes=len(CLASSES),
        links={"images": release},
        readme=_readme(release, counts, seed),
        mask_root=release,
        progress=progress,
    )
    logger.info("GlaS written to %s: %s", out, counts)
    return counts
