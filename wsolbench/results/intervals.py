"""Intervals and paired tests of result files: their per-image records, resampled.

The glue between results (``result.json`` + ``per_image.npz``) and
:mod:`wsolbench.results.bootstrap`: ``compare --ci`` adds an interval to every cell and marks the
rows not significantly different from the top row; ``wsolbench diff A B`` compares two rows metric
by metric. Both refuse runs of different data (the per-image records must list the same images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsolbench.results.bootstrap import (
    BootstrapError,
    MetricTerms,
    PairedDifference,
    check_same_images,
    interval,
    metric_terms,
    paired_difference,
    resampled,
)
from wsolbench.results.grouping import check_comparable, row_key
from wsolbench.results.per_image import SplitRecords, load_records
from wsolbench.results.record import METRIC_KEYS, METRIC_NAMES, Result, ResultError, find_results
from wsolbench.results.verify import verify_results
from wsolbench.util.markdown import github_table

SIGNIFICANCE = 0.05
SIMILAR_MARK = "≈"


@dataclass
class RunRecords:
    """One run's per-image records of a split, and the τ its policy fixes (None: an oracle
    policy, whose τ is re-picked on every resample; ``separate``: ``oracle-separate``)."""

    path: Path
    result: Result
    records: SplitRecords
    tau: dict[str, float] | None
    separate: bool = False

    def terms(self, key: str) -> MetricTerms:
        return metric_terms(self.records, key, self.tau, separate=self.separate)


def load_run_records(path: Path, result: Result, split: str, policy: str) -> RunRecords:
    """Read a result's per-image records of ``split`` (checked against its counts).

    Raises:
        BootstrapError: the result has no records (made before they existed) or not of ``split``.
    """
    from wsolbench.metrics import summarize
    from wsolbench.metrics.policies import ORACLE_POLICIES

    if result.per_image is None:
        raise BootstrapError(
            f"{path}: no per-image records (the result predates them); re-run it, or re-evaluate "
            "its weights with `wsolbench eval`, to make them"
        )
    records = load_records(
        Path(path).parent / result.per_image["file"], result.per_image["sha256"], result.counts
    )
    if split not in records:
        raise BootstrapError(f"{path}: no per-image records of the {split!r} split")
    tau = None
    if policy not in ORACLE_POLICIES:
        _, tau = summarize(result.counts[split], policy, val_counts=result.counts.get("val"))
    separate = policy == "oracle-separate"
    return RunRecords(Path(path), result, records[split], tau, separate)


def row_intervals(
    rows: Sequence[Sequence[RunRecords]],
    keys: Sequence[str],
    *,
    resamples: int,
    seed: int,
) -> list[dict[str, tuple[float, float]]]:
    """Per row (its seeds' records), per metric key: the 95 % interval of the seed mean over
    image resamples shared by every row (:mod:`wsolbench.results.bootstrap`)."""
    check_same_images([(str(run.path), run.records) for row in rows for run in row])
    out = []
    for row in rows:
        cells = {}
        for key in keys:
            try:
                terms = [run.terms(key) for run in row]
            except BootstrapError:
                continue  # a metric this row does not have
            cells[key] = interval(resampled(terms, resamples, seed))
        out.append(cells)
    return out


def similar_to_top(
    rows: Sequence[Sequence[RunRecords]], key: str, *, resamples: int, seed: int
) -> list[float | None]:
    """Per row, the p-value of its paired difference from the first row on ``key`` (None for the
    first row and for rows without ``key``)."""
    p_values: list[float | None] = [None]
    for row in rows[1:]:
        try:
            top = [run.terms(key) for run in rows[0]]
            other = [run.terms(key) for run in row]
        except BootstrapError:
            p_values.append(None)
            continue
        diff = paired_difference(key, top, other, resamples=resamples, seed=seed)
        p_values.append(diff.p_value)
    return p_values


def _group(paths: Sequence[str | Path], name: str) -> list[tuple[Path, Result]]:
    """The results under ``paths``, checked to be one row: one method, config and weights."""
    found = find_results(paths)
    verify_results(found)
    keys = {row_key(result) for _, result in found}
    if len(keys) > 1:
        raise ResultError(
            f"{name}: {', '.join(map(str, paths))} holds runs of {len(keys)} different "
            "(method, weights, config) rows; pass the runs of one row (its seeds)"
        )
    return found


def diff(
    paths_a: Sequence[str | Path],
    paths_b: Sequence[str | Path],
    *,
    policy: str = "oracle",
    split: str = "test",
    resamples: int = 1000,
    seed: int = 0,
) -> list[PairedDifference]:
    """``wsolbench diff``: every metric both rows have, A - B on the same images.

    Raises:
        ResultError: different protocols or data, or a side that is not one row.
        BootstrapError: a run without per-image records.
    """
    from wsolbench.metrics import parse_policy

    policy = parse_policy(policy)
    a, b = _group(paths_a, "A"), _group(paths_b, "B")
    check_comparable([*a, *b])
    runs_a = [load_run_records(p, r, split, policy) for p, r in a]
    runs_b = [load_run_records(p, r, split, policy) for p, r in b]
    check_same_images([(str(run.path), run.records) for run in runs_a + runs_b])
    out = []
    for key in METRIC_KEYS:
        try:
            terms_a = [run.terms(key) for run in runs_a]
            terms_b = [run.terms(key) for run in runs_b]
        except BootstrapError:
            continue
        out.append(paired_difference(key, terms_a, terms_b, resamples=resamples, seed=seed))
    return out


def format_p(p: float, resamples: int) -> str:
    """A p-value as text; below the resolution of ``resamples`` it is ``< 1/(B+1)``."""
    floor = 1 / (resamples + 1)
    return f"< {floor:.4f}" if p <= floor + 1e-12 else f"{p:.4f}"


def render_diff(label_a: str, label_b: str, diffs: Sequence[PairedDifference]) -> str:
    """The ``wsolbench diff`` table (markdown)."""
    rows = [
        [
            METRIC_NAMES.get(d.key, d.key),
            f"{d.a:.2f}",
            f"{d.b:.2f}",
            f"{d.difference:+.2f}",
            f"[{d.low:+.2f}, {d.high:+.2f}]",
            format_p(d.p_value, d.resamples),
        ]
        for d in diffs
    ]
    headers = ["Metric", label_a, label_b, "A − B", "95 % CI", "p"]
    table = github_table(headers, rows)
    resamples = diffs[0].resamples if diffs else 0
    return (
        f"{table}\n\nA − B on the same test images: 95 % percentile interval and two-sided "
        f"p-value of the paired bootstrap ({resamples} resamples of the images, shared by both "
        "sides; a side with several seeds is their mean).\n"
    )
