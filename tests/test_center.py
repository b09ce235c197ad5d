"""center (Choe et al.'s centre-Gaussian baseline): the map from its definition, written here."""

import numpy as np
import torch

from methods.center import CenterGaussian


def test_the_map_is_an_isotropic_gaussian_at_the_image_centre_that_ignores_the_image():
    """exp(-r² / 2σ²), r the distance of a pixel centre from the image centre, σ a fraction of
    the shorter side; the same map for any image and any class; no class scores."""
    height, width, sigma = 6, 9, 0.25
    method = CenterGaussian(num_classes=3, sigma=sigma)
    first = method.predict(torch.randn(2, 3, height, width), torch.tensor([0, 2]))
    other = method.predict(torch.zeros(2, 3, height, width), torch.tensor([1, 1]))
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    distance2 = (rows - (height - 1) / 2) ** 2 + (cols - (width - 1) / 2) ** 2
    expected = np.exp(-distance2 / (2 * (sigma * min(height, width)) ** 2))
    assert first.logits is None and tuple(first.maps.shape) == (2, height, width)
    for maps in (first.maps, other.maps):
        for one in maps:
            np.testing.assert_allclose(one.numpy(), expected, rtol=1e-6, atol=1e-7)
