"""Weights sources in a table: each one's short name, unique within the table, and its footnote.

A result's ``pretrained`` names every part's weights in full, e.g. ``backbone=none;
text=file:/root/.cache/wsolbench/synthclip/synthclip-v1-db89e33c5b28.pt (gelu);
teacher=run:/root/.cache/wsolbench/synthcam/synthcam-v1-dd2dd7afc8b6 (weights sha256 41e2dfa9979f,
data a1b07468cea2)``: far too long for a cell. A cell shows short names instead
(``backbone none; text synthclip-v1; teacher synthcam-v1``) and a footnote under the table gives
each shortened source in full, keyed by its short name, so no path or digest is lost.

A short name is:

- a tag as written: ``none``, ``n/a``, ``dino_vits16``, ``cache:resnet50.tv_in1k`` →
  ``resnet50.tv_in1k``;
- a file's name: ``file:/any/where/x.pth`` → ``x.pth``; with the file's sha256 recorded
  (``file:/w/weights.pt (sha256 0a1b2c3d4e5f)``) → ``weights.pt@0a1b2c3d``, since a user's file
  name (``weights.pt``, ``best.pth``) says little; a wsolbench cache entry, named
  ``<name>-<12 hex digest>``, → ``<name>`` (``synthclip-v1``);
- a run's folder: a cache entry → its name (``synthcam-v1``), any other folder → its last two
  parts (``cam/seed0``: method and seed in a work dir).

Two different sources never share a short name in one table: on a clash each of them adds its
content digest (``synthclip-v1@db89e33c``), and where that still clashes (one file, two
activations) its full source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import PurePosixPath

from wsolbench.leaderboard.rows import MISSING, Row
from wsolbench.util.weights_source import SHA256, source_parts, split_source

DIGEST_CHARS = 8  # the hex digits of a digest a short name carries
# wsolbench names its cache entries "<name>-<12 hex digits>" (the digest of what built them)
_CACHE_ENTRY = re.compile(r"(?P<name>.+)-(?P<digest>[0-9a-f]{12})")


def short_name(source: str) -> str:
    """The name a cell shows for one source (see the module docstring); unique only within a
    table through :func:`short_names`."""
    kind, body, details = split_source(source)
    if kind == "cache":
        return body
    if kind == "file":
        path = PurePosixPath(body)
        entry = _CACHE_ENTRY.fullmatch(path.stem)
        if entry:
            return entry["name"]
        sha = SHA256.search(details)
        return f"{path.name}@{sha['digest'][:DIGEST_CHARS]}" if sha else path.name
    if kind == "run":
        folder = PurePosixPath(body)
        entry = _CACHE_ENTRY.fullmatch(folder.name)
        return entry["name"] if entry else "/".join(folder.parts[-2:])
    return source


def _digest(source: str) -> str | None:
    """The content digest a source records: a sha256 in its details, else a cache entry's."""
    kind, body, details = split_source(source)
    sha = SHA256.search(details)
    if sha:
        return sha["digest"][:DIGEST_CHARS]
    path = PurePosixPath(body)
    entry = _CACHE_ENTRY.fullmatch(path.stem if kind == "file" else path.name)
    return entry["digest"][:DIGEST_CHARS] if kind and entry else None


def _candidates(source: str) -> list[str]:
    """Names for ``source`` from shortest to full, tried in turn while two sources clash."""
    name, digest = short_name(source), _digest(source)
    with_digest = f"{name}@{digest}" if digest and not name.endswith(f"@{digest}") else name
    return [name, with_digest, source]


def short_names(sources: Iterable[str]) -> dict[str, str]:
    """Each source → its short name, no two different sources sharing one.

    Every source whose name clashes moves on to its next, longer candidate (short name, then with
    its digest, then the source itself) until no two clash: full sources differ, so it ends.
    """
    return _unique(sources, _candidates)


def _unique(sources: Iterable[str], candidates_of: Callable[[str], list[str]]) -> dict[str, str]:
    """Each source → the first of its ``candidates_of`` (shortest first, the source itself last)
    that no other source shares."""
    distinct = sorted(set(sources))
    level = dict.fromkeys(distinct, 0)
    candidates = {source: candidates_of(source) for source in distinct}
    while True:
        names = {source: candidates[source][level[source]] for source in distinct}
        owners: dict[str, set[str]] = {}
        for source, name in names.items():
            owners.setdefault(name, set()).add(source)
        clashing = [s for group in owners.values() if len(group) > 1 for s in group]
        if not clashing:
            return names
        for source in clashing:
            level[source] = min(level[source] + 1, len(candidates[source]) - 1)


def _run_sources(rows: Iterable[Row]) -> list[str]:
    """Every source the run rows of a table load (published rows load none)."""
    return [
        source for row in rows if not row.published for _, source in source_parts(row.pretrained)
    ]


def table_sources(rows: Iterable[Row]) -> dict[str, str]:
    """The short names of every source the run rows of a table load."""
    return short_names(_run_sources(rows))


def full_sources(rows: Iterable[Row]) -> dict[str, str]:
    """Every source the run rows of a table load, in full but for the folders of the machine that
    ran it (:func:`portable`); a source whose portable text another one shares keeps its whole
    text, so two different sources never read alike. What ``compare --wide`` and the CSV show."""
    return _unique(_run_sources(rows), lambda source: [portable(source), source])


def pretrained_cell(row: Row, names: dict[str, str], *, full: bool = False) -> str:
    """A row's Pretrained cell from the table's ``names`` of its sources: short names
    (:func:`table_sources`: ``backbone none; text synthclip-v1``), or with ``full`` whole sources
    (:func:`full_sources`: ``backbone=none; text=file:synthclip/synthclip-v1-db89e33c5b28.pt
    (gelu)``, as the record spells its parts)."""
    if row.published:
        return MISSING
    between = "=" if full else " "
    return "; ".join(
        f"{part}{between}{names[source]}" if part else names[source]
        for part, source in source_parts(row.pretrained)
    )


def portable(source: str) -> str:
    """A source as a footnote shows it: what identifies the weights (the file or folder name,
    which for a cache entry carries its digest, and every recorded digest) without the folders
    above it, which name one machine: ``file:/root/.cache/wsolbench/synthclip/synthclip-v1-
    db89e33c5b28.pt (gelu)`` → ``file:synthclip/synthclip-v1-db89e33c5b28.pt (gelu)``. The
    full text is in the result, and in ``compare --wide``."""
    kind, body, details = split_source(source)
    if kind not in ("file", "run"):
        return source
    del details  # kept as written: the loader's digests and settings
    return source.replace(body, "/".join(PurePosixPath(body).parts[-2:]), 1)


def weights_notes(names: dict[str, str]) -> list[str]:
    """One footnote per source its short name does not spell out, sorted by name:
    ``"Pretrained synthclip-v1: file:synthclip/synthclip-v1-db89e33c5b28.pt (gelu)"``."""
    return [
        f"Pretrained {name}: {portable(source)}"
        for source, name in sorted(names.items(), key=lambda item: item[1])
        if name != source
    ]
