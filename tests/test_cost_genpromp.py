"""GenPromp's inference cost (wsolbench/cost/genpromp.py): hand counts and published sizes."""

import json

import pytest
import torch

from wsolbench.cost.macs import MacCounter


def text_encoder_hand_count(tokens: int = 77, width: int = 768, layers: int = 12) -> int:
    """CLIP's text transformer: per token qkv (3 w²), output projection (w²) and MLP (2 · 4 w²),
    plus the scores and weighted values (2 · L · w per token, the causal mask not skipped), per
    layer."""
    per_token = 4 * width * width + 2 * width * 4 * width
    return layers * (tokens * per_token + 2 * tokens * tokens * width)


def test_text_encoder_against_the_hand_count_and_clip_text_model_size():
    from wsolbench.cost.genpromp import TextEncoder

    with torch.device("meta"):
        encoder = TextEncoder(vocab=49408 + 200).eval()
    counter = MacCounter()
    with torch.no_grad(), counter:
        out = encoder(torch.zeros(1, 77, dtype=torch.int64, device="meta"))
    assert tuple(out.shape) == (1, 77, 768)
    assert counter.macs == text_encoder_hand_count() == 6_649_251_840
    assert counter.uncounted == {}
    # transformers' CLIPTextModel of Stable Diffusion v1-4 has 123,060,480 parameters; GenPromp
    # adds one 768-wide concept-token embedding per class.
    assert sum(p.numel() for p in encoder.parameters()) == 123_060_480 + 200 * 768


def test_the_full_record(tmp_path, capsys):
    pytest.importorskip("diffusers")
    from wsolbench.cost.genpromp import main, measure

    record = measure()
    parts = record["components"]
    # Published sizes of Stable Diffusion v1-4: UNet 859,520,964 parameters; VAE encoder 34.2 M.
    assert parts["unet"]["params"] == 859_520_964
    assert parts["vae_encoder"]["params"] == 34_163_664
    assert parts["text_encoder"]["macs_per_call"] == text_encoder_hand_count()
    # The VAE's mid-block self-attention over the 64 x 64 latent grid, 512 channels, one head:
    # scores and weighted values, 4096 · 4096 · 512 MACs each.
    assert parts["vae_encoder"]["macs_by_op_per_call"]["bmm"] == 2 * 4096 * 4096 * 512
    calls = {"vae_encoder": 1, "text_encoder": 14, "unet": 2, "classifier": 1}
    assert {k: v["calls_per_image"] + v["calls_per_round"] for k, v in parts.items()} == calls
    assert record["macs"] == sum(parts[k]["macs_per_call"] * n for k, n in calls.items())
    assert (
        record["macs_two_rounds"]
        == record["macs"]
        + 14 * parts["text_encoder"]["macs_per_call"]
        + 2 * parts["unet"]["macs_per_call"]
    )
    assert record["macs_uncounted"] == {} and record["cost_only"] is True
    assert record["params"]["inference"] == sum(p["params"] for p in parts.values())
    # The UNet (0.4 TMACs a call) and the VAE encoder (0.56 T) dominate: 1.49 TMACs per image.
    assert round(record["macs"] / 1e12, 2) == 1.49

    out = tmp_path / "genpromp.json"
    assert main(["--json", str(out)]) == 0
    assert json.loads(out.read_text())["macs"] == record["macs"]
    assert "GMACs per call" in capsys.readouterr().out


def test_without_diffusers_the_command_says_how_to_install_it(monkeypatch, capsys):
    import wsolbench.cost.genpromp as genpromp

    def missing():
        raise genpromp.MissingExtraError("GenPromp's cost needs diffusers; install the extra")

    monkeypatch.setattr(genpromp, "_diffusers", missing)
    assert genpromp.main([]) == 2
    assert capsys.readouterr().err.startswith("error: GenPromp's cost needs diffusers")
