"""CLIP text embeddings of class names and background words, cached on disk.

One embedding per row of prompts: ``normalize(mean_p normalize(encode_text(p)))`` over the row's
prompts (CLIP's prompt ensembling). Rows are usually one class each (its name in every template) or
the background (every background word in the background template).

Encoding a few hundred prompts with a ViT-B text tower takes seconds on a CPU, and a row's
embedding depends only on (encoder, weights, the row's prompts), so each row is computed once and
cached: one file per encoder, ``$WSOLBENCH_CACHE/text/<encoder key>.pt``, mapping a hash of each
row's prompts to its embedding. Changing the model or its weights file gives another file; changing
a class name, a template or a background word gives another row key. Because rows are cached one
by one, callers that ask for different row lists share the rows they have in common: TeD-Loc's
text targets (background + classes) and the CLIP baselines (classes, background words one by one)
reuse each other's class rows when encoder and templates match.

This is a plain module of ``wsolbench.blocks`` (not a plugin folder): it registers no method.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench.blocks.clip_models import LoadedClip, weights_key
from wsolbench.util.atomic import write_bytes_atomic
from wsolbench.util.cache import default_cache_dir

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("a photo of a {}.",)
BACKGROUND_TEMPLATE = "a photo of {}."
BACKGROUND_WORDS = (
    "ground", "grass", "tree", "sky", "water", "wall", "road", "rock", "building", "cloud",
    "floor", "sand", "leaves", "snow", "field",
)  # fmt: skip

# Bumped when the way embeddings are computed changes, so older cache files are not reused.
_CACHE_VERSION = 2


def class_prompts(classnames: Sequence[str], templates: Sequence[str]) -> list[list[str]]:
    """One row of prompts per class: every template filled with the class name.

    Raises:
        ValueError: a template without ``{}`` (it would ignore the class name).
    """
    bad = [t for t in templates if "{}" not in t]
    if bad or not templates:
        raise ValueError(
            f"prompt templates must each contain '{{}}' for the class name (got {list(templates)})"
        )
    return [[t.format(name) for t in templates] for name in classnames]


def background_prompts(
    words: Sequence[str], template: str = BACKGROUND_TEMPLATE
) -> list[list[str]]:
    """One row holding every background word in ``template`` (one ensembled embedding)."""
    if not words:
        raise ValueError("background words must not be empty")
    return [[template.format(w) for w in words]]


def _encoder_key(loaded: LoadedClip) -> str:
    return hashlib.sha256(f"{_CACHE_VERSION}|{weights_key(loaded)}".encode()).hexdigest()[:32]


def _row_key(row: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(row)).encode()).hexdigest()[:32]


def _encode_trimmed(model, tokens: Tensor) -> Tensor:
    """``model.encode_text(tokens)``, computed only over the columns up to the longest prompt.

    open_clip pads every prompt to 77 tokens; a prompt of 10 tokens then costs as much as a long
    one. With CLIP's causal text tower the padding after the longest prompt cannot change any
    earlier token, and the pooled token (end-of-text) is inside the kept columns, so cutting the
    padding gives the same embedding ~5x faster on a CPU. Towers that are not a standard causal
    ``CLIP`` text tower (custom text towers, padding masks, class tokens) take the full path.
    """
    mask = getattr(model, "attn_mask", None)
    standard = (
        all(hasattr(model, a) for a in ("token_embedding", "positional_embedding", "ln_final"))
        and isinstance(mask, Tensor)
        and getattr(model, "text_pool_type", None) == "argmax"
        and getattr(getattr(model, "transformer", None), "batch_first", False)
        and tokens.shape[1] == mask.shape[0]
    )
    nonzero = (tokens != 0).any(dim=0).nonzero()
    if not standard or not len(nonzero):
        return model.encode_text(tokens)
    length = int(nonzero.max()) + 1
    if length == tokens.shape[1]:
        return model.encode_text(tokens)
    kept = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(kept).to(cast_dtype) + model.positional_embedding[:length].to(
        cast_dtype
    )
    x = model.ln_final(model.transformer(x, attn_mask=mask[:length, :length]))
    x = x[torch.arange(x.shape[0], device=x.device), kept.argmax(dim=-1)]
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection


@torch.no_grad()
def encode_rows(loaded: LoadedClip, rows: Sequence[Sequence[str]], batch_size: int = 64) -> Tensor:
    """Encode every prompt and ensemble each row; no cache.

    Returns:
        [R, d] float32, unit-norm rows.
    """
    flat = [prompt for row in rows for prompt in row]
    model = loaded.model
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(flat), batch_size):
        tokens = loaded.tokenizer(flat[start : start + batch_size]).to(device)
        chunks.append(F.normalize(_encode_trimmed(model, tokens).float(), dim=-1))
    per_prompt = torch.cat(chunks).cpu()
    out, start = [], 0
    for row in rows:
        out.append(per_prompt[start : start + len(row)].mean(dim=0))
        start += len(row)
    return F.normalize(torch.stack(out), dim=-1)


def text_embeddings(
    loaded: LoadedClip,
    rows: Sequence[Sequence[str]],
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Embeddings of ``rows`` ([R, d], unit norm); rows already in the disk cache are not encoded.

    Args:
        loaded: the encoder (:func:`wsolbench.blocks.clip_models.load_clip`).
        rows: R lists of prompts; each row gives one embedding.
        cache_dir: the cache root (default ``$WSOLBENCH_CACHE`` or ``~/.cache/wsolbench``);
            files go to ``<cache_dir>/text/``.
        use_cache: False always encodes (and writes nothing).
    """
    if not rows or any(not row for row in rows):
        raise ValueError("text_embeddings: every row needs at least one prompt")
    if not use_cache:
        return encode_rows(loaded, rows)
    path = Path(cache_dir or default_cache_dir()) / "text" / f"{_encoder_key(loaded)}.pt"
    stored = _read_cache(path)
    keys = [_row_key(row) for row in rows]
    missing = {key: list(row) for key, row in zip(keys, rows, strict=True) if key not in stored}
    if missing:
        encoded = encode_rows(loaded, list(missing.values()))
        # merge with what another process may have written meanwhile; a lost race only means
        # that a row is encoded again later
        fresh = {key: row.clone() for key, row in zip(missing, encoded, strict=True)}
        stored = {**_read_cache(path), **fresh}
        buffer = io.BytesIO()
        torch.save(stored, buffer)
        write_bytes_atomic(path, buffer.getvalue())
        logger.info(
            "encoded %d of %d text rows with %s; cached in %s",
            len(missing),
            len(rows),
            loaded.name,
            path,
        )
    return torch.stack([stored[key] for key in keys])


def _read_cache(path: Path) -> dict[str, Tensor]:
    """The row-key → embedding map of one encoder; empty when absent or unreadable."""
    if not path.is_file():
        return {}
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file is recomputed, not trusted
        logger.warning("ignoring unreadable text-embedding cache %s (%s)", path, exc)
        return {}
    if not isinstance(cached, dict) or not all(isinstance(v, Tensor) for v in cached.values()):
        logger.warning("ignoring text-embedding cache %s: not a map of tensors", path)
        return {}
    return cached
