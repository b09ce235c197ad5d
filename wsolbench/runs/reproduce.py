"""``wsolbench reproduce``: rerun a result from its record alone, and say whether its numbers came
back — and if not, which recorded condition differs here.

The rerun takes everything from the record: the method, its whole config (rebuilt as ``-o``
overrides of this wsolbench's defaults, and refused if they no longer give the recorded config),
the protocol (the shipped one of that id and hash, or the copy in the run's ``config.yaml``), the
seed, torch's thread count and the device; the data is checked against the recorded fingerprint by
the run itself (a shipped protocol pins it) and again here. Every metric of every split and policy
is then compared exactly: a result is reproduced when all are equal. When they are not, the first
environment field that differs between the record and this machine (the code's commit, the thread
count, a library, the CPU) is named: the likely cause, for the reader to judge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from wsolbench.config import dotted_leaves
from wsolbench.data.fingerprint import records_fingerprint
from wsolbench.protocol import Protocol, ProtocolError, load_protocol, protocol_from_snapshot
from wsolbench.results.environment import code_label, env_field
from wsolbench.results.record import RESULT_FILENAME, Result, load_result, metrics_from_counts
from wsolbench.results.verify import BindingError, verify_result
from wsolbench.results.workdir import RECORD_FILE, WEIGHTS_FILE, read_record
from wsolbench.runs.context import RunError, RunSpec
from wsolbench.util.weights_source import content_key, file_sha256

logger = logging.getLogger(__name__)

# Environment fields compared, in the order a difference is most likely to explain another number.
ENV_FIELDS = (
    "code.wsolbench.commit",
    "code.wsolbench.dirty",
    "torch_threads",
    "eval_batch_size",
    "device",
    "torch",
    "numpy",
    "cv2",
    "mmengine",
    "timm",
    "open_clip",
    "cpu_model",
    "cuda_device",
    "python",
    "world_size",
)


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


def config_overrides(config: dict) -> list[str]:
    """A resolved config as ``-o KEY=VALUE`` overrides, one per top-level key (values in YAML
    flow form, as ``-o`` parses them). A section given whole is applied key by key as the
    method's defaults type it, an open mapping (``backbone.kwargs``, ``{}`` by default) and a
    section of another ``type`` taken whole: dotted leaves would name keys those lack."""
    return [
        f"{key}={yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()}".removesuffix(
            "\n..."
        )
        for key, value in config.items()
    ]


def _protocol(record: dict, where: Path) -> Protocol | str:
    """The protocol a run was made under: the shipped one of its id when the hash agrees, else
    the copy its record (``config.yaml``) holds.

    Args:
        record: ``protocol`` and ``protocol_hash``, and ``protocol_spec`` when it has one.
        where: the result or record named in an error.
    """
    protocol_id, protocol_hash = record["protocol"], record["protocol_hash"]
    try:
        if load_protocol(protocol_id).hash == protocol_hash:
            return protocol_id
    except ProtocolError:
        pass
    if "protocol_spec" not in record:
        raise RunError(
            f"{where}: protocol {protocol_id} (hash {protocol_hash[:12]}) is not shipped with "
            f"this wsolbench and no {RECORD_FILE} beside the result holds it; reproduce from the "
            "run's work dir"
        )
    protocol = protocol_from_snapshot(record["protocol_spec"], where)
    if protocol.hash != protocol_hash:
        raise RunError(f"{where}: the protocol in {RECORD_FILE} is not the result's (hash differs)")
    return protocol


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


def _method(name: str, source: str | None) -> str:
    """The method to rerun: its registered name, else where the run's record says its class
    lives (``source``: a method run as ``--method pkg.module:Class``)."""
    from wsolbench.registry import get_method

    try:
        get_method(name)
        return name
    except KeyError:
        if source is None:
            raise
        return source


def _device(env: dict, where: Path) -> str:
    """The recorded device, or ``cpu`` when it was a GPU this machine lacks."""
    device = str(env.get("device", "cpu"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            logger.warning(
                "%s was made on %s; this machine has no GPU: rerun on the CPU", where, device
            )
            return "cpu"
    return device


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
    first: data, weights (by content), then :data:`ENV_FIELDS`."""
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
    return lines + _env_differences(recorded.env, reproduced.env)


def _env_differences(recorded: dict, here: dict) -> list[str]:
    """``"<field>: <recorded> recorded, <value> here"`` for each of :data:`ENV_FIELDS` that
    differs between two ``env`` records."""
    lines = []
    for field in ENV_FIELDS:
        was, now = env_field(recorded, field), env_field(here, field)
        if was != now:
            shown = "not recorded" if was is None else f"{was!r} recorded"
            lines.append(f"{field}: {shown}, {now!r} here")
    return lines


def _follows_from_counts(recorded: Result) -> bool:
    """Whether every recorded metric is what the recorded counts give. A metric this version
    computes that the record does not hold (one added since the record was made, such as Dice /
    mIoU on a protocol with masks) is no edit: only the recorded figures are checked."""
    computed = metrics_from_counts(recorded.counts)
    return all(
        computed.get(split, {}).get(policy, {}).get(key) == value
        for split, policies in recorded.metrics.items()
        for policy, values in policies.items()
        for key, value in values.items()
    )


