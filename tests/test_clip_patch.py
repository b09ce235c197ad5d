"""clip_patch (MaskCLIP's patch–text similarity) and the CLIP ViT internals it opens up, on tiny
open_clip configs with random towers: the map against MaskCLIP's formula computed in the test, the
other patch paths, TeD-Loc's ``clip`` teacher; end to end through ``wsolbench run`` and
``compare``."""

import hashlib
import types

import pytest
import torch
from clip_layouts import register_tiny_config
from clip_reference import assert_same_map, maskclip_map
from torch import nn

from methods.clip_patch import ClipPatch
from wsolbench.blocks import synthclip
from wsolbench.blocks.clip_models import CLIP_MEAN, CLIP_STD, load_clip
from wsolbench.blocks.clip_vision import (
    PATCH_PATHS,
    UnsupportedTowerError,
    block_forward,
    embed,
    pooled_embedding,
    project_tokens,
    vit_tower,
)
from wsolbench.blocks.open_clip_configs import TINY_CLIP
from wsolbench.config import resolve_config

NAMES = ["red fox", "snowy owl", "blue whale"]


def _sha256(path) -> str:
    """A file's sha256 hex, computed here (not by wsolbench)."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


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


@pytest.fixture(scope="module")
def deep_tower(tmp_path_factory):
    """A random 4-block tower (12-block ViT-B's layout, small) saved as an open_clip state dict,
    with its open_clip model (for the text side of the reference) and state."""
    folder = tmp_path_factory.mktemp("deep")
    name = register_tiny_config(
        "wsolbench-test-deep", folder, layers=4, width=32, head_width=16, image_size=32
    )
    towers = {}
    for activation in ("gelu", "quickgelu"):
        loaded = load_clip(name, seed=3, activation=activation)
        path = folder / f"{activation}.pt"
        torch.save(loaded.model.state_dict(), path)
        towers[activation] = (name, path, loaded)
    return towers


def by_file(name, path, activation, *overrides, cls=ClipPatch, classnames=NAMES):
    config = resolve_config(
        cls,
        "synthetic",
        [
            f"clip.model={name}",
            "clip.pretrained=true",
            f"clip.checkpoint={path}",
            f"clip.activation={activation}",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    method = cls(num_classes=len(classnames), classnames=classnames, **config)
    return method.eval()


def reference_text(loaded, prompts: list[str]) -> torch.Tensor:
    """open_clip's text embedding of each prompt, normalized: [P, d]."""
    with torch.no_grad():
        return nn.functional.normalize(loaded.model.encode_text(loaded.tokenizer(prompts)), dim=-1)


@pytest.mark.parametrize("activation", ["gelu", "quickgelu"])
@pytest.mark.parametrize("size", [(32, 32), (40, 56)], ids=["native", "interpolated"])
def test_the_map_is_maskclips(deep_tower, activation, size):
    """MaskCLIP's formula, computed in the test from the state dict, on a random tower."""
    name, path, loaded = deep_tower[activation]
    method = by_file(name, path, activation)
    assert method.patch_path == "maskclip"
    batch, labels = images(2, seed=1)[..., : size[0], : size[1]], torch.tensor([2, 0])
    maps = method.predict(batch, labels).maps
    state = {k: v.float() for k, v in torch.load(path, weights_only=True).items()}
    text = reference_text(loaded, [f"a photo of a {NAMES[i]}." for i in labels])
    with torch.no_grad():
        expected, grid = maskclip_map(state, batch, text, heads=2, act=activation)
    assert tuple(maps.shape[1:]) == grid == (size[0] // 8, size[1] // 8)
    for ours, theirs in zip(maps, expected, strict=True):
        assert_same_map(ours.numpy(), theirs.numpy())


def test_the_other_patch_paths(deep_tower):
    """``value_only`` drops the residual and the MLP, ``full`` is the ordinary block output."""
    name, path, _ = deep_tower["gelu"]
    paths = {p: by_file(name, path, "gelu", f"patch_path={p}") for p in PATCH_PATHS}
    batch, labels = images(2, size=32), torch.tensor([0, 1])
    maps = {p: m.predict(batch, labels).maps for p, m in paths.items()}
    visual = paths["maskclip"].visual
    last = visual.transformer.resblocks[-1]
    with torch.no_grad():
        x, _, _ = paths["maskclip"].trunk(batch)
        width = last.attn.embed_dim
        values = nn.functional.linear(
            last.ln_1(x), last.attn.in_proj_weight[2 * width :], last.attn.in_proj_bias[2 * width :]
        )
        value_only = project_tokens(visual, last.attn.out_proj(values)[:, 1:])
        full = project_tokens(visual, last(x)[:, 1:])  # batch-first open_clip block
    text = paths["maskclip"].class_text[labels][:, None]
    for path_name, tokens in (("value_only", value_only), ("full", full)):
        expected = nn.functional.cosine_similarity(tokens, text, dim=-1)
        torch.testing.assert_close(maps[path_name].flatten(1), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(maps["maskclip"], maps["value_only"], atol=1e-3)
    with pytest.raises(ValueError, match="'value' was the residual-free path, now 'value_only'"):
        build(ClipPatch, "patch_path=value")


def test_the_tedloc_clip_teacher_is_clip_patchs_map(deep_tower):
    from methods.tedloc.teachers import ClipTeacher

    name, path, _ = deep_tower["quickgelu"]
    method = by_file(name, path, "quickgelu")
    loaded = load_clip(name, checkpoint=str(path), activation="quickgelu")
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    teacher = ClipTeacher(loaded, method.class_text, imagenet)
    batch, labels = images(2, size=32, seed=4), torch.tensor([1, 2])
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in imagenet)
    clip_mean, clip_std = (torch.tensor(v).view(1, 3, 1, 1) for v in (CLIP_MEAN, CLIP_STD))
    student_input = ((batch * clip_std + clip_mean) - mean) / std  # the student's normalization
    torch.testing.assert_close(
        teacher.maps(student_input, labels, (4, 4)),
        method.predict(batch, labels).maps,
        rtol=1e-4,
        atol=1e-5,
    )


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
    import wsolbench.blocks.clip_text as clip_text

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
    from wsolbench.blocks.open_clip_configs import ClipWeightsError

    source = build(seed=7)
    path = tmp_path / "tiny-clip.pt"
    torch.save(load_clip(TINY_CLIP, seed=11).model.state_dict(), path)
    config = resolve_config(
        ClipPatch,
        "synthetic",
        [f"clip.model={TINY_CLIP}", "clip.pretrained=true", f"clip.checkpoint={path}"],
    )
    loaded = ClipPatch(num_classes=3, classnames=NAMES, **{**config, "cache_text": False})
    assert loaded.pretrained == f"file:{path.name} (sha256 {_sha256(path)[:12]}, gelu)"
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
        ClipPatch(
            num_classes=3,
            **resolve_config(
                ClipPatch, "synthetic", ["clip.pretrained=true", "clip.checkpoint=null"]
            ),
        )


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
    import wsolbench.train.engine
    from wsolbench.cli.main import main
    from wsolbench.results.record import load_result

    def no_runner(*args, **kwargs):
        raise AssertionError("a training-free method reached the training engine")

    monkeypatch.setattr(wsolbench.train.engine, "train", no_runner)
    work = tmp_path / method
    argv = ["run", "--method", method, "--dataset", "synthetic", "--data-root", str(tiny_root)]
    argv += ["--protocol", str(tiny_root / "protocol.yaml")]
    assert main([*argv, "--work-dir", str(work), "--no-pretrained"]) == 0
    result = load_result(work / "result.json")
    assert result.pretrained == "none"
    assert result.config["clip"] == {  # the synthetic preset's model, its weights turned off
        "model": synthclip.MODEL,
        "pretrained": False,
        "checkpoint": synthclip.SYNTHCLIP,
        "activation": "auto",
    }
    test = result.metrics["test"]["oracle"]
    assert {"maxboxacc_v2", "top1_loc", "top5_loc", "top1_cls", "pxap"} <= set(test)
    assert not (work / "weights.pt").exists()  # nothing trained, nothing exported
    capsys.readouterr()
    assert main(["compare", str(work)]) == 0
    table = capsys.readouterr().out
    assert f"{method}‡" in table and "no pretrained weights" in table
