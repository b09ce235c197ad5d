"""Building leaderboards: result files -> checked, grouped :class:`Leaderboard` s -> text.

``compare`` is what ``wsolbench compare`` runs. It reads only result files, refuses what may not
share a table (:mod:`wsolbench.results.grouping`: one protocol version and one dataset per table,
or with ``by_data`` one table per data fingerprint), turns the runs into rows
(:mod:`~wsolbench.leaderboard.runs`), adds the published rows of the board's dataset
(:mod:`~wsolbench.leaderboard.published`) after them, writes the notes, optionally adds bootstrap
intervals (:mod:`wsolbench.results.intervals`), and renders
(:mod:`~wsolbench.leaderboard.rendering`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from wsolbench.leaderboard.published import published_rows, published_sort_key, source_notes
from wsolbench.leaderboard.rendering import FORMATS, render
from wsolbench.leaderboard.rows import (
    MISSING,
    NO_WEIGHTS_NOTE,
    PUBLISHED_NOTE,
    Leaderboard,
    reference_notes,
)
from wsolbench.leaderboard.runs import (
    group_runs,
    mixed_conditions,
    ranking_metric,
    recompute,
    run_sort_key,
)
from wsolbench.results.grouping import check_one_protocol, check_pinned_data, data_groups
from wsolbench.results.record import METRIC_NAMES, SPLITS, Result, find_results
from wsolbench.results.verify import verify_results


def compare(
    paths: Sequence[str | Path],
    *,
    policy: str = "oracle",
    split: str = "test",
    fmt: str = "md",
    published: str | Path | None | bool = True,
    by_data: bool = False,
    ci: int = 0,
    ci_seed: int = 0,
    models_fixed: bool = False,
    workers: int = 1,
    wide: bool = False,
) -> str:
    """Render the leaderboard of the results under ``paths``.

    Args:
        paths: result files and / or folders searched recursively for ``result.json``.
        policy: ``"oracle"``, ``"select"`` or ``"fixed:<tau>"``, recomputed from the stored counts.
        split: the evaluated split shown, ``"test"`` or ``"val"``.
        fmt: ``"md"``, ``"csv"``, ``"latex"`` or ``"html"``.
        published: ``True`` adds the rows of :func:`default_published_path` (skipped if the file is
            absent), a path adds that file's rows, ``False`` / ``None`` adds none.
        by_data: results of different data fingerprints become separate tables (one CSV with a
            ``data_fingerprint`` column) instead of an error.
        ci: with ``ci`` resamples (e.g. 1000), every cell gets a 95 % bootstrap interval (BCa
            under the oracle policies, percentile under ``select`` / ``fixed``) and the rows are
            grouped by all pairwise tests on the ranking metric, Holm-corrected (a Group column of
            letters; :mod:`wsolbench.results.intervals`); 0: no intervals.
        ci_seed: seeds the resampling.
        models_fixed: resample the test images only; by default a row with several seeds also
            has its seeds drawn on every resample (two-level).
        workers: processes resampling the rows for ``ci`` (the intervals do not depend on it;
            :func:`wsolbench.results.intervals.replicates`).
        wide: every column, and each weights source in full in its Pretrained cell; by default
            the cells name the weights by short names spelled out in a footnote, and markdown
            keeps the columns that fit 120 characters (:mod:`~wsolbench.leaderboard.columns`).
            The CSV is the same either way.

    Returns:
        The table(s) as text, ending with a newline.

    Raises:
        ResultError: results of different protocols, of different data (unless ``by_data``), a
            result without the split's counts, ``select`` on a result without a val split,
            duplicate runs, or an unreadable result.
        ValueError: an unknown policy, split or format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    boards = build_leaderboards(
        paths,
        policy=policy,
        split=split,
        published=published,
        by_data=by_data,
        ci=ci,
        ci_seed=ci_seed,
        models_fixed=models_fixed,
        workers=workers,
    )
    return render_boards(boards, fmt, wide=wide)


