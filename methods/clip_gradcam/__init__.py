"""clip_gradcam: training-free Grad-CAM on CLIP over class and background prompts (CLIP-ES core)."""

from methods.clip_gradcam.method import ClipGradCAM

__all__ = ["ClipGradCAM"]
