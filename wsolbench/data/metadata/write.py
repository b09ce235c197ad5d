"""Writing a split folder atomically, and linking a release's image folder into a dataset root.

Ids the format cannot hold, and images without a label, size, box or mask record, are refused
before anything is written (a mask record without masks is written as ``id,,``: all background).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from wsolbench.data.metadata.records import (
    CLASS_LABELS,
    IMAGE_IDS,
    IMAGE_SIZES,
    LOCALIZATION,
    MASK_LOCALIZATION,
    Defects,
    MetadataError,
    SplitMetadata,
)
from wsolbench.util.atomic import replace_folder


def _validate_for_write(split_dir: Path, meta: SplitMetadata) -> None:
    defects = Defects(split_dir)
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
        if meta.masks is not None and image_id not in meta.masks:
            defects.add(f"cannot write {split_dir}: id '{image_id}' has no mask record")
    defects.raise_if_any()


def _mask_lines(meta: SplitMetadata) -> list[str]:
    lines = []
    for image_id in meta.image_ids:
        record = meta.masks[image_id]
        # no mask: one line with an empty mask path, the image is all background
        for k, mask_path in enumerate(record.mask_paths or [""]):
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, split_dir)


def check_link(link: str | Path, target: str | Path) -> Path:
    """Whether :func:`link_dir` can make ``link`` point to ``target``; returns the absolute
    target. A converter checks every link before it writes anything.

    Raises:
        MetadataError: when ``target`` is not a folder, or ``link`` exists and is not a symlink (a
            real folder is never deleted).
    """
    link, target = Path(link), Path(target).resolve()
    if not target.is_dir():
        raise MetadataError(f"{target} is not a folder; cannot link {link} to it")
    if link.exists() and not link.is_symlink():
        raise MetadataError(
            f"{link} exists and is not a symbolic link; remove it (or pick another output folder) "
            f"so that it can point to {target}"
        )
    return target


def link_dir(link: str | Path, target: str | Path) -> None:
    """Make ``link`` a symbolic link to the folder ``target`` (absolute), replacing an older link.

    Converters use it to expose an original release's images under ``<root>/images`` without
    copying them.

    Raises:
        MetadataError: what :func:`check_link` refuses.
    """
    link, target = Path(link), check_link(link, target)
    if link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)
