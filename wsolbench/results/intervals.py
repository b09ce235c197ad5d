"""Intervals and paired tests of result files: their per-image records, resampled.

The glue between results (``result.json`` + ``per_image.npz``) and the bootstrap
(:mod:`wsolbench.results.bootstrap`, :mod:`wsolbench.results.confidence`): ``compare --ci`` adds an
interval to every cell and groups the rows by all pairwise tests on the ranking metric
(:mod:`wsolbench.results.ties`); ``wsolbench diff A B`` compares two rows metric by metric. Both
refuse runs of different data (the per-image records must list the same images).

Every row of one comparison is evaluated on the same image resamples (one ``seed``). Unless
``models_fixed``, a row with several seeds also has its seeds drawn on every resample (the
two-level bootstrap), from a stream of its own: the sha256 of its runs' per-image records, so
that a row's interval does not depend on which other rows share its table.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from wsolbench.results.bootstrap import (
    BootstrapError,
    MetricTerms,
    check_same_images,
    metric_terms,
)
from wsolbench.results.confidence import (
    BCA,
    LEVEL,
    PERCENTILE,
    Replicates,
    direction,
    format_p,
    interval,
    p_value,
)
from wsolbench.results.grouping import check_comparable, row_key
from wsolbench.results.per_image import SplitRecords, load_records
from wsolbench.results.record import METRIC_KEYS, METRIC_NAMES, Result, ResultError, find_results
from wsolbench.results.row_bootstrap import (
    PairedDifference,
    RunResampled,
    TooFewSeedsError,
    check_drawn_seeds,
    differences,
    row_replicates_from_runs,
    run_resampled,
)
from wsolbench.results.ties import SIGNIFICANCE, holm, letter_groups
from wsolbench.results.verify import verify_results
from wsolbench.util.markdown import github_table


@dataclass
class RunRecords:
    """One run's per-image records of ``split``, read under ``policy``, and the τ the policy
    fixes (None: an oracle policy, whose τ is re-picked on every resample)."""

    path: Path
    result: Result
    records: SplitRecords
    split: str
    policy: str
    tau: dict[str, float] | None

    @property
    def separate(self) -> bool:
        """``oracle-separate``: each metric at its own best τ."""
        return self.policy == "oracle-separate"

    def terms(self, key: str) -> MetricTerms:
        return metric_terms(self.records, key, self.tau, separate=self.separate)


def load_run_records(path: Path, result: Result, split: str, policy: str) -> RunRecords:
    """Read a result's per-image records of ``split`` (checked against its counts).

    Raises:
        BootstrapError: the result has no records (made before they existed) or not of
            ``split``; ``select`` on the val split (where it picks its τ).
    """
    from wsolbench.metrics import summarize
    from wsolbench.metrics.policies import ORACLE_POLICIES

    if policy == "select" and split == "val":
        raise BootstrapError(
            "--policy select picks τ on the val split, so on --split val it is the oracle "
            "maximum over the very images resampled, and its interval must re-pick τ on every "
            "resample: use --policy oracle (BCa) for the val split, or --split test"
        )
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
    return RunRecords(Path(path), result, records[split], split, policy, tau)


#: a worker process (spawned: it imports numpy and SciPy, then reads its runs' records) costs
#: about half a second; below this many resampled images (runs x images x resamples, about a
#: second of work with every metric of a board) per worker it costs more than it saves
RESAMPLED_IMAGES_PER_WORKER = 2_000_000
#: the environment variables that set a spawned worker's BLAS threads (OpenBLAS, MKL, OpenMP)
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


@dataclass
class RowReplicates:
    """One row's :func:`replicates`.

    Attributes:
        values: per metric key it has, the replicates of its seed mean.
        left_out: per metric key its results report but it cannot be resampled on, why (e.g. a
            run kept summed PxAP histograms only).
    """

    values: dict[str, Replicates]
    left_out: dict[str, str] = field(default_factory=dict)


def row_stream(row: Sequence[RunRecords]) -> int:
    """The stream of a row's seed draws: the sha256 of its runs' per-image records, so that a
    row draws the same seeds whichever rows share its table, and two rows differ."""
    digests = sorted(run.result.per_image["sha256"] for run in row)
    return int(hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16], 16)


def replicates(
    rows: Sequence[Sequence[RunRecords]],
    keys: Sequence[str],
    *,
    resamples: int,
    seed: int,
    kind: str,
    models_fixed: bool = False,
    workers: int = 1,
) -> list[RowReplicates]:
    """Per row (its seeds' records), per metric key it has: the replicates of the row's seed
    mean, on image resamples shared by every row (and the row's seeds drawn too, two-level,
    unless ``models_fixed``). Computed once for a table's intervals and groups
    (:func:`row_intervals`, :func:`row_groups`).

    The runs are resampled by up to ``workers`` processes, each reading its runs' records
    itself (nothing large is sent to it): a run's values depend on ``seed`` only, and a row's
    seed draws on its runs (:func:`row_stream`), so the replicates are identical for any number
    of workers. Too little work for a worker (:data:`RESAMPLED_IMAGES_PER_WORKER`) stays in
    this process.

    Raises:
        BootstrapError: runs of different images; a row of too few seeds to draw
            (:class:`~wsolbench.results.row_bootstrap.TooFewSeedsError`, naming it).
    """
    check_same_images([(str(run.path), run.records) for row in rows for run in row])
    if not models_fixed:
        for row in rows:
            try:
                check_drawn_seeds(len(row))
            except TooFewSeedsError as exc:
                raise TooFewSeedsError(f"{_row_name(row)}: {exc}") from None
    runs = [run for row in rows for run in row]
    jackknife = kind == BCA
    work = sum(len(run.records) for run in runs) * resamples
    workers = max(1, min(workers, len(runs), work // RESAMPLED_IMAGES_PER_WORKER))
    if workers == 1:
        resampled = [_run_resampled(run, keys, resamples, seed, jackknife) for run in runs]
    else:
        tasks = [
            (run.path, run.result, run.split, run.policy, keys, resamples, seed, jackknife)
            for run in runs
        ]
        with (
            _single_threaded_blas(),
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool,
        ):
            resampled = list(pool.map(_read_and_resample, tasks))
    out: list[RowReplicates] = []
    for row in rows:
        mine, resampled = resampled[: len(row)], resampled[len(row) :]
        stream = None if models_fixed else row_stream(row)
        values = row_replicates_from_runs(mine, resamples, seed, seed_stream=stream) if row else {}
        why = {key: reason for run in mine for key, reason in run.left_out.items()}
        left_out = {key: why[key] for key in keys if key in why and key not in values}
        out.append(RowReplicates(values, left_out))
    return out


def _row_name(row: Sequence[RunRecords]) -> str:
    """A row as its runs' common folder (or its one run's result file)."""
    if len(row) == 1:
        return str(row[0].path)
    return os.path.commonpath([str(run.path.parent) for run in row])


def _run_resampled(
    run: RunRecords, keys: Sequence[str], resamples: int, seed: int, jackknife: bool
) -> RunResampled:
    """:func:`run_resampled` of every metric of ``keys`` the run has; in ``left_out``, why it
    cannot be resampled on one its result reports (e.g. PxAP of a --summed-pxap run)."""
    terms, left_out = {}, {}
    for key in keys:
        try:
            terms[key] = run.terms(key)
        except BootstrapError as exc:
            reported = run.result.metrics.get(run.split, {}).values()
            if any(key in metrics for metrics in reported):
                left_out[key] = str(exc)
    resampled = run_resampled(terms, resamples, seed, jackknife=jackknife)
    resampled.left_out = left_out
    return resampled


def _read_and_resample(task: tuple) -> RunResampled:
    """In a worker process: read one run's records (:func:`load_run_records`), then
    :func:`_run_resampled`."""
    path, result, split, policy, keys, resamples, seed, jackknife = task
    run = load_run_records(path, result, split, policy)
    return _run_resampled(run, keys, resamples, seed, jackknife)


@contextmanager
def _single_threaded_blas():
    """Spawned workers start with one BLAS thread each: the workers are the parallelism (the
    histogram sums are of integer counts, exact in float64, so the thread count changes no
    value)."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def row_intervals(reps: Sequence[RowReplicates], kind: str) -> list[dict[str, tuple[float, float]]]:
    """Per row, per metric key: the 95 % interval of ``kind`` of its :func:`replicates`."""
    return [{key: interval(rep, kind) for key, rep in row.values.items()} for row in reps]


