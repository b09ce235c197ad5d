"""Leaderboards: results of one protocol → one table (markdown, CSV, LaTeX, HTML).

``compare`` is what ``wsolbench compare`` runs. It reads only result files, recomputes the
requested threshold policy from their stored per-threshold counts (never from their stored summary
metrics, so a policy added later applies to old results), groups runs of one method and config over
seeds, and adds the published rows of ``reports/published.yaml`` for the protocol's dataset, marked
and never averaged.

Rules every table follows:

- One protocol version per table: results with different protocol ids or hashes are refused.
- One dataset per table: results whose data fingerprints differ (another ``--data-root``, a
  different selection split, edited metadata) are refused, or with ``by_data`` shown as separate
  tables, one per fingerprint; never averaged or ranked together. Results written before
  fingerprints existed (schema 1) count as one "unknown" fingerprint.
- A row is (method, pretrained weights, config minus ``seed``): mean ± sample std (ddof=1) over its
  seeds. Runs with and without pretrained weights are never averaged together; a row without
  pretrained weights is marked ``‡``. Two configs of one method are told apart by a label made of
  the config keys that differ between them.
- Published figures are marked ``†`` with their source and threshold policy.
- Runs are sorted by MaxBoxAccV2 (descending, rows without it last), published rows come after runs.
- The localization map is always the ground-truth class's map; every table says so.
- When results carry cost (``run --profile``), the table adds the parameters inference needs, MACs
  of one image (the counter is named in a note) and the batch-1 median latency — one column per
  device (name, CPU threads, AMP), since latencies of two devices are not comparable.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

import wsolbench
from wsolbench.data.fingerprint import short
from wsolbench.grouping import (
    canonical,
    check_one_protocol,
    check_pinned_data,
    data_groups,
    row_key,
    strip_seed,
)
from wsolbench.intervals import SIGNIFICANCE, SIMILAR_MARK
from wsolbench.results import METRIC_KEYS, METRIC_NAMES, SPLITS, Result, ResultError, find_results

logger = logging.getLogger(__name__)

FORMATS = ("md", "csv", "latex", "html")
COLUMN_NAMES = METRIC_NAMES  # metric key -> column header
NO_WEIGHTS_MARK = "‡"
PUBLISHED_MARK = "†"
MISSING = "–"
MAPS_NOTE = "Maps: ground-truth class"
NO_WEIGHTS_NOTE = (
    f"{NO_WEIGHTS_MARK} no pretrained weights: trained or run from random initialisation, "
    "not comparable with pretrained rows."
)
PUBLISHED_NOTE = (
    f"{PUBLISHED_MARK} published figure, not run by wsolbench and never averaged with runs"
)
COST_NOTE = (
    "Cost (random-initialised method at the protocol size, `wsolbench run --profile`): Params = "
    "parameters inference needs, in millions; MACs = multiply-accumulates of one image, in G "
    "({counter}); Latency = batch-1 median in ms, mean over seeds, one column per device."
)


def default_published_path() -> Path:
    """``reports/published.yaml`` of the source checkout this package is imported from."""
    return Path(wsolbench.__file__).resolve().parents[1] / "reports" / "published.yaml"


@dataclass
class Row:
    """One leaderboard row: a group of runs (mean, std over seeds) or one published figure.

    Attributes:
        method: method name as shown (registered name for runs, paper name for published rows).
        label: short text telling apart rows of one method (differing config keys, or the backbone).
        pretrained: the weights the runs loaded (``"none"``: random initialisation); ``""`` for
            published rows.
        mean: metric key → mean over seeds, percent [0, 100].
        std: metric key → sample std over seeds (ddof=1); absent with one seed.
        seeds: the seeds averaged (empty for published rows).
        published: a published figure, not run by wsolbench.
        source: where a published figure comes from.
        policy: the threshold policy of the figures.
        config: the run config without its seed (empty for published rows).
        files: the result files of the runs.
        dataset: the dataset of a published figure (``""`` for runs: the board has one dataset).
        cost: ``{"params": M, "macs": G, "latency": {device: ms}}`` means over the seeds that
            carry cost (empty without any).
        ci: metric key → 95 % bootstrap interval over the test images of the seed mean
            (``compare --ci``; empty otherwise).
        p_vs_top: p-value of the paired difference from the top row on the ranking metric.
    """

    method: str
    label: str
    pretrained: str
    mean: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    published: bool = False
    source: str = ""
    policy: str = ""
    config: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    dataset: str = ""
    cost: dict = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    p_vs_top: float | None = None  # paired test against the top row (compare --ci)

    @property
    def similar(self) -> bool:
        """Not significantly different from the top row (paired bootstrap, p >= 0.05)."""
        return self.p_vs_top is not None and self.p_vs_top >= SIGNIFICANCE

    @property
    def no_weights(self) -> bool:
        return not self.published and self.pretrained.strip().lower() == "none"

    @property
    def display_name(self) -> str:
        mark = PUBLISHED_MARK if self.published else NO_WEIGHTS_MARK if self.no_weights else ""
        mark += SIMILAR_MARK if self.similar else ""
        return f"{self.method}{mark}" + (f" ({self.label})" if self.label else "")


@dataclass
class Leaderboard:
    """A rendered-format-independent leaderboard; :func:`render` turns it into text."""

    protocol: str
    protocol_hash: str
    dataset: str
    split: str
    policy: str
    rows: list[Row]
    notes: list[str]
    taus: list[float] = field(default_factory=list)  # the grid τ a fixed policy landed on
    data: str | None = None  # the combined data fingerprint of every run (None: unknown)
    data_splits: dict[str, int] = field(default_factory=dict)  # role -> images

    @property
    def metric_keys(self) -> list[str]:
        """The metric columns: those at least one row has, in the canonical order."""
        return [k for k in METRIC_KEYS if any(k in r.mean for r in self.rows)]

    @property
    def cost_devices(self) -> list[str]:
        """The devices some row has a latency for, sorted: one latency column each."""
        return sorted({d for r in self.rows for d in r.cost.get("latency", {})})

    @property
    def has_cost(self) -> bool:
        return any(r.cost for r in self.rows)

    @property
    def header_lines(self) -> list[str]:
        if self.data is None:
            data = "unknown (results written before data fingerprints)"
        else:
            sizes = ", ".join(f"{role} {n}" for role, n in self.data_splits.items())
            data = f"{short(self.data)} ({sizes})"
        return [
            f"Protocol: {self.protocol} (hash {self.protocol_hash[:12]})",
            f"Data: {data}",
            f"Split: {self.split}",
            f"Policy: {describe_policy(self.policy, self.split, self.taus)}",
            MAPS_NOTE,
        ]


def describe_policy(policy: str, split: str = "test", taus: Sequence[float] = ()) -> str:
    """One line saying what a threshold policy means: ``"fixed:0.2 (τ = 0.2 for every metric)"``.

    Args:
        policy: canonical policy text (:func:`wsolbench.metrics.parse_policy`).
        split: the evaluated split.
        taus: for ``fixed``, the grid thresholds actually used (the grid τ nearest the request),
            named when they differ from the request.
    """
    if policy == "oracle":
        return f"oracle (each metric at its best τ on the {split} split)"
    if policy == "select":
        return f"select (τ chosen per run on the val split, applied to the {split} split)"
    if policy.startswith("fixed:"):
        requested = policy.split(":", 1)[1]
        used = sorted({round(t, 6) for t in taus})
        if used and used != [round(float(requested), 6)]:
            grid = ", ".join(f"{t:g}" for t in used)
            return f"{policy} (nearest grid τ = {grid} for every metric)"
        return f"{policy} (τ = {requested} for every metric)"
    return policy


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
        ci: with ``ci`` resamples (e.g. 1000), every cell gets a 95 % bootstrap interval over the
            test images and rows not significantly different from the top row are marked
            (:mod:`wsolbench.intervals`); 0: no intervals.
        ci_seed: seeds the resampling.

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
    )
    if fmt == "csv":  # one header, then every table's rows
        texts = [render(board, fmt) for board in boards]
        return texts[0] + "".join(t.split("\n", 1)[1] for t in texts[1:])
    return "\n".join(render(board, fmt) for board in boards)


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
) -> list[Leaderboard]:
    """One :class:`Leaderboard` per data fingerprint (only one unless ``by_data``)."""
    from wsolbench.metrics import parse_policy  # numpy + OpenCV: only when a table is built

    policy = parse_policy(policy)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    found = find_results(paths)
    protocol, protocol_hash = check_one_protocol(found)
    check_pinned_data(found)
    groups = data_groups(found, by_data)
    boards = [
        _board(members, protocol, protocol_hash, policy, split, published) for members in groups
    ]
    if ci:
        for board, members in zip(boards, groups, strict=True):
            _add_intervals(board, dict(members), ci, ci_seed)
    return boards


def _add_intervals(board: Leaderboard, results: dict[Path, Result], resamples: int, seed: int):
    """Intervals for every run row's cells, and each row's paired test against the top row."""
    from wsolbench.intervals import load_run_records, row_intervals, similar_to_top

    rows = [r for r in board.rows if not r.published]
    runs = [
        [load_run_records(f, results[f], board.split, board.policy) for f in row.files]
        for row in rows
    ]
    for row, cells in zip(
        rows, row_intervals(runs, board.metric_keys, resamples=resamples, seed=seed), strict=True
    ):
        row.ci = cells
    ranking = next((k for k in board.metric_keys if all(k in r.mean for r in rows[:1])), None)
    if ranking is not None and len(rows) > 1:
        p_values = similar_to_top(runs, ranking, resamples=resamples, seed=seed)
        for row, p in zip(rows, p_values, strict=True):
            row.p_vs_top = p
    board.notes.append(
        f"[low, high]: 95 % bootstrap interval of the seed mean over the {board.split} images "
        f"({resamples} resamples, seed {seed}; every row on the same resamples); ± is the spread "
        "over seeds."
    )
    if any(r.similar for r in rows):
        board.notes.append(
            f"{SIMILAR_MARK} not significantly different from the top row on "
            f"{COLUMN_NAMES.get(ranking, ranking)} (paired bootstrap over the same images, "
            f"two-sided p >= {SIGNIFICANCE})."
        )


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
        values, chosen = _recompute(path, result, policy, split)
        runs.append((path, result, values))
        taus.update(chosen.values())
    rows = _group_runs(runs)
    rows.sort(key=_run_sort_key)
    notes = [
        "Cells: mean ± sample std (ddof=1) over seeds, in percent; "
        f"{MISSING} where a row has no such figure (not applicable, or not published)."
    ]
    if any(len(r.seeds) == 1 for r in rows):
        notes.append("Rows with one seed show the mean only: no std.")
    if any(r.no_weights for r in rows):
        notes.append(NO_WEIGHTS_NOTE)
    notes.extend(_cost_notes(rows))
    pub_rows = _published_rows(published, dataset)
    if pub_rows and split != "test":
        notes.append(f"Published rows are test-split figures: not shown for the {split} split.")
        pub_rows = []
    if pub_rows:
        pub_rows.sort(key=_published_sort_key)
        notes.append(PUBLISHED_NOTE + ".")
        notes.extend(_source_notes(pub_rows))
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


def _recompute(
    path: Path, result: Result, policy: str, split: str
) -> tuple[dict[str, float], dict[str, float]]:
    from wsolbench.metrics import summarize

    counts = result.counts.get(split)
    if not counts:
        raise ResultError(
            f"{path}: no counts for the {split!r} split (it has: "
            f"{', '.join(result.counts) or 'none'}); choose another split with --split"
        )
    val = result.counts.get("val")
    if policy == "select" and not (isinstance(val, dict) and val.get("box")):
        raise ResultError(
            f"{path}: the 'select' policy needs box counts on a val split and this result has "
            "none; use --policy oracle or fixed:<tau>, or re-run under a protocol with a val split"
        )
    try:
        values, chosen = summarize(counts, policy, val_counts=val)
    except (ValueError, KeyError) as exc:
        raise ResultError(f"{path}: cannot summarize the {split} counts: {exc!s}") from exc
    return dict(values), dict(chosen)


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _label_value(value: Any) -> str:
    return value if isinstance(value, str) else canonical(value)


def _config_labels(configs: list[dict]) -> list[str]:
    """For configs of one method: each one's ``key=value`` list of the keys that differ."""
    flats = [_flatten(c) for c in configs]
    keys = sorted({k for f in flats for k in f})
    differing = [k for k in keys if len({canonical(f.get(k, "\0unset")) for f in flats}) > 1]
    return [
        ", ".join(f"{k}={_label_value(f[k]) if k in f else 'unset'}" for k in differing)
        for f in flats
    ]


