"""What a run is, resolved and checked before any work: its spec, protocol, config, data,
device and work dir (steps 1-4 of :mod:`wsolbench.runs.execute`), and its record.

Everything here reads and checks; the only writes are the work dir's lock (taken first, so a
second process stops at once) and, once the method is built, the run record.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from wsolbench.data.fingerprint import as_version_1, check_pins, records_fingerprint, short
from wsolbench.data.metadata import SplitMetadata
from wsolbench.data.sources import get_dataset, read_data
from wsolbench.method import TrainingData
from wsolbench.protocol import (
    PROTOCOL_DIR,
    Protocol,
    load_protocol,
    protocol_for_dataset,
    write_protocol_file,
)
from wsolbench.registry import get_method
from wsolbench.results import workdir
from wsolbench.results.environment import DEFAULT_EVAL_BATCH_SIZE
from wsolbench.results.record import RESULT_FILENAME, Result, load_result
from wsolbench.results.verify import verify_result
from wsolbench.runs.launchers import join_ranks, launch_rank
from wsolbench.util.cache import default_cache_dir
from wsolbench.util.device import resolve_device

if TYPE_CHECKING:
    from wsolbench.cost.profile import ProfileSettings

logger = logging.getLogger(__name__)


class RunError(ValueError):
    """A run cannot start or continue; the message says why and what to do."""


@dataclass
class RunSpec:
    """Everything ``wsolbench run`` was asked for."""

    method: str
    dataset: str
    # id, YAML path or a protocol itself (reproduce); None → the dataset's newest shipped one
    protocol: str | Protocol | None = None
    data_root: str | None = None
    work_dir: str | None = None  # None → work_dirs/<protocol>/<method>/seed<seed>
    seed: int = 0
    overrides: list[str] = field(default_factory=list)
    device: str = "auto"
    resume: bool = False
    no_pretrained: bool = False
    launcher: str = "none"
    batch_size: int = DEFAULT_EVAL_BATCH_SIZE  # recorded (env.eval_batch_size)
    num_workers: int | None = None  # evaluation data-loader workers; None: the machine's
    # processes counting the maps while the method predicts (per rank); the counts do not
    # depend on it
    count_workers: int = 1
    threads: int | None = None  # torch intra-op threads; None: torch's default (recorded)
    progress: bool = True
    profile: ProfileSettings | None = None  # --profile: measure cost into result.cost
    # --summed-pxap: the records keep PxAP histograms summed over images only (smaller; no
    # per-image PxAP bootstrap), see wsolbench.results.per_image
    summed_pxap: bool = False
    # the config the overrides must resolve to (reproduce: a recorded run's); None: any
    config: dict | None = None
    # the weights the method must load, by content (reproduce: the recorded ones); None: any
    pretrained: str | None = None


def barrier(world: int) -> None:
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
    threads: int = 1  # torch's intra-op threads for the run (set by resolve_run)
    state: str = "new"  # the work dir's state when the run started (workdir.inspect)
    pretrained: str | None = None  # what the built method loaded (method.pretrained)
    # the code that trained each epoch of the evaluated checkpoint (wsolbench.train.stamps)
    training_code: list[dict] | None = None

    @property
    def mask_root(self) -> Path | None:
        return self.root / "masks" if self.protocol.has_masks else None

    @property
    def record(self) -> dict:
        """What this run is: the work dir's ``config.yaml`` (:mod:`wsolbench.results.workdir`)."""
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
            "threads": self.threads,
            "config": self.config,
        }
        if self.weights_sha256 is not None:
            record["weights"] = self.weights_sha256
        if self.pretrained is not None:
            record["pretrained"] = self.pretrained
        record["protocol_spec"] = self.protocol.snapshot()
        return record


def resolve_run(spec: RunSpec, *, default_leaf: str) -> RunContext:
    """Names, protocol, config (typed), ``train`` section, device: no data read, nothing written."""
    from wsolbench.config import pretrained_off_overrides, resolve_config

    method_cls = get_method(spec.method)
    get_dataset(spec.dataset)  # an unknown dataset name fails here, with close matches
    if isinstance(spec.protocol, Protocol):
        protocol = spec.protocol
    else:
        protocol = protocol_for_dataset(spec.dataset, spec.protocol)
    overrides = list(spec.overrides)
    if spec.no_pretrained:
        overrides += pretrained_off_overrides(method_cls)
    config = resolve_config(method_cls, spec.dataset, overrides)
    if spec.config is not None:
        changed = workdir.differences({"config": spec.config}, {"config": config}, "recorded")
        if changed:
            raise RunError(
                f"this wsolbench cannot rebuild the recorded config of {method_cls.name} "
                f"({'; '.join(changed[:4])}): its defaults or keys changed since; check out "
                "the recorded commit to reproduce the run"
            )
    if method_cls.capabilities.trainable:
        from wsolbench.train.config import check_train_config

        check_train_config(config["train"])
    work_dir = Path(
        spec.work_dir or Path("work_dirs") / protocol.id / method_cls.name / default_leaf
    )
    device = resolve_device(spec.device)
    threads = _set_threads(spec.threads)
    rank, world = join_ranks(spec.launcher, device)
    if device == "cuda" and world > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    return RunContext(
        spec, method_cls, protocol, config, work_dir, device, rank, world, threads=threads
    )


