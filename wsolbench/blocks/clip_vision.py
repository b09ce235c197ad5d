"""Inside an open_clip ViT image tower: what ``clip_patch`` and ``clip_gradcam`` need beyond
``encode_image`` — patch tokens at any input size, one block at a time, the last block's value
path, and head-averaged attention maps.

Written against open_clip 3.3's ``VisionTransformer`` (``conv1`` patch embedding, class token,
learnable position embedding, ``ln_pre``, ``transformer.resblocks`` of ``ResidualAttentionBlock``
whose attention is an ``nn.MultiheadAttention``, ``ln_post``, ``proj``). :func:`vit_tower` refuses
anything else (timm towers, ModifiedResNet, custom or attention-pooled blocks) with a message that
names a supported model, instead of failing deep inside a forward.

Input size: images arrive at the protocol size (224 for CUB, 96 for synthetic) or, for a method
that asks for it, at their own size; neither need be the tower's native size. The native patch
size is kept and the position embedding is interpolated to the input's patch grid, so every pixel
is seen at the tower's native scale and the map has one cell per patch; a side that is not a
multiple of the patch size is first resized to a multiple. How is the namesake's choice:
MaskCLIP interpolates position embeddings bicubically (``mmseg`` ``resize_pos_embed``); CLIP-ES
rounds each side *up* to the patch size (bicubic image resize) and interpolates positions
bilinearly (``upsample_pos_emb``). At the native size nothing is interpolated and the forward
equals open_clip's.

This is a plain module of ``wsolbench.blocks`` (not a plugin folder): it registers no method.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UnsupportedTowerError(ValueError):
    """The open_clip model's image tower is not a ViT this module can open up."""


def vit_tower(model: nn.Module, model_name: str, method: str) -> nn.Module:
    """The model's image tower, checked to be an open_clip ViT with standard blocks.

    Raises:
        UnsupportedTowerError: a timm or ResNet tower, attentional pooling, custom blocks; the
            message names the problem and models that work (``ViT-B-16``, ``ViT-L-14``, ...).
    """
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    visual = getattr(model, "visual", None)
    fix = (
        f"; {method} needs an open_clip ViT image tower with standard blocks, e.g. ViT-B-16, "
        "ViT-B-32, ViT-L-14 (-o clip.model=NAME)"
    )
    if not isinstance(visual, VisionTransformer):
        kind = type(visual).__name__
        raise UnsupportedTowerError(f"open_clip model {model_name!r} has a {kind} image tower{fix}")
    problems = []
    if getattr(visual, "attn_pool", None) is not None:
        problems.append("attentional pooling")
    if getattr(visual, "pool_type", "tok") not in ("tok", "avg"):
        problems.append(f"pool type {visual.pool_type!r}")
    if getattr(visual, "proj", None) is None:
        problems.append("no output projection")
    for index, block in enumerate(visual.transformer.resblocks):
        attention = getattr(block, "attn", None)
        if (
            not isinstance(block, ResidualAttentionBlock)
            or not isinstance(attention, nn.MultiheadAttention)
            or not attention._qkv_same_embed_dim
            or hasattr(block, "ln_1_kv")
        ):
            problems.append(f"block {index} is a {type(block).__name__}")
            break
    if problems:
        raise UnsupportedTowerError(
            f"open_clip model {model_name!r}: {', '.join(problems)} is not supported{fix}"
        )
    return visual


ROUNDINGS = ("nearest", "ceil")


def grid_size(
    visual: nn.Module, height: int, width: int, rounding: str = "nearest"
) -> tuple[int, int]:
    """Patch grid (rows, columns) for an input of ``height`` × ``width`` pixels (≥ 1 each):
    each side over the patch size, rounded to the nearest integer or (``ceil``) up."""
    ph, pw = _pair(visual.patch_size)
    if rounding == "ceil":
        return max(1, math.ceil(height / ph)), max(1, math.ceil(width / pw))
    return max(1, round(height / ph)), max(1, round(width / pw))


