"""open_clip models for the methods that use CLIP (``clip_patch``, ``clip_gradcam``, TeD-Loc's text
targets): building a model, and loading its weights without ever touching the network.

Weights come from one of three places, recorded as the model's ``source``:

- ``checkpoint=PATH``: a local file in any format :mod:`wsolbench.blocks.clip_weights` reads —
  OpenAI's TorchScript archive (``ViT-B-16.pt`` from ``~/.cache/clip``, read as data, its code
  never run), an OpenAI or open_clip state dict (``weights_only=True``), a ``.safetensors`` file —
  (``"file:<file name> (sha256 <hex>, <layout, >activation)"``);
- ``pretrained=TAG`` (an open_clip tag such as ``openai`` or ``laion2b_s34b_b88k``): the tag's file
  in the user's caches only — the Hugging Face hub cache and open_clip's / OpenAI's download
  folder (``~/.cache/clip``) — (``"cache:<model>/<tag> (sha256 <hex>, <activation>)"``); a tag
  that is not cached is a :class:`ClipWeightsError` that says how to provide a file, never a
  download;
- neither (``pretrained: false``, what ``--no-pretrained`` sets): a tower initialised from ``seed``
  (``"none"``): distinct but meaningless embeddings, for tests and the synthetic demo.

The activation follows the weights: OpenAI's were trained with QuickGELU, while open_clip's plain
configs (``ViT-B-16``) build GELU. ``activation="auto"`` builds QuickGELU for an OpenAI file
layout (archive, or a state dict converted from one) and for a tag open_clip registers as
QuickGELU, and the model config's activation otherwise; ``quickgelu`` / ``gelu`` declare it (an
OpenAI state dict re-saved from a non-TorchScript model has open_clip's keys and cannot be told
apart). The activation built is part of ``source`` (so of every result's ``pretrained``) and of
:func:`weights_key` (so of every cache key).

Model names include wsolbench's own configurations (:mod:`wsolbench.blocks.open_clip_configs`):
``TINY_CLIP``, a 2-block test model, and ``wsolbench-synthclip-v1``, whose checkpoint names
``synthclip-v1`` and ``synthclip-quick-v1`` resolve to the files :mod:`wsolbench.blocks.synthclip`
trains (built on first use), then loaded as any user's file is.

This is a plain module of ``wsolbench.blocks`` (not a plugin folder): it registers no method.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from wsolbench.blocks.clip_weights import (
    WeightsFile,
    WeightsFileError,
    read_weights,
    vit_shape,
)
from wsolbench.blocks.open_clip_configs import (
    TINY_CLIP,
    ClipWeightsError,
    create_model,
    import_open_clip,
)
from wsolbench.blocks.state_dicts import fit_problems
from wsolbench.blocks.synthclip import BUILDS, synthclip_checkpoint
from wsolbench.util.weights_source import describe, file_sha256

logger = logging.getLogger(__name__)


# CLIP's own image normalization (not ImageNet's): what every open_clip CLIP model expects.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ACTIVATIONS = ("auto", "quickgelu", "gelu")


@dataclass
class LoadedClip:
    """An open_clip model in eval mode and what describes it.

    Attributes:
        model: the open_clip ``CLIP`` model (both towers).
        tokenizer: open_clip's tokenizer for ``name``: list[str] → LongTensor [N, context_length].
        name: the open_clip model name (``ViT-B-16``, :data:`TINY_CLIP`).
        source: ``"none"``, ``"file:<name> (sha256 ...)"`` or ``"cache:<name>/<tag> (...)"``, the
            parentheses naming an OpenAI file layout and the activation built.
        weights_id: identifies the weights' content for caches keyed on them: the seed and library
            versions for a random tower, the file's sha256 otherwise (the same file under another
            path hits the same caches; a file changed in place does not).
        mean, std: the image normalization the model expects (RGB, images in [0, 1]).
        image_size: (H, W) the image tower was built for.
        patch_size: pixels per patch of a ViT image tower.
        activation: ``"quickgelu"`` or ``"gelu"``, what the towers were built with.
    """

    model: nn.Module
    tokenizer: object
    name: str
    source: str
    weights_id: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: tuple[int, int]
    patch_size: int
    activation: str = "gelu"


def _cached_tag_file(name: str, tag: str) -> Path:
    """The cached weights file of an open_clip (model, tag); never downloads."""
    open_clip = import_open_clip()
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ClipWeightsError(
            f"open_clip has no pretrained tag {tag!r} for model {name!r} (known tags: "
            f"{', '.join(tags) or 'none'}); pass a known tag, or a local checkpoint file with "
            "-o clip.checkpoint=PATH"
        )
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors"]
        names.append(filename or "open_clip_pytorch_model.bin")
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for candidate in dict.fromkeys(names):
            found = try_to_load_from_cache(repo, candidate)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
        looked.append(f"{repo} ({', '.join(dict.fromkeys(names))}) in the Hugging Face cache")
    url = cfg.get("url", "")
    if url:
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return path
        looked.append(str(path))
    raise ClipWeightsError(
        f"CLIP weights {name}/{tag} are not in the local cache (looked for "
        f"{' and '.join(looked) or 'nothing'}), and wsolbench never downloads at run time. "
        "Provide a local file with -o clip.checkpoint=PATH (OpenAI's TorchScript archive, or an "
        f"OpenAI or open_clip state dict of {name}), or run without weights with "
        "--no-pretrained. To fill the cache on a machine "
        f"with network: python -c \"import open_clip; open_clip.create_model('{name}', "
        f"pretrained='{tag}')\""
    )


def _has_openai_tag(open_clip, name: str) -> bool:
    return "openai" in open_clip.list_pretrained_tags_by_model(name)


def _choose_activation(
    activation: str, weights: WeightsFile | None, tag_quick_gelu: bool | None
) -> tuple[bool | None, str]:
    """(quick_gelu for open_clip — None keeps the model config's — and why)."""
    if activation != "auto":
        return activation == "quickgelu", "declared with clip.activation"
    if weights is not None and weights.activation is not None:
        reason = f"named by the file ({weights.layout})"
        return weights.activation == "quickgelu", reason
    if tag_quick_gelu is not None:
        return tag_quick_gelu, "open_clip's registry for the tag"
    return None, "the model config's"


def load_clip(
    name: str = "ViT-B-16",
    pretrained: str | bool | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
    activation: str = "auto",
) -> LoadedClip:
    """Build an open_clip model and load its weights from a local file or the local cache.

    Args:
        name: an open_clip model name, or :data:`TINY_CLIP`.
        pretrained: an open_clip tag looked up in the local cache; ``None`` / ``False`` /
            ``"none"`` for a seeded random model.
        checkpoint: a local weights file in any format of :mod:`wsolbench.blocks.clip_weights` (an
            OpenAI TorchScript archive, an OpenAI or open_clip state dict, safetensors); takes
            precedence over ``pretrained``.
        seed: initialises a random model (only used without weights).
        activation: ``auto`` (QuickGELU for OpenAI's weights — an OpenAI file layout, or a tag
            open_clip registers as QuickGELU —, else the model config's), ``quickgelu`` or
            ``gelu`` (declared: what the weights were trained with).

    Raises:
        ClipWeightsError: unknown model name, missing or unreadable weights, weights that do not
            fit the model (the message lists the missing, unexpected and misshapen keys).
    """
    open_clip = import_open_clip()
    if name not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ClipWeightsError(
            f"unknown open_clip model {name!r}{hint} (open_clip.list_models() lists them; "
            f"{TINY_CLIP!r} is wsolbench's tiny test model)"
        )
    activation = str(activation or "auto").strip().lower()
    if activation not in ACTIVATIONS:
        raise ClipWeightsError(
            f"clip.activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}"
        )
    if isinstance(pretrained, str) and pretrained.strip().lower() in ("", "none", "false"):
        pretrained = None
    path: Path | None = None
    tag_quick_gelu: bool | None = None
    if checkpoint and str(checkpoint) in BUILDS:
        # wsolbench's own CLIP of the synthetic world: built and cached on first use, then loaded
        # below like any user's state-dict file (wsolbench/blocks/synthclip.py)
        checkpoint = str(synthclip_checkpoint(name, str(checkpoint)))
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ClipWeightsError(
                f"CLIP checkpoint {path} does not exist; pass an existing weights file with "
                "-o clip.checkpoint=PATH, or run without weights with --no-pretrained"
            )
        kind, shown = "file", path.name
    elif pretrained:
        path = _cached_tag_file(name, str(pretrained))
        kind, shown = "cache", f"{name}/{pretrained}"
        tag_quick_gelu = bool(open_clip.get_pretrained_cfg(name, str(pretrained)).get("quick_gelu"))
    else:
        source = "none"
    weights = None
    if path is not None:
        try:
            weights = read_weights(path)
        except WeightsFileError as exc:
            raise ClipWeightsError(f"CLIP checkpoint {exc}") from None
    quick_gelu, reason = _choose_activation(activation, weights, tag_quick_gelu)
    if (
        weights is not None
        and quick_gelu is None
        and not weights.is_openai
        and _has_openai_tag(open_clip, name)
    ):
        logger.warning(
            "%s: a plain state dict, so %s is built with its config's activation; if these are "
            "OpenAI's weights (trained with QuickGELU) pass -o clip.activation=quickgelu",
            path,
            name,
        )
    extra = {} if quick_gelu is None else {"quick_gelu": quick_gelu}
    state = None
    if weights is not None:
        # shapes only, in no time: a file that does not fit fails before the real (slow) build
        with torch.device("meta"):
            skeleton = create_model(name, device="meta", **extra)
        state = _fitted_state(open_clip, skeleton, weights, path, name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, **extra)
    if state is not None:
        model.load_state_dict(state, strict=True)
    model.eval()
    from open_clip.transformer import QuickGELU

    built = "quickgelu" if any(isinstance(m, QuickGELU) for m in model.modules()) else "gelu"
    sha256 = file_sha256(path) if path is not None else None
    if weights is not None:
        layout = [weights.layout] if weights.is_openai else []
        source = describe(kind, shown, sha256, [*layout, built])
        logger.info(
            "CLIP %s: weights %s from %s; activation %s (%s)", name, source, path, built, reason
        )
    visual = model.visual
    image_size = tuple(int(s) for s in _pair(getattr(visual, "image_size", 224)))
    patch_size = int(_pair(getattr(visual, "patch_size", 16))[0])
    mean = tuple(getattr(visual, "image_mean", None) or CLIP_MEAN)
    std = tuple(getattr(visual, "image_std", None) or CLIP_STD)
    # A random tower is a function of its architecture (a configuration of wsolbench's own may be
    # edited under its name), the seed and the code that initialises it.
    architecture = json.dumps(open_clip.get_model_config(name), sort_keys=True, default=str)
    arch = hashlib.sha256(architecture.encode()).hexdigest()[:12]
    random_id = (
        f"random-{arch}-seed-{seed}-open_clip-{open_clip.__version__}-torch-{torch.__version__}"
    )
    weights_id = f"sha256:{sha256}" if sha256 is not None else random_id
    return LoadedClip(
        model=model,
        tokenizer=open_clip.get_tokenizer(name),
        name=name,
        source=source,
        weights_id=weights_id,
        mean=mean,
        std=std,
        image_size=image_size,
        patch_size=patch_size,
        activation=built,
    )


def _fitted_state(
    open_clip, model: nn.Module, weights: WeightsFile, path: Path, name: str
) -> dict[str, Tensor]:
    """A file's tensors after open_clip's own adaptations of a checkpoint, checked to load
    strictly into ``model`` (whose values are not read: a meta-device model will do).

    Raises:
        ClipWeightsError: the keys or shapes do not fit; every kind of mismatch is listed.
    """
    from open_clip.factory import convert_state_dict
    from open_clip.model import (
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    # The steps of open_clip.load_checkpoint before its load_state_dict: third-party layouts,
    # the old text-tower layout, scalar shapes, other grid and context sizes.
    state = convert_state_dict(model, dict(weights.state))
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for key in ("logit_scale", "logit_bias"):
        own = getattr(model, key, None)
        if key in state and isinstance(own, Tensor) and own.ndim != state[key].ndim:
            state[key] = state[key].reshape(own.shape)
    if getattr(model, "logit_bias", None) is not None and "logit_bias" not in state:
        state["logit_bias"] = torch.zeros(model.logit_bias.shape)
    state.pop("text.transformer.embeddings.position_ids", None)
    try:
        resize_pos_embed(state, model)
        resize_text_pos_embed(state, model)
    except Exception as exc:  # a shape that cannot be resized is reported below
        logger.debug("position-embedding resize of %s failed: %s", path, exc)
    problems = fit_problems(model.state_dict(), state)
    if problems:
        hint = _model_hint(open_clip, weights.state)
        raise ClipWeightsError(
            f"CLIP checkpoint {path} ({weights.layout}) does not fit open_clip model {name}: "
            f"{problems}.{hint} Pass weights of {name}, or the model they belong to with "
            "-o clip.model=NAME"
        )
    return state


def _model_hint(open_clip, state: dict[str, Tensor]) -> str:
    """' The file holds a ... (open_clip model X).' from the image tower's shapes, or ''."""
    shape = vit_shape(state)
    if shape is None:
        return ""
    matches = []
    for candidate in open_clip.list_models():
        vision = (open_clip.get_model_config(candidate) or {}).get("vision_cfg", {})
        if (
            vision.get("width") == shape["width"]
            and vision.get("layers") == shape["layers"]
            and vision.get("patch_size") == shape["patch_size"]
            and vision.get("image_size") == shape["image_size"]
            and "timm_model_name" not in vision
        ):
            matches.append(candidate)
    described = (
        f" The file holds a ViT of width {shape['width']}, {shape['layers']} blocks, "
        f"{shape['patch_size']}-pixel patches at {shape['image_size']} px"
    )
    plain = [m for m in matches if "-" in m and not m.endswith(("-quickgelu", "-plus"))]
    named = (plain or matches)[:3]
    return described + (f" (e.g. {', '.join(named)})." if named else ".")


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def weights_key(loaded: LoadedClip) -> str:
    """A short hash of (model name, weights, activation): the part of a cache key that names the
    encoder. The same file built with QuickGELU and with GELU gives two towers, so two keys."""
    text = f"{loaded.name}|{loaded.weights_id}|{loaded.activation}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
