"""GenPromp's inference cost, measured on its architecture (cost only: no localization).

GenPromp (Zhao et al., "Generative Prompt Model for Weakly Supervised Object Localization", ICCV
2023; code: github.com/callsys/GenPromp) is the method TeD-Loc claims to be much cheaper than. Its
weights are not needed to count its cost, so this module builds the networks its inference runs from
their published architecture configs with random weights, on the ``meta`` device (shapes only:
nothing is computed or allocated), and counts them with the same counter as every method
(:class:`wsolbench.cost.macs.MacCounter`).

What one test image costs, read from GenPromp's ``main.py`` (``test``), ``configs/cub.yml`` and
``datasets/base.py``:

- **Resolution**: the image is resized to 512 × 512 (``crop_size: 512``).
- **VAE encoder** (Stable Diffusion v1-4's ``AutoencoderKL``: 128/256/512/512 channels, two
  ResNet blocks per level, mid-block self-attention at 64 × 64), once per image:
  ``vae.encode(image).latent_dist.sample()`` → latents [4, 64, 64]. The decoder never runs.
- **Text encoder** (SD v1-4's CLIP ViT-L/14 text transformer: width 768, 12 layers, 12 heads,
  77 tokens, QuickGELU; the vocabulary grows by one learned concept token per class), 14 calls per
  localization round: each of the 7 caption templates with the class's concept token
  (representative embedding) and with its meta token (discriminative embedding); the code runs
  them for every image, and the embeddings are averaged and mixed (``combine_ratio``).
- **UNet** (SD v1-4's ``UNet2DConditionModel``: 320/640/1280/1280 channels, cross-attention to the
  77 × 768 text embedding, 8 heads), 2 calls per round: the noised latents at timesteps 0 and 99.
  The cross-attention probabilities are kept (prompt-to-prompt ``AttentionStore``: an explicit
  ``baddbmm`` + softmax, counted like any attention) and averaged into the map.
- **Rounds**: with ``eval_mode: gtk`` one round, for the ground-truth class; with ``top1`` (the CUB
  config) a round for the classifier's top-1 class and one for the ground-truth class, the second
  skipped when the whole batch's top-1 is right; ``top5`` runs six.
- **Classifier**: EfficientNet-B7, whose predictions GenPromp reads from a file
  (``cub_efficientnetb7.json``; the ILSVRC one is mmpretrain's ``efficientnet-b7_3rdparty``
  advprop model). It gives Top-1/Top-5 Loc their class and is part of the inference cost; it is
  counted here as timm's ``tf_efficientnet_b7`` at its native 600 × 600 (the resolution GenPromp
  used is not in its code).

The row wsolbench reports is one round (the ground-truth class: what GT-known Loc, and Top-1 Loc of
a correctly classified image, need) plus the classifier: the cheapest way to run GenPromp's
inference, so a cost ratio against it is conservative. The record also gives each component and the
two-round cost.

Needs the optional extra ``pip install -e '.[genpromp-cost]'`` (``diffusers``, pinned in
``constraints.txt``); ``open_clip`` and ``timm`` are core dependencies. Run::

    python -m wsolbench.cost.genpromp --json reports/cost/cub/genpromp.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from wsolbench.cost.formatting import MACS_COUNTER, uncounted_message
from wsolbench.cost.macs import MacCounter

SOURCE = (
    "callsys/GenPromp: main.py test() (VAE encode, 2 UNet calls per round at t = 0 and 99, 7 "
    "caption templates x {concept, meta} token through the text encoder), configs/cub.yml "
    "(512 x 512, eval_mode top1, EfficientNet-B7 predictions), datasets/base.py (templates)"
)
IMAGE_SIZE = 512
LATENT_SIZE = IMAGE_SIZE // 8  # the VAE downsamples 8x
CONTEXT = 77  # CLIP's text context
TEXT_WIDTH = 768
CLIP_VOCAB = 49408
TEMPLATES = 7  # GenPromp's caption templates ("a photo of a {}", ...)
TEXT_CALLS_PER_ROUND = 2 * TEMPLATES  # concept-token and meta-token prompts
UNET_CALLS_PER_ROUND = 2  # timesteps 0 and 99
CLASSIFIER = "tf_efficientnet_b7"
CLASSIFIER_SIZE = 600  # EfficientNet-B7's native resolution

# Stable Diffusion v1-4's published configs (unet/config.json, vae/config.json).
SD14_UNET = {
    "sample_size": LATENT_SIZE,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": TEXT_WIDTH,
    "attention_head_dim": 8,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "center_input_sample": False,
    "mid_block_scale_factor": 1,
}
SD14_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "sample_size": IMAGE_SIZE,
}


class MissingExtraError(ImportError):
    """diffusers is not installed (the ``genpromp-cost`` extra)."""


def _diffusers():
    from wsolbench.util.compat import ensure_torchvision

    ensure_torchvision()  # diffusers imports torchvision
    try:
        import diffusers
        from diffusers.models.attention_processor import AttnProcessor
    except ImportError as exc:
        raise MissingExtraError(
            f"GenPromp's cost needs diffusers ({exc}); install the extra: "
            "pip install -c constraints.txt -e '.[genpromp-cost]'"
        ) from None
    return diffusers, AttnProcessor


class VaeEncode(nn.Module):
    """``AutoencoderKL.encode(x).latent_dist.sample()``: the encoder and ``quant_conv`` only."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.encoder, self.quant_conv = vae.encoder, vae.quant_conv
        self._vae = [vae]  # not a submodule: the decoder's parameters are not GenPromp's inference

    def forward(self, image):  # [B, 3, 512, 512] → [B, 4, 64, 64]
        return self._vae[0].encode(image).latent_dist.sample()


