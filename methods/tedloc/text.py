"""TeD-Loc's text targets: CLIP embeddings of the background and of every class, orthogonalized.

:func:`load_text_embeddings` loads the text tower the ``text`` options name and embeds the prompts;
:func:`orthogonalize_targets` turns the embeddings into the targets.

Rows are ``[t_bg, t_1, ..., t_C]`` (background first). Each is CLIP's prompt ensemble
(:mod:`wsolbench.blocks.clip_text`): a class is the mean of its name in every template, the
background the mean of every background word in the background template. The encoding is cached on
disk under a hash of (encoder, weights, prompts) by
:func:`wsolbench.blocks.clip_text.text_embeddings`, so it runs once per (encoder, weights, class
names, templates); the orthogonalization below is cheap and runs at every build.

Orthogonalization (``orthogonalize``):

- ``none``: the ensembled embeddings as they are.
- ``qr``: the reduced QR of the d × (C + 1) matrix whose columns are the rows; the targets are the
  columns of Q, each sign-flipped so that it keeps a positive dot product with its own embedding
  (``q_j · t_j = R_jj``, so the sign of R's diagonal is the flip). The background stays
  ``t_bg`` itself (it is the first column) and each class keeps only what separates it from the
  background and the classes before it. Needs C + 1 ≤ d; otherwise :func:`orthogonalize_targets`
  falls back to ``none`` with a warning.
- ``qr_groups``: classes are split into groups of at most ``group_size - 1`` (≤ d - 1) mutually
  most similar classes (greedy: the first unassigned class and its nearest unassigned
  neighbours), and each group is orthogonalized together with the background. Classes in one
  group become orthogonal — the similar ones, which need separating most — while classes of
  different groups are not. The background is the same in every group.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench.blocks import synthclip
from wsolbench.blocks.clip_text import (
    BACKGROUND_TEMPLATE,
    BACKGROUND_WORDS,
    background_prompts,
    class_prompts,
    text_embeddings,
)

logger = logging.getLogger(__name__)

ORTHOGONALIZE = ("none", "qr", "qr_groups")


def qr_targets(embeddings: Tensor) -> Tensor:
    """Orthonormal targets from ``embeddings`` [R, d] (R ≤ d) by reduced QR, signs kept.

    Returns:
        [R, d] with orthonormal rows; row j spans the same first-j subspace as ``embeddings[:j+1]``
        and has a positive dot product with ``embeddings[j]``.
    """
    rows, dim = embeddings.shape
    if rows > dim:
        raise ValueError(f"QR needs at most d = {dim} rows, got {rows}")
    q, r = torch.linalg.qr(embeddings.double().T, mode="reduced")  # q [d, R], r [R, R]
    signs = torch.sign(torch.diagonal(r))
    signs[signs == 0] = 1.0  # a row inside the span of the previous ones: keep Q's column
    return (q * signs).T.to(embeddings.dtype).contiguous()


def _similarity_groups(classes: Tensor, size: int) -> list[list[int]]:
    """Greedy groups of at most ``size`` mutually similar rows of ``classes`` [C, d]."""
    sims = F.normalize(classes.double(), dim=-1) @ F.normalize(classes.double(), dim=-1).T
    left = list(range(classes.shape[0]))
    groups = []
    while left:
        seed = left[0]
        ranked = sorted(left, key=lambda j: (-float(sims[seed, j]), j))  # seed first (sim 1)
        group = sorted(ranked[:size])
        groups.append(group)
        left = [j for j in left if j not in group]
    return groups


def orthogonalize_targets(embeddings: Tensor, mode: str, group_size: int | None = None) -> Tensor:
    """The targets ``[t_bg, t_1..t_C]`` [C + 1, d] for an ``orthogonalize`` mode.

    Args:
        embeddings: [C + 1, d] unit rows, background first.
        mode: ``none``, ``qr`` or ``qr_groups`` (see the module docstring).
        group_size: columns per QR in ``qr_groups`` (background included), at most d; None → d.

    Returns:
        [C + 1, d] unit rows. ``qr`` with C + 1 > d returns ``embeddings`` unchanged and logs a
        warning (use ``qr_groups``).
    """
    if mode not in ORTHOGONALIZE:
        raise ValueError(f"orthogonalize: {mode!r} is not one of {', '.join(ORTHOGONALIZE)}")
    rows, dim = embeddings.shape
    if mode == "none":
        return embeddings.clone()
    if mode == "qr":
        if rows > dim:
            logger.warning(
                "orthogonalize: qr needs C + 1 <= d, but C + 1 = %d > d = %d; using the text "
                "embeddings without orthogonalization (orthogonalize: none). Set "
                "-o orthogonalize=qr_groups to orthogonalize within groups of similar classes.",
                rows,
                dim,
            )
            return embeddings.clone()
        return qr_targets(embeddings)
    size = min(int(group_size or dim), dim)
    if size < 2:
        raise ValueError(f"qr_groups: group_size must be at least 2, got {size}")
    out = embeddings.clone()
    for group in _similarity_groups(embeddings[1:], size - 1):
        rows_in = torch.cat([embeddings[:1], embeddings[1:][group]])
        q = qr_targets(rows_in)
        out[0] = q[0]
        out[1:][group] = q[1:]
    return out


def load_text_embeddings(options: dict, classnames: list[str]):
    """The text tower ``options`` names and the embeddings [C + 1, d] of the background and
    each class, before orthogonalization (rows: background first).

    Returns:
        (the :class:`wsolbench.blocks.clip_models.LoadedClip`, embeddings [C + 1, d] float)
    """
    from wsolbench.blocks.clip_models import load_clip

    known = {
        "model",
        "pretrained",
        "checkpoint",
        "templates",
        "background_words",
        "background_template",
        "seed",
        "cache_dir",
    }
    if set(options) - known:
        raise ValueError(f"tedloc: text takes {sorted(known)} (got {sorted(options)})")
    pretrained = options.get("pretrained")
    use_weights = pretrained not in (None, False) and str(pretrained).lower() not in (
        "",
        "none",
        "false",
    )
    checkpoint = options.get("checkpoint")
    # the synthetic preset names synthclip; --no-pretrained turning it off is no news
    if checkpoint and not use_weights and checkpoint not in synthclip.BUILDS:
        logger.warning(
            "text.checkpoint %s ignored because text.pretrained is false; set "
            "-o text.pretrained=true to load it",
            checkpoint,
        )
    loaded = load_clip(
        options.get("model", "ViT-B-16"),
        pretrained=pretrained if use_weights and pretrained is not True else None,
        checkpoint=checkpoint if use_weights else None,
        seed=int(options.get("seed", 0)),
    )
    if use_weights and loaded.source == "none":
        raise ValueError(
            "text.pretrained is true but names no tag and text.checkpoint is empty; pass "
            "-o text.pretrained=TAG (e.g. openai) or -o text.checkpoint=PATH"
        )
    rows = background_prompts(
        options.get("background_words") or BACKGROUND_WORDS,
        options.get("background_template") or BACKGROUND_TEMPLATE,
    ) + class_prompts(classnames, options.get("templates") or ["a photo of a {}."])
    embeddings = text_embeddings(loaded, rows, cache_dir=options.get("cache_dir"))
    return loaded, embeddings