def _group_runs(runs: list[tuple[Path, Result, dict[str, float]]]) -> list[Row]:
    groups: dict[tuple[str, str, str], list[tuple[Path, Result, dict[str, float]]]] = {}
    for run in runs:
        groups.setdefault(row_key(run[1]), []).append(run)

    rows: list[Row] = []
    for (method, pretrained, _), members in groups.items():
        by_seed: dict[int, Path] = {}
        for path, result, _ in members:
            if result.seed in by_seed:
                raise ResultError(
                    f"two results of {method} with the same config and seed {result.seed}: "
                    f"{by_seed[result.seed]} and {path}; pass only one of them"
                )
            by_seed[result.seed] = path
        values = [v for _, _, v in members]
        shared = [k for k in METRIC_KEYS if all(k in v for v in values)]
        partial = sorted({k for v in values for k in v} - set(shared))
        if partial:
            logger.warning(
                "%s: metric(s) %s missing from some seeds; left out of the row",
                method,
                ", ".join(partial),
            )
        mean = {k: statistics.fmean(v[k] for v in values) for k in shared}
        std = {k: statistics.stdev(v[k] for v in values) for k in shared} if len(values) > 1 else {}
        cost = _row_cost([result.cost for _, result, _ in members if result.cost])
        rows.append(
            Row(
                method=method,
                label="",
                pretrained=pretrained,
                mean=mean,
                std=std,
                seeds=sorted(by_seed),
                config=strip_seed(members[0][1].config),
                files=[p for p, _, _ in members],
                cost=cost,
            )
        )

    by_method: dict[str, list[Row]] = {}
    for row in rows:
        by_method.setdefault(row.method, []).append(row)
    for same in by_method.values():
        if len(same) > 1:
            for row, label in zip(same, _config_labels([r.config for r in same]), strict=True):
                row.label = label
    return rows


