"""``has``: Hide-and-Seek (Singh & Lee, ICCV 2017) on a small CNN, as a wsolbench plugin.

K. K. Singh and Y. J. Lee, "Hide-and-Seek: Forcing a Network to be Meticulous for
Weakly-supervised Object and Action Localization", ICCV 2017. The rule, as the paper states it and
as its released ``hide_patch`` code applies it:

- during training, each training image is divided into a grid of square patches of side S pixels,
  starting at the top-left corner (patches at the right and bottom edges are cut at the border);
- every patch is hidden independently with probability ``p_hide`` = 0.5 (the code hides a patch
  when a uniform draw is ``<= p_hide``);
- a hidden patch is replaced by the mean RGB value of the training data, so that the first layer's
  expected activation is the same in training (some patches hidden) and at test time (none);
  after mean subtraction that is the value 0;
- S is one fixed size (the paper's HaS-16 ... HaS-56 on 224-px images) or, for HaS-Mixed, drawn
  per image from a list that may hold 0 (that image is not hidden);
- at test time nothing is hidden; the localization map is the CAM (Zhou et al., CVPR 2016) of the
  classifier trained this way.

Here the images reach :meth:`HideAndSeek.loss` already normalized with the method's
``image_mean`` / ``image_std`` (ImageNet's, the wsolbench default), so a hidden patch is set to 0,
which is the ImageNet mean RGB: the paper's dataset mean on ImageNet, and close to it elsewhere.
``grid_size`` is S (an int, or a list for HaS-Mixed), ``hide_prob`` is ``p_hide``.

The backbone is :class:`SmallCNN`, defined here so that the plugin imports nothing of wsolbench's
first-party methods; ``checkpoint`` optionally starts it from a local state-dict file, which is
recorded in the method's provenance.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from wsolbench.method import Capabilities, MethodConfig, Prediction, WSOLMethod
from wsolbench.registry import register_method
from wsolbench.util.weights_source import describe


def hide_patches(
    images: Tensor,
    grid_sizes: Sequence[int],
    hide_prob: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Hide-and-Seek's hiding of one batch: a copy with hidden patches set to 0.

    For each image, in order: S is ``grid_sizes[0]`` when the list has one entry, else an entry
    drawn uniformly (``torch.randint``); with S = 0 the image is left whole. Otherwise one uniform
    draw per patch, in row-major order over the ``ceil(H / S) × ceil(W / S)`` grid
    (``torch.rand``), and a patch whose draw is ``<= hide_prob`` is set to 0 on every channel.
    Draws are made on the CPU (``generator``, or torch's global generator when None), so the same
    seed hides the same patches on every device.

    Args:
        images: [B, C, H, W], normalized (0 is the mean the method normalizes with).
        grid_sizes: patch sides S in pixels, each >= 0.
        hide_prob: probability that a patch is hidden, in [0, 1).
        generator: a CPU generator for the draws.

    Returns:
        [B, C, H, W], same dtype and device as ``images``.
    """
    batch, _, height, width = images.shape
    if hide_prob == 0:
        return images.clone()
    keep = torch.ones(batch, 1, height, width, dtype=images.dtype)
    for b in range(batch):
        if len(grid_sizes) == 1:
            size = int(grid_sizes[0])
        else:
            size = int(grid_sizes[int(torch.randint(len(grid_sizes), (), generator=generator))])
        if size == 0:
            continue
        draws = torch.rand(math.ceil(height / size), math.ceil(width / size), generator=generator)
        patch_kept = (draws > hide_prob).to(images.dtype)
        pixels = patch_kept.repeat_interleave(size, 0).repeat_interleave(size, 1)
        keep[b, 0] = pixels[:height, :width]
    return images * keep.to(images.device)


class SmallCNN(nn.Module):
    """A plain stack of conv3×3-BN-ReLU layers, trained from scratch.

    Args:
        channels: output channels of each layer.
        strides: stride of each layer (their product is the stride of the feature grid).
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, stride in zip(channels, strides, strict=True):
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.layers = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] → features [B, channels[-1], H / stride, W / stride] (rounded up)."""
        return self.layers(images)


def _grid_sizes(grid_size: int | list) -> list[int]:
    sizes = grid_size if isinstance(grid_size, list) else [grid_size]
    if not sizes or not all(type(s) is int and s >= 0 for s in sizes):
        raise ValueError(
            f"has: grid_size must be a patch side in pixels (an integer >= 0) or a non-empty list "
            f"of them (HaS-Mixed: -o 'grid_size=[0, 16, 32, 44, 56]'), not {grid_size!r}"
        )
    return [int(s) for s in sizes]


