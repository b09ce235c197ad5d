"""The shared CLIP modules: open_clip models from local files or the cache only, and the disk cache
of text embeddings (methods/clip_models.py, methods/clip_text.py)."""

from pathlib import Path

import pytest
import torch

from methods import clip_models, clip_text
from methods.clip_models import TINY_CLIP, ClipWeightsError, load_clip


def state_of(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_random_tower_is_seeded_and_says_so():
    first, again, other = (load_clip(TINY_CLIP, seed=s) for s in (3, 3, 4))
    assert first.source == "none" and first.image_size == (96, 96) and first.patch_size == 8
    assert same_weights(state_of(first.model), state_of(again.model))
    assert not same_weights(state_of(first.model), state_of(other.model))
    assert first.mean == clip_models.CLIP_MEAN and first.std == clip_models.CLIP_STD
    assert clip_models.weights_key(first) != clip_models.weights_key(other)


def test_a_saved_state_dict_round_trips(tmp_path):
    saved = load_clip(TINY_CLIP, seed=5)
    path = tmp_path / "tiny.pt"
    torch.save(saved.model.state_dict(), path)
    loaded = load_clip(TINY_CLIP, pretrained="ignored-when-a-file-is-given", checkpoint=str(path))
    assert loaded.source == f"file:{path.resolve()}"
    assert same_weights(state_of(loaded.model), state_of(saved.model))


class _Payload:
    """Unpickling this runs ``Path.touch``: a stand-in for code a malicious checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_is_read_with_weights_only(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    state = state_of(load_clip(TINY_CLIP).model)
    state["extra"] = _Payload(marker)
    torch.save(state, path)  # a state dict plus one pickled Python object
    with pytest.raises(ClipWeightsError, match="weights_only=True") as caught:
        load_clip(TINY_CLIP, checkpoint=str(path))
    assert not marker.exists(), "the checkpoint was unpickled with code execution"
    assert "torch.save(model.state_dict(), PATH)" in str(caught.value)


def test_a_missing_checkpoint_says_how_to_provide_one(tmp_path):
    with pytest.raises(ClipWeightsError) as caught:
        load_clip(TINY_CLIP, checkpoint=str(tmp_path / "nope.pt"))
    message = str(caught.value)
    assert "nope.pt does not exist" in message
    assert "-o clip.checkpoint=PATH" in message and "--no-pretrained" in message


def test_an_uncached_tag_is_an_error_not_a_download(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HOME", str(tmp_path))  # an empty ~/.cache/clip
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(ClipWeightsError) as caught:
        load_clip("ViT-B-16", pretrained="openai")
    message = str(caught.value)
    assert "not in the local cache" in message and "never downloads" in message
    assert "-o clip.checkpoint=PATH" in message and "--no-pretrained" in message
    with pytest.raises(ClipWeightsError, match="no pretrained tag 'nonsense'"):
        load_clip("ViT-B-16", pretrained="nonsense")
    with pytest.raises(ClipWeightsError, match="did you mean 'ViT-B-16'"):
        load_clip("ViT-B-61")


def test_a_quickgelu_tag_builds_quickgelu(tmp_path, monkeypatch):
    """OpenAI's weights were trained with QuickGELU; open_clip's ViT-B-16 config says GELU."""
    from open_clip.transformer import QuickGELU

    open_clip = clip_models._import_open_clip()
    path = tmp_path / "cached.pt"
    torch.save(load_clip(TINY_CLIP).model.state_dict(), path)
    monkeypatch.setattr(clip_models, "_cached_tag_file", lambda name, tag: path)
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda name, tag: {"quick_gelu": True})
    loaded = load_clip(TINY_CLIP, pretrained="fake-openai")
    assert loaded.source == f"cache:{TINY_CLIP}/fake-openai"
    assert any(isinstance(m, QuickGELU) for m in loaded.model.modules())
    assert not any(isinstance(m, QuickGELU) for m in load_clip(TINY_CLIP).model.modules())


def test_trimmed_text_encoding_equals_open_clips():
    loaded = load_clip(TINY_CLIP, seed=1)
    tokens = loaded.tokenizer(["a photo of a bird.", "a photo of a very long-tailed red bird."])
    with torch.no_grad():
        full = loaded.model.encode_text(tokens)
        trimmed = clip_text._encode_trimmed(loaded.model, tokens)
    torch.testing.assert_close(trimmed, full, rtol=1e-5, atol=1e-5)


def test_text_embeddings_are_cached_and_keyed_on_encoder_and_prompts(tmp_path, monkeypatch):
    loaded = load_clip(TINY_CLIP, seed=1)
    rows = clip_text.class_prompts(["cat", "dog"], ["a photo of a {}.", "a {}."])
    calls = []
    encode = clip_text.encode_rows

    def counting(loaded_, rows_, **kwargs):
        calls.append([list(row) for row in rows_])
        return encode(loaded_, rows_, **kwargs)

    monkeypatch.setattr(clip_text, "encode_rows", counting)
    first = clip_text.text_embeddings(loaded, rows, cache_dir=tmp_path)
    assert first.shape == (2, 64) and torch.allclose(first.norm(dim=1), torch.ones(2))
    assert len(list((tmp_path / "text").glob("*.pt"))) == 1
    again = clip_text.text_embeddings(loaded, rows, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(first, again)  # reused, not re-encoded
    # rows are cached one by one: another row list encodes only the rows not seen before
    more = [rows[1], ["a photo of a fox."]]
    shared = clip_text.text_embeddings(loaded, more, cache_dir=tmp_path)
    assert calls[-1] == [["a photo of a fox."]] and torch.equal(shared[0], first[1])
    # another template, other weights: other keys, encoded again
    clip_text.text_embeddings(loaded, clip_text.class_prompts(["cat"], ["a {}."]), tmp_path)
    other = clip_text.text_embeddings(load_clip(TINY_CLIP, seed=2), rows, cache_dir=tmp_path)
    assert len(calls) == 4 and not torch.allclose(other, first)
    assert len(list((tmp_path / "text").glob("*.pt"))) == 2  # one file per encoder
    # a damaged file is recomputed, not trusted
    for path in (tmp_path / "text").glob("*.pt"):
        path.write_bytes(b"not a tensor")
    repaired = clip_text.text_embeddings(loaded, rows, cache_dir=tmp_path)
    assert len(calls) == 5 and torch.allclose(repaired, first)


def test_bad_prompts_are_refused():
    with pytest.raises(ValueError, match="must each contain"):
        clip_text.class_prompts(["cat"], ["a photo."])
    with pytest.raises(ValueError, match="must not be empty"):
        clip_text.background_prompts([])
