"""A Run: one (method, protocol, config, seed) execution → a work dir holding ``result.json``.

``execute`` is what ``wsolbench run`` calls. Everything a user can get wrong is checked before
the first training step, and before anything is written that a corrected command would trip on:

1. names, protocol, config (every ``-o`` typed), the ``train`` section, the device;
2. the work dir is locked (a second process on it stops at once, naming the first);
3. every split's metadata is read and validated, the images of the splits the run reads are
   checked (all exist, a sample decodes, sizes agree), and the data fingerprint is computed and
   checked against the protocol's pins;
4. the work dir is checked: a finished or unfinished run there is kept or continued only with
   ``--resume`` and only if it is this very run (method, protocol, data, seed, config);
5. the method is built (pretrained weights load here);
6. the run record (``config.yaml``) is written, then training (trainable methods), evaluation of
   the selection and test splits, and ``result.json``, written atomically.

See :mod:`wsolbench.workdir` for the work dir's states and :mod:`wsolbench.rebuild` for
rebuilding a finished run's method.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from wsolbench import workdir
from wsolbench.data.fingerprint import check_pins, data_fingerprint, short
from wsolbench.data.metadata import SplitMetadata
from wsolbench.data.sources import read_splits
from wsolbench.device import resolve_device  # noqa: F401 (also importable from here)
from wsolbench.protocol import Protocol, protocol_for_dataset
from wsolbench.protocol import protocol_for_dataset as resolve_protocol  # noqa: F401
from wsolbench.registry import get_dataset, get_method
from wsolbench.results import (
    RESULT_FILENAME,
    Result,
    environment,
    load_result,
    metrics_from_counts,
    save_result,
)

# torch and the model libraries are imported inside the functions that need them, so that an
# explicit --work-dir is locked within a second of starting (a second process stops at once).
if TYPE_CHECKING:
    from wsolbench.profile import ProfileSettings

logger = logging.getLogger(__name__)


class RunError(ValueError):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass
class RunSpec:
    """Everything ``wsolbench run`` was asked for."""

    method: str
    dataset: str
    protocol: str | None = None  # id or YAML path; None → the dataset's newest shipped protocol
    data_root: str | None = None
    work_dir: str | None = None  # None → work_dirs/<protocol>/<method>/seed<seed>
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    device: str = "auto"
    resume: bool = False
    no_pretrained: bool = False
    launcher: str = "none"
    batch_size: int = 64
    num_workers: int = 0
    progress: bool = True
    profile: ProfileSettings | None = None  # --profile: measure cost into result.cost


def _distributed(launcher: str, device: str) -> tuple[int, int]:
    """Join the process group that ``torchrun`` set up (``--launcher pytorch``): (rank, world)."""
    if launcher == "none":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise RunError(
                f"this process is one of {os.environ['WORLD_SIZE']} started by torchrun, but "
                "--launcher is none (each would train alone into the same work dir); pass "
                "--launcher pytorch"
            )
        return 0, 1
    if launcher != "pytorch":
        raise RunError(f"--launcher {launcher!r}: use none or pytorch (under torchrun)")
    from mmengine.dist import get_dist_info, init_dist, is_distributed
    from torch import distributed

    if "RANK" not in os.environ:
        raise RunError(
            "--launcher pytorch needs torchrun: torchrun --nproc-per-node N -m wsolbench ..."
        )
    if not is_distributed():
        if device.startswith("cuda"):
            init_dist("pytorch", backend="nccl")  # also binds each rank to its GPU
        else:
            distributed.init_process_group("gloo")  # mmengine's init_dist assumes a GPU
    return get_dist_info()


def _gather_counts(counts: dict, world: int) -> dict:
    """Merge every rank's counts of one split (each rank counted a disjoint shard)."""
    if world == 1:
        return counts
    from mmengine.dist import all_gather_object

    from wsolbench.metrics import merge_counts

    return functools.reduce(merge_counts, all_gather_object(counts))


def _gather_records(records, world: int):
    """Merge every rank's per-image records of one split (disjoint shards), sorted by id."""
    if world == 1:
        return records
    from mmengine.dist import all_gather_object

    from wsolbench.per_image import SplitRecords

    return SplitRecords.merge(all_gather_object(records))


def _barrier(world: int) -> None:
    if world > 1:
        from mmengine.dist import barrier

        barrier()


