"""A leaderboard's data: its rows, the board that holds them, and the marks and notes they show.

A :class:`Row` is a group of runs (mean ± std over seeds) or one published figure; a
:class:`Leaderboard` is one table's rows with what every format prints above and below them (the
protocol, the data, the split, the threshold policy in words, the notes). Nothing here reads a
file or renders text: :mod:`~wsolbench.leaderboard.board` builds boards and
:mod:`~wsolbench.leaderboard.rendering` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wsolbench.data.fingerprint import short
from wsolbench.metrics.overlap import MASK_TAU_KEYS
from wsolbench.metrics.policies import describe_policy
from wsolbench.results.record import METRIC_KEYS

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


@dataclass
class Row:
    """One leaderboard row: a group of runs (mean, std over seeds) or one published figure.

    Attributes:
        method: method name as shown (registered name for runs, paper name for published rows).
        label: what the row changed from its preset and what tells it apart from its method's
            other rows (its plugin's version where those differ, ``key=value`` of overrides and
            differing config keys), or a published row's backbone.
        pretrained: the weights the runs loaded (``"none"``: random initialisation); ``""`` for
            published rows.
        mean: metric key → mean over seeds, percent [0, 100].
        std: metric key → sample std over seeds (ddof=1); absent with one seed.
        seeds: the seeds averaged (empty for published rows).
        seed_independent: the runs do not depend on their seed (one run stands for every seed;
            tables show ``any``).
        published: a published figure, not run by wsolbench.
        source: where a published figure comes from.
        policy: the threshold policy of the figures.
        config: the run config as dotted leaves, without its seed and the keys choosing its
            weights (:func:`wsolbench.results.grouping.row_config`; empty for published rows).
        files: the result files of the runs.
        dataset: the dataset of a published figure (``""`` for runs: the board has one dataset).
        cost: ``{"params": M, "macs": G, "latency": {device: ms}}`` means over the seeds that
            carry cost (empty without any).
        ci: metric key → 95 % bootstrap interval of the seed mean (``compare --ci``; empty
            otherwise): over the test images, and over the seeds too for a row with several
            (two-level) unless the board's intervals hold the models fixed.
        group: the row's letters of the board's groups (``compare --ci``): rows sharing a letter
            are not significantly different on the ranking metric.
        references: what the method's default computes relative to the paper it is named after,
            as its runs recorded it (:attr:`wsolbench.results.record.Result.method_reference`):
            each distinct text (one, unless the method's code changed between its runs); empty
            when none recorded one.
    """

    method: str
    label: str
    pretrained: str
    mean: dict[str, float]
    std: dict[str, float] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    seed_independent: bool = False
    published: bool = False
    source: str = ""
    policy: str = ""
    config: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    dataset: str = ""
    cost: dict = field(default_factory=dict)
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    group: str = ""
    references: tuple[str, ...] = ()

    @property
    def seeds_cell(self) -> str:
        """What a Seeds cell shows: the number of seeds, ``any`` for a seed-independent row."""
        return "any" if self.seed_independent else str(len(self.seeds))

    @property
    def no_weights(self) -> bool:
        return not self.published and self.pretrained.strip().lower() == "none"

    @property
    def display_name(self) -> str:
        mark = PUBLISHED_MARK if self.published else NO_WEIGHTS_MARK if self.no_weights else ""
        return f"{self.method}{mark}" + (f" ({self.label})" if self.label else "")


def reference_notes(rows: list[Row]) -> list[str]:
    """One note per method and text its runs recorded, in row order: ``tedloc: reconstructed from
    TeD-Loc's paper ...``, named by the method when every row of it says the same, else by the
    rows that say it (two plugin versions may describe themselves differently). A method whose
    records hold none gets no note: a table reads records, never the registry."""
    notes = []
    methods = dict.fromkeys(row.method for row in rows if not row.published)
    for method in methods:
        own = [row for row in rows if row.method == method and not row.published]
        texts = dict.fromkeys(text for row in own for text in row.references)
        for text in texts:
            saying = [row for row in own if text in row.references]
            whole = len(texts) == 1 and len(saying) == len(own)
            names = method if whole else ", ".join(row.display_name for row in saying)
            notes.append(f"{names}: {text}")
    return notes


@dataclass
class Leaderboard:
    """A rendered-format-independent leaderboard; :func:`render` turns it into text."""

    protocol: str
    protocol_hash: str
    dataset: str
    split: str
    policy: str
    rows: list[Row]
    # the notes under the table; rendering adds those of what it shows (the cost notes with the
    # cost columns, the full weights sources behind short names, the columns left out)
    notes: list[str]
    taus: list[float] = field(default_factory=list)  # the grid τ a fixed policy landed on
    data: str | None = None  # the combined data fingerprint of every run (None: unknown)
    data_splits: dict[str, int] = field(default_factory=dict)  # role -> images
    # compare --ci: the intervals' kind ("BCa", "percentile") and whether they hold the models
    # fixed (images only) instead of drawing the seeds of rows that have several; the number of
    # resamples and the seed that made them
    interval_kind: str = ""
    models_fixed: bool = False
    ci_resamples: int = 0
    ci_seed: int = 0

    @property
    def metric_keys(self) -> list[str]:
        """The metric columns: those at least one row has, in the canonical order; on a board
        without boxes the mask metrics come first (PxAP ranks, as in histology papers)."""
        keys = [k for k in METRIC_KEYS if any(k in r.mean for r in self.rows)]
        if "maxboxacc_v2" in keys:
            return keys
        masks = ("pxap", *MASK_TAU_KEYS)
        return [k for k in keys if k in masks] + [k for k in keys if k not in masks]

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
        keys = self.metric_keys
        policy = describe_policy(
            self.policy, self.split, self.taus, "miou" in keys, "top1_loc" in keys
        )
        return [
            f"Protocol: {self.protocol} (hash {self.protocol_hash[:12]})",
            f"Data: {data}",
            f"Split: {self.split}",
            f"Policy: {policy}",
            MAPS_NOTE,
        ]