def _set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (None: keep its default) and return the count in force:
    float reductions, so a run's numbers, depend on it (part of the record)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def _read_data(context: RunContext) -> None:
    """Read and check every split (all before any work) and the data fingerprint."""
    spec, protocol = context.spec, context.protocol
    context.root, context.splits, context.fingerprint = read_data(
        spec.dataset,
        spec.data_root,
        protocol,
        trains=context.method_cls.capabilities.trainable,
        progress=spec.progress and context.rank == 0,
    )
    if _begun_before_mask_digests(context):
        logger.warning(
            "%s was begun before mask files were fingerprinted: it goes on recording its data "
            "as it began (fingerprint version 1, %s; its masks unchecked)",
            context.work_dir,
            short(records_fingerprint(context.fingerprint)),
        )
        context.fingerprint = as_version_1(context.fingerprint)
    source = get_dataset(spec.dataset)()
    hint = source.prepare_hint
    if (context.root / "protocol.yaml").is_file():  # a generated set carries its own protocol
        hint += f"; this root's own protocol is --protocol {context.root / 'protocol.yaml'}"
    check_pins(context.fingerprint, protocol.data_pins, protocol=protocol.id, hint=hint)


def _begun_before_mask_digests(context: RunContext) -> bool:
    """Whether the work dir's record names this data by its version-1 fingerprint (the split
    records alone, before mask files were hashed): the run then keeps that fingerprint, so that
    its record, checkpoints and result agree, and resumes."""
    try:
        begun = (workdir.read_record(context.work_dir) or {}).get("data_fingerprint")
    except workdir.WorkDirError:
        return False  # the work dir's own check names the fault
    return begun != context.fingerprint["sha256"] and begun == records_fingerprint(
        context.fingerprint
    )


def training_data(context: RunContext) -> TrainingData:
    """What the method's ``prepare_training`` sees: the data read, and how another ``wsolbench
    run`` gets the same protocol (a protocol given as an object, as ``reproduce`` does, is its
    shipped id or a copy written into the cache)."""
    protocol = context.spec.protocol
    if isinstance(protocol, Protocol):
        shipped = PROTOCOL_DIR / f"{protocol.id}.yaml"
        if shipped.is_file() and load_protocol(shipped).hash == protocol.hash:
            protocol = protocol.id
        else:
            folder = default_cache_dir() / "protocols" / protocol.short_hash
            protocol = str(write_protocol_file(protocol, folder))
    elif protocol is None:
        protocol = context.protocol.id
    elif Path(protocol).suffix in (".yaml", ".yml"):
        protocol = str(Path(protocol).resolve())
    return TrainingData(
        dataset=context.spec.dataset,
        protocol=str(protocol),
        protocol_id=context.protocol.id,
        protocol_hash=context.protocol.hash,
        data_root=context.root,
        data_fingerprint=context.fingerprint["sha256"],
        device=context.device,
    )


def announce(context: RunContext, pretrained: str) -> None:
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
def locked_run(spec: RunSpec, default_leaf: str) -> Iterator[RunContext]:
    """Resolve the run (step 1) holding its work dir's lock (step 2).

    An explicit ``--work-dir`` is locked before anything heavy is even imported, so a second
    process on a busy dir stops within a second or two; a default one as soon as its path is
    known (it names the method and protocol).
    """
    explicit = Path(spec.work_dir) if spec.work_dir else None
    # under torchrun or srun (--launcher pytorch / slurm), rank 0 alone holds the lock for all
    rank0 = launch_rank(spec.launcher) == 0
    with workdir.locked(explicit, enabled=explicit is not None and rank0):
        context = resolve_run(spec, default_leaf=default_leaf)
        with workdir.locked(context.work_dir, enabled=explicit is None and rank0):
            yield context


def config_of_source_run(context: RunContext, weights: Path) -> None:
    """``eval`` of a run's ``weights.pt``: the method and config come from that run's record
    (the config that made the weights), and ``-o`` may not contradict it."""
    from wsolbench.config import apply_overrides, without_pretrained

    if context.spec.config is not None:
        return  # reproduce: the recorded eval's config, wherever the same file now sits
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


def open_work_dir(context: RunContext) -> Result | None:
    """Read the data and check the work dir (steps 3–4): the finished result of this very run
    when ``--resume`` keeps it, else None (the run goes ahead)."""
    _read_data(context)
    state = workdir.check_reuse(context.work_dir, context.record, resume=context.spec.resume)
    context.state = state
    if state == "finished":
        logger.info("%s is finished; nothing to resume", context.work_dir)
        path = context.work_dir / RESULT_FILENAME
        result = load_result(path)
        verify_result(path, result, weights=True)  # the dir's own result, files and weights
        return result
    if state == "started":
        logger.info("%s held a start that saved nothing; starting over", context.work_dir)
    return None


def write_record(context: RunContext, pretrained: str) -> None:
    """Write the record, now that the method is built and its weights known.

    A resumed run must have loaded the same weights as when it started (a teacher run or a
    weights file may have changed since): checked here, before anything is overwritten.
    """
    context.pretrained = pretrained
    barrier(context.world)  # every rank has inspected the work dir before rank 0 writes to it
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
    barrier(context.world)
