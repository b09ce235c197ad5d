"""One fold of LIVIA's histology splits to a prepared root (`prepare wsol-splits`).

Input (``shared/spec/histology.md``, "Layout on disk"):

* ``--src <DS>/fold-<k>``: one fold of LIVIA's "WSOL done right" splits, whose
  ``{train,valcl,valpx,test}/`` hold wsolevaluation's four files (``image_ids.txt``,
  ``class_labels.txt``, ``image_sizes.txt``, ``localization.txt``), masks in the mask form
  ``image_id,mask_path,ignore_path``: the ignore path always empty, and for a CAMELYON normal
  patch the mask path too (``image_id,,``: an all-background image);
* ``<DS>/encoding.yaml`` beside the folds: class name → label (GLAS ``benign: 0, malignant: 1``,
  CAMELYON512 ``normal: 0, tumor: 1``), checked against the protocol's classes;
* ``--images DIR``: the data root the image ids are relative to; ``--masks DIR``: the root the
  mask paths are relative to (default: the data root).

Output (``--out``), the layout every prepared root has (:mod:`wsolbench.data.sources`):
``metadata/{train,valcl,valpx,test}`` with the fold's records unchanged (so a fingerprint of the
prepared split is that of LIVIA's files), ``images`` a link to the data root, ``masks/`` binary
copies of every mask the fold names (:mod:`wsolbench.data.masks`: GlaS's annotations label each
gland 1..N, and wsolbench scores only binary mask files), ``metadata/README.txt``.

Fold 0 is LIVIA's fold for hyper-parameter search; the test split is the same in every fold.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from wsolbench.data.metadata import MetadataError, read_split
from wsolbench.data.prepared import write_prepared_root
from wsolbench.util.yaml_errors import yaml_problem

logger = logging.getLogger(__name__)

SPLITS = ("train", "valcl", "valpx", "test")
#: The splits PxAP scores (the protocols' val and test): they must hold mask records.
MASKED_SPLITS = ("valpx", "test")
ENCODING = "encoding.yaml"
#: LIVIA's dataset folder name → (wsolbench dataset, its encoding.yaml).
DATASETS = {
    "GLAS": ("glas", {"benign": 0, "malignant": 1}),
    "CAMELYON512": ("camelyon512", {"normal": 0, "tumor": 1}),
}


def _dataset_of(fold: Path) -> tuple[str, dict[str, int]]:
    if not fold.is_dir():
        raise MetadataError(f"--src {fold} does not exist; pass one fold folder, <DS>/fold-<k>")
    folds = sorted(p.name for p in fold.glob("fold-*") if p.is_dir())
    if folds and not (fold / SPLITS[0]).is_dir():
        raise MetadataError(
            f"{fold} holds folds ({', '.join(folds)}), not one fold's splits; pass one of them, "
            f"e.g. --src {fold / folds[0]}"
        )
    name = fold.parent.name.upper()
    if name not in DATASETS:
        raise MetadataError(
            f"{fold}: its dataset folder {fold.parent.name!r} is none of {', '.join(DATASETS)}; "
            "pass a fold of LIVIA's splits, <DS>/fold-<k>, under its own dataset folder"
        )
    return DATASETS[name]


def read_encoding(path: Path, expected: dict[str, int]) -> dict[str, int]:
    """``encoding.yaml`` → {class name: label}, which must be ``expected`` (names compared in
    lower case): the labels of class_labels.txt mean what the protocol's class names say.

    Raises:
        MetadataError: the file is missing, not a mapping of names to integers, or another one.
    """
    if not path.is_file():
        raise MetadataError(
            f"{path} does not exist; LIVIA's splits keep encoding.yaml beside the fold folders "
            "(pass --src <DS>/fold-<k> of an unmodified copy)"
        )
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(content, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in content.values()
    ):
        raise MetadataError(f"{path}: expected class name: label lines, like {expected}")
    encoding = {str(k).strip().lower(): v for k, v in content.items()}
    if encoding != expected:
        raise MetadataError(
            f"{path}: the classes are {content}, but this dataset's protocol expects {expected}; "
            "restore LIVIA's encoding.yaml (labels must mean the protocol's class names)"
        )
    return encoding


def _readme(fold: Path, images: Path, masks: Path, counts: dict[str, int]) -> str:
    sizes = ", ".join(f"{split} {n}" for split, n in counts.items())
    return (
        "One fold of LIVIA's histology WSOL splits, written by `wsolbench prepare wsol-splits`.\n"
        f"Splits: {fold} ({sizes}), records unchanged.\n"
        f"images -> a symbolic link to {images}.\n"
        f"masks/ holds binary copies (> 0.5 -> 255) of the masks under {masks} the splits name;\n"
        "an empty mask path (`id,,`) is an all-background image.\n"
    )


def convert_wsol_splits(
    src: Path, out: Path, *, images: Path, masks: Path | None = None, progress: bool = False
) -> tuple[str, dict[str, int]]:
    """Write a prepared root from one fold of LIVIA's splits (see the module docstring).

    Args:
        src: the fold folder, ``<DS>/fold-<k>``.
        out: the prepared root to write (its metadata/ and masks/ are replaced whole, at the end).
        images: the data root image ids are relative to; every image must exist there.
        masks: the root mask paths are relative to; None: ``images``.
        progress: show a progress bar while writing the masks.

    Returns:
        (the wsolbench dataset, ``glas`` or ``camelyon512``; split name → image count).

    Raises:
        MetadataError: a bad split file (every defect, with file and line), a missing image or
            mask, a mask of the wrong size, or an encoding.yaml other than the protocol's.
    """
    fold, out, images = Path(src), Path(out), Path(images)
    masks = Path(masks) if masks is not None else images
    dataset, expected = _dataset_of(fold)
    read_encoding(fold.parent / ENCODING, expected)
    splits = {
        split: read_split(fold / split, num_classes=len(expected), image_root=images)
        for split in SPLITS
    }
    for split in MASKED_SPLITS:
        if splits[split].masks is None:
            raise MetadataError(
                f"{fold / split / 'localization.txt'}: no mask records (image_id,mask_path,"
                f"ignore_path); the {split} split is scored by PxAP and needs them"
            )
    counts = {split: len(meta) for split, meta in splits.items()}
    write_prepared_root(
        out,
        splits,
        num_classes=len(expected),
        links={"images": images},
        readme=_readme(fold, images, masks, counts),
        mask_root=masks,
        progress=progress,
    )
    logger.info("%s fold %s written to %s: %s", dataset, fold.name, out, counts)
    return dataset, counts
