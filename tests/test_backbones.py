"""wsolbench.blocks.backbones: output shapes, ViT patch grids, offline-only pretrained weights."""

import hashlib
import socket

import pytest
import torch

from wsolbench.blocks.backbone_weights import PretrainedWeightsError
from wsolbench.blocks.backbones import build_backbone
from wsolbench.util.compat import ensure_torchvision

ensure_torchvision()
import timm  # noqa: E402


def _sha256(path) -> str:
    """A file's sha256 hex, computed here (not by wsolbench)."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty Hugging Face and torch hub caches, and every download path booby-trapped."""
    import huggingface_hub
    import huggingface_hub.constants
    import timm.models._builder
    import timm.models._hub

    hf_cache = tmp_path / "hf"
    hf_cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", no_network)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return {"hf": hf_cache, "torch": tmp_path / "torch" / "hub" / "checkpoints"}


def test_wsolcnn_is_a_fine_grid_from_scratch():
    backbone = build_backbone("wsolcnn", pretrained=False)
    features = backbone(torch.randn(2, 3, 96, 96))
    assert tuple(features.shape) == (2, backbone.out_channels, 24, 24)
    assert (backbone.kind, backbone.stride, backbone.source) == ("cnn", 4, "none")
    assert 0.2e6 < sum(p.numel() for p in backbone.parameters()) < 0.4e6
    assert (features >= 0).all()  # ReLU features, as CAM expects


def test_wsolcnn_kwargs_change_the_architecture():
    backbone = build_backbone(
        "wsolcnn", pretrained=False, channels=[8, 16], strides=[2, 2], dilations=[1, 1]
    )
    assert (backbone.out_channels, backbone.stride) == (16, 4)
    assert tuple(backbone(torch.randn(1, 3, 32, 32)).shape) == (1, 16, 8, 8)
    with pytest.raises(ValueError, match="same length"):
        build_backbone("wsolcnn", pretrained=False, channels=[8], strides=[2, 2], dilations=[1])


def test_timm_cnn_returns_its_last_feature_map():
    backbone = build_backbone("resnet18", pretrained=False)
    backbone.eval()
    images = torch.randn(2, 3, 64, 64)
    features = backbone(images)
    assert (backbone.kind, backbone.out_channels, backbone.stride) == ("cnn", 512, 32)
    assert tuple(features.shape) == (2, 512, 2, 2)
    torch.testing.assert_close(features, backbone.model.forward_features(images))
    assert not any(k.startswith("fc.") for k in backbone.state_dict())


def test_output_stride_kwarg_reaches_timm():
    backbone = build_backbone("resnet18", pretrained=False, output_stride=16)
    assert backbone.stride == 16
    assert tuple(backbone(torch.randn(1, 3, 64, 64)).shape) == (1, 512, 4, 4)


def test_head_parts_unused_by_forward_features_are_dropped():
    # ConvNeXt keeps a LayerNorm in its head, outside forward_features (VGG keeps a 100 M
    # parameter pre_logits there): neither may be exported or left without gradients.
    backbone = build_backbone("convnext_atto", pretrained=False)
    assert not any(k.startswith("model.head") for k in backbone.state_dict())
    backbone(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())


@pytest.mark.parametrize(
    ("name", "prefix"), [("vit_tiny_patch16_224", 1), ("deit_tiny_distilled_patch16_224", 2)]
)
def test_vit_patch_tokens_on_the_patch_grid(name, prefix):
    backbone = build_backbone(name, pretrained=False, **TINY_VIT)
    backbone.eval()
    images = torch.randn(2, 3, 48, 80)  # not the model's 224: dynamic image size
    features = backbone(images)
    assert (backbone.kind, backbone.stride, backbone.out_channels) == ("vit", 16, 32)
    assert tuple(features.shape) == (2, 32, 3, 5)
    tokens = backbone.model.forward_features(images)  # after the final norm
    assert tokens.shape[1] == prefix + 15
    # patch (row 1, column 3) is token prefix + 1 * 5 + 3; class/distillation tokens dropped
    torch.testing.assert_close(features[:, :, 1, 3], tokens[:, prefix + 8])
    torch.testing.assert_close(features.flatten(2).transpose(1, 2), tokens[:, prefix:])


def test_missing_cached_weights_name_both_fixes_without_network(offline):
    with pytest.raises(PretrainedWeightsError) as error:
        build_backbone("resnet18", pretrained=True)
    message = str(error.value)
    assert "-o backbone.checkpoint=PATH" in message and "--no-pretrained" in message
    assert "timm/resnet18.a1_in1k" in message  # where it looked
    assert isinstance(error.value, ValueError)  # a user error for the CLI
    with pytest.raises(PretrainedWeightsError, match="no published weights"):
        build_backbone("wsolcnn", pretrained=True)


def _published_tiny_deit() -> dict:
    """A state dict as timm publishes it: with the 1000-class head."""
    torch.manual_seed(3)
    return timm.create_model("deit_tiny_patch16_224", num_classes=1000, **TINY_VIT).state_dict()


def _assert_loaded(backbone, state):
    own = backbone.model.state_dict()
    for key, value in own.items():
        torch.testing.assert_close(value, state[key])


def test_weights_from_the_hugging_face_cache(offline):
    from safetensors.torch import save_file

    state = _published_tiny_deit()
    repo = offline["hf"] / "models--timm--deit_tiny_patch16_224.fb_in1k"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    save_file(state, str(snapshot / "model.safetensors"))
    backbone = build_backbone("deit_tiny_patch16_224", pretrained=True, **TINY_VIT)
    sha256 = _sha256(snapshot / "model.safetensors")
    assert backbone.source == f"cache:deit_tiny_patch16_224.fb_in1k (sha256 {sha256[:12]})"
    _assert_loaded(backbone, state)


