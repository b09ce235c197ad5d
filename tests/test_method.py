"""Method configuration: defaults ⊕ preset ⊕ overrides, and clear errors for unknown keys."""

import os

import pytest
import torch

from wsolbench.config import (
    TRAIN_DEFAULTS,
    ConfigError,
    parse_override,
    preset_changes,
    resolve_config,
)
from wsolbench.method import Capabilities, MethodConfig, Prediction, WSOLMethod, build_method
from wsolbench.registry import METHODS, PluginError, get_method, register_method


class Configured(WSOLMethod):
    name = "configured"
    # training-free keeps TRAIN_DEFAULTS out, so the expected dicts stay small
    capabilities = Capabilities(trainable=False)
    config = MethodConfig(
        defaults={"width": 8, "head": {"depth": 2}, "train": {"max_epochs": 10, "lr": 0.01}},
        presets={"synthetic": {"width": 4, "train": {"max_epochs": 3}}},
    )

    def __init__(self, num_classes, width, head):
        super().__init__(num_classes)
        self.width, self.head = width, head


def test_defaults_then_preset_then_overrides():
    config = resolve_config(Configured, "synthetic", ["train.lr=0.1", "head.depth=5"])
    assert config == {"width": 4, "head": {"depth": 5}, "train": {"max_epochs": 3, "lr": 0.1}}
    assert resolve_config(Configured, "cub") == Configured.config.defaults
    assert Configured.config.defaults["train"]["max_epochs"] == 10  # never mutated


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


class WithPaths(WSOLMethod):
    name = "with_paths"
    capabilities = Capabilities(trainable=False)
    config = MethodConfig(
        defaults={
            "backbone": {"checkpoint": None},
            "text": {"checkpoint": "synthclip-v1", "cache_dir": None, "template": "a {}"},
            "teacher": "self",
        },
    )


HOME = os.path.expanduser("~")


def test_path_values_of_overrides_expand_the_home_folder_as_path_options_do():
    # the shell expands no ~ inside -o key=~/x
    overrides = ["backbone.checkpoint=~/w.pth", "teacher=run:~/runs/cam", "text.cache_dir=~/c"]
    config = resolve_config(WithPaths, None, overrides)
    assert config["backbone"]["checkpoint"] == f"{HOME}/w.pth"
    assert config["teacher"] == f"run:{HOME}/runs/cam"
    assert config["text"]["cache_dir"] == f"{HOME}/c"
    mapping = resolve_config(WithPaths, None, ["backbone={checkpoint: ~/w.pth}"])
    assert mapping["backbone"]["checkpoint"] == f"{HOME}/w.pth"
    # other text is what was typed; a checkpoint key may name a recipe, not a file
    kept = ["text.template=~/{}", "teacher=~self", "text.checkpoint=synthclip-v1"]
    config = resolve_config(WithPaths, None, kept)
    assert (config["text"]["template"], config["teacher"]) == ("~/{}", "~self")
    assert config["text"]["checkpoint"] == "synthclip-v1"
    # null is no file, as a checkpoint's default is
    nothing = resolve_config(WithPaths, None, ["backbone.checkpoint=null"])
    assert nothing["backbone"]["checkpoint"] is None
    # a space after run: (-o "teacher=run: ~/runs/cam") is no part of the folder
    spaced = resolve_config(WithPaths, None, ["teacher=run: ~/runs/cam"])
    assert spaced["teacher"] == f"run:{HOME}/runs/cam"


def test_a_bare_tilde_for_a_path_is_refused_not_read_as_no_file():
    # YAML reads ~ as null: "no checkpoint", silently, where the home folder was typed
    with pytest.raises(
        ConfigError, match=r"^-o backbone.checkpoint=~: YAML reads a bare ~ as null"
    ):
        resolve_config(WithPaths, None, ["backbone.checkpoint=~"])


@pytest.mark.parametrize(
    ("override", "said"),
    [
        ("backbone.checkpoint=", "backbone.checkpoint is an empty path"),
        ("text.checkpoint=''", "text.checkpoint is an empty path"),
        ("text.cache_dir= ", "text.cache_dir is an empty path"),
        ("teacher=run:", "teacher is run: with an empty path"),
        ("teacher=run: ", "teacher is run: with an empty path"),
    ],
)
def test_an_empty_path_value_is_refused_naming_the_key(override, said):
    # an unset shell variable (-o backbone.checkpoint=$W): not "no checkpoint", not the cwd
    with pytest.raises(ConfigError) as caught:
        resolve_config(WithPaths, None, [override])
    message = str(caught.value)
    assert message.startswith(f"-o {override}: {said} (an unset shell variable?); give "), message


class Trained(WSOLMethod):
    name = "trained"
    config = MethodConfig(
        defaults={"train": {"max_epochs": 2}},
        presets={"synthetic": {"train": {"scheduler": {"type": "CosineAnnealingLR"}}}},
    )


def test_trainable_methods_start_from_the_engine_defaults():
    config = resolve_config(Trained, "cub")
    assert config["train"] == {**TRAIN_DEFAULTS, "max_epochs": 2}
    assert resolve_config(Trained, None, ["train.amp=false"])["train"]["amp"] is False


