"""The shared CLIP modules: open_clip models from every weight format users have, read from local
files or the cache only, with the activation the weights were trained with; the disk cache of text
embeddings (wsolbench/blocks/clip_models.py, wsolbench/blocks/clip_weights.py,
wsolbench/blocks/clip_text.py).

Each weight-format test fabricates a file in the real on-disk layout with random values and checks
that every tensor of the loaded model equals what was written."""

import hashlib
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch
from clip_layouts import (
    random_openai_clip,
    register_tiny_config,
    write_hf_cache,
    write_openai_archive,
)

from wsolbench.blocks import clip_models, clip_text
from wsolbench.blocks.clip_models import load_clip
from wsolbench.blocks.clip_weights import OPENAI_EXTRA_KEYS, read_weights
from wsolbench.blocks.open_clip_configs import TINY_CLIP, ClipWeightsError


def _sha256(path) -> str:
    """A file's sha256 hex, computed here (not by wsolbench)."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def state_of(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_holds(loaded, written: dict) -> None:
    """Every tensor of the loaded model equals the written one (in the file's dtype); nothing of
    the model is left unwritten, nothing written but OpenAI's setting entries is left out."""
    own = loaded.model.state_dict()
    assert set(own) == set(written) - set(OPENAI_EXTRA_KEYS)
    for key, value in own.items():
        assert torch.equal(value.to(written[key].dtype), written[key]), key


def is_quick_gelu(loaded) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in loaded.model.modules())


@pytest.fixture(scope="module")
def openai_files(tmp_path_factory):
    """OpenAI's TorchScript archive of a tiny CLIP (TINY_CLIP's shapes), and the state dict a user
    converts from it with ``torch.save(torch.jit.load(IN).state_dict(), OUT)``."""
    folder = tmp_path_factory.mktemp("openai")
    archive = folder / "ViT-B-16.pt"
    written = write_openai_archive(random_openai_clip(seed=1), archive)
    assert {k for k in written if k in OPENAI_EXTRA_KEYS} == set(OPENAI_EXTRA_KEYS)
    converted = folder / "ViT-B-16-state-dict.pt"
    torch.save(written, converted)
    return archive, converted, written


def test_a_random_tower_is_seeded_and_says_so():
    first, again, other = (load_clip(TINY_CLIP, seed=s) for s in (3, 3, 4))
    assert first.source == "none" and first.image_size == (96, 96) and first.patch_size == 8
    assert same_weights(state_of(first.model), state_of(again.model))
    assert not same_weights(state_of(first.model), state_of(other.model))
    assert first.mean == clip_models.CLIP_MEAN and first.std == clip_models.CLIP_STD
    assert clip_models.weights_key(first) != clip_models.weights_key(other)
    assert first.activation == "gelu" and not is_quick_gelu(first)  # the config's activation


def test_a_random_tower_of_another_architecture_under_one_name_has_its_own_cache_key(
    monkeypatch,
):
    """A random tower's text embeddings are cached by what makes it: a model configuration of
    wsolbench's own, edited under the same name, must not read the old tower's embeddings."""
    from wsolbench.blocks.open_clip_configs import import_open_clip

    factory = import_open_clip().factory
    before = clip_models.weights_key(load_clip(TINY_CLIP, seed=3))
    edited = {**factory._MODEL_CONFIGS[TINY_CLIP], "embed_dim": 32}
    monkeypatch.setitem(factory._MODEL_CONFIGS, TINY_CLIP, edited)
    assert clip_models.weights_key(load_clip(TINY_CLIP, seed=3)) != before


