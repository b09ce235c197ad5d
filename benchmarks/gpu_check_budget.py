"""The device check's time budget, and the device calls every step of it shares.

Imported by ``benchmarks/gpu_check.py`` (which puts the repository on the import path).
"""

from __future__ import annotations

import time

import torch


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
