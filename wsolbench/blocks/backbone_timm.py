"""timm models as backbones: headless, without timm's downloader, unused head parts dropped.

Any timm model name serves (``resnet50``, ``resnet50.a1_in1k``, ``vgg16_bn``,
``deit_small_patch16_224``, ...): a CNN's last feature map or a ViT's patch grid, the model built
with ``pretrained=False`` (weights come from :mod:`wsolbench.blocks.backbone_weights`).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from wsolbench.blocks.backbone_base import IMAGENET_MEAN, IMAGENET_STD, Backbone
from wsolbench.blocks.backbone_wsolcnn import LOCAL_BACKBONES
from wsolbench.util.compat import ensure_torchvision

logger = logging.getLogger(__name__)


def build_timm(name: str, kwargs: dict, probe_unused: bool = True) -> tuple[Backbone, dict]:
    """A headless timm model (never with timm's own ``pretrained=True``) wrapped as a Backbone.

    ``probe_unused=False`` skips :func:`_drop_unused_modules` for a model known to use every
    module in ``forward_features`` once headless (a ResNet): the probe is a backward pass."""
    ensure_torchvision()
    import timm

    try:
        # ViTs take any input size (positional embeddings are interpolated at forward time), so
        # the protocol's image size need not be the model's default.
        model = timm.create_model(
            name, pretrained=False, num_classes=0, **{"dynamic_img_size": True, **kwargs}
        )
    except TypeError as exc:
        if "dynamic_img_size" not in str(exc) or "dynamic_img_size" in kwargs:
            raise
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as exc:  # timm's "Unknown model (...)"
        raise ValueError(
            f"backbone {name!r}: {exc}; use a timm model name (timm.list_models()) or one of "
            f"{sorted(LOCAL_BACKBONES)}"
        ) from None
    pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    mean = pretrained_cfg.get("mean", IMAGENET_MEAN)
    std = pretrained_cfg.get("std", IMAGENET_STD)
    is_vit = hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed")
    if probe_unused:
        _drop_unused_modules(model, is_vit)
    if is_vit:
        patch = model.patch_embed.patch_size
        patch = patch[0] if isinstance(patch, (tuple, list)) else patch
        kind, channels, stride = "vit", model.num_features, int(patch)
    else:
        info = model.feature_info[-1]
        kind, channels, stride = "cnn", int(info["num_chs"]), int(info["reduction"])
    backbone = Backbone(
        model, name=name, kind=kind, out_channels=channels, stride=stride, mean=mean, std=std
    )
    return backbone, pretrained_cfg


def _drop_unused_modules(model: nn.Module, is_vit: bool) -> None:
    """Replace submodules that ``forward_features`` never uses by ``nn.Identity``.

    A headless timm model can still hold head parts outside ``forward_features`` — VGG's
    ``pre_logits`` (a 7×7 conv to 4096 channels: ~100 M parameters), ConvNeXt's head norm.
    Left in, they would bloat every exported ``weights.pt`` and break distributed training
    (parameters without gradients). Found by one backward pass on a tiny input in eval mode (so
    batch-norm statistics do not move).
    """
    if is_vit and getattr(model.patch_embed, "dynamic_img_size", False):
        size = 32
    else:  # some CNNs (Inception) need more than 64 px; a fixed-size ViT needs its own size
        size = 96 if not is_vit else int(model.pretrained_cfg.get("input_size", (3, 224))[-1])
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            model.forward_features(torch.zeros(1, 3, size, size)).float().sum().backward()
    finally:
        model.train(was_training)
    unused = {
        name
        for name, module in model.named_modules()
        if name
        and any(True for _ in module.parameters())
        and all(p.grad is None for p in module.parameters())
    }
    model.zero_grad(set_to_none=True)
    for name in sorted(unused):
        parent_name, _, child = name.rpartition(".")
        if parent_name in unused:
            continue  # its parent is replaced as a whole
        parent = model.get_submodule(parent_name) if parent_name else model
        logger.debug("dropping %s (unused by forward_features)", name)
        setattr(parent, child, nn.Identity())
