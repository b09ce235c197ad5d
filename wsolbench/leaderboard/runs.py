"""Runs into rows: each run's metrics under the policy, then one row per (method, plugin release,
weights, config).

Metrics are recomputed from a result's stored per-threshold counts (never from its stored summary
metrics, so a policy added later applies to old results). Runs that agree on
:func:`wsolbench.results.grouping.row_key` are seeds of one row: mean ± sample std (ddof=1) over
their seeds; runs with and without pretrained weights, or of two versions of a plugin, are never
averaged together. Two configs of one method are told apart by a label made of the config keys
that differ between them, two plugin versions by the version (``has (plugin=wsolbench-has
0.2.0)``), and every row's label also names what its runs' ``-o`` overrides changed from the
preset (except those choosing a part's weights, which its Pretrained cell names by content).
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any

from wsolbench.leaderboard.cost_columns import row_cost
from wsolbench.leaderboard.rows import Row
from wsolbench.metrics.policies import can_select
from wsolbench.results.environment import code_label, env_field
from wsolbench.results.grouping import canonical, row_config, row_key
from wsolbench.results.record import METRIC_KEYS, Result, ResultError

logger = logging.getLogger(__name__)


def recompute(
    path: Path, result: Result, policy: str, split: str
) -> tuple[dict[str, float], dict[str, float]]:
    """A run's metrics under ``policy`` from its stored ``split`` counts, and the τ chosen.

    Returns:
        (metric key -> percent, metric key -> threshold τ each was read at).

    Raises:
        ResultError: the result has no counts of ``split``, or ``select`` without val counts.
    """
    from wsolbench.metrics import summarize  # numpy + OpenCV: only when a table is built

    counts = result.counts.get(split)
    if not counts:
        raise ResultError(
            f"{path}: no counts for the {split!r} split (it has: "
            f"{', '.join(result.counts) or 'none'}); choose another split with --split"
        )
    val = result.counts.get("val")
    if policy == "select" and not can_select(val):
        raise ResultError(
            f"{path}: the 'select' policy needs box or mask counts on a val split and this result "
            "has none; use --policy oracle or fixed:<tau>, or re-run under a protocol with a val "
            "split"
        )
    try:
        values, chosen = summarize(counts, policy, val_counts=val)
    except (ValueError, KeyError) as exc:
        raise ResultError(f"{path}: cannot summarize the {split} counts: {exc!s}") from exc
    return dict(values), dict(chosen)


def _label_value(value: Any) -> str:
    return value if isinstance(value, str) else canonical(value)


def _differing_keys(flats: list[dict]) -> list[str]:
    """The dotted keys whose values differ between row configs (dotted leaves) of one method."""
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({canonical(f.get(k, "\0unset")) for f in flats}) > 1]


def _shown_overrides(result: Result) -> dict[str, Any]:
    """A run's overrides of the keys its row is told apart by (:func:`row_config`): not those
    choosing a part's weights (``teacher``, ``text.checkpoint``), which the Pretrained cell names
    by content, nor an eval's training keys."""
    row = row_config(result)
    return {k: v for k, v in result.overrides.items() if k in row}


def _label(shown: dict[str, Any], flat: dict, differing: list[str], release: str | None) -> str:
    """``plugin=<release>`` when the plugin's release tells the row apart from its method's other
    rows (``release`` None when it does not; ``version unknown`` for a plugin not installed as a
    distribution and a record before ``env["code"]``), then ``key=value`` for the row's shown
    overrides and for the keys that do (``unset`` where its row config, dotted leaves, lacks
    one)."""
    items = {k: _label_value(v) for k, v in shown.items()}
    items.update({k: _label_value(flat[k]) if k in flat else "unset" for k in differing})
    named = [] if release is None else [f"plugin={release or 'version unknown'}"]
    return ", ".join(named + [f"{k}={v}" for k, v in sorted(items.items())])