@register_method("has")
class HideAndSeek(WSOLMethod):
    """CAM trained on images with randomly hidden patches (see the module docstring).

    Args:
        num_classes: K.
        grid_size: the patch side S in pixels, or a list of sides drawn per image (HaS-Mixed; 0
            leaves that image whole).
        hide_prob: probability that a patch is hidden, in [0, 1); 0 trains plain CAM.
        channels, strides: the :class:`SmallCNN` (lists of equal length).
        pretrained: start the CNN from ``checkpoint`` (``--no-pretrained`` sets it false).
        checkpoint: a local state-dict file of the CNN: a ``weights.pt`` of an earlier ``has``
            run (its ``features.*`` keys; the classifier is left out) or the CNN's own keys.
    """

    capabilities = Capabilities(pretrained_options=("pretrained",))
    config = MethodConfig(
        defaults={
            "grid_size": 32,  # the paper's GoogLeNet-HaS-32, on 224-px images
            "hide_prob": 0.5,
            "channels": [16, 32, 64, 128, 128],
            "strides": [1, 2, 2, 1, 1],
            "pretrained": False,
            "checkpoint": None,
            "train": {
                "max_epochs": 40,
                "optimizer": {"lr": 0.1},  # from scratch: a large rate, annealed to 0
                "scheduler": {"type": "CosineAnnealingLR", "eta_min": 0.0},
            },
        },
        presets={
            # 96-px images: patches of 16 px, about a head's diameter (3 to 6 per object length)
            "synthetic": {
                "grid_size": 16,
                "train": {
                    "max_epochs": 28,
                    "num_workers": 0,  # 2-core machines: a worker competes with torch's threads
                    # no crop: the head, the strongest class cue, is about 1 % of the image
                    "augment": {"crop_scale": [1.0, 1.0], "hflip": True},
                },
            },
        },
        # grid_size may be one side or a list of them; checkpoint is a path or null.
        types={"grid_size": (int, list), "checkpoint": (str, type(None))},
    )

    def __init__(
        self,
        num_classes: int,
        grid_size: int | list,
        hide_prob: float,
        channels: list,
        strides: list,
        pretrained: bool,
        checkpoint: str | None,
    ):
        super().__init__(num_classes)
        self.grid_sizes = _grid_sizes(grid_size)
        if not 0 <= hide_prob < 1:
            raise ValueError(f"has: hide_prob must be in [0, 1) (the paper's 0.5), not {hide_prob}")
        self.hide_prob = float(hide_prob)
        if not channels or len(channels) != len(strides):
            raise ValueError(
                f"has: channels {channels} and strides {strides} must be non-empty lists of the "
                "same length (one entry per layer)"
            )
        self.channels = list(channels)
        self.features = SmallCNN(channels, strides)
        self.classifier = nn.Conv2d(channels[-1], num_classes, kernel_size=1)
        if pretrained:
            if checkpoint is None:
                raise ValueError(
                    "has: pretrained is true but no file is given; pass -o checkpoint=PATH (a "
                    "weights.pt of an earlier has run) or drop -o pretrained=true"
                )
            self.provenance["features"] = self._load_features(Path(checkpoint))
        else:
            self.provenance["features"] = "none"  # random initialisation: tables mark it ‡

    def _load_features(self, path: Path) -> str:
        """Load the CNN's weights from ``path``; returns its provenance ``file:<name> (sha256 …)``
        (by content: the digest makes ``--resume`` refuse a file whose content changed since)."""
        if not path.is_file():
            raise ValueError(f"has: checkpoint {path} does not exist; pass -o checkpoint=PATH")
        data = path.read_bytes()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated file, another format, a pickle of objects
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(
                f"has: checkpoint {path} is not a plain state dict ({first_line}); pass a "
                "weights.pt written by wsolbench"
            ) from None
        if not isinstance(state, dict):
            raise ValueError(f"has: checkpoint {path} holds a {type(state).__name__}, not a dict")
        if any(k.startswith("features.") for k in state):
            # a wsolbench weights.pt of this method: keep the CNN, leave the classifier
            prefix = "features."
            state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        try:
            self.features.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(
                f"has: checkpoint {path} does not fit this CNN (channels {self.channels}): "
                f"{str(exc).splitlines()[0]}; use the channels of the run that wrote it"
            ) from None
        return describe("file", path.name, hashlib.sha256(data).hexdigest())

    def class_maps(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """CAM: per-class maps [B, K, h, w] = Σ_d W[k, d] F[:, d] (no bias), and logits [B, K] =
        their mean over the grid + bias (global average pooling before a linear classifier)."""
        features = self.features(images)
        maps = F.conv2d(features, self.classifier.weight)
        return maps, maps.mean(dim=(2, 3)) + self.classifier.bias

    def loss(self, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Cross-entropy of the pooled logits of the images with patches hidden.

        Args:
            images: [B, 3, H, W], normalized; labels: [B].
        """
        hidden = hide_patches(images, self.grid_sizes, self.hide_prob)
        _, logits = self.class_maps(hidden)
        return {"loss_cls": F.cross_entropy(logits.float(), labels)}

    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Nothing hidden: logits [B, K] and the CAM of class ``labels`` [B, h, w]."""
        maps, logits = self.class_maps(images)
        return Prediction(logits=logits, maps=maps[torch.arange(maps.shape[0]), labels])
