"""The namesakes' maps, computed from their published formulas on a CLIP state dict (test helper).

Written independently of ``methods/``: plain tensor operations on the open_clip state dict's
tensors (OpenAI's key names), sequence of operations as the namesakes' code runs them:

- MaskCLIP (chongzhou96/MaskCLIP, ``mmseg/models/backbones/vit.py`` ``TransformerEncoderLayer``
  with ``return_qkv``; ``decode_heads/maskclip_head.py``): in the last block,
  ``v = out_proj(W_v · ln_1(x) + b_v) + x``, ``v = v + mlp(ln_2(v))``; then ``ln_post``, ``proj``;
  map = cos(patch feature, text). Position embeddings resized bicubically.
- CLIP-ES (linyq2117/CLIP-ES, ``clip/model.py`` ``forward_last_layer``, ``generate_cams_voc12.py``,
  ``pytorch_grad_cam``, ``utils.py`` ``scoremap2bbox``): the score is
  ``softmax(100 · cos(proj(mean_patches(ln_post(x_L))), [class; background]))[class]``; Grad-CAM at
  the last block's ``ln_1`` output over patch tokens, ReLU, scaled twice by
  ``(c − min) / (1e-7 + max)``; refinement with the last 8 blocks' attention, column/row
  normalizations (1 + 2 rounds), symmetrization, one squaring, the box mask, and a product with
  the CAM. Each side of the 8-bit image rounded up to the patch size by PIL's bicubic resize,
  before CLIP's normalization (``clip_es_input``); positions resized bilinearly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor


def layer_norm(x: Tensor, state: dict, prefix: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], state[f"{prefix}.weight"], state[f"{prefix}.bias"], 1e-5)


def linear(x: Tensor, state: dict, prefix: str) -> Tensor:
    return x @ state[f"{prefix}.weight"].T + state[f"{prefix}.bias"]


def activation_fn(name: str):
    if name == "quickgelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    return F.gelu


def attention(y: Tensor, state: dict, prefix: str, heads: int) -> tuple[Tensor, Tensor]:
    """Multi-head self-attention of batch-first ``y`` [B, L, D]: (output [B, L, D] after the
    output projection, head-averaged softmax weights [B, L, L])."""
    b, n, d = y.shape
    qkv = y @ state[f"{prefix}.in_proj_weight"].T + state[f"{prefix}.in_proj_bias"]
    q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in qkv.split(d, dim=-1))
    weights = (q @ k.transpose(-1, -2) / math.sqrt(d // heads)).softmax(dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, d)
    return linear(out, state, f"{prefix}.out_proj"), weights.mean(dim=1)


def mlp(x: Tensor, state: dict, prefix: str, act) -> Tensor:
    return linear(act(linear(x, state, f"{prefix}.c_fc")), state, f"{prefix}.c_proj")


def block(x: Tensor, state: dict, index: int, heads: int, act) -> tuple[Tensor, Tensor]:
    prefix = f"visual.transformer.resblocks.{index}"
    out, weights = attention(layer_norm(x, state, f"{prefix}.ln_1"), state, f"{prefix}.attn", heads)
    x = x + out
    return x + mlp(layer_norm(x, state, f"{prefix}.ln_2"), state, f"{prefix}.mlp", act), weights


def tokens_in(
    state: dict, images: Tensor, size: tuple[int, int], image_mode: str | None, position_mode: str
) -> tuple[Tensor, tuple[int, int]]:
    """Images resized to ``size`` (a multiple of the patch; ``image_mode`` None: they are at that
    size already), patch-embedded, class token and (resized) position embedding added,
    ``ln_pre``: [B, 1 + N, D] and the grid."""
    conv = state["visual.conv1.weight"]
    patch = conv.shape[-1]
    if tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode=image_mode, align_corners=False)
    x = F.conv2d(images, conv, stride=patch)
    grid = tuple(x.shape[-2:])
    x = x.flatten(2).transpose(1, 2)
    positions = state["visual.positional_embedding"]
    side = int(round(math.sqrt(positions.shape[0] - 1)))
    patches = positions[1:]
    if (side, side) != grid:
        table = patches.T.reshape(1, -1, side, side)
        table = F.interpolate(table, size=grid, mode=position_mode, align_corners=False)
        patches = table.reshape(positions.shape[1], -1).T
    cls = state["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + torch.cat([positions[:1], patches])
    return layer_norm(x, state, "visual.ln_pre"), grid


def layers(state: dict) -> int:
    return len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})


def maskclip_map(
    state: dict, images: Tensor, text: Tensor, heads: int, act: str
) -> tuple[Tensor, tuple[int, int]]:
    """MaskCLIP's map [B, N] of one text embedding per image ``text`` [B, d], positions resized
    bicubically; ``images`` are taken as normalized (MaskCLIP's configs use ImageNet's mean and
    std, wsolbench CLIP's: a declared departure). A side that is not a multiple of the patch is
    rounded to the nearest multiple (bilinear) as wsolbench does, where MaskCLIP would pad it:
    call it with multiples to compare with MaskCLIP."""
    patch = state["visual.conv1.weight"].shape[-1]
    size = tuple(max(1, round(s / patch)) * patch for s in images.shape[-2:])
    x, grid = tokens_in(state, images, size, "bilinear", "bicubic")
    fn = activation_fn(act)
    depth = layers(state)
    for index in range(depth - 1):
        x, _ = block(x, state, index, heads, fn)
    prefix = f"visual.transformer.resblocks.{depth - 1}"
    y = layer_norm(x, state, f"{prefix}.ln_1")
    d = x.shape[-1]
    v = y @ state[f"{prefix}.attn.in_proj_weight"][2 * d :].T
    v = v + state[f"{prefix}.attn.in_proj_bias"][2 * d :]
    v = linear(v, state, f"{prefix}.attn.out_proj") + x
    v = v + mlp(layer_norm(v, state, f"{prefix}.ln_2"), state, f"{prefix}.mlp", fn)
    features = layer_norm(v, state, "visual.ln_post") @ state["visual.proj"]
    features = F.normalize(features[:, 1:], dim=-1)
    return (features * F.normalize(text, dim=-1)[:, None]).sum(-1), grid


def scale_cam_image(cam: np.ndarray) -> np.ndarray:
    cam = cam - np.min(cam)
    return cam / (1e-7 + np.max(cam))


def scoremap_boxes_mask(scoremap: np.ndarray, threshold: float) -> np.ndarray:
    """The affinity mask CLIP-ES builds from ``scoremap2bbox(..., multi_contour_eval=True)``."""
    height, width = scoremap.shape
    image = (scoremap * 255).astype(np.uint8)
    _, binary = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    boxes = [[0, 0, 0, 0]]
    if contours:
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
    mask = np.zeros((height, width), dtype=np.float32)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = 1
    return mask.reshape(1, -1)


#: CLIP's image normalization (OpenAI's), which CLIP-ES's ``Normalize`` uses
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_es_input(pixels: np.ndarray, patch: int) -> Tensor:
    """CLIP-ES's input of an 8-bit RGB image [H, W, 3]: each side rounded up to the patch size by
    PIL's bicubic resize (its torchvision ``Resize`` of the PIL image), then ``ToTensor`` and
    CLIP's normalization: [1, 3, H', W']."""
    height, width = pixels.shape[:2]
    size = (math.ceil(height / patch) * patch, math.ceil(width / patch) * patch)
    image = Image.fromarray(pixels)
    if (height, width) != size:
        image = image.resize((size[1], size[0]), Image.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())[None]


def clip_es_map(
    state: dict,
    image: Tensor,
    class_text: Tensor,
    background_text: Tensor,
    heads: int,
    act: str,
    refine: bool,
    logit_scale: float,
) -> np.ndarray:
    """CLIP-ES's CAM (refined or not) of one image [1, 3, H, W] (:func:`clip_es_input`: sides
    multiples of the patch) for the class ``class_text`` [d] against ``background_text`` [W, d]:
    [rows, cols]."""
    patch = state["visual.conv1.weight"].shape[-1]
    assert all(side % patch == 0 for side in image.shape[-2:]), "give clip_es_input's image"
    x, grid = tokens_in(state, image, tuple(image.shape[-2:]), None, "bilinear")
    fn = activation_fn(act)
    depth = layers(state)
    attentions = []
    with torch.no_grad():
        for index in range(depth - 1):
            x, weights = block(x, state, index, heads, fn)
            attentions.append(weights)
    prefix = f"visual.transformer.resblocks.{depth - 1}"
    activation = layer_norm(x, state, f"{prefix}.ln_1").detach().requires_grad_(True)
    with torch.enable_grad():
        out, weights = attention(activation, state, f"{prefix}.attn", heads)
        h = x + out
        h = h + mlp(layer_norm(h, state, f"{prefix}.ln_2"), state, f"{prefix}.mlp", fn)
        feature = layer_norm(h, state, "visual.ln_post")[:, 1:].mean(dim=1) @ state["visual.proj"]
        feature = feature / feature.norm(dim=1, keepdim=True)
        texts = torch.cat([class_text[None], background_text])
        texts = texts / texts.norm(dim=1, keepdim=True)
        probabilities = (logit_scale * feature @ texts.T).softmax(dim=-1)
        probabilities[0, 0].backward()
    attentions.append(weights.detach())
    grads = activation.grad[0, 1:].T.reshape(-1, *grid).numpy()  # [D, rows, cols]
    acts = activation.detach()[0, 1:].T.reshape(-1, *grid).numpy()
    cam = np.maximum((np.mean(grads, axis=(1, 2))[:, None, None] * acts).sum(axis=0), 0)
    cam = scale_cam_image(scale_cam_image(cam.astype(np.float32)))
    if not refine:
        return cam
    affinity = torch.stack([a[0, 1:, 1:] for a in attentions])[-8:].mean(dim=0).float()
    trans = affinity / affinity.sum(dim=0, keepdim=True)
    trans = trans / trans.sum(dim=1, keepdim=True)
    for _ in range(2):
        trans = trans / trans.sum(dim=0, keepdim=True)
        trans = trans / trans.sum(dim=1, keepdim=True)
    trans = (trans + trans.T) / 2
    trans = trans @ trans
    trans = trans * torch.from_numpy(scoremap_boxes_mask(cam, 0.4))
    refined = trans @ torch.from_numpy(cam).reshape(-1, 1)
    return refined.reshape(grid).numpy()


def minmax(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return (x - x.min()) / max(x.max() - x.min(), 1e-12)


def assert_same_map(ours, reference) -> None:
    """Correlation ≥ 0.999 and max abs difference ≤ 1e-4 after min-max normalization."""
    a, b = minmax(ours), minmax(reference)
    assert a.shape == b.shape
    correlation = float(np.corrcoef(a, b)[0, 1])
    difference = float(np.abs(a - b).max())
    assert correlation >= 0.999 and difference <= 1e-4, (correlation, difference)
