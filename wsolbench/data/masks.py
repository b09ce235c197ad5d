"""Binary copies of a release's ground-truth masks, written under a prepared root's ``masks/``.

wsolbench scores a mask file only if it is binary (0/255 or 0/1,
:func:`wsolbench.metrics.pxap.decode_mask`), which catches a mask root pointing at photos. Some
releases label each object with its own value instead: GlaS's ``<name>_anno.bmp`` number the glands
of an image 1..N. The histology converters therefore write a binary copy of every mask a split
names, at the same relative path under ``<root>/masks`` (so ``localization.txt`` keeps its lines):
on where the grayscale value is > 0.5, the protocol's own reading of a mask. Taken before the
nearest-neighbour resize to the evaluation size, it changes nothing that is scored: nearest
neighbour only picks pixels, so thresholding before or after it gives the same foreground.

The folder is written aside and renamed into place once the whole conversion is complete
(:mod:`wsolbench.data.prepared`): an interrupted one leaves no half-written ``masks/``. It carries
a marker file, :data:`MARKER`: a later conversion replaces only a ``masks/`` it finds the marker in
(or a link), never a folder of someone else's masks.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from wsolbench.data.metadata import MetadataError, SplitMetadata
from wsolbench.util.atomic import replace_folder

#: Formats a binary copy can keep its name in (lossless: a JPEG would blur 0/255 into grey).
LOSSLESS_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
#: The file that marks a ``masks/`` folder as written here (safe to replace).
MARKER = ".wsolbench-binary-masks"
#: path -> (split folder, image id, the image's (w, h) or None): what :func:`mask_files` finds.
MaskFiles = dict[str, tuple[Path, str, "tuple[int, int] | None"]]


def mask_files(splits: Iterable[SplitMetadata]) -> MaskFiles:
    """Every mask and ignore path the splits name: path -> (split folder, image id, image (w, h)
    or None), first naming first; each path must stay inside the mask root.

    Raises:
        MetadataError: a path that is absolute, climbs out with ``..``, or is not a lossless
            image format, naming the split and the image.
    """
    found: MaskFiles = {}
    for meta in splits:
        for image_id, record in (meta.masks or {}).items():
            paths = [*record.mask_paths, *([record.ignore_path] if record.ignore_path else [])]
            for rel in paths:
                where = f"{meta.split_dir / 'localization.txt'}: mask {rel!r} of '{image_id}'"
                pure = PurePosixPath(rel)
                if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
                    raise MetadataError(
                        f"{where} leaves the mask root; mask paths are relative to it, without "
                        "'..' (fix the line or pass the right --masks DIR)"
                    )
                if pure.suffix.lower() not in LOSSLESS_SUFFIXES:
                    raise MetadataError(
                        f"{where} is not a lossless image format ({', '.join(LOSSLESS_SUFFIXES)}); "
                        "a binary copy could not keep its name: convert the masks to PNG"
                    )
                found.setdefault(rel, (meta.split_dir, image_id, meta.sizes.get(image_id)))
    return found


def binary_mask(path: Path, image_size: tuple[int, int] | None) -> np.ndarray:
    """[h, w] uint8 0/255: on where the file's grayscale value is > 0.5 (any label > 0).

    Raises:
        MetadataError: the file is missing, undecodable, or not of its image's (w, h).
    """
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if gray is None:
        raise MetadataError(
            f"mask {path} is missing or cannot be decoded; check --masks DIR (mask paths are "
            "relative to it) and that the release is extracted completely"
        )
    height, width = gray.shape
    if image_size is not None and (width, height) != tuple(image_size):
        raise MetadataError(
            f"mask {path} is {width}x{height} but its image is {image_size[0]}x{image_size[1]}; "
            "a mask must have its image's size: is it the mask of another image?"
        )
    return np.where(gray > 0.5, 255, 0).astype(np.uint8)


def build_binary_masks(
    source_root: Path, masks: MaskFiles, out_root: Path, *, progress: bool = False
) -> Path:
    """Write a binary copy of each mask of :func:`mask_files` from ``source_root`` into a new
    hidden sibling of ``out_root``, for :func:`place_binary_masks` to rename into place once the
    rest of the conversion is whole too.

    Returns:
        The folder written (removed again if writing fails).

    Raises:
        MetadataError: a mask is missing, undecodable or of the wrong size (named), cannot be
            written, or ``out_root`` is a folder this module did not write.
    """
    out_root = Path(out_root)
    if out_root.exists() and not out_root.is_symlink() and not (out_root / MARKER).is_file():
        raise MetadataError(
            f"{out_root} exists and was not written by `wsolbench prepare`; remove it or choose "
            "another --out, so that it can hold the binary masks"
        )
    out_root.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out_root.name}.", dir=out_root.parent))
    shown = items = list(masks.items())
    if progress:
        from wsolbench.util.progress import progress as progress_bar

        shown = progress_bar(items, desc="writing binary masks", unit="mask")
    try:
        os.chmod(built, 0o755)  # mkdtemp makes it private; a dataset folder is meant to be shared
        for rel, (_split, _image_id, image_size) in shown:
            binary = binary_mask(source_root / rel, image_size)
            target = built / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), binary):
                raise MetadataError(f"cannot write the binary mask {target}; check free space")
        (built / MARKER).write_text("binary masks written by `wsolbench prepare`\n")
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return built


def place_binary_masks(built: Path, out_root: Path) -> None:
    """Rename the masks :func:`build_binary_masks` wrote to ``out_root``, replacing it whole."""
    if out_root.is_symlink():  # a link to masks elsewhere: replaced, the masks it names kept
        out_root.unlink()
    replace_folder(built, out_root)
