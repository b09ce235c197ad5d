"""CAM: Class Activation Mapping (Zhou et al., CVPR 2016), the reference WSOL baseline."""

from methods.cam.method import CAM

__all__ = ["CAM"]