class TextEncoder(nn.Module):
    """CLIPTextModel's last hidden state (what GenPromp takes: ``text_encoder(ids)[0]``): token
    and position embeddings, 12 causal pre-norm blocks, final LayerNorm; no pooling or projection.
    Built with open_clip's transformer, which has the same layers."""

    def __init__(self, vocab: int):
        super().__init__()
        from wsolbench.util.compat import ensure_torchvision

        ensure_torchvision()  # open_clip imports torchvision
        from open_clip.model import QuickGELU
        from open_clip.transformer import TextTransformer

        tower = TextTransformer(
            context_length=CONTEXT,
            vocab_size=vocab,
            width=TEXT_WIDTH,
            heads=12,
            layers=12,
            output_dim=None,
            act_layer=QuickGELU,
        )
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = tower.transformer
        self.ln_final = tower.ln_final
        self.register_buffer("causal", tower.attn_mask, persistent=False)

    def forward(self, ids):  # [B, 77] int64 → [B, 77, 768]
        x = self.token_embedding(ids) + self.positional_embedding
        return self.ln_final(self.transformer(x, attn_mask=self.causal))


class UNetCall(nn.Module):
    """One denoising call: ``unet(noisy_latents, timesteps, text_embeddings).sample``."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, latents, timesteps, context):
        return self.unet(latents, timesteps, context).sample


def build(num_classes: int = 200, device: str | torch.device = "meta") -> dict[str, nn.Module]:
    """GenPromp's inference networks with random weights (``meta``: no memory, no compute).

    Returns:
        ``{"vae_encoder", "text_encoder", "unet", "classifier"}`` modules, in eval mode.
    """
    diffusers, attn_processor = _diffusers()
    import timm

    with torch.device(device):
        unet = diffusers.UNet2DConditionModel(**SD14_UNET)
        # The classic attention processor: explicit scores (baddbmm), softmax, then values, as
        # GenPromp's AttentionStore computes them (the MAC count is the same with SDPA).
        unet.set_attn_processor(attn_processor())
        vae = diffusers.AutoencoderKL(**SD14_VAE)
        text = TextEncoder(CLIP_VOCAB + num_classes)  # one concept token added per class
        classifier = timm.create_model(CLASSIFIER, pretrained=False, num_classes=num_classes)
    modules = {
        "vae_encoder": VaeEncode(vae),
        "text_encoder": text,
        "unet": UNetCall(unet),
        "classifier": classifier,
    }
    return {name: module.eval() for name, module in modules.items()}


def _count(module: nn.Module, *inputs) -> tuple[int, dict, dict]:
    counter = MacCounter()
    with torch.no_grad(), counter:
        module(*inputs)
    return counter.macs, dict(sorted(counter.by_op.items())), dict(counter.uncounted)


def measure(num_classes: int = 200, device: str | torch.device = "meta") -> dict:
    """GenPromp's per-image inference cost on CUB (200 classes): the cost record of
    ``reports/cost/cub/genpromp.json``.

    Returns:
        ``components``: per network its parameters, MACs per call, calls per image and input;
        ``macs`` / ``params``: one round (the ground-truth class) plus the classifier, the row
        wsolbench reports; ``macs_two_rounds``: with the top-1 round of ``eval_mode: top1``.
    """
    modules = build(num_classes, device)
    images = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
    latents = torch.zeros(1, 4, LATENT_SIZE, LATENT_SIZE, device=device)
    ids = torch.zeros(1, CONTEXT, dtype=torch.int64, device=device)
    context = torch.zeros(1, CONTEXT, TEXT_WIDTH, device=device)
    timesteps = torch.full((1,), 99, dtype=torch.int64, device=device)
    crops = torch.zeros(1, 3, CLASSIFIER_SIZE, CLASSIFIER_SIZE, device=device)
    plan = {
        "vae_encoder": ((images,), 1, 0, "image [1, 3, 512, 512] -> latents [1, 4, 64, 64]"),
        "text_encoder": ((ids,), 0, TEXT_CALLS_PER_ROUND, "token ids [1, 77] -> [1, 77, 768]"),
        "unet": (
            (latents, timesteps, context),
            0,
            UNET_CALLS_PER_ROUND,
            "latents [1, 4, 64, 64], timestep, text [1, 77, 768]",
        ),
        "classifier": ((crops,), 1, 0, f"image [1, 3, {CLASSIFIER_SIZE}, {CLASSIFIER_SIZE}]"),
    }
    components: dict[str, dict] = {}
    uncounted: dict[str, int] = {}
    for name, (inputs, per_image, per_round, what) in plan.items():
        module = modules[name]
        macs, by_op, missing = _count(module, *inputs)
        for op, calls in missing.items():
            uncounted[f"{name}:{op}"] = calls
        components[name] = {
            "params": int(sum(p.numel() for p in module.parameters())),
            "macs_per_call": macs,
            "macs_by_op_per_call": by_op,
            "calls_per_image": per_image,
            "calls_per_round": per_round,
            "input": what,
        }

    def per_image(rounds: int) -> int:
        return sum(
            c["macs_per_call"] * (c["calls_per_image"] + rounds * c["calls_per_round"])
            for c in components.values()
        )

    params = sum(c["params"] for c in components.values())
    return {
        "method": "genpromp",
        "cost_only": True,
        "dataset": "cub",
        "protocol": "cub-v1",
        "num_classes": num_classes,
        "input_size": [IMAGE_SIZE, IMAGE_SIZE],
        "weights": "random (architecture from the published configs; cost does not depend on "
        "the weights)",
        "source": SOURCE,
        "params": {"total": params, "trainable": 0, "inference": params},
        "macs": per_image(1),
        "macs_two_rounds": per_image(2),
        "macs_uncounted": uncounted,
        "macs_counter": MACS_COUNTER,
        "components": components,
        "rounds_counted": 1,
        "grad_at_inference": False,
        "latency_ms": None,
        "throughput": None,
        "peak_memory_mb": None,
        "timing_conditions": None,
        "device": "meta",
        "device_name": "not timed (counted on the meta device)",
        "torch": torch.__version__,
        "diffusers": _diffusers()[0].__version__,
    }


def format_record(record: dict) -> str:
    """Human lines: each component, then the per-image totals."""
    lines = [f"GenPromp inference cost per image (cub, {record['num_classes']} classes)"]
    for name, c in record["components"].items():
        calls = (
            f"{c['calls_per_image']} per image"
            if c["calls_per_image"]
            else (f"{c['calls_per_round']} per round")
        )
        lines.append(
            f"  {name:13s} {c['params'] / 1e6:8.2f} M params  {c['macs_per_call'] / 1e9:9.2f} "
            f"GMACs per call  x {calls}  ({c['input']})"
        )
    lines.append(
        f"  one round + classifier: {record['macs'] / 1e9:.1f} GMACs, "
        f"{record['params']['inference'] / 1e6:.1f} M params; two rounds (top1 mode, top-1 "
        f"wrong): {record['macs_two_rounds'] / 1e9:.1f} GMACs"
    )
    if record["macs_uncounted"]:
        lines.append("  WARNING: " + uncounted_message(record["macs_uncounted"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the cost record here")
    parser.add_argument("--num-classes", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        record = measure(args.num_classes)
    except MissingExtraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_record(record))
    if args.json:
        from wsolbench.util.atomic import write_json_atomic

        write_json_atomic(args.json, record)
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
