"""``clip_gradcam``: Grad-CAM on CLIP, as CLIP-ES computes it (Lin et al., CVPR 2023).

Defaults follow CLIP-ES's code (linyq2117/CLIP-ES: ``clip/model.py`` ``forward_last_layer``,
``generate_cams_voc12.py``, ``pytorch_grad_cam/``, ``utils.py`` ``scoremap2bbox``):

1. Text rows: the image's class(es) and every background word, each as "a clean origami {}."
   (``cam_templates``, ``background_template``; CLIP-ES's VOC background list, minus words that
   name a class of the dataset, as CLIP-ES did for COCO). Image score = logit scale × cos(proj of
   the **mean of the patch tokens after** ``ln_post``, text); softmax over **the image's class
   plus the background words** only (``softmax_over: target``; the protocol scores the
   ground-truth class's map, so the class set is the ground truth).
2. Grad-CAM of the target's softmax score at the input norm (``ln_1`` output) of the last vision
   block: channel weights are the gradient's mean over the patch tokens, the map is
   ReLU(Σ_c weight_c · activation_c) on the patch grid, min-max scaled as pytorch-grad-cam does
   (``(cam − min) / (1e-7 + max)``, twice).
3. ``refine: true``: CLIP-ES's attention-affinity refinement. The head-averaged patch-to-patch
   attention of the last ``refine_blocks`` (8) blocks is averaged; column then row normalization,
   ``refine_iterations`` (3) times; symmetrized; **squared once** (``T @ T``); its columns outside
   the boxes of the scaled CAM at ``refine_threshold`` (0.4; ``scoremap2bbox``: the CAM quantized
   to 0–255, threshold ``int(0.4 · max)``, every contour's box, clipped to the second-last row and
   column as CLIP-ES clips them) are zeroed; refined = T @ cam.

CLIP-ES runs each image at its own size, each side rounded up to the patch size (PIL's bicubic
resize of the 8-bit image), with the position embedding interpolated bilinearly; here images come
at the protocol size (224 × 224) unless ``native_resolution: true`` (the harness then feeds each
image at its own size, one per batch). The rounding and interpolation are CLIP-ES's in both cases
(no-ops at 224 px, 16-px patches).

Class scores for Top-1/Top-5 are CLIP's zero-shot logits over the K class prompts (``templates``,
the class token's embedding), not part of CLIP-ES. Grad-CAM needs autograd at inference
(``capabilities.needs_grad_at_inference``); only the last block's input activation is a graph
leaf (every parameter is frozen, the blocks before run without a graph), so memory per batch
stays one block's worth, and nothing is left behind after ``predict`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from methods.clip_base import ClipBaseline
from wsolbench.blocks import synthclip
from wsolbench.blocks.clip_models import LoadedClip
from wsolbench.blocks.clip_text import class_prompts
from wsolbench.blocks.clip_vision import (
    attention_forward,
    block_forward,
    embed,
    pooled_embedding,
    rounded_size,
)
from wsolbench.data.synthetic import captions as synthetic_captions
from wsolbench.method import Prediction
from wsolbench.registry import register_method

# CLIP-ES's background words for PASCAL VOC (``clip_text.py`` ``BACKGROUND_CATEGORY``) and its
# prompt template for classes and background alike.
CLIPES_BACKGROUND_WORDS = (
    "ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water", "river", "sea",
    "railway", "railroad", "keyboard", "helmet", "cloud", "house", "mountain", "ocean", "road",
    "rock", "street", "valley", "bridge", "sign",
)  # fmt: skip
CLIPES_TEMPLATE = "a clean origami {}."

TARGETS = ("patch_mean", "class_token")
SOFTMAX_SETS = ("target", "predicted", "all")


@register_method("clip_gradcam")
class ClipGradCAM(ClipBaseline):
    """Grad-CAM of CLIP's softmax over class and background prompts (CLIP-ES), optionally refined.

    Args:
        num_classes, clip, templates, cache_text, classnames: see
            :class:`methods.clip_base.ClipBaseline` (``templates``: zero-shot classification).
        target: the image embedding scored — ``patch_mean`` (CLIP-ES: mean of the patch tokens
            after ``ln_post``, projected) or ``class_token`` (CLIP's own pooled embedding).
        softmax_over: the class rows in the softmax, next to the background rows — ``target``
            (CLIP-ES: the image's class), ``predicted`` (the ``predicted_k`` zero-shot top
            classes, and the target), or ``all`` (every class).
        predicted_k: how many predicted classes ``softmax_over: predicted`` takes.
        cam_templates: prompt templates of the class rows of the softmax.
        background_words: one softmax row per word; words equal to a class name are dropped.
        background_template: prompt of a background word, with ``{}``.
        refine: apply CLIP-ES's attention-affinity refinement.
        refine_blocks: how many last blocks' attention the affinity averages.
        refine_threshold: the scaled CAM level whose boxes mask the affinity.
        refine_iterations: column/row normalization rounds.
        native_resolution: ask the harness for each image at its own size (batch of one).
    """

    capabilities = replace(
        ClipBaseline.capabilities,
        needs_grad_at_inference=True,
        reference=(
            "CLIP-ES's Grad-CAM (Lin et al., CVPR 2023), checked against the formulas of its code "
            "(linyq2117/CLIP-ES) re-written independently; by default unrefined and at the "
            "protocol's image size: refine: true and native_resolution: true give CLIP-ES's "
            "refined CAM at each image's own size (its other departures: "
            "methods/clip_gradcam/README.md)"
        ),
    )
    config = replace(
        ClipBaseline.config,
        defaults={
            **ClipBaseline.config.defaults,
            "target": "patch_mean",
            "softmax_over": "target",
            "predicted_k": 1,
            "cam_templates": [CLIPES_TEMPLATE],
            "background_words": list(CLIPES_BACKGROUND_WORDS),
            "background_template": CLIPES_TEMPLATE,
            "refine": False,
            "refine_blocks": 8,
            "refine_threshold": 0.4,
            "refine_iterations": 3,
            "native_resolution": False,
        },
        presets={
            # synthetic: the base's (synthclip), with the class and background prompts in its
            # captions' words (CLIP-ES's origami template and VOC background words are words
            # it never saw)
            "synthetic": {
                **ClipBaseline.config.presets["synthetic"],
                "cam_templates": [synthclip.PROMPT_TEMPLATES[0]],
                "background_words": list(synthetic_captions.BACKGROUND_WORDS),
                "background_template": synthetic_captions.BACKGROUND_TEMPLATE,
            },
            "synthetic-histo": ClipBaseline.config.presets["synthetic-histo"],
        },
    )

    def __init__(
        self,
        num_classes: int,
        target: str,
        softmax_over: str,
        predicted_k: int,
        cam_templates: Sequence[str],
        background_words: Sequence[str],
        background_template: str,
        refine: bool,
        refine_blocks: int,
        refine_threshold: float,
        refine_iterations: int,
        native_resolution: bool,
        classnames: Sequence[str] | None = None,
        **kwargs,
    ):
        if target not in TARGETS:
            raise ValueError(f"clip_gradcam: target must be one of {TARGETS}, not {target!r}")
        if softmax_over not in SOFTMAX_SETS:
            raise ValueError(
                f"clip_gradcam: softmax_over must be one of {SOFTMAX_SETS}, not {softmax_over!r}"
            )
        if int(predicted_k) < 1:
            raise ValueError(f"clip_gradcam: predicted_k must be >= 1, not {predicted_k}")
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
        self.target = target
        self.softmax_over = softmax_over
        self.predicted_k = int(predicted_k)
        self.cam_templates = list(cam_templates)
        names = {str(n).strip().lower() for n in classnames or ()}
        self.background_words = [w for w in background_words or [] if w.lower() not in names]
        self.background_template = background_template
        self.refine = bool(refine)
        self.refine_blocks = int(refine_blocks)
        self.refine_threshold = float(refine_threshold)
        self.refine_iterations = int(refine_iterations)
        self.native_resolution = bool(native_resolution)
        super().__init__(num_classes, classnames=classnames, **kwargs)

    @property
    def native_input(self) -> bool:
        """Read by the evaluator: feed each image at its own size (one image per batch)."""
        return self.native_resolution

    def setup_text(self, loaded: LoadedClip) -> None:
        """The softmax's class rows ([K, d], ``cam_templates``) and background rows ([W, d]; [0, d]
        without background words)."""
        names = self.classnames
        self.register_buffer(
            "cam_text", self.encode_text(loaded, class_prompts(names, self.cam_templates))
        )
        if self.background_words:
            rows = [[self.background_template.format(word)] for word in self.background_words]
            background = self.encode_text(loaded, rows)
        else:
            background = self.class_text.new_zeros((0, self.class_text.shape[1]))
        self.register_buffer("background_text", background)

    def image_embedding(self, tokens: Tensor) -> Tensor:
        """The embedding the Grad-CAM target scores, from the last block's output [B, 1 + N, D]:
        [B, d]."""
        if self.target == "patch_mean":
            return self.visual.ln_post(tokens)[:, 1:].mean(dim=1) @ self.visual.proj
        return pooled_embedding(self.visual, tokens)

    def softmax_mask(self, labels: Tensor, class_logits: Tensor) -> Tensor:
        """[B, K + W] bool: the rows of each image's softmax (its class set and the background)."""
        batch, k = class_logits.shape
        mask = torch.zeros(batch, k + self.background_text.shape[0], dtype=torch.bool)
        mask = mask.to(labels.device)
        mask[:, k:] = True
        rows = torch.arange(batch, device=labels.device)
        if self.softmax_over == "all":
            mask[:, :k] = True
        elif self.softmax_over == "predicted":
            top = class_logits.topk(min(self.predicted_k, k), dim=1).indices
            mask[rows[:, None], top] = True
        mask[rows, labels] = True
        return mask

    def cam(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, tuple[int, int], list]:
        """Grad-CAM of the target classes' softmax scores, before refinement.

        Args:
            images: [B, 3, H, W] normalized with CLIP's mean and std.
            labels: [B] target classes.

        Returns:
            cam: [B, N] in [0, 1) on the flattened patch grid, scaled as CLIP-ES scales it.
            logits: [B, K] zero-shot class logits (detached).
            grid: (rows, cols).
            attentions: [B, 1 + N, 1 + N] head-averaged attention maps of the last
                ``refine_blocks`` blocks when refining, else empty.
        """
        wanted = self.refine_blocks if self.refine else 0
        with torch.no_grad():
            images = round_up_like_clip_es(images, self.visual, self.image_mean, self.image_std)
            x, grid = embed(self.visual, images, rounding="ceil", position_mode="bilinear")
            blocks = self.visual.transformer.resblocks
            first_kept = len(blocks) - wanted  # the last block is among the ``wanted``
            attentions = []
            for index, block in enumerate(blocks[:-1]):
                x, attention = block_forward(block, x, need_attention=index >= first_kept)
                if attention is not None:
                    attentions.append(attention)
        last = blocks[-1]
        # also under a caller's no_grad (Grad-CAM needs autograd), and in float32 under a caller's
        # autocast: a float16 gradient of a softmax score underflows
        autocast_off = torch.autocast(device_type=x.device.type, enabled=False)
        with torch.enable_grad(), autocast_off:
            x = x.float()
            activation = last.ln_1(x).detach().requires_grad_(True)
            out, attention = attention_forward(last, activation, need_attention=self.refine)
            h = x + last.ls_1(out)
            h = h + last.ls_2(last.mlp(last.ln_2(h)))
            class_logits = self.class_logits(pooled_embedding(self.visual, h)).detach()
            image = F.normalize(self.image_embedding(h).float(), dim=-1)
            texts = torch.cat([self.cam_text, self.background_text])
            logits = self.logit_scale * image @ texts.T  # [B, K + W]
            mask = self.softmax_mask(labels, class_logits)
            scores = logits.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            target = scores[torch.arange(images.shape[0], device=scores.device), labels]
            (gradient,) = torch.autograd.grad(target.sum(), activation)
        tokens = activation.detach()[:, 1:].float()  # [B, N, D]
        weights = gradient[:, 1:].float().mean(dim=1, keepdim=True)  # [B, 1, D]
        cam = scale_like_grad_cam(scale_like_grad_cam(F.relu((weights * tokens).sum(dim=-1))))
        if attention is not None:
            attentions.append(attention.detach())
        return cam, class_logits, grid, attentions

    def refine_cam(self, cam: Tensor, attentions: list[Tensor], grid: tuple[int, int]) -> Tensor:
        """CLIP-ES's attention-affinity refinement (see the module docstring).

        Args:
            cam: [B, N] scaled CAM in [0, 1).
            attentions: list of [B, 1 + N, 1 + N], the last ``refine_blocks`` blocks' (or all).

        Returns:
            [B, N] ≥ 0.
        """
        affinity = torch.stack(attentions[-self.refine_blocks :]).mean(dim=0)[:, 1:, 1:].float()
        tiny = torch.finfo(affinity.dtype).tiny
        for _ in range(self.refine_iterations):
            affinity = affinity / affinity.sum(dim=-2, keepdim=True).clamp_min(tiny)  # columns
            affinity = affinity / affinity.sum(dim=-1, keepdim=True).clamp_min(tiny)  # rows
        affinity = (affinity + affinity.transpose(-1, -2)) / 2
        affinity = affinity @ affinity
        mask = box_mask(cam, grid, self.refine_threshold)  # [B, N]: columns kept
        return torch.einsum("bij,bj->bi", affinity * mask[:, None, :], cam)

    def predict(self, images: Tensor, labels: Tensor) -> Prediction:
        """Zero-shot logits [B, K] and the target class's (refined) Grad-CAM [B, rows, cols] ≥ 0."""
        cam, logits, grid, attentions = self.cam(images, labels)
        if self.refine:
            cam = self.refine_cam(cam, attentions, grid)
        return Prediction(logits=logits, maps=cam.reshape(images.shape[0], *grid))


