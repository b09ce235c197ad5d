"""Reading and checking state dicts, shared by backbones, CLIP towers and a method's weights.

Two steps every loader of someone else's weights takes:

- :func:`unwrap_state_dict` finds the flat ``{key: tensor}`` dict inside what ``torch.load`` (or
  safetensors) returned: training scripts nest it (``{"state_dict": {...}, "epoch": 3}``) and
  wrappers prefix its keys (``module.`` for DataParallel, ``_orig_mod.`` for ``torch.compile``);
- :func:`fit_problems` says what keeps such a dict from loading into a model: the keys the file
  lacks, the keys the model does not have, and the tensors of another shape, named with their
  shapes so that a user sees at once whether the file belongs to another architecture.

And when ``torch.load(weights_only=True)`` refuses a file, :func:`load_failure` says why in one
plain line (torch's own text runs to paragraphs, with terminal colour codes; for a file that is
no torch file at all, pickle's reason is noise such as ``KeyError: 101``: :func:`not_torch_file`
says what it is instead), and
:func:`is_training_checkpoint` tells the common mistake apart: a run's mmengine checkpoint
(``RUN/train/epoch_N.pth``) passed where its ``RUN/weights.pt`` belongs.

Each caller raises its own error around these (naming its file and its fix); which wrappers it
strips and which keys it may leave out are its parameters.
"""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from torch import Tensor

# How many keys of each kind a message names; the counts say how many there are in all.
SHOWN_KEYS = 5


# what an mmengine training checkpoint is, for the messages of those who refuse one
TRAINING_CHECKPOINT = "an mmengine training checkpoint (RUN/train/epoch_N.pth)"
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes torch puts in its messages
_UNPICKLER = "WeightsUnpickler error:"  # where torch's text says what it refused


