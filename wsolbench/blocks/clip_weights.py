"""Reading CLIP weight files of every format users have, without executing anything in them.

Formats (:func:`read_weights` tells them apart by their content, not their name):

- **OpenAI TorchScript archive** (``ViT-B-16.pt`` as released by OpenAI and cached by
  ``pip install clip`` in ``~/.cache/clip/``): a zip holding ``data.pkl`` (the module tree, pickled
  by TorchScript), ``data/<n>`` (raw tensor storages) and ``code/`` (the TorchScript source of
  every module class). ``torch.load(weights_only=True)`` refuses such archives and
  ``torch.jit.load`` compiles and runs their code; here ``data.pkl`` is read by an unpickler that
  knows only tensors, storages and inert placeholders for TorchScript objects (any other global
  is refused), and the code files are only *read as text*, for each class's
  ``__parameters__`` / ``__buffers__`` lists and for the activation. The result equals
  ``torch.jit.load(path).state_dict()``, without compiling or running anything.
- **OpenAI state dict**: ``torch.save(torch.jit.load(IN).state_dict(), OUT)`` — OpenAI's key
  names plus the ``input_resolution``, ``context_length`` and ``vocab_size`` entries (dropped
  here, as open_clip's own OpenAI loader drops them).
- **open_clip state dict**: ``torch.save(model.state_dict(), PATH)`` (also nested under
  ``state_dict``, or with ``module.`` prefixes), or a ``.safetensors`` file (the Hugging Face
  cache's ``open_clip_model.safetensors``). Pickles are read with ``weights_only=True``.

OpenAI's weights were trained with QuickGELU; open_clip's plain configs (``ViT-B-16``) build GELU.
:func:`read_weights` reports what it can tell: an archive's own code names its activation, and the
OpenAI layouts mean QuickGELU. A plain state dict does not say (OpenAI's keys are open_clip's), so
the caller decides from a tag or a declaration (``clip.activation``).

This is a plain module of ``wsolbench.blocks`` (not a plugin folder): it registers nothing.
"""

from __future__ import annotations

import ast
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from wsolbench.blocks.state_dicts import StateDictError, load_failure, unwrap_state_dict

# Entries of OpenAI's archives (and of state dicts converted from them) that are model settings
# stored as tensors, not weights: open_clip's OpenAI loader drops them too.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")

# Layouts, as recorded in a loaded model's description.
OPENAI_ARCHIVE = "OpenAI TorchScript archive"
OPENAI_STATE_DICT = "OpenAI state dict"
STATE_DICT = "state dict"

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Where a training script nests an open_clip state dict inside its checkpoint.
_NESTING_KEYS = ("state_dict", "model", "module")


class WeightsFileError(ValueError):
    """A weights file cannot be read; the message names the file and what was found."""


@dataclass
class WeightsFile:
    """The tensors of a weights file.

    Attributes:
        state: key → tensor, in the file's dtype, OpenAI's extra setting entries removed.
        layout: :data:`OPENAI_ARCHIVE`, :data:`OPENAI_STATE_DICT` or :data:`STATE_DICT`.
        activation: ``"quickgelu"`` or ``"gelu"`` when the file says which (an archive's code, an
            OpenAI layout), else None.
    """

    state: dict[str, Tensor]
    layout: str
    activation: str | None

    @property
    def is_openai(self) -> bool:
        return self.layout in (OPENAI_ARCHIVE, OPENAI_STATE_DICT)