def _row_cost(costs: list[dict]) -> dict:
    """Mean cost over seeds: params (M), MACs (G), and latency (ms) per device.

    A device's latency is the mean of its clean timings (``wsolbench.profile.latency_clean``);
    with none clean, the mean of all of them, and the device is listed in ``unclean`` (the cell
    is then marked). ``macs_lower_bound``: some seed's count missed ops without a formula.
    """
    from wsolbench.profile import MACS_COUNTER_SHORT, latency_clean, latency_device, macs_complete

    # Only cost blocks written by wsolbench.profile are shown; another layout is not guessed at.
    costs = [c for c in costs if _profile_layout(c)]
    if not costs:
        return {}
    latency: dict[str, list[float]] = {}
    clean: dict[str, list[float]] = {}
    for cost in costs:
        if cost.get("latency_ms"):
            device, median = latency_device(cost), cost["latency_ms"]["median"]
            latency.setdefault(device, []).append(median)
            if latency_clean(cost):
                clean.setdefault(device, []).append(median)
    out: dict[str, Any] = {
        "latency": {d: statistics.fmean(clean.get(d) or v) for d, v in latency.items()},
        "unclean": sorted(d for d in latency if d not in clean),
        "macs_lower_bound": any(not macs_complete(c) for c in costs if "macs" in c),
        "counters": sorted({MACS_COUNTER_SHORT for c in costs if "macs" in c}),
    }
    params = [c["params"]["inference"] for c in costs if "params" in c]
    if params:
        out["params"] = statistics.fmean(params) / 1e6
    macs = [c["macs"] for c in costs if "macs" in c]
    if macs:
        out["macs"] = statistics.fmean(macs) / 1e9
    return out


