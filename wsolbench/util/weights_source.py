"""How a record names the weights a method loaded: by name and content, never by a machine path.

A method's ``provenance`` maps each pretrained part to a *source* text::

    none                                            random initialisation
    file:<file name> (sha256 <hex>[, <details>])    a weights file
    cache:<tag> (sha256 <hex>[, <details>])         a library's cached weights (timm, open_clip)
    run:<folder name> (weights sha256 <hex>, data <hex>)   a finished run's ``weights.pt``

No folder is part of a source: the same file loaded from two machines' caches reads the same, and
its sha256 (the first :data:`DIGEST_HEX` hex digits) says which weights they are. Details are
what the loader added that changes the model (an activation, a layout). A record's ``pretrained``
joins the parts: ``backbone=none; text=file:synthclip-v1-db89e33c5b28.pt (sha256 0a1b2c3d4e5f,
gelu)``. Rows of a table group by :func:`content_key`, which keeps the digests and drops the
names, so one file under two names is one row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Sequence
from pathlib import Path

DIGEST_HEX = 12  # hex digits of a sha256 a source shows
KINDS = ("file", "cache", "run")
# "<part>=<source>" entries of a several-part ``pretrained``, split where the next part begins
# (a source's own text may hold "; ")
_NEXT_PART = re.compile(r"; (?=\w+=)")
_PART = re.compile(r"(?P<part>\w+)=(?P<source>.*)", re.DOTALL)
# "<body> (<details>)": what the source is, then what the loader added (digests, settings)
_DETAILS = re.compile(r"(?P<body>.*?)(?: \((?P<details>[^()]*)\))?", re.DOTALL)
SHA256 = re.compile(r"\bsha256 (?P<digest>[0-9a-f]{8,64})\b")


def file_sha256(path: str | Path) -> str:
    """The sha256 hex of a file, read in 1 MiB blocks (weights files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def describe(kind: str, name: str, sha256: str, details: Sequence[str] = ()) -> str:
    """A source text: ``describe("file", "x.pt", digest, ["gelu"])`` →
    ``"file:x.pt (sha256 0a1b2c3d4e5f, gelu)"``.

    Args:
        kind: ``file``, ``cache`` or ``run``.
        name: a file name, a cache tag or a folder name: never a path with folders.
        sha256: the weights' sha256 hex (of the file; of ``weights.pt`` for a run).
        details: what else decides the model (``"gelu"``, ``"data a1b07468cea2"``).
    """
    if kind not in KINDS:
        raise ValueError(f"weights source kind {kind!r}: use one of {', '.join(KINDS)}")
    label = "weights sha256" if kind == "run" else "sha256"
    inside = ", ".join([f"{label} {sha256[:DIGEST_HEX]}", *details])
    return f"{kind}:{name} ({inside})"


def source_parts(pretrained: str) -> list[tuple[str, str]]:
    """A ``pretrained`` text as (part, source) pairs; one unlabelled source gives ``("", it)``.

    ``"backbone=none; text=file:w.pt"`` → ``[("backbone", "none"), ("text", "file:w.pt")]``.
    """
    entries = _NEXT_PART.split(pretrained)
    matches = [_PART.fullmatch(entry) for entry in entries]
    if len(entries) > 1 and all(matches):
        return [(m["part"], m["source"]) for m in matches]
    return [("", pretrained)]


def split_source(source: str) -> tuple[str, str, str]:
    """``"file:x.pt (sha256 0a1b, gelu)"`` → ``("file", "x.pt", "sha256 0a1b, gelu")``; a bare
    tag has no kind; a bare path (results written before ``file:`` existed) is a file."""
    match = _DETAILS.fullmatch(source)
    body, details = match["body"], match["details"] or ""
    kind, colon, rest = body.partition(":")
    if colon and kind in KINDS:
        return kind, rest, details
    if body.startswith(("/", "~")):
        return "file", body, details
    return "", body, details


def source_key(source: str) -> str:
    """What one source loads, by content: with a digest, its kind and details (the name
    dropped); any other as written."""
    kind, _, details = split_source(source)
    return f"{kind}:({details})" if SHA256.search(details) else source


def content_key(pretrained: str) -> str:
    """What a ``pretrained`` text loads, by content (:func:`source_key` of each part). Two
    records load the same weights exactly when their keys are equal."""
    return "; ".join(f"{part}={source_key(source)}" for part, source in source_parts(pretrained))


def content_differences(
    recorded: str, here: str, parts: Collection[str] | None = None
) -> list[tuple[str, str, str]]:
    """``(part, recorded source, source here)`` of each part whose recorded source names a
    digest and whose weights here are other ones (:func:`source_key`): what a rerun would load
    instead of what the record says. A part without a recorded digest (an older record) is not
    judged; ``parts``, when given, limits the judgement to those.

    ``here`` may be one unlabelled source (``none``, ``n/a``, or the one part a method has built
    so far): each part is then compared with it."""
    now = dict(source_parts(here))
    missing = now.get("", "absent")  # an unlabelled source stands for any part
    differing = []
    for part, source in source_parts(recorded):
        loaded = now.get(part, missing)
        judged = parts is None or part in parts
        if (
            judged
            and SHA256.search(split_source(source)[2])
            and source_key(source) != source_key(loaded)
        ):
            differing.append((part, source, loaded))
    return differing
