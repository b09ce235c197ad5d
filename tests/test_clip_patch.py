"""clip_patch (value-path patch–text similarity) and the CLIP ViT internals it opens up, on the tiny
open_clip config with random towers; end to end through ``wsolbench run`` and ``compare``."""

import types

import pytest
import torch
from torch import nn

from methods.clip_models import CLIP_MEAN, CLIP_STD, TINY_CLIP, load_clip
from methods.clip_patch import ClipPatch
from methods.clip_vision import (
    UnsupportedTowerError,
    block_forward,
    embed,
    pooled_embedding,
    project_tokens,
    value_path,
    vit_tower,
)
from wsolbench.method import resolve_config

NAMES = ["red fox", "snowy owl", "blue whale"]


def build(cls=ClipPatch, *overrides, classnames=NAMES, seed=0):
    """The synthetic preset (tiny tower), random weights, no disk cache of text embeddings."""
    config = resolve_config(cls, "synthetic", ["clip.pretrained=false", *overrides])
    torch.manual_seed(seed)
    method = cls(
        num_classes=len(classnames), classnames=classnames, **{**config, "cache_text": False}
    )
    return method.eval()


def images(n=2, size=96, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_own_forward_equals_open_clips_at_the_native_size():
    loaded = load_clip(TINY_CLIP, seed=2)
    visual = vit_tower(loaded.model, TINY_CLIP, "test")
    batch = images()
    with torch.no_grad():
        x, grid = embed(visual, batch)
        for block in visual.transformer.resblocks:
            x, _ = block_forward(block, x)
        ours = pooled_embedding(visual, x)
        theirs = loaded.model.encode_image(batch)
        # the attention-returning path of a block is the same computation
        y, _ = embed(visual, batch)
        plain, _ = block_forward(visual.transformer.resblocks[0], y)
        weighted, attention = block_forward(visual.transformer.resblocks[0], y, need_attention=True)
    assert grid == (12, 12)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weighted, plain, rtol=1e-5, atol=1e-5)
    assert attention.shape == (2, 145, 145)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 145))


def test_the_value_path_is_not_the_attention_output_and_maps_are_on_the_patch_grid():
    patch, full = build(), build(ClipPatch, "patch_path=full")
    full.load_state_dict(patch.state_dict())  # same weights: only the path differs
    batch, labels = images(), torch.tensor([0, 2])
    value_maps = patch.predict(batch, labels).maps
    full_maps = full.predict(batch, labels).maps
    assert value_maps.shape == full_maps.shape == (2, 12, 12)  # 96 px / 8-px patches
    assert not torch.allclose(value_maps, full_maps, atol=1e-3)
    assert value_maps.abs().max() <= 1 + 1e-5  # cosines
    # the value path is the block's own weights applied to each token alone
    visual = patch.visual
    last = visual.transformer.resblocks[-1]
    with torch.no_grad():
        x, _, _ = patch.trunk(batch)
        width = last.attn.embed_dim
        values = nn.functional.linear(
            last.ln_1(x), last.attn.in_proj_weight[2 * width :], last.attn.in_proj_bias[2 * width :]
        )
        by_hand = project_tokens(visual, last.attn.out_proj(values)[:, 1:])
        torch.testing.assert_close(project_tokens(visual, value_path(last, x)[:, 1:]), by_hand)
        cosine = nn.functional.cosine_similarity(by_hand, patch.class_text[labels][:, None], dim=-1)
    torch.testing.assert_close(value_maps.flatten(1), cosine, rtol=1e-4, atol=1e-5)


def test_maps_follow_the_target_class_and_any_input_size():
    method = build()
    batch = images(1, size=48)  # the tiny test set's size: 6 × 6 patches, interpolated positions
    first = method.predict(batch, torch.tensor([0]))
    second = method.predict(batch, torch.tensor([1]))
    assert first.maps.shape == (1, 6, 6) and first.logits.shape == (1, 3)
    assert not torch.allclose(first.maps, second.maps)
    torch.testing.assert_close(first.logits, second.logits)  # zero-shot logits ignore labels
    odd = method.predict(images(1, size=52), torch.tensor([0]))  # not a multiple of 8: resized
    assert odd.maps.shape == (1, 6, 6)


def test_prompts_reach_the_text_tower(tokenized_prompts):
    seen = tokenized_prompts
    method = build(ClipPatch, "templates=['a sketch of a {}.', 'art of the {}']")
    assert seen == [
        "a sketch of a red fox.",
        "art of the red fox",
        "a sketch of a snowy owl.",
        "art of the snowy owl",
        "a sketch of a blue whale.",
        "art of the blue whale",
    ]
    assert method.class_text.shape == (3, 64)
    default = build()  # same seed, so the same towers: only the prompts differ
    renamed = build(ClipPatch, classnames=["red fox", "snowy owl", "grey whale"])
    torch.testing.assert_close(renamed.class_text[:2], default.class_text[:2])
    assert not torch.allclose(renamed.class_text[2], default.class_text[2])  # another name
    assert not torch.allclose(method.class_text[0], default.class_text[0])  # other templates


