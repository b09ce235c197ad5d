"""Backbone weights from local files and the local caches only, checked against the model.

Pretrained weights never come from the network at run time (``shared/ENVIRONMENT.md``):

- ``checkpoint=PATH`` loads a local state dict with ``torch.load(weights_only=True)`` (or a
  ``.safetensors`` file);
- ``pretrained=True`` without a checkpoint looks the model's published weights up in the user's
  caches only — the Hugging Face hub cache (timm's ``pretrained_cfg["hf_hub_id"]``) and the torch
  hub cache (``pretrained_cfg["url"]``) — and raises :class:`PretrainedWeightsError` saying how to
  provide a file when they are not there. timm's own downloader is never called.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor

from wsolbench.blocks.backbone_base import Backbone
from wsolbench.blocks.state_dicts import (
    TRAINING_CHECKPOINT,
    StateDictError,
    fit_problems,
    is_training_checkpoint,
    load_failure,
    unwrap_state_dict,
)

logger = logging.getLogger(__name__)

# Wrappers that training scripts put around a model; stripped when every key carries one.
_KEY_PREFIXES = ("module.", "model.", "_orig_mod.", "state_dict.")
# Where training scripts nest the state dict inside a checkpoint.
_NESTING_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module")


class PretrainedWeightsError(ValueError):
    """Pretrained weights are unavailable or do not fit; the message says how to fix it."""


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A flat {key: tensor} dict from a local weights file, wrappers removed."""
    if not path.is_file():
        raise PretrainedWeightsError(f"backbone checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if is_training_checkpoint(exc):
            raise PretrainedWeightsError(
                f"backbone checkpoint {path} is {TRAINING_CHECKPOINT}, not a backbone's weights: "
                "to evaluate that run, pass its RUN/weights.pt to `eval --weights`; to start a "
                "backbone from weights, save them with torch.save(model.state_dict(), PATH)"
            ) from None
        raise PretrainedWeightsError(
            f"backbone checkpoint {path} cannot be read as a state dict with "
            f"weights_only=True ({load_failure(exc, path)}); save the weights with "
            "torch.save(model.state_dict(), PATH)"
        ) from None
    try:
        return unwrap_state_dict(state, nesting_keys=_NESTING_KEYS, prefixes=_KEY_PREFIXES)
    except StateDictError as exc:
        raise PretrainedWeightsError(f"backbone checkpoint {path} {exc}") from None


def load_into(backbone: Backbone, state: dict, source: str, pretrained_cfg: dict) -> None:
    """Load a backbone state dict, refusing one that does not fit with the keys and shapes named."""
    model = backbone.model
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        # timm's converters (original DeiT / CLIP / DINOv2 layouts → timm, position-embedding
        # resampling); a file they cannot parse is judged on its raw keys below.
        try:
            state = filter_fn(state, model)
        except Exception as exc:
            logger.debug("checkpoint_filter_fn of %s failed on %s: %s", backbone.name, source, exc)
    own = model.state_dict()
    head = pretrained_cfg.get("classifier") or ()
    head = (head,) if isinstance(head, str) else tuple(head)
    head_prefixes = tuple(f"{h}." for h in head) + ("head.", "fc.", "classifier.", "pre_logits.")

    problems = fit_problems(
        own,
        state,
        # BatchNorm's step counters: files saved by older torch versions lack them
        missing_ok=lambda key: key.endswith("num_batches_tracked"),
        # a classifier head: the backbone drops it (kept below as pretrained_head)
        unexpected_ok=lambda key: key.startswith(head_prefixes),
    )
    if problems:
        raise PretrainedWeightsError(
            f"{source} does not fit backbone {backbone.name!r}: {problems}. Is it a "
            f"checkpoint of another architecture? Pass a state dict of {backbone.name} with "
            "-o backbone.checkpoint=PATH, or run without pretrained weights with --no-pretrained"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    weight = state.get(f"{head[0]}.weight") if head else None
    if isinstance(weight, Tensor) and weight.dim() == 2:
        backbone.pretrained_head = (weight.detach().clone(), state.get(f"{head[0]}.bias"))


def _hub_candidates(pretrained_cfg: dict) -> list[tuple[str, str, str | None]]:
    """(repo id, filename, revision) triples timm would try for a Hugging Face hub weight."""
    hub_id = pretrained_cfg.get("hf_hub_id")
    if not hub_id:
        return []
    repo, _, revision = hub_id.partition("@")
    filename = pretrained_cfg.get("hf_hub_filename")
    if filename:
        names = [filename]
        if filename.endswith(".bin"):
            names.insert(0, filename.replace("pytorch_model.bin", "model.safetensors"))
    else:
        names = ["model.safetensors", "pytorch_model.bin"]
    return [(repo, n, revision or None) for n in dict.fromkeys(names)]


def cached_weights(name: str, pretrained_cfg: dict) -> tuple[Path, str]:
    """The locally cached file of a model's published weights, and the timm name they belong to.

    Looks in the Hugging Face hub cache (``HF_HUB_CACHE`` / ``HF_HOME``), then in the torch hub
    cache (``TORCH_HOME``); never touches the network.
    """
    looked: list[str] = []
    tag = name
    if pretrained_cfg.get("architecture"):
        tag = pretrained_cfg["architecture"] + (
            f".{pretrained_cfg['tag']}" if pretrained_cfg.get("tag") else ""
        )
    candidates = _hub_candidates(pretrained_cfg)
    if candidates:
        from huggingface_hub import try_to_load_from_cache

        for repo, filename, revision in candidates:
            found = try_to_load_from_cache(repo, filename, revision=revision)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found), tag
        files = ", ".join(filename for _, filename, _ in candidates)
        looked.append(f"{candidates[0][0]} ({files}) in the Hugging Face cache")
    url = pretrained_cfg.get("url")
    if url:
        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        if path.is_file():
            return path, tag
        looked.append(str(path))
    where = " and ".join(looked) if looked else "nothing: timm lists no published weights"
    raise PretrainedWeightsError(
        f"backbone {name!r}: pretrained weights are not in the local cache (looked for {where}), "
        "and wsolbench never downloads at run time. Provide a local file with "
        "-o backbone.checkpoint=PATH (a state dict for this architecture), or run without "
        "pretrained weights with --no-pretrained. To fill the cache on a machine with network: "
        f"python -c \"import timm; timm.create_model('{tag}', pretrained=True)\""
    )
