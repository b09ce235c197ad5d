"""clip_patch: training-free patch–text similarity on CLIP's last value path (MaskCLIP-style)."""

from methods.clip_patch.method import ClipPatch

__all__ = ["ClipPatch"]