def read_weights(path: str | Path) -> WeightsFile:
    """Every tensor of a CLIP weights file, whatever its format, without running its code.

    Raises:
        WeightsFileError: unreadable, a pickle that needs Python objects beyond tensors, or no
            tensors at all (the message says what to save instead).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _plain(load_file(str(path), device="cpu"), path)
        except Exception as exc:
            raise WeightsFileError(f"{path} is not a readable safetensors file ({exc})") from None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if _is_torchscript(archive.namelist()):
                state, activation = _read_archive(archive, path)
                if not activation:
                    # OpenAI released its CLIP weights as TorchScript archives, all QuickGELU
                    activation = "quickgelu"
                return WeightsFile(_drop_extras(state), OPENAI_ARCHIVE, activation)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsFileError(
            f"{path} cannot be read with torch.load(weights_only=True) "
            f"({load_failure(exc, path)}); it must hold tensors only: save it with "
            "torch.save(model.state_dict(), PATH)"
        ) from None
    return _plain(loaded, path)


def _plain(loaded, path: Path) -> WeightsFile:
    """A (possibly nested, possibly ``module.``-prefixed) state dict → :class:`WeightsFile`."""
    try:
        state = unwrap_state_dict(loaded, nesting_keys=_NESTING_KEYS, prefixes=("module.",))
    except StateDictError as exc:
        raise WeightsFileError(
            f"{path} {exc}; save one with torch.save(model.state_dict(), PATH)"
        ) from None
    if any(k in state for k in OPENAI_EXTRA_KEYS):
        return WeightsFile(_drop_extras(state), OPENAI_STATE_DICT, "quickgelu")
    return WeightsFile(state, STATE_DICT, None)


def _drop_extras(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}


# --------------------------------------------------------------------------------------------
# TorchScript archives, read as data
# --------------------------------------------------------------------------------------------


def _is_torchscript(names: list[str]) -> bool:
    """A TorchScript archive carries its code (``<root>/code/``) and ``constants.pkl``; a
    ``torch.save`` zip has neither."""
    return any("/code/" in n or n.endswith("constants.pkl") for n in names)


class _ScriptObject:
    """An object of a TorchScript class in ``data.pkl``: its class name and pickled state only."""

    qualified_name = ""

    def __setstate__(self, state) -> None:
        self.state = state


class _Storage:
    """Stands for a ``torch.<Type>Storage`` global: only its element type is used."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _rebuild_tensor(storage: Tensor, offset, size, stride, *_ignored) -> Tensor:
    """``torch._utils._rebuild_tensor_v2`` for a flat storage tensor; flags and hooks ignored."""
    return storage.as_strided(tuple(size), tuple(stride), int(offset))


def _identity(value, *_ignored):
    return value


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into placeholders and tensors, refusing any other
    global (so no function or class of the file's choosing is ever called)."""

    # TorchScript's pickler emits these for typed lists and tags; all are plain containers here.
    _JIT_HELPERS = (
        "build_intlist",
        "build_tensorlist",
        "build_doublelist",
        "build_boollist",
        "build_tensor_from_id",
        "restore_type_tag",
    )

    def __init__(self, file, archive: zipfile.ZipFile, root: str, source: Path):
        super().__init__(file)
        self.archive, self.root, self.source = archive, root, source
        self.storages: dict[str, Tensor] = {}
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(
                    name, (_ScriptObject,), {"qualified_name": qualified}
                )
            return self.classes[qualified]
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch.jit._pickle" and name in self._JIT_HELPERS:
            return _identity
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        kind, key = pid[1], str(pid[2])
        if not isinstance(kind, _Storage):
            raise pickle.UnpicklingError(f"unsupported storage type {kind!r}")
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.root}data/{key}"))
            self.storages[key] = (
                torch.frombuffer(raw, dtype=kind.dtype) if raw else torch.empty(0, dtype=kind.dtype)
            )
        storage = self.storages[key]
        if storage.dtype != kind.dtype:
            raise pickle.UnpicklingError(f"storage {key} is read with two element types")
        return storage


