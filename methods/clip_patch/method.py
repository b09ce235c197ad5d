"""``clip_patch``: patch–text similarity on CLIP's last value path (MaskCLIP, ECCV 2022).

The image tower runs as usual up to its last block. There, each patch token takes the block's value
projection (through the attention's output projection) instead of the attention output: the last
query–key mixing, which spreads every token over the image to serve the class token, is bypassed,
so a token stays about its own patch. The final norm and projection put it in the joint space; the
map of class c is cos(patch embedding, text embedding of c) on the patch grid. One forward pass,
no gradients. Class scores are CLIP's zero-shot logits over the class prompts (from the ordinary
forward of the class token), so Top-1/Top-5 Loc use zero-shot classification.

``patch_path: full`` takes the ordinary last-block output instead (the naive patch-token
baseline): an ablation, to show what the value path buys.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.clip_base import ClipBaseline
from methods.clip_vision import block_forward, pooled_embedding, project_tokens, value_path
from wsolbench.method import Prediction
from wsolbench.registry import register_method

PATCH_PATHS = ("value", "full")


@register_method("clip_patch")
class ClipPatch(ClipBaseline):
    """Cosine between the last block's value-path patch embeddings and the class prompts.

    Args:
        num_classes, clip, templates, cache_text, classnames: see
            :class:`methods.clip_base.ClipBaseline`.
        patch_path: ``value`` (MaskCLIP, default) or ``full`` (the ordinary last-block output).
    """

    defaults: ClassVar[dict] = {**ClipBaseline.defaults, "patch_path": "value"}

    def __init__(self, num_classes: int, patch_path: str = "value", **kwargs):
        if patch_path not in PATCH_PATHS:
            raise ValueError(
                f"clip_patch: patch_path must be one of {PATCH_PATHS}, not {patch_path!r}"
            )
        super().__init__(num_classes, **kwargs)
        self.patch_path = patch_path

    @torch.no_grad()
    def embeddings(self, images: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Image and patch embeddings in the joint space.

        Args:
            images: [B, 3, H, W] normalized with CLIP's mean and std.

        Returns:
            image: [B, d] the class token's embedding (as ``encode_image``).
            patches: [B, N, d] per-patch embeddings along ``patch_path``, N = rows · cols.
            grid: (rows, cols).
        """
        x, grid, _ = self.trunk(images)
        last = self.visual.transformer.resblocks[-1]
        out, _ = block_forward(last, x)
        image = pooled_embedding(self.visual, out)
        tokens = value_path(last, x) if self.patch_path == "value" else out
        return image, project_tokens(self.visual, tokens[:, 1:]), grid

    @torch.no_grad()
    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Zero-shot logits [B, K] and the target class's cosine map [B, rows, cols] in [-1, 1]."""
        image, patches, grid = self.embeddings(images)
        text = self.class_text[labels]  # [B, d]
        cosine = torch.einsum("bnd,bd->bn", F.normalize(patches.float(), dim=-1), text)
        maps = cosine.reshape(images.shape[0], *grid)
        return Prediction(logits=self.class_logits(image), maps=maps)
