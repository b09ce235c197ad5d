"""Published rows: figures from papers (``reports/published.yaml``), beside runs, never averaged.

Each entry of the file becomes a :class:`~wsolbench.leaderboard.rows.Row` marked ``†`` with its
source and threshold policy; a board shows the entries of its own dataset, on the test split only,
after every run row.
"""

from __future__ import annotations

from pathlib import Path

import yaml

import wsolbench
from wsolbench.data.sources import list_datasets
from wsolbench.leaderboard.rows import PUBLISHED_MARK, Row
from wsolbench.results.record import METRIC_KEYS, ResultError
from wsolbench.util.names import unknown_name_message
from wsolbench.util.text_files import read_utf8
from wsolbench.util.yaml_errors import yaml_problem


def default_published_path() -> Path:
    """``reports/published.yaml`` of the source checkout this package is imported from."""
    return Path(wsolbench.__file__).resolve().parents[1] / "reports" / "published.yaml"


def load_published(path: str | Path) -> list[Row]:
    """Read a published-rows file (``reports/published.yaml`` layout) into rows of every dataset.

    Each entry: ``method``, ``backbone``, ``dataset`` (``cub`` / ``ilsvrc`` / ...), ``source``,
    ``policy``, ``metrics`` ({metric key: percent}).

    Raises:
        ResultError: the file is missing or malformed; the message names the entry and the key.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(read_utf8(path))
    except FileNotFoundError as exc:
        raise ResultError(f"{path}: no such published-rows file") from exc
    except yaml.YAMLError as exc:
        raise ResultError(f"{path}: not valid YAML, {yaml_problem(exc)}") from exc
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
        dataset = str(entry["dataset"]).lower()
        if dataset not in list_datasets():  # else the row is never shown, with nothing said
            raise ResultError(
                f"{where}: {unknown_name_message('dataset', dataset, list_datasets())}"
            )
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
                dataset=dataset,
            )
        )
    return rows


def published_rows(published: str | Path | None | bool, dataset: str) -> list[Row]:
    """The published rows of ``dataset`` (``compare``'s ``published`` argument: True, a path, or
    False / None for none)."""
    if published is None or published is False:
        return []
    if published is True:
        path = default_published_path()
        if not path.is_file():
            return []
    else:
        path = Path(published)
    return [r for r in load_published(path) if r.dataset == dataset.lower()]


def source_notes(rows: list[Row]) -> list[str]:
    """One ``†`` note per (source, policy), naming its rows."""
    by_source: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        by_source.setdefault((row.source, row.policy), []).append(
            f"{row.method} ({row.label})" if row.label else row.method
        )
    return [
        f"{PUBLISHED_MARK} {', '.join(names)}: source {source}; threshold policy {policy}."
        for (source, policy), names in by_source.items()
    ]


def published_sort_key(row: Row, ranking: str) -> tuple:
    """``ranking`` (the board's: MaxBoxAccV2, or PxAP without boxes) descending, rows without it
    last."""
    value = row.mean.get(ranking)
    return (value is None, -(value or 0.0))  # stable: file order among ties