def _read_archive(archive: zipfile.ZipFile, path: Path) -> tuple[dict[str, Tensor], str | None]:
    """(state dict, activation named by the archive's code or None) of a TorchScript archive."""
    names = archive.namelist()
    data = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
    if len(data) != 1 or data[0].count("/") > 1:
        raise WeightsFileError(f"{path}: a TorchScript archive without one data.pkl ({names[:5]})")
    root = data[0][: -len("data.pkl")]
    byteorder = f"{root}byteorder"
    if byteorder in names and archive.read(byteorder).strip() not in (b"", b"little"):
        raise WeightsFileError(f"{path}: a big-endian TorchScript archive is not supported")
    with archive.open(data[0]) as handle:
        unpickler = _ArchiveUnpickler(handle, archive, root, path)
        try:
            top = unpickler.load()
        except (pickle.UnpicklingError, KeyError, ValueError, RuntimeError, EOFError) as exc:
            raise WeightsFileError(
                f"{path}: the TorchScript archive cannot be read as data ({exc}); convert it once "
                'on a machine you trust: python -c "import torch; torch.save(torch.jit.load('
                "'IN.pt', map_location='cpu').state_dict(), 'OUT.pt')\", then pass OUT.pt"
            ) from None
    code = {
        n[len(root) + len("code/") :]: archive.read(n).decode("utf-8", errors="replace")
        for n in names
        if n.startswith(f"{root}code/") and n.endswith(".py")
    }
    state: dict[str, Tensor] = {}
    _collect(top, "", code, state)
    if not state:
        raise WeightsFileError(f"{path}: the TorchScript archive holds no tensors")
    return state, _archive_activation(code.values())


def _collect(obj, prefix: str, code: dict[str, str], out: dict[str, Tensor]) -> None:
    """Parameters and buffers of a placeholder module tree, keyed as ``state_dict()`` keys them."""
    if not isinstance(obj, _ScriptObject) or not isinstance(getattr(obj, "state", None), dict):
        return
    declared = _declared_tensors(obj.qualified_name, code)
    for attr, value in obj.state.items():
        if isinstance(value, Tensor):
            # tensors a module holds as plain attributes (e.g. a text block's attention mask)
            # are not in state_dict(); without the class's code, every tensor is kept
            if declared is None or attr in declared:
                out[f"{prefix}{attr}"] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{attr}.", code, out)


def _declared_tensors(qualified: str, code: dict[str, str]) -> set[str] | None:
    """The ``__parameters__`` + ``__buffers__`` names of a TorchScript class, read from its code
    file (``__torch__.a.b.Cls`` lives in ``code/__torch__/a/b.py``); None when not found."""
    module, _, name = qualified.rpartition(".")
    text = code.get(module.replace(".", "/") + ".py")
    if text is None:
        return None
    block = re.search(rf"^class {re.escape(name)}\(Module\):\n((?:[ \t]+.*\n?)*)", text, re.M)
    if block is None:
        return None
    names: set[str] = set()
    for field in ("__parameters__", "__buffers__"):
        found = re.search(rf"^\s+{field} = (\[.*?\])\s*$", block.group(1), re.M)
        if found is None:
            return None
        try:
            names.update(str(n) for n in ast.literal_eval(found.group(1)))
        except (ValueError, SyntaxError):
            return None
    return names


def _archive_activation(code_texts) -> str | None:
    """``quickgelu`` when the archive defines a QuickGELU module, ``gelu`` when its code calls
    GELU and defines none, None when the code says neither."""
    texts = list(code_texts)
    if any(re.search(r"^class QuickGELU\(Module\):", t, re.M) for t in texts):
        return "quickgelu"
    if any("torch.gelu(" in t for t in texts):
        return "gelu"
    return None


def vit_shape(state: dict[str, Tensor]) -> dict[str, int] | None:
    """The image tower a CLIP ViT state dict describes: width, layers, patch and image size."""
    conv = state.get("visual.conv1.weight")
    positions = state.get("visual.positional_embedding")
    if conv is None or positions is None or conv.dim() != 4:
        return None
    layers = {k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")}
    grid = int(round((positions.shape[0] - 1) ** 0.5))
    patch = int(conv.shape[-1])
    return {"width": int(conv.shape[0]), "layers": len(layers), "patch_size": patch,
            "image_size": grid * patch}  # fmt: skip
