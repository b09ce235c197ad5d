"""A Run: one (method, protocol, config, seed) execution → a work dir holding ``result.json``.

``execute`` is what ``wsolbench run`` calls: protocol → method class → config (defaults ⊕ preset ⊕
overrides) → data → (training, for trainable methods) → evaluation of the selection and test splits
→ ``result.json``. The work dir also keeps the resolved config (``config.yaml``) so a run is
reproducible from its folder alone.

A finished work dir is never overwritten: ``--resume`` returns its result as it is, and a new
``--work-dir`` starts afresh. Results are written atomically, so an interrupted run leaves no
half-written ``result.json``.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import yaml

from wsolbench.atomic import write_text_atomic
from wsolbench.data.metadata import read_split
from wsolbench.evaluate import EvalSettings, evaluate_method
from wsolbench.method import build_method, pretrained_off_overrides, resolve_config
from wsolbench.profile import ProfileSettings, profile_method
from wsolbench.protocol import Protocol, default_protocol_id, load_protocol
from wsolbench.registry import get_dataset, get_method
from wsolbench.results import (
    RESULT_FILENAME,
    Result,
    environment,
    load_result,
    metrics_from_counts,
    save_result,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "weights.pt"


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


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; other values are checked and kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise RunError(f"--device {device!r}: use auto, cpu or cuda[:N]")
    return device


def resolve_protocol(dataset: str, protocol: str | None) -> Protocol:
    """The protocol to run under, checked to belong to ``dataset``."""
    loaded = load_protocol(protocol or default_protocol_id(dataset))
    if loaded.dataset != dataset:
        raise RunError(
            f"protocol {loaded.id} is for dataset {loaded.dataset!r}, not {dataset!r}; "
            f"drop --protocol or pick a {dataset} protocol"
        )
    return loaded


def _distributed(launcher: str, device: str) -> tuple[int, int]:
    """Join the process group that ``torchrun`` set up (``--launcher pytorch``): (rank, world)."""
    if launcher == "none":
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
    root: Path
    device: str
    rank: int
    world: int

    def split_meta(self, split: str):
        folder = self.root / "metadata" / self.protocol.splits[split]
        return read_split(folder, num_classes=self.protocol.num_classes)

    @property
    def mask_root(self) -> Path | None:
        return self.root / "masks" if self.protocol.has_masks else None


def _prepare(spec: RunSpec, *, default_leaf: str) -> RunContext | Result:
    """Resolve names, config and work dir; write ``config.yaml``. A finished run's Result (only with
    ``--resume``) is returned as it is.

    Every check a user can fail happens here, before anything is written.
    """
    method_cls = get_method(spec.method)
    source = get_dataset(spec.dataset)()
    protocol = resolve_protocol(spec.dataset, spec.protocol)
    overrides = list(spec.overrides)
    if spec.no_pretrained:
        overrides += pretrained_off_overrides(method_cls)
    config = resolve_config(method_cls, spec.dataset, overrides)
    work_dir = Path(
        spec.work_dir or Path("work_dirs") / protocol.id / method_cls.name / default_leaf
    )
    result_path = work_dir / RESULT_FILENAME
    if result_path.exists():
        if not spec.resume:
            raise RunError(
                f"{work_dir} already holds a finished run ({RESULT_FILENAME}); pass --resume to "
                "keep it, or choose a new --work-dir"
            )
        logger.info("%s is finished; nothing to resume", work_dir)
        return load_result(result_path)
    run_record = {
        "method": method_cls.name,
        "dataset": spec.dataset,
        "protocol": protocol.id,
        "protocol_hash": protocol.hash,
        "seed": spec.seed,
        "config": config,
    }
    config_path = work_dir / CONFIG_FILE
    if config_path.exists():
        if not spec.resume:
            raise RunError(
                f"{work_dir} holds an unfinished run; pass --resume to continue it, or choose a "
                "new --work-dir"
            )
        previous = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        if previous != run_record:
            raise RunError(
                f"--resume: {config_path} was written for a different run (method, protocol, "
                "seed or config differ); resume with the same arguments or choose a new --work-dir"
            )
    device = resolve_device(spec.device)
    root = source.resolve(spec.data_root, protocol)
    rank, world = _distributed(spec.launcher, device)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    if rank == 0:
        work_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(config_path, yaml.safe_dump(run_record, sort_keys=False))
    _barrier(world)
    return RunContext(spec, method_cls, protocol, config, work_dir, root, device, rank, world)


def execute(spec: RunSpec) -> Result:
    """Run a method under a protocol and write ``<work_dir>/result.json``; returns the result.

    Trainable methods are trained first (:mod:`wsolbench.engine`); the checkpoint the protocol keeps
    (last, or best on the selection split) is loaded and exported as ``weights.pt``. Under
    ``torchrun`` every rank evaluates a disjoint shard of each split; rank 0 merges the counts and
    alone writes files.
    """
    leaf = f"seed{spec.seed}"
    context = _prepare(spec, default_leaf=leaf)
    if isinstance(context, Result):
        return _add_missing_cost(spec, context, leaf)
    method = build_method(
        context.method_cls,
        context.config,
        context.protocol.num_classes,
        spec.seed,
        classnames=context.protocol.classnames,
    )
    if context.method_cls.trainable:
        _train(context, method)
        if context.rank == 0:
            from wsolbench.engine import export_weights

            export_weights(method, context.work_dir / WEIGHTS_FILE)
    return _evaluate_and_save(context, method, method.pretrained)


def evaluate_weights(spec: RunSpec, weights: Path) -> Result:
    """``wsolbench eval``: load an exported ``weights.pt`` into the method and evaluate it.

    The method is built without its own pretrained weights (the file replaces them); the result
    records the file as what was loaded.
    """
    from wsolbench.engine import load_weights_file

    if not Path(weights).is_file():
        raise RunError(f"--weights {weights} does not exist; pass the weights.pt of a finished run")
    spec = replace(spec, no_pretrained=True)
    leaf = f"eval-{Path(weights).parent.name or 'weights'}"
    context = _prepare(spec, default_leaf=leaf)
    if isinstance(context, Result):
        return _add_missing_cost(spec, context, leaf)
    method = build_method(
        context.method_cls,
        context.config,
        context.protocol.num_classes,
        spec.seed,
        classnames=context.protocol.classnames,
    )
    load_weights_file(method, Path(weights))
    return _evaluate_and_save(context, method, f"weights:{Path(weights).resolve()}")


def _evaluate_and_save(context: RunContext, method, pretrained: str) -> Result:
    """Evaluate every split of the protocol (sharded across ranks) and write ``result.json``."""
    spec, protocol = context.spec, context.protocol
    settings = EvalSettings.from_protocol(protocol)
    counts = {}
    for split in protocol.eval_splits:
        local = evaluate_method(
            method,
            context.split_meta(split),
            context.root / "images",
            settings,
            mask_root=context.mask_root,
            device=context.device,
            batch_size=spec.batch_size,
            num_workers=spec.num_workers,
            shard=(context.rank, context.world),
            progress=spec.progress and context.rank == 0,
        )
        counts[split] = _gather_counts(local, context.world)
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
    result = Result(
        method=context.method_cls.name,
        dataset=spec.dataset,
        protocol=protocol.id,
        protocol_hash=protocol.hash,
        seed=spec.seed,
        config=context.config,
        pretrained=pretrained,
        metrics=metrics_from_counts(counts),
        counts=counts,
        cost=cost,
        env={**environment(), "device": context.device, "world_size": context.world},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        text_prior=method.text_prior,  # None (omitted) for methods without text targets
    )
    if context.rank == 0:
        save_result(context.work_dir / RESULT_FILENAME, result)
    _barrier(context.world)
    return result


def _train(context: RunContext, method) -> None:
    """Train with the engine, then load the checkpoint the protocol keeps (last or best)."""
    from wsolbench.data.dataset import RandomResizedCropFlip, WSOLImageDataset
    from wsolbench.engine import load_checkpoint_into, train
    from wsolbench.evaluate import GroundTruth

    protocol, train_cfg = context.protocol, context.config["train"]
    size, mean, std = protocol.eval_size, method.image_mean, method.image_std
    augment = RandomResizedCropFlip(
        size, train_cfg["augment"]["crop_scale"], train_cfg["augment"]["hflip"]
    )
    images = context.root / "images"
    train_set = WSOLImageDataset(
        context.split_meta("train"), images, size, mean, std, augment, seed=context.spec.seed
    )
    val_set = val_truth = None
    if protocol.checkpoint == "best":
        val_meta = context.split_meta(protocol.selection_split)
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
        resume=context.spec.resume,
    )
    load_checkpoint_into(method, chosen)


def method_from_run(work_dir: str | Path, result: Result, *, load_weights: bool = True):
    """Rebuild a finished run's method from its work dir (its ``result.json`` record ``result``).

    A trainable method is built from the run's config with pretrained loading off and the run's
    exported ``weights.pt`` loaded; a training-free one is built from the config as the run built
    it. With ``load_weights=False`` pretrained loading is off for every method and no weights are
    read (enough for cost, which does not depend on the weights' values).

    Returns:
        (method, protocol).

    Raises:
        FileNotFoundError: a trainable run without its ``weights.pt``.
    """
    from wsolbench.method import parse_override

    protocol = load_protocol(result.protocol)
    if protocol.hash != result.protocol_hash:
        logger.warning(
            "%s: protocol %s has changed since the run (hash %s, now %s); using the current one",
            work_dir,
            result.protocol,
            result.protocol_hash[:12],
            protocol.hash[:12],
        )
    method_cls = get_method(result.method)
    config = copy.deepcopy(result.config)
    if method_cls.trainable or not load_weights:
        for text in pretrained_off_overrides(method_cls):
            keys, value = parse_override(text)
            node = config
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = value
    method = build_method(
        method_cls, config, protocol.num_classes, result.seed, classnames=protocol.classnames
    )
    if method_cls.trainable and load_weights:
        weights = Path(work_dir) / WEIGHTS_FILE
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} does not exist: the run's exported weights")
        from wsolbench.engine import load_weights_file

        load_weights_file(method, weights)
    return method, protocol


def _add_missing_cost(spec: RunSpec, result: Result, default_leaf: str) -> Result:
    """``--resume --profile`` on a finished run without cost: measure it and rewrite the result
    (only its ``cost`` block changes)."""
    if spec.profile is None or result.cost:
        return result
    work_dir = Path(
        spec.work_dir or Path("work_dirs") / result.protocol / result.method / default_leaf
    )
    if int(os.environ.get("RANK", "0")) == 0:
        logger.info("%s is finished but has no cost: measuring it (--profile)", work_dir)
        method, protocol = method_from_run(work_dir, result, load_weights=False)
        result.cost = profile_method(
            method,
            protocol.eval_size,
            protocol.num_classes,
            device=resolve_device(spec.device),
            settings=spec.profile,
        )
        save_result(work_dir / RESULT_FILENAME, result)
    return result
