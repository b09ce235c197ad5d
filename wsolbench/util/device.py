"""The torch device a command runs on: ``--device auto|cpu|cuda[:N]``, checked against the
machine."""

from __future__ import annotations


class DeviceError(ValueError):
    """The device asked for does not exist here; the message says which to use."""


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; other values are checked and kept."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            f"--device {device}: CUDA is not available on this machine; use --device cpu"
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise DeviceError(f"--device {device!r}: use auto, cpu or cuda[:N]")
    return device
