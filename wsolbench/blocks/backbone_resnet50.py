"""The reference WSOL benchmark's ResNet50 (``wsol_resnet50``) and where its weights are found.

``wsol_resnet50`` is the reference WSOL benchmark's ResNet50 (Choe et al., CVPR 2020,
``clovaai/wsolevaluation`` ``wsol/resnet.py``, ``ResNetCam``): torchvision's ResNet50 with
ImageNet weights (``resnet50-19c8e357.pth``, what the reference downloads, or torchvision's
current name for the same IMAGENET1K_V1 weights, ``resnet50-0676ba61.pth``, in the torch hub
cache; timm's ``resnet50.tv_in1k`` in the Hugging Face cache; or a file), and layer4's stride
removed **without dilation** (stride 16: a 14×14 map at 224 px), layer3's too with
``large_feature_map=True`` (stride 8), as the reference does. timm's ``output_stride=16`` instead
dilates layer4, which is another network on the same weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wsolbench.blocks.backbone_base import Backbone
from wsolbench.blocks.backbone_timm import build_timm
from wsolbench.blocks.backbone_weights import PretrainedWeightsError, cached_weights

REFERENCE_RESNET50 = "wsol_resnet50"
# timm's name of torchvision's ResNet50 ImageNet weights (same architecture and key names).
_TORCHVISION_RESNET50 = "resnet50.tv_in1k"
# The torch hub cache file names of those weights: the reference's URL, then torchvision's current.
_TORCHVISION_RESNET50_FILES = ("resnet50-19c8e357.pth", "resnet50-0676ba61.pth")


def build_reference_resnet50(large_feature_map: bool = False) -> tuple[Backbone, dict]:
    """The reference benchmark's ResNet50 (``ResNetCam``): torchvision's ResNet50 with layer4's
    stride set to 1 without dilation (and layer3's with ``large_feature_map``).

    Removing a stage's stride keeps its weights (a strided 3×3 / 1×1 convolution and the same one
    at stride 1 have the same parameters), so torchvision's ImageNet weights load unchanged.
    """
    # headless, a ResNet uses every module in forward_features: no probe needed
    backbone, pretrained_cfg = build_timm(_TORCHVISION_RESNET50, {}, probe_unused=False)
    stages = ["layer3", "layer4"] if large_feature_map else ["layer4"]
    removed = 1
    for stage in stages:
        first_block = getattr(backbone.model, stage)[0]
        strides = [m.stride for m in first_block.modules() if isinstance(m, nn.Conv2d)]
        removed *= max(max(s) for s in strides)
        for module in first_block.modules():
            if isinstance(module, nn.Conv2d):
                module.stride = (1, 1)
    backbone.name = REFERENCE_RESNET50
    backbone.stride //= removed
    return backbone, pretrained_cfg


def cached_torchvision_resnet50(pretrained_cfg: dict) -> tuple[Path, str]:
    """torchvision's ResNet50 ImageNet weights from the torch hub cache (either file name) or,
    as timm's ``resnet50.tv_in1k``, from the Hugging Face cache; never downloads."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for filename in _TORCHVISION_RESNET50_FILES:
        if (folder / filename).is_file():
            return folder / filename, f"torchvision/{filename}"
    try:
        return cached_weights(_TORCHVISION_RESNET50, pretrained_cfg)
    except PretrainedWeightsError:
        pass
    raise PretrainedWeightsError(
        f"backbone {REFERENCE_RESNET50!r}: torchvision's ResNet50 ImageNet weights are not in the "
        f"local cache (looked for {' and '.join(_TORCHVISION_RESNET50_FILES)} in {folder}, and "
        f"timm/{_TORCHVISION_RESNET50} in the Hugging Face cache), and wsolbench never downloads "
        "at run time. Provide a local file with -o backbone.checkpoint=PATH (a torchvision "
        "ResNet50 state dict), or run without pretrained weights with --no-pretrained. To fill "
        'the cache on a machine with network: python -c "import torchvision; '
        "torchvision.models.resnet50(weights='IMAGENET1K_V1')\""
    )
