"""clip_gradcam (CLIP-ES's Grad-CAM on CLIP over the image's class and background prompts, optional
attention-affinity refinement) on tiny open_clip configs with random towers: the map against
CLIP-ES's formulas computed in the test, the named variants, native-size input; and gradients at
inference in the evaluator: they work under the evaluator's no_grad and leave nothing behind
across batches."""

import gc
import hashlib
import weakref

import numpy as np
import pytest
import torch
from clip_layouts import register_tiny_config
from clip_reference import (
    CLIP_MEAN,
    CLIP_STD,
    assert_same_map,
    clip_es_input,
    clip_es_map,
    scoremap_boxes_mask,
)
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from methods.clip_gradcam import ClipGradCAM
from methods.clip_gradcam.method import box_mask, scale_like_grad_cam
from wsolbench.blocks.clip_models import load_clip
from wsolbench.blocks.open_clip_configs import TINY_CLIP
from wsolbench.config import resolve_config
from wsolbench.evaluate import predict_batch
from wsolbench.method import Capabilities, Prediction, WSOLMethod

NAMES = ["red fox", "snowy owl", "blue whale"]


# CLIP-ES's background words (linyq2117/CLIP-ES, clip_text.py, BACKGROUND_CATEGORY: the list its
# VOC CAMs use), spelt out here so that the method's own copy is checked, not read back
CLIPES_BACKGROUND_WORDS = (
    "ground", "land", "grass", "tree", "building", "wall", "sky", "lake", "water", "river", "sea",
    "railway", "railroad", "keyboard", "helmet", "cloud", "house", "mountain", "ocean", "road",
    "rock", "street", "valley", "bridge", "sign",
)  # fmt: skip