def render_boards(boards: Sequence[Leaderboard], fmt: str, *, wide: bool = False) -> str:
    """The text ``compare`` returns for boards already built: each table in ``fmt``, one CSV
    for all (so one set of boards can be rendered in every format)."""
    if fmt == "csv":
        return _one_csv([render(board, fmt) for board in boards])
    return "\n".join(render(board, fmt, wide=wide) for board in boards)


def _one_csv(texts: list[str]) -> str:
    """Several boards' CSVs under one header, the union of theirs: a board may lack columns of
    another (Top-k where no row classifies, cost, intervals), and its rows then leave those cells
    empty instead of shifting the next columns into them. A column keeps its place after the one
    it follows."""
    tables = [list(csv.reader(io.StringIO(text))) for text in texts]
    columns: list[str] = []
    for header, *_ in tables:
        for i, column in enumerate(header):
            if column not in columns:
                columns.insert(columns.index(header[i - 1]) + 1 if i else 0, column)
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    for header, *body in tables:
        writer.writerows(dict(zip(header, row, strict=True)) for row in body)
    return out.getvalue()


def build_leaderboard(
    paths: Sequence[str | Path],
    *,
    policy: str = "oracle",
    split: str = "test",
    published: str | Path | None | bool = True,
) -> Leaderboard:
    """Load, check, recompute and group results into a :class:`Leaderboard` (see ``compare``)."""
    (board,) = build_leaderboards(paths, policy=policy, split=split, published=published)
    return board


def build_leaderboards(
    paths: Sequence[str | Path],
    *,
    policy: str = "oracle",
    split: str = "test",
    published: str | Path | None | bool = True,
    by_data: bool = False,
    ci: int = 0,
    ci_seed: int = 0,
    models_fixed: bool = False,
    workers: int = 1,
) -> list[Leaderboard]:
    """One :class:`Leaderboard` per data fingerprint (only one unless ``by_data``)."""
    from wsolbench.metrics import parse_policy  # numpy + OpenCV: only when a table is built

    policy = parse_policy(policy)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    found = find_results(paths)
    verify_results(found)  # every result with its own files, its counts consistent
    protocol, protocol_hash = check_one_protocol(found)
    check_pinned_data(found)
    groups = data_groups(found, by_data)
    boards = [
        _board(members, protocol, protocol_hash, policy, split, published) for members in groups
    ]
    if ci:
        for board, members in zip(boards, groups, strict=True):
            _add_intervals(board, dict(members), ci, ci_seed, models_fixed, workers)
    return boards


