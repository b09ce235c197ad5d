"""Data fingerprints: a content hash of the records a run trained and was evaluated on.

Two runs are comparable only if they saw the same data. A protocol names its splits, but a
``--data-root`` can hold anything in those folders (a synthetic set generated with other settings,
a CUB root with another selection split), so every result carries the fingerprint of the data it
actually read, ``compare`` refuses to rank different fingerprints together, and a protocol may pin
the fingerprints of its official data so that ``run`` refuses other data before any work.

What is hashed, per split: every image's id, class label, original size, boxes (in file order) and
mask records (mask paths and ignore path) — the records that define what is scored. Not the pixels:
reading every image would cost minutes on ILSVRC, and the ids and sizes already pin which images
they are. Records are hashed sorted by image id, so reordering ``image_ids.txt`` (which changes no
number) does not change the fingerprint.

Layout of a fingerprint (``result.json``'s ``data_fingerprint``)::

    {"sha256": "<hex of all splits>", "version": 1,
     "splits": {"train": {"sha256": "<hex>", "n_images": 1000}, "val": {...}, "test": {...}}}

The combined ``sha256`` hashes the per-split hashes by role, so it changes when any split changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from wsolbench.data.metadata import SplitMetadata

#: How fingerprints are computed; part of every hash, bumped if the recipe ever changes.
FINGERPRINT_VERSION = 1
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


def data_fingerprint(splits: Mapping[str, SplitMetadata]) -> dict:
    """The fingerprint of a dataset's splits, keyed by role (``train``, ``val``, ``test``).

    Returns:
        ``{"sha256", "version", "splits": {role: {"sha256", "n_images"}}}``.
    """
    per_split = {
        role: {"sha256": split_fingerprint(meta), "n_images": len(meta)}
        for role, meta in sorted(splits.items())
    }
    combined = json.dumps(
        {"version": FINGERPRINT_VERSION, "splits": {r: s["sha256"] for r, s in per_split.items()}},
        sort_keys=True,
    )
    return {
        "sha256": hashlib.sha256(combined.encode("utf-8")).hexdigest(),
        "version": FINGERPRINT_VERSION,
        "splits": per_split,
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
