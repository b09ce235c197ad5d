"""The small from-scratch CNN for synthetic data, and the table of backbones built here.

Every other backbone is a timm model (:mod:`wsolbench.blocks.backbone_timm`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn


class WsolCNN(nn.Module):
    """A small plain CNN (conv3×3-BN-ReLU layers) with a fine output grid, trained from scratch.

    The default (0.29 M parameters) has stride 4 — a 24×24 grid at 96 px, the resolution the
    synthetic protocol needs to resolve a head of 4–7 px radius on an object of ~20 % of the
    image — and a receptive field of 53 px. Its first layer works at full resolution, so that the
    class patterns (dots, rings, checks of 2–5 px) are seen before any downsampling; resolution
    is kept at the end by two dilated layers instead of further striding.

    Args:
        channels: output channels of each conv layer.
        strides: stride of each layer (their product is the backbone stride).
        dilations: dilation of each layer.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 32, 64, 64, 128, 128),
        strides: Sequence[int] = (1, 2, 1, 2, 1, 1, 1),
        dilations: Sequence[int] = (1, 1, 1, 1, 1, 2, 2),
    ):
        super().__init__()
        if not len(channels) == len(strides) == len(dilations) or not channels:
            raise ValueError(
                f"wsolcnn: channels {list(channels)}, strides {list(strides)} and dilations "
                f"{list(dilations)} must be non-empty lists of the same length"
            )
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, stride, dilation in zip(channels, strides, dilations, strict=True):
            layers += [
                nn.Conv2d(
                    in_channels, out_channels, 3, stride, dilation, dilation=dilation, bias=False
                ),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.out_channels = int(channels[-1])
        self.stride = math.prod(int(s) for s in strides)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] → features [B, D, ceil(H / stride), ceil(W / stride)], ≥ 0."""
        return self.features(images)


# Backbones built here rather than by timm: name → class taking the backbone's ``kwargs``.
LOCAL_BACKBONES: dict[str, type[nn.Module]] = {"wsolcnn": WsolCNN}
