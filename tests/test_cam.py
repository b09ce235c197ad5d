"""The CAM baseline: maps and logits by hand, presets, lr multipliers, missing weights, a run."""

import pytest
import torch

from methods.cam import CAM
from wsolbench.cli.main import main
from wsolbench.config import resolve_config
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.method import build_method
from wsolbench.results.record import load_result
from wsolbench.testing import check_method

TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2}


def cam(name: str, num_classes: int = 4, **kwargs) -> CAM:
    torch.manual_seed(0)
    backbone = {"name": name, "pretrained": False, "checkpoint": None, "kwargs": kwargs}
    return CAM(num_classes=num_classes, backbone=backbone, classifier_init="default").eval()


def test_cnn_map_is_the_classifier_weighted_sum_of_features():
    method = cam("resnet18")
    images, labels = torch.randn(3, 3, 64, 64), torch.tensor([2, 0, 3])
    prediction = method.predict(images, labels)
    features = method.backbone(images)  # [3, 512, 2, 2]
    weight = method.classifier.weight[:, :, 0, 0]  # [K, D]
    for b in range(3):
        by_hand = sum(weight[labels[b], d] * features[b, d] for d in range(features.shape[1]))
        torch.testing.assert_close(prediction.maps[b], by_hand, rtol=1e-4, atol=1e-4)
    pooled = features.mean(dim=(2, 3))
    torch.testing.assert_close(
        prediction.logits, pooled @ weight.T + method.classifier.bias, rtol=1e-4, atol=1e-4
    )