def test_open_clip_state_dict(tmp_path):
    """``torch.save(model.state_dict(), PATH)`` of an open_clip model: its config's activation,
    unless declared."""
    saved = load_clip(TINY_CLIP, seed=5)
    path = tmp_path / "tiny.pt"
    written = state_of(saved.model)
    torch.save(saved.model.state_dict(), path)
    loaded = load_clip(TINY_CLIP, pretrained="ignored-when-a-file-is-given", checkpoint=str(path))
    assert (
        loaded.source == f"file:{path.name} (sha256 {_sha256(path)[:12]}, gelu)"
        and not is_quick_gelu(loaded)
    )
    assert_holds(loaded, written)
    declared = load_clip(TINY_CLIP, checkpoint=str(path), activation="quickgelu")
    assert (
        declared.source == f"file:{path.name} (sha256 {_sha256(path)[:12]}, quickgelu)"
        and is_quick_gelu(declared)
    )
    assert_holds(declared, written)
    # the same file, another activation: another encoder for every cache
    assert clip_models.weights_key(declared) != clip_models.weights_key(loaded)
    # wrapped as training scripts save it
    nested = tmp_path / "nested.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in written.items()}}, nested)
    assert_holds(load_clip(TINY_CLIP, checkpoint=str(nested)), written)


def test_openai_torchscript_archive_is_read_without_running_it(openai_files, monkeypatch):
    archive, _, written = openai_files

    def no_jit(*args, **kwargs):
        raise AssertionError("the archive was handed to torch.jit")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    loaded = load_clip(TINY_CLIP, checkpoint=str(archive))
    assert (
        loaded.source
        == f"file:{archive.name} (sha256 {_sha256(archive)[:12]}, OpenAI TorchScript archive, "
        "quickgelu)"
    )
    assert loaded.activation == "quickgelu" and is_quick_gelu(loaded)
    assert_holds(loaded, written)


def test_the_archive_reader_equals_torchscripts_own_state_dict(openai_files):
    archive, _, _ = openai_files
    reference = torch.jit.load(str(archive), map_location="cpu").state_dict()  # our own file
    ours = read_weights(archive)
    expected = {k: v for k, v in reference.items() if k not in OPENAI_EXTRA_KEYS}
    assert ours.state.keys() == expected.keys()
    assert all(torch.equal(ours.state[k], expected[k]) for k in expected)


def test_openai_state_dict(openai_files):
    """The conversion users were told to run: OpenAI's keys plus its three setting entries."""
    _, converted, written = openai_files
    loaded = load_clip(TINY_CLIP, checkpoint=str(converted))
    assert (
        loaded.source
        == f"file:{converted.name} (sha256 {_sha256(converted)[:12]}, OpenAI state dict, quickgelu)"
    )
    assert is_quick_gelu(loaded)
    assert_holds(loaded, written)


def test_an_archive_with_code_to_run_is_refused(tmp_path):
    """A TorchScript-looking archive whose data.pkl calls a function is refused, not called."""
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps(_Payload(marker), protocol=2))
        archive.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr("evil/code/__torch__.py", "")
    with pytest.raises(ClipWeightsError, match="refusing global") as caught:
        load_clip(TINY_CLIP, checkpoint=str(path))
    assert not marker.exists()
    assert "torch.jit.load(" in str(caught.value)  # the one-time conversion, for a trusted file


def _tag(monkeypatch, url: str = "", hf_hub: str = "", quick_gelu: bool = True) -> str:
    """Register an open_clip tag for TINY_CLIP (as open_clip registers ``ViT-B-16``/``openai``)."""
    import open_clip.pretrained as registry

    config = registry._pcfg(url=url, hf_hub=hf_hub, quick_gelu=quick_gelu)
    monkeypatch.setitem(registry._PRETRAINED, TINY_CLIP, {"fake_openai": config})
    return "fake_openai"


def test_a_tag_from_the_hugging_face_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    saved = load_clip(TINY_CLIP, seed=8)
    written = state_of(saved.model)
    write_hf_cache(tmp_path / "hf", "timm/wsolbench-tiny.openai", written)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    tag = _tag(monkeypatch, hf_hub="timm/wsolbench-tiny.openai/")
    loaded = load_clip(TINY_CLIP, pretrained=tag)
    (weights,) = (tmp_path / "hf").rglob("*.safetensors")
    sha256 = _sha256(weights)[:12]
    assert loaded.source == f"cache:{TINY_CLIP}/{tag} (sha256 {sha256}, quickgelu)"  # the tag
    assert is_quick_gelu(loaded)
    assert_holds(loaded, written)


