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

See :mod:`wsolbench.results.workdir` for the work dir's states and :mod:`wsolbench.runs.rebuild` for
rebuilding a finished run's method.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace
from pathlib import Path

from wsolbench.config import preset_changes
from wsolbench.results import workdir
from wsolbench.results.environment import environment
from wsolbench.results.record import RESULT_FILENAME, Result, save_result, utc_now
from wsolbench.results.verify import verify_run_weights
from wsolbench.runs.context import (
    RunContext,
    RunError,
    RunSpec,
    announce,
    barrier,
    config_of_source_run,
    locked_run,
    open_work_dir,
    training_data,
    write_record,
)
from wsolbench.util.loader import resolve_workers
from wsolbench.util.weights_source import describe, file_sha256

# torch and the model libraries are imported inside the functions that need them, so that an
# explicit --work-dir is locked within a second of starting (a second process stops at once).

logger = logging.getLogger(__name__)


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

    from wsolbench.results.per_image import SplitRecords

    return SplitRecords.merge(all_gather_object(records))


def execute(spec: RunSpec) -> Result:
    """Run a method under a protocol and write ``<work_dir>/result.json``; returns the result.

    Trainable methods are trained first (:mod:`wsolbench.train.engine`); the checkpoint the
    protocol keeps (last, or best on the selection split) is loaded and exported as ``weights.pt``.
    Under ``torchrun`` every rank evaluates a disjoint shard of each split; rank 0 merges the
    counts and alone writes files.
    """
    with locked_run(spec, f"seed{spec.seed}") as context:
        finished = open_work_dir(context)
        if finished is not None:
            return _add_missing_cost(context, finished)
        method = built_method(context)
        if context.method_cls.capabilities.trainable:
            from wsolbench.train.config import check_lr_mult_keys

            check_lr_mult_keys(method, _lr_mult_keys_set(context))
            # a teacher it learns from is part of what it is
            method.prepare_training(training_data(context))
        announce(context, method.pretrained)
        write_record(context, method.pretrained)
        weights_file = None
        if context.method_cls.capabilities.trainable:
            _train(context, method)
            if context.rank == 0:
                from wsolbench.train.weights import export_weights

                sha256 = export_weights(method, context.work_dir / workdir.WEIGHTS_FILE)
                weights_file = {"file": workdir.WEIGHTS_FILE, "sha256": sha256}
        try:
            return _evaluate_and_save(context, method, method.pretrained, weights_file)
        except (ValueError, OSError) as exc:
            if context.method_cls.capabilities.trainable:
                _say_the_weights_are_kept(exc, context.work_dir)
            raise


def _lr_mult_keys_set(context: RunContext) -> list[str]:
    """The ``train.lr_mult`` keys the command line set (or changed) over the preset."""
    changes = preset_changes(
        context.method_cls,
        context.spec.dataset,
        context.config,
        no_pretrained=context.spec.no_pretrained,
    )
    prefix = "train.lr_mult."
    return [key.removeprefix(prefix) for key in changes if key.startswith(prefix)]


def _say_the_weights_are_kept(exc: Exception, work_dir: Path) -> None:
    """A data file that fails the evaluation after training (only a sample of the images is
    decoded before it starts: decoding 50,000 takes minutes) must not cost the training: its
    message gains where the trained weights are and how to evaluate them without training again
    (``--resume`` of a dir whose last epoch is saved only evaluates)."""
    from wsolbench.data.dataset import ImageDecodeError, ImageSizeError
    from wsolbench.metrics.pxap import MaskError

    # rstrip: from a DataLoader worker, the text is its traceback, ending in the message's line
    if isinstance(exc, ImageDecodeError | ImageSizeError | MaskError) and exc.args:
        exc.args = (
            f"{str(exc.args[0]).rstrip()}; the trained weights are kept in {work_dir}: fix that "
            "file and run the same command again with --resume, which evaluates them without "
            "training again",
            *exc.args[1:],
        )


