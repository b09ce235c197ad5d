"""The state-dict reading and checking that backbones, CLIP towers and run weights share."""

import zipfile

import pytest
import torch

from wsolbench.blocks.state_dicts import (
    SHOWN_KEYS,
    StateDictError,
    fit_problems,
    load_failure,
    unwrap_state_dict,
)

NESTING = ("state_dict", "model")
PREFIXES = ("module.", "_orig_mod.")


def _shapes(**shapes: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """A state dict of zeros: ``_shapes(a=(2,))`` → ``{"a": zeros(2)}`` (dots written ``__``)."""
    return {k.replace("__", "."): torch.zeros(s) for k, s in shapes.items()}


# --- unwrap_state_dict -------------------------------------------------------------------------


def test_unwrap_descends_into_the_nesting_and_strips_every_wrapper():
    weight = torch.ones(2, 3)
    loaded = {
        "epoch": 7,
        "optimizer": {"lr": 0.1},
        "state_dict": {
            "module._orig_mod.fc.weight": weight,
            "module._orig_mod.fc.bias": torch.zeros(2),
            "module._orig_mod.note": "not a tensor",
        },
    }
    state = unwrap_state_dict(loaded, nesting_keys=NESTING, prefixes=PREFIXES)
    assert list(state) == ["fc.weight", "fc.bias"]
    assert state["fc.weight"] is weight


def test_unwrap_strips_a_prefix_only_when_every_key_carries_it():
    loaded = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    state = unwrap_state_dict(loaded, nesting_keys=NESTING, prefixes=PREFIXES)
    assert list(state) == ["module.a", "b"]


def test_unwrap_strips_only_the_prefixes_it_is_given():
    loaded = {"_orig_mod.a": torch.zeros(1)}
    assert list(unwrap_state_dict(loaded, nesting_keys=NESTING, prefixes=("module.",))) == [
        "_orig_mod.a"
    ]


def test_unwrap_stays_at_a_level_that_holds_tensors():
    # a top level with tensors is the state dict, even beside a nesting key
    loaded = {"model": {"inner": torch.zeros(1)}, "outer": torch.zeros(1)}
    assert list(unwrap_state_dict(loaded, nesting_keys=NESTING, prefixes=())) == ["outer"]


def test_unwrap_takes_the_first_nesting_key_in_the_callers_order():
    loaded = {"model": {"m": torch.zeros(1)}, "state_dict": {"s": torch.zeros(1)}}
    assert list(unwrap_state_dict(loaded, nesting_keys=NESTING, prefixes=())) == ["s"]
    assert list(unwrap_state_dict(loaded, nesting_keys=("model",), prefixes=())) == ["m"]


def test_unwrap_says_what_it_found_where_there_are_no_tensors():
    with pytest.raises(StateDictError) as caught:
        unwrap_state_dict(
            {"state_dict": {"epoch": 1, "step": 2}}, nesting_keys=NESTING, prefixes=()
        )
    assert str(caught.value) == (
        "holds no state dict of tensors (found dict with keys epoch, step under state_dict)"
    )
    with pytest.raises(StateDictError) as caught:
        unwrap_state_dict({"config": {}}, nesting_keys=NESTING, prefixes=())
    assert str(caught.value) == "holds no state dict of tensors (found dict with keys config)"
    with pytest.raises(StateDictError) as caught:
        unwrap_state_dict([torch.zeros(1)], nesting_keys=NESTING, prefixes=())
    assert str(caught.value) == "holds no state dict of tensors (found list)"


# --- fit_problems ------------------------------------------------------------------------------


def test_a_fitting_state_dict_has_no_problems():
    own = _shapes(a=(2,), b=(3, 4))
    assert fit_problems(own, _shapes(b=(3, 4), a=(2,))) == ""


def test_fit_problems_names_each_kind_with_its_keys_and_shapes():
    own = _shapes(conv__weight=(8, 3), conv__bias=(8,), norm__weight=(8,), head__weight=(5, 8))
    state = _shapes(conv__weight=(4, 3), head__weight=(2, 8), extra__a=(1,))
    assert fit_problems(own, state) == (
        "2 tensors of another shape (conv.weight: file (4, 3) vs model (8, 3), "
        "head.weight: file (2, 8) vs model (5, 8)); "
        "2 keys missing from the file (conv.bias, norm.weight); "
        "1 key the model does not have (extra.a)"
    )


def test_fit_problems_lists_shapes_in_the_models_order_and_other_keys_sorted():
    own = _shapes(z=(1,), a=(1,), m=(1,), y=(1,), b=(1,))
    state = _shapes(z=(2,), a=(2,), q=(1,), c=(1,))
    assert fit_problems(own, state) == (
        "2 tensors of another shape (z: file (2,) vs model (1,), a: file (2,) vs model (1,)); "
        "3 keys missing from the file (b, m, y); 2 keys the model does not have (c, q)"
    )


def test_fit_problems_counts_all_but_names_at_most_shown_keys():
    many = range(SHOWN_KEYS + 2)
    own = {f"{kind}{i}": torch.zeros(1) for kind in ("shape", "gone") for i in many}
    state = {f"shape{i}": torch.zeros(2) for i in many} | {f"new{i}": torch.zeros(1) for i in many}
    first = range(SHOWN_KEYS)
    assert fit_problems(own, state) == (
        f"{SHOWN_KEYS + 2} tensors of another shape ("
        + ", ".join(f"shape{i}: file (2,) vs model (1,)" for i in first)
        + f"); {SHOWN_KEYS + 2} keys missing from the file ("
        + ", ".join(f"gone{i}" for i in first)
        + f"); {SHOWN_KEYS + 2} keys the model does not have ("
        + ", ".join(f"new{i}" for i in first)
        + ")"
    )


def test_fit_problems_leaves_out_only_the_keys_the_caller_allows():
    own = _shapes(bn__num_batches_tracked=(), bn__weight=(4,))
    state = _shapes(fc__weight=(10, 4), other=(1,))
    problems = fit_problems(
        own,
        state,
        missing_ok=lambda key: key.endswith("num_batches_tracked"),
        unexpected_ok=lambda key: key.startswith("fc."),
    )
    assert problems == (
        "1 key missing from the file (bn.weight); 1 key the model does not have (other)"
    )
    # the predicates excuse an absent key only: one of another shape is still refused
    own = _shapes(fc__weight=(10, 3))
    assert fit_problems(
        own,
        _shapes(fc__weight=(10, 4)),
        missing_ok=lambda key: True,
        unexpected_ok=lambda key: True,
    ) == ("1 tensor of another shape (fc.weight: file (10, 4) vs model (10, 3))")


def test_fit_problems_reads_only_shapes_so_a_meta_model_will_do():
    with torch.device("meta"):
        own = torch.nn.Linear(4, 2).state_dict()
    state = {"weight": torch.zeros(2, 3), "bias": torch.zeros(2)}
    assert fit_problems(own, state) == (
        "1 tensor of another shape (weight: file (2, 3) vs model (2, 4))"
    )


# --- load_failure ------------------------------------------------------------------------------


def _refusal(path) -> str:
    """load_failure's line for a file torch.load(weights_only=True) refuses."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        return load_failure(exc, path)
    raise AssertionError(f"torch.load read {path}")


def _cut_archive(path):
    torch.save({"w": torch.zeros(64, 64)}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _other_zip(path):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images/a.txt", "not torch")


@pytest.mark.parametrize(
    ("make", "said"),
    [
        # pickle's own reasons for these were "KeyError: 101", "EOFError", "OSError: [Errno 22]"
        (
            lambda p: p.write_text("model: cam\nlr: 0.1\n"),
            "a text file beginning 'model: cam', not a PyTorch weights file",
        ),
        (lambda p: p.write_text("\n  \n"), "a text file, not a PyTorch weights file"),
        (lambda p: p.write_bytes(b""), "an empty file, not a PyTorch weights file"),
        (_cut_archive, "a zip archive cut short (its end is missing)"),
        (
            _other_zip,
            "a zip archive without the data.pkl torch.save writes, not a PyTorch weights file",
        ),
        (
            lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"),
            "not a PyTorch weights file: neither the zip archive",
        ),
    ],
    ids=["yaml", "blank", "empty", "cut-zip", "other-zip", "binary"],
)
def test_load_failure_says_what_a_file_that_is_no_torch_file_is(tmp_path, make, said):
    path = tmp_path / "weights.pth"
    make(path)
    line = _refusal(path)
    assert said in line, line
    assert "\n" not in line


def test_load_failure_keeps_torchs_reason_for_a_pickle_it_refuses(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x80\x02garbage")  # a pickle's opening: the file's bytes tell nothing
    assert _refusal(path).startswith("UnpicklingError: ")