def test_text_embeddings_are_cached_on_disk_and_shared(tmp_path, monkeypatch):
    import methods.clip_text as clip_text

    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path))
    config = resolve_config(ClipPatch, "synthetic", ["clip.pretrained=false"])
    torch.manual_seed(0)
    first = ClipPatch(num_classes=3, classnames=NAMES, **config)
    files = sorted((tmp_path / "text").glob("*.pt"))
    assert len(files) == 1
    monkeypatch.setattr(clip_text, "encode_rows", lambda *a, **k: pytest.fail("not cached"))
    torch.manual_seed(0)
    again = ClipPatch(num_classes=3, classnames=NAMES, **config)
    assert torch.equal(first.class_text, again.class_text)


def test_unsupported_towers_are_refused_with_a_fix():
    from open_clip.transformer import VisionTransformer

    resnet_like = types.SimpleNamespace(visual=nn.Conv2d(3, 8, 3))
    with pytest.raises(UnsupportedTowerError, match="Conv2d image tower.*ViT-B-16"):
        vit_tower(resnet_like, "RN50", "clip_patch")
    custom = VisionTransformer(
        image_size=32, patch_size=8, width=32, layers=1, heads=2, mlp_ratio=2.0, qk_norm=True
    )
    with pytest.raises(UnsupportedTowerError, match="CustomResidualAttentionBlock"):
        vit_tower(types.SimpleNamespace(visual=custom), "custom", "clip_patch")


def test_only_the_image_tower_and_text_embeddings_are_kept():
    method = build()
    keys = set(method.inference_state_dict())
    assert {"class_text", "logit_scale"} <= keys
    assert all(k.startswith("visual.") for k in keys - {"class_text", "logit_scale"})
    assert not any(p.requires_grad for p in method.parameters())
    assert method.pretrained == "none"
    assert (method.image_mean, method.image_std) == (CLIP_MEAN, CLIP_STD)


def test_a_checkpoint_file_reaches_the_method_and_no_pretrained_wins(tmp_path):
    from methods.clip_models import ClipWeightsError

    source = build(seed=7)
    path = tmp_path / "tiny-clip.pt"
    torch.save(load_clip(TINY_CLIP, seed=11).model.state_dict(), path)
    config = resolve_config(
        ClipPatch, "synthetic", ["clip.pretrained=true", f"clip.checkpoint={path}"]
    )
    loaded = ClipPatch(num_classes=3, classnames=NAMES, **{**config, "cache_text": False})
    assert loaded.pretrained == f"file:{path.resolve()}"
    expected = load_clip(TINY_CLIP, checkpoint=str(path)).model.visual.state_dict()
    assert all(torch.equal(v, loaded.visual.state_dict()[k]) for k, v in expected.items())
    assert not torch.equal(loaded.class_text, source.class_text)
    # --no-pretrained sets clip.pretrained=false: random towers even with a checkpoint set
    off = resolve_config(
        ClipPatch, "synthetic", [f"clip.checkpoint={path}", "clip.pretrained=false"]
    )
    assert ClipPatch(num_classes=3, **{**off, "cache_text": False}).pretrained == "none"
    missing = resolve_config(
        ClipPatch, "synthetic", ["clip.pretrained=true", f"clip.checkpoint={tmp_path / 'x.pt'}"]
    )
    with pytest.raises(ClipWeightsError, match="-o clip.checkpoint=PATH"):
        ClipPatch(num_classes=3, **missing)
    with pytest.raises(ValueError, match="clip.checkpoint is empty"):
        ClipPatch(num_classes=3, **resolve_config(ClipPatch, "synthetic", ["clip.pretrained=true"]))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from wsolbench.data.synthetic import SyntheticConfig, generate

    config = SyntheticConfig(
        num_classes=3, image_size=48, train_per_class=1, val_per_class=2, test_per_class=3
    )
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", config)


@pytest.mark.parametrize("method", ["clip_patch", "clip_gradcam"])
def test_end_to_end_without_the_runner_and_marked_in_compare(
    method, tiny_root, tmp_path, monkeypatch, capsys
):
    import wsolbench.engine
    from wsolbench.cli import main
    from wsolbench.results import load_result

    def no_runner(*args, **kwargs):
        raise AssertionError("a training-free method reached the training engine")

    monkeypatch.setattr(wsolbench.engine, "train", no_runner)
    work = tmp_path / method
    argv = ["run", "--method", method, "--dataset", "synthetic", "--data-root", str(tiny_root)]
    assert main([*argv, "--work-dir", str(work), "--no-pretrained"]) == 0
    result = load_result(work / "result.json")
    assert result.pretrained == "none"
    assert result.config["clip"] == {"model": TINY_CLIP, "pretrained": False, "checkpoint": None}
    test = result.metrics["test"]["oracle"]
    assert {"maxboxacc_v2", "top1_loc", "top5_loc", "top1_cls", "pxap"} <= set(test)
    assert not (work / "weights.pt").exists()  # nothing trained, nothing exported
    capsys.readouterr()
    assert main(["compare", str(work)]) == 0
    table = capsys.readouterr().out
    assert f"{method}‡" in table and "no pretrained weights" in table