def _profile_layout(cost: dict) -> bool:
    """Whether a cost block has the fields tables read, with the types wsolbench.profile writes."""

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    params, latency = cost.get("params"), cost.get("latency_ms")
    return (
        isinstance(params, dict)
        and number(params.get("inference"))
        and ("macs" not in cost or number(cost["macs"]))
        and (not latency or isinstance(latency, dict) and number(latency.get("median")))
    )


def _run_sort_key(row: Row) -> tuple:
    v2 = row.mean.get("maxboxacc_v2")
    return (v2 is None, -(v2 or 0.0), row.method, row.label, row.pretrained)


def _published_sort_key(row: Row) -> tuple:
    v2 = row.mean.get("maxboxacc_v2")
    return (v2 is None, -(v2 or 0.0))  # stable: file order among ties


def load_published(path: str | Path) -> list[Row]:
    """Read a published-rows file (``reports/published.yaml`` layout) into rows of every dataset.

    Each entry: ``method``, ``backbone``, ``dataset`` (``cub`` / ``ilsvrc`` / ...), ``source``,
    ``policy``, ``metrics`` ({metric key: percent}).

    Raises:
        ResultError: the file is missing or malformed; the message names the entry and the key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ResultError(f"{path}: no such published-rows file") from exc
    except yaml.YAMLError as exc:
        raise ResultError(f"{path}: not valid YAML: {exc}") from exc
    entries = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ResultError(f"{path}: expected a top-level 'rows:' list of published rows")
    rows = []
    for i, entry in enumerate(entries):
        where = f"{path}: rows[{i}]"
        if not isinstance(entry, dict):
            raise ResultError(f"{where}: expected a mapping with method, dataset, source, metrics")
        for key in ("method", "dataset", "source", "metrics"):
            if key not in entry:
                raise ResultError(f"{where}: missing key {key!r}")
        metrics = entry["metrics"]
        if not isinstance(metrics, dict) or not metrics:
            raise ResultError(f"{where}: 'metrics' must map metric keys to percentages")
        for key, value in metrics.items():
            if key not in METRIC_KEYS:
                raise ResultError(
                    f"{where}: unknown metric {key!r}; use one of {', '.join(METRIC_KEYS)}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ResultError(f"{where}: metric {key} must be a number, got {value!r}")
        rows.append(
            Row(
                method=str(entry["method"]),
                label=str(entry.get("backbone", "")),
                pretrained="",
                mean={k: float(metrics[k]) for k in METRIC_KEYS if k in metrics},
                published=True,
                source=str(entry["source"]),
                policy=str(entry.get("policy", "as published")),
                dataset=str(entry["dataset"]).lower(),
            )
        )
    return rows


def _published_rows(published: str | Path | None | bool, dataset: str) -> list[Row]:
    if published is None or published is False:
        return []
    if published is True:
        path = default_published_path()
        if not path.is_file():
            return []
    else:
        path = Path(published)
    return [r for r in load_published(path) if r.dataset == dataset.lower()]


def _source_notes(rows: list[Row]) -> list[str]:
    by_source: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        by_source.setdefault((row.source, row.policy), []).append(
            f"{row.method} ({row.label})" if row.label else row.method
        )
    return [
        f"{PUBLISHED_MARK} {', '.join(names)}: source {source}; threshold policy {policy}."
        for (source, policy), names in by_source.items()
    ]


def _cell(row: Row, key: str) -> str:
    if key not in row.mean:
        return MISSING
    if row.published:
        return _published_number(row.mean[key])
    text = f"{row.mean[key]:.2f}"
    if key in row.std:
        text += f" ± {row.std[key]:.2f}"
    if key in row.ci:
        text += " [{:.2f}, {:.2f}]".format(*row.ci[key])
    return text


def _published_number(value: float) -> str:
    # Published figures keep the precision the paper printed (shortest repr): 41.1 stays 41.1.
    return repr(float(value))


def _pretrained_cell(row: Row) -> str:
    if row.published:
        return MISSING
    # A weights file path is long and machine-specific; its file name says which weights. Tags such
    # as "openai/clip-vit-base-patch16" or "n/a" have no file suffix and are kept whole.
    name = Path(row.pretrained).name
    return name if "/" in row.pretrained and Path(name).suffix else row.pretrained


def _cost_cells(board: Leaderboard, row: Row) -> list[str]:
    if not board.has_cost:
        return []
    cost = row.cost

    def fmt(value: float | None, digits: int) -> str:
        return MISSING if value is None else f"{value:.{digits}f}"

    from wsolbench.profile import LATENCY_MARK, MACS_LOWER_BOUND_MARK

    macs = fmt(cost.get("macs"), 3)
    if cost.get("macs_lower_bound") and macs != MISSING:
        macs = MACS_LOWER_BOUND_MARK + macs
    cells = [fmt(cost.get("params"), 3), macs]
    for device in board.cost_devices:
        latency = fmt(cost.get("latency", {}).get(device), 2)
        marked = latency != MISSING and device in cost.get("unclean", ())
        cells.append(latency + LATENCY_MARK if marked else latency)
    return cells


def _cost_notes(rows: list[Row]) -> list[str]:
    """The cost footnotes: the counter, the latency rule, and what the marks mean (if used)."""
    from wsolbench.profile import CLEAN_RULE, LATENCY_NOTE, MACS_LOWER_BOUND_NOTE

    counters = sorted({c for r in rows for c in r.cost.get("counters", [])})
    if not counters:
        return []
    notes = [COST_NOTE.format(counter="; ".join(counters))]
    if any(r.cost.get("latency") for r in rows):
        notes.append(f"Latency shown when {CLEAN_RULE}.")
    if any(r.cost.get("unclean") for r in rows):
        notes.append(LATENCY_NOTE + ".")
    if any(r.cost.get("macs_lower_bound") for r in rows):
        notes.append(MACS_LOWER_BOUND_NOTE + ".")
    return notes


def _cost_headers(board: Leaderboard) -> list[str]:
    if not board.has_cost:
        return []
    return ["Params (M)", "MACs (G)"] + [f"Latency ms ({d})" for d in board.cost_devices]


def _table(board: Leaderboard) -> tuple[list[str], list[list[str]], list[str]]:
    keys = board.metric_keys
    cost_headers = _cost_headers(board)
    headers = ["Method", "Pretrained", "Seeds"] + [COLUMN_NAMES[k] for k in keys] + cost_headers
    body = [
        [
            r.display_name,
            _pretrained_cell(r),
            str(len(r.seeds)) if not r.published else MISSING,
            *(_cell(r, k) for k in keys),
            *_cost_cells(board, r),
        ]
        for r in board.rows
    ]
    align = ["left", "left", "right"] + ["right"] * (len(keys) + len(cost_headers))
    return headers, body, align


def render(board: Leaderboard, fmt: str) -> str:
    """Render a leaderboard as ``md``, ``csv``, ``latex`` or ``html`` text (ends with a newline)."""
    renderers = {"md": _render_md, "csv": _render_csv, "latex": _render_latex, "html": _render_html}
    if fmt not in renderers:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return renderers[fmt](board)


def _render_md(board: Leaderboard) -> str:
    headers, body, align = _table(board)
    table = tabulate(
        body, headers=headers, tablefmt="github", colalign=align, disable_numparse=True
    )
    lines = [f"- {line}" for line in board.header_lines]
    notes = [f"- {note}" for note in board.notes]
    return "\n".join([*lines, "", table, "", *notes]) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
# Symbols the tables use that pdflatex cannot typeset from UTF-8 without extra packages.
_LATEX_UNICODE = {
    "±": r"$\pm$",
    NO_WEIGHTS_MARK: r"\ddag{}",
    PUBLISHED_MARK: r"\dag{}",
    MISSING: "--",
    "τ": r"$\tau$",
    "§": r"\S{}",  # wsolbench.profile.LATENCY_MARK
    "≥": r"$\geq$",  # wsolbench.profile.MACS_LOWER_BOUND_MARK
}


def latex_escape(text: str) -> str:
    """Escape text for LaTeX: special ASCII characters and the table's Unicode symbols."""
    text = re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], text)
    return _latex_unicode(text)


