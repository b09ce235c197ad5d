"""Device check, training: steps of the trained methods on the device, then with the data loader.

Step 2: ``cam`` and ``tedloc`` at the protocol size: forward, the method's losses, backward, SGD
step and the per-step hook (TeD-Loc after its warm-up: pseudo-labels every step), ``--steps``
steps after ``--warmup-steps``, on a batch already on the device: images/s of the model alone, in
float32 and, on CUDA, with AMP (float16 and a gradient scaler), and the peak memory of each (reset
before it; the previous method's model and closures released first). Then the data pipeline
(:mod:`gpu_check_data`) alone and feeding the AMP step, so that a data-bound run shows
(end-to-end well below the model step's rate). Imported by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from gpu_check_budget import Clock, sync
from gpu_check_data import jpeg_loader, time_loader, write_jpegs

from wsolbench.cost.conditions import TimingMonitor

TRAINED = ("cam", "tedloc")


def build_trainable(name: str, dataset: str, device: torch.device):
    from wsolbench.config import pretrained_off_overrides, resolve_config
    from wsolbench.method import build_method
    from wsolbench.protocol import protocol_for_dataset as resolve_protocol
    from wsolbench.registry import get_method

    cls = get_method(name)
    protocol = resolve_protocol(dataset, None)
    # pretrained parts off: TeD-Loc gets the self teacher (its default cam teacher is a cam run
    # that would first be trained here, for minutes)
    config = resolve_config(cls, dataset, pretrained_off_overrides(cls))
    method = build_method(cls, config, protocol.num_classes, classnames=protocol.classnames)
    if name == "tedloc":  # past the warm-up: pseudo-labels from the EMA teacher every step
        method.on_train_epoch(int(config.get("warmup_epochs", 0)), 10**6)
    method.to(device).train()
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    return method, optimizer, protocol, config


def make_step(method, optimizer, device: torch.device, use_amp: bool):
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def step(images, labels) -> None:
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            losses = method.loss(images, labels)
            total = sum(v for k, v in losses.items() if k.startswith("loss_"))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        method.on_train_step()

    return step


def _time_steps(step, images, labels, args, device: torch.device) -> dict:
    """Images/s, ms per step, timing conditions and peak memory (MB, CUDA) of ``step``."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(args.warmup_steps):
        step(images, labels)
    sync(device)
    threads = 1 if device.type == "cuda" else torch.get_num_threads()
    with TimingMonitor(threads) as monitor:
        start = time.perf_counter()
        for _ in range(args.steps):
            step(images, labels)
        sync(device)
        elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "images_per_s": args.batch_size * args.steps / elapsed,
        "ms": 1e3 * elapsed / args.steps,
        "timing_conditions": monitor.conditions,
        "peak_memory_mb": peak,
    }


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def train_and_data(args, device: torch.device, clock: Clock, say, record: dict, attempt) -> None:
    """Steps 2 and 3 for each trained method into ``record["training"]["methods"]``, each
    through ``attempt`` (which records a failure and saves the record after each)."""
    use_amp = device.type == "cuda"
    training = record["training"]
    training.update(amp="float16" if use_amp else "none", batch=args.batch_size)
    with tempfile.TemporaryDirectory(prefix="gpu_check_jpegs_") as tmp:
        folder = Path(tmp)
        say(f"writing {args.images} JPEG files")
        names = write_jpegs(folder, args.images)
        batches = max(1, min(args.steps, len(names) // args.batch_size - 1))
        for name in TRAINED:
            if name not in args.methods:
                continue
            if not clock.fits(10 if args.quick else 60):
                record["skipped"].append(f"training {name}: over the time budget")
                continue

            def one(name=name) -> None:
                training["methods"][name] = _train_one(
                    name, args, device, (folder, names, batches), say
                )

            attempt(f"training {name}", one)
            _release(device)


def _train_one(name: str, args, device: torch.device, jpegs, say) -> dict:
    """Model steps (float32, and AMP on CUDA), the data pipeline alone and feeding the step."""
    folder, names, batches = jpegs
    use_amp = device.type == "cuda"
    method, optimizer, protocol, config = build_trainable(name, args.dataset, device)
    height, width = protocol.eval_size
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, height, width, generator=generator)
    labels = torch.arange(args.batch_size) % protocol.num_classes
    images, labels = images.to(device), labels.to(device)
    timed = {}
    for mode in ("float32", "amp") if use_amp else ("float32",):
        say(f"training steps of {name} ({mode})")
        step = make_step(method, optimizer, device, use_amp=mode == "amp")
        timed[mode] = _time_steps(step, images, labels, args, device)
    fastest = timed["amp" if use_amp else "float32"]

    loader, workers = jpeg_loader(folder, names, method, config, protocol, args, device)
    say(f"data pipeline alone ({workers} workers)")
    data_rate, _ = time_loader(loader, batches)

    def consume(batch, step=step):
        step(batch["image"].to(device, non_blocking=True), batch["label"].to(device))

    say(f"data pipeline + {name} training step")
    end_to_end, _ = time_loader(loader, batches, consume)
    sync(device)
    # returning drops the model, its optimizer and the closures that hold them
    return {
        "input_size": [height, width],
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "model_step_images_per_s": fastest["images_per_s"],
        "model_step_ms": fastest["ms"],
        "model_step_float32_images_per_s": timed["float32"]["images_per_s"],
        "data_images_per_s": data_rate,
        "end_to_end_images_per_s": end_to_end,
        "loader_workers": workers,
        "loader_batches": batches,
        "data_bound": bool(end_to_end < 0.9 * fastest["images_per_s"]),
        "timing_conditions": fastest["timing_conditions"],
        "peak_memory_mb": fastest["peak_memory_mb"],
        "peak_memory_float32_mb": timed["float32"]["peak_memory_mb"],
    }