def test_the_engine_defaults_are_one_recipe_whose_rate_steps(caplog):
    """A plugin that gives no train section trains on TRAIN_DEFAULTS: wsolevaluation's CUB recipe
    (x0.1 at epochs 15, 30, 45 of 50), whose rate steps within the run: no "never steps"
    warning."""
    from wsolbench.train.config import check_train_config

    class Untuned(WSOLMethod):
        config = MethodConfig(defaults={})

    train = resolve_config(Untuned, None)["train"]
    assert train == TRAIN_DEFAULTS
    with caplog.at_level("WARNING", logger="wsolbench"):
        check_train_config(train)
    assert "never steps" not in caplog.text


def test_a_section_whose_type_changes_is_replaced_not_merged():
    scheduler = resolve_config(Trained, "synthetic")["train"]["scheduler"]
    assert scheduler == {"type": "CosineAnnealingLR"}  # no MultiStepLR milestones left over
    overridden = resolve_config(Trained, "cub", ["train.scheduler.type=none"])
    assert overridden["train"]["scheduler"] == {"type": "none"}


def test_preset_changes_are_what_the_overrides_changed():
    """What a result records as its overrides: leaves off the preset, a retyped section whole."""
    assert preset_changes(Configured, "synthetic", resolve_config(Configured, "synthetic")) == {}
    config = resolve_config(Configured, "synthetic", ["width=4", "head.depth=5"])
    assert preset_changes(Configured, "synthetic", config) == {"head.depth": 5}  # 4 is the preset's
    config = resolve_config(Trained, "cub", ["train.optimizer.type=AdamW"])
    adam = resolve_config(Trained, "cub", ["train.optimizer.type=AdamW", "train.optimizer.lr=0.01"])
    assert preset_changes(Trained, "cub", config) == {"train.optimizer.type": "AdamW"}
    # lr 0.01 is also SGD's, but it belongs to another optimizer now: two configs, two records
    assert preset_changes(Trained, "cub", adam) == {
        "train.optimizer.type": "AdamW",
        "train.optimizer.lr": 0.01,
    }


class WithWeights(WSOLMethod):
    capabilities = Capabilities(trainable=False, pretrained_options=("net.pretrained",))
    config = MethodConfig(defaults={"net": {"pretrained": True}, "width": 3})


def test_preset_changes_without_pretrained_weights_leave_their_switches_out():
    """--no-pretrained and eval switch the pretrained loading off: no override of the user's."""
    off = resolve_config(WithWeights, None, ["net.pretrained=false"])
    assert preset_changes(WithWeights, None, off) == {"net.pretrained": False}
    assert preset_changes(WithWeights, None, off, no_pretrained=True) == {}
    wider = resolve_config(WithWeights, None, ["net.pretrained=false", "width=5"])
    assert preset_changes(WithWeights, None, wider, no_pretrained=True) == {"width": 5}


def test_a_preset_may_replace_a_section_by_a_scalar():
    class Replacing(Trained):
        config = MethodConfig(
            defaults=Trained.config.defaults,
            presets={"synthetic": {"train": {"scheduler": "none"}}},
        )

    assert resolve_config(Replacing, "synthetic")["train"]["scheduler"] == "none"


class OldStyle(WSOLMethod):
    """A plugin written against the first interface: its attributes would be silently ignored."""

    trainable = False
    pretrained_option = "net.pretrained"
    defaults = {"net": {"pretrained": True}}

    def predict(self, images, labels):
        return Prediction(None, images[:, 0])


def test_registering_the_old_interface_is_refused_naming_the_replacement():
    with pytest.raises(TypeError) as refused:
        register_method("old_style")(OldStyle)
    assert str(refused.value) == (
        "method 'old_style' declares `trainable = False` and `pretrained_option = "
        "'net.pretrained'` and `defaults = {...}`, the old interface; declare `capabilities = "
        "Capabilities(trainable=False, pretrained_options=('net.pretrained',))` and `config = "
        "MethodConfig(defaults={...})` instead (docs/writing-a-method.md)"
    )
    assert "old_style" not in METHODS.module_dict and OldStyle.name == ""

    class Inherits(OldStyle):  # an inherited old attribute is ignored just the same
        capabilities = Capabilities(trainable=False)

    with pytest.raises(TypeError, match=r"'inherits' declares .* \(in its base OldStyle\), "):
        register_method("inherits")(Inherits)


def test_the_old_interface_is_refused_on_a_class_found_by_path():
    with pytest.raises(PluginError, match=r"method 'oldstyle' declares `trainable = False`"):
        get_method(f"{__name__}:OldStyle")
    assert "oldstyle" not in METHODS.module_dict


def test_capabilities_and_config_are_what_the_harness_reads():
    class Declared(WSOLMethod):
        capabilities = Capabilities(trainable=False, pretrained_options=("net.pretrained",))
        config = MethodConfig(defaults={"net": {"pretrained": True}, "width": 3})

    assert resolve_config(Declared, None, ["width=5"]) == {"net": {"pretrained": True}, "width": 5}
    for old in ("trainable", "defaults", "presets", "pretrained_option", "config_types"):
        assert not hasattr(Declared, old), f"WSOLMethod still carries the old attribute {old}"


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
