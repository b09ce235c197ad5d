"""The ``has`` plugin: Hide-and-Seek's hiding rule, CAM at test time, conformance, a tiny run.

Run with ``pytest examples/wsolbench-has/tests`` after ``pip install -e examples/wsolbench-has``.
"""

import json

import pytest
import torch
from wsolbench.cli.main import main
from wsolbench.config import resolve_config
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.method import build_method
from wsolbench.registry import get_method
from wsolbench.testing import check_method

from wsolbench_has.method import HideAndSeek, hide_patches

TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=6, val_per_class=2, test_per_class=3
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def build(*overrides: str, num_classes: int = 3) -> HideAndSeek:
    cls = get_method("has")
    return build_method(cls, resolve_config(cls, "synthetic", list(overrides)), num_classes)


# --- the paper's rule, written out independently -------------------------------------------------


def papers_hiding(image, grid_sizes, hide_prob, generator):
    """The released ``hide_patch`` loop on one [C, H, W] image: one side S per image (drawn when
    there are several; 0 = no hiding), patches from the top-left, cut at the border, a patch
    hidden (set to 0, the mean after mean subtraction) when its uniform draw is <= hide_prob.
    The draws for one image come as one flat sequence, consumed in the loop's order."""
    image = image.clone()
    height, width = image.shape[1:]
    if len(grid_sizes) == 1:
        size = grid_sizes[0]
    else:
        size = grid_sizes[int(torch.randint(len(grid_sizes), (), generator=generator))]
    if size == 0:
        return image
    rows, cols = len(range(0, height, size)), len(range(0, width, size))
    draws = iter(torch.rand(rows * cols, generator=generator).tolist())
    for x in range(0, height, size):
        for y in range(0, width, size):
            x_end, y_end = min(height, x + size), min(width, y + size)
            if next(draws) <= hide_prob:
                image[:, x:x_end, y:y_end] = 0
    return image


@pytest.mark.parametrize(
    "shape, grid_sizes, hide_prob",
    [
        ((4, 3, 32, 32), [8], 0.5),  # patches tile the image
        ((4, 3, 20, 14), [6], 0.5),  # cut at the bottom and right borders; not square
        ((6, 3, 24, 24), [0, 4, 8, 12], 0.5),  # HaS-Mixed, 0 included
        ((4, 3, 16, 16), [4], 0.25),
    ],
)
def test_hiding_is_the_papers_rule(shape, grid_sizes, hide_prob):
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(7)) + 3.0  # no zeros
    got = hide_patches(images, grid_sizes, hide_prob, torch.Generator().manual_seed(1))
    reference = torch.Generator().manual_seed(1)
    expected = torch.stack([papers_hiding(i, grid_sizes, hide_prob, reference) for i in images])
    assert torch.equal(got, expected)
    hidden = (got == 0).float().mean()
    assert 0 < hidden < 1  # the case hides some patches and keeps others


def test_a_patch_is_hidden_with_probability_hide_prob():
    images = torch.ones(64, 3, 64, 64)
    for hide_prob in (0.5, 0.2):
        got = hide_patches(images, [4], hide_prob, torch.Generator().manual_seed(0))
        fraction = float((got == 0).float().mean())  # 16,384 patches: std of the mean < 0.004
        assert abs(fraction - hide_prob) < 0.02, (hide_prob, fraction)
    assert torch.equal(hide_patches(images, [4], 0.0), images)


def test_training_sees_hidden_patches_and_prediction_sees_the_whole_image():
    method = build("grid_size=8")
    seen = []
    method.features.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    images = torch.full((4, 3, 32, 32), 2.0)
    labels = torch.tensor([0, 1, 2, 0])
    torch.manual_seed(0)
    method.loss(images, labels)
    blocks = seen[-1].reshape(4, 3, 4, 8, 4, 8)  # 4 × 4 patches of 8 px
    zero = (blocks == 0).all(dim=(1, 3, 5))
    whole = (blocks == 2.0).all(dim=(1, 3, 5))
    assert (zero | whole).all() and zero.any() and whole.any()  # whole patches hidden, or kept
    method.eval()
    method.predict(images, labels)
    assert torch.equal(seen[-1], images)


def test_the_map_is_the_cam_of_the_target_class():
    method = build().eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([2, 0, 1])
    with torch.no_grad():
        prediction = method.predict(images, labels)
        features = method.features(images)  # F [B, D, h, w]
        weight = method.classifier.weight[:, :, 0, 0]  # W [K, D]
        # Zhou et al.: logits = W · GAP(F) + b; the map of class c = Σ_d W[c, d] F[d]
        logits = features.mean(dim=(2, 3)) @ weight.T + method.classifier.bias
        cams = torch.einsum("kd,bdhw->bkhw", weight, features)
    assert torch.allclose(prediction.logits, logits, atol=1e-5)
    assert torch.allclose(prediction.maps, cams[torch.arange(3), labels], atol=1e-5)


# --- the harness's view ---------------------------------------------------------------------------


def test_conformance():
    results = check_method("has")
    failed = [f"{r.name}: {r.detail}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def test_a_checkpoint_that_does_not_fit_is_refused_in_one_line(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(build("channels=[8, 8]", "strides=[2, 2]").state_dict(), path)
    with pytest.raises(ValueError, match="does not fit this CNN"):
        build("pretrained=true", f"checkpoint={path}")
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a plain state dict"):
        build("pretrained=true", f"checkpoint={path}")
    with pytest.raises(ValueError, match="no file is given"):
        build("pretrained=true")


def test_tiny_run_trains_evaluates_and_restarts_from_its_weights(tmp_path, capsys):
    root = generate(tmp_path / "tiny", TINY)
    common = ["--dataset", "synthetic", "--data-root", str(root), "--device", "cpu"]
    common += ["--protocol", str(root / "protocol.yaml"), "-o", "grid_size=8"]
    common += ["-o", "train.max_epochs=2", "-o", "train.batch_size=8"]
    first = tmp_path / "run"
    assert main(["run", "--method", "has", *common, "--work-dir", str(first)]) == 0
    result = json.loads((first / "result.json").read_text())
    assert result["method"] == "has" and result["pretrained"] == "none"
    assert result["config"]["grid_size"] == 8 and result["config"]["hide_prob"] == 0.5
    test = result["metrics"]["test"]["oracle"]
    assert {"maxboxacc_v2", "top1_loc", "top1_cls", "pxap"} <= set(test)
    assert (first / "weights.pt").is_file()

    second = tmp_path / "restart"
    weights = f"checkpoint={first / 'weights.pt'}"
    argv = ["run", "--method", "has", *common, "-o", "pretrained=true", "-o", weights]
    assert main([*argv, "--work-dir", str(second)]) == 0
    restarted = json.loads((second / "result.json").read_text())
    source = restarted["provenance"]["features"]
    assert source.startswith("file:weights.pt (sha256 ")  # by name and content
    assert restarted["pretrained"] == source
    capsys.readouterr()