def evaluate_weights(spec: RunSpec, weights: Path) -> Result:
    """``wsolbench eval``: load an exported ``weights.pt`` into the method and evaluate it.

    The method is built without its own pretrained weights (the file replaces them); the result
    records the file, and its content hash, as what was loaded.
    """
    weights = Path(weights)
    if weights.is_dir():
        raise RunError(
            f"--weights {weights} is a folder; pass a weights file, e.g. {weights / 'weights.pt'} "
            "(a finished run's)"
        )
    if not weights.is_file():
        raise RunError(f"--weights {weights} does not exist; pass the weights.pt of a finished run")
    from wsolbench.blocks.state_dicts import not_torch_file

    # before the run-folder checks, which would call a run's own config.yaml "not the weights its
    # result records (copied from another run?)"
    what = not_torch_file(weights)
    if what:
        raise RunError(f"--weights {weights} is {what}; pass the weights.pt of a finished run")
    spec = replace(spec, no_pretrained=True)
    leaf = f"eval-{weights.resolve().parent.name or 'weights'}"
    with locked_run(spec, leaf) as context:
        context.weights_sha256 = file_sha256(weights)
        verify_run_weights(weights, context.weights_sha256)
        config_of_source_run(context, weights)
        finished = open_work_dir(context)
        if finished is not None:
            return _add_missing_cost(context, finished)
        from wsolbench.runs.rebuild import build_with_weights

        method = build_with_weights(
            context.method_cls, context.config, context.protocol, spec.seed, weights
        )
        loaded = describe("file", weights.name, context.weights_sha256)
        announce(context, loaded)
        write_record(context, loaded)
        return _evaluate_and_save(context, method, loaded)


def built_method(context: RunContext):
    """The run's method, built (its pretrained weights loaded) and, for ``reproduce``, checked
    against the recorded weights before a teacher is built or anything trained."""
    from wsolbench.method import build_method

    method = build_method(
        context.method_cls,
        context.config,
        context.protocol.num_classes,
        context.spec.seed,
        classnames=context.protocol.classnames,
    )
    if context.spec.pretrained is not None:
        check_recorded_weights(context.spec.pretrained, method, context.config)
    return method


def check_recorded_weights(recorded: str, method, config: dict) -> None:
    """Refuse, before any work, a rerun whose method loads other weights than the record
    (``recorded``, its ``pretrained``) names, by sha256, for a part loaded from a file its
    config names by path (``backbone.checkpoint=PATH``): another file there. The error names the
    ``-o`` that says where the recorded file is (``reproduce`` takes it). Parts from a cache, the
    data or a recipe (a timm tag, a cam teacher, ``synthclip-v1``) are not refused: they may
    differ on another machine, which the comparison after the rerun reports."""
    from wsolbench.config import dotted_leaves
    from wsolbench.results.grouping import part_weights_keys
    from wsolbench.util.weights_source import content_differences

    leaves = dotted_leaves(config)

    def names_a_file(key: str) -> bool:  # a path (not a recipe name such as synthclip-v1)
        value = leaves.get(key)
        return (
            bool(value) and key.endswith("checkpoint") and Path(str(value)).expanduser().is_file()
        )

    file_keys = {
        part: [key for key in keys if names_a_file(key)]
        for part, keys in part_weights_keys(method.provenance).items()
    }
    judged = {part for part, keys in file_keys.items() if keys}
    if len(method.provenance) == 1 and judged:
        judged.add("")  # one part: its source stands unlabelled
    differing = content_differences(recorded, method.pretrained, judged)
    if not differing:
        return
    part, was, now = differing[0]
    part = part or next(iter(method.provenance))
    hints = " or ".join(f"-o {key}=PATH" for key in file_keys[part])
    raise RunError(
        f"{part}: this machine loads {now}, the result was made with {was} (by content); give "
        f"that file with {hints} (checked by sha256), or remove what stands in its place"
    )


