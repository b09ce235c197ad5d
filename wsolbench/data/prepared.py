"""Writing a converted dataset into its prepared root as a whole (every `wsolbench prepare`).

A converter hands over its splits; the image links are checked first, the splits are written
into a hidden folder inside ``out`` and read back as a run would read them, the binary masks are
written aside too, and only then are the image links made and ``masks/`` and ``metadata/``
renamed into place. An interrupted or failing conversion (a bad record found late, a full disk)
therefore leaves the earlier ``metadata/`` whole, or no ``out`` at all where it made one: never a
half-written ``metadata/`` that a later run would take for a whole one. Only a failure in the
last steps (making a checked link, two renames) can leave new links or masks beside the earlier
metadata.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path

from wsolbench.data.masks import build_binary_masks, mask_files, place_binary_masks
from wsolbench.data.metadata import SplitMetadata, check_link, link_dir, read_split, write_split
from wsolbench.util.atomic import replace_folder

logger = logging.getLogger(__name__)


def write_prepared_root(
    out: Path,
    splits: Mapping[str, SplitMetadata],
    *,
    num_classes: int,
    links: Mapping[str, Path],
    readme: str | None = None,
    mask_root: Path | None = None,
    progress: bool = False,
    unchecked: Collection[str] = (),
    kept: Collection[str] = (),
) -> None:
    """Write ``out/metadata/<split>`` for each split (the earlier ``metadata/`` replaced whole),
    and the links and masks that go with them.

    Args:
        out: the prepared root (created if missing; removed again if the conversion fails).
        splits: split name → its records (their ``split_dir`` is not used).
        num_classes: what each split is read back against.
        links: path under ``out`` → the release folder it links to (``{"images": release}``).
        readme: ``metadata/README.txt``, where the splits came from; None: none.
        mask_root: where the mask paths of the splits are: binary copies of every one go to
            ``out/masks`` (:mod:`wsolbench.data.masks`); None: the splits name no masks.
        progress: show a progress bar while writing the masks.
        unchecked: splits not read back (ILSVRC's 1.28 M-line train: write_split checked its
            records, reading them again would add nothing).
        kept: splits that an earlier ``metadata/`` may hold and this conversion does not write
            (ILSVRC's val, copied in by hand): carried over into the new folder.

    Raises:
        MetadataError: a record, mask or link that cannot be written or read back (named).
    """
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    metadata, masks = out / "metadata", out / "masks"
    building = built_masks = None
    try:
        for link, target in links.items():  # before anything is written: a real folder in the way
            check_link(out / link, target)
        building = Path(tempfile.mkdtemp(prefix=".metadata.partial.", dir=out))
        os.chmod(building, 0o755)  # mkdtemp makes it private; a dataset folder is shared
        if mask_root is not None:
            # first: a missing or mis-sized mask stops the conversion before any split is written
            found = mask_files(splits.values())
            built_masks = build_binary_masks(mask_root, found, masks, progress=progress)
        for split, meta in splits.items():
            write_split(building / split, meta)
        for split in kept:
            if split not in splits and (metadata / split).is_dir():
                shutil.copytree(metadata / split, building / split, symlinks=True)
        if readme is not None:
            (building / "README.txt").write_text(readme, encoding="utf-8")
        for split in splits:  # the same checks a later run would make, caught here
            if split not in unchecked:
                read_split(building / split, num_classes=num_classes)
        for link, target in links.items():
            link_dir(out / link, target)
        if built_masks is not None:
            place_binary_masks(built_masks, masks)
            built_masks = None
        replace_folder(building, metadata)
    except BaseException:
        if building is not None:
            shutil.rmtree(building, ignore_errors=True)
        if built_masks is not None:
            shutil.rmtree(built_masks, ignore_errors=True)
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    for split, meta in splits.items():
        logger.info("wrote %d images to %s", len(meta.image_ids), metadata / split)
