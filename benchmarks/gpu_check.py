"""One device check of every cost figure: inference (fp32 and AMP), training steps, data pipeline.

    bash benchmarks/gpu_check.sh                      # on a GPU machine: at most 8 minutes
    bash benchmarks/gpu_check.sh --device cpu --quick # anywhere: the same code paths in < 1 min

Steps, each on ``--device`` (CUDA by default), results in ``<out>/gpu_check-<device>.json`` and
``.md`` (default ``reports/cost/``), named after the device:

1. **Inference** of every registered method of :data:`METHODS`, built for ``--dataset`` (CUB:
   224 × 224, 200 classes; pretrained loading off, random weights: cost does not depend on them),
   with :func:`wsolbench.profile.profile_method` in fp32 and under AMP (float16 on CUDA, bfloat16
   on CPU): MACs, latency at batch 1 (median over 50 calls after 10), throughput and peak memory
   at batch 64, and the timing conditions.
2. **Training steps** of ``cam`` and ``tedloc`` at the same size with AMP on CUDA (float16 and a
   gradient scaler; fp32 on CPU): forward, the method's losses, backward, SGD step and the
   per-step hook (TeD-Loc after its warm-up: pseudo-labels every step), ``--steps`` steps after
   ``--warmup-steps``, on a batch already on the device: images/s of the model alone.
3. **Data pipeline**: JPEG files (CUB-like 500 × 375, written to a temporary folder) decoded,
   augmented (the training transform: random resized crop + flip), normalized and collated by a
   ``DataLoader`` with the engine's loader settings (``train.num_workers: auto``, pinned memory on
   CUDA): images/s of the loader alone, and of loader + training step together, so that a
   data-bound run shows (end-to-end well below the model step's rate).
4. With ``diffusers`` installed (the ``genpromp-cost`` extra) and not ``--quick``: GenPromp's
   inference graph (:mod:`wsolbench.cost_genpromp`, random weights) timed per image at batch 1
   under AMP.

A step that would run past ``--budget-s`` (default 450 s) is skipped and listed as such, so the
whole check stays within the 8 minutes ``gpu_check.sh`` allows. ``--quick`` uses the synthetic
presets (96 × 96, tiny networks), 3 timed calls and 2 training steps: a test of the script, not a
measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wsolbench._compat import ensure_torchvision  # noqa: E402

ensure_torchvision()

from wsolbench.profile import (  # noqa: E402
    LATENCY_MARK,
    ProfileSettings,
    TimingMonitor,
    build_for_profile,
    describe_conditions,
    device_name,
    latency_clean,
    profile_method,
)

METHODS = ("center", "cam", "tedloc", "clip_patch", "clip_gradcam")
TRAINED = ("cam", "tedloc")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default cuda)")
    parser.add_argument("--quick", action="store_true", help="test the script: tiny and short")
    parser.add_argument("--dataset", help="whose presets and size (default cub; quick: synthetic)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--batch-size", type=int, help="throughput and training batch (64)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 30; quick 2)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps first (5; quick 1)")
    parser.add_argument("--images", type=int, help="JPEG files for the pipeline (512; quick 16)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip steps past this")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "cost")
    args = parser.parse_args(argv)
    quick = args.quick
    args.dataset = args.dataset or ("synthetic" if quick else "cub")
    args.batch_size = args.batch_size or (4 if quick else 64)
    args.steps = args.steps or (2 if quick else 30)
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (1 if quick else 5)
    args.images = args.images or (16 if quick else 512)
    return args


class Clock:
    """Wall time since the start, and whether a step of ``need`` seconds still fits the budget."""

    def __init__(self, budget: float):
        self.start, self.budget = time.perf_counter(), budget

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, need: float) -> bool:
        return self.elapsed() + need <= self.budget


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def amp_dtype(device: torch.device) -> str:
    return "float16" if device.type == "cuda" else "bfloat16"


# ----------------------------------------------------------------------------------------------
# 1. Inference
# ----------------------------------------------------------------------------------------------


def profile_all(args, device: torch.device, clock: Clock, say) -> tuple[list[dict], list[str]]:
    runs = (1, 3) if args.quick else (10, 50)
    records, skipped = [], []
    for name in args.methods:
        for amp in ("none", amp_dtype(device)):
            if not clock.fits(5 if args.quick else 30):
                skipped.append(f"profile {name} amp={amp}: over the time budget")
                continue
            say(f"profile {name} (amp {amp})")
            method, protocol, _ = build_for_profile(name, args.dataset)
            settings = ProfileSettings(
                warmup=runs[0],
                runs=runs[1],
                batch_size=args.batch_size,
                throughput_warmup=1 if args.quick else 2,
                throughput_runs=1 if args.quick else 5,
                amp=amp,
                threads=1 if device.type == "cpu" else None,
            )
            cost = profile_method(
                method, protocol.eval_size, protocol.num_classes, device, settings
            )
            records.append({"method": name, "protocol": protocol.id, **cost})
            del method
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return records, skipped


# ----------------------------------------------------------------------------------------------
# 2. Training steps, 3. data pipeline
# ----------------------------------------------------------------------------------------------


def build_trainable(name: str, dataset: str, device: torch.device):
    from wsolbench.method import build_method, pretrained_off_overrides, resolve_config
    from wsolbench.protocol import protocol_for_dataset as resolve_protocol
    from wsolbench.registry import get_method

    cls = get_method(name)
    protocol = resolve_protocol(dataset, None)
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


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[str]:
    """``count`` CUB-like JPEGs (500 × 375, smooth random colour fields, quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = []
    for index in range(count):
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((500, 375), Image.BICUBIC)
        noise = rng.integers(-12, 13, size=(375, 500, 3))
        array = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        name = f"img{index:05d}.jpg"
        Image.fromarray(array).save(folder / name, quality=90)
        names.append(name)
    return names


def jpeg_loader(folder: Path, names: list[str], method, config, protocol, args, device):
    from torch.utils.data import DataLoader

    from wsolbench.data.dataset import RandomResizedCropFlip, WSOLImageDataset
    from wsolbench.data.metadata import SplitMetadata
    from wsolbench.engine import resolve_workers

    labels = {n: i % protocol.num_classes for i, n in enumerate(names)}
    meta = SplitMetadata(folder, names, labels, {n: (500, 375) for n in names})
    augment = config["train"]["augment"]
    transform = RandomResizedCropFlip(protocol.eval_size, augment["crop_scale"], augment["hflip"])
    dataset = WSOLImageDataset(
        meta, folder, protocol.eval_size, method.image_mean, method.image_std, transform
    )
    workers = resolve_workers(config["train"]["num_workers"], str(device))
    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
    )
    return loader, workers