@dataclass(frozen=True)
class RerunOptions:
    """What a rerun of an input run takes from the command (the rest comes from its record).

    Attributes:
        data_root: the ``--data-root`` given, for a run on ``dataset`` (another dataset's input
            run reads its default root).
    """

    data_root: str | None
    dataset: str
    num_workers: int | None
    count_workers: int
    progress: bool


def _with_input_runs(config: dict, input_runs: dict, work_dir: Path, options: RerunOptions) -> dict:
    """``config`` with each ``run:<folder>`` whose weights are not in that folder here (another
    machine, a moved folder) replaced by a rerun of that run from the record the result embeds
    (``input_runs``), in ``<work_dir>-<part>``.

    Raises:
        RunError: the rerun's weights are not the recorded ones (the message names what differs).
    """
    leaves = dotted_leaves(config)
    for part, entry in input_runs.items():
        keys = (part, f"{part}.pretrained", f"{part}.checkpoint")
        key = next((k for k in keys if str(leaves.get(k, "")).startswith("run:")), None)
        if key is None:
            continue  # the method builds that run itself (TeD-Loc's teacher=cam)
        weights = Path(leaves[key][4:]).expanduser() / WEIGHTS_FILE
        if weights.is_file() and file_sha256(weights) == entry["weights_sha256"]:
            continue  # the very run, here
        folder = work_dir.with_name(f"{work_dir.name}-{part}")
        logger.warning(
            "%s: %s is not here; rerunning it from its record in %s", part, leaves[key], folder
        )
        _rerun_input(entry, folder, options)
        config = _with_leaf(config, key, f"run:{folder}")
    return config


def _rerun_input(entry: dict, folder: Path, options: RerunOptions) -> None:
    """Rerun (or finish, or reuse) an input run in ``folder`` and check its weights."""
    from wsolbench.runs.execute import execute

    record, env = entry["record"], entry.get("env", {})
    weights = folder / WEIGHTS_FILE
    if not (weights.is_file() and file_sha256(weights) == entry["weights_sha256"]):
        config = _with_input_runs(record["config"], entry.get("input_runs", {}), folder, options)
        same_data = record["dataset"] == options.dataset
        rerun = execute(
            RunSpec(
                method=_method(record["method"], record.get("method_source")),
                dataset=record["dataset"],
                protocol=_protocol(record, folder / RECORD_FILE),
                data_root=options.data_root if same_data else None,
                work_dir=str(folder),
                seed=record["seed"],
                overrides=config_overrides(config),
                device=_device(env, folder),
                resume=True,
                batch_size=int(env_field(env, "eval_batch_size")),
                num_workers=options.num_workers,
                count_workers=options.count_workers,
                threads=record.get("threads"),
                progress=options.progress,
                config=config,
            )
        )
        found = file_sha256(weights)
        if found != entry["weights_sha256"]:
            causes = _env_differences(env, rerun.env) or ["nothing recorded differs"]
            raise RunError(
                f"the rerun of {record['method']} in {folder} (an input run of this result) gave "
                f"weights sha256 {found[:12]}, not the recorded {entry['weights_sha256'][:12]} "
                f"({'; '.join(causes[:3])}): the result cannot be rerun on those weights here; "
                "pass the run's own folder as it was recorded"
            )


def _with_leaf(config: dict, key: str, value) -> dict:
    """A copy of a nested config with the dotted leaf ``key`` set to ``value``."""
    head, _, rest = key.partition(".")
    return {**config, head: _with_leaf(config[head], rest, value) if rest else value}


def reproduce(
    source: str | Path,
    *,
    work_dir: str | Path | None = None,
    data_root: str | None = None,
    device: str | None = None,
    batch_size: int | None = None,
    weights: str | Path | None = None,
    num_workers: int | None = None,
    count_workers: int = 1,
    progress: bool = True,
) -> Reproduction:
    """Rerun the result at ``source`` (a run folder or a ``result.json``) from its record.

    Args:
        work_dir: where the rerun goes (default ``work_dirs/reproduce/<protocol>/<method>/
            seed<S>``); an interrupted rerun there continues (``--resume``), a finished one
            is refused (its result would be compared, not a rerun's).
        device: default: the recorded device (``cpu`` when it was a GPU this machine lacks).
        batch_size: the evaluation batch; default: the recorded one (64, the default of the
            commands, for a record made before it was recorded).
        weights: for the result of an ``eval``, the weights file it evaluated (checked by
            content against the record); it is evaluated again, nothing is trained.

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
    record = read_record(path.parent) or {}
    protocol = _protocol(
        {**record, "protocol": recorded.protocol, "protocol_hash": recorded.protocol_hash}, path
    )
    device = device or _device(recorded.env, path)
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
    options = RerunOptions(data_root, recorded.dataset, num_workers, count_workers, progress)
    config = _with_input_runs(recorded.config, recorded.input_runs, work_dir, options)
    spec = RunSpec(
        method=_method(recorded.method, record.get("method_source")),
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
    )
    reproduced = execute(spec) if weights is None else evaluate_weights(spec, weights)
    rows = [
        (split, policy, key, value, reproduced.metrics.get(split, {}).get(policy, {}).get(key))
        for split, policies in recorded.metrics.items()
        for policy, values in policies.items()
        for key, value in values.items()
    ]
    return Reproduction(recorded, reproduced, rows, env_differences(recorded, reproduced))
