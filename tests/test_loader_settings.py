"""Training data-loader settings follow the machine unless configured (wsolbench/train/)."""

import pytest

from wsolbench.config import TRAIN_DEFAULTS, ConfigError, resolve_config
from wsolbench.registry import get_method
from wsolbench.train.config import auto_workers, check_train_config, resolve_workers
from wsolbench.train.engine import _dataloader


@pytest.mark.parametrize(
    ("device", "cpus", "workers"),
    [
        ("cuda", 16, 8),  # an H200 host: 8 workers per process, the GPU is not data-bound
        ("cuda:0", 4, 3),  # all cores but the training process's
        ("cuda", 1, 0),
        ("cpu", 2, 0),  # this project's machines: a worker competes with torch's threads
        ("cpu", 4, 0),
        ("cpu", 16, 4),
        ("cpu", 64, 8),
    ],
)
def test_auto_workers_follow_the_machine(device, cpus, workers):
    assert auto_workers(device, cpus) == workers


def test_a_configured_worker_count_is_kept_and_auto_is_the_default():
    assert TRAIN_DEFAULTS["num_workers"] == "auto"
    assert resolve_workers(3, "cuda") == 3 and resolve_workers(0, "cuda") == 0
    assert resolve_workers("auto", "cuda") == auto_workers("cuda")
    assert resolve_workers(None, "cpu") == auto_workers("cpu")


def test_pinned_memory_on_cuda_and_workers_never_persistent():
    cuda = _dataloader([0], 4, 2, True, "cuda:1")
    assert cuda["pin_memory"] is True and cuda["num_workers"] == 2
    cpu = _dataloader([0], 4, 0, False, "cpu")
    assert cpu["pin_memory"] is False
    # re-created each epoch: they must see the dataset's new epoch (its augmentation draws)
    assert cuda["persistent_workers"] is False and cpu["persistent_workers"] is False


def test_num_workers_overrides_are_typed_and_checked():
    cam = get_method("cam")
    config = resolve_config(cam, "cub", ["train.num_workers=6", "backbone.pretrained=false"])
    assert config["train"]["num_workers"] == 6
    config = resolve_config(cam, "cub", ["train.num_workers=auto", "backbone.pretrained=false"])
    assert config["train"]["num_workers"] == "auto"
    check_train_config(config["train"])
    with pytest.raises(ConfigError, match=r"train.num_workers must be an integer .* or auto"):
        check_train_config({**config["train"], "num_workers": -1})
    with pytest.raises(ConfigError, match="or auto"):
        check_train_config({**config["train"], "num_workers": "many"})
