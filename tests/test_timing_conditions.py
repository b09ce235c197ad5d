"""Timing conditions (wsolbench.cost.conditions): what else ran while timing, the clean rule,
the marks."""

import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

import wsolbench.cost.conditions as conditions_module
from wsolbench.cost.conditions import TimingMonitor, latency_clean, timing_conditions
from wsolbench.cost.formatting import LATENCY_MARK, format_cost
from wsolbench.cost.profile import ProfileSettings, profile_method
from wsolbench.cost.timing import summarize_times
from wsolbench.method import Capabilities, Prediction, WSOLMethod


class Tiny(WSOLMethod):
    capabilities = Capabilities(trainable=False)

    def __init__(self, num_classes: int = 3):
        super().__init__(num_classes)
        self.conv = nn.Conv2d(3, 2, 3, padding=1)

    def predict(self, images, labels):
        features = self.conv(images)
        return Prediction(features.mean((2, 3)).repeat(1, 2)[:, :3], features.mean(1))


@pytest.mark.parametrize(
    ("cpus", "threads", "others", "wait", "clean"),
    [
        (2, 1, 0.0, 0.0, True),
        (2, 1, 1.0, 0.01, True),  # the other core fully used by others: ours still had one
        (2, 1, 1.15, 0.01, False),  # others needed part of the timing's core
        (2, 1, 0.5, 0.2, False),  # the timing thread waited for a CPU 20 % of the time
        (2, 1, None, 0.03, True),  # window too short for /proc/stat: the wait share decides
        (2, 1, 0.4, None, True),  # no schedstat: others' share decides
        (2, 2, 0.05, 0.0, True),  # every core used by the timing: 0.1 core of background
        (2, 2, 0.3, 0.0, False),
        (16, 1, 9.0, 0.0, True),
        (16, 16, 1.0, 0.0, False),
    ],
)
def test_the_clean_rule(cpus, threads, others, wait, clean):
    conditions = timing_conditions(
        cpus=cpus, threads=threads, others_cpu_cores=others, load_before=[99.0, 0, 0],
        wait_share=wait,
    )  # fmt: skip
    # measured figures decide; the load average (which lags and counts us) does not
    assert conditions["clean"] is clean and "load" not in conditions["basis"]
    timed = {"warmup": 10, "runs": 50}  # the calls a reported latency needs
    assert latency_clean({"timing_conditions": conditions, "latency_ms": timed}) is clean


def test_without_proc_the_load_average_decides_and_nothing_readable_is_not_clean():
    by_load = timing_conditions(cpus=2, threads=1, others_cpu_cores=None, load_before=[0.8, 1, 1])
    assert by_load["clean"] and by_load["basis"] == "load_avg_1min_before"
    busy = timing_conditions(cpus=2, threads=1, others_cpu_cores=None, load_before=[1.6, 1, 1])
    assert not busy["clean"]
    assert not timing_conditions(cpus=2, threads=1, others_cpu_cores=None, load_before=None)[
        "clean"
    ]
    assert not latency_clean({})  # conditions not recorded: never shown as clean


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_monitor_sees_another_process_spinning():
    spinner = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"]
    )
    try:
        time.sleep(0.3)  # let it start
        with TimingMonitor(threads=1) as monitor:
            time.sleep(1.5)
    finally:
        spinner.wait()
    conditions = monitor.conditions
    # The spinner kept about one core busy (more if the machine had other work too).
    assert conditions["others_cpu_cores"] >= 0.6
    assert conditions["own_cpu_cores"] < 0.3  # this process slept
    assert len(conditions["load_avg_before"]) == 3 and conditions["cpus"] >= 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_monitor_sees_this_process_wait_for_a_cpu_on_an_oversubscribed_machine():
    spin = "import time\nend = time.time() + 4\nwhile time.time() < end: pass"
    spinners = [
        subprocess.Popen([sys.executable, "-c", spin]) for _ in range((os.cpu_count() or 1) + 1)
    ]
    try:
        time.sleep(0.3)
        with TimingMonitor(threads=1) as monitor:
            end = time.perf_counter() + 1.5
            while time.perf_counter() < end:
                pass
    finally:
        for spinner in spinners:
            spinner.wait()
    conditions = monitor.conditions
    if conditions["wait_share"] is None:
        pytest.skip("no /proc/self/task/*/schedstat here")
    # more runnable threads than cores: this one waited a good part of the time
    assert conditions["wait_share"] > 0.1 and not conditions["clean"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_monitor_counts_this_process_as_its_own_not_as_others():
    with TimingMonitor(threads=1) as monitor:
        end = time.process_time() + 0.8  # 0.8 s of this process's CPU, however long it takes
        while time.process_time() < end:
            pass
    conditions = monitor.conditions
    assert conditions["own_cpu_cores"] * conditions["seconds"] >= 0.7


def test_profile_records_the_conditions_and_marks_a_busy_timing(monkeypatch):
    # A fake /proc: during the timing, the machine's busy time grows by 1.9 s per second of wall
    # time while this process uses 0.3 s: others kept 1.6 cores busy on 2 cores, 1 thread used.
    state = {"t": 0.0}

    def fake_cpu_seconds():
        return 1.9 * state["t"], 0.3 * state["t"]

    def fake_clock():
        state["t"] += 1.0
        return state["t"]

    monkeypatch.setattr(conditions_module, "_cpu_seconds", fake_cpu_seconds)
    monkeypatch.setattr(conditions_module, "_run_times", lambda: None)
    monkeypatch.setattr(conditions_module.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(conditions_module.time, "perf_counter", fake_clock)
    settings = ProfileSettings(warmup=1, runs=3, batch_size=2, throughput_runs=1, threads=1)
    cost = profile_method(Tiny(), (8, 8), 3, "cpu", settings)
    conditions = cost["timing_conditions"]
    assert conditions["threads"] == 1 and conditions["cpus"] == 2
    assert conditions["others_cpu_cores"] == pytest.approx(1.6, abs=0.01)
    assert conditions["clean"] is False and not latency_clean(cost)
    text = format_cost(cost)
    assert f"ms median {LATENCY_MARK}" in text and "NOT clean" in text
    assert "others used 1.60 of 2 cores" in text


def test_no_timing_records_no_conditions():
    cost = profile_method(Tiny(), (8, 8), 3, "cpu", ProfileSettings(timing=False))
    assert cost["timing_conditions"] is None and cost["latency_ms"] is None
    assert "not measured" in format_cost(cost)


def test_summary_is_robust_to_one_slow_call():
    times = [0.010] * 9 + [1.0]  # one call hit by another process
    summary = summarize_times(times)
    assert summary["median"] == pytest.approx(10.0)
    assert summary["iqr"] == pytest.approx(0.0)
    assert summary["mean"] > 100  # what a mean would have reported
    assert torch.get_num_threads() >= 1


def test_a_window_too_short_for_proc_stat_records_no_cpu_shares():
    with TimingMonitor(threads=1) as monitor:
        pass  # far below /proc/stat's 10-ms ticks (e.g. the center baseline)
    conditions = monitor.conditions
    assert conditions["others_cpu_cores"] is None and conditions["own_cpu_cores"] is None
    # schedstat counts nanoseconds: where readable, it still decides
    assert conditions["basis"] in ("wait_share", "load_avg_1min_before", "nothing readable")
