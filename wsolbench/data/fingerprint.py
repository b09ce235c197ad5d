"""Data fingerprints: a content hash of the records a run trained and was evaluated on.

Two runs are comparable only if they saw the same data. A protocol names its splits, but a
``--data-root`` can hold anything in those folders (a synthetic set generated with other settings,
a CUB root with another selection split), so every result carries the fingerprint of the data it
actually read, ``compare`` refuses to rank different fingerprints together, and a protocol may pin
the fingerprints of its official data so that ``run`` refuses other data before any work.

What is hashed, per split: every image's id, class label, original size, boxes (in file order) and
mask records (mask paths and ignore path) — the records that define what is scored (the split's
``sha256``, which protocols pin). Then, for a split with masks, the content of every mask and
ignore file (``masks_sha256``): masks are ground truth, scored pixel by pixel, and the same
records can name other pixels. Not the images' pixels: reading every image would cost minutes on
ILSVRC, and the ids and sizes already pin which images they are. Records are hashed sorted by image
id, so reordering ``image_ids.txt`` (which changes no number) does not change the fingerprint.

Layout of a fingerprint (``result.json``'s ``data_fingerprint``)::

    {"sha256": "<hex of all splits>", "version": 2,
     "splits": {"train": {"sha256": "<hex>", "n_images": 1000},
                "val": {"sha256": "<hex>", "n_images": 200, "masks_sha256": "<hex>"}, ...}}

The combined ``sha256`` hashes the per-split hashes (and mask digests) by role, so it changes when
any split changes. Version 1 (before 2026-12-07) hashed no mask file; a dataset without masks has
the same fingerprint in both versions, and says version 1.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from wsolbench.data.metadata import MetadataError, SplitMetadata
from wsolbench.data.metadata.files import mask_files

#: How a split's records are hashed; part of every split hash (what protocols pin).
FINGERPRINT_VERSION = 1
#: The fingerprint that also hashes the mask files' content (datasets with masks).
MASKS_VERSION = 2
SHORT = 12  # hex digits shown in tables and messages


class DataFingerprintError(ValueError):
    """The data does not match what a protocol pins; the message names both fingerprints."""


def _image_record(meta: SplitMetadata, image_id: str) -> list:
    size = meta.sizes.get(image_id)
    boxes = meta.boxes.get(image_id) if meta.boxes is not None else None
    masks = meta.masks.get(image_id) if meta.masks is not None else None
    return [
        image_id,
        int(meta.labels[image_id]),
        None if size is None else [int(v) for v in size],
        None if boxes is None else [[int(v) for v in box] for box in boxes],
        None if masks is None else [list(masks.mask_paths), masks.ignore_path],
    ]


def split_fingerprint(meta: SplitMetadata) -> str:
    """sha256 hex of one split's records (see the module docstring)."""
    digest = hashlib.sha256(f"wsolbench-split-v{FINGERPRINT_VERSION}\n".encode())
    for image_id in sorted(meta.image_ids):
        line = json.dumps(_image_record(meta, image_id), separators=(",", ":"))
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def masks_fingerprint(meta: SplitMetadata, mask_root: Path) -> str:
    """sha256 hex of the content of every mask and ignore file a split names (under
    ``mask_root``), with the image and path each belongs to.

    Raises:
        MetadataError: a file named is missing (its path and image, and the fix).
    """
    digest = hashlib.sha256(b"wsolbench-masks-v1\n")
    for image_id, rel in sorted(mask_files(meta.masks or {})):
        try:
            data = (mask_root / rel).read_bytes()
        except OSError as exc:
            raise MetadataError(
                f"mask file {mask_root / rel} (of '{image_id}') cannot be read "
                f"({exc.strerror or exc}); check the data root's masks/ folder"
            ) from None
        line = json.dumps([image_id, rel, hashlib.sha256(data).hexdigest()])
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def data_fingerprint(splits: Mapping[str, SplitMetadata], mask_root: Path | None = None) -> dict:
    """The fingerprint of a dataset's splits, keyed by role (``train``, ``val``, ``test``).

    Args:
        splits: role → records (:func:`wsolbench.data.sources.read_splits`).
        mask_root: the root's ``masks/`` folder when the protocol scores masks: the mask files
            of every split with masks are hashed too (version 2).

    Returns:
        ``{"sha256", "version", "splits": {role: {"sha256", "n_images"[, "masks_sha256"]}}}``.
    """
    per_split = {}
    for role, meta in sorted(splits.items()):
        per_split[role] = {"sha256": split_fingerprint(meta), "n_images": len(meta)}
        if mask_root is not None and meta.masks is not None:
            per_split[role]["masks_sha256"] = masks_fingerprint(meta, mask_root)
    masks = {r: s["masks_sha256"] for r, s in per_split.items() if "masks_sha256" in s}
    # without masks, version 1's recipe exactly: such a dataset's fingerprint did not change
    version = MASKS_VERSION if masks else FINGERPRINT_VERSION
    return {"sha256": _combined(per_split, masks), "version": version, "splits": per_split}


def _combined(per_split: dict, masks: dict) -> str:
    """The hash over the per-split record hashes by role, and over the mask digests when there
    are any (version 2; version 1 without)."""
    content: dict = {"splits": {role: split["sha256"] for role, split in per_split.items()}}
    content["version"] = MASKS_VERSION if masks else FINGERPRINT_VERSION
    if masks:
        content["masks"] = masks
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()


def records_fingerprint(fingerprint: dict) -> str:
    """The combined hash of the split records alone (version 1's recipe): what a record made
    before mask files were hashed names for the same data."""
    return _combined(fingerprint["splits"], {})


def as_version_1(fingerprint: dict) -> dict:
    """``fingerprint`` as version 1 wrote it (no mask digests): how a run begun before mask files
    were hashed goes on recording its data, so that its record, checkpoints and result agree."""
    splits = {
        role: {k: v for k, v in split.items() if k != "masks_sha256"}
        for role, split in fingerprint["splits"].items()
    }
    return {
        "sha256": records_fingerprint(fingerprint),
        "version": FINGERPRINT_VERSION,
        "splits": splits,
    }


def short(sha256: str | None) -> str:
    """The short form shown to people (12 hex digits), or ``"unknown"``."""
    return sha256[:SHORT] if sha256 else "unknown"


def check_pins(fingerprint: dict, pins: Mapping[str, str], *, protocol: str, hint: str) -> None:
    """Raise unless every split a protocol pins has the pinned fingerprint.

    Args:
        fingerprint: from :func:`data_fingerprint`.
        pins: role → sha256 hex the protocol pins (splits it does not pin are not checked).
        protocol: the protocol id, for the message.
        hint: how to get the protocol's official data (the dataset source's advice).

    Raises:
        DataFingerprintError: naming the protocol, each differing split's two fingerprints and
            image counts, the likely cause and the fix.
    """
    wrong = []
    for role, pinned in sorted(pins.items()):
        found = fingerprint["splits"].get(role)
        if found is None:
            wrong.append(f"split {role} is missing (pinned {short(pinned)})")
        elif found["sha256"] != pinned:
            wrong.append(
                f"split {role} has fingerprint {short(found['sha256'])} "
                f"({found['n_images']} images), the protocol pins {short(pinned)}"
            )
    if wrong:
        raise DataFingerprintError(
            f"the data root does not hold {protocol}'s data: {'; '.join(wrong)}. Likely cause: the "
            "root was generated or prepared with other settings, or its metadata was edited. Use "
            f"the protocol's own data ({hint}), or evaluate other data under a protocol file of "
            "your own (--protocol FILE, without a data_fingerprint pin)"
        )