def time_loader(loader, batches: int, consume=None) -> tuple[float, int]:
    """Images per second over ``batches`` batches after the first (worker start-up excluded)."""
    seen, start = 0, None
    iterator = iter(loader)
    done = 0
    while done <= batches:
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        if consume is not None:
            consume(batch)
        if start is None:
            start = time.perf_counter()  # after the first batch
        else:
            seen += batch["image"].shape[0]
        done += 1
    elapsed = time.perf_counter() - start
    return (seen / elapsed if elapsed > 0 else float("nan")), seen


def train_and_data(args, device: torch.device, clock: Clock, say) -> tuple[dict, list[str]]:
    use_amp = device.type == "cuda"
    out: dict = {"amp": "float16" if use_amp else "none", "batch": args.batch_size, "methods": {}}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check_jpegs_") as tmp:
        folder = Path(tmp)
        say(f"writing {args.images} JPEG files")
        names = write_jpegs(folder, args.images)
        batches = max(1, min(args.steps, len(names) // args.batch_size - 1))
        for name in TRAINED:
            if name not in args.methods:
                continue
            if not clock.fits(10 if args.quick else 60):
                skipped.append(f"training {name}: over the time budget")
                continue
            say(f"training steps of {name} (amp {out['amp']})")
            method, optimizer, protocol, config = build_trainable(name, args.dataset, device)
            step = make_step(method, optimizer, device, use_amp)
            height, width = protocol.eval_size
            generator = torch.Generator().manual_seed(0)
            images = torch.randn(args.batch_size, 3, height, width, generator=generator)
            labels = torch.arange(args.batch_size) % protocol.num_classes
            images, labels = images.to(device), labels.to(device)
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
            model_rate = args.batch_size * args.steps / elapsed

            loader, workers = jpeg_loader(folder, names, method, config, protocol, args, device)
            say(f"data pipeline alone ({workers} workers)")
            data_rate, _ = time_loader(loader, batches)

            def consume(batch, step=step):
                step(batch["image"].to(device, non_blocking=True), batch["label"].to(device))

            say(f"data pipeline + {name} training step")
            end_to_end, _ = time_loader(loader, batches, consume)
            sync(device)
            out["methods"][name] = {
                "input_size": [height, width],
                "steps": args.steps,
                "warmup_steps": args.warmup_steps,
                "model_step_images_per_s": model_rate,
                "model_step_ms": 1e3 * elapsed / args.steps,
                "data_images_per_s": data_rate,
                "end_to_end_images_per_s": end_to_end,
                "loader_workers": workers,
                "loader_batches": batches,
                "data_bound": bool(end_to_end < 0.9 * model_rate),
                "timing_conditions": monitor.conditions,
                "peak_memory_mb": (
                    torch.cuda.max_memory_allocated(device) / 2**20
                    if device.type == "cuda"
                    else None
                ),
            }
            del method, optimizer
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
    return out, skipped


# ----------------------------------------------------------------------------------------------
# 4. GenPromp
# ----------------------------------------------------------------------------------------------


def time_genpromp(args, device: torch.device, clock: Clock, say) -> dict | None:
    if args.quick or device.type != "cuda":
        return {"skipped": "only on CUDA without --quick (1.1 B parameters, 1.5 TMACs per image)"}
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return {"skipped": "diffusers not installed (pip install -e '.[genpromp-cost]')"}
    if not clock.fits(90):
        return {"skipped": "over the time budget"}
    from wsolbench import cost_genpromp as g

    say("GenPromp graph (random weights, float16)")
    modules = {k: m.to(torch.float16) for k, m in g.build(200, device).items()}
    image = torch.randn(1, 3, g.IMAGE_SIZE, g.IMAGE_SIZE, device=device, dtype=torch.float16)
    crops = torch.randn(1, 3, g.CLASSIFIER_SIZE, g.CLASSIFIER_SIZE, device=device)
    ids = torch.randint(0, 49408, (1, g.CONTEXT), device=device)
    t = torch.tensor([99], device=device)

    @torch.no_grad()
    def one_image():
        latents = modules["vae_encoder"](image)
        text = sum(modules["text_encoder"](ids) for _ in range(g.TEXT_CALLS_PER_ROUND))
        for _ in range(g.UNET_CALLS_PER_ROUND):
            modules["unet"](latents, t, text.to(torch.float16))
        modules["classifier"](crops.to(torch.float16))

    for _ in range(3):
        one_image()
    sync(device)
    times = []
    with TimingMonitor(1) as monitor:
        for _ in range(10):
            start = time.perf_counter()
            one_image()
            sync(device)
            times.append(time.perf_counter() - start)
    return {
        "latency_ms_median": 1e3 * float(np.median(times)),
        "runs": 10,
        "warmup": 3,
        "what": "one round + classifier per image, batch 1, float16, as counted in cost.md",
        "timing_conditions": monitor.conditions,
    }


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _mark(cost: dict) -> str:
    return "" if latency_clean(cost) else LATENCY_MARK


def markdown(record: dict) -> str:
    lines = [
        f"# Device check: {record['device_name']}",
        "",
        f"`{record['command']}` — {record['date']}, torch {record['torch']}, "
        f"{record['cpus']} CPU cores, {record['elapsed_s']:.0f} s"
        + (" (--quick: a test of the script, not a measurement)" if record["quick"] else ""),
        "",
        "## Inference (batch-1 latency median; throughput and peak memory at batch "
        f"{record['batch_size']})",
        "",
        "| Method | AMP | MACs (G) | Latency (ms) | Throughput (img/s) | Peak mem (MiB) | "
        "Conditions |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for c in record["inference"]:
        lat, thr = c["latency_ms"], c["throughput"]
        memory = c.get("peak_memory_mb")
        lines.append(
            f"| {c['method']} | {c['amp']} | {c['macs'] / 1e9:.3f} | "
            f"{lat['median']:.2f}{_mark(c)} | {thr['images_per_s']:.1f}{_mark(c)} | "
            f"{'–' if memory is None else f'{memory:.0f}'} | "
            f"{describe_conditions(c.get('timing_conditions'))} |"
        )
    train = record["training"]
    lines += [
        "",
        f"## Training steps (AMP {train['amp']}, batch {train['batch']}) and data pipeline",
        "",
        "| Method | Size | Model step (img/s) | Step (ms) | Data alone (img/s) | "
        "Data + step (img/s) | Loader workers | Data-bound |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, t in train["methods"].items():
        mark = "" if t["timing_conditions"].get("clean") else LATENCY_MARK
        lines.append(
            f"| {name} | {t['input_size'][0]}×{t['input_size'][1]} | "
            f"{t['model_step_images_per_s']:.1f}{mark} | {t['model_step_ms']:.1f} | "
            f"{t['data_images_per_s']:.1f} | {t['end_to_end_images_per_s']:.1f} | "
            f"{t['loader_workers']} | {'yes' if t['data_bound'] else 'no'} |"
        )
    genpromp = record.get("genpromp") or {}
    lines += ["", "## GenPromp graph", ""]
    if "skipped" in genpromp:
        lines.append(f"Not timed: {genpromp['skipped']}.")
    else:
        lines.append(
            f"{genpromp['latency_ms_median']:.1f} ms per image ({genpromp['what']}; "
            f"{describe_conditions(genpromp['timing_conditions'])})."
        )
    if record["skipped"]:
        lines += ["", "Skipped (time budget): " + "; ".join(record["skipped"]) + "."]
    lines += [
        "",
        f"{LATENCY_MARK}: measured while other processes used the cores the timing needed "
        "(wsolbench.profile.CLEAN_RULE); indicative only.",
        "",
    ]
    return "\n".join(lines)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        print(f"error: --device {args.device!r}: use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA device here; on a CPU machine run: "
            "bash benchmarks/gpu_check.sh --device cpu --quick",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    clock = Clock(args.budget_s)

    def say(text: str) -> None:
        print(f"[{clock.elapsed():6.1f} s] {text}", flush=True)

    inference, skipped = profile_all(args, device, clock, say)
    training, skipped_training = train_and_data(args, device, clock, say)
    genpromp = time_genpromp(args, device, clock, say)
    name = device_name(device)
    record = {
        "device": str(device),
        "device_name": name,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "bash benchmarks/gpu_check.sh " + " ".join(argv or sys.argv[1:]),
        "quick": args.quick,
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "elapsed_s": clock.elapsed(),
        "skipped": skipped + skipped_training,
        "inference": inference,
        "training": training,
        "genpromp": genpromp,
    }
    from wsolbench.atomic import write_json_atomic, write_text_atomic

    stem = args.out / f"gpu_check-{slug(name)}{'-quick' if args.quick else ''}"
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(stem.with_suffix(".json"), json.loads(json.dumps(record, default=str)))
    write_text_atomic(stem.with_suffix(".md"), markdown(record))
    say(f"written {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
