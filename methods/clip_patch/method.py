"""``clip_patch``: patch–text similarity on CLIP's dense features (MaskCLIP, ECCV 2022).

The image tower runs as usual up to its last block. There, by default (``patch_path: maskclip``),
the attention output of every token is replaced by the token's value projection (through the
attention's output projection), and the rest of the block — the residual, then the MLP with its
residual — is kept, as MaskCLIP's code does (``mmseg/models/backbones/vit.py``, the
``return_qkv`` branch; ``MaskClipHead`` projects and scores): the last query–key mixing, which
spreads every token over the image to serve the class token, is bypassed, so a token stays about
its own patch. The final norm and projection put it in the joint space; the map of class c is
cos(patch embedding, text embedding of c) on the patch grid. One forward pass, no gradients. Class
scores are CLIP's zero-shot logits over the class prompts (from the ordinary forward of the class
token), so Top-1/Top-5 Loc use zero-shot classification.

Other ``patch_path`` values (:func:`wsolbench.blocks.clip_vision.last_block_tokens`): ``value_only``
(the value projection alone: no residual, no MLP) and ``full`` (the ordinary last-block output, the
naive baseline).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from methods.clip_base import ClipBaseline
from wsolbench.blocks.clip_vision import PATCH_PATHS, dense_embeddings
from wsolbench.method import Prediction
from wsolbench.registry import register_method


@register_method("clip_patch")
class ClipPatch(ClipBaseline):
    """Cosine between the last block's dense patch embeddings and the class prompts.

    Args:
        num_classes, clip, templates, cache_text, classnames: see
            :class:`methods.clip_base.ClipBaseline`.
        patch_path: ``maskclip`` (MaskCLIP's formula, default), ``value_only`` or ``full``.
    """

    capabilities = replace(
        ClipBaseline.capabilities,
        reference=(
            "MaskCLIP's value-path patch–text map (Zhou et al., ECCV 2022), checked against the "
            "formulas of its code (chongzhou96/MaskCLIP) re-written independently; by default "
            "on images normalized with CLIP's mean and std, not the ImageNet ones its configs "
            "use, with one prompt, 'a photo of a {}.', not its 85 templates, and one pass at "
            "the protocol's image size, not on 512-px slides (its other departures: "
            "methods/clip_patch/README.md)"
        ),
    )
    config = replace(
        ClipBaseline.config, defaults={**ClipBaseline.config.defaults, "patch_path": "maskclip"}
    )

    def __init__(self, num_classes: int, patch_path: str, **kwargs):
        if patch_path not in PATCH_PATHS:
            renamed = (
                "; 'value' was the residual-free path, now 'value_only' (MaskCLIP's own formula "
                "is 'maskclip')"
                if patch_path == "value"
                else ""
            )
            raise ValueError(
                f"clip_patch: patch_path must be one of {', '.join(PATCH_PATHS)}, not "
                f"{patch_path!r}{renamed}"
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
        return dense_embeddings(self.visual, images, self.patch_path)

    @torch.no_grad()
    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Zero-shot logits [B, K] and the target class's cosine map [B, rows, cols] in [-1, 1]."""
        image, patches, grid = self.embeddings(images)
        text = self.class_text[labels]  # [B, d]
        cosine = torch.einsum("bnd,bd->bn", F.normalize(patches.float(), dim=-1), text)
        maps = cosine.reshape(images.shape[0], *grid)
        return Prediction(logits=self.class_logits(image), maps=maps)
