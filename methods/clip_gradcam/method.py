"""``clip_gradcam``: Grad-CAM on CLIP (the core of CLIP-ES, Lin et al., CVPR 2023).

1. Text embeddings for the K classes (``templates``) and for each background word
   (``background_template`` over ``background_words``: ground, grass, tree, sky, ...); logits =
   logit scale × cos(image embedding, text), softmax across all K + W of them. The background rows
   compete for probability mass, so a class's score falls where the image looks like background.
2. Grad-CAM of the target class's softmax score at the input norm (``ln_1`` output) of the last
   vision block: channel weights are the gradient's mean over the patch tokens, the map is
   ReLU(Σ_c weight_c · activation_c) on the patch grid — non-negative, zero where no channel
   votes for the class.
3. ``refine: true``: attention-affinity refinement. The patch-to-patch attention of the last
   ``refine_blocks`` blocks (head-averaged, then block-averaged) is made doubly stochastic by
   ``refine_iterations`` rounds of Sinkhorn-style column/row normalization and symmetrized; its
   columns outside the boxes of the CAM at ``refine_threshold`` (of the CAM's min-max range,
   every contour's bounding box) are zeroed, and the result is multiplied into the CAM:
   refined = affinity_masked @ cam. The map then spreads from the CAM's peaks over patches that
   attend alike, but only from inside the CAM's boxes.

Class scores for Top-1/Top-5 are CLIP's zero-shot logits over the K class prompts only. Grad-CAM
needs autograd at inference (``needs_grad_at_inference``); only the last block's input activation
is a graph leaf (every parameter is frozen, the blocks before run without a graph), so memory per
batch stays one block's worth, and nothing is left behind after ``predict`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from methods.clip_base import ClipBaseline
from methods.clip_models import LoadedClip
from methods.clip_text import BACKGROUND_TEMPLATE, BACKGROUND_WORDS
from methods.clip_vision import attention_forward, pooled_embedding
from wsolbench.method import Prediction
from wsolbench.registry import register_method


@register_method("clip_gradcam")
class ClipGradCAM(ClipBaseline):
    """Grad-CAM of CLIP's softmax over class and background prompts, optionally refined.

    Args:
        num_classes, clip, templates, cache_text, classnames: see
            :class:`methods.clip_base.ClipBaseline`.
        background_words: one extra softmax entry per word; empty for classes only.
        background_template: prompt for a background word, with ``{}``.
        refine: apply the attention-affinity refinement.
        refine_blocks: how many last blocks' attention the affinity averages.
        refine_threshold: the CAM level (fraction of its range) whose boxes mask the affinity.
        refine_iterations: Sinkhorn-style column/row normalization rounds.
    """

    needs_grad_at_inference: ClassVar[bool] = True
    defaults: ClassVar[dict] = {
        **ClipBaseline.defaults,
        "background_words": list(BACKGROUND_WORDS),
        "background_template": BACKGROUND_TEMPLATE,
        "refine": False,
        "refine_blocks": 8,
        "refine_threshold": 0.4,
        "refine_iterations": 3,
    }

    def __init__(
        self,
        num_classes: int,
        background_words: Sequence[str] = BACKGROUND_WORDS,
        background_template: str = BACKGROUND_TEMPLATE,
        refine: bool = False,
        refine_blocks: int = 8,
        refine_threshold: float = 0.4,
        refine_iterations: int = 3,
        **kwargs,
    ):
        if background_words and "{}" not in background_template:
            raise ValueError(
                f"clip_gradcam: background_template needs '{{}}' for the word, got "
                f"{background_template!r}"
            )
        if int(refine_blocks) < 1 or int(refine_iterations) < 0:
            raise ValueError("clip_gradcam: refine_blocks must be >= 1, refine_iterations >= 0")
        if not 0.0 <= float(refine_threshold) < 1.0:
            raise ValueError(
                f"clip_gradcam: refine_threshold must be in [0, 1), not {refine_threshold}"
            )
        self.background_words = list(background_words or [])
        self.background_template = background_template
        self.refine = bool(refine)
        self.refine_blocks = int(refine_blocks)
        self.refine_threshold = float(refine_threshold)
        self.refine_iterations = int(refine_iterations)
        super().__init__(num_classes, **kwargs)

    def setup_text(self, loaded: LoadedClip) -> None:
        """One embedding per background word ([W, d]; [0, d] without background words)."""
        if self.background_words:
            rows = [[self.background_template.format(word)] for word in self.background_words]
            background = self.encode_text(loaded, rows)
        else:
            background = self.class_text.new_zeros((0, self.class_text.shape[1]))
        self.register_buffer("background_text", background)

    def cam(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, tuple[int, int], list]:
        """Grad-CAM of the target classes' softmax scores, before refinement.

        Args:
            images: [B, 3, H, W] normalized with CLIP's mean and std.
            labels: [B] target classes.

        Returns:
            cam: [B, N] ≥ 0 on the flattened patch grid.
            logits: [B, K] zero-shot class logits (detached).
            grid: (rows, cols).
            attentions: [B, 1 + N, 1 + N] head-averaged attention maps of the last
                ``refine_blocks`` blocks when refining, else empty.
        """
        wanted = self.refine_blocks if self.refine else 0
        x, grid, attentions = self.trunk(images, attention_blocks=max(0, wanted - 1))
        last = self.visual.transformer.resblocks[-1]
        with torch.enable_grad():  # also under a caller's no_grad: Grad-CAM needs autograd
            activation = last.ln_1(x).detach().requires_grad_(True)
            out, attention = attention_forward(last, activation, need_attention=self.refine)
            h = x + last.ls_1(out)
            h = h + last.ls_2(last.mlp(last.ln_2(h)))
            image = F.normalize(pooled_embedding(self.visual, h).float(), dim=-1)
            texts = torch.cat([self.class_text, self.background_text])
            logits = self.logit_scale * image @ texts.T  # [B, K + W]
            scores = logits.softmax(dim=-1)
            target = scores[torch.arange(images.shape[0], device=scores.device), labels]
            (gradient,) = torch.autograd.grad(target.sum(), activation)
        tokens = activation.detach()[:, 1:].float()  # [B, N, D]
        weights = gradient[:, 1:].float().mean(dim=1, keepdim=True)  # [B, 1, D]
        cam = F.relu((weights * tokens).sum(dim=-1))  # [B, N]
        if attention is not None:
            attentions.append(attention.detach())
        return cam, logits[:, : self.num_classes].detach(), grid, attentions

    def refine_cam(self, cam: Tensor, attentions: list[Tensor], grid: tuple[int, int]) -> Tensor:
        """The attention-affinity refinement (see the module docstring).

        Args:
            cam: [B, N] ≥ 0.
            attentions: list of [B, 1 + N, 1 + N].

        Returns:
            [B, N] ≥ 0.
        """
        affinity = torch.stack(attentions).mean(dim=0)[:, 1:, 1:].float()  # [B, N, N]
        tiny = torch.finfo(affinity.dtype).tiny
        for _ in range(self.refine_iterations):
            affinity = affinity / affinity.sum(dim=-2, keepdim=True).clamp_min(tiny)  # columns
            affinity = affinity / affinity.sum(dim=-1, keepdim=True).clamp_min(tiny)  # rows
        affinity = (affinity + affinity.transpose(-1, -2)) / 2
        mask = box_mask(cam, grid, self.refine_threshold)  # [B, N]
        return torch.einsum("bij,bj->bi", affinity, mask * cam)

    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Zero-shot logits [B, K] and the target class's (refined) Grad-CAM [B, rows, cols] ≥ 0."""
        cam, logits, grid, attentions = self.cam(images, labels)
        if self.refine:
            cam = self.refine_cam(cam, attentions, grid)
        return Prediction(logits=logits, maps=cam.reshape(images.shape[0], *grid))


def box_mask(cam: Tensor, grid: tuple[int, int], threshold: float) -> Tensor:
    """1 inside the bounding box of every contour of ``cam`` above ``threshold`` of its range.

    Args:
        cam: [B, rows·cols], any range.
        threshold: fraction of each map's min-max range.

    Returns:
        [B, rows·cols] float 0/1 on ``cam``'s device; all zeros for a constant map.
    """
    maps = cam.detach().float().reshape(-1, *grid).cpu().numpy()
    masks = np.zeros_like(maps, dtype=np.float32)
    for index, scoremap in enumerate(maps):
        low, high = float(scoremap.min()), float(scoremap.max())
        if high <= low:
            continue
        binary = ((scoremap - low) / (high - low) > threshold).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            masks[index, y : y + h, x : x + w] = 1.0
    return torch.from_numpy(masks.reshape(maps.shape[0], -1)).to(cam.device)