def _evaluate_and_save(
    context: RunContext, method, pretrained: str, weights_file: dict | None = None
) -> Result:
    """Evaluate every split of the protocol (sharded across ranks) and write ``result.json``.

    Args:
        weights_file: ``{"file", "sha256"}`` of the weights the run exported, which the result
            binds to itself (:mod:`wsolbench.results.verify`).
    """
    from wsolbench.cost.profile import profile_method
    from wsolbench.counting import EvalSettings
    from wsolbench.evaluate import evaluate_method
    from wsolbench.metrics.policies import metrics_from_counts
    from wsolbench.results.per_image import PER_IMAGE_FILE, RecordCollector, save_records

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
            count_workers=max(1, spec.count_workers // context.world),
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
        sha256 = save_records(
            context.work_dir / PER_IMAGE_FILE, records, counts, summed_pxap=spec.summed_pxap
        )
        per_image = {"file": PER_IMAGE_FILE, "sha256": sha256}
    env = {
        **environment(context.method_cls.__module__),
        "device": context.device,
        "world_size": context.world,
        "eval_workers": resolve_workers(spec.num_workers, context.device),
        # batching orders the float sums of a network's forward pass: part of the numbers
        "eval_batch_size": spec.batch_size,
    }
    record = context.record  # what the work dir's config.yaml says; the result carries it too
    history = context.training_code
    if history and history != [{"start_epoch": 0, "code": env["code"]}]:
        env["training_code"] = history  # resumed under other code: which trained which epochs
    result = Result(
        method=context.method_cls.name,
        dataset=spec.dataset,
        protocol=protocol.id,
        protocol_hash=protocol.hash,
        data_fingerprint=context.fingerprint,
        seed=spec.seed,
        config=context.config,
        overrides=preset_changes(
            context.method_cls, spec.dataset, context.config, no_pretrained=spec.no_pretrained
        ),
        pretrained=pretrained,
        metrics=metrics_from_counts(counts),
        counts=counts,
        cost=cost,
        env=env,
        created=utc_now(),
        provenance=dict(method.provenance),
        input_runs=dict(method.input_runs),
        evaluated_weights=context.weights_sha256,
        method_source=record["method_source"],
        protocol_spec=record["protocol_spec"],
        per_image=per_image,
        weights_file=weights_file,
        # a run from random initialisation depends on its seed, whatever the method declares
        seed_independent=context.method_cls.capabilities.seed_independent
        and pretrained.strip().lower() != "none",
        method_reference=context.method_cls.capabilities.reference,
    )
    if context.rank == 0:
        save_result(context.work_dir / RESULT_FILENAME, result)
    barrier(context.world)
    return result


def _train(context: RunContext, method) -> None:
    """Train with the engine, then load the checkpoint the protocol keeps (last or best)."""
    from wsolbench.counting import EvalSettings, GroundTruth
    from wsolbench.data.dataset import WSOLImageDataset, training_set
    from wsolbench.train.checkpoints import checkpoint_training_code
    from wsolbench.train.engine import TrainingDiverged, train
    from wsolbench.train.weights import load_checkpoint_into

    protocol, train_cfg = context.protocol, context.config["train"]
    size, mean, std = protocol.eval_size, method.image_mean, method.image_std
    images = context.root / "images"
    train_set = training_set(
        context.splits["train"], images, size, method, train_cfg["augment"], context.spec.seed
    )
    val_set = val_truth = None
    if protocol.checkpoint == "best":
        val_meta = context.splits[protocol.selection_split]
        val_set = WSOLImageDataset(val_meta, images, size, mean, std)
        val_truth = GroundTruth(val_meta, EvalSettings.from_protocol(protocol), context.mask_root)
    try:
        chosen = train(
            method,
            train_set,
            train_cfg,
            context.work_dir,
            identity=workdir.identity(context.record),
            val_set=val_set,
            val_truth=val_truth,
            keep=protocol.checkpoint,
            seed=context.spec.seed,
            device=context.device,
            launcher=context.spec.launcher,
        )
    except TrainingDiverged as exc:
        # The record says so (a diverged run has no result: it is never evaluated or ranked).
        if context.rank == 0:
            workdir.write_record(
                context.work_dir,
                {**context.record, "diverged": {"epoch": exc.epoch, "why": str(exc)}},
            )
        raise RunError(
            f"{exc}; {context.work_dir / workdir.RECORD_FILE} records it, and the run has no "
            "result. Run it again in a new --work-dir with a lower learning rate (-o "
            f"train.optimizer.lr=..., now {train_cfg['optimizer'].get('lr')}), or check the data "
            "and the method's loss"
        ) from None
    load_checkpoint_into(method, chosen)
    context.training_code = checkpoint_training_code(chosen)


def _add_missing_cost(context: RunContext, result: Result) -> Result:
    """``--resume --profile`` on a finished run without cost: measure it and rewrite the result
    (only its ``cost`` block changes)."""
    if context.spec.profile is None or result.cost or context.rank != 0:
        return result
    from wsolbench.cost.profile import profile_method
    from wsolbench.runs.rebuild import load_run

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
