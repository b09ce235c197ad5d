"""``cam``: Class Activation Mapping (Zhou et al., CVPR 2016) on a timm or small local backbone.

Feature map F [B, D, h, w] → 1×1 classifier W [K, D] (+ bias) → global average pooling → logits.
The map of class c is Σ_d W[c, d] F[:, d] on the feature grid, without ReLU and without the bias
(the harness min-max normalizes, so neither would change a box). On a ViT backbone F is the patch
grid, so the same formula is "linear classifier per patch → mean over patches" and the map is the
per-patch logit of c (TS-CAM's semantic map without its attention coupling).

The default backbone is the reference benchmark's (Choe et al., CVPR 2020, ``wsolevaluation``):
``wsol_resnet50``, torchvision's ResNet50 with ImageNet weights and layer4's stride removed without
dilation (:mod:`wsolbench.blocks.backbones`); timm backbones are options. Training follows the
reference: SGD with momentum 0.9, Nesterov, weight decay 1e-4, lr 0.01 with layer4 and the
classifier at ×10 (the reference's ResNet50 split), step decay ×0.1, batch 64; the classifier
starts at N(0, 0.01) weights and a zero bias (``classifier_init: normal``), except on ILSVRC,
where it starts from the ImageNet weights' own fc (``classifier_init: pretrained``), as the
reference loads it there. See ``README.md`` for the presets and their reasons.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench.blocks.backbone_resnet50 import REFERENCE_RESNET50
from wsolbench.blocks.backbones import build_backbone
from wsolbench.method import Capabilities, MethodConfig, Prediction, WSOLMethod
from wsolbench.registry import register_method

logger = logging.getLogger(__name__)


#: how the 1×1 classifier starts (``CAM``'s docstring)
CLASSIFIER_INITS = ("normal", "default", "pretrained")

#: cam's preset on the built-in worlds: from scratch on 2 CPU cores (README.md: why these values)
FROM_SCRATCH = {
    "backbone": {"name": "wsolcnn", "pretrained": False},
    "classifier_init": "default",  # PyTorch's: what the synthetic reports were made with
    "train": {
        "max_epochs": 28,
        "num_workers": 0,  # measured faster: a worker competes with the 2 torch threads
        "optimizer": {"lr": 0.1},
        "lr_mult": {"classifier": 1},
        "scheduler": {"type": "CosineAnnealingLR", "eta_min": 0.0},
        # no crop: synthetic-v1's head, the only strong class cue, is ~1 % of the image
        "augment": {"crop_scale": [1.0, 1.0], "hflip": True},
    },
}


@register_method("cam")
class CAM(WSOLMethod):
    """CAM: backbone → 1×1 classifier → GAP; the map is the target class's channel before pooling.

    Args:
        num_classes: K.
        backbone: ``{"name", "pretrained", "checkpoint", "kwargs"}``, see
            :func:`wsolbench.blocks.backbones.build_backbone` (``kwargs`` go to the model
            constructor, e.g. ``{"output_stride": 16}`` for timm's dilated stride-16 ResNet).
        classifier_init: ``normal`` (N(0, 0.01) weights, zero bias: the reference's start of
            its classifier), ``default`` (PyTorch's initialization of a 1×1 convolution) or
            ``pretrained`` (the loaded weights' own classifier, e.g. ImageNet's fc for ILSVRC,
            when its shape is [K, D]; otherwise ``normal``, with a warning).
    """

    capabilities = Capabilities(
        pretrained_options=("backbone.pretrained",),
        reference=(
            "CAM (Zhou et al., CVPR 2016) as the wsolevaluation benchmark (Choe et al., CVPR 2020) "
            "trains it: by default that code's ImageNet ResNet50 and recipe (clovaai/"
            "wsolevaluation) under the benchmark spec's schedule and crop, not the hyperparameters "
            "it tuned per method; on the synthetic worlds (their presets) a small CNN from "
            "scratch, as nothing there is pretrained (methods/cam/README.md)"
        ),
    )
    config = MethodConfig(
        defaults={
            "backbone": {
                "name": REFERENCE_RESNET50,
                "pretrained": True,
                "checkpoint": None,
                "kwargs": {},
            },
            # wsolevaluation's ResNetCam starts its fc at N(0, 0.01) with a zero bias (its
            # initialize_weights) and keeps that start on CUB (the ImageNet fc is dropped)
            "classifier_init": "normal",
            # The engine's TRAIN_DEFAULTS already are the reference benchmark's recipe (SGD,
            # momentum 0.9, Nesterov, wd 1e-4, lr 0.01, x0.1 every 15 epochs of 50, batch 64); CAM
            # states its 50 epochs and adds the 10x learning rate the reference gives a ResNet's
            # layer4 and classifier.
            "train": {
                "max_epochs": 50,
                # "classifier" occurs only in the 1×1 classifier's names, "layer4" only in a
                # ResNet's last stage (see tests); other backbones have no "layer4"
                "lr_mult": {"classifier": 10, "layer4": 10},
            },
        },
        presets={
            # The reference's ResNet50 CAM on CUB (MaxBoxAccV2 63.0 in its paper): the defaults.
            "cub": {},
            # On ILSVRC the reference keeps the ImageNet fc as the classifier's starting point.
            "ilsvrc": {
                "classifier_init": "pretrained",
                "train": {
                    "max_epochs": 10,
                    "scheduler": {"type": "MultiStepLR", "milestones": [3, 6, 9], "gamma": 0.1},
                },
            },
            # From scratch on 2 CPU cores in under 3 minutes (README.md: why these values);
            # the histology world is drawn at the same size
            "synthetic": FROM_SCRATCH,
            "synthetic-histo": FROM_SCRATCH,
        },
    )

    def __init__(self, num_classes: int, backbone: dict, classifier_init: str):
        super().__init__(num_classes)
        if classifier_init not in CLASSIFIER_INITS:
            raise ValueError(
                f"cam: classifier_init must be one of {', '.join(CLASSIFIER_INITS)}, not "
                f"{classifier_init!r}"
            )
        options = dict(backbone)
        unknown = set(options) - {"name", "pretrained", "checkpoint", "kwargs"}
        if unknown or "name" not in options:
            raise ValueError(
                f"cam: backbone config needs 'name' and takes only name, pretrained, checkpoint, "
                f"kwargs (got {sorted(options)})"
            )
        self.backbone = build_backbone(
            options["name"],
            pretrained=bool(options.get("pretrained", False)),
            checkpoint=options.get("checkpoint"),
            **(options.get("kwargs") or {}),
        )
        # the backbone's weights: "none", "file:<path>" or "cache:<name>"
        self.provenance["backbone"] = self.backbone.source
        self.classifier = nn.Conv2d(self.backbone.out_channels, num_classes, kernel_size=1)
        if classifier_init != "default":
            self._init_classifier_normal()
        if classifier_init == "pretrained":
            self._init_classifier_from_weights()
        # The input normalization follows the backbone's weights (e.g. 0.5/0.5 for some ViTs).
        self.image_mean = self.backbone.mean
        self.image_std = self.backbone.std

    def _init_classifier_normal(self) -> None:
        with torch.no_grad():
            nn.init.normal_(self.classifier.weight, 0.0, 0.01)
            nn.init.zeros_(self.classifier.bias)

    def _init_classifier_from_weights(self) -> None:
        head, self.backbone.pretrained_head = self.backbone.pretrained_head, None
        weight = self.classifier.weight
        if head is None or tuple(head[0].shape) != (weight.shape[0], weight.shape[1]):
            if self.backbone.source != "none":
                found = "none" if head is None else tuple(head[0].shape)
                logger.warning(
                    "cam: classifier_init pretrained, but the backbone weights' classifier is %s "
                    "(needed %s); the classifier starts from N(0, 0.01) weights and a zero bias",
                    found,
                    (weight.shape[0], weight.shape[1]),
                )
            return
        with torch.no_grad():
            weight.copy_(head[0].reshape(weight.shape))
            if head[1] is not None:
                self.classifier.bias.copy_(head[1])

    def class_maps(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Per-class activation maps and logits.

        Args:
            images: [B, 3, H, W], normalized with ``image_mean`` / ``image_std``.

        Returns:
            maps: [B, K, h, w] = Σ_d W[k, d] F[:, d], any range (no bias, no ReLU).
            logits: [B, K] = mean over the grid of ``maps`` + bias.
        """
        features = self.backbone(images)
        maps = F.conv2d(features, self.classifier.weight)
        logits = maps.mean(dim=(2, 3)) + self.classifier.bias
        return maps, logits

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Cross-entropy of the pooled logits."""
        _, logits = self.class_maps(images)
        return {"loss_cls": F.cross_entropy(logits.float(), labels)}

    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Logits [B, K] and the map of class ``labels`` [B, h, w] on the feature grid."""
        maps, logits = self.class_maps(images)
        index = torch.arange(maps.shape[0], device=maps.device)
        return Prediction(logits=logits, maps=maps[index, labels])
