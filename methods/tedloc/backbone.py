"""TeD-Loc's student backbone: a timm model or ``wsolcnn`` (:mod:`wsolbench.blocks.backbones`), or
CLIP's own ViT image tower (``clip:<open_clip model>``), each giving patch features [B, D, h, w]."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench.blocks.backbones import build_backbone

CLIP_BACKBONE_PREFIX = "clip:"


class ClipImageBackbone(nn.Module):
    """CLIP's ViT image tower as a backbone: patch tokens after the final norm → [B, D, h, w].

    Inputs are resized to the tower's image size (its positional embedding is fixed).
    """

    def __init__(self, loaded):
        super().__init__()
        self.visual = loaded.model.visual
        self.visual.proj = None  # the joint-space projection is TeD-Loc's own g
        self.name = f"{CLIP_BACKBONE_PREFIX}{loaded.name}"
        self.kind = "vit"
        self.out_channels = int(self.visual.transformer.width)
        self.stride = int(loaded.patch_size)
        self.size = tuple(loaded.image_size)
        self.source = loaded.source
        self.mean, self.std = tuple(loaded.mean), tuple(loaded.std)

    def forward(self, images: Tensor) -> Tensor:
        if tuple(images.shape[-2:]) != self.size:
            images = F.interpolate(images, size=self.size, mode="bilinear", align_corners=False)
        visual = self.visual
        _, tokens = visual._pool(visual.transformer(visual._embeds(images)))
        side = self.size[0] // self.stride
        return tokens.transpose(1, 2).reshape(
            tokens.shape[0], -1, side, self.size[1] // self.stride
        )


def build_tedloc_backbone(options: dict) -> nn.Module:
    """The student backbone from ``{name, pretrained, checkpoint, clip_tag, kwargs}``."""
    known = {"name", "pretrained", "checkpoint", "clip_tag", "kwargs"}
    if set(options) - known or "name" not in options:
        raise ValueError(f"tedloc: backbone takes {sorted(known)} (got {sorted(options)})")
    name = str(options["name"])
    if name.startswith(CLIP_BACKBONE_PREFIX):
        from wsolbench.blocks.clip_models import load_clip

        pretrained = bool(options.get("pretrained"))
        loaded = load_clip(
            name[len(CLIP_BACKBONE_PREFIX) :],
            pretrained=options.get("clip_tag") if pretrained else None,
            checkpoint=options.get("checkpoint") if pretrained else None,
        )
        return ClipImageBackbone(loaded)
    return build_backbone(
        name,
        pretrained=bool(options.get("pretrained", False)),
        checkpoint=options.get("checkpoint"),
        **(options.get("kwargs") or {}),
    )
