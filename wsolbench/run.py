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

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

from wsolbench.atomic import write_text_atomic
from wsolbench.data.metadata import read_split
from wsolbench.evaluate import EvalSettings, evaluate_method
from wsolbench.method import build_method, resolve_config
from wsolbench.protocol import Protocol, default_protocol_id, load_protocol
from wsolbench.registry import get_dataset, get_method
from wsolbench.results import Result, environment, load_result, metrics_from_counts, save_result

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
CONFIG_FILE = "config.yaml"


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
    batch_size: int = 64
    num_workers: int = 0
    progress: bool = True


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


def execute(spec: RunSpec) -> Result:
    """Run a method under a protocol and write ``<work_dir>/result.json``; returns the result."""
    method_cls = get_method(spec.method)
    source = get_dataset(spec.dataset)()
    protocol = resolve_protocol(spec.dataset, spec.protocol)
    config = resolve_config(method_cls, spec.dataset, spec.overrides)
    if method_cls.trainable:
        raise RunError(
            f"method {method_cls.name!r} is trainable, and this version of wsolbench has no "
            "training engine yet; only training-free methods run"
        )
    work_dir = Path(
        spec.work_dir or Path("work_dirs") / protocol.id / method_cls.name / f"seed{spec.seed}"
    )
    result_path = work_dir / RESULT_FILE
    if result_path.exists():
        if not spec.resume:
            raise RunError(
                f"{work_dir} already holds a finished run ({RESULT_FILE}); pass --resume to keep "
                "it, or choose a new --work-dir"
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
    if config_path.exists() and spec.resume:
        previous = yaml.safe_load(config_path.read_text(encoding="utf-8"))
        if previous != run_record:
            raise RunError(
                f"--resume: {config_path} was written for a different run (method, protocol, "
                "seed or config differ); resume with the same arguments or choose a new --work-dir"
            )
    device = resolve_device(spec.device)
    root = source.resolve(spec.data_root, protocol)
    work_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(config_path, yaml.safe_dump(run_record, sort_keys=False))

    method = build_method(method_cls, config, protocol.num_classes, seed=spec.seed)
    settings = EvalSettings.from_protocol(protocol)
    mask_root = root / "masks" if protocol.has_masks else None
    counts = {}
    for split in protocol.eval_splits:
        meta = read_split(
            root / "metadata" / protocol.splits[split], num_classes=protocol.num_classes
        )
        counts[split] = evaluate_method(
            method,
            meta,
            root / "images",
            settings,
            mask_root=mask_root,
            device=device,
            batch_size=spec.batch_size,
            num_workers=spec.num_workers,
            progress=spec.progress,
        )
    result = Result(
        method=method_cls.name,
        dataset=spec.dataset,
        protocol=protocol.id,
        protocol_hash=protocol.hash,
        seed=spec.seed,
        config=config,
        pretrained=method.pretrained,
        metrics=metrics_from_counts(counts),
        counts=counts,
        env={**environment(), "device": device},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    save_result(result_path, result)
    return result
