"""Building a feature backbone by name: the one entry point to the backbones methods share.

Every backbone is a :class:`Backbone` (:mod:`wsolbench.blocks.backbone_base`): ``forward(images [B,
3, H, W]) -> [B, D, h, w]``. A name is ``wsolcnn``, the small CNN for synthetic data
(:mod:`wsolbench.blocks.backbone_wsolcnn`), ``wsol_resnet50``, the reference benchmark's ResNet50
(:mod:`wsolbench.blocks.backbone_resnet50`), or any timm CNN or ViT
(:mod:`wsolbench.blocks.backbone_timm`); pretrained weights come from a local file or the local
caches only, never from the network (:mod:`wsolbench.blocks.backbone_weights`).

These are plain modules of ``wsolbench.blocks`` (not plugin folders): they register nothing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from wsolbench.blocks.backbone_base import Backbone
from wsolbench.blocks.backbone_resnet50 import (
    REFERENCE_RESNET50,
    build_reference_resnet50,
    cached_torchvision_resnet50,
)
from wsolbench.blocks.backbone_timm import build_timm
from wsolbench.blocks.backbone_weights import (
    PretrainedWeightsError,
    cached_weights,
    load_into,
    read_state_dict,
)
from wsolbench.blocks.backbone_wsolcnn import LOCAL_BACKBONES
from wsolbench.util.weights_source import describe, file_sha256

logger = logging.getLogger(__name__)


def build_backbone(
    name: str,
    *,
    pretrained: bool,
    checkpoint: str | os.PathLike | None = None,
    **kwargs,
) -> Backbone:
    """Build a backbone, with pretrained weights from a local file or the local cache only.

    Args:
        name: a timm model name, optionally with a pretrained tag (``resnet50``,
            ``resnet50.a1_in1k``, ``vgg16_bn``, ``deit_small_patch16_224``, ...), ``wsolcnn``,
            or ``wsol_resnet50`` (the reference benchmark's ResNet50, see
            :mod:`wsolbench.blocks.backbone_resnet50`).
        pretrained: load pretrained weights — from ``checkpoint`` when given, else from the
            user's Hugging Face or torch hub cache. False loads nothing, ``checkpoint`` included
            (``--no-pretrained`` and ``wsolbench eval`` rely on that), with a warning if one is
            set.
        checkpoint: a local state-dict file (``.pth``/``.pt``/``.bin``/``.safetensors``).
            Wrappers (``state_dict``/``model`` nesting, ``module.``/``model.`` key prefixes) and
            the file's own classifier head are dropped.
        **kwargs: passed to the model constructor (timm kwargs such as ``output_stride=16``,
            ``embed_dim=...``; ``WsolCNN`` arguments for ``wsolcnn``; ``large_feature_map`` for
            ``wsol_resnet50``).

    Returns:
        The backbone; ``source`` says which weights it holds.

    Raises:
        PretrainedWeightsError: the weights are not cached, or the file does not fit the model
            (the message names the mismatched keys and shapes).
    """
    if name in LOCAL_BACKBONES:
        model = LOCAL_BACKBONES[name](**kwargs)
        backbone = Backbone(
            model, name=name, kind="cnn", out_channels=model.out_channels, stride=model.stride
        )
        pretrained_cfg = {}
    elif name == REFERENCE_RESNET50:
        backbone, pretrained_cfg = build_reference_resnet50(**kwargs)
    else:
        backbone, pretrained_cfg = build_timm(name, kwargs)
    if checkpoint and not pretrained:
        logger.warning(
            "backbone %s: checkpoint %s ignored because backbone.pretrained is false; set "
            "-o backbone.pretrained=true to load it",
            name,
            checkpoint,
        )
    elif checkpoint:
        path = Path(checkpoint).expanduser()
        load_into(backbone, read_state_dict(path), str(path), pretrained_cfg)
        backbone.source = describe("file", path.name, file_sha256(path))
    elif pretrained:
        if name in LOCAL_BACKBONES:
            raise PretrainedWeightsError(
                f"backbone {name!r} is trained from scratch and has no published weights; pass "
                "a file with -o backbone.checkpoint=PATH, or run without pretrained weights "
                "with --no-pretrained (backbone.pretrained=false)"
            )
        if name == REFERENCE_RESNET50:
            path, tag = cached_torchvision_resnet50(pretrained_cfg)
        else:
            path, tag = cached_weights(name, pretrained_cfg)
        load_into(backbone, read_state_dict(path), str(path), pretrained_cfg)
        backbone.source = describe("cache", tag, file_sha256(path))
    logger.info(
        "backbone %s (%s, stride %d): weights %s%s",
        name,
        backbone.kind,
        backbone.stride,
        backbone.source,
        f" from {path}" if backbone.source != "none" else "",
    )
    return backbone