def rounded_size(
    visual: nn.Module, height: int, width: int, rounding: str = "nearest"
) -> tuple[int, int]:
    """The input size (H', W') in pixels of the patch grid :func:`grid_size` gives."""
    grid = grid_size(visual, height, width, rounding)
    ph, pw = _pair(visual.patch_size)
    return grid[0] * ph, grid[1] * pw


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (value, value)


def position_embedding(visual: nn.Module, grid: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """[1 + rows·cols, D]: the class token's position embedding, then the patch grid's,
    interpolated (``mode``: ``bicubic`` or ``bilinear``, corners not aligned) from the native
    grid when ``grid`` differs from it."""
    table = visual.positional_embedding
    native = tuple(int(s) for s in visual.grid_size)
    if tuple(grid) == native:
        return table
    patches = table[1:].reshape(1, native[0], native[1], -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=grid, mode=mode, align_corners=False)
    patches = patches.to(table.dtype).permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
    return torch.cat([table[:1], patches])


def embed(
    visual: nn.Module,
    images: Tensor,
    *,
    rounding: str = "nearest",
    position_mode: str = "bicubic",
) -> tuple[Tensor, tuple[int, int]]:
    """Tokens entering the first block, and the patch grid.

    Args:
        images: [B, 3, H, W], normalized with CLIP's mean and std, any H, W.
        rounding: how a side that is not a multiple of the patch size is rounded
            (:func:`grid_size`); the image is resized bilinearly to the rounded size (a caller
            that resizes otherwise, as CLIP-ES, passes the rounded size already).
        position_mode: interpolation of the position embedding to another grid.

    Returns:
        tokens: [B, 1 + rows·cols, D] (class token first), after ``ln_pre``.
        grid: (rows, cols).
    """
    target = rounded_size(visual, images.shape[-2], images.shape[-1], rounding)
    grid = grid_size(visual, *target)
    if tuple(images.shape[-2:]) != target:
        images = F.interpolate(images, size=target, mode="bilinear", align_corners=False)
    dtype = visual.conv1.weight.dtype
    x = visual.conv1(images.to(dtype)).flatten(2).transpose(1, 2)  # [B, N, D]
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + position_embedding(visual, grid, position_mode).to(x.dtype)
    return visual.ln_pre(x), grid


def _seq_first(block: nn.Module) -> bool:
    return not block.attn.batch_first


def block_forward(
    block: nn.Module, x: Tensor, *, need_attention: bool = False
) -> tuple[Tensor, Tensor | None]:
    """One ``ResidualAttentionBlock`` on batch-first tokens, optionally with its attention map.

    Returns:
        x: [B, L, D] the block's output.
        attention: [B, L, L] softmax attention averaged over heads (rows: queries), or None.
    """
    if not need_attention:
        if _seq_first(block):
            return block(x.transpose(0, 1)).transpose(0, 1), None
        return block(x), None
    y = block.ln_1(x)
    out, attention = attention_forward(block, y, need_attention=True)
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x))), attention


def attention_forward(
    block: nn.Module, y: Tensor, *, need_attention: bool = False
) -> tuple[Tensor, Tensor | None]:
    """The block's self-attention on its normalized input ``y`` [B, L, D] (batch first).

    Returns:
        out: [B, L, D] the attention output (before the residual and layer scale).
        attention: [B, L, L] head-averaged softmax attention, or None.
    """
    attn = block.attn
    z = y.transpose(0, 1) if _seq_first(block) else y
    out, weights = attn(z, z, z, need_weights=need_attention, average_attn_weights=True)
    if _seq_first(block):
        out = out.transpose(0, 1)
    return out, weights


def value_projection(block: nn.Module, x: Tensor) -> Tensor:
    """Every token's value projection through the attention's output projection: the attention
    output as if each token attended only to itself. A per-token linear map of ``ln_1(x)``.

    Args:
        x: [B, L, D] tokens entering the block.

    Returns:
        [B, L, D] ``ls_1(out_proj(W_v · ln_1(x) + b_v))``.
    """
    attn = block.attn
    width = attn.embed_dim
    weight = attn.in_proj_weight[2 * width :]
    bias = attn.in_proj_bias[2 * width :] if attn.in_proj_bias is not None else None
    values = F.linear(block.ln_1(x), weight, bias)
    return block.ls_1(attn.out_proj(values))