def test_weights_from_the_torch_hub_cache(offline):
    state = _published_tiny_deit()
    offline["torch"].mkdir(parents=True)
    # the original DeiT release nests the weights under "model"
    torch.save({"model": state}, offline["torch"] / "deit_tiny_patch16_224-a1311bcf.pth")
    backbone = build_backbone("deit_tiny_patch16_224", pretrained=True, **TINY_VIT)
    sha256 = _sha256(offline["torch"] / "deit_tiny_patch16_224-a1311bcf.pth")
    assert backbone.source == f"cache:deit_tiny_patch16_224.fb_in1k (sha256 {sha256[:12]})"
    _assert_loaded(backbone, state)


def test_local_checkpoint_wrapped_and_prefixed(offline, tmp_path):
    torch.manual_seed(4)
    reference = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)
    backbone = build_backbone("resnet18", pretrained=True, checkpoint=str(path))
    assert backbone.source == f"file:resnet18.pth (sha256 {_sha256(path)[:12]})"
    _assert_loaded(backbone, reference.state_dict())


def test_no_pretrained_ignores_the_checkpoint(tmp_path, caplog):
    # --no-pretrained (and `wsolbench eval`, which loads weights.pt afterwards) must build without
    # reading any file, even when the config names one
    backbone = build_backbone("wsolcnn", pretrained=False, checkpoint=tmp_path / "absent.pth")
    assert backbone.source == "none"
    assert "ignored because backbone.pretrained is false" in caplog.text


def test_checkpoint_is_read_with_weights_only(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"weights": torch.zeros(1), "config": socket.AddressFamily.AF_INET}, path)
    with pytest.raises(PretrainedWeightsError, match="weights_only=True"):
        build_backbone("wsolcnn", pretrained=True, checkpoint=path)


def test_checkpoint_of_another_architecture_fails_clearly(tmp_path):
    small = build_backbone(
        "wsolcnn", pretrained=False, channels=[8, 16], strides=[2, 2], dilations=[1, 1]
    )
    path = tmp_path / "small.pth"
    torch.save(small.model.state_dict(), path)
    with pytest.raises(PretrainedWeightsError) as error:
        build_backbone("wsolcnn", pretrained=True, checkpoint=path)
    message = str(error.value)
    assert "features.0.weight: file (8, 3, 3, 3) vs model (16, 3, 3, 3)" in message
    assert "keys missing from the file" in message and "-o backbone.checkpoint" in message

    torch.save(_published_tiny_deit(), path)
    with pytest.raises(PretrainedWeightsError, match=r"keys the model does not have \(blocks\.0"):
        build_backbone("resnet18", pretrained=True, checkpoint=path)


# --- the reference benchmark's ResNet50 (wsolevaluation's ResNetCam) ------------------------


def _torchvision_resnet50_state(seed: int = 0) -> dict:
    """A state dict in torchvision's ResNet50 layout (what resnet50-19c8e357.pth holds), random."""
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet50(weights=None)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.randn_like(tensor))
    return model.state_dict()


def test_reference_resnet50_removes_layer4s_stride_without_dilation():
    backbone = build_backbone("wsol_resnet50", pretrained=False).eval()
    assert (backbone.kind, backbone.stride, backbone.out_channels) == ("cnn", 16, 2048)
    assert tuple(backbone(torch.randn(1, 3, 32, 32)).shape) == (1, 2048, 2, 2)
    convs = [m for m in backbone.model.layer4.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.stride == (1, 1) and m.dilation == (1, 1) for m in convs)
    # every parameter takes part (nothing for a probe to drop): one backward reaches them all
    backbone(torch.randn(1, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())
    large = build_backbone("wsol_resnet50", pretrained=False, large_feature_map=True).eval()
    assert large.stride == 8 and tuple(large(torch.randn(1, 3, 32, 32)).shape[2:]) == (4, 4)
    assert (backbone.model.layer3[0].conv2.stride, large.model.layer3[0].conv2.stride) == (
        (2, 2),
        (1, 1),
    )


@pytest.mark.parametrize(
    ("filename", "legacy"),
    [("resnet50-19c8e357.pth", True), ("resnet50-0676ba61.pth", False)],
    ids=["reference-file", "torchvision-file"],
)
def test_reference_resnet50_weights_from_the_torch_hub_cache(offline, filename, legacy):
    """The file the reference's load_url caches (legacy serialization) or torchvision's current
    name of the same weights, each fabricated in torchvision's layout with random values."""
    state = _torchvision_resnet50_state()
    offline["torch"].mkdir(parents=True)
    torch.save(state, offline["torch"] / filename, _use_new_zipfile_serialization=not legacy)
    backbone = build_backbone("wsol_resnet50", pretrained=True)
    sha256 = _sha256(offline["torch"] / filename)
    assert backbone.source == f"cache:torchvision/{filename} (sha256 {sha256[:12]})"
    own = backbone.model.state_dict()
    assert set(own) == set(state) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(own[k], state[k]) for k in own)
    weight, bias = backbone.pretrained_head  # ImageNet's fc, for a classifier that starts from it
    assert torch.equal(weight, state["fc.weight"]) and torch.equal(bias, state["fc.bias"])


def test_reference_resnet50_missing_weights_say_where_and_how(offline):
    with pytest.raises(PretrainedWeightsError) as error:
        build_backbone("wsol_resnet50", pretrained=True)
    message = str(error.value)
    assert "resnet50-19c8e357.pth and resnet50-0676ba61.pth" in message
    assert "timm/resnet50.tv_in1k" in message and "-o backbone.checkpoint=PATH" in message
    assert "torchvision.models.resnet50(weights='IMAGENET1K_V1')" in message
