"""The Backbone wrapper: any feature network behind one output, ``[B, D, h, w]``.

Every backbone is a :class:`Backbone`: ``forward(images [B, 3, H, W]) -> [B, D, h, w]``, the last
feature map of a CNN, or a ViT's patch tokens (after the final norm, class / distillation /
register tokens dropped) reshaped to the patch grid. A 1×1 classifier plus global average pooling
on that grid is then exactly "linear classifier per patch → mean over patches", so CAM and TeD-Loc
treat both kinds alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A feature extractor with a uniform output: ``[B, D, h, w]``.

    Attributes:
        model: the wrapped network (a timm model or a local one); its parameters are the backbone's.
        name: the name it was built from (``resnet50``, ``deit_small_patch16_224``, ``wsolcnn``).
        kind: ``"cnn"`` or ``"vit"``.
        out_channels: D.
        stride: input pixels per feature-map cell (the patch size for a ViT).
        source: the weights loaded: ``"none"``, ``"file:<path>"`` or ``"cache:<timm name>"``.
        mean, std: the input normalization the weights expect (RGB, images in [0, 1]).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        kind: str,
        out_channels: int,
        stride: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        if kind not in ("cnn", "vit"):
            raise ValueError(f"backbone kind must be 'cnn' or 'vit', not {kind!r}")
        self.model = model
        self.name = name
        self.kind = kind
        self.out_channels = int(out_channels)
        self.stride = int(stride)
        self.source = "none"
        # (weight [K, D], bias [K] or None) of the classifier the loaded weights came with (an
        # ImageNet fc), for a method that starts its own classifier from it; None otherwise
        self.pretrained_head: tuple[Tensor, Tensor | None] | None = None
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        # channels_last makes CPU (oneDNN) and CUDA convolutions markedly faster; a ViT gains
        # nothing from it.
        self.channels_last = kind == "cnn"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] normalized with ``mean``/``std`` → features [B, D, h, w]."""
        if self.kind == "vit":
            return self._vit_features(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        forward = getattr(self.model, "forward_features", self.model.forward)
        features = forward(images)
        if getattr(self.model, "output_fmt", "NCHW") == "NHWC":  # e.g. timm's Swin
            features = features.permute(0, 3, 1, 2)
        return features

    def _vit_features(self, images: Tensor) -> Tensor:
        tokens = self.model.forward_features(images)  # [B, prefix + h*w, D], after the final norm
        height, width = images.shape[-2:]
        embed = self.model.patch_embed
        if hasattr(embed, "dynamic_feat_size"):
            grid = embed.dynamic_feat_size((height, width))
        else:
            grid = (height // self.stride, width // self.stride)
        patches = tokens[:, self.model.num_prefix_tokens :]
        if patches.shape[1] != grid[0] * grid[1]:
            raise RuntimeError(
                f"backbone {self.name}: {patches.shape[1]} patch tokens for a {grid[0]}x{grid[1]} "
                f"grid at input {height}x{width}"
            )
        return patches.transpose(1, 2).reshape(patches.shape[0], -1, grid[0], grid[1])
