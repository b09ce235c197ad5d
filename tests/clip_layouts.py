"""CLIP weight files fabricated in the on-disk layouts users have, with random values (test helper).

- :func:`write_openai_archive`: a TorchScript archive like OpenAI's released ``ViT-B-16.pt``: the
  module tree of OpenAI's ``clip/model.py`` (``visual.conv1`` without bias, ``class_embedding``,
  ``transformer.resblocks.N.{attn, ln_1, mlp.c_fc, mlp.gelu (QuickGELU), mlp.c_proj, ln_2}``,
  ``ln_post``, ``proj``; the text tower at the root; ``input_resolution``, ``context_length``
  and ``vocab_size`` as tensors), half precision, traced and saved with ``torch.jit.save``.
- :func:`write_hf_cache`: the Hugging Face hub cache layout of an open_clip tag
  (``models--<org>--<repo>/snapshots/<commit>/open_clip_model.safetensors``, ``refs/main``).

The module tree is written here from the published architecture, independently of open_clip.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width: int, heads: int, causal: int = 0):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(width, 4 * width),
                gelu=QuickGELU(),
                c_proj=nn.Linear(4 * width, width),
            )
        )
        self.ln_2 = nn.LayerNorm(width)
        # a plain attribute, not a buffer: not part of the state dict
        self.attn_mask = torch.full((causal, causal), float("-inf")).triu(1) if causal else None

    def forward(self, x: Tensor) -> Tensor:  # [L, N, D], sequence first
        y = self.ln_1(x)
        mask = None if self.attn_mask is None else self.attn_mask.to(x.dtype)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal: int = 0):
        super().__init__()
        self.resblocks = nn.Sequential(*[Block(width, heads, causal) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        return self.resblocks(x)


class Visual(nn.Module):
    def __init__(self, size: int, patch: int, width: int, layers: int, heads: int, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width))
        self.positional_embedding = nn.Parameter(torch.randn((size // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, dim))

    def forward(self, image: Tensor) -> Tensor:
        x = self.conv1(image).flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1) + self.positional_embedding)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class OpenAIClip(nn.Module):
    """OpenAI's CLIP module tree (ViT image tower), sized by the arguments."""

    def __init__(
        self,
        *,
        image_size: int,
        patch: int,
        width: int,
        layers: int,
        heads: int,
        dim: int,
        text_width: int,
        text_layers: int,
        text_heads: int,
        context: int = 77,
        vocab: int = 49408,
    ):
        super().__init__()
        self.visual = Visual(image_size, patch, width, layers, heads, dim)
        self.transformer = Transformer(text_width, text_layers, text_heads, causal=context)
        self.token_embedding = nn.Embedding(vocab, text_width)
        self.positional_embedding = nn.Parameter(torch.randn(context, text_width))
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.randn(text_width, dim))
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))
        self.register_buffer("input_resolution", torch.tensor(image_size))
        self.register_buffer("context_length", torch.tensor(context))
        self.register_buffer("vocab_size", torch.tensor(vocab))

    def forward(self, image: Tensor, text: Tensor) -> Tensor:
        image_features = self.visual(image)
        x = self.token_embedding(text) + self.positional_embedding
        x = self.ln_final(self.transformer(x.transpose(0, 1)).transpose(0, 1))
        text_features = x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection
        return self.logit_scale.exp() * image_features @ text_features.T


# TINY_CLIP's shapes (wsolbench/blocks/clip_configs/wsolbench-tiny-clip.json)
TINY = {
    "image_size": 96,
    "patch": 8,
    "width": 64,
    "layers": 2,
    "heads": 2,
    "dim": 64,
    "text_width": 64,
    "text_layers": 2,
    "text_heads": 2,
}


def random_openai_clip(seed: int = 0, dtype=torch.float16, **shape) -> OpenAIClip:
    """An :class:`OpenAIClip` of ``shape`` (default :data:`TINY`) with every tensor random."""
    torch.manual_seed(seed)
    model = OpenAIClip(**{**TINY, **shape}).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor) * 0.05 + (1.0 if "ln" in name else 0.0))
    return model.to(dtype) if dtype != torch.float32 else model


def write_openai_archive(model: OpenAIClip, path: Path) -> dict[str, Tensor]:
    """Trace ``model`` and save it as a TorchScript archive; returns its state dict (what was
    written, ``input_resolution``, ``context_length``, ``vocab_size`` included)."""
    size = int(model.input_resolution)
    dtype = model.visual.conv1.weight.dtype
    image = torch.zeros(1, 3, size, size, dtype=dtype)
    text = torch.zeros(1, int(model.context_length), dtype=torch.long)
    text[0, :3] = torch.tensor([49406, 320, 49407])
    with torch.no_grad():
        # half-precision ops are traced, not run (the CPU lacks some half kernels)
        traced = torch.jit.trace(model.float(), (image.float(), text), check_trace=False)
        traced = traced.to(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(path))
    model.to(dtype)
    return {k: v.clone() for k, v in traced.state_dict().items()}


def write_hf_cache(root: Path, repo: str, state: dict[str, Tensor]) -> Path:
    """``state`` as ``open_clip_model.safetensors`` of ``repo`` in a Hugging Face hub cache."""
    from safetensors.torch import save_file

    org, name = repo.split("/")
    folder = root / f"models--{org}--{name}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    path = snapshot / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def register_tiny_config(name: str, folder: Path, **vision) -> str:
    """Register an open_clip model config ``name``: TINY_CLIP's with ``vision`` overrides."""
    import json

    from wsolbench.blocks.open_clip_configs import CONFIG_DIR, TINY_CLIP, import_open_clip

    open_clip = import_open_clip()
    if name not in open_clip.list_models():
        config = json.loads((CONFIG_DIR / f"{TINY_CLIP}.json").read_text())
        config["vision_cfg"].update(vision)
        path = Path(folder) / f"{name}.json"
        path.write_text(json.dumps(config))
        open_clip.add_model_config(path)
    return name
