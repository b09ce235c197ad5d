"""clip_gradcam (Grad-CAM on CLIP over class and background prompts, optional attention-affinity
refinement) on the tiny open_clip config with random towers, and gradients at inference in the
evaluator: they work under the evaluator's no_grad and leave nothing behind across batches."""

import gc
import weakref

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from methods.clip_gradcam import ClipGradCAM
from methods.clip_gradcam.method import box_mask
from methods.clip_text import BACKGROUND_WORDS
from wsolbench.evaluate import predict_batch
from wsolbench.method import Prediction, WSOLMethod, resolve_config

NAMES = ["red fox", "snowy owl", "blue whale"]


def build(*overrides, classnames=NAMES, seed=0):
    """The synthetic preset (tiny tower), random weights, no disk cache of text embeddings."""
    config = resolve_config(ClipGradCAM, "synthetic", ["clip.pretrained=false", *overrides])
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


def test_grad_cam_matches_hooks_on_open_clips_own_forward(method):
    """The same Grad-CAM from open_clip's forward, with a hook at the last block's ln_1."""
    batch, labels = images(), torch.tensor([2, 1])
    captured = {}

    def leaf(module, inputs, output):
        captured["activation"] = output.detach().requires_grad_(True)
        return captured["activation"]

    handle = method.visual.transformer.resblocks[-1].ln_1.register_forward_hook(leaf)
    try:
        with torch.enable_grad():
            image = nn.functional.normalize(method.visual(batch), dim=-1)
            texts = torch.cat([method.class_text, method.background_text])
            scores = (method.logit_scale * image @ texts.T).softmax(dim=-1)
            scores[torch.arange(2), labels].sum().backward()
    finally:
        handle.remove()
    activation = captured["activation"]
    weights = activation.grad[:, 1:].mean(dim=1, keepdim=True)
    expected = torch.relu((weights * activation.detach()[:, 1:]).sum(-1)).reshape(2, 12, 12)
    torch.testing.assert_close(method.predict(batch, labels).maps, expected, rtol=1e-4, atol=1e-6)


def test_prompts_and_background_words_reach_the_text_tower(tokenized_prompts):
    seen = tokenized_prompts
    custom = build(
        "templates=['itap of a {}.']",
        "background_words=[lava, fog]",
        "background_template='a view of {}'",
    )
    assert seen == [
        "itap of a red fox.",
        "itap of a snowy owl.",
        "itap of a blue whale.",
        "a view of lava",
        "a view of fog",
    ]
    assert custom.background_text.shape == (2, 64)
    seen.clear()
    default = build()
    assert seen[3:] == [f"a photo of {word}." for word in BACKGROUND_WORDS]
    assert default.background_text.shape == (len(BACKGROUND_WORDS), 64)


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
    assert len(attentions) == 2  # the tiny tower has 2 blocks (fewer than refine_blocks)
    assert torch.equal(
        refined.refine_cam(torch.zeros_like(cam), attentions, grid), torch.zeros_like(cam)
    )


def test_box_mask_covers_the_boxes_of_the_cam_above_the_threshold():
    cam = torch.zeros(1, 6, 6)
    cam[0, 1, 1] = 1.0  # one blob: (1, 1)-(2, 3)
    cam[0, 2, 2:4] = 0.6
    cam[0, 5, 5] = 0.3  # below 0.4 of the range: no box
    mask = box_mask(cam.flatten(1), (6, 6), 0.4).reshape(6, 6)
    expected = torch.zeros(6, 6)
    expected[1:3, 1:4] = 1
    assert torch.equal(mask, expected)
    assert box_mask(torch.ones(1, 36), (6, 6), 0.4).sum() == 0  # a flat map has no box


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

    needs_grad_at_inference = True

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
    from wsolbench.data.metadata import read_split
    from wsolbench.data.synthetic import SyntheticConfig, generate
    from wsolbench.evaluate import EvalSettings, evaluate_method

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
