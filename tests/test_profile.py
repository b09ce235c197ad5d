"""Cost measurement (wsolbench/cost/, the profile command): MACs against a hand count, timing
rules, the CLI."""

import json

import pytest
import torch
from torch import nn

from wsolbench.cli.main import main
from wsolbench.cost.formatting import latency_device
from wsolbench.cost.macs import count_macs
from wsolbench.cost.params import count_parameters
from wsolbench.cost.profile import ProfileSettings, profile_method
from wsolbench.cost.timing import time_calls
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.method import Capabilities, Prediction, WSOLMethod
from wsolbench.results.record import load_result
from wsolbench.runs.profile import profile


class HandCounted(WSOLMethod):
    """conv 3→4 (3×3, pad 1, bias) → ReLU → GAP → linear 4→5 (+ a training-only teacher).

    MACs of one 8×8 image, counted by hand: the convolution makes 4 × 8 × 8 outputs of
    3 × 3 × 3 multiply-adds each = 6912; the linear layer 4 × 5 = 20. Bias additions, ReLU and
    pooling are not multiply-adds. Total 6932.
    """

    capabilities = Capabilities(trainable=False)

    def __init__(self, num_classes: int = 5, grad_map: bool = False):
        super().__init__(num_classes)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, num_classes)
        self.teacher = nn.Linear(7, 7)  # not needed at inference
        self.teacher.requires_grad_(False)
        self.grad_map = grad_map
        self.grad_seen: list[bool] = []

    def inference_state_dict(self):
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def predict(self, images, labels):
        self.grad_seen.append(torch.is_grad_enabled())
        features = torch.relu(self.conv(images))
        logits = self.fc(features.mean((2, 3)))
        if not self.grad_map:
            return Prediction(logits, features.mean(1))
        # Grad-CAM-like: the gradient of the target logit with respect to the features.
        (grads,) = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), features)
        return Prediction(logits, (grads * features).sum(1))


class GradCounted(HandCounted):
    capabilities = Capabilities(trainable=False, needs_grad_at_inference=True)

    def __init__(self, num_classes: int = 5):
        super().__init__(num_classes, grad_map=True)


HAND_MACS = 4 * 8 * 8 * 3 * 3 * 3 + 4 * 5


def test_macs_equal_the_hand_count():
    method = HandCounted()
    images, labels = torch.randn(1, 3, 8, 8), torch.tensor([2])
    counted = count_macs(method, images, labels)
    assert counted["macs"] == HAND_MACS == 6932
    assert counted["by_op"] == {"addmm": 20, "convolution": 6912}
    assert "one multiply-add = 1" in counted["counter"]
    # a batch of three is three images' worth
    assert count_macs(method, torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 2]))["macs"] == 3 * 6932


def test_macs_of_a_gradient_method_include_its_backward_pass():
    images, labels = torch.randn(1, 3, 8, 8), torch.tensor([1])
    forward_only = count_macs(HandCounted(), images, labels)["macs"]
    with_backward = count_macs(GradCounted(), images, labels)["macs"]
    # the backward of the linear layer to the pooled features adds at least 4 x 5 multiply-adds
    assert with_backward >= forward_only + 20


def test_parameters_total_trainable_and_inference():
    params = count_parameters(HandCounted())
    conv, fc, teacher = 3 * 4 * 9 + 4, 4 * 5 + 5, 7 * 7 + 7
    assert params == {
        "total": conv + fc + teacher,
        "trainable": conv + fc,
        "inference": conv + fc,
    }


def test_warm_up_calls_are_not_timed():
    # A fake clock: warm-up calls take 100 s, timed calls 2 ms; only the latter may be reported.
    state = {"now": 0.0, "calls": 0}

    def fn():
        state["calls"] += 1
        state["now"] += 100.0 if state["calls"] <= 3 else 0.002

    times = time_calls(fn, warmup=3, runs=7, clock=lambda: state["now"])
    assert state["calls"] == 10
    assert times == pytest.approx([0.002] * 7)


def test_timing_synchronizes_around_every_timed_call():
    events = []
    time_calls(lambda: events.append("call"), warmup=1, runs=2, sync=lambda: events.append("sync"))
    # warm-up, one sync, then sync / call / sync for each timed call
    assert events == ["call", "sync", "sync", "call", "sync", "sync", "call", "sync"]