def _latex_unicode(text: str) -> str:
    for symbol, command in _LATEX_UNICODE.items():
        text = text.replace(symbol, command)
    return text


def _render_latex(board: Leaderboard) -> str:
    headers, body, align = _table(board)
    # tabulate escapes the ASCII specials of every cell; the Unicode symbols are replaced after.
    tabular = _latex_unicode(
        tabulate(
            body, headers=headers, tablefmt="latex_booktabs", colalign=align, disable_numparse=True
        )
    )
    caption = latex_escape("; ".join(board.header_lines) + ".")
    label = re.sub(r"[^a-z0-9]+", "-", f"{board.protocol}-{board.split}".lower())
    notes = "\\\\\n".join(latex_escape(n) for n in board.notes)
    return (
        "% Requires \\usepackage{booktabs}.\n"
        "\\begin{table}[t]\n\\centering\n"
        f"\\caption{{{caption}}}\n\\label{{tab:wsolbench-{label}}}\n"
        f"{tabular}\n"
        f"\\par\\smallskip\n{{\\footnotesize\n{notes}\\par}}\n"
        "\\end{table}\n"
    )


def _render_html(board: Leaderboard) -> str:
    headers, body, align = _table(board)
    table = tabulate(body, headers=headers, tablefmt="html", colalign=align, disable_numparse=True)
    caption = "<br>".join(html.escape(line) for line in board.header_lines)
    notes = "<br>".join(html.escape(n) for n in board.notes)
    tfoot = f'<tfoot>\n<tr><td colspan="{len(headers)}">{notes}</td></tr>\n</tfoot>\n'
    assert table.startswith("<table>") and table.endswith("</table>")
    inner = table[len("<table>") : -len("</table>")].strip("\n")
    return f'<table class="wsolbench">\n<caption>{caption}</caption>\n{inner}\n{tfoot}</table>\n'


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.4f}"