@dataclass
class RunContext:
    """What a run resolved before doing any work."""

    spec: RunSpec
    method_cls: type
    protocol: Protocol
    config: dict
    work_dir: Path
    device: str
    rank: int
    world: int
    root: Path | None = None  # the prepared data root (set once the data is read)
    splits: dict[str, SplitMetadata] = field(default_factory=dict)
    fingerprint: dict = field(default_factory=dict)
    weights_sha256: str | None = None  # eval: the weights file's content hash
    state: str = "new"  # the work dir's state when the run started (wsolbench.workdir.inspect)
    pretrained: str | None = None  # what the built method loaded (method.pretrained)

    @property
    def mask_root(self) -> Path | None:
        return self.root / "masks" if self.protocol.has_masks else None

    @property
    def record(self) -> dict:
        """What this run is: the work dir's ``config.yaml`` (see :mod:`wsolbench.workdir`)."""
        cls = self.method_cls
        record = {
            "method": cls.name,
            # where the class lives, for a method given as --method pkg.module:Class
            "method_source": f"{cls.__module__}:{cls.__qualname__}",
            "dataset": self.spec.dataset,
            "protocol": self.protocol.id,
            "protocol_hash": self.protocol.hash,
            "data_fingerprint": self.fingerprint.get("sha256"),
            "seed": self.spec.seed,
            "config": self.config,
        }
        if self.weights_sha256 is not None:
            record["weights"] = self.weights_sha256
        if self.pretrained is not None:
            record["pretrained"] = self.pretrained
        record["protocol_spec"] = self.protocol.snapshot()
        return record


def _resolve(spec: RunSpec, *, default_leaf: str) -> RunContext:
    """Names, protocol, config (typed), ``train`` section, device: no data read, nothing written."""
    from wsolbench.method import pretrained_off_overrides, resolve_config

    method_cls = get_method(spec.method)
    get_dataset(spec.dataset)  # an unknown dataset name fails here, with close matches
    protocol = protocol_for_dataset(spec.dataset, spec.protocol)
    overrides = list(spec.overrides)
    if spec.no_pretrained:
        overrides += pretrained_off_overrides(method_cls)
    config = resolve_config(method_cls, spec.dataset, overrides)
    if method_cls.trainable:
        from wsolbench.engine import check_train_config

        check_train_config(config["train"])
    work_dir = Path(
        spec.work_dir or Path("work_dirs") / protocol.id / method_cls.name / default_leaf
    )
    device = resolve_device(spec.device)
    rank, world = _distributed(spec.launcher, device)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    return RunContext(spec, method_cls, protocol, config, work_dir, device, rank, world)


def _read_data(context: RunContext) -> None:
    """Read and check every split (all before any work) and the data fingerprint."""
    spec, protocol = context.spec, context.protocol
    source = get_dataset(spec.dataset)()
    context.root = source.resolve(spec.data_root, protocol)
    used = set(protocol.eval_splits) | ({"train"} if context.method_cls.trainable else set())
    context.splits = read_splits(
        context.root,
        protocol,
        check_files_of=used,
        optional=() if context.method_cls.trainable else ("train",),
        progress=spec.progress and context.rank == 0,
    )
    context.fingerprint = data_fingerprint(context.splits)
    hint = source.prepare_hint
    if (context.root / "protocol.yaml").is_file():  # a generated set carries its own protocol
        hint += f"; this root's own protocol is --protocol {context.root / 'protocol.yaml'}"
    check_pins(context.fingerprint, protocol.data_pins, protocol=protocol.id, hint=hint)


def _announce(context: RunContext, pretrained: str) -> None:
    """The console's opening lines: what is being run, on what, where."""
    if context.rank != 0:
        return
    sizes = ", ".join(f"{r} {s['n_images']}" for r, s in context.fingerprint["splits"].items())
    mark = " (no pretrained weights ‡)" if pretrained.strip().lower() == "none" else ""
    logger.info(
        "%s on %s (protocol %s) · data %s (%s) · seed %d · device %s",
        context.method_cls.name,
        context.protocol.id,
        context.protocol.short_hash,
        short(context.fingerprint["sha256"]),
        sizes,
        context.spec.seed,
        context.device,
    )
    logger.info("pretrained: %s%s · work dir %s", pretrained, mark, context.work_dir)


@contextlib.contextmanager
def _locked_run(spec: RunSpec, default_leaf: str) -> Iterator[RunContext]:
    """Resolve the run (step 1) holding its work dir's lock (step 2).

    An explicit ``--work-dir`` is locked before anything heavy is even imported, so a second
    process on a busy dir stops within a second or two; a default one as soon as its path is
    known (it names the method and protocol).
    """
    explicit = Path(spec.work_dir) if spec.work_dir else None
    # under torchrun (--launcher pytorch), rank 0 alone holds the lock for every rank
    rank0 = spec.launcher != "pytorch" or os.environ.get("RANK", "0") == "0"
    with workdir.locked(explicit, enabled=explicit is not None and rank0):
        context = _resolve(spec, default_leaf=default_leaf)
        with workdir.locked(context.work_dir, enabled=explicit is None and rank0):
            yield context


