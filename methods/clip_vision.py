"""Inside an open_clip ViT image tower: what ``clip_patch`` and ``clip_gradcam`` need beyond
``encode_image`` — patch tokens at any input size, one block at a time, the last block's value
path, and head-averaged attention maps.

Written against open_clip 3.3's ``VisionTransformer`` (``conv1`` patch embedding, class token,
learnable position embedding, ``ln_pre``, ``transformer.resblocks`` of ``ResidualAttentionBlock``
whose attention is an ``nn.MultiheadAttention``, ``ln_post``, ``proj``). :func:`vit_tower` refuses
anything else (timm towers, ModifiedResNet, custom or attention-pooled blocks) with a message that
names a supported model, instead of failing deep inside a forward.

Input size: images arrive at the protocol size (224 for CUB, 96 for synthetic), which need not be
the tower's native size. The native patch size is kept and the position embedding is interpolated
(bicubic) to the input's patch grid, so every pixel is seen at the tower's native scale and the map
has one cell per patch; a side that is not a multiple of the patch size is first resized to the
nearest multiple. At the native size nothing is interpolated and the forward equals open_clip's.

This is a plain module in ``methods/`` (not a plugin folder): it registers no method.
"""

from __future__ import annotations

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


def grid_size(visual: nn.Module, height: int, width: int) -> tuple[int, int]:
    """Patch grid (rows, columns) for an input of ``height`` × ``width`` pixels (≥ 1 each)."""
    ph, pw = _pair(visual.patch_size)
    return max(1, round(height / ph)), max(1, round(width / pw))


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (value, value)


def position_embedding(visual: nn.Module, grid: tuple[int, int]) -> Tensor:
    """[1 + rows·cols, D]: the class token's position embedding, then the patch grid's,
    bicubically interpolated from the native grid when ``grid`` differs from it."""
    table = visual.positional_embedding
    native = tuple(int(s) for s in visual.grid_size)
    if tuple(grid) == native:
        return table
    patches = table[1:].reshape(1, native[0], native[1], -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches.float(), size=grid, mode="bicubic", align_corners=False)
    patches = patches.to(table.dtype).permute(0, 2, 3, 1).reshape(grid[0] * grid[1], -1)
    return torch.cat([table[:1], patches])


def embed(visual: nn.Module, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """Tokens entering the first block, and the patch grid.

    Args:
        images: [B, 3, H, W], normalized with CLIP's mean and std, any H, W.

    Returns:
        tokens: [B, 1 + rows·cols, D] (class token first), after ``ln_pre``.
        grid: (rows, cols).
    """
    grid = grid_size(visual, images.shape[-2], images.shape[-1])
    ph, pw = _pair(visual.patch_size)
    target = (grid[0] * ph, grid[1] * pw)
    if tuple(images.shape[-2:]) != target:
        images = F.interpolate(images, size=target, mode="bilinear", align_corners=False)
    dtype = visual.conv1.weight.dtype
    x = visual.conv1(images.to(dtype)).flatten(2).transpose(1, 2)  # [B, N, D]
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + position_embedding(visual, grid).to(x.dtype)
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


def value_path(block: nn.Module, x: Tensor) -> Tensor:
    """The last block's value path: every token's value projection through the output projection,
    as if each token attended only to itself (MaskCLIP). The residual and the MLP are dropped: what
    is left is a per-token linear map of ``ln_1(x)`` into the residual stream.

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