def group_runs(runs: list[tuple[Path, Result, dict[str, float]]]) -> list[Row]:
    """(file, result, metrics) per run -> one :class:`Row` per row key, labelled when one method
    has several; two runs of one row with the same seed are refused (:class:`ResultError`)."""
    groups: dict[tuple[str, str, str, str], list[tuple[Path, Result, dict[str, float]]]] = {}
    for run in runs:
        groups.setdefault(row_key(run[1]), []).append(run)

    rows: list[Row] = []
    shown: list[dict[str, Any]] = []  # per row, the overrides its label shows
    releases: list[str] = []  # per row, its plugin's release (row_key)
    for (method, release, *_), members in groups.items():
        seed_independent = all(result.seed_independent for _, result, _ in members)
        # every run's text, read before a seed-independent row keeps only one of its runs
        references = tuple(
            dict.fromkeys(r.method_reference for _, r, _ in members if r.method_reference)
        )
        if seed_independent:
            members = [_one_of_seed_independent(method, members)]
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
        cost = row_cost([result.cost for _, result, _ in members if result.cost])
        rows.append(
            Row(
                method=method,
                label="",  # below, once every row of the method is known
                pretrained=members[0][1].pretrained,  # the first run's name for the weights
                mean=mean,
                std=std,
                seeds=sorted(by_seed),
                seed_independent=seed_independent,
                config=row_config(members[0][1]),
                files=[p for p, _, _ in members],
                cost=cost,
                references=references,
            )
        )
        shown.append(_shown_overrides(members[0][1]))
        releases.append(release)

    by_method: dict[str, list[int]] = {}
    for position, row in enumerate(rows):
        by_method.setdefault(row.method, []).append(position)
    for same in by_method.values():
        differing = _differing_keys([rows[i].config for i in same]) if len(same) > 1 else []
        named = len({releases[i] for i in same}) > 1
        for i in same:
            release = releases[i] if named else None
            rows[i].label = _label(shown[i], rows[i].config, differing, release)
    return rows


def _one_of_seed_independent(method: str, members: list) -> tuple:
    """The run that stands for a seed-independent row: copies under other seeds must be the same
    run (identical metrics), and count once, not as seeds."""
    first = min(members, key=lambda member: member[1].seed)
    for path, _, values in members:
        if values != first[2]:
            raise ResultError(
                f"{method} declares its runs seed-independent, but {first[0]} and {path} differ; "
                "its maps depend on something the record does not hold: report it to the method's "
                "authors"
            )
    return first


def ranking_metric(rows: list[Row]) -> str:
    """The metric a board ranks its runs by: MaxBoxAccV2, or PxAP on a board without boxes (as
    in histology papers; :attr:`Leaderboard.metric_keys` puts it first there)."""
    return "maxboxacc_v2" if any("maxboxacc_v2" in r.mean for r in rows) else "pxap"


def run_sort_key(row: Row, ranking: str) -> tuple:
    """``ranking`` descending, rows without it last; ties by method, label, weights."""
    value = row.mean.get(ranking)
    return (value is None, -(value or 0.0), row.method, row.label, row.pretrained)


#: what a row's seeds share for their spread to be the seed's alone: the settings that order
#: float sums (threads, batch, ranks), the device, and the code (recorded ``env`` fields)
SHARED_CONDITIONS = ("torch_threads", "eval_batch_size", "world_size", "device", "code")


def _condition(env: dict, field: str) -> str:
    """A run's value of one of :data:`SHARED_CONDITIONS`, as a note shows it."""
    if field == "code":  # wsolbench's and a plugin's; a run resumed under other code names each
        trained_by = env.get("training_code")
        if trained_by:
            return " then ".join(code_label(entry["code"]) for entry in trained_by)
        return code_label(env.get("code"))
    value = env_field(env, field)
    return "not recorded" if value is None else str(value)


def mixed_conditions(rows: list[Row], results: dict[Path, Result]) -> list[str]:
    """One note per row and condition its seeds do not share (:data:`SHARED_CONDITIONS`), e.g.
    ``cam: its seeds ran under different torch_threads: 1 (seeds 0, 1), 2 (seed 2)``: they are
    averaged (one config), but their spread holds that difference too."""
    notes = []
    for row in rows:
        members = [results[path] for path in row.files if path in results]
        for field in SHARED_CONDITIONS:
            seeds: dict[str, list[int]] = {}
            for result in members:
                seeds.setdefault(_condition(result.env, field), []).append(result.seed)
            if len(seeds) > 1:
                listing = ", ".join(
                    f"{value} (seed{'s' if len(of) > 1 else ''} {', '.join(map(str, sorted(of)))})"
                    for value, of in seeds.items()
                )
                notes.append(
                    f"{row.display_name}: its seeds ran under different {field}: {listing}"
                )
    return notes
