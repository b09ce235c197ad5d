"""The torch device a command runs on: ``--device auto|cpu|cuda[:N]``, checked against the
machine."""

from __future__ import annotations

import re


class DeviceError(ValueError):
    """The device asked for does not exist here; the message says which to use."""


def check_device_name(device: str) -> str:
    """Raise unless ``device`` is ``auto``, ``cpu`` or ``cuda[:N]`` (whatever this machine
    has: a grid submitted from a login node runs elsewhere)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):
        raise DeviceError(f"--device {device!r}: use auto, cpu or cuda[:N]")
    return device


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; other values are checked and kept."""
    import torch

    check_device_name(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu"
        )
    return device
