"""The MAC counter (wsolbench.cost.macs.MacCounter) against hand-derived counts and against an
independent dispatch-level count: every attention kernel counted, unknown ops never a silent zero.

Hand counts use one multiply-add = 1 MAC and count matrix products and convolutions only (no
biases, norms, activations, softmax, pooling), the convention of fvcore, open_clip and timm.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

from wsolbench.cost.formatting import MACS_LOWER_BOUND_MARK, format_cost
from wsolbench.cost.macs import MacCounter, UncountedOpsError, count_macs
from wsolbench.cost.profile import ProfileSettings, profile_method
from wsolbench.method import Capabilities, Prediction, WSOLMethod
from wsolbench.runs.profile import build_for_profile
from wsolbench.util.compat import ensure_torchvision

ensure_torchvision()


def vit_macs(tokens: int, width: int, mlp: int, depth: int, patch_in: int) -> int:
    """A pre-norm ViT: patch embedding (a patch_in → width convolution per patch token) and
    ``depth`` blocks of qkv (3 w²), scores and weighted values (2 L w per token), output
    projection (w²) and a two-layer MLP (2 w·mlp), per token."""
    patches = tokens - 1
    per_token = 3 * width * width + width * width + 2 * width * mlp
    attention = 2 * tokens * tokens * width
    return patches * patch_in * width + depth * (tokens * per_token + attention)


# open_clip ViT-B/16 image tower at 224 px: 197 tokens, width 768, MLP 3072, 12 blocks, patches of
# 3·16·16 values, then the 768 → 512 projection of the class token. Equals open_clip's published
# 35.13 GFLOPs / 2 = 17.57 GMACs for the tower.
OPEN_CLIP_VIT_B16 = vit_macs(197, 768, 3072, 12, 3 * 16 * 16) + 768 * 512
# timm DeiT-S/16 at 224: width 384, MLP 1536, 12 blocks, head 384 → 1000 on the class token.
TIMM_DEIT_S = vit_macs(197, 384, 1536, 12, 3 * 16 * 16) + 384 * 1000


def resnet50_macs(size: int = 224, classes: int = 1000) -> int:
    """torchvision / timm ResNet-50: 7×7 stem (stride 2), max-pool, bottlenecks with the stride on
    the 3×3 convolution and a 1×1 projection shortcut on each stage's first block, then fc."""
    side = size // 2
    total = side * side * 64 * 3 * 7 * 7
    side //= 2  # max-pool
    channels = 64
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            s = stride if block == 0 else 1
            out_side = side // s
            total += side * side * channels * planes  # 1×1 reduce, at the input resolution
            total += out_side * out_side * planes * planes * 9  # 3×3, strided
            total += out_side * out_side * planes * planes * 4  # 1×1 expand
            if block == 0:
                total += out_side * out_side * channels * planes * 4  # projection shortcut
            channels, side = planes * 4, out_side
    return total + channels * classes


def test_hand_counts_match_the_published_figures():
    # The formulas above against the figures the field quotes: open_clip's model profile, timm's
    # results tables (fvcore, which also counts one op per BatchNorm / LayerNorm element: timm's
    # figures sit 0.2-0.5 % above the matmul-and-conv count).
    assert OPEN_CLIP_VIT_B16 == 17_563_453_440
    assert OPEN_CLIP_VIT_B16 == pytest.approx(35.13e9 / 2, rel=0.001)
    assert resnet50_macs() == 4_089_184_256
    assert resnet50_macs() == pytest.approx(4.11e9, rel=0.006)
    assert TIMM_DEIT_S == pytest.approx(4.61e9, rel=0.003)


@contextlib.contextmanager
def mha_fastpath(enabled: bool):
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def counted(module: nn.Module, *inputs: torch.Tensor) -> MacCounter:
    counter = MacCounter()
    with torch.no_grad(), counter:
        module(*inputs)
    return counter


@pytest.fixture(scope="module")
def open_clip_visual():
    import open_clip

    model = open_clip.create_model("ViT-B-16", pretrained=None)
    visual = model.visual.eval().requires_grad_(False)  # frozen, as the CLIP baselines hold it
    return visual