def test_vit_map_is_the_per_patch_logit_and_logits_their_mean():
    method = cam("vit_tiny_patch16_224", **TINY_VIT)
    images, labels = torch.randn(2, 3, 48, 64), torch.tensor([1, 3])
    prediction = method.predict(images, labels)
    tokens = method.backbone.model.forward_features(images)[:, 1:]  # [2, 12, 32]
    weight, bias = method.classifier.weight[:, :, 0, 0], method.classifier.bias
    per_patch = tokens @ weight.T + bias  # [2, 12, K]: a linear classifier on every patch
    assert tuple(prediction.maps.shape) == (2, 3, 4)
    for b in range(2):
        expected = (per_patch[b, :, labels[b]] - bias[labels[b]]).reshape(3, 4)
        torch.testing.assert_close(prediction.maps[b], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(prediction.logits, per_patch.mean(dim=1), rtol=1e-4, atol=1e-5)


def test_lr_mult_hits_only_the_classifier():
    from mmengine.optim import build_optim_wrapper

    for name, kwargs in [("resnet18", {}), ("vit_tiny_patch16_224", TINY_VIT), ("wsolcnn", {})]:
        method = cam(name, **kwargs)
        hits = [n for n, _ in method.named_parameters() if "classifier" in n]
        assert hits == ["classifier.weight", "classifier.bias"], name
        # "layer4" (the reference's ×10 for a ResNet's last stage) is a ResNet's last stage only
        layer4 = [n for n, _ in method.named_parameters() if "layer4" in n]
        assert all(n.startswith("backbone.model.layer4.") for n in layer4)
        assert bool(layer4) == (name == "resnet18"), name
    train = resolve_config(CAM, "cub")["train"]
    wrapper = build_optim_wrapper(
        method,
        {
            "type": "OptimWrapper",
            "optimizer": dict(train["optimizer"]),
            "paramwise_cfg": {
                "custom_keys": {k: {"lr_mult": v} for k, v in train["lr_mult"].items()}
            },
        },
    )
    classifier = {id(method.classifier.weight), id(method.classifier.bias)}
    for group in wrapper.optimizer.param_groups:
        fast = id(group["params"][0]) in classifier
        assert group["lr"] == pytest.approx(0.1 if fast else 0.01)
    resnet = cam("resnet18")
    wrapper = build_optim_wrapper(
        resnet,
        {
            "type": "OptimWrapper",
            "optimizer": dict(train["optimizer"]),
            "paramwise_cfg": {
                "custom_keys": {k: {"lr_mult": v} for k, v in train["lr_mult"].items()}
            },
        },
    )
    names = {id(p): n for n, p in resnet.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        name = names[id(group["params"][0])]
        fast = name.startswith(("classifier.", "backbone.model.layer4."))
        assert group["lr"] == pytest.approx(0.1 if fast else 0.01), name


def test_presets_follow_the_reference_benchmark():
    cub, ilsvrc = resolve_config(CAM, "cub"), resolve_config(CAM, "ilsvrc")
    for preset in (cub, ilsvrc):
        assert preset["backbone"] == {
            "name": "wsol_resnet50",  # torchvision's ResNet50, layer4 undilated at stride 1
            "pretrained": True,
            "checkpoint": None,
            "kwargs": {},
        }
    assert cub["classifier_init"] == "normal" and ilsvrc["classifier_init"] == "pretrained"
    assert cub["train"]["max_epochs"] == 50 and cub["train"]["batch_size"] == 64
    assert cub["train"]["optimizer"] == {
        "type": "SGD",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "nesterov": True,
    }
    assert cub["train"]["lr_mult"] == {"classifier": 10, "layer4": 10}
    assert cub["train"]["scheduler"]["milestones"] == [15, 30, 45]
    assert ilsvrc["train"]["max_epochs"] == 10
    assert ilsvrc["train"]["scheduler"]["milestones"] == [3, 6, 9]
    synthetic = resolve_config(CAM, "synthetic")
    assert synthetic["backbone"]["name"] == "wsolcnn"
    assert synthetic["backbone"]["pretrained"] is False
    method = build_method(CAM, synthetic, num_classes=10)
    assert method.pretrained == "none"
    assert tuple(method.predict(torch.randn(1, 3, 96, 96), torch.tensor([0])).maps.shape) == (
        1,
        24,
        24,
    )


def test_overrides_reach_the_backbone():
    config = resolve_config(
        CAM, "synthetic", ["backbone.name=resnet18", "backbone.kwargs={output_stride: 16}"]
    )
    method = build_method(CAM, config, num_classes=3)
    assert method.backbone.name == "resnet18" and method.backbone.stride == 16


@pytest.mark.parametrize(
    "overrides",
    [
        ["backbone.name=resnet18"],
        ["backbone.name=vit_tiny_patch16_224", f"backbone.kwargs={TINY_VIT}"],
    ],
    ids=["resnet18", "vit"],
)
def test_conformance_with_timm_backbones(overrides):
    failed = [r for r in check_method("cam", overrides=overrides) if not r.ok]
    assert not failed, failed


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    config = SyntheticConfig(
        num_classes=3, image_size=48, train_per_class=4, val_per_class=2, test_per_class=2
    )
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", config)


def test_missing_weights_stop_a_run_with_both_fixes(tiny_root, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    argv = ["run", "--method", "cam", "--dataset", "synthetic", "--data-root", str(tiny_root)]
    argv += ["--protocol", str(tiny_root / "protocol.yaml")]
    argv += ["--work-dir", str(tmp_path / "run"), "-o", "backbone.name=resnet18"]
    assert main([*argv, "-o", "backbone.pretrained=true"]) == 2
    error = capsys.readouterr().err
    assert "-o backbone.checkpoint=PATH" in error and "--no-pretrained" in error


def test_short_run_then_eval_of_its_weights(tiny_root, tmp_path):
    work = tmp_path / "run"
    argv = ["run", "--method", "cam", "--dataset", "synthetic", "--data-root", str(tiny_root)]
    argv += ["--protocol", str(tiny_root / "protocol.yaml")]
    argv += ["--work-dir", str(work), "-o", "train.max_epochs=1", "-o", "train.num_workers=0"]
    argv += ["-o", "backbone.kwargs={channels: [8, 16], strides: [2, 2], dilations: [1, 1]}"]
    assert main(argv) == 0
    result = load_result(work / "result.json")
    assert result.pretrained == "none" and result.config["backbone"]["name"] == "wsolcnn"
    assert "top1_cls" in result.metrics["test"]["oracle"]
    assert (work / "weights.pt").is_file()
    kwargs = "backbone.kwargs={channels: [8, 16], strides: [2, 2], dilations: [1, 1]}"
    argv = ["eval", "--method", "cam", "--weights", str(work / "weights.pt"), "--dataset"]
    argv += ["synthetic", "--data-root", str(tiny_root), "--work-dir", str(tmp_path / "eval")]
    argv += ["--protocol", str(tiny_root / "protocol.yaml")]
    assert main([*argv, "-o", kwargs]) == 0
    again = load_result(tmp_path / "eval" / "result.json")
    assert again.counts["test"] == result.counts["test"]
    # both name the changes that made the weights (num_workers 0 is the preset's own)
    assert (
        again.overrides
        == result.overrides
        == {
            "train.max_epochs": 1,
            "backbone.kwargs.channels": [8, 16],
            "backbone.kwargs.strides": [2, 2],
            "backbone.kwargs.dilations": [1, 1],
        }
    )


def test_the_ilsvrc_classifier_starts_from_the_weights_fc(tmp_path):
    """As the reference loads ImageNet's fc on ILSVRC: the 1×1 classifier is that fc."""
    from wsolbench.util.compat import ensure_torchvision

    ensure_torchvision()
    import torchvision

    torch.manual_seed(1)
    state = torchvision.models.resnet50(weights=None, num_classes=7).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    backbone = {"name": "wsol_resnet50", "pretrained": True, "checkpoint": str(path), "kwargs": {}}
    method = CAM(num_classes=7, backbone=backbone, classifier_init="pretrained")
    assert torch.equal(method.classifier.weight[:, :, 0, 0], state["fc.weight"])
    assert torch.equal(method.classifier.bias, state["fc.bias"])
    assert method.backbone.pretrained_head is None  # used once, not kept
    other = CAM(num_classes=5, backbone=backbone, classifier_init="pretrained")  # 7 ≠ 5 classes
    assert not torch.equal(other.classifier.weight[:, :, 0, 0], state["fc.weight"][:5])
    with pytest.raises(ValueError, match="classifier_init must be"):
        CAM(num_classes=7, backbone=backbone, classifier_init="imagenet")


def test_the_classifier_starts_as_the_references():
    """wsolevaluation builds ResNetCam's fc with N(0, 0.01) weights and a zero bias, and on CUB
    keeps that start (the ImageNet fc is dropped): the cub preset does the same."""
    config = resolve_config(CAM, "cub", ["backbone.name=resnet18", "backbone.pretrained=false"])
    assert config["classifier_init"] == "normal"
    torch.manual_seed(0)
    method = build_method(CAM, config, num_classes=50)
    weight = method.classifier.weight.detach()  # [50, 512, 1, 1]: 25,600 draws
    assert float(weight.std()) == pytest.approx(0.01, rel=0.05)
    assert abs(float(weight.mean())) < 1e-3
    assert torch.equal(method.classifier.bias, torch.zeros(50))
    # the from-scratch presets keep PyTorch's initialization, which their reports were made with
    for preset in ("synthetic", "synthetic-histo"):
        assert resolve_config(CAM, preset)["classifier_init"] == "default"


def _reference_resnet50(num_classes: int, seed: int):
    """torchvision's ResNet50 as wsolevaluation's ResNetCam builds it: layer4's first block at
    stride 1 (its 3×3 conv and its downsampling 1×1 conv), nothing dilated; torchvision's random
    initialization, with random batch-norm statistics and classifier (so neither is trivial)."""
    from wsolbench.util.compat import ensure_torchvision

    ensure_torchvision()
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            elif name.endswith(("running_mean", "bn1.bias", "bn2.bias", "bn3.bias", "fc.bias")):
                tensor.copy_(torch.randn_like(tensor) * 0.1)
            elif name == "fc.weight":
                tensor.copy_(torch.randn_like(tensor))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.layer4[0].conv2.stride = (1, 1)
    model.layer4[0].downsample[0].stride = (1, 1)
    return model, state


@pytest.mark.slow  # two ResNet50s (the reference's architecture is the subject): a few seconds
def test_the_default_map_is_wsolevaluations_resnetcam(tmp_path):
    """ResNetCam's CAM, written here from its formula on torchvision's modules: F = layer4's
    output, cam = mean_d(fc.weight[label, d] · F[d]), logits = fc(avgpool(F))."""
    reference, state = _reference_resnet50(num_classes=7, seed=3)
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    # the defaults (wsol_resnet50), the weights from the file, the classifier from its fc
    config = resolve_config(CAM, None, ["backbone.pretrained=true", f"backbone.checkpoint={path}"])
    method = build_method(CAM, {**config, "classifier_init": "pretrained"}, num_classes=7)
    method.eval()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([4, 1])
    with torch.no_grad():
        prediction = method.predict(images, labels)
        x = reference.maxpool(reference.relu(reference.bn1(reference.conv1(images))))
        features = reference.layer4(reference.layer3(reference.layer2(reference.layer1(x))))
        weights = reference.fc.weight[labels]  # [2, 2048]
        cams = (weights[:, :, None, None] * features).mean(dim=1)  # [2, 2, 2]
        logits = reference.fc(torch.flatten(reference.avgpool(features), 1))
    assert features.shape[-2:] == prediction.maps.shape[-2:] == (2, 2)  # stride 16
    # the map is D times the reference's (a sum, not a mean): the same map after min-max
    torch.testing.assert_close(prediction.maps, cams * features.shape[1], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(prediction.logits, logits, rtol=1e-4, atol=1e-4)