def test_a_tag_from_openais_download_folder(openai_files, tmp_path, monkeypatch):
    """``pip install clip`` caches OpenAI's archive in ~/.cache/clip under the URL's file name."""
    import huggingface_hub

    archive, _, written = openai_files
    folder = tmp_path / "home" / ".cache" / "clip"
    folder.mkdir(parents=True)
    (folder / "ViT-B-16.pt").write_bytes(archive.read_bytes())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a, **k: None)
    url = "https://openaipublic.azureedge.net/clip/models/5806e77c/ViT-B-16.pt"
    tag = _tag(monkeypatch, url=url, hf_hub="timm/wsolbench-tiny.openai/")
    loaded = load_clip(TINY_CLIP, pretrained=tag)
    details = (
        f"sha256 {_sha256(folder / 'ViT-B-16.pt')[:12]}, OpenAI TorchScript archive, quickgelu"
    )
    assert loaded.source == f"cache:{TINY_CLIP}/{tag} ({details})"
    assert_holds(loaded, written)


def test_a_file_that_does_not_fit_names_every_kind_of_mismatch(openai_files, tmp_path):
    _, _, written = openai_files
    state = {k: v for k, v in written.items() if k != "ln_final.bias"}
    state["visual.extra"] = torch.zeros(3)
    state["visual.proj"] = torch.zeros(64, 32)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ClipWeightsError) as caught:
        load_clip(TINY_CLIP, checkpoint=str(path))
    message = str(caught.value)
    assert "visual.proj: file (64, 32) vs model (64, 64)" in message
    assert "1 key missing from the file (ln_final.bias)" in message
    assert "1 key the model does not have (visual.extra)" in message
    # the models these weights fit are named (the tiny config; synthclip's has the same shapes)
    assert re.search(rf"\(e\.g\. [^)]*{TINY_CLIP}\)", message) and "-o clip.model=NAME" in message


def test_the_model_a_file_belongs_to_is_suggested(openai_files, tmp_path):
    archive, _, _ = openai_files
    wider = register_tiny_config("wsolbench-test-wider", tmp_path, width=96, head_width=48)
    with pytest.raises(ClipWeightsError) as caught:
        load_clip(wider, checkpoint=str(archive))
    message = str(caught.value)
    assert "OpenAI TorchScript archive" in message and "of another shape" in message
    assert re.search(
        rf"width 64, 2 blocks, 8-pixel patches at 96 px \(e\.g\. [^)]*{TINY_CLIP}\)", message
    )


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
    with pytest.raises(ClipWeightsError, match="clip.activation must be one of"):
        load_clip(TINY_CLIP, activation="relu")


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


def test_the_activation_is_part_of_the_text_cache_key(tmp_path):
    """One file through a QuickGELU tag and as a plain checkpoint: two towers, two cache rows."""
    path = tmp_path / "tiny.pt"
    torch.save(load_clip(TINY_CLIP, seed=6).model.state_dict(), path)
    rows = clip_text.class_prompts(["cat"], ["a photo of a {}."])
    gelu = clip_text.text_embeddings(load_clip(TINY_CLIP, checkpoint=str(path)), rows, tmp_path)
    quick = load_clip(TINY_CLIP, checkpoint=str(path), activation="quickgelu")
    cached = clip_text.text_embeddings(quick, rows, cache_dir=tmp_path)
    fresh = clip_text.text_embeddings(quick, rows, use_cache=False)
    assert torch.equal(cached, fresh) and not torch.allclose(cached, gelu)
    assert len(list((tmp_path / "text").glob("*.pt"))) == 2


def test_bad_prompts_are_refused():
    with pytest.raises(ValueError, match="must each contain"):
        clip_text.class_prompts(["cat"], ["a photo."])
    with pytest.raises(ValueError, match="must not be empty"):
        clip_text.background_prompts([])