def test_open_clip_vit_b16_tower_with_the_mha_fast_path(open_clip_visual):
    image = torch.randn(1, 3, 224, 224)
    with mha_fastpath(True):
        fast = counted(open_clip_visual, image)
    # The fast path ran (the op torch's own counter has no formula for) and was counted.
    assert fast.by_op["_native_multi_head_attention"] > 0
    assert fast.uncounted == {}
    assert fast.macs == OPEN_CLIP_VIT_B16
    with mha_fastpath(False), sdpa_kernel(SDPBackend.MATH):
        plain = counted(open_clip_visual, image)
    assert "_native_multi_head_attention" not in plain.by_op
    assert plain.macs == OPEN_CLIP_VIT_B16


def test_timm_vit_with_fused_and_math_attention():
    import timm
    from timm.layers import set_fused_attn

    model = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
    image = torch.randn(1, 3, 224, 224)
    fused = counted(model, image)  # F.scaled_dot_product_attention: the CPU flash kernel
    assert fused.by_op["_scaled_dot_product_flash_attention_for_cpu"] > 0
    assert fused.macs == TIMM_DEIT_S and fused.uncounted == {}
    with sdpa_kernel(SDPBackend.MATH):
        assert counted(model, image).macs == TIMM_DEIT_S
    set_fused_attn(False)  # explicit q @ kᵀ, softmax, @ v in the model's own code
    try:
        explicit = timm.create_model("deit_small_patch16_224", pretrained=False).eval()
        assert counted(explicit, image).macs == TIMM_DEIT_S
    finally:
        set_fused_attn(True)


def test_timm_resnet50():
    import timm

    model = timm.create_model("resnet50", pretrained=False).eval()
    result = counted(model, torch.randn(1, 3, 224, 224))
    assert result.macs == resnet50_macs() and result.uncounted == {}


def test_transformer_encoder_layer_fast_path_counts_as_the_slow_path():
    layer = nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True).eval()
    x = torch.randn(2, 10, 64)
    tokens = 2 * 10
    hand = tokens * (4 * 64 * 64 + 2 * 64 * 128) + 2 * 2 * 10 * 10 * 64
    with mha_fastpath(True):
        fast = counted(layer, x)
    assert fast.by_op.get("_transformer_encoder_layer_fwd") == hand
    with mha_fastpath(False):
        assert counted(layer, x).macs == hand


def test_fused_attention_backward_counts_as_the_math_backward():
    # Forward: scores and weighted values; backward: the four products of their gradients.
    q, k, v = (torch.randn(2, 3, 7, 8, requires_grad=True) for _ in range(3))

    def run(backend):
        counter = MacCounter()
        with sdpa_kernel(backend), counter:
            out = nn.functional.scaled_dot_product_attention(q, k, v)
            out.sum().backward()
        return counter

    fused, math_ = run(SDPBackend.FLASH_ATTENTION), run(SDPBackend.MATH)
    forward = 2 * 3 * 7 * 7 * (8 + 8)
    assert fused.by_op["_scaled_dot_product_flash_attention_for_cpu"] == forward
    assert fused.by_op["_scaled_dot_product_flash_attention_for_cpu_backward"] == 2 * forward
    assert fused.macs == math_.macs == 3 * forward


def test_an_op_without_a_formula_is_reported_never_a_silent_zero():
    class Whitening(nn.Module):
        def forward(self, x):
            return torch.linalg.svd(x.flatten(1) @ x.flatten(1).T).U  # SVD: no formula

    counter = counted(Whitening(), torch.randn(4, 3, 2, 2))
    assert counter.uncounted == {"_linalg_svd": 1}
    assert counter.by_op == {"mm": 4 * 12 * 4}

    class WithSvd(WSOLMethod):
        capabilities = Capabilities(trainable=False)

        def __init__(self, num_classes: int = 5):
            super().__init__(num_classes)
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def predict(self, images, labels):
            torch.linalg.svd(images.flatten(1) @ images.flatten(1).T)
            features = self.conv(images)
            return Prediction(features.mean((2, 3)), features.mean(1))

    settings = ProfileSettings(timing=False)
    cost = profile_method(WithSvd(), (8, 8), 5, "cpu", settings)
    assert cost["macs_uncounted"] == {"_linalg_svd": 1}
    text = format_cost(cost)
    assert f"MACs:        {MACS_LOWER_BOUND_MARK} " in text and "_linalg_svd" in text
    assert "WARNING" in text
    with pytest.raises(UncountedOpsError, match="_linalg_svd"):
        profile_method(WithSvd(), (8, 8), 5, "cpu", ProfileSettings(timing=False, strict_macs=True))