def scale_like_grad_cam(cam: Tensor) -> Tensor:
    """pytorch-grad-cam's ``scale_cam_image`` per map: ``(c − min) / (1e-7 + max(c − min))``.

    Args:
        cam: [B, N] ≥ 0.

    Returns:
        [B, N] in [0, 1).
    """
    shifted = cam - cam.amin(dim=1, keepdim=True)
    return shifted / (1e-7 + shifted.amax(dim=1, keepdim=True))


def box_mask(cam: Tensor, grid: tuple[int, int], threshold: float) -> Tensor:
    """CLIP-ES's box mask (``scoremap2bbox`` with every contour): 1 inside each box.

    The map is quantized as ``uint8(cam · 255)``; cells above ``int(threshold · max)`` form the
    foreground; every contour's bounding box (x, y, x + w, y + h) has its far corner clipped to
    (cols − 1, rows − 1) and covers ``[y0, y1) × [x0, x1)``: as in CLIP-ES, a box that reaches
    the last row or column does not cover it.

    Args:
        cam: [B, rows·cols] in [0, 1] (CLIP-ES's scaled CAM).
        threshold: the fraction of the quantized maximum.

    Returns:
        [B, rows·cols] float 0/1 on ``cam``'s device; all zeros where no cell passes.
    """
    rows, cols = grid
    maps = cam.detach().float().reshape(-1, rows, cols).cpu().numpy()
    masks = np.zeros_like(maps, dtype=np.float32)
    for index, scoremap in enumerate(maps):
        quantized = (scoremap * 255).astype(np.uint8)
        binary = (quantized > int(threshold * quantized.max())).astype(np.uint8)
        contours, _ = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            masks[index, y : min(y + h, rows - 1), x : min(x + w, cols - 1)] = 1.0
    return torch.from_numpy(masks.reshape(maps.shape[0], -1)).to(cam.device)


