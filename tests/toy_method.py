"""A tiny trainable CAM-like method for engine tests (loaded as ``--method toy_method:ToyCAM``)."""

import torch
from torch import nn

from wsolbench.method import MethodConfig, Prediction, WSOLMethod
from wsolbench.registry import register_method


@register_method("toycam")
class ToyCAM(WSOLMethod):
    """Two convolutions and a 1×1 classifier; maps are the target class's activation map."""

    config = MethodConfig(
        defaults={
            "width": 8,
            "train": {
                "max_epochs": 3,
                "batch_size": 8,
                "num_workers": 0,
                "scheduler": {"type": "CosineAnnealingLR"},
                "augment": {"crop_scale": [0.5, 1.0], "hflip": True},
            },
        }
    )

    def __init__(self, num_classes: int, width: int = 8):
        super().__init__(num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def _cams(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))

    def loss(self, images, labels):
        logits = self._cams(images).mean((2, 3))
        return {"loss_cls": nn.functional.cross_entropy(logits, labels)}

    def predict(self, images, labels):
        cams = self._cams(images)
        return Prediction(cams.mean((2, 3)), cams[torch.arange(len(labels)), labels])


@register_method("toyfreeze")
class ToyFreeze(ToyCAM):
    """ToyCAM with an auxiliary head that leaves the loss after the first epoch (as TeD-Loc's
    CAM head does once its ``frozen`` teacher is taken); ``declare`` says so to the harness."""

    config = MethodConfig(defaults={**ToyCAM.config.defaults, "declare": True})

    def __init__(self, num_classes: int, width: int = 8, declare: bool = True):
        super().__init__(num_classes, width)
        self.aux = nn.Conv2d(width, num_classes, 1)
        self.epoch = 0
        self.unused_parameters = declare

    def on_train_epoch(self, epoch: int, max_epochs: int) -> None:
        self.epoch = epoch

    def loss(self, images, labels):
        out = super().loss(images, labels)
        if self.epoch == 0:
            aux = self.aux(self.features(images)).mean((2, 3))
            out["loss_aux"] = nn.functional.cross_entropy(aux, labels)
        return out
