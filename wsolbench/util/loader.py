"""Data-loader settings that follow the machine: how many worker processes decode images, and
whether batches are pinned for the GPU. Training (``train.num_workers``) and evaluation
(``--num-workers``) use the same rule."""

from __future__ import annotations

import os


def auto_workers(device: str = "cpu", cpus: int | None = None) -> int:
    """Data-loader workers that follow the machine (``train.num_workers: auto``).

    On CUDA: one core per worker, all but one core (the training process's), at most 8 per
    process (decoding + augmenting a 224-px JPEG takes a few ms: 8 workers feed thousands of
    images/s, more than a GPU step of these models consumes). On CPU the workers compete with
    torch's threads for the same cores: none up to 4 cores (measured faster on 2 cores: cam's and
    tedloc's presets use 0), then a quarter of the cores, at most 8.
    """
    cpus = cpus or os.cpu_count() or 1
    if str(device).startswith("cuda"):
        return max(0, min(8, cpus - 1))
    return 0 if cpus <= 4 else min(8, cpus // 4)


def resolve_workers(value, device: str = "cpu") -> int:
    """``train.num_workers``: an integer as configured, or ``"auto"`` / None for
    :func:`auto_workers`."""
    if value is None or value == "auto":
        return auto_workers(device)
    return int(value)


def pin_memory(device: str) -> bool:
    """Page-locked batches copy to a GPU asynchronously; on the CPU pinning only costs memory."""
    return str(device).startswith("cuda")
