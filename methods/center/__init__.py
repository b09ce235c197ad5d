"""The centre baseline: every map is the same isotropic Gaussian at the image centre."""

from methods.center.method import CenterGaussian

__all__ = ["CenterGaussian"]