def _sha256(path) -> str:
    """A file's sha256 hex, computed here (not by wsolbench)."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def build(*overrides, classnames=NAMES, seed=0, preset="synthetic"):
    """The synthetic preset (synthclip's small model), random weights, no disk cache of text
    embeddings; ``preset=None``: CLIP-ES's own defaults on the tiny tower."""
    if preset is None:
        overrides = (f"clip.model={TINY_CLIP}", *overrides)
    config = resolve_config(ClipGradCAM, preset, ["clip.pretrained=false", *overrides])
    torch.manual_seed(seed)
    config = {**config, "cache_text": False}
    return ClipGradCAM(num_classes=len(classnames), classnames=classnames, **config).eval()


def images(n=2, size=96, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def method():
    return build()


def test_maps_are_non_negative_on_the_grid_and_follow_the_target_class(method):
    batch = images()
    first = method.predict(batch, torch.tensor([0, 0]))
    second = method.predict(batch, torch.tensor([1, 2]))
    assert first.maps.shape == (2, 12, 12) and first.logits.shape == (2, 3)
    assert (first.maps >= 0).all() and (second.maps >= 0).all()  # ReLU of the weighted sum
    assert first.maps.amax(dim=(1, 2)).gt(0).all()
    for i in range(2):
        assert not torch.allclose(first.maps[i], second.maps[i])
    torch.testing.assert_close(first.logits, second.logits)  # zero-shot logits ignore labels


@pytest.fixture(scope="module")
def deep_tower(tmp_path_factory):
    """A random 10-block tower (more blocks than the refinement's 8) saved as an open_clip state
    dict, and its open_clip model (for the text side of the reference)."""
    folder = tmp_path_factory.mktemp("deeper")
    name = register_tiny_config(
        "wsolbench-test-deeper", folder, layers=10, width=32, head_width=16, image_size=32
    )
    loaded = load_clip(name, seed=5, activation="quickgelu")
    path = folder / "tower.pt"
    torch.save(loaded.model.state_dict(), path)
    return name, path, loaded


def by_file(tower, *overrides, classnames=NAMES):
    name, path, _ = tower
    config = resolve_config(  # CLIP-ES's own prompts (the synthetic preset has synthclip's)
        ClipGradCAM,
        None,
        [
            f"clip.model={name}",
            "clip.pretrained=true",
            f"clip.checkpoint={path}",
            "clip.activation=quickgelu",
            *overrides,
        ],
    )
    return ClipGradCAM(num_classes=len(classnames), classnames=classnames, **config).eval()


@pytest.mark.parametrize("refine", [False, True], ids=["cam", "refined"])
@pytest.mark.parametrize("size", [(32, 32), (44, 60)], ids=["native", "rounded-up"])
def test_the_map_is_clip_es(deep_tower, refine, size):
    """CLIP-ES's CAM, computed in the test from the state dict (its own Grad-CAM, class set,
    background words, template, refinement), on a random tower."""
    method = by_file(deep_tower, f"refine={str(refine).lower()}")
    _, path, loaded = deep_tower
    assert is_default_clip_es(method)
    # 8-bit images, fed as the harness feeds them: /255, then CLIP's normalization
    pixels = np.random.default_rng(2).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    mean, std = np.array(CLIP_MEAN, np.float32), np.array(CLIP_STD, np.float32)
    batch = torch.from_numpy(((pixels / np.float32(255) - mean) / std).transpose(0, 3, 1, 2))
    labels = torch.tensor([2, 0])
    maps = method.predict(batch, labels).maps
    state = {k: v.float() for k, v in torch.load(path, weights_only=True).items()}
    with torch.no_grad():
        words = loaded.model.encode_text(
            loaded.tokenizer([f"a clean origami {w}." for w in CLIPES_BACKGROUND_WORDS])
        )
    scale = float(state["logit_scale"].exp())
    for index, label in enumerate(labels.tolist()):
        with torch.no_grad():
            prompt = loaded.tokenizer([f"a clean origami {NAMES[label]}."])
            text = nn.functional.normalize(loaded.model.encode_text(prompt), dim=-1)[0]
        image = clip_es_input(pixels[index], patch=8)
        expected = clip_es_map(state, image, text, words, 2, "quickgelu", refine, scale)
        assert maps[index].shape == expected.shape == (-(-size[0] // 8), -(-size[1] // 8))
        assert_same_map(maps[index].numpy(), expected)


def is_default_clip_es(method) -> bool:
    return (
        method.target == "patch_mean"
        and method.softmax_over == "target"
        and method.cam_templates == ["a clean origami {}."]
        and method.background_template == "a clean origami {}."
        and method.background_words == list(CLIPES_BACKGROUND_WORDS)
        and (method.refine_blocks, method.refine_iterations, method.refine_threshold) == (8, 3, 0.4)
    )


def test_the_named_variants_change_the_map(deep_tower):
    """The class token as target, and every class (or the predictions) in the softmax."""
    method = by_file(deep_tower)
    batch, labels = images(2, size=32, seed=3), torch.tensor([1, 2])
    default = method.predict(batch, labels).maps

    def variant(**settings):
        saved = {key: getattr(method, key) for key in settings}
        for key, value in settings.items():
            setattr(method, key, value)
        try:
            return method.predict(batch, labels).maps
        finally:
            for key, value in saved.items():
                setattr(method, key, value)

    for settings in ({"target": "class_token"}, {"softmax_over": "all"}):
        maps = variant(**settings)
        assert maps.shape == default.shape and (maps >= 0).all()
        assert not torch.allclose(maps, default, atol=1e-4), settings
    # with all three classes predicted, the class set is every class
    torch.testing.assert_close(
        variant(softmax_over="predicted", predicted_k=3), variant(softmax_over="all")
    )
    logits = method.predict(batch, labels).logits
    top = logits.argmax(dim=1)
    right = variant(softmax_over="predicted", predicted_k=1)
    for i in range(2):  # the top prediction joins the target; alone where it is the target
        same = torch.allclose(right[i], default[i])
        assert same == bool(top[i] == labels[i])
    with pytest.raises(ValueError, match="softmax_over must be one of"):
        build("softmax_over=every")


def test_prompts_and_background_words_reach_the_text_tower(tokenized_prompts):
    seen = tokenized_prompts
    custom = build(
        "templates=['itap of a {}.']",
        "cam_templates=['a rendering of a {}.']",
        "background_words=[lava, fog, Snowy Owl]",
        "background_template='a view of {}'",
    )
    assert seen == [
        "itap of a red fox.",  # zero-shot classification
        "itap of a snowy owl.",
        "itap of a blue whale.",
        "a rendering of a red fox.",  # the softmax's class rows
        "a rendering of a snowy owl.",
        "a rendering of a blue whale.",
        "a view of lava",  # a background word naming a class is dropped
        "a view of fog",
    ]
    assert custom.background_text.shape == (2, 64) and custom.cam_text.shape == (3, 64)
    seen.clear()
    default = build(preset=None)  # CLIP-ES's background prompts
    assert seen[6:] == [f"a clean origami {word}." for word in CLIPES_BACKGROUND_WORDS]
    assert default.background_text.shape == (len(CLIPES_BACKGROUND_WORDS), 64)


def test_background_words_change_the_map(method):
    without = build("background_words=[]")
    assert without.background_text.shape == (0, 64)
    batch, labels = images(), torch.tensor([0, 1])
    assert not torch.allclose(
        method.predict(batch, labels).maps, without.predict(batch, labels).maps
    )


def test_refinement_changes_the_map_and_stays_non_negative(method):
    refined = build("refine=true")
    refined.load_state_dict(method.state_dict())
    batch, labels = images(), torch.tensor([0, 1])
    plain_maps = method.predict(batch, labels).maps
    refined_maps = refined.predict(batch, labels).maps
    assert refined_maps.shape == plain_maps.shape and (refined_maps >= 0).all()
    assert not torch.allclose(refined_maps, plain_maps)
    # with no box at all (threshold above every level but the peak), nothing flows: zeros
    cam, _, grid, attentions = refined.cam(batch, labels)
    assert len(attentions) == 3  # synthclip's tower has 3 blocks (fewer than refine_blocks)
    assert torch.equal(
        refined.refine_cam(torch.zeros_like(cam), attentions, grid), torch.zeros_like(cam)
    )


def test_box_mask_is_clip_es_scoremap2bbox():
    cam = torch.zeros(1, 6, 6)
    cam[0, 1, 1] = 1.0  # one blob: (1, 1)-(2, 3)
    cam[0, 2, 2:4] = 0.6
    cam[0, 5, 5] = 0.3  # below 0.4 of the maximum: no box
    cam[0, 4, 0] = 0.45  # at the last column / row? no: (4, 0), a 1-cell box
    mask = box_mask(cam.flatten(1), (6, 6), 0.4).reshape(6, 6)
    expected = torch.zeros(6, 6)
    expected[1:3, 1:4] = 1
    expected[4, 0] = 1
    assert torch.equal(mask, expected)
    # CLIP-ES clips a box's far corner to (cols - 1, rows - 1): the last column is never covered
    edge = torch.zeros(1, 4, 4)
    edge[0, 1:3, 2:4] = 1.0
    expected = torch.zeros(4, 4)
    expected[1:3, 2:3] = 1
    assert torch.equal(box_mask(edge.flatten(1), (4, 4), 0.4).reshape(4, 4), expected)
    assert box_mask(torch.zeros(1, 36), (6, 6), 0.4).sum() == 0  # nothing passes: no box
    # the test's own scoremap2bbox agrees on random maps
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        cam = scale_like_grad_cam(torch.rand(1, 35, generator=generator) ** 3)
        reference = scoremap_boxes_mask(cam.reshape(5, 7).numpy(), 0.4)
        assert torch.equal(box_mask(cam, (5, 7), 0.4), torch.from_numpy(reference))


def test_native_resolution_feeds_each_image_at_its_own_size(tmp_path, monkeypatch):
    from wsolbench.counting import EvalSettings
    from wsolbench.data.metadata import read_split
    from wsolbench.data.synthetic import SyntheticConfig, generate
    from wsolbench.evaluate import evaluate_method

    config = SyntheticConfig(
        num_classes=3, image_size=48, train_per_class=1, val_per_class=1, test_per_class=2
    )
    root = generate(tmp_path / "tiny", config)
    meta = read_split(root / "metadata" / "test", num_classes=3)
    settings = EvalSettings((32, 32), 0.01, (30, 50, 70), boxes=True, masks=False)
    for native, size, batches in ((False, 32, 2), (True, 48, 6)):
        method = build(f"native_resolution={str(native).lower()}")
        seen = []

        def spy(images, labels, seen=seen, predict=method.predict):
            seen.append(tuple(images.shape))
            return predict(images, labels)

        monkeypatch.setattr(method, "predict", spy)
        counts = evaluate_method(
            method, meta, root / "images", settings, batch_size=4, progress=False
        )
        assert counts["n_images"] == 6
        assert len(seen) == batches and all(s[2:] == (size, size) for s in seen)


# --- gradients at inference in the evaluator -------------------------------------------------


class TensorsBorn(TorchDispatchMode):
    """Weak references to every tensor an operation creates while the mode is active (cheap, unlike
    scanning every Python object for tensors)."""

    def __init__(self):
        super().__init__()
        self.refs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, torch.Tensor):
                self.refs.append(weakref.ref(leaf))
        return out

    def alive(self) -> int:
        return sum(1 for ref in self.refs if ref() is not None)


def assert_flat(method, batches=3):
    """predict_batch, as the evaluator runs it, over several batches inside no_grad: no parameter
    keeps a gradient and no tensor made during a batch outlives it."""
    batch, labels = images(2, size=48), torch.tensor([0, 1])
    with torch.no_grad():
        predict_batch(method, batch, labels)  # first call: lazily built state may stay
        borns = []
        for _ in range(batches):
            with TensorsBorn() as born:
                maps, _ = predict_batch(method, batch, labels)
            del maps
            borns.append(born)
    gc.collect()  # cycles die here; what is left is referenced from somewhere
    survivors = [born.alive() for born in borns]
    assert all(p.grad is None for p in method.parameters()), "a parameter keeps .grad"
    assert survivors == [0] * batches, f"tensors outlive their batch: {survivors}"


class BackwardCAM(WSOLMethod):
    """Needs gradients and takes them with ``backward``: parameters collect ``.grad``."""

    capabilities = Capabilities(needs_grad_at_inference=True)

    def __init__(self, num_classes: int = 3):
        super().__init__(num_classes)
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)

    def predict(self, images, labels):
        features = self.conv(images)
        features.retain_grad()
        features[torch.arange(len(labels)), labels].sum().backward()
        return Prediction(None, torch.relu((features.grad * features).sum(1)).detach())


class LeakyCAM(BackwardCAM):
    """Keeps every batch's graph alive: what the flatness check must catch."""

    def __init__(self, num_classes: int = 3):
        super().__init__(num_classes)
        self.kept = []

    def predict(self, images, labels):
        self.kept.append(self.conv(images))
        return super().predict(images, labels)


def test_gradients_at_inference_leave_nothing_behind(method):
    assert_flat(method)
    method.refine = True  # the refinement keeps attention maps during predict
    try:
        assert_flat(method)
    finally:
        method.refine = False
    assert_flat(BackwardCAM())


def test_the_flatness_check_can_fail():
    with pytest.raises(AssertionError, match="outlive their batch"):
        assert_flat(LeakyCAM())
    grads = BackwardCAM()
    grads.zero_grad = lambda set_to_none=True: None  # an evaluator that forgets to free them
    with pytest.raises(AssertionError, match="keeps .grad"):
        assert_flat(grads)


def test_the_evaluator_runs_grad_cam_inside_no_grad(tmp_path):
    from wsolbench.counting import EvalSettings
    from wsolbench.data.metadata import read_split
    from wsolbench.data.synthetic import SyntheticConfig, generate
    from wsolbench.evaluate import evaluate_method

    config = SyntheticConfig(
        num_classes=3, image_size=48, train_per_class=1, val_per_class=1, test_per_class=3
    )
    root = generate(tmp_path / "tiny", config)
    meta = read_split(root / "metadata" / "test", num_classes=3)
    settings = EvalSettings((48, 48), 0.01, (30, 50, 70), boxes=True, masks=False)
    method = build()
    with torch.no_grad():
        counts = evaluate_method(
            method, meta, root / "images", settings, batch_size=2, progress=False
        )
    assert counts["n_images"] == 9
    assert all(p.grad is None for p in method.parameters())


# --- the acceptance command: OpenAI's archive through -o clip.checkpoint ---------------------


def test_a_run_on_openais_archive_works_or_names_the_command_that_does(tmp_path, capsys):
    """``wsolbench run --method clip_gradcam -o clip.checkpoint=ViT-B-16.pt`` with a TorchScript
    archive in OpenAI's layout (a tiny one): the wrong tower fails with one error line whose
    suggested model then runs."""
    import re

    from clip_layouts import random_openai_clip, write_openai_archive

    from wsolbench.cli.main import main
    from wsolbench.data.synthetic import SyntheticConfig, generate
    from wsolbench.results.record import load_result

    config = SyntheticConfig(
        num_classes=3, image_size=48, train_per_class=1, val_per_class=1, test_per_class=2
    )
    root = generate(tmp_path / "tiny", config)
    archive = tmp_path / "ViT-B-16.pt"
    write_openai_archive(random_openai_clip(seed=2), archive)
    argv = ["run", "--method", "clip_gradcam", "--dataset", "synthetic", "--data-root", str(root)]
    argv += ["--protocol", str(root / "protocol.yaml")]
    argv += ["-o", "clip.pretrained=true", "-o", f"clip.checkpoint={archive}"]
    capsys.readouterr()
    assert main([*argv, "-o", "clip.model=ViT-B-16", "--work-dir", str(tmp_path / "a")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not fit open_clip model ViT-B-16" in errors[0]
    suggested = re.search(r"\(e\.g\. ([\w.-]+)", errors[0]).group(1)
    # the tiny config and synthclip's (same shapes, longer context) both fit: either is right
    assert "-o clip.model=NAME" in errors[0] and suggested in (TINY_CLIP, "wsolbench-synthclip-v1")
    assert main([*argv, "-o", f"clip.model={suggested}", "--work-dir", str(tmp_path / "b")]) == 0
    result = load_result(tmp_path / "b" / "result.json")
    assert (
        result.pretrained
        == f"file:{archive.name} (sha256 {_sha256(archive)[:12]}, OpenAI TorchScript archive, "
        "quickgelu)"
    )


def test_grad_cam_runs_in_float32_under_a_callers_autocast(method, monkeypatch):
    """Under the caller's mixed precision (bfloat16 autocast on the CPU here, float16 on a GPU)
    the last block, the scores and their gradient are computed in float32: the gradient of a
    softmax score underflows in half precision. The map stays close to the float32 one."""
    seen = []
    grad = torch.autograd.grad

    def recording_grad(outputs, inputs, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), outputs.dtype))
        return grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", recording_grad)
    x, labels = images(), torch.tensor([0, 2])
    plain = method.predict(x, labels).maps
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = method.predict(x, labels).maps
    assert seen == [(False, torch.float32)] * 2
    assert mixed.dtype == torch.float32 and torch.isfinite(mixed).all()
    assert torch.allclose(mixed, plain, atol=0.05)
