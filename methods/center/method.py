"""``center``: the centre-Gaussian baseline of Choe et al. (CVPR 2020).

The map ignores the image: an isotropic Gaussian at the image centre. Because the harness sweeps
every threshold, the family of boxes it yields is "centred squares of every size", so its score
measures how much a dataset rewards guessing the middle — the floor any WSOL method must beat, and
the first row of every leaderboard. It cannot classify, so Top-k Loc and classification metrics are
absent. ``sigma`` barely matters (the threshold sweep covers all sizes); it only changes how the 256
quantization levels spread over those sizes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from wsolbench.method import Capabilities, MethodConfig, Prediction, WSOLMethod
from wsolbench.registry import register_method


@register_method("center")
class CenterGaussian(WSOLMethod):
    """Isotropic Gaussian at the centre, ``sigma`` as a fraction of the shorter image side."""

    capabilities = Capabilities(
        trainable=False,
        seed_independent=True,
        reference=(
            "the centre-Gaussian baseline of Choe et al. (CVPR 2020): an isotropic Gaussian at "
            "the image centre that ignores the image, the floor every method must beat; no code "
            "of theirs to check it against, and its sigma is ours (the threshold sweep makes it "
            "matter little)"
        ),
    )
    config = MethodConfig(defaults={"sigma": 0.25})

    def __init__(self, num_classes: int, sigma: float):
        super().__init__(num_classes)
        if not sigma > 0:
            raise ValueError(f"center: sigma must be > 0, not {sigma}")
        self.sigma = float(sigma)

    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Maps [B, H, W] at the input resolution; no logits."""
        batch, _, height, width = images.shape
        ys = torch.arange(height, dtype=torch.float32, device=images.device) - (height - 1) / 2
        xs = torch.arange(width, dtype=torch.float32, device=images.device) - (width - 1) / 2
        sigma = self.sigma * min(height, width)
        squared = ys[:, None] ** 2 + xs[None, :] ** 2
        gaussian = torch.exp(-squared / (2 * sigma**2))
        return Prediction(logits=None, maps=gaussian.expand(batch, height, width))
