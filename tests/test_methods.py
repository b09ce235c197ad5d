"""Conformance of every method the registry finds, and proof that the checker catches bad ones."""

import argparse
from pathlib import Path

import pytest
import torch
from torch import nn

from wsolbench.cli.check import _add_check
from wsolbench.method import Capabilities, MethodConfig, Prediction, WSOLMethod
from wsolbench.registry import METHODS, get_method, list_methods
from wsolbench.testing import check_method


@pytest.mark.parametrize("name", list_methods())
def test_every_registered_method_conforms(name):
    results = check_method(name)
    failed = [f"{r.name}: {r.detail}" for r in results if not r.ok]
    assert not failed, f"{name} fails conformance:\n" + "\n".join(failed)
    names = [r.name for r in results]
    assert names[:5] == ["registered", "config", "builds", "predict", "deterministic"]
    assert "weights round-trip" in names


BUILT_INS = sorted(p.parent.name for p in Path(__file__).parents[1].glob("methods/*/__init__.py"))


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_built_in_method_says_what_it_computes_against_its_namesake(name):
    """A table row named after a paper says, in a note, how its default relates to that paper and
    which code it was checked against (or that there is none)."""
    reference = get_method(name).capabilities.reference
    assert reference.strip(), f"methods/{name}: declare capabilities.reference"
    assert "\n" not in reference  # one sentence: a table note


def test_the_built_ins_are_found():
    assert {"cam", "center", "clip_gradcam", "clip_patch", "tedloc"} <= set(BUILT_INS)


class TinyCam(WSOLMethod):
    """A correct little trainable method; the broken ones below change one thing each."""

    name = ""  # not registered: classes are handed to the checker directly
    config = MethodConfig(defaults={}, presets={"synthetic": {}})

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.features = nn.Conv2d(3, 8, 3, padding=1)
        self.classifier = nn.Conv2d(8, num_classes, 1)

    def class_maps(self, images):
        return self.classifier(torch.relu(self.features(images)))

    def loss(self, images, labels):
        logits = self.class_maps(images).mean(dim=(2, 3))
        return {"loss_cls": nn.functional.cross_entropy(logits, labels)}

    def predict(self, images, labels):
        maps = self.class_maps(images)
        return Prediction(maps.mean(dim=(2, 3)), maps[torch.arange(len(labels)), labels])


class NaNMaps(TinyCam):
    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        return Prediction(prediction.logits, prediction.maps * float("nan"))


class BatchDependent(TinyCam):
    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        # normalizing by a statistic of the whole batch couples the images
        return Prediction(prediction.logits, prediction.maps - prediction.maps.mean())


class WrongLogits(TinyCam):
    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        return Prediction(prediction.logits[:, :1], prediction.maps)


class NoLoss(TinyCam):
    loss = WSOLMethod.loss


class DeadBranch(TinyCam):
    """Inference uses ``extra``; the loss never trains it."""

    def __init__(self, num_classes: int):
        super().__init__(num_classes)
        self.extra = nn.Conv2d(3, 1, 1)

    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        return Prediction(prediction.logits, prediction.maps + self.extra(images)[:, 0])


class ForgetsABuffer(TinyCam):
    """Exports only the classifier: a fresh instance predicts other maps."""

    def inference_state_dict(self):
        return {k: v for k, v in self.state_dict().items() if k.startswith("classifier")}


class UndeclaredGradCAM(TinyCam):
    """Takes gradients in predict without declaring needs_grad_at_inference."""

    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        score = prediction.logits[torch.arange(len(labels)), labels].sum()
        (grad,) = torch.autograd.grad(score, self.features.weight)
        return Prediction(prediction.logits, prediction.maps * grad.mean())


class HalfMaps(TinyCam):
    """Maps returned in float16 (the docs allow any float tensor)."""

    def predict(self, images, labels):
        prediction = super().predict(images, labels)
        return Prediction(prediction.logits, prediction.maps.half())


def verdicts(cls) -> dict[str, bool]:
    return {r.name: r.ok for r in check_method(cls)}


def test_float16_maps_pass_the_per_image_check_at_their_own_resolution():
    """float32 noise of batched kernels rounds to a float16 ulp: not a coupling of images."""
    assert verdicts(HalfMaps)["per-image"] is True


def test_a_correct_unregistered_method_passes_all_but_registration():
    results = verdicts(TinyCam)
    assert results.pop("registered") is False
    assert all(results.values()), results
    assert set(results) >= {"predict", "per-image", "loss", "gradients", "sgd step"}


@pytest.mark.parametrize(
    ("cls", "failing"),
    [
        (NaNMaps, "predict"),
        (BatchDependent, "per-image"),
        (WrongLogits, "predict"),
        (NoLoss, "loss"),
        (DeadBranch, "gradients"),
        (ForgetsABuffer, "weights round-trip"),
    ],
)
def test_the_checker_catches_a_broken_method(cls, failing):
    results = verdicts(cls)
    assert results[failing] is False, results
    assert results["builds"] is True


def test_a_predict_taking_gradients_undeclared_is_named_with_the_capability():
    detail = {r.name: r.detail for r in check_method(UndeclaredGradCAM)}
    assert "set capabilities = Capabilities(needs_grad_at_inference=True)" in detail["predict"]

    class Declared(UndeclaredGradCAM):
        capabilities = Capabilities(needs_grad_at_inference=True)

    assert verdicts(Declared)["predict"] is True


def test_loss_verdicts_are_worded_in_capabilities():
    detail = {r.name: r.detail for r in check_method(NoLoss)}
    assert detail["loss"] == "capabilities.trainable is True but loss() is not implemented"

    class TrainingFree(NoLoss):
        capabilities = Capabilities(trainable=False)

    detail = {r.name: r.detail for r in check_method(TrainingFree)}
    assert detail["training-free"] == "capabilities.trainable is False: no loss needed"
    assert detail["config"] == "config.defaults + config.presets ['synthetic'] resolve"


def test_a_preset_key_the_defaults_lack_is_named_in_the_guides_words():
    class Stray(TinyCam):
        config = MethodConfig(presets={"synthetic": {"width": 3}})

    detail = {r.name: r.detail for r in check_method(Stray)}
    assert detail["config"] == "config.presets['synthetic'] sets keys config.defaults lacks: width"


def test_a_class_declaring_the_old_interface_is_refused_before_any_check():
    class OldStyle(TinyCam):
        trainable = False

    results = check_method(OldStyle)
    assert [(r.name, r.ok) for r in results] == [("registered", False)]
    assert "declares `trainable = False`, the old interface; declare `capabilities = " in (
        results[0].detail
    )


def test_nan_maps_are_reported_with_a_count():
    detail = {r.name: r.detail for r in check_method(NaNMaps, batch_size=2, image_size=8)}
    assert "non-finite" in detail["predict"]


def check_command(argv: list[str]) -> int:
    """``wsolbench check ...`` through its own sub-parser (``cli.py`` wires the same one)."""
    parser = argparse.ArgumentParser(prog="wsolbench")
    _add_check(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_check_command_exit_status(monkeypatch, capsys):
    assert check_command(["check", "center"]) == 0
    out = capsys.readouterr().out
    assert "PASS  predict" in out and "all" in out and "passed" in out
    monkeypatch.setitem(METHODS._module_dict, "broken_batch", BatchDependent)
    monkeypatch.setattr(BatchDependent, "name", "broken_batch")
    assert check_command(["check", "broken_batch"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  per-image" in out and "PASS  registered" in out
