"""``synthclip``: a CLIP of the synthetic world, pretrained by wsolbench itself.

No CLIP weights can be downloaded on the machines wsolbench runs on, so on the built-in
``synthetic`` protocol the CLIP methods (``clip_patch``, ``clip_gradcam``, TeD-Loc's text targets)
would only ever see random towers. ``synthclip-v1`` is a small open_clip model (:data:`MODEL`,
``wsolbench/blocks/clip_configs/wsolbench-synthclip-v1.json``) trained contrastively — open_clip's
own model and its :class:`open_clip.ClipLoss` — on image–caption pairs of the synthetic world
(:mod:`wsolbench.data.synthetic.captions`): a separate random stream and a broader vocabulary than
the benchmark's, captions that name the attributes and never the location, and no image of any
synthetic-v1 split.

Two builds have names (:data:`BUILDS`): ``synthclip-v1``, the presets' CLIP (and so the board's),
and ``synthclip-quick-v1``, the same recipe over fewer steps, which ``make demo`` uses to stay
within its time (README: the demo). Each is built once per :class:`SynthClipConfig` and cached as
``$WSOLBENCH_CACHE/synthclip/<name>-<digest>.pt``, a plain ``torch.save(model.state_dict())`` of
the registered open_clip config — the format a user's own CLIP file has — with a JSON record
beside it. Methods ask for one by name: a checkpoint value in :data:`BUILDS` (``-o
clip.checkpoint=synthclip-v1`` / ``-o text.checkpoint=synthclip-quick-v1``) makes
:func:`wsolbench.blocks.clip_models.load_clip` call :func:`ensure_synthclip`, which builds it on
first use (with a progress bar) and returns the file, which is then loaded exactly as a user's file
is. ``wsolbench prepare synthclip`` (``synthclip-quick``) ``[--out CACHE]`` builds it explicitly.

Training is deterministic per seed: the pairs are a pure function of (seed, index), the batches
and the flips come from a seeded generator, the weights from a seeded initialisation, and the
thread count is fixed (:attr:`SynthClipConfig.threads`) so that float reductions do not depend on
the caller's settings. The digest covers the config, the model config file, the caption
generator's version and the torch and open_clip versions.

This is a plain module of ``wsolbench.blocks`` (not a plugin folder): it registers no method.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from wsolbench.blocks.open_clip_configs import ClipWeightsError, create_model, import_open_clip
from wsolbench.util.atomic import build_lock, write_bytes_atomic, write_json_atomic
from wsolbench.util.cache import default_cache_dir

logger = logging.getLogger(__name__)

#: The name presets and users pass as a CLIP checkpoint to get this model.
SYNTHCLIP = "synthclip-v1"
#: The demo's build (``make demo``): the same recipe over fewer steps.
SYNTHCLIP_QUICK = "synthclip-quick-v1"
#: Its open_clip model config (``wsolbench/blocks/clip_configs/<MODEL>.json``).
MODEL = "wsolbench-synthclip-v1"
#: Class-prompt templates in the captions' own wording, for the presets that use this model.
PROMPT_TEMPLATES = ("a photo of a {}.", "a {}.", "a picture of a {}.")
#: Bump when training changes in a way the config fields do not capture.
TRAINING_VERSION = 1
_CONFIG_FILE = Path(__file__).with_name("clip_configs") / f"{MODEL}.json"

# CLIP's image normalization, which open_clip models expect
# (wsolbench.blocks.clip_models.CLIP_MEAN/STD).
_MEAN = (0.48145466, 0.4578275, 0.40821073)
_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class SynthClipConfig:
    """Everything that decides the trained weights.

    Attributes:
        seed: initialisation, batch order and flips; the pairs use it too (their own stream).
        pairs: image–caption pairs rendered once and cycled through.
        steps: optimizer steps.
        batch_size: pairs per step (the contrastive loss's negatives are the rest of the batch).
        lr: AdamW peak learning rate (linear warm-up, then cosine to 0).
        warmup_steps: linear warm-up length.
        weight_decay: AdamW decay of matrices (not of norms, biases, embeddings, logit scale).
        background_fraction: share of pairs that show no object.
        head_radius: range of the head radius as a fraction of the body length; wider than the
            benchmark's (0.08–0.10) so that the patterns are also seen large.
        threads: torch intra-op threads while training (fixed: reductions depend on it).
    """

    seed: int = 0
    pairs: int = 8000
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.1
    background_fraction: float = 0.04
    head_radius: tuple[float, float] = (0.08, 0.2)
    threads: int = 1

    def digest(self) -> str:
        """12 hex digits over the fields, the model config, and the code and library versions."""
        from wsolbench.data.synthetic.captions import CAPTION_GENERATOR_VERSION

        payload = {
            "config": asdict(self),
            "model": MODEL,
            "model_config": json.loads(_CONFIG_FILE.read_text(encoding="utf-8")),
            "training_version": TRAINING_VERSION,
            "caption_generator_version": CAPTION_GENERATOR_VERSION,
            "torch": torch.__version__.split("+")[0],
            "open_clip": _open_clip_version(),
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _open_clip_version() -> str:
    from importlib.metadata import version

    return version("open_clip_torch")


#: The checkpoint names a run may pass, each with the settings it is built with and about how
#: many minutes its build takes on this project's 2-core machine (one thread; docs/synthetic.md).
BUILDS: dict[str, tuple[SynthClipConfig, int]] = {
    SYNTHCLIP: (SynthClipConfig(), 5),
    SYNTHCLIP_QUICK: (SynthClipConfig(steps=650), 4),
}


def checkpoint_path(
    config: SynthClipConfig | None = None, cache_dir=None, name: str = SYNTHCLIP
) -> Path:
    """``<cache>/synthclip/<name>-<digest>.pt`` (whether or not it exists yet); ``config`` None:
    the named build's."""
    config = config or BUILDS[name][0]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return cache / "synthclip" / f"{name}-{config.digest()}.pt"


def ensure_synthclip(
    config: SynthClipConfig | None = None,
    cache_dir=None,
    *,
    progress: bool = True,
    name: str = SYNTHCLIP,
) -> Path:
    """The cached checkpoint of ``config``, trained now if it is not there yet.

    Args:
        config: the training settings (None: those of the build ``name`` in :data:`BUILDS`).
        cache_dir: cache root (default ``$WSOLBENCH_CACHE`` or ``~/.cache/wsolbench``).
        progress: show progress bars while rendering and training.
        name: the build's name (:data:`BUILDS`), which the file and its record carry.

    Returns:
        The path of a state-dict file of :data:`MODEL`, loadable with ``weights_only=True``.
    """
    config = config or BUILDS[name][0]
    path = checkpoint_path(config, cache_dir, name)
    if path.is_file():
        return path
    with build_lock(path):  # one build at a time (torchrun's ranks all ask)
        if not path.is_file():  # else built by the process this one waited for
            _build(config, path, progress, name)
    return path


def _build(config: SynthClipConfig, path: Path, progress: bool, name: str) -> None:
    """Train ``config`` and write its weights to ``path``, its record beside them."""
    minutes = f"about {BUILDS[name][1]} minutes" if name in BUILDS else "minutes"
    logger.warning(
        "building %s once (an open_clip %s trained on synthetic image-caption pairs; %s on 2 "
        "CPU cores); cached as %s",
        name,
        MODEL,
        minutes,
        path,
    )
    state, record = train_synthclip(config, progress=progress, name=name)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    # The record first, the weights last: a weights file is only ever there complete.
    write_json_atomic(path.with_suffix(".json"), record)
    write_bytes_atomic(path, buffer.getvalue())


def prepare_synthclip(cache_dir=None, seed: int = 0, name: str = SYNTHCLIP) -> str:
    """``wsolbench prepare synthclip`` (``synthclip-quick``): build (or find) the build ``name``
    in ``cache_dir``; returns what to print — where it is, and how runs find it."""
    from dataclasses import replace

    named = BUILDS[name][0]
    config = replace(named, seed=int(seed))
    path = ensure_synthclip(config, cache_dir, progress=True, name=name)
    lines = [f"{name} (seed {config.seed}) is {path}"]
    default = checkpoint_path(config, name=name) == path
    if config != named:
        lines.append(f"not {name} itself: use it with -o clip.checkpoint={path}")
    elif not default:
        lines.append(
            f"runs use it when WSOLBENCH_CACHE={Path(cache_dir).expanduser()}, or with "
            f"-o clip.checkpoint={path}"
        )
    return "\n".join(lines)


def synthclip_checkpoint(model_name: str, name: str = SYNTHCLIP) -> Path:
    """The file behind the checkpoint name ``name`` of :data:`BUILDS` (built on first use), for a
    model of ``model_name``, which must be :data:`MODEL` (``-o clip.model`` / ``-o text.model``).

    Raises:
        wsolbench.blocks.open_clip_configs.ClipWeightsError: another model was asked for.
    """
    if model_name != MODEL:
        raise ClipWeightsError(
            f"checkpoint {name} holds an open_clip {MODEL}, not a {model_name}; pass "
            f"-o clip.model={MODEL} (TeD-Loc: -o text.model={MODEL}) with it"
        )
    return ensure_synthclip(BUILDS[name][0], progress=True, name=name)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; norms, biases, embeddings and the logit scale keep their scale."""
    decay, keep = [], []
    for name, param in model.named_parameters():
        exempt = param.ndim < 2 or "embedding" in name or "logit_scale" in name
        (keep if exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def train_synthclip(
    config: SynthClipConfig, *, progress: bool = False, name: str = SYNTHCLIP
) -> tuple[dict, dict]:
    """Train :data:`MODEL` contrastively on rendered pairs (``name``: what the bars and the record
    call it).

    Returns:
        The state dict (CPU tensors) and a JSON-ready record (config, digest, losses, timing).
    """
    from wsolbench.data.synthetic.captions import render_pair
    from wsolbench.util.progress import progress as progress_bar

    open_clip = import_open_clip()
    started = time.monotonic()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = create_model(MODEL)
            tokenizer = open_clip.get_tokenizer(MODEL)
            size = int(model.visual.image_size[0])
            images = torch.empty((config.pairs, 3, size, size), dtype=torch.uint8)
            captions = []
            for index in progress_bar(
                range(config.pairs), desc=f"{name} pairs", enabled=progress, unit="pair"
            ):
                pair = render_pair(
                    config.seed, index, size, config.background_fraction, config.head_radius
                )
                images[index] = torch.from_numpy(pair.image).permute(2, 0, 1)
                captions.append(pair.caption)
            tokens = tokenizer(captions)
            rendered = time.monotonic() - started
            losses = _fit(model, images, tokens, config, progress_bar, progress, name)
    finally:
        torch.set_num_threads(threads)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    record = {
        "name": name,
        "model": MODEL,
        "digest": config.digest(),
        "config": asdict(config),
        "torch": torch.__version__,
        "open_clip": _open_clip_version(),
        "render_seconds": round(rendered, 1),
        "train_seconds": round(time.monotonic() - started - rendered, 1),
        "loss_first_50": round(sum(losses[:50]) / max(1, len(losses[:50])), 4),
        "loss_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
        "logit_scale": round(float(model.logit_scale.detach().exp()), 3),
    }
    return state, record


def _fit(
    model, images, tokens, config: SynthClipConfig, progress_bar, progress: bool, name: str
) -> list:
    """AdamW with warm-up and cosine decay over ``config.steps`` steps; returns the losses.

    Args:
        images: [N, 3, S, S] uint8 RGB.
        tokens: [N, context_length] int64.
    """
    from open_clip import ClipLoss

    model.train()
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay),
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
        # one fused kernel per step instead of a loop over tensors (the 3.2 M-entry token
        # embedding dominates the update); the same arithmetic
        fused=True,
    )
    loss_fn = ClipLoss()
    generator = torch.Generator().manual_seed(config.seed)
    mean = torch.tensor(_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(_STD).view(1, 3, 1, 1)
    count = images.shape[0]
    batch = min(config.batch_size, count)
    order, position = torch.randperm(count, generator=generator), 0
    losses = []
    bar = progress_bar(total=config.steps, desc=f"{name} training", enabled=progress)
    for step in range(config.steps):
        if position + batch > count:  # a new epoch: a new order
            order, position = torch.randperm(count, generator=generator), 0
        index = order[position : position + batch]
        position += batch
        x = images[index].float() / 255.0
        # flips and quarter turns keep every attribute (the captions never say where or which
        # way; the objects are drawn at any rotation)
        flip = torch.rand(batch, generator=generator) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        x = torch.rot90(x, int(torch.randint(4, (), generator=generator)), dims=(2, 3))
        x = (x - mean) / std
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, config)
        image_features, text_features, logit_scale = model(x, tokens[index])[:3]
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # CLIP's cap on the logit scale
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix_str(f"loss {losses[-1]:.3f}")
    bar.close()
    model.eval()
    return losses


def _learning_rate(step: int, config: SynthClipConfig) -> float:
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    return 0.5 * config.lr * (1 + math.cos(math.pi * (step - config.warmup_steps) / span))