def round_up_like_clip_es(
    images: Tensor, visual, mean: Sequence[float], std: Sequence[float]
) -> Tensor:
    """``images`` [B, 3, H, W] (8-bit pixels normalized with ``mean`` / ``std``, as the harness
    feeds them) with each side rounded up to the patch size as CLIP-ES does it: PIL's bicubic
    resize of the 8-bit image (its torchvision ``Resize``), then normalized again. Returned as
    given when both sides are multiples already (the protocols' sizes): [B, 3, H', W']."""
    target = rounded_size(visual, images.shape[-2], images.shape[-1], "ceil")
    if tuple(images.shape[-2:]) == target:
        return images
    mean_ = images.new_tensor(mean)[:, None, None]
    std_ = images.new_tensor(std)[:, None, None]
    # exact: the harness made these floats from 8-bit pixels, so rounding gives those pixels back
    pixels = ((images * std_ + mean_) * 255).round().clamp(0, 255).to(torch.uint8)
    resized = [
        np.asarray(Image.fromarray(image).resize(target[::-1], Image.BICUBIC))
        for image in pixels.permute(0, 2, 3, 1).cpu().numpy()
    ]
    out = torch.from_numpy(np.stack(resized)).to(images.device).permute(0, 3, 1, 2)
    return ((out.float() / 255 - mean_) / std_).to(images.dtype)
