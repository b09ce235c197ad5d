"""open_clip models for the methods that use CLIP (``clip_patch``, ``clip_gradcam``, TeD-Loc's text
targets): building a model, and loading its weights without ever touching the network.

Weights come from one of three places, recorded as the model's ``source``:

- ``checkpoint=PATH``: a local open_clip / OpenAI state dict, read with ``weights_only=True``
  (``"file:<path>"``);
- ``pretrained=TAG`` (an open_clip tag such as ``openai`` or ``laion2b_s34b_b88k``): the tag's file
  in the user's caches only — the Hugging Face hub cache and open_clip's own download folder
  (``~/.cache/clip``) — (``"cache:<model>/<tag>"``); a tag that is not cached is a
  :class:`ClipWeightsError` that says how to provide a file, never a download;
- neither (``pretrained: false``, what ``--no-pretrained`` sets): a tower initialised from ``seed``
  (``"none"``): distinct but meaningless embeddings, for tests and the synthetic demo.

``TINY_CLIP`` names a small open_clip configuration shipped with wsolbench (a 2-block ViT with
8-pixel patches at 96 px and a 2-block text tower, ~4 M parameters, most of them the token
embedding), registered with open_clip on import: it is what the synthetic presets and the tests use.

This is a plain module in ``methods/`` (not a plugin folder): it registers no method.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from wsolbench._compat import ensure_torchvision

logger = logging.getLogger(__name__)

TINY_CLIP = "wsolbench-tiny-clip"
_CONFIG_DIR = Path(__file__).with_name("clip_configs")

# CLIP's own image normalization (not ImageNet's): what every open_clip CLIP model expects.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipWeightsError(ValueError):
    """CLIP weights are unavailable or do not fit; the message says how to fix it."""


@dataclass
class LoadedClip:
    """An open_clip model in eval mode and what describes it.

    Attributes:
        model: the open_clip ``CLIP`` model (both towers).
        tokenizer: open_clip's tokenizer for ``name``: list[str] → LongTensor [N, context_length].
        name: the open_clip model name (``ViT-B-16``, :data:`TINY_CLIP`).
        source: ``"none"``, ``"file:<path>"`` or ``"cache:<name>/<tag>"``.
        weights_id: identifies the weights' content for caches keyed on them: the seed and library
            versions for a random tower, the file's path, size and modification time otherwise.
        mean, std: the image normalization the model expects (RGB, images in [0, 1]).
        image_size: (H, W) the image tower was built for.
        patch_size: pixels per patch of a ViT image tower.
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


def _import_open_clip():
    ensure_torchvision()  # open_clip imports torchvision
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR / f"{TINY_CLIP}.json")
    return open_clip


def _cached_tag_file(name: str, tag: str) -> Path:
    """The cached weights file of an open_clip (model, tag); never downloads."""
    open_clip = _import_open_clip()
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
        "Provide a local file with -o clip.checkpoint=PATH (an open_clip or OpenAI state dict of "
        f"{name}), or run without weights with --no-pretrained. To fill the cache on a machine "
        f"with network: python -c \"import open_clip; open_clip.create_model('{name}', "
        f"pretrained='{tag}')\""
    )


def _file_id(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{int(stat.st_mtime)}"


def load_clip(
    name: str = "ViT-B-16",
    pretrained: str | bool | None = None,
    checkpoint: str | None = None,
    seed: int = 0,
) -> LoadedClip:
    """Build an open_clip model and load its weights from a local file or the local cache.

    Args:
        name: an open_clip model name, or :data:`TINY_CLIP`.
        pretrained: an open_clip tag looked up in the local cache; ``None`` / ``False`` /
            ``"none"`` for a seeded random model.
        checkpoint: a local weights file; takes precedence over ``pretrained``.
        seed: initialises a random model (only used without weights).

    Raises:
        ClipWeightsError: unknown model name, missing or unreadable weights (the message says how
            to provide them).
    """
    open_clip = _import_open_clip()
    if name not in open_clip.list_models():
        import difflib

        close = difflib.get_close_matches(name, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ClipWeightsError(
            f"unknown open_clip model {name!r}{hint} (open_clip.list_models() lists them; "
            f"{TINY_CLIP!r} is wsolbench's tiny test model)"
        )
    if isinstance(pretrained, str) and pretrained.strip().lower() in ("", "none", "false"):
        pretrained = None
    path: Path | None = None
    quick_gelu = False
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ClipWeightsError(
                f"CLIP checkpoint {path} does not exist; pass an existing open_clip state dict "
                "file with -o clip.checkpoint=PATH, or run without weights with --no-pretrained"
            )
        source = f"file:{path.resolve()}"
    elif pretrained:
        path = _cached_tag_file(name, str(pretrained))
        source = f"cache:{name}/{pretrained}"
        # open_clip builds ``ViT-B-16`` with GELU and only warns when a tag (OpenAI's) was trained
        # with QuickGELU: build the activation the weights were trained with.
        quick_gelu = bool(open_clip.get_pretrained_cfg(name, str(pretrained)).get("quick_gelu"))
    else:
        source = "none"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(name, pretrained=None, force_quick_gelu=quick_gelu)
    if path is not None:
        try:
            open_clip.load_checkpoint(model, str(path), weights_only=True)
        except Exception as exc:
            first_line = (str(exc).splitlines() or [""])[0][:300]
            hint = ""
            if "TorchScript" in str(exc):
                hint = (
                    "; an OpenAI TorchScript archive converts once (on a machine you trust) with "
                    "python -c \"import torch; torch.save(torch.jit.load('IN.pt', "
                    "map_location='cpu').state_dict(), 'OUT.pt')\", then use "
                    f"-o clip.model={name}-quickgelu if {name}-quickgelu exists"
                )
            raise ClipWeightsError(
                f"CLIP checkpoint {path} cannot be loaded into {name} with weights_only=True "
                f"({type(exc).__name__}: {first_line}); pass a state dict of {name} saved with "
                f"torch.save(model.state_dict(), PATH){hint}"
            ) from None
    model.eval()
    visual = model.visual
    image_size = tuple(int(s) for s in _pair(getattr(visual, "image_size", 224)))
    patch_size = int(_pair(getattr(visual, "patch_size", 16))[0])
    mean = tuple(getattr(visual, "image_mean", None) or CLIP_MEAN)
    std = tuple(getattr(visual, "image_std", None) or CLIP_STD)
    # A random tower is a function of the seed and of the code that initialises it.
    random_id = f"random-seed-{seed}-open_clip-{open_clip.__version__}-torch-{torch.__version__}"
    weights_id = _file_id(path) if path is not None else random_id
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
    )


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def weights_key(loaded: LoadedClip) -> str:
    """A short hash of (model name, weights): the part of a cache key that names the encoder."""
    return hashlib.sha256(f"{loaded.name}|{loaded.weights_id}".encode()).hexdigest()[:16]
