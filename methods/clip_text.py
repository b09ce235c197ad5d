"""CLIP text embeddings of class names and background words, cached on disk.

One embedding per row of prompts: ``normalize(mean_p normalize(encode_text(p)))`` over the row's
prompts (CLIP's prompt ensembling). Rows are usually one class each (its name in every template) or
the background (every background word in the background template).

Encoding a few hundred prompts with a ViT-B text tower takes seconds to minutes on a CPU, and the
result depends only on (encoder, weights, prompts), so it is computed once and cached under
``$WSOLBENCH_CACHE/text/<key>.pt``, keyed by a hash of exactly those: changing a class name, a
template, a background word, the model or its weights file gives a new key. TeD-Loc's text targets
and the CLIP baselines share this cache where encoder and prompts match.

This is a plain module in ``methods/`` (not a plugin folder): it registers no method.
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

from methods.clip_models import LoadedClip, weights_key
from wsolbench.atomic import write_bytes_atomic
from wsolbench.data.synthetic import default_cache_dir

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATES = ("a photo of a {}.",)
BACKGROUND_TEMPLATE = "a photo of {}."
BACKGROUND_WORDS = (
    "ground", "grass", "tree", "sky", "water", "wall", "road", "rock", "building", "cloud",
    "floor", "sand", "leaves", "snow", "field",
)  # fmt: skip

# Bumped when the way embeddings are computed changes, so older cache files are not reused.
_CACHE_VERSION = 1


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


def _cache_key(loaded: LoadedClip, rows: Sequence[Sequence[str]]) -> str:
    payload = json.dumps(
        {"version": _CACHE_VERSION, "encoder": weights_key(loaded), "rows": [list(r) for r in rows]}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


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
        chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
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
    """Embeddings of ``rows`` ([R, d], unit norm), from the disk cache when present.

    Args:
        loaded: the encoder (:func:`methods.clip_models.load_clip`).
        rows: R lists of prompts; each row gives one embedding.
        cache_dir: the cache root (default ``$WSOLBENCH_CACHE`` or ``~/.cache/wsolbench``);
            files go to ``<cache_dir>/text/``.
        use_cache: False always encodes (and writes nothing).
    """
    if not rows or any(not row for row in rows):
        raise ValueError("text_embeddings: every row needs at least one prompt")
    path = Path(cache_dir or default_cache_dir()) / "text" / f"{_cache_key(loaded, rows)}.pt"
    if use_cache and path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(cached, Tensor) and cached.shape[0] == len(rows):
                logger.debug("text embeddings from %s", path)
                return cached
        except Exception as exc:  # a damaged file is recomputed, not trusted
            logger.warning("ignoring unreadable text-embedding cache %s (%s)", path, exc)
    embeddings = encode_rows(loaded, rows)
    if use_cache:
        buffer = io.BytesIO()
        torch.save(embeddings, buffer)
        write_bytes_atomic(path, buffer.getvalue())
        logger.info("encoded %d text rows with %s; cached in %s", len(rows), loaded.name, path)
    return embeddings
