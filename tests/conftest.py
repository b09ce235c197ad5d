"""Test-wide settings: offline, and a private cache so tests never touch the user's."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


#: what TeD-Loc's cam teacher is in tests: one epoch of a tiny cam (seconds, not minutes), on any
#: dataset (no pretrained backbone)
TINY_CAM_TEACHER_OVERRIDES = (
    "train.max_epochs=1",
    "backbone.name=wsolcnn",
    "backbone.pretrained=false",
    "backbone.kwargs={channels: [8, 16], strides: [2, 2], dilations: [1, 1]}",
)


@pytest.fixture(autouse=True)
def _tiny_cam_teacher(monkeypatch):
    """No test trains a real cam teacher (minutes): a test that reaches TeD-Loc's default teacher
    builds this tiny one instead (cached in the private cache, so once per data)."""
    from wsolbench.blocks import cam_teacher

    tiny = cam_teacher.CamTeacherConfig(overrides=TINY_CAM_TEACHER_OVERRIDES)
    monkeypatch.setattr(cam_teacher, "DEFAULT_CONFIG", tiny)


@pytest.fixture
def tokenized_prompts(monkeypatch) -> list[str]:
    """Every prompt the CLIP methods hand to the tokenizer, in order (filled as they run)."""
    import methods.clip_base as clip_base
    from wsolbench.blocks.clip_models import load_clip

    seen: list[str] = []

    def recording_load(*args, **kwargs):
        loaded = load_clip(*args, **kwargs)
        tokenizer = loaded.tokenizer

        def tokenize(texts, *a, **k):
            seen.extend(texts)
            return tokenizer(texts, *a, **k)

        loaded.tokenizer = tokenize
        return loaded

    monkeypatch.setattr(clip_base, "load_clip", recording_load)
    return seen


_TORCH_THREADS = []  # torch's intra-op thread count when the first test started


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """``run --threads N`` in this process sets torch's process-wide count: every test (and the
    module fixtures it builds) starts with the count the session began with."""
    import torch

    _TORCH_THREADS[:] = _TORCH_THREADS or [torch.get_num_threads()]
    yield
    torch.set_num_threads(_TORCH_THREADS[0])
