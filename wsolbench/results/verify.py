"""What a reader checks before it trusts a result: every file the record leans on is its own.

A ``result.json`` names the files beside it by content: ``per_image`` (the per-image records, whose
sums must give back the stored counts) and ``weights_file`` (the exported ``weights.pt``). In a work
dir it also sits beside the run record (``config.yaml``), which must describe the same run. Every
reader — ``compare``, ``diff``, ``visualize``, ``eval --weights``, ``run --resume`` — goes through
:func:`verify_result` (``weights=True`` where it loads the weights), so a file copied in from
another run, a hand-edited count, or a symbolic link pointing elsewhere is refused, named, before
any number is shown. ``docs/records.md`` says what each command checks, in one place.

Checks, cheapest first:

1. no symbolic link among the files read (a link inside a work dir can name another run's file);
2. the counts are self-consistent: each split's ``n_images`` is the image count its data
   fingerprint records, and every count lies in ``[0, n_images]``;
3. beside a run record: the same method, dataset, protocol, data, seed, config and weights;
4. the per-image records have the sha256 the result names and add up to its counts exactly;
5. (``weights=True``) ``weights.pt`` has the sha256 the result names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wsolbench.results.per_image import load_records
from wsolbench.results.record import RESULT_FILENAME, Result, load_result
from wsolbench.results.workdir import (
    RECORD_FILE,
    WorkDirError,
    differences,
    identity,
    read_record,
    refuse_symlinks,
)
from wsolbench.util.weights_source import file_sha256

logger = logging.getLogger(__name__)

FIX = "re-evaluate the run (`wsolbench eval`) or restore the run's own files"


class BindingError(ValueError):
    """A file is not the one its record names; the message names the file and the record."""


def record_differences(record: dict, result: Result) -> list[str]:
    """How a result differs from the run record beside it: ``"<key>: <record's> in config.yaml,
    <result's> in result.json"`` per differing key (config keys dotted); empty for one run."""
    described = {
        "method": result.method,
        "dataset": result.dataset,
        "protocol": result.protocol,
        "protocol_hash": result.protocol_hash,
        "data_fingerprint": result.data_sha256,
        "seed": result.seed,
        "config": result.config,
    }
    recorded = {key: value for key, value in identity(record).items() if key in described}
    lines = differences(recorded, described, f"in {RECORD_FILE}", f"in {RESULT_FILENAME}")
    threads = result.env.get("torch_threads")
    if "threads" in record and threads is not None and record["threads"] != threads:
        lines.append(
            f"threads: {record['threads']} in {RECORD_FILE}, {threads} in {RESULT_FILENAME}"
        )
    if "pretrained" in record and record["pretrained"] != result.pretrained:
        lines.append(
            f"pretrained: {record['pretrained']!r} in {RECORD_FILE}, {result.pretrained!r} in "
            f"{RESULT_FILENAME}"
        )
    return lines


def check_counts_consistent(path: Path, result: Result) -> None:
    """Refuse counts that contradict themselves or the data they claim (any result, cheap)."""
    from wsolbench.metrics import check_counts

    splits = (result.data_fingerprint or {}).get("splits", {})
    for split, counts in result.counts.items():
        try:
            check_counts(counts)
        except ValueError as exc:
            raise BindingError(f"{path}: {split} {exc}; {FIX}") from None
        recorded = splits.get(split, {}).get("n_images")
        if recorded is not None and counts.get("n_images") != recorded:
            raise BindingError(
                f"{path}: the {split} counts hold {counts.get('n_images')} images, its data "
                f"fingerprint {recorded}: the counts were altered; {FIX}"
            )


def verify_result(path: str | Path, result: Result, *, weights: bool = False) -> None:
    """Check that ``result`` (read from ``path``) and the files it names belong together.

    Args:
        weights: also check ``weights.pt`` against the digest the result names (readers that
            load the weights: ``visualize``, ``eval --weights``, ``run --resume``).

    Raises:
        BindingError, PerImageError, WorkDirError: naming the file that is not the record's own.
    """
    path = Path(path)
    folder = path.parent
    named = [folder / f["file"] for f in (result.per_image, result.weights_file) if f is not None]
    for file in (path, *named):
        if file.is_symlink():
            raise WorkDirError(
                f"{file} is a symbolic link; a result and its files must be the run's own ({FIX})"
            )
    check_counts_consistent(path, result)
    if (folder / RECORD_FILE).is_file():
        refuse_symlinks(folder)
        record = read_record(folder) or {}
        diff = record_differences(record, result)
        if diff:
            raise BindingError(
                f"{path} is not the result of the run recorded in {folder / RECORD_FILE} "
                f"({'; '.join(diff[:4])}); {FIX}"
            )
    if result.per_image is not None:
        load_records(folder / result.per_image["file"], result.per_image["sha256"], result.counts)
    if weights and result.weights_file is not None:
        file = folder / result.weights_file["file"]
        if not file.is_file():
            raise BindingError(f"{file} is missing; {path} records it as the run's weights; {FIX}")
        if file_sha256(file) != result.weights_file["sha256"]:
            raise BindingError(
                f"{file} is not the weights {path} records (sha256 differs: copied from another "
                f"run?); {FIX}"
            )


def verify_run_weights(weights: Path, sha256: str) -> None:
    """``eval --weights`` of a file in a run's work dir: it must be the weights that run's result
    records (a loose file, outside any work dir, is described by the command line alone).

    Args:
        sha256: the file's sha256 hex (the caller has read it).

    Raises:
        BindingError: the run is unfinished, or the file is not the one its result records.
    """
    folder = Path(weights).parent
    if not (folder / RECORD_FILE).is_file():
        return
    result_path = folder / RESULT_FILENAME
    if not result_path.is_file():
        raise BindingError(
            f"{weights} belongs to an unfinished run ({folder} has no {RESULT_FILENAME}): finish "
            "it with `wsolbench run ... --resume`, or copy the file out of the work dir"
        )
    result = load_result(result_path)
    verify_result(result_path, result)
    named = result.weights_file
    if named is None:
        logger.warning(
            "%s predates results that name their weights: %s cannot be checked against it",
            result_path,
            weights,
        )
    elif named["file"] != Path(weights).name or named["sha256"] != sha256:
        raise BindingError(
            f"{weights} is not the weights {result_path} records (sha256 differs: copied from "
            f"another run?); {FIX}"
        )


def verify_results(found: Sequence[tuple[Path, Result]]) -> None:
    """:func:`verify_result` of every result, in parallel (reading the per-image records is
    LZMA decompression, which releases the GIL); the first failure in ``found``'s order raises."""
    workers = max(1, min(len(found), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(verify_result, path, result) for path, result in found]
    for future in futures:
        future.result()
