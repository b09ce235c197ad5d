"""Data-loader settings follow the machine unless configured (wsolbench/util/loader.py): for
training and for evaluation."""

import pytest

from wsolbench.config import TRAIN_DEFAULTS, ConfigError, resolve_config
from wsolbench.registry import get_method
from wsolbench.train.config import check_train_config
from wsolbench.train.engine import _dataloader
from wsolbench.util.loader import auto_workers, resolve_workers


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


def test_evaluation_loads_with_the_machines_workers_and_pins_for_a_gpu(tmp_path, monkeypatch):
    """run / eval's evaluation loader: no --num-workers follows the machine as training does (a
    16-core GPU host: 8 workers, pinned batches); a given count is kept."""
    from toy_method import ToyCAM

    from wsolbench import evaluate
    from wsolbench.counting import EvalSettings
    from wsolbench.data.metadata import read_split
    from wsolbench.data.synthetic import SyntheticConfig, generate
    from wsolbench.protocol import load_protocol
    from wsolbench.util import loader

    tiny = SyntheticConfig(num_classes=2, image_size=32, train_per_class=1, val_per_class=1,
                           test_per_class=2)  # fmt: skip
    root = generate(tmp_path / "tiny", tiny)
    settings = EvalSettings.from_protocol(load_protocol(str(root / "protocol.yaml")))
    seen = []

    class Built(Exception):
        pass

    def recording_loader(dataset, **kwargs):
        seen.append(kwargs)
        raise Built  # before the model would move to a GPU this machine does not have

    monkeypatch.setattr(evaluate, "DataLoader", recording_loader)
    monkeypatch.setattr(loader.os, "cpu_count", lambda: 16)
    meta = read_split(root / "metadata" / "test")
    for device, workers in (("cuda:0", None), ("cpu", None), ("cuda", 3)):
        with pytest.raises(Built):
            evaluate.evaluate_method(
                ToyCAM(2), meta, root / "images", settings, mask_root=root / "masks",
                device=device, num_workers=workers, progress=False,
            )  # fmt: skip
    assert [(s["num_workers"], s["pin_memory"]) for s in seen] == [(8, True), (4, False), (3, True)]