def test_profile_method_reports_positive_figures_and_times_with_autograd():
    method = GradCounted()
    settings = ProfileSettings(warmup=10, runs=50, batch_size=4, throughput_runs=2, threads=1)
    cost = profile_method(method, (8, 8), 5, "cpu", settings)
    lat = cost["latency_ms"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"]
    assert (lat["warmup"], lat["runs"], lat["batch"]) == (10, 50, 1)
    assert cost["throughput"]["images_per_s"] > 0 and cost["throughput"]["batch"] == 4
    assert cost["macs"] > HAND_MACS and cost["grad_at_inference"] is True
    assert cost["device"] == "cpu" and cost["device_name"] and cost["amp"] == "none"
    assert cost["threads"] == 1
    assert cost["dtype"] == "float32" and cost["torch"] == torch.__version__
    # every timed call (and the MAC count) ran with autograd on, as evaluation does
    assert method.grad_seen and all(method.grad_seen)
    assert latency_device(cost) == f"{cost['device_name']}, 1 thread"
    json.dumps(cost, allow_nan=False)  # storable in a result


def test_profile_threads_are_set_while_profiling_and_restored():
    before = torch.get_num_threads()
    cost = profile_method(HandCounted(), (8, 8), 5, "cpu", ProfileSettings(batch_size=2, threads=1))
    assert cost["threads"] == 1 and latency_device(cost).endswith(", 1 thread")
    assert torch.get_num_threads() == before


def test_profile_builds_a_registered_method_without_training():
    settings = ProfileSettings(runs=50, threads=1)
    cost = profile("center", "synthetic", device="cpu", settings=settings)
    assert cost["method"] == "center" and cost["protocol"] == "synthetic-v1"
    assert cost["input_size"] == [96, 96] and cost["num_classes"] == 10
    assert cost["params"] == {"total": 0, "trainable": 0, "inference": 0} and cost["macs"] == 0
    assert cost["latency_ms"]["median"] > 0


def test_profile_command_prints_parameters_macs_and_latency(tmp_path, capsys):
    out = tmp_path / "cost.json"
    # One thread: with two, each op waits for the other thread's slice on a busy CPU (README).
    argv = ["profile", "--method", "cam", "--dataset", "synthetic", "--batch-size", "4"]
    argv += ["--threads", "1"]
    assert main([*argv, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for word in ("parameters:", "MACs:", "one multiply-add = 1", "latency:", "ms median", "p90"):
        assert word in printed
    cost = json.loads(out.read_text())
    assert cost["params"]["inference"] > 0 and cost["macs"] > 0
    assert cost["config"]["backbone"]["pretrained"] is False  # never reads weights
    # when and with what: two records of one method can be told apart
    assert cost["measured"].endswith("+00:00") and "wsolbench" in cost["env"]["code"]
    assert cost["env"]["cpu_model"]


TINY = SyntheticConfig(
    num_classes=3, image_size=48, train_per_class=2, val_per_class=3, test_per_class=4
)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", TINY)


def test_run_profile_fills_the_cost_block_and_resume_adds_a_missing_one(tiny_root, tmp_path):
    base = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", str(tiny_root)]
    base += ["--protocol", str(tiny_root / "protocol.yaml")]
    profiled, plain = tmp_path / "profiled", tmp_path / "plain"
    assert main([*base, "--work-dir", str(profiled), "--profile", "--profile-threads", "1"]) == 0
    cost = load_result(profiled / "result.json").cost
    # evaluated at the tiny protocol's size, its images' 48 x 48
    assert cost["latency_ms"]["runs"] == 50 and cost["input_size"] == [48, 48]
    assert main([*base, "--work-dir", str(plain)]) == 0
    before = load_result(plain / "result.json")
    assert before.cost == {}
    resume = ["--resume", "--profile", "--profile-threads", "1"]
    assert main([*base, "--work-dir", str(plain), *resume]) == 0
    after = load_result(plain / "result.json")
    assert after.cost["latency_ms"]["median"] > 0
    assert after.metrics == before.metrics and after.counts == before.counts
