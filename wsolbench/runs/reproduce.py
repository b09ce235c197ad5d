"""``wsolbench reproduce``: rerun a result from its record alone, and say whether its numbers came
back — and if not, which recorded condition differs here.

The rerun takes everything from the record: the method, its whole config (rebuilt as ``-o``
overrides of this wsolbench's defaults, and refused if they no longer give the recorded config),
the protocol (the shipped one of that id and hash, or the copy in the run's ``config.yaml``), the
seed, torch's thread count and the device; the data is checked against the recorded fingerprint by
the run itself (a shipped protocol pins it) and again here. Every metric of every split and policy
is then compared exactly: a result is reproduced when all are equal. When they are not, the first
environment field that differs between the record and this machine (the code's commit, the thread
count, a library, the CPU) is named: the likely cause, for the reader to judge. An ``eval``'s
result is evaluated again on the file it names by sha256 (``--weights``); a run whose method
loaded another run's weights has that run rerun first where its folder is not here
(:mod:`wsolbench.runs.input_runs`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsolbench.config import RUN_PREFIX, dotted_leaves, is_path_key, parse_override, path_value
from wsolbench.data.fingerprint import records_fingerprint
from wsolbench.results.environment import code_label, env_changes, env_field
from wsolbench.results.grouping import weights_keys
from wsolbench.results.record import RESULT_FILENAME, Result, load_result
from wsolbench.results.verify import BindingError, verify_result
from wsolbench.results.workdir import read_record
from wsolbench.runs.context import RunError, RunSpec
from wsolbench.runs.input_runs import RerunOptions, check_before_work, planned_inputs, rerun_input
from wsolbench.runs.record_spec import (
    config_overrides,
    local_defaults,
    record_device,
    record_method,
    record_protocol,
    with_leaf,
)
from wsolbench.util.weights_source import content_key, file_sha256

logger = logging.getLogger(__name__)


@dataclass
class Reproduction:
    """A recorded result beside its rerun.

    Attributes:
        recorded, reproduced: the two results.
        rows: ``(split, policy, metric, recorded value, reproduced value)`` for every metric.
        differences: what differs between the two records besides the metrics, most telling
            first (``"torch_threads: 2 recorded, 1 here"``); empty when nothing does.
    """

    recorded: Result
    reproduced: Result
    rows: list[tuple[str, str, str, float, float | None]]
    differences: list[str]

    @property
    def equal(self) -> bool:
        return all(a == b for *_, a, b in self.rows)


def _evaluated_weights(path: Path, recorded: Result, weights: str | Path | None) -> Path | None:
    """The weights file to evaluate again when the result at ``path`` is an ``eval``'s (it
    names the file by sha256; a result older than that field, its run record does), else None;
    refuses a missing or other file, and ``weights`` for a result that trained."""
    evaluated = recorded.evaluated_weights or (read_record(path.parent) or {}).get("weights")
    if evaluated is None:
        if weights is not None:
            raise RunError(
                f"--weights: {path} is not the result of an eval (it names no evaluated weights "
                "file): a trained run is rerun from its record alone; drop --weights"
            )
        return None
    if weights is None:
        raise RunError(
            f"{path} evaluated a weights file (sha256 {evaluated[:12]}) rather than training "
            "one: pass that file with --weights FILE, and it is evaluated again"
        )
    weights = Path(weights)
    if not weights.is_file():
        raise RunError(f"--weights {weights}: no such file")
    found = file_sha256(weights)
    if found != evaluated:
        raise RunError(
            f"--weights {weights} (sha256 {found[:12]}) is not the file the result evaluated "
            f"(sha256 {evaluated[:12]}); pass that one"
        )
    return weights


def _data_difference(recorded: Result, reproduced: Result) -> str:
    """What differs in the data: the fingerprints, or only their version (a record made before
    mask files were hashed, of the same split records)."""
    was, now = recorded.data_fingerprint or {}, reproduced.data_fingerprint or {}
    if (
        was.get("version") != now.get("version")
        and was.get("splits")
        and records_fingerprint(was) == records_fingerprint(now)
    ):
        return (
            f"data: fingerprint version {was.get('version')} recorded, {now.get('version')} here "
            "(mask files hashed since); every split's records are the same"
        )
    return f"data: {recorded.data_sha256} recorded, {reproduced.data_sha256} here"


def env_differences(recorded: Result, reproduced: Result) -> list[str]:
    """The conditions that differ between two results besides their metrics, most telling
    first: data, weights (by content), then the code and :data:`ENV_FIELDS`."""
    lines = []
    if recorded.data_sha256 != reproduced.data_sha256:
        lines.append(_data_difference(recorded, reproduced))
    if content_key(recorded.pretrained) != content_key(reproduced.pretrained):
        lines.append(
            f"pretrained: {recorded.pretrained!r} recorded, {reproduced.pretrained!r} here"
        )
    trained_by = recorded.env.get("training_code")
    if trained_by and trained_by != reproduced.env.get("training_code"):
        segments = ", ".join(
            f"from epoch {entry['start_epoch'] + 1} by {code_label(entry['code'])}"
            for entry in trained_by
        )
        lines.append(f"training_code: a resumed run, trained {segments}; one code here")
    return lines + env_changes(recorded.env, reproduced.env)


def _follows_from_counts(recorded: Result) -> bool:
    """Whether every recorded metric is what the recorded counts give. A metric this version
    computes that the record does not hold (one added since the record was made, such as Dice /
    mIoU on a protocol with masks) is no edit: only the recorded figures are checked."""
    from wsolbench.metrics.policies import metrics_from_counts  # numpy + OpenCV: only when needed

    computed = metrics_from_counts(recorded.counts)
    return all(
        computed.get(split, {}).get(policy, {}).get(key) == value
        for split, policies in recorded.metrics.items()
        for policy, values in policies.items()
        for key, value in values.items()
    )


def _given_weights(recorded: Result, overrides: Sequence[str]) -> dict:
    """The recorded config with ``reproduce -o`` applied: only where a part's weights are here —
    a file for a ``checkpoint`` key, ``run:DIR`` for a run's (:func:`weights_keys`), read as
    ``run -o`` reads a path (:func:`~wsolbench.config.path_value`); the run checks them by
    content."""
    leaves = dotted_leaves(recorded.config)
    where_keys = sorted(
        key
        for key in weights_keys(recorded)
        if key in leaves and (is_path_key(key) or str(leaves[key]).startswith(RUN_PREFIX))
    )
    config = recorded.config
    for text in overrides:
        keys, value = parse_override(text)
        key = ".".join(keys)
        says_where = is_path_key(key) or str(value).startswith(RUN_PREFIX)
        if key not in where_keys or not isinstance(value, str) or not says_where:
            raise RunError(
                f"-o {text}: reproduce takes -o only to say where a part's weights are here "
                f"(a file for a checkpoint key, run:DIR for a run's): "
                f"{', '.join(where_keys) or 'this run has no such key'}; anything else would be "
                "another run"
            )
        config = with_leaf(config, key, path_value(key, value, text, nullable=False))
    return config


def reproduce(
    source: str | Path,
    *,
    work_dir: str | Path | None = None,
    data_root: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    weights: str | Path | None = None,
    weights_overrides: Sequence[str] = (),
    num_workers: int | None = None,
    count_workers: int = 1,
    progress: bool = True,
) -> Reproduction:
    """Rerun the result at ``source`` (a run folder or a ``result.json``) from its record.

    Args:
        work_dir: where the rerun goes (default ``work_dirs/reproduce/<protocol>/<method>/
            seed<S>``); an interrupted rerun there continues (``--resume``), a finished one
            is refused (its result would be compared, not a rerun's). A run whose weights the
            method loaded and whose folder is not here is rerun first, into the cache
            (:mod:`wsolbench.runs.input_runs`).
        device: default: the recorded device (``cpu`` when it was a GPU this machine lacks);
            an input run is rerun on its own recorded device.
        batch_size: the evaluation batch; default: the recorded one (64, the default of the
            commands, for a record made before it was recorded).
        weights_overrides: ``KEY=VALUE`` for config keys that choose a part's weights
            (``backbone.checkpoint=PATH``, ``teacher=run:DIR``): where those weights are on this
            machine. The method must then load the recorded weights (by sha256), as always.
        weights: for the result of an ``eval``, the weights file it evaluated (checked by
            content against the result's ``evaluated_weights``); it is evaluated again, nothing
            is trained.

    Raises:
        RunError, ResultError, BindingError: the result cannot be read, verified or rerun here.
    """
    from wsolbench.runs.execute import evaluate_weights, execute

    source = Path(source)
    path = source / RESULT_FILENAME if source.is_dir() else source
    recorded = load_result(path)
    verify_result(path, recorded)
    if not _follows_from_counts(recorded):
        raise BindingError(
            f"{path}: its metrics do not follow from its counts (edited by hand?); restore the "
            "run's own result.json"
        )
    weights = _evaluated_weights(path, recorded, weights)
    # the result names its protocol's content and the method's class; an older one left them to
    # the run record beside it
    record = read_record(path.parent) or {}
    protocol = record_protocol(
        {
            "protocol": recorded.protocol,
            "protocol_hash": recorded.protocol_hash,
            "protocol_spec": recorded.protocol_spec or record.get("protocol_spec"),
        },
        path,
    )
    device = device or record_device(recorded.env, path)
    if batch_size is None:
        batch_size = int(env_field(recorded.env, "eval_batch_size"))
    protocol_id = protocol if isinstance(protocol, str) else protocol.id
    if work_dir is None:
        work_dir = Path("work_dirs", "reproduce", protocol_id, recorded.method)
        work_dir /= f"seed{recorded.seed}"
    work_dir = Path(work_dir)
    if (work_dir / RESULT_FILENAME).exists():
        # its result would be compared, not a rerun's: the recorded run's own folder, or an
        # earlier rerun (perhaps by other code) would make a success that proves nothing
        raise RunError(
            f"{work_dir} already holds a finished result ({work_dir / RESULT_FILENAME}): "
            "reproduce compares a fresh rerun; pass another --work-dir or delete that folder "
            "(an interrupted rerun there, without a result, continues)"
        )
    method = record_method(
        recorded.method, recorded.method_source or record.get("method_source"), recorded.env
    )
    config = local_defaults(_given_weights(recorded, weights_overrides), method, recorded.dataset)
    config, reruns = planned_inputs(
        config, recorded.input_runs, recorded.provenance, recorded.dataset, path
    )
    spec = RunSpec(
        method=method,
        dataset=recorded.dataset,
        protocol=protocol,
        data_root=data_root,
        work_dir=str(work_dir),
        seed=recorded.seed,
        overrides=config_overrides(config),
        device=device,
        resume=True,
        batch_size=batch_size,
        num_workers=num_workers,
        count_workers=count_workers,
        threads=recorded.env.get("torch_threads"),
        progress=progress,
        config=config,
        pretrained=None if weights is not None else recorded.pretrained,
    )
    if reruns:
        check_before_work(spec)
        options = RerunOptions(data_root, num_workers, count_workers, progress)
        for rerun in reruns:
            rerun_input(rerun, options)
    reproduced = execute(spec) if weights is None else evaluate_weights(spec, weights)
    rows = [
        (split, policy, key, value, reproduced.metrics.get(split, {}).get(policy, {}).get(key))
        for split, policies in recorded.metrics.items()
        for policy, values in policies.items()
        for key, value in values.items()
    ]
    return Reproduction(recorded, reproduced, rows, env_differences(recorded, reproduced))