def is_training_checkpoint(exc: Exception) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused the file for the mmengine objects a
    training checkpoint holds (its message hub's ``HistoryBuffer``)."""
    return "mmengine." in str(exc)


def load_failure(exc: Exception, path: Path) -> str:
    """Why ``torch.load`` refused the file ``path``, in one line without colour codes: what the
    file is when its bytes tell that it is no torch file (text, empty, a zip archive cut short or
    of something else), else the refused global or opcode torch names, else the first line of
    its message, prefixed by the exception's class."""
    what = not_torch_file(path)
    if what:
        return what
    text = _COLOUR.sub("", str(exc))
    _, found, detail = text.partition(_UNPICKLER)
    reason = (detail if found else text).strip()
    reason = (reason.splitlines() or [""])[0].partition(". ")[0][:200]
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


_ZIP = b"PK\x03\x04"  # torch.save's format since torch 1.6 is a zip archive
_PICKLE = b"\x80"  # the legacy format opens with a pickle of protocol 2 or above
_NOT_TORCH = "not a PyTorch weights file"
_SNIFFED = 4096  # bytes read to tell text from binary


def not_torch_file(path: Path) -> str | None:
    """What the file is when its opening bytes rule out both torch formats, or show a torch
    archive cut short; None when they do not (or it cannot be read): torch's reason is the clue.

    Cheap (the first bytes, and a zip's directory), so a command can refuse such a file before
    checks that would misread it (a run's own ``config.yaml`` passed as its weights)."""
    try:
        with open(path, "rb") as file:
            head = file.read(_SNIFFED)
        if not head:
            return f"an empty file, {_NOT_TORCH}: an interrupted copy or save?"
        if head.startswith(_ZIP):
            if not zipfile.is_zipfile(path):  # no central directory: the end is missing
                return "a zip archive cut short (its end is missing): an interrupted copy or save?"
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if not any(name.endswith("/data.pkl") for name in names):
                return f"a zip archive without the data.pkl torch.save writes, {_NOT_TORCH}"
            return None
    except (OSError, zipfile.BadZipFile):
        return None
    if head.startswith(_PICKLE):
        return None
    try:
        # incremental: a character cut at the end of the sniffed bytes is no decoding error
        text = codecs.getincrementaldecoder("utf-8")().decode(head)
    except UnicodeDecodeError:
        text = None
    if text is None or any(c < " " and c not in "\t\n\r\f" for c in text):
        return f"{_NOT_TORCH}: neither the zip archive torch.save writes nor a pickle"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")[:60]
    return f"a text file{f' beginning {first!r}' if first else ''}, {_NOT_TORCH}"


class StateDictError(ValueError):
    """A loaded object holds no tensors where a state dict should be; the message says what it
    holds instead (the caller prefixes the file)."""


def unwrap_state_dict(
    loaded: object, *, nesting_keys: Sequence[str], prefixes: Sequence[str]
) -> dict[str, Tensor]:
    """The flat ``{key: tensor}`` dict inside a loaded checkpoint.

    Args:
        loaded: what ``torch.load`` or ``safetensors.torch.load_file`` returned.
        nesting_keys: where a checkpoint may nest its state dict, tried in this order; a level
            is entered only while the current one holds no tensor itself.
        prefixes: wrapper prefixes; one is stripped when *every* key carries it, again until
            none is (``module._orig_mod.x`` → ``x``), so a model key is never cut alone.

    Returns:
        The tensors of the innermost level, keys as strings; other values (an epoch counter, a
        config) are dropped.

    Raises:
        StateDictError: no level reached holds a tensor.
    """
    state = loaded
    path: list[str] = []
    while isinstance(state, dict) and not any(isinstance(v, Tensor) for v in state.values()):
        nested = next((k for k in nesting_keys if isinstance(state.get(k), dict)), None)
        if nested is None:
            break
        path.append(nested)
        state = state[nested]
    if not isinstance(state, dict) or not any(isinstance(v, Tensor) for v in state.values()):
        keys = ", ".join(map(str, list(state)[:5])) if isinstance(state, dict) else ""
        under = f" under {'.'.join(path)}" if path else ""
        raise StateDictError(
            f"holds no state dict of tensors (found {type(state).__name__}"
            f"{' with keys ' + keys if keys else ''}{under})"
        )
    tensors = {str(k): v for k, v in state.items() if isinstance(v, Tensor)}
    while True:
        prefix = next((p for p in prefixes if all(k.startswith(p) for k in tensors)), None)
        if prefix is None:
            return tensors
        tensors = {k[len(prefix) :]: v for k, v in tensors.items()}


def _never(key: str) -> bool:
    return False


def fit_problems(
    own: Mapping[str, Tensor],
    state: Mapping[str, Tensor],
    *,
    missing_ok: Callable[[str], bool] = _never,
    unexpected_ok: Callable[[str], bool] = _never,
) -> str:
    """What keeps ``state`` from loading into a model whose state dict is ``own``; "" if nothing.

    Args:
        own: the model's ``state_dict()`` (values only read for their shapes: a model on the
            meta device will do).
        state: the tensors to load.
        missing_ok: keys of ``own`` the file may lack (e.g. BatchNorm's ``num_batches_tracked``).
        unexpected_ok: keys of ``state`` the model may lack (e.g. a classifier head the
            backbone drops).

    Returns:
        ``"N tensors of another shape (k: file (..) vs model (..), ...); N keys missing from the
        file (...); N keys the model does not have (...)"``, the kinds that occur, at most
        :data:`SHOWN_KEYS` keys named of each: the shapes in the model's order (its first layer
        first), the others sorted.
    """
    misshapen = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    missing = sorted(k for k in own if k not in state and not missing_ok(k))
    unexpected = sorted(k for k in state if k not in own and not unexpected_ok(k))
    parts = []
    if misshapen:
        listed = ", ".join(
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            for k in misshapen[:SHOWN_KEYS]
        )
        parts.append(f"{_count(misshapen, 'tensor')} of another shape ({listed})")
    if missing:
        listed = ", ".join(missing[:SHOWN_KEYS])
        parts.append(f"{_count(missing, 'key')} missing from the file ({listed})")
    if unexpected:
        listed = ", ".join(unexpected[:SHOWN_KEYS])
        parts.append(f"{_count(unexpected, 'key')} the model does not have ({listed})")
    return "; ".join(parts)


def _count(keys: list[str], noun: str) -> str:
    return f"{len(keys)} {noun}{'' if len(keys) == 1 else 's'}"
