"""What the training-free CLIP baselines (``clip_patch``, ``clip_gradcam``) share: the ``clip``
config section, loading the model without a download, the class-prompt text embeddings (cached on
disk), CLIP's image normalization and zero-shot classification.

The base class registers no method (only its subclasses do). An instance keeps the image tower, the
logit scale and the text embeddings it needs as buffers; the text tower is dropped once the
embeddings are computed (inference never runs it), so ``weights.pt`` and the parameter count hold
only what inference uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench.blocks import synthclip
from wsolbench.blocks.clip_models import LoadedClip, load_clip
from wsolbench.blocks.clip_text import DEFAULT_TEMPLATES, class_prompts, text_embeddings
from wsolbench.blocks.clip_vision import block_forward, embed, vit_tower
from wsolbench.method import Capabilities, MethodConfig, WSOLMethod

logger = logging.getLogger(__name__)

CLIP_KEYS = ("model", "pretrained", "checkpoint", "activation")


class ClipBaseline(WSOLMethod):
    """Base of the CLIP baselines: a CLIP ViT image tower and the class prompts' text embeddings.

    Args:
        num_classes: K.
        clip: ``{"model": open_clip name, "pretrained": a cached open_clip tag, true (use the
            checkpoint) or false (random towers, what ``--no-pretrained`` sets), "checkpoint": a
            local weights file (OpenAI's TorchScript archive, an OpenAI or open_clip state dict,
            safetensors) or null, "activation": auto | quickgelu | gelu}``; a checkpoint wins
            over a tag, and is ignored when ``pretrained`` is false; ``auto`` builds QuickGELU
            for OpenAI's weights (:func:`wsolbench.blocks.clip_models.load_clip` loads).
        templates: prompt templates with ``{}`` for the class name; a class's text embedding is
            the normalized mean over its templates.
        cache_text: keep text embeddings on disk (``$WSOLBENCH_CACHE/text``), keyed by encoder,
            weights and prompts.
        classnames: the protocol's class names in class order (the harness passes them:
            ``capabilities.needs_classnames``); ``class 0``, ``class 1``, ... when none are given.

    Without weights (``clip.pretrained: false``, what ``--no-pretrained`` sets) the towers are
    initialised from a seed drawn from torch's generator, which the harness seeds with the run's
    seed: reproducible, and meaningless as a baseline (the result says ``pretrained: none``).
    """

    capabilities = Capabilities(
        trainable=False,
        needs_classnames=True,
        pretrained_options=("clip.pretrained",),
        seed_independent=True,  # with weights loaded: a fixed encoder, no randomness
    )
    config = MethodConfig(
        defaults={
            "clip": {
                "model": "ViT-B-16",
                "pretrained": "openai",
                "checkpoint": None,
                "activation": "auto",
            },
            "templates": list(DEFAULT_TEMPLATES),
            "cache_text": True,
        },
        presets={
            # synthetic: wsolbench's own CLIP of the synthetic world (wsolbench/blocks/synthclip.py;
            # built on first use, then loaded as a user's checkpoint file is; the default template
            # is one of its captions' wordings); --no-pretrained gives seeded random towers of it
            "synthetic": {
                "clip": {
                    "model": synthclip.MODEL,
                    "pretrained": True,
                    "checkpoint": synthclip.SYNTHCLIP,
                },
            },
            # synthetic-histo: no CLIP has seen that world; seeded random towers of synthclip's
            # architecture, recorded (and marked in every table) as running without weights
            "synthetic-histo": {
                "clip": {"model": synthclip.MODEL, "pretrained": False, "checkpoint": None},
            },
        },
    )

    def __init__(
        self,
        num_classes: int,
        clip: dict,
        templates: Sequence[str],
        cache_text: bool,
        classnames: Sequence[str] | None = None,
    ):
        super().__init__(num_classes)
        options = dict(clip)
        unknown = set(options) - set(CLIP_KEYS)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown clip option(s) {sorted(unknown)}; the clip section takes "
                f"{', '.join(CLIP_KEYS)}"
            )
        names = list(classnames) if classnames else [f"class {i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{self.name}: {len(names)} class names for {num_classes} classes")
        self.classnames = names
        pretrained, checkpoint = _weights_options(self.name, options)
        # The harness seeded torch with the run's seed: a random tower follows the run's seed.
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
        loaded = load_clip(
            options.get("model", "ViT-B-16"),
            pretrained,
            checkpoint,
            seed=seed,
            activation=options.get("activation") or "auto",
        )
        self.visual = vit_tower(loaded.model, loaded.name, self.name or type(self).__name__)
        self.cache_text = bool(cache_text)
        self.register_buffer(
            "class_text", self.encode_text(loaded, class_prompts(names, list(templates)))
        )
        self.register_buffer("logit_scale", loaded.model.logit_scale.detach().exp().reshape(()))
        self.setup_text(loaded)
        self.provenance["clip"] = loaded.source
        self.image_mean, self.image_std = loaded.mean, loaded.std
        self.requires_grad_(False)  # training-free: no parameter ever needs a gradient

    def encode_text(self, loaded: LoadedClip, rows: list[list[str]]) -> Tensor:
        """[R, d] unit-norm embeddings of prompt rows, through the disk cache when enabled."""
        return text_embeddings(loaded, rows, use_cache=self.cache_text).float()

    def setup_text(self, loaded: LoadedClip) -> None:
        """Hook for more text embeddings (background words); the text tower is gone after it."""

    def trunk(self, images: Tensor, attention_blocks: int = 0) -> tuple[Tensor, tuple, list]:
        """Every block but the last, without gradients.

        Args:
            images: [B, 3, H, W] normalized with CLIP's mean and std.
            attention_blocks: collect the head-averaged attention of the last this-many blocks
                among those run here.

        Returns:
            tokens [B, 1 + N, D] entering the last block, the patch grid (rows, cols), and a list
            of [B, 1 + N, 1 + N] attention maps (possibly empty).
        """
        with torch.no_grad():
            x, grid = embed(self.visual, images)
            blocks = self.visual.transformer.resblocks[:-1]
            first_kept = len(blocks) - attention_blocks
            attentions = []
            for index, block in enumerate(blocks):
                x, attention = block_forward(block, x, need_attention=index >= first_kept)
                if attention is not None:
                    attentions.append(attention)
        return x, grid, attentions

    def class_logits(self, image_embedding: Tensor) -> Tensor:
        """Zero-shot class scores [B, K] = logit scale × cos(image, class prompt)."""
        return self.logit_scale * F.normalize(image_embedding.float(), dim=-1) @ self.class_text.T


def _weights_options(method: str, options: dict) -> tuple[str | None, str | None]:
    """(tag, checkpoint) for :func:`load_clip` from the ``clip`` section.

    ``pretrained: false`` (what ``--no-pretrained`` sets) means random towers, whatever else is
    set: a run without weights must not load any. ``pretrained: true`` means "the checkpoint file".
    Otherwise ``pretrained`` is a tag, and a checkpoint file, when given, wins over it.
    """
    pretrained, checkpoint = options.get("pretrained"), options.get("checkpoint") or None
    if pretrained is None or str(pretrained).strip().lower() in ("", "none", "false"):
        if checkpoint:
            logger.warning(
                "%s: clip.checkpoint %s ignored because clip.pretrained is false (--no-pretrained)",
                method,
                checkpoint,
            )
        return None, None
    if pretrained is True:
        if not checkpoint:
            raise ValueError(
                f"{method}: clip.pretrained is true but clip.checkpoint is empty; pass "
                "-o clip.checkpoint=PATH, or a cached open_clip tag with -o clip.pretrained=TAG "
                "(e.g. openai)"
            )
        return None, str(checkpoint)
    return str(pretrained), checkpoint and str(checkpoint)
