"""Feature backbones shared by the methods: timm CNNs and ViTs, and a small CNN for synthetic data.

Every backbone is a :class:`Backbone`: ``forward(images [B, 3, H, W]) -> [B, D, h, w]``, the last
feature map of a CNN, or a ViT's patch tokens (after the final norm, class / distillation /
register tokens dropped) reshaped to the patch grid. A 1×1 classifier plus global average pooling
on that grid is then exactly "linear classifier per patch → mean over patches", so CAM and TeD-Loc
treat both kinds alike.

Pretrained weights never come from the network at run time (``shared/ENVIRONMENT.md``):

- ``checkpoint=PATH`` loads a local state dict with ``torch.load(weights_only=True)`` (or a
  ``.safetensors`` file);
- ``pretrained=True`` without a checkpoint looks the model's published weights up in the user's
  caches only — the Hugging Face hub cache (timm's ``pretrained_cfg["hf_hub_id"]``) and the torch
  hub cache (``pretrained_cfg["url"]``) — and raises :class:`PretrainedWeightsError` saying how to
  provide a file when they are not there. timm's own downloader is never called.

``wsol_resnet50`` is the reference WSOL benchmark's ResNet50 (Choe et al., CVPR 2020,
``clovaai/wsolevaluation`` ``wsol/resnet.py``, ``ResNetCam``): torchvision's ResNet50 with
ImageNet weights (``resnet50-19c8e357.pth``, what the reference downloads, or torchvision's
current name for the same IMAGENET1K_V1 weights, ``resnet50-0676ba61.pth``, in the torch hub
cache; timm's ``resnet50.tv_in1k`` in the Hugging Face cache; or a file), and layer4's stride
removed **without dilation** (stride 16: a 14×14 map at 224 px), layer3's too with
``large_feature_map=True`` (stride 8), as the reference does. timm's ``output_stride=16`` instead
dilates layer4, which is another network on the same weights.

This is a plain module in ``methods/`` (not a plugin folder): it registers nothing.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from wsolbench._compat import ensure_torchvision

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Wrappers that training scripts put around a model; stripped when every key carries one.
_KEY_PREFIXES = ("module.", "model.", "_orig_mod.", "state_dict.")
# Where training scripts nest the state dict inside a checkpoint.
_NESTING_KEYS = ("state_dict", "model", "model_state", "model_state_dict", "module")


class PretrainedWeightsError(ValueError):
    """Pretrained weights are unavailable or do not fit; the message says how to fix it."""


# --------------------------------------------------------------------------------------------
# The small from-scratch CNN
# --------------------------------------------------------------------------------------------


class WsolCNN(nn.Module):
    """A small plain CNN (conv3×3-BN-ReLU layers) with a fine output grid, trained from scratch.

    The default (0.29 M parameters) has stride 4 — a 24×24 grid at 96 px, the resolution the
    synthetic protocol needs to resolve a head of 4–7 px radius on an object of ~20 % of the
    image — and a receptive field of 53 px. Its first layer works at full resolution, so that the
    class patterns (dots, rings, checks of 2–5 px) are seen before any downsampling; resolution
    is kept at the end by two dilated layers instead of further striding.

    Args:
        channels: output channels of each conv layer.
        strides: stride of each layer (their product is the backbone stride).
        dilations: dilation of each layer.
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 32, 64, 64, 128, 128),
        strides: Sequence[int] = (1, 2, 1, 2, 1, 1, 1),
        dilations: Sequence[int] = (1, 1, 1, 1, 1, 2, 2),
    ):
        super().__init__()
        if not len(channels) == len(strides) == len(dilations) or not channels:
            raise ValueError(
                f"wsolcnn: channels {list(channels)}, strides {list(strides)} and dilations "
                f"{list(dilations)} must be non-empty lists of the same length"
            )
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, stride, dilation in zip(channels, strides, dilations, strict=True):
            layers += [
                nn.Conv2d(
                    in_channels, out_channels, 3, stride, dilation, dilation=dilation, bias=False
                ),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.out_channels = int(channels[-1])
        self.stride = math.prod(int(s) for s in strides)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] → features [B, D, ceil(H / stride), ceil(W / stride)], ≥ 0."""
        return self.features(images)


# Backbones built here rather than by timm: name → class taking the backbone's ``kwargs``.
LOCAL_BACKBONES: dict[str, type[nn.Module]] = {"wsolcnn": WsolCNN}

REFERENCE_RESNET50 = "wsol_resnet50"
# timm's name of torchvision's ResNet50 ImageNet weights (same architecture and key names).
_TORCHVISION_RESNET50 = "resnet50.tv_in1k"
# The torch hub cache file names of those weights: the reference's URL, then torchvision's current.
_TORCHVISION_RESNET50_FILES = ("resnet50-19c8e357.pth", "resnet50-0676ba61.pth")


# --------------------------------------------------------------------------------------------
# The Backbone wrapper
# --------------------------------------------------------------------------------------------


class Backbone(nn.Module):
    """A feature extractor with a uniform output: ``[B, D, h, w]``.

    Attributes:
        model: the wrapped network (a timm model or a local one); its parameters are the backbone's.
        name: the name it was built from (``resnet50``, ``deit_small_patch16_224``, ``wsolcnn``).
        kind: ``"cnn"`` or ``"vit"``.
        out_channels: D.
        stride: input pixels per feature-map cell (the patch size for a ViT).
        source: the weights loaded: ``"none"``, ``"file:<path>"`` or ``"cache:<timm name>"``.
        mean, std: the input normalization the weights expect (RGB, images in [0, 1]).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        kind: str,
        out_channels: int,
        stride: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        if kind not in ("cnn", "vit"):
            raise ValueError(f"backbone kind must be 'cnn' or 'vit', not {kind!r}")
        self.model = model
        self.name = name
        self.kind = kind
        self.out_channels = int(out_channels)
        self.stride = int(stride)
        self.source = "none"
        # (weight [K, D], bias [K] or None) of the classifier the loaded weights came with (an
        # ImageNet fc), for a method that starts its own classifier from it; None otherwise
        self.pretrained_head: tuple[Tensor, Tensor | None] | None = None
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        # channels_last makes CPU (oneDNN) and CUDA convolutions markedly faster; a ViT gains
        # nothing from it.
        self.channels_last = kind == "cnn"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] normalized with ``mean``/``std`` → features [B, D, h, w]."""
        if self.kind == "vit":
            return self._vit_features(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        forward = getattr(self.model, "forward_features", self.model.forward)
        features = forward(images)
        if getattr(self.model, "output_fmt", "NCHW") == "NHWC":  # e.g. timm's Swin
            features = features.permute(0, 3, 1, 2)
        return features

    def _vit_features(self, images: Tensor) -> Tensor:
        tokens = self.model.forward_features(images)  # [B, prefix + h*w, D], after the final norm
        height, width = images.shape[-2:]
        embed = self.model.patch_embed
        if hasattr(embed, "dynamic_feat_size"):
            grid = embed.dynamic_feat_size((height, width))
        else:
            grid = (height // self.stride, width // self.stride)
        patches = tokens[:, self.model.num_prefix_tokens :]
        if patches.shape[1] != grid[0] * grid[1]:
            raise RuntimeError(
                f"backbone {self.name}: {patches.shape[1]} patch tokens for a {grid[0]}x{grid[1]} "
                f"grid at input {height}x{width}"
            )
        return patches.transpose(1, 2).reshape(patches.shape[0], -1, grid[0], grid[1])


def build_backbone(
    name: str,
    *,
    pretrained: bool,
    checkpoint: str | os.PathLike | None = None,
    **kwargs,
) -> Backbone:
    """Build a backbone, with pretrained weights from a local file or the local cache only.

    Args:
        name: a timm model name, optionally with a pretrained tag (``resnet50``,
            ``resnet50.a1_in1k``, ``vgg16_bn``, ``deit_small_patch16_224``, ...), ``wsolcnn``,
            or ``wsol_resnet50`` (the reference benchmark's ResNet50, see the module docstring).
        pretrained: load pretrained weights — from ``checkpoint`` when given, else from the
            user's Hugging Face or torch hub cache. False loads nothing, ``checkpoint`` included
            (``--no-pretrained`` and ``wsolbench eval`` rely on that), with a warning if one is
            set.
        checkpoint: a local state-dict file (``.pth``/``.pt``/``.bin``/``.safetensors``).
            Wrappers (``state_dict``/``model`` nesting, ``module.``/``model.`` key prefixes) and
            the file's own classifier head are dropped.
        **kwargs: passed to the model constructor (timm kwargs such as ``output_stride=16``,
            ``embed_dim=...``; ``WsolCNN`` arguments for ``wsolcnn``; ``large_feature_map`` for
            ``wsol_resnet50``).

    Returns:
        The backbone; ``source`` says which weights it holds.

    Raises:
        PretrainedWeightsError: the weights are not cached, or the file does not fit the model
            (the message names the mismatched keys and shapes).
    """
    if name in LOCAL_BACKBONES:
        model = LOCAL_BACKBONES[name](**kwargs)
        backbone = Backbone(
            model, name=name, kind="cnn", out_channels=model.out_channels, stride=model.stride
        )
        pretrained_cfg = {}
    elif name == REFERENCE_RESNET50:
        backbone, pretrained_cfg = _build_reference_resnet50(**kwargs)
    else:
        backbone, pretrained_cfg = _build_timm(name, kwargs)
    if checkpoint and not pretrained:
        logger.warning(
            "backbone %s: checkpoint %s ignored because backbone.pretrained is false; set "
            "-o backbone.pretrained=true to load it",
            name,
            checkpoint,
        )
    elif checkpoint:
        path = Path(checkpoint).expanduser()
        _load_into(backbone, _read_state_dict(path), str(path), pretrained_cfg)
        backbone.source = f"file:{path.resolve()}"
    elif pretrained:
        if name in LOCAL_BACKBONES:
            raise PretrainedWeightsError(
                f"backbone {name!r} is trained from scratch and has no published weights; pass "
                "a file with -o backbone.checkpoint=PATH, or run without pretrained weights "
                "with --no-pretrained (backbone.pretrained=false)"
            )
        if name == REFERENCE_RESNET50:
            path, tag = _cached_torchvision_resnet50(pretrained_cfg)
        else:
            path, tag = _cached_weights(name, pretrained_cfg)
        _load_into(backbone, _read_state_dict(path), str(path), pretrained_cfg)
        backbone.source = f"cache:{tag}"
    logger.info(
        "backbone %s (%s, stride %d): weights %s",
        name,
        backbone.kind,
        backbone.stride,
        backbone.source,
    )
    return backbone


def _build_timm(name: str, kwargs: dict, probe_unused: bool = True) -> tuple[Backbone, dict]:
    """A headless timm model (never with timm's own ``pretrained=True``) wrapped as a Backbone.

    ``probe_unused=False`` skips :func:`_drop_unused_modules` for a model known to use every
    module in ``forward_features`` once headless (a ResNet): the probe is a backward pass."""
    ensure_torchvision()
    import timm

    try:
        # ViTs take any input size (positional embeddings are interpolated at forward time), so
        # the protocol's image size need not be the model's default.
        model = timm.create_model(
            name, pretrained=False, num_classes=0, **{"dynamic_img_size": True, **kwargs}
        )
    except TypeError as exc:
        if "dynamic_img_size" not in str(exc) or "dynamic_img_size" in kwargs:
            raise
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except RuntimeError as exc:  # timm's "Unknown model (...)"
        raise ValueError(
            f"backbone {name!r}: {exc}; use a timm model name (timm.list_models()) or one of "
            f"{sorted(LOCAL_BACKBONES)}"
        ) from None
    pretrained_cfg = dict(getattr(model, "pretrained_cfg", {}) or {})
    mean = pretrained_cfg.get("mean", IMAGENET_MEAN)
    std = pretrained_cfg.get("std", IMAGENET_STD)
    is_vit = hasattr(model, "num_prefix_tokens") and hasattr(model, "patch_embed")
    if probe_unused:
        _drop_unused_modules(model, is_vit)
    if is_vit:
        patch = model.patch_embed.patch_size
        patch = patch[0] if isinstance(patch, (tuple, list)) else patch
        kind, channels, stride = "vit", model.num_features, int(patch)
    else:
        info = model.feature_info[-1]
        kind, channels, stride = "cnn", int(info["num_chs"]), int(info["reduction"])
    backbone = Backbone(
        model, name=name, kind=kind, out_channels=channels, stride=stride, mean=mean, std=std
    )
    return backbone, pretrained_cfg


def _drop_unused_modules(model: nn.Module, is_vit: bool) -> None:
    """Replace submodules that ``forward_features`` never uses by ``nn.Identity``.

    A headless timm model can still hold head parts outside ``forward_features`` — VGG's
    ``pre_logits`` (a 7×7 conv to 4096 channels: ~100 M parameters), ConvNeXt's head norm.
    Left in, they would bloat every exported ``weights.pt`` and break distributed training
    (parameters without gradients). Found by one backward pass on a tiny input in eval mode (so
    batch-norm statistics do not move).
    """
    if is_vit and getattr(model.patch_embed, "dynamic_img_size", False):
        size = 32
    else:  # some CNNs (Inception) need more than 64 px; a fixed-size ViT needs its own size
        size = 96 if not is_vit else int(model.pretrained_cfg.get("input_size", (3, 224))[-1])
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            model.forward_features(torch.zeros(1, 3, size, size)).float().sum().backward()
    finally:
        model.train(was_training)
    unused = {
        name
        for name, module in model.named_modules()
        if name
        and any(True for _ in module.parameters())
        and all(p.grad is None for p in module.parameters())
    }
    model.zero_grad(set_to_none=True)
    for name in sorted(unused):
        parent_name, _, child = name.rpartition(".")
        if parent_name in unused:
            continue  # its parent is replaced as a whole
        parent = model.get_submodule(parent_name) if parent_name else model
        logger.debug("dropping %s (unused by forward_features)", name)
        setattr(parent, child, nn.Identity())


def _build_reference_resnet50(large_feature_map: bool = False) -> tuple[Backbone, dict]:
    """The reference benchmark's ResNet50 (``ResNetCam``): torchvision's ResNet50 with layer4's
    stride set to 1 without dilation (and layer3's with ``large_feature_map``).

    Removing a stage's stride keeps its weights (a strided 3×3 / 1×1 convolution and the same one
    at stride 1 have the same parameters), so torchvision's ImageNet weights load unchanged.
    """
    # headless, a ResNet uses every module in forward_features: no probe needed
    backbone, pretrained_cfg = _build_timm(_TORCHVISION_RESNET50, {}, probe_unused=False)
    stages = ["layer3", "layer4"] if large_feature_map else ["layer4"]
    removed = 1
    for stage in stages:
        first_block = getattr(backbone.model, stage)[0]
        strides = [m.stride for m in first_block.modules() if isinstance(m, nn.Conv2d)]
        removed *= max(max(s) for s in strides)
        for module in first_block.modules():
            if isinstance(module, nn.Conv2d):
                module.stride = (1, 1)
    backbone.name = REFERENCE_RESNET50
    backbone.stride //= removed
    return backbone, pretrained_cfg


def _cached_torchvision_resnet50(pretrained_cfg: dict) -> tuple[Path, str]:
    """torchvision's ResNet50 ImageNet weights from the torch hub cache (either file name) or,
    as timm's ``resnet50.tv_in1k``, from the Hugging Face cache; never downloads."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for filename in _TORCHVISION_RESNET50_FILES:
        if (folder / filename).is_file():
            return folder / filename, f"torchvision/{filename}"
    try:
        return _cached_weights(_TORCHVISION_RESNET50, pretrained_cfg)
    except PretrainedWeightsError:
        pass
    raise PretrainedWeightsError(
        f"backbone {REFERENCE_RESNET50!r}: torchvision's ResNet50 ImageNet weights are not in the "
        f"local cache (looked for {' and '.join(_TORCHVISION_RESNET50_FILES)} in {folder}, and "
        f"timm/{_TORCHVISION_RESNET50} in the Hugging Face cache), and wsolbench never downloads "
        "at run time. Provide a local file with -o backbone.checkpoint=PATH (a torchvision "
        "ResNet50 state dict), or run without pretrained weights with --no-pretrained. To fill "
        'the cache on a machine with network: python -c "import torchvision; '
        "torchvision.models.resnet50(weights='IMAGENET1K_V1')\""
    )


# --------------------------------------------------------------------------------------------
# Weights: local files and the local caches
# --------------------------------------------------------------------------------------------


def _read_state_dict(path: Path) -> dict[str, Tensor]:
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
        first_line = (str(exc).splitlines() or [""])[0]
        raise PretrainedWeightsError(
            f"backbone checkpoint {path} cannot be read as a state dict with "
            f"weights_only=True ({type(exc).__name__}: {first_line}); save the weights with "
            "torch.save(model.state_dict(), PATH)"
        ) from None
    while isinstance(state, dict):
        nested = next((k for k in _NESTING_KEYS if isinstance(state.get(k), dict)), None)
        if nested is None or any(isinstance(v, Tensor) for v in state.values()):
            break
        state = state[nested]
    if not isinstance(state, dict) or not any(isinstance(v, Tensor) for v in state.values()):
        keys = ", ".join(map(str, list(state)[:5])) if isinstance(state, dict) else ""
        raise PretrainedWeightsError(
            f"backbone checkpoint {path} holds no state dict of tensors (found "
            f"{type(state).__name__}{' with keys ' + keys if keys else ''})"
        )
    state = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    stripped = True
    while stripped:
        stripped = False
        for prefix in _KEY_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                stripped = True
    return state


def _load_into(backbone: Backbone, state: dict, source: str, pretrained_cfg: dict) -> None:
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

    def optional(key: str) -> bool:
        return key.endswith("num_batches_tracked")

    missing = sorted(k for k in own if k not in state and not optional(k))
    unexpected = sorted(k for k in state if k not in own and not k.startswith(head_prefixes))
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        details = []
        if mismatched:
            shown = ", ".join(
                f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                for k in mismatched[:3]
            )
            details.append(f"{len(mismatched)} tensors of another shape ({shown})")
        if missing:
            details.append(f"{len(missing)} keys missing from the file ({', '.join(missing[:3])})")
        if unexpected:
            details.append(
                f"{len(unexpected)} keys the model does not have ({', '.join(unexpected[:3])})"
            )
        raise PretrainedWeightsError(
            f"{source} does not fit backbone {backbone.name!r}: {'; '.join(details)}. Is it a "
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


def _cached_weights(name: str, pretrained_cfg: dict) -> tuple[Path, str]:
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