# How the last block makes the dense (per-patch) tokens; see :func:`last_block_tokens`.
PATCH_PATHS = ("maskclip", "value_only", "full")


def last_block_tokens(block: nn.Module, x: Tensor, path: str = "maskclip") -> Tensor:
    """The last block's output tokens along one of :data:`PATCH_PATHS`.

    - ``maskclip`` (MaskCLIP, ``mmseg/models/backbones/vit.py``, ``return_qkv`` path): the value
      projection replaces the attention output, and the block is otherwise unchanged —
      ``v = x + value_projection(x)``, then ``v + mlp(ln_2(v))`` (the residual and the MLP with
      its residual kept);
    - ``value_only``: ``value_projection(x)`` alone, no residual and no MLP (the residual-free,
      MLP-free path, close to ClearCLIP's, which however keeps query–query attention);
    - ``full``: the ordinary block output (query–key attention), the naive dense baseline.

    Args:
        x: [B, L, D] tokens entering the block.

    Returns:
        [B, L, D], to go through ``ln_post`` and ``proj``.
    """
    if path == "full":
        return block_forward(block, x)[0]
    values = value_projection(block, x)
    if path == "value_only":
        return values
    if path != "maskclip":
        raise ValueError(f"patch path must be one of {PATCH_PATHS}, not {path!r}")
    v = x + values
    return v + block.ls_2(block.mlp(block.ln_2(v)))


@torch.no_grad()
def dense_embeddings(
    visual: nn.Module, images: Tensor, path: str = "maskclip"
) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Image and per-patch embeddings in the joint space (what ``clip_patch`` and TeD-Loc's
    ``clip`` teacher score against text), one forward pass without gradients.

    Args:
        images: [B, 3, H, W] normalized with CLIP's mean and std (any size: see the module
            docstring; rounding to the nearest patch multiple, bicubic position embedding).
        path: one of :data:`PATCH_PATHS` for the patch tokens.

    Returns:
        image: [B, d] the pooled embedding of the ordinary forward (as ``encode_image``).
        patches: [B, rows·cols, d] ``proj(ln_post(tokens))`` of the patch tokens along ``path``.
        grid: (rows, cols).
    """
    x, grid = embed(visual, images)
    blocks = visual.transformer.resblocks
    for block in blocks[:-1]:
        x, _ = block_forward(block, x)
    last = blocks[-1]
    out, _ = block_forward(last, x)
    tokens = out if path == "full" else last_block_tokens(last, x, path)
    return pooled_embedding(visual, out), project_tokens(visual, tokens[:, 1:]), grid


def pooled_embedding(visual: nn.Module, x: Tensor) -> Tensor:
    """The image embedding from the last block's output, pooled as the tower pools.

    Args:
        x: [B, 1 + N, D] the last block's output.

    Returns:
        [B, d] ``proj`` of the pooled, ``ln_post``-normalized token(s): what ``encode_image``
        returns at the native size.
    """
    pooled = x[:, 0] if visual.pool_type == "tok" else x[:, 1:].mean(dim=1)
    if getattr(visual, "final_ln_after_pool", False):
        return visual.ln_post(pooled) @ visual.proj
    # LayerNorm acts per token, so normalizing the pooled token equals pooling normalized ones
    # only for "tok"; "avg" pools the normalized tokens, as open_clip does.
    if visual.pool_type == "tok":
        return visual.ln_post(pooled) @ visual.proj
    return visual.ln_post(x[:, 1:]).mean(dim=1) @ visual.proj


def project_tokens(visual: nn.Module, tokens: Tensor) -> Tensor:
    """``ln_post`` then ``proj`` of [B, N, D] tokens → [B, N, d] joint-space embeddings."""
    return visual.ln_post(tokens) @ visual.proj
