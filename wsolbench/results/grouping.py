"""Which results may share a table, and which runs are seeds of one row.

- One protocol version (id and hash) and one data fingerprint per table: other numbers are not
  comparable, so mixing them is refused with the groups listed (``compare``, ``diff``).
- A row is (method, its plugin's release, pretrained weights by content, config without its seed
  and without the keys that choose those weights): runs that agree on these are seeds of one row
  and are averaged; anything else is another row. The same teacher run or checkpoint under two
  machines' paths is one row: its sha256 says what it is, its path does not. Another version of a
  plugin may compute something else under the same method name, so it is another row; its edits
  under one version (another commit) are not, and the leaderboard notes them.

Reads result records only: no torch, no numpy.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from wsolbench.config import dotted_leaves
from wsolbench.data.fingerprint import short
from wsolbench.results.environment import plugin_release
from wsolbench.results.record import Result, ResultError
from wsolbench.util.weights_source import content_key

# Config keys that do not change what a run is: runs differing only in these are seeds of one row.
SEED_KEYS = frozenset({"seed"})
# The last part of a config key that names a folder of one machine (``text.cache_dir``): where it
# keeps files, not what a run is.
LOCAL_KEY_NAMES = ("cache_dir",)


def is_local_key(key: str) -> bool:
    """Whether a dotted config key names a folder of one machine (:data:`LOCAL_KEY_NAMES`)."""
    return key.rpartition(".")[2] in LOCAL_KEY_NAMES


def check_one_protocol(found: list[tuple[Path, Result]]) -> tuple[str, str]:
    by_protocol: dict[tuple[str, str], list[Path]] = {}
    for path, result in found:
        by_protocol.setdefault((result.protocol, result.protocol_hash), []).append(path)
    if len(by_protocol) == 1:
        return next(iter(by_protocol))
    listing = "\n".join(
        f"  protocol {pid} hash {phash}: {some_files(files)}"
        for (pid, phash), files in sorted(by_protocol.items())
    )
    raise ResultError(
        "cannot compare results of different protocol versions (a different protocol id or hash "
        f"means numbers that are not comparable):\n{listing}\n"
        "Compare one protocol version at a time (pass only the paths of one group above), or "
        "re-run / re-evaluate the old results (`wsolbench eval`) under the current protocol."
    )


def data_groups(found: list[tuple[Path, Result]], by_data: bool) -> list[list[tuple[Path, Result]]]:
    """The results split by data fingerprint, in order of first appearance.

    Raises:
        ResultError: more than one fingerprint and not ``by_data``; lists each with its files.
    """
    groups: dict[str | None, list[tuple[Path, Result]]] = {}
    for path, result in found:
        groups.setdefault(result.data_sha256, []).append((path, result))
    if len(groups) > 1 and not by_data:
        listing = "\n".join(
            f"  data {short(sha)}{_version_note(members[0][1])}{split_sizes(members[0][1])}: "
            f"{some_files([p for p, _ in members])}"
            for sha, members in groups.items()
        )
        raise ResultError(
            "cannot rank results evaluated on different data (another --data-root, selection "
            "split, edited metadata or masks; 'unknown': written before data fingerprints; "
            f"'masks not hashed': written before mask contents were fingerprinted):\n{listing}\n"
            "Compare one data fingerprint at a time, or pass --by-data to show each as its own "
            "table; re-run the older results to rank them together."
        )
    return list(groups.values())


def _version_note(result: Result) -> str:
    """`` (masks not hashed)`` for a version-1 fingerprint of data with masks: its combined hash
    does not cover the mask files, so it differs from a newer one of the same data."""
    version = (result.data_fingerprint or {}).get("version")
    if version == 1 and any("mask" in counts for counts in result.counts.values()):
        return " (masks not hashed)"
    return ""


def split_sizes(result: Result) -> str:
    splits = (result.data_fingerprint or {}).get("splits", {})
    sizes = ", ".join(f"{r} {i.get('n_images')}" for r, i in sorted(splits.items()))
    return f" ({sizes})" if sizes else ""


def some_files(files: list[Path], limit: int = 8) -> str:
    shown = ", ".join(map(str, files[:limit]))
    return shown + (f" (and {len(files) - limit} more)" if len(files) > limit else "")


def strip_seed(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: strip_seed(v) for k, v in config.items() if k not in SEED_KEYS}
    return config


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def part_weights_keys(parts: Collection[str]) -> dict[str, tuple[str, ...]]:
    """The dotted config keys that may choose each part's weights: ``<part>`` (TeD-Loc's
    ``teacher=run:DIR``), ``<part>.pretrained`` and ``<part>.checkpoint``; for a method of one
    part also the top-level ``pretrained`` and ``checkpoint`` (the example plugin's)."""
    keys = {part: (part, f"{part}.pretrained", f"{part}.checkpoint") for part in parts}
    if len(keys) == 1:
        [part] = keys
        keys[part] += ("pretrained", "checkpoint")
    return keys


def weights_keys(result: Result) -> set[str]:
    """The config keys that chose the weights of the parts the result's provenance names
    (:func:`part_weights_keys`): its ``pretrained`` names what they loaded by content, so their
    values (paths, tags) say nothing more."""
    return {key for keys in part_weights_keys(result.provenance).values() for key in keys}


def row_config(result: Result) -> dict[str, Any]:
    """The result's config as a row tells runs apart: dotted leaves without the seed, the
    :func:`weights_keys` and the folders of one machine (:func:`is_local_key`); an eval's also
    without ``train.*`` (it trained nothing: the file it evaluated, named by sha256 in
    ``pretrained``, is what its numbers are of)."""
    dropped = weights_keys(result)
    evaluated = result.evaluated_weights is not None
    return {
        k: v
        for k, v in dotted_leaves(strip_seed(result.config)).items()
        if k not in dropped and not is_local_key(k) and not (evaluated and k.startswith("train."))
    }


def row_key(result: Result) -> tuple[str, str, str, str]:
    """What makes runs seeds of one row: method, its plugin's distribution and version
    (:func:`~wsolbench.results.environment.plugin_release`; ``""`` for a built-in method and a
    record without ``env["code"]``), weights by content (the same file loaded from another folder
    is the same row) and :func:`row_config`."""
    release = plugin_release(result.env.get("code"))
    return (result.method, release, content_key(result.pretrained), canonical(row_config(result)))


def check_comparable(found: list[tuple[Path, Result]]) -> None:
    """Raise unless the results share one protocol version and one data fingerprint, and that
    data is what a shipped protocol pins."""
    check_one_protocol(found)
    check_pinned_data(found)
    data_groups(found, by_data=False)


def check_pinned_data(found: list[tuple[Path, Result]]) -> None:
    """Raise if a result claims a shipped protocol (its id and hash) but its data differs from
    what that protocol pins: such a result was not made on the protocol's data (a hand-edited
    file, or a protocol copy without its pins)."""
    from wsolbench.protocol import PROTOCOL_DIR, load_protocol

    for path, result in found:
        if not (PROTOCOL_DIR / f"{result.protocol}.yaml").is_file():
            continue
        shipped = load_protocol(result.protocol)
        splits = (result.data_fingerprint or {}).get("splits")
        if shipped.hash != result.protocol_hash or not splits:
            continue  # another version (refused elsewhere), or data unknown (shown as such)
        wrong = [
            role
            for role, pin in shipped.data_pins.items()
            if splits.get(role, {}).get("sha256") != pin
        ]
        if wrong:
            raise ResultError(
                f"{path}: claims {result.protocol} but its {', '.join(wrong)} data is not the "
                f"data {result.protocol} pins (its fingerprint {short(result.data_sha256)}); it "
                "was not made on the protocol's data: leave it out, or re-run it there"
            )
