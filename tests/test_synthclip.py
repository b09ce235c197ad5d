"""synthclip (wsolbench/blocks/synthclip.py): wsolbench's own CLIP of the synthetic world — trained
deterministically with open_clip's model and loss, cached and versioned, and loaded by the name
``synthclip-v1`` through the same path a user's CLIP file takes. A tiny training config stands in
for the real one (which takes minutes)."""

import json
import threading
from dataclasses import replace

import pytest
import torch

from wsolbench.blocks import synthclip
from wsolbench.blocks.clip_models import load_clip
from wsolbench.blocks.open_clip_configs import ClipWeightsError
from wsolbench.blocks.synthclip import (
    MODEL,
    SYNTHCLIP,
    SYNTHCLIP_QUICK,
    SynthClipConfig,
    ensure_synthclip,
)

TINY = SynthClipConfig(pairs=24, steps=3, batch_size=8, warmup_steps=1)
TINY_QUICK = replace(TINY, steps=2)


@pytest.fixture
def tiny_default(monkeypatch):
    """Make the named builds tiny (what ``synthclip-v1`` and ``synthclip-quick-v1`` resolve to)."""
    monkeypatch.setattr(
        synthclip, "BUILDS", {SYNTHCLIP: (TINY, 1), SYNTHCLIP_QUICK: (TINY_QUICK, 1)}
    )
    return TINY


@pytest.fixture
def count_trainings(monkeypatch):
    calls = []
    real = synthclip.train_synthclip

    def counting(config, **kwargs):
        calls.append(config)
        return real(config, **kwargs)

    monkeypatch.setattr(synthclip, "train_synthclip", counting)
    return calls


def test_training_is_deterministic_per_seed_and_changes_the_weights():
    first, record = synthclip.train_synthclip(TINY)
    second, _ = synthclip.train_synthclip(TINY)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other, _ = synthclip.train_synthclip(replace(TINY, seed=1))
    assert any(not torch.equal(first[k], other[k]) for k in first)
    # the steps moved the weights away from the seeded initialisation
    import open_clip

    torch.manual_seed(TINY.seed)
    init = open_clip.create_model(MODEL, pretrained=None).state_dict()
    assert any(not torch.equal(first[k], init[k]) for k in first)
    assert record["digest"] == TINY.digest() and record["config"]["steps"] == TINY.steps


def test_training_does_not_depend_on_the_callers_thread_count():
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            states.append(synthclip.train_synthclip(TINY)[0])
            assert torch.get_num_threads() == threads  # restored
    finally:
        torch.set_num_threads(before)
    one, two = states
    assert all(torch.equal(one[k], two[k]) for k in one)


def test_digest_changes_with_every_field():
    digests = {TINY.digest()}
    for field, value in [
        ("seed", 1),
        ("pairs", 25),
        ("steps", 4),
        ("batch_size", 9),
        ("lr", 1e-3),
        ("warmup_steps", 2),
        ("weight_decay", 0.0),
        ("background_fraction", 0.0),
        ("head_radius", (0.08, 0.12)),
        ("threads", 2),
    ]:
        digests.add(replace(TINY, **{field: value}).digest())
    assert len(digests) == 11


def test_ensure_builds_once_into_the_cache_and_the_file_loads_as_a_users(tmp_path, count_trainings):
    path = ensure_synthclip(TINY, tmp_path, progress=False)
    assert path == tmp_path / "synthclip" / f"{SYNTHCLIP}-{TINY.digest()}.pt"
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["name"] == SYNTHCLIP and record["model"] == MODEL
    assert ensure_synthclip(TINY, tmp_path, progress=False) == path
    assert len(count_trainings) == 1
    # a plain state dict of the registered config: what torch.save(model.state_dict()) writes
    state = torch.load(path, weights_only=True)
    loaded = load_clip(MODEL, checkpoint=str(path))
    own = loaded.model.state_dict()
    assert set(own) == set(state) and all(torch.equal(own[k], state[k]) for k in own)
    assert loaded.source.startswith(f"file:{path.name} (sha256 ")  # by name and content


def test_two_builds_at_once_train_once(tmp_path, count_trainings):
    # two processes (here threads: each holds its own open lock file) asking for an unbuilt
    # synthclip at once, as torchrun's ranks do: one trains it, the other waits and reads it
    paths = []
    builds = [
        threading.Thread(
            target=lambda: paths.append(ensure_synthclip(TINY, tmp_path, progress=False))
        )
        for _ in range(2)
    ]
    for build in builds:
        build.start()
    for build in builds:
        build.join(timeout=120)
    assert len(paths) == 2 and paths[0] == paths[1] and len(count_trainings) == 1


def test_the_name_resolves_to_the_default_build_on_first_use(tiny_default, count_trainings):
    loaded = load_clip(MODEL, checkpoint=SYNTHCLIP)
    assert f"{SYNTHCLIP}-{TINY.digest()}.pt" in loaded.source
    load_clip(MODEL, checkpoint=SYNTHCLIP)
    assert count_trainings == [TINY]


def test_the_quick_name_is_its_own_build_and_file(tiny_default, count_trainings):
    """The demo's build is another file under its own name, never passed off as synthclip-v1."""
    quick = load_clip(MODEL, checkpoint=SYNTHCLIP_QUICK)
    assert f"{SYNTHCLIP_QUICK}-{TINY_QUICK.digest()}.pt" in quick.source
    assert count_trainings == [TINY_QUICK]
    path = synthclip.checkpoint_path(TINY_QUICK, name=SYNTHCLIP_QUICK)
    assert synthclip.checkpoint_path(name=SYNTHCLIP_QUICK) == path  # a name means its own config
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["name"] == SYNTHCLIP_QUICK and record["config"]["steps"] == TINY_QUICK.steps
    assert load_clip(MODEL, checkpoint=SYNTHCLIP).source != quick.source


def test_the_name_with_another_model_is_one_clear_error(tiny_default, count_trainings):
    with pytest.raises(ClipWeightsError, match=f"-o clip.model={MODEL}"):
        load_clip("wsolbench-tiny-clip", checkpoint=SYNTHCLIP)
    assert count_trainings == []  # refused before any training


def test_prepare_synthclip_builds_it_explicitly(tiny_default, tmp_path, capsys):
    from wsolbench.cli.main import main

    assert main(["prepare", "synthclip", "--out", str(tmp_path)]) == 0
    path = tmp_path / "synthclip" / f"{SYNTHCLIP}-{TINY.digest()}.pt"
    assert path.is_file()
    assert str(path) in capsys.readouterr().out


def test_prepare_synthclip_quick_builds_the_demos_one(tiny_default, tmp_path, capsys):
    from wsolbench.cli.main import main

    assert main(["prepare", "synthclip-quick", "--out", str(tmp_path)]) == 0
    path = tmp_path / "synthclip" / f"{SYNTHCLIP_QUICK}-{TINY_QUICK.digest()}.pt"
    assert path.is_file() and str(path) in capsys.readouterr().out


def test_prepare_synthclip_defaults_to_the_cache_runs_read(tiny_default, tmp_path, monkeypatch):
    from wsolbench.cli.main import main

    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path))
    assert main(["prepare", "synthclip"]) == 0
    assert (tmp_path / "synthclip" / f"{SYNTHCLIP}-{TINY.digest()}.pt").is_file()


def test_prepare_a_dataset_without_out_is_one_error_line(tmp_path, capsys):
    from wsolbench.cli.main import main

    assert main(["prepare", "synthetic"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: prepare synthetic needs --out (the folder to write the dataset to)"
    )