@dataclass
class Groups:
    """All pairwise tests of a table's rows on one metric, and the letter groups they make.

    Attributes:
        letters: per row, its letters (rows sharing one are not significantly different); ``""``
            for a row without the metric.
        p_values: ``(i, j) -> p`` of row i - row j, i < j (row positions).
        adjusted: the same, Holm-adjusted over all pairs.
        above: ``(i, j)``: row i is significantly above row j (Holm-adjusted p < the level).
    """

    letters: list[str]
    p_values: dict[tuple[int, int], float] = field(default_factory=dict)
    adjusted: dict[tuple[int, int], float] = field(default_factory=dict)
    above: set[tuple[int, int]] = field(default_factory=set)


def row_groups(reps: Sequence[Replicates | None], kind: str) -> Groups:
    """Every pair of rows compared on one metric (the differences of the rows' replicates of
    it, :func:`replicates`: the same resamples as their intervals), Holm-corrected at
    :data:`SIGNIFICANCE`, as letters."""
    present = [i for i, rep in enumerate(reps) if rep is not None]
    pairs = [(i, j) for n, i in enumerate(present) for j in present[n + 1 :]]
    diffs = {(i, j): reps[i] - reps[j] for i, j in pairs}
    p_values = {pair: p_value(d, kind) for pair, d in diffs.items()}
    adjusted = dict(zip(pairs, holm([p_values[pair] for pair in pairs]), strict=True))
    above = set()
    for pair, p in adjusted.items():
        if p < SIGNIFICANCE:
            i, j = pair
            above.add(pair if direction(diffs[pair], kind) > 0 else (j, i))
    position = {row: k for k, row in enumerate(present)}
    tested = letter_groups(len(present), {(position[i], position[j]) for i, j in above})
    letters = [""] * len(reps)
    for row, text in zip(present, tested, strict=True):
        letters[row] = text
    return Groups(letters, p_values, adjusted, above)