def _add_intervals(
    board: Leaderboard,
    results: dict[Path, Result],
    resamples: int,
    seed: int,
    models_fixed: bool,
    workers: int,
) -> None:
    """Intervals for every run row's cells, and the rows' letter groups on the ranking metric."""
    from wsolbench.results.confidence import interval_kind
    from wsolbench.results.intervals import (
        KIND_TEXT,
        load_run_records,
        replicates,
        row_groups,
        row_intervals,
    )
    from wsolbench.results.ties import SIGNIFICANCE, supported_order

    rows = [r for r in board.rows if not r.published]
    runs = [
        [load_run_records(f, results[f], board.split, board.policy) for f in row.files]
        for row in rows
    ]
    kind = interval_kind(board.policy)
    board.interval_kind, board.models_fixed = kind, models_fixed
    board.ci_resamples, board.ci_seed = resamples, seed
    reps = replicates(
        runs,
        board.metric_keys,
        resamples=resamples,
        seed=seed,
        kind=kind,
        models_fixed=models_fixed,
        workers=workers,
    )
    for row, cells in zip(rows, row_intervals(reps, kind), strict=True):
        row.ci = cells
    several = [r for r, row_runs in zip(rows, runs, strict=True) if len(row_runs) > 1]
    if models_fixed or not several:
        why = "--models-fixed" if models_fixed else "no row has several seeds"
        resampled = (
            f"the {board.split} images only, models fixed ({why}; each row the mean of its own "
            "runs): another test set, these trained models"
        )
    else:
        resampled = (
            f"the {board.split} images, and for rows with several seeds the seeds too (two-level: "
            "each resample draws the row's seeds with replacement, their spread widened by "
            "√(k / (k − 1)) to the unbiased seed variance): another training run and "
            "another test set; `--models-fixed` resamples the images only"
        )
    board.notes.append(
        f"[low, high]: 95 % {KIND_TEXT[kind]} bootstrap interval of the seed mean, resampling "
        f"{resampled} ({resamples} resamples, seed {seed}; every row on the same image "
        "resamples); ± is the spread over seeds."
    )
    for row, row_reps in zip(rows, reps, strict=True):
        board.notes += [
            f"No interval for {METRIC_NAMES.get(key, key)} of {row.method}"
            f"{f' ({row.label})' if row.label else ''}: {why}."
            for key, why in row_reps.left_out.items()
        ]
    ranking = ranking_metric(rows)  # the rows' order: the first has it if any does
    if len(rows) < 2 or ranking not in rows[0].mean:
        return
    groups = row_groups([row.values.get(ranking) for row in reps], kind)
    for row, letters in zip(rows, groups.letters, strict=True):
        row.group = letters
    name = METRIC_NAMES.get(ranking, ranking)
    board.notes.append(
        f"Group: rows sharing a letter are not significantly different on {name} (every pair of "
        f"rows: the paired test of the same bootstrap as the intervals, p the smallest level "
        f"whose interval excludes 0, Holm-corrected over the {len(groups.p_values)} pairs at "
        f"{SIGNIFICANCE:g})."
    )
    tested = [k for k, letters in enumerate(groups.letters) if letters]
    position = {row: k for k, row in enumerate(tested)}
    names = [rows[k].method + (f" ({rows[k].label})" if rows[k].label else "") for k in tested]
    above = {(position[i], position[j]) for i, j in groups.above}
    board.notes.append(f"Order the tests support on {name}: {supported_order(names, above)}.")


def _board(
    found: list[tuple[Path, Result]],
    protocol: str,
    protocol_hash: str,
    policy: str,
    split: str,
    published: str | Path | None | bool,
) -> Leaderboard:
    dataset = found[0][1].dataset
    runs, taus = [], set()
    for path, result in found:
        values, chosen = recompute(path, result, policy, split)
        runs.append((path, result, values))
        taus.update(chosen.values())
    rows = group_runs(runs)
    ranking = ranking_metric(rows)
    rows.sort(key=lambda row: run_sort_key(row, ranking))
    notes = [
        "Cells: mean ± sample std (ddof=1) over seeds, in percent; "
        f"{MISSING} where a row has no such figure (not applicable, or not published)."
    ]
    if any(len(r.seeds) == 1 and not r.seed_independent for r in rows):
        notes.append("Rows with one seed show the mean only: no std.")
    if any(r.seed_independent for r in rows):
        notes.append(
            "Seeds any: a seed-independent method (training-free, its weights loaded): one run "
            "stands for every seed, and has no spread over seeds."
        )
    if any(r.no_weights for r in rows):
        notes.append(NO_WEIGHTS_NOTE)
    notes.extend(mixed_conditions(rows, {path: result for path, result, _ in runs}))
    notes.extend(reference_notes(rows))
    pub_rows = published_rows(published, dataset)
    if pub_rows and split != "test":
        notes.append(f"Published rows are test-split figures: not shown for the {split} split.")
        pub_rows = []
    if pub_rows:
        pub_rows.sort(key=lambda row: published_sort_key(row, ranking))
        notes.append(PUBLISHED_NOTE + ".")
        notes.extend(source_notes(pub_rows))
    fingerprint = found[0][1].data_fingerprint or {}
    return Leaderboard(
        protocol=protocol,
        protocol_hash=protocol_hash,
        dataset=dataset,
        split=split,
        policy=policy,
        rows=rows + pub_rows,
        notes=notes,
        taus=sorted(taus) if policy.startswith("fixed:") else [],
        data=fingerprint.get("sha256"),
        data_splits={
            role: int(info.get("n_images", 0))
            for role, info in sorted(fingerprint.get("splits", {}).items())
            if isinstance(info, dict)
        },
    )