def execute(spec: RunSpec) -> Result:
    """Run a method under a protocol and write ``<work_dir>/result.json``; returns the result.

    Trainable methods are trained first (:mod:`wsolbench.engine`); the checkpoint the protocol keeps
    (last, or best on the selection split) is loaded and exported as ``weights.pt``. Under
    ``torchrun`` every rank evaluates a disjoint shard of each split; rank 0 merges the counts and
    alone writes files.
    """
    with _locked_run(spec, f"seed{spec.seed}") as context:
        finished = _open_work_dir(context)
        if finished is not None:
            return _add_missing_cost(context, finished)
        from wsolbench.method import build_method

        method = build_method(
            context.method_cls,
            context.config,
            context.protocol.num_classes,
            spec.seed,
            classnames=context.protocol.classnames,
        )
        _announce(context, method.pretrained)
        _write_record(context, method.pretrained)
        if context.method_cls.trainable:
            _train(context, method)
            if context.rank == 0:
                from wsolbench.engine import export_weights

                export_weights(method, context.work_dir / workdir.WEIGHTS_FILE)
        return _evaluate_and_save(context, method, method.pretrained)


def evaluate_weights(spec: RunSpec, weights: Path) -> Result:
    """``wsolbench eval``: load an exported ``weights.pt`` into the method and evaluate it.

    The method is built without its own pretrained weights (the file replaces them); the result
    records the file, and its content hash, as what was loaded.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise RunError(f"--weights {weights} does not exist; pass the weights.pt of a finished run")
    spec = replace(spec, no_pretrained=True)
    leaf = f"eval-{weights.resolve().parent.name or 'weights'}"
    with _locked_run(spec, leaf) as context:
        context.weights_sha256 = hashlib.sha256(weights.read_bytes()).hexdigest()
        _config_of_source_run(context, weights)
        finished = _open_work_dir(context)
        if finished is not None:
            return _add_missing_cost(context, finished)
        from wsolbench.rebuild import build_with_weights

        method = build_with_weights(
            context.method_cls, context.config, context.protocol, spec.seed, weights
        )
        loaded = f"weights:{weights.resolve()} (sha256 {context.weights_sha256[:12]})"
        _announce(context, loaded)
        _write_record(context, loaded)
        return _evaluate_and_save(context, method, loaded)


def _config_of_source_run(context: RunContext, weights: Path) -> None:
    """``eval`` of a run's ``weights.pt``: the method and config come from that run's record
    (the config that made the weights), and ``-o`` may not contradict it."""
    from wsolbench.method import apply_overrides, without_pretrained

    try:
        source = workdir.read_record(weights.parent)
    except workdir.WorkDirError:
        source = None  # not a run folder: the command line describes the weights
    if source is None:
        return
    if source.get("method") != context.method_cls.name:
        raise RunError(
            f"--weights {weights} were trained by a {source.get('method')!r} run; pass --method "
            f"{source.get('method')}"
        )
    made = without_pretrained(context.method_cls, source["config"])
    asked = apply_overrides(context.method_cls, made, context.spec.overrides)
    contradictions = workdir.differences({"config": made}, {"config": asked})
    if contradictions:
        raise RunError(
            f"-o contradicts the config that made {weights} ({'; '.join(contradictions[:4])}); "
            "drop the -o: eval takes the config from the weights' run"
        )
    context.config = made


def _open_work_dir(context: RunContext) -> Result | None:
    """Read the data and check the work dir (steps 3–4): the finished result of this very run
    when ``--resume`` keeps it, else None (the run goes ahead)."""
    _read_data(context)
    state = workdir.check_reuse(context.work_dir, context.record, resume=context.spec.resume)
    context.state = state
    if state == "finished":
        logger.info("%s is finished; nothing to resume", context.work_dir)
        return load_result(context.work_dir / RESULT_FILENAME)
    if state == "started":
        logger.info("%s held a start that saved nothing; starting over", context.work_dir)
    return None


def _write_record(context: RunContext, pretrained: str) -> None:
    """Write the record, now that the method is built and its weights known.

    A resumed run must have loaded the same weights as when it started (a teacher run or a
    weights file may have changed since): checked here, before anything is overwritten.
    """
    context.pretrained = pretrained
    _barrier(context.world)  # every rank has inspected the work dir before rank 0 writes to it
    if context.state == "unfinished":
        stored = (workdir.read_record(context.work_dir) or {}).get("pretrained")
        if stored is not None and stored != pretrained:
            raise RunError(
                f"--resume: {context.work_dir} was started with pretrained weights {stored!r}, "
                f"this command loads {pretrained!r} (a file or a teacher run changed since?); "
                "restore them, or choose a new --work-dir"
            )
    if context.rank == 0:
        workdir.write_record(context.work_dir, context.record)
    _barrier(context.world)


def _evaluate_and_save(context: RunContext, method, pretrained: str) -> Result:
    """Evaluate every split of the protocol (sharded across ranks) and write ``result.json``."""
    from wsolbench.evaluate import EvalSettings, evaluate_method
    from wsolbench.per_image import PER_IMAGE_FILE, RecordCollector, save_records
    from wsolbench.profile import profile_method

    spec, protocol = context.spec, context.protocol
    settings = EvalSettings.from_protocol(protocol)
    counts, records = {}, {}
    for split in protocol.eval_splits:
        collector = RecordCollector(settings.step, list(settings.iou_thresholds))
        local = evaluate_method(
            method,
            context.splits[split],
            context.root / "images",
            settings,
            mask_root=context.mask_root,
            device=context.device,
            batch_size=spec.batch_size,
            num_workers=spec.num_workers,
            shard=(context.rank, context.world),
            progress=spec.progress and context.rank == 0,
            records=collector,
        )
        counts[split] = _gather_counts(local, context.world)
        records[split] = _gather_records(collector.records(), context.world)
    cost = {}
    if spec.profile is not None and context.rank == 0:
        logger.info("measuring cost (--profile)")
        cost = profile_method(
            method,
            protocol.eval_size,
            protocol.num_classes,
            device=context.device,
            settings=spec.profile,
        )
    per_image = None
    if context.rank == 0:
        sha256 = save_records(context.work_dir / PER_IMAGE_FILE, records, counts)
        per_image = {"file": PER_IMAGE_FILE, "sha256": sha256}
    result = Result(
        method=context.method_cls.name,
        dataset=spec.dataset,
        protocol=protocol.id,
        protocol_hash=protocol.hash,
        data_fingerprint=context.fingerprint,
        seed=spec.seed,
        config=context.config,
        pretrained=pretrained,
        metrics=metrics_from_counts(counts),
        counts=counts,
        cost=cost,
        env={**environment(), "device": context.device, "world_size": context.world},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        provenance=dict(method.provenance),
        per_image=per_image,
    )
    if context.rank == 0:
        save_result(context.work_dir / RESULT_FILENAME, result)
    _barrier(context.world)
    return result


def _train(context: RunContext, method) -> None:
    """Train with the engine, then load the checkpoint the protocol keeps (last or best)."""
    from wsolbench.data.dataset import RandomResizedCropFlip, WSOLImageDataset
    from wsolbench.engine import load_checkpoint_into, train
    from wsolbench.evaluate import EvalSettings, GroundTruth

    protocol, train_cfg = context.protocol, context.config["train"]
    size, mean, std = protocol.eval_size, method.image_mean, method.image_std
    augment = RandomResizedCropFlip(
        size, train_cfg["augment"]["crop_scale"], train_cfg["augment"]["hflip"]
    )
    images = context.root / "images"
    train_set = WSOLImageDataset(
        context.splits["train"], images, size, mean, std, augment, seed=context.spec.seed
    )
    val_set = val_truth = None
    if protocol.checkpoint == "best":
        val_meta = context.splits[protocol.selection_split]
        val_set = WSOLImageDataset(val_meta, images, size, mean, std)
        val_truth = GroundTruth(val_meta, EvalSettings.from_protocol(protocol), context.mask_root)
    chosen = train(
        method,
        train_set,
        train_cfg,
        context.work_dir,
        val_set=val_set,
        val_truth=val_truth,
        keep=protocol.checkpoint,
        seed=context.spec.seed,
        device=context.device,
        launcher=context.spec.launcher,
    )
    load_checkpoint_into(method, chosen)


def _add_missing_cost(context: RunContext, result: Result) -> Result:
    """``--resume --profile`` on a finished run without cost: measure it and rewrite the result
    (only its ``cost`` block changes)."""
    if context.spec.profile is None or result.cost or context.rank != 0:
        return result
    from wsolbench.profile import profile_method
    from wsolbench.rebuild import load_run

    logger.info("%s is finished but has no cost: measuring it (--profile)", context.work_dir)
    loaded = load_run(context.work_dir, weights="none")
    result.cost = profile_method(
        loaded.method,
        loaded.protocol.eval_size,
        loaded.protocol.num_classes,
        device=context.device,
        settings=context.spec.profile,
    )
    save_result(context.work_dir / RESULT_FILENAME, result)
    return result