def _group(paths: Sequence[str | Path], name: str) -> list[tuple[Path, Result]]:
    """The results under ``paths``, checked to be one row (:func:`row_key`): one method, plugin
    version, config and weights. A seed-independent row's copies under other seeds are one run (as
    in a leaderboard): they are not seeds to draw."""
    found = find_results(paths)
    verify_results(found)
    keys = {row_key(result) for _, result in found}
    if len(keys) > 1:
        raise ResultError(
            f"{name}: {', '.join(map(str, paths))} holds runs of {len(keys)} different "
            "(method, plugin version, weights, config) rows; pass the runs of one row (its seeds)"
        )
    if found and all(result.seed_independent for _, result in found):
        return [min(found, key=lambda item: item[1].seed)]
    return found


@dataclass
class DiffTable:
    """``wsolbench diff``'s figures and how they were made.

    Attributes:
        rows: A - B per metric both rows have.
        policy, split: the threshold policy and the split the figures are read on.
        seed: seeded the resampling (``--ci-seed``).
        left_out: per metric key one side has and the other cannot be resampled on, why.
    """

    rows: list[PairedDifference]
    policy: str
    split: str
    seed: int
    left_out: dict[str, str] = field(default_factory=dict)


def diff(
    paths_a: Sequence[str | Path],
    paths_b: Sequence[str | Path],
    *,
    policy: str = "oracle",
    split: str = "test",
    resamples: int = 1000,
    seed: int = 0,
    models_fixed: bool = False,
    workers: int = 1,
) -> DiffTable:
    """``wsolbench diff``: every metric both rows have, A - B on the same images; a side with
    several seeds has them drawn too (two-level) unless ``models_fixed``. The interval's kind
    follows the policy (:func:`wsolbench.results.confidence.interval_kind`). The runs are
    resampled by up to ``workers`` processes, as :func:`replicates` does (the same figures for
    any number).

    Raises:
        ResultError: different protocols or data, a side that is not one row, or a run on
            both sides.
        BootstrapError: a run without per-image records, a side of too few seeds to draw,
            ``select`` on the val split.
    """
    from wsolbench.metrics import parse_policy
    from wsolbench.results.confidence import interval_kind

    policy = parse_policy(policy)
    a, b = _group(paths_a, "A"), _group(paths_b, "B")
    shared = {Path(p).resolve() for p, _ in a} & {Path(p).resolve() for p, _ in b}
    if shared:  # A - A is zero by construction: no interval or p-value answers anything
        raise ResultError(
            f"{min(shared)} is on both sides: diff compares two different rows (A: "
            f"{paths_a[0]}, B: {paths_b[0]}); pass the other method's runs as B"
        )
    check_comparable([*a, *b])
    runs_a = [load_run_records(p, r, split, policy) for p, r in a]
    runs_b = [load_run_records(p, r, split, policy) for p, r in b]
    kind = interval_kind(policy)
    reps_a, reps_b = replicates(
        [runs_a, runs_b],
        METRIC_KEYS,
        resamples=resamples,
        seed=seed,
        kind=kind,
        models_fixed=models_fixed,
        workers=workers,
    )
    keys = [key for key in METRIC_KEYS if key in reps_a.values and key in reps_b.values]
    seeds = (len(runs_a), len(runs_b))
    rows = differences(reps_a.values, reps_b.values, keys, resamples, kind, seeds, models_fixed)
    left_out = {key: f"B's runs: {why}" for key, why in reps_b.left_out.items()}
    left_out.update({key: f"A's runs: {why}" for key, why in reps_a.left_out.items()})
    return DiffTable(rows, policy, split, seed, left_out)


