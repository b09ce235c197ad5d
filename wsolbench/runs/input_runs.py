"""The runs whose weights a result's method loaded (a TeD-Loc ``teacher=run:DIR``), rerun on a
machine without their folders.

A result embeds each such run's record (``input_runs``: :func:`wsolbench.runs.rebuild.input_run`).
Where the ``run:`` folder its config names does not hold the recorded weights here,
``reproduce`` reruns that run from the record into ``$WSOLBENCH_CACHE/input-runs/<method>-<sha256
[:12]>`` (its own input runs first), keeps it only when its weights are the recorded ones, and
trains the result's method on it. Only runs on the result's own dataset are rerun (the
``--data-root`` given is theirs too).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from wsolbench.config import RUN_PREFIX, dotted_leaves
from wsolbench.results.environment import env_changes, env_field
from wsolbench.results.grouping import part_weights_keys
from wsolbench.results.workdir import RECORD_FILE, WEIGHTS_FILE
from wsolbench.runs.context import RunError, RunSpec
from wsolbench.runs.record_spec import (
    config_overrides,
    local_defaults,
    record_device,
    record_method,
    record_protocol,
    with_leaf,
)
from wsolbench.util.atomic import rename_into_place
from wsolbench.util.cache import default_cache_dir
from wsolbench.util.weights_source import file_sha256

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerunOptions:
    """What a rerun of an input run takes from the command (the rest comes from its record).

    Attributes:
        data_root: the ``--data-root`` given (an input run is rerun only on the result's
            dataset, so the same root).
    """

    data_root: str | None
    num_workers: int | None
    count_workers: int
    progress: bool


@dataclass(frozen=True)
class InputRerun:
    """A run whose weights a part loaded, to rerun from the record the result embeds.

    Attributes:
        part: the part that loaded it (``teacher``).
        recorded: the ``run:`` folder the config names, which does not hold those weights here.
        entry: the embedded record (:func:`wsolbench.runs.rebuild.input_run`).
        folder: where the rerun goes: ``$WSOLBENCH_CACHE/input-runs/<method>-<sha256[:12]>``,
            named by the weights it must give (kept only when it gives them).
    """

    part: str
    recorded: str
    entry: dict
    folder: Path


def planned_inputs(
    config: dict, input_runs: dict, parts: Collection[str], dataset: str, where: Path
) -> tuple[dict, list[InputRerun]]:
    """``config`` with each ``run:<folder>`` that does not hold the recorded weights here (another
    machine, a moved folder) replaced by the folder its rerun goes to, and those reruns.

    Args:
        input_runs: the result's (or an input run's) ``input_runs``.
        parts: the parts its provenance names (which config keys chose their weights).

    Raises:
        RunError: an entry is not a run's record, or its run is on another dataset.
    """
    leaves = dotted_leaves(config)
    keys_of = part_weights_keys(parts or input_runs)
    reruns = []
    for part, entry in input_runs.items():
        _check_entry(part, entry, where)
        keys = keys_of.get(part, (part,))
        key = next((k for k in keys if str(leaves.get(k, "")).startswith(RUN_PREFIX)), None)
        if key is None:
            continue  # the method builds that run itself (TeD-Loc's teacher=cam)
        recorded, sha256 = leaves[key][4:], entry["weights_sha256"]
        if _holds_weights(Path(recorded).expanduser(), sha256):
            continue  # the very run, here
        record = entry["record"]
        if record["dataset"] != dataset:
            raise RunError(
                f"{where}: its {part} run:{recorded} ({record['method']} on {record['dataset']}, "
                f"weights sha256 {sha256[:12]}) is not here, and reproduce reruns only runs on the "
                f"result's own dataset ({dataset}): place that run's folder at {recorded}"
            )
        folder = default_cache_dir() / "input-runs" / f"{record['method']}-{sha256[:12]}"
        config = with_leaf(config, key, f"{RUN_PREFIX}{folder}")
        reruns.append(InputRerun(part, recorded, entry, folder))
    return config, reruns


def _check_entry(part: str, entry, where: Path) -> None:
    """Refuse an ``input_runs`` entry that is not what :func:`~wsolbench.runs.rebuild.input_run`
    writes (a hand-edited or truncated result)."""
    record = entry.get("record") if isinstance(entry, dict) else None
    keys = ("method", "dataset", "protocol", "protocol_hash", "seed", "config")
    if not (
        isinstance(record, dict)
        and all(key in record for key in keys)
        and isinstance(entry.get("weights_sha256"), str)
    ):
        raise RunError(
            f"{where}: input_runs.{part} is not the record of a run (a record with "
            f"{', '.join(keys)}, and weights_sha256); restore the run's own result.json"
        )


def _holds_weights(folder: Path, sha256: str) -> bool:
    weights = folder / WEIGHTS_FILE
    return weights.is_file() and file_sha256(weights) == sha256


def rerun_input(rerun: InputRerun, options: RerunOptions) -> None:
    """Rerun an input run (its own input runs first) from its embedded record into a hidden
    sibling of its folder (an interrupted rerun continues there), and rename it into place only
    when its weights are the recorded ones; a folder an earlier reproduction left is reused.

    Raises:
        RunError: the rerun gave other weights (nothing is kept; the message names what differs).
    """
    from wsolbench.runs.execute import execute

    entry, folder = rerun.entry, rerun.folder
    if _holds_weights(folder, entry["weights_sha256"]):
        return
    if folder.exists():  # named by weights it does not hold: nothing may take its place
        raise RunError(
            f"{folder} does not hold the weights its name says (sha256 "
            f"{entry['weights_sha256'][:12]}): delete it, and reproduce again"
        )
    record, env = entry["record"], entry.get("env", {})
    method = record_method(record["method"], record.get("method_source"), env)
    config, inner = planned_inputs(
        local_defaults(record["config"], method, record["dataset"]),
        entry.get("input_runs", {}),
        entry.get("provenance", {}),
        record["dataset"],
        folder,
    )
    for each in inner:
        rerun_input(each, options)
    partial = folder.with_name(f".{folder.name}.partial")
    logger.warning(
        "%s: run:%s is not here; rerunning it from the record the result embeds, in %s",
        rerun.part,
        rerun.recorded,
        folder,
    )
    result = execute(
        RunSpec(
            method=method,
            dataset=record["dataset"],
            protocol=record_protocol(record, folder / RECORD_FILE),
            data_root=options.data_root,
            work_dir=str(partial),
            seed=record["seed"],
            overrides=config_overrides(config),
            device=record_device(env, folder),  # the recorded one: what gave those weights
            resume=True,
            batch_size=int(env_field(env, "eval_batch_size")),
            num_workers=options.num_workers,
            count_workers=options.count_workers,
            threads=record.get("threads") or env.get("torch_threads"),
            progress=options.progress,
            config=config,
            pretrained=record.get("pretrained"),
        )
    )
    found = file_sha256(partial / WEIGHTS_FILE)
    if found != entry["weights_sha256"]:
        shutil.rmtree(partial, ignore_errors=True)
        causes = env_changes(env, result.env) or ["nothing recorded differs"]
        raise RunError(
            f"the rerun of {rerun.part} run:{rerun.recorded} ({record['method']}) gave weights "
            f"sha256 {found[:12]}, not the recorded {entry['weights_sha256'][:12]} "
            f"({'; '.join(causes[:3])}); nothing was kept. Rerun under the recorded conditions, "
            f"or place that run's own folder at {rerun.recorded}"
        )
    rename_into_place(partial, folder)


def check_before_work(spec: RunSpec) -> None:
    """What ``execute(spec)`` checks before any work (names, config, data, the work dir, the
    recorded weights), now: an input run is rerun first, and a mistake must not wait for it."""
    from wsolbench.runs.context import locked_run, open_work_dir
    from wsolbench.runs.execute import built_method

    created = not Path(spec.work_dir).exists()
    with locked_run(spec, f"seed{spec.seed}") as context:
        open_work_dir(context)
        if spec.pretrained is not None:  # its weights, as execute checks them later
            built_method(context)
    if created:  # an input run may yet fail: leave nothing behind but what its rerun makes
        shutil.rmtree(spec.work_dir, ignore_errors=True)