def _csv_flag(value: bool | None) -> str:
    return "" if value is None else "true" if value else "false"


def _render_csv(board: Leaderboard) -> str:
    keys = board.metric_keys
    columns = ["method", "config", "pretrained", "seeds", "published"]
    with_ci = any(r.ci for r in board.rows)
    stats = ("mean", "std", "ci_low", "ci_high") if with_ci else ("mean", "std")
    columns += [f"{k}_{stat}" for k in keys for stat in stats]
    devices = board.cost_devices
    if board.has_cost:
        columns += ["params_m", "macs_g"] + [f"latency_ms[{d}]" for d in devices]
        columns += ["macs_lower_bound"] + [f"latency_clean[{d}]" for d in devices]
    columns += ["note", "policy", "protocol", "protocol_hash", "data_fingerprint", "split"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for r in board.rows:
        if r.published:
            note = f"{PUBLISHED_NOTE.removeprefix(PUBLISHED_MARK + ' ')}; source: {r.source}"
        elif r.no_weights:
            note = NO_WEIGHTS_NOTE.removeprefix(NO_WEIGHTS_MARK + " ").rstrip(".")
        else:
            note = ""
        metrics = []
        for k in keys:
            if r.published:
                metrics += [_published_number(r.mean[k]) if k in r.mean else "", ""]
            else:
                metrics += [_number(r.mean.get(k)), _number(r.std.get(k))]
            if with_ci:
                low, high = r.ci.get(k, (None, None))
                metrics += [_number(low), _number(high)]
        if board.has_cost:
            metrics += [_number(r.cost.get("params")), _number(r.cost.get("macs"))]
            metrics += [_number(r.cost.get("latency", {}).get(d)) for d in devices]
            metrics += [_csv_flag(r.cost.get("macs_lower_bound") if r.cost else None)]
            metrics += [
                _csv_flag(d not in r.cost.get("unclean", ()))
                if d in r.cost.get("latency", {})
                else ""
                for d in devices
            ]
        writer.writerow(
            [
                r.method,
                r.label,
                r.pretrained,
                "" if r.published else len(r.seeds),
                "true" if r.published else "false",
                *metrics,
                note,
                r.policy if r.published else board.policy,
                "" if r.published else board.protocol,
                "" if r.published else board.protocol_hash,
                "" if r.published else board.data or "unknown",
                board.split,
            ]
        )
    return out.getvalue()