KIND_TEXT = {
    BCA: "BCa (bias-corrected and accelerated: under an oracle policy each resample re-picks its "
    "best τ, so the resampled maxima sit above the estimate, and BCa undoes that shift)",
    PERCENTILE: "percentile (the τ is fixed beforehand: the resampled values sit around the "
    "estimate)",
}


def resampling_text(seeds: Sequence[int], labels: Sequence[str], models_fixed: bool) -> str:
    """What was resampled, and so which question the interval answers: ``seeds`` runs per side
    (``labels`` naming the sides)."""
    if models_fixed or max(seeds) < 2:
        why = "--models-fixed" if models_fixed else "no side has several seeds to draw"
        return (
            f"Models fixed ({why}): every resample draws the test images only, each side the "
            "mean of its own runs: would another test set change this, with these trained models?"
        )
    sides = [
        f"{label}'s {n} seeds drawn with replacement" if n > 1 else f"{label} one run, held fixed"
        for label, n in zip(labels, seeds, strict=True)
    ]
    return (
        f"Seeds and images resampled (two-level; {'; '.join(sides)}; the drawn seeds' spread "
        "widened by √(k / (k − 1)) to the unbiased seed variance; then the test images): would "
        "another training run and another test set change this? `--models-fixed` resamples the "
        "images only."
    )


def render_diff(label_a: str, label_b: str, table: DiffTable) -> str:
    """The ``wsolbench diff`` table (markdown), naming the policy, split, resampling and interval
    kind, and why a metric is left out."""
    from wsolbench.metrics.policies import describe_policy

    diffs = table.rows
    kind = diffs[0].kind if diffs else BCA
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
    level = round(LEVEL * 100)
    headers = ["Metric", label_a, label_b, "A − B", f"{level} % CI ({kind})", "p"]
    resamples = diffs[0].resamples if diffs else 0
    seeds = diffs[0].seeds if diffs else (1, 1)
    models_fixed = diffs[0].models_fixed if diffs else False
    # say where Dice, mIoU and the rates are read, and Top-k Loc, where the table shows them
    masks = any(d.key == "miou" for d in diffs)
    top_loc = any(d.key == "top1_loc" for d in diffs)
    notes = [
        f"Policy: {describe_policy(table.policy, table.split, overlap=masks, top_loc=top_loc)}.",
        f"A − B on the same {table.split} images ({resamples} resamples, seed {table.seed}, "
        "shared by both sides; a side with several seeds is their mean).",
        f"Interval: {KIND_TEXT[kind]}.",
        f"p: two-sided, the smallest α whose (1 − α) interval of the same kind excludes 0, so p < "
        f"{1 - LEVEL:g} exactly when the {level} % interval excludes 0; a p below 1/(B + 1), "
        "finer than B resamples resolve, is shown as < 1/(B + 1).",
        resampling_text(seeds, ["A", "B"], models_fixed),
    ]
    notes += [
        f"No paired figure for {METRIC_NAMES.get(key, key)}: {why}."
        for key, why in table.left_out.items()
    ]
    return github_table(headers, rows) + "\n\n" + "\n\n".join(notes) + "\n"
