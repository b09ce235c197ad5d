"""Device check, data pipeline: CUB-like JPEG files, the training loader, and its rate.

Step 3: JPEG files (500 × 375, written to a temporary folder) decoded, augmented (the training
transform: random resized crop + flip), normalized and collated by a ``DataLoader`` with the
engine's loader settings (``train.num_workers``, pinned memory on CUDA), timed alone or with a
training step consuming each batch. Imported by ``benchmarks/gpu_check.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


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

    from wsolbench.data.dataset import training_set
    from wsolbench.data.metadata import SplitMetadata
    from wsolbench.util.loader import resolve_workers

    labels = {n: i % protocol.num_classes for i, n in enumerate(names)}
    meta = SplitMetadata(folder, names, labels, {n: (500, 375) for n in names})
    dataset = training_set(meta, folder, protocol.eval_size, method, config["train"]["augment"])
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
