"""Method configuration: defaults ⊕ preset ⊕ overrides, and clear errors for unknown keys."""

from typing import ClassVar

import pytest
import torch

from wsolbench.config import TRAIN_DEFAULTS, ConfigError, parse_override, resolve_config
from wsolbench.method import WSOLMethod, build_method


class Configured(WSOLMethod):
    name = "configured"
    trainable = False  # keeps TRAIN_DEFAULTS out, so the expected dicts stay small
    defaults: ClassVar[dict] = {
        "width": 8,
        "head": {"depth": 2},
        "train": {"max_epochs": 10, "lr": 0.01},
    }
    presets: ClassVar[dict] = {"synthetic": {"width": 4, "train": {"max_epochs": 3}}}

    def __init__(self, num_classes, width, head):
        super().__init__(num_classes)
        self.width, self.head = width, head


def test_defaults_then_preset_then_overrides():
    config = resolve_config(Configured, "synthetic", ["train.lr=0.1", "head.depth=5"])
    assert config == {"width": 4, "head": {"depth": 5}, "train": {"max_epochs": 3, "lr": 0.1}}
    assert resolve_config(Configured, "cub") == Configured.defaults
    assert Configured.defaults["train"]["max_epochs"] == 10  # never mutated


def test_override_values_are_yaml():
    assert parse_override("a.b=false") == (["a", "b"], False)
    assert parse_override("x=[1, 2]") == (["x"], [1, 2])
    assert parse_override("name=resnet50") == (["name"], "resnet50")
    with pytest.raises(ConfigError, match="not key=value"):
        parse_override("width")


def test_unknown_override_key_names_close_matches():
    with pytest.raises(ConfigError, match=r"unknown config key 'widht'; did you mean 'width'\?"):
        resolve_config(Configured, None, ["widht=3"])
    with pytest.raises(ConfigError, match="at train of method 'configured'"):
        resolve_config(Configured, None, ["train.epochs=3"])
    with pytest.raises(ConfigError, match="head is a section"):
        resolve_config(Configured, None, ["head=3"])


def test_build_method_passes_config_but_not_train_section():
    method = build_method(Configured, resolve_config(Configured, "synthetic"), num_classes=3)
    assert (method.width, method.head, method.num_classes) == (4, {"depth": 2}, 3)


class Trained(WSOLMethod):
    name = "trained"
    defaults: ClassVar[dict] = {"train": {"max_epochs": 2}}
    presets: ClassVar[dict] = {"synthetic": {"train": {"scheduler": {"type": "CosineAnnealingLR"}}}}


def test_trainable_methods_start_from_the_engine_defaults():
    config = resolve_config(Trained, "cub")
    assert config["train"] == {**TRAIN_DEFAULTS, "max_epochs": 2}
    assert resolve_config(Trained, None, ["train.amp=false"])["train"]["amp"] is False


def test_a_section_whose_type_changes_is_replaced_not_merged():
    scheduler = resolve_config(Trained, "synthetic")["train"]["scheduler"]
    assert scheduler == {"type": "CosineAnnealingLR"}  # no MultiStepLR milestones left over
    overridden = resolve_config(Trained, "cub", ["train.scheduler.type=none"])
    assert overridden["train"]["scheduler"] == {"type": "none"}


def test_a_preset_may_replace_a_section_by_a_scalar():
    class Replacing(Trained):
        presets: ClassVar[dict] = {"synthetic": {"train": {"scheduler": "none"}}}

    assert resolve_config(Replacing, "synthetic")["train"]["scheduler"] == "none"


def test_capabilities_and_config_are_declared_once_and_read_under_the_old_names():
    from wsolbench.method import Capabilities, MethodConfig

    class Declared(WSOLMethod):
        capabilities = Capabilities(trainable=False, pretrained_options=("net.pretrained",))
        config = MethodConfig(defaults={"net": {"pretrained": True}, "width": 3})

    assert Declared.trainable is False and Declared.pretrained_option == ("net.pretrained",)
    assert Declared.defaults == {"net": {"pretrained": True}, "width": 3}
    assert resolve_config(Declared, None, ["width=5"])["width"] == 5

    class OldStyle(WSOLMethod):  # a plugin written against the first interface
        trainable = False
        pretrained_option = "net.pretrained"
        defaults: ClassVar[dict] = {"net": {"pretrained": True}}

    assert OldStyle.capabilities == Capabilities(
        trainable=False, pretrained_options=("net.pretrained",)
    )
    assert OldStyle.config.defaults == {"net": {"pretrained": True}}


def test_pretrained_sums_up_the_provenance():
    method = WSOLMethod(num_classes=2)
    assert method.pretrained == "n/a"  # no parameter, no part
    method.head = torch.nn.Linear(2, 2)
    assert method.pretrained == "none"
    method.provenance["backbone"] = "none"
    assert method.pretrained == "none"
    method.provenance["backbone"] = "file:/w.pth"
    assert method.pretrained == "file:/w.pth"
    method.provenance["text"] = "cache:ViT-B-16/openai"
    assert method.pretrained == "backbone=file:/w.pth; text=cache:ViT-B-16/openai"