# ----------------------------------------------------------------------------------------------
# Every registered method against an independent count
# ----------------------------------------------------------------------------------------------


class IndependentCount(TorchDispatchMode):
    """A second counter, written apart from wsolbench.cost.macs: its own formulas for the plain
    matrix products and convolutions, run with every fused path switched off (MHA fast path off,
    math SDPA), so that all attention is plain matmuls. Any other op whose name says it
    multiply-accumulates fails the test."""

    def __init__(self):
        super().__init__()
        self.macs = 0
        self.unknown: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._overloadpacket.__name__
        out = func(*args, **kwargs)
        if name == "mm":
            (m, k), n = args[0].shape, args[1].shape[1]
            self.macs += m * k * n
        elif name == "addmm":
            (m, k), n = args[1].shape, args[2].shape[1]
            self.macs += m * k * n
        elif name == "bmm":
            (b, m, k), n = args[0].shape, args[1].shape[2]
            self.macs += b * m * k * n
        elif name == "baddbmm":
            (b, m, k), n = args[1].shape, args[2].shape[2]
            self.macs += b * m * k * n
        elif name == "convolution":
            weight = args[1]
            groups = args[8]
            # every output value takes (in_channels / groups) · kernel_area products
            self.macs += out.numel() * weight.shape[1] * weight[0, 0].numel()
            assert groups >= 1 and not args[6], "transposed convolution: not in these methods"
        elif any(w in name for w in ("attention", "mm", "conv", "linear", "matmul", "svd")):
            self.unknown[name] += 1
        return out


# clip_patch's value-only path at 224 px (MaskCLIP's value projection without the MLP): the tower,
# the value in-projection and output projection of the last block on all 197 tokens, the final
# projection of the 196 patch tokens, their cosine with one class embedding and the zero-shot
# logits over 200 classes: 17.87 G, the figure issue 12 measured independently.
CLIP_PATCH_VALUE_ONLY = (
    OPEN_CLIP_VIT_B16 + 2 * 197 * 768 * 768 + 196 * 768 * 512 + 196 * 512 + 512 * 200
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("center", []),
        ("cam", []),
        ("tedloc", []),
        ("clip_patch", []),
        ("clip_patch", ["patch_path=value_only"]),
        ("clip_gradcam", []),
    ],
)
def test_every_method_at_the_cub_size_matches_an_independent_count(name, overrides):
    method, protocol, _ = build_for_profile(name, "cub", overrides=overrides)
    images = torch.randn(1, 3, *protocol.eval_size)
    labels = torch.tensor([3])
    ours = count_macs(method, images, labels)
    assert ours["uncounted"] == {}

    from wsolbench.evaluate import predict_batch

    independent = IndependentCount()
    with mha_fastpath(False), sdpa_kernel(SDPBackend.MATH), torch.no_grad(), independent:
        predict_batch(method.eval(), images, labels)
    assert not independent.unknown
    assert ours["macs"] == pytest.approx(independent.macs, rel=0.005, abs=1)
    if name == "clip_patch" and overrides:
        assert ours["macs"] == CLIP_PATCH_VALUE_ONLY
        assert round(ours["macs"] / 1e9, 1) == 17.9
    if name == "clip_gradcam":
        # The tower, then the last block again with autograd and its backward to ln_1's output.
        assert ours["macs"] > OPEN_CLIP_VIT_B16 + 197 * (4 * 768 * 768 + 2 * 768 * 3072)
