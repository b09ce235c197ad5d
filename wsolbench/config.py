"""Method configuration: ``defaults ⊕ presets[dataset] ⊕ -o overrides``, every override typed.

A method's config is one nested dict; the ``train`` section (mmengine vocabulary, over
:data:`TRAIN_DEFAULTS`) is for the engine, every other top-level key is a constructor keyword.
Overrides come from the command line as ``-o key=value`` with dotted keys into nested sections
(``-o train.max_epochs=2``) and YAML-parsed values (``-o sigma=0.3``, ``-o use_distill=false``),
each typed against the method's declared config (:class:`wsolbench.method.MethodConfig`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from typing import Any

import yaml

from wsolbench.util.names import unknown_name_message
from wsolbench.util.user_paths import expand_user_path

# A method class (wsolbench.method.WSOLMethod); named by this alias, not imported: the method
# module imports this one.
WSOLMethod = type


# The engine's training settings (mmengine vocabulary); a trainable method's
# ``config.defaults["train"]`` and ``config.presets`` override any of them, and every key can be
# set with ``-o train.<key>=...``. Epochs, optimizer and schedule are the reference benchmark's
# CUB recipe whole (wsolevaluation: 50 epochs, SGD lr 0.01, x0.1 every 15 epochs): a plugin that
# sets none of them gets a schedule that steps within its run.
TRAIN_DEFAULTS: dict = {
    "max_epochs": 50,
    "batch_size": 64,
    # data-loader workers: "auto" follows the machine (wsolbench.util.loader.auto_workers: none on
    # a small CPU-only machine, all cores but one on a GPU host), or an integer.
    "num_workers": "auto",
    # mmengine optimizer config; "type" is a torch.optim class name.
    "optimizer": {
        "type": "SGD",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "nesterov": True,
    },
    # parameter-name substring -> learning-rate multiplier (mmengine paramwise custom_keys),
    # e.g. {"classifier": 10} for the reference's 10x classifier learning rate.
    "lr_mult": {},
    # by-epoch schedule: MultiStepLR (milestones, gamma), CosineAnnealingLR, or "none".
    "scheduler": {"type": "MultiStepLR", "milestones": [15, 30, 45], "gamma": 0.1},
    # training-time augmentation of the PIL image (evaluation only resizes).
    "augment": {"crop_scale": [0.08, 1.0], "hflip": True},
    "amp": True,  # mixed precision, on CUDA only
    "checkpoint_interval": 1,  # epochs between checkpoints (resume granularity)
    "val_interval": 1,  # epochs between selection-split evaluations when the protocol keeps "best"
}


# Config values that are paths: a key whose last part names a file or folder, and a value that
# names a run folder (TeD-Loc's teacher=run:DIR). An override's is read as a path option is
# (expand_user_path): the shell expands no ``~`` in ``-o key=~/x``, and an empty one (an unset
# shell variable) taken as "no file" would load the default weights instead. Other text, and a
# checkpoint key's recipe name (synthclip-v1), is left as typed.
PATH_KEY_NAMES = ("checkpoint", "cache_dir")
RUN_PREFIX = "run:"


class ConfigError(ValueError):
    """A configuration override names an unknown key or has a bad value; the message says which."""


def _merge(base: dict, update: dict) -> dict:
    """Recursive dict merge. A section whose ``type`` changes is replaced, not merged: the old
    keys belong to the old type (a ``MultiStepLR``'s milestones mean nothing to a cosine)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        old = merged.get(key)
        both_dicts = isinstance(old, dict) and isinstance(value, dict)
        if both_dicts and value.get("type", old.get("type")) == old.get("type"):
            merged[key] = _merge(old, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def dotted_leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested config as ``{"train.optimizer.lr": 0.01, ...}`` — the keys ``-o``
    takes; an empty section is a leaf of its own (``{}``)."""
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            leaves.update(dotted_leaves(value, name + "."))
        else:
            leaves[name] = value
    return leaves


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.1"`` → (["train", "lr"], 0.1): a value is parsed as YAML (scalars, lists,
    mappings), except a ``run:DIR``, taken as text (YAML would read a mapping ``{run: DIR}``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not key=value (e.g. -o train.max_epochs=2)")
    keys = key.strip().split(".")
    if not all(keys):
        raise ConfigError(f"override {text!r}: empty part in the dotted key {key.strip()!r}")
    if raw.strip().startswith(RUN_PREFIX):
        return keys, raw.strip()  # a run folder, never YAML's mapping {run: ...}
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return keys, value


# Types of engine keys that their defaults cannot tell (a multiplier written as 10 is a float).
TRAIN_TYPES: dict[str, type | tuple[type, ...]] = {
    "train.lr_mult.*": float,
    "train.num_workers": (int, str),  # an integer, or "auto"
}

_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list ([a, b])",
    dict: "a mapping ({k: v})",
    type(None): "null",
}


def _value_types(method: type[WSOLMethod], keys: list[str]) -> set[type]:
    """The types a key's value has in the method's defaults and in any of its presets."""
    return {type(v) for v in _default_values(method, keys)}


def _default_values(method: type[WSOLMethod], keys: list[str]) -> list:
    """The values a key has in the method's defaults and in any of its presets."""
    values = []
    base = {"train": TRAIN_DEFAULTS} if method.capabilities.trainable else {}
    for source in (base, method.config.defaults, *method.config.presets.values()):
        node: Any = source
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            values.append(node)
    return values


def _declared(table: dict, dotted: str):
    """The entry of ``table`` for a dotted key; ``*`` in a table key matches one whole part."""
    if dotted in table:
        return table[dotted]
    parts = dotted.split(".")
    for pattern, entry in table.items():
        wanted = pattern.split(".")
        if len(wanted) == len(parts) and all(
            w in ("*", p) for w, p in zip(wanted, parts, strict=True)
        ):
            return entry
    return None


def _typed(method: type[WSOLMethod], keys: list[str], value: Any, text: str) -> Any:
    """``value`` checked (and widened: int → float, numeric text → number) against the key's
    declared choices, declared type, or the types its defaults and presets have.

    Raises:
        ConfigError: naming the key, the value and what it expects.
    """
    dotted = ".".join(keys)
    choices = _declared(method.config.choices, dotted)
    if choices is not None:
        if value not in choices:
            raise ConfigError(
                f"-o {text}: {dotted} must be one of {', '.join(map(str, choices))}, not {value!r}"
            )
        return value
    declared = _declared({**TRAIN_TYPES, **method.config.types}, dotted)
    allowed = (
        set(declared if isinstance(declared, tuple) else (declared,))
        if declared is not None
        else _value_types(method, keys)
    )
    if type(value) is list and declared is None:
        # a list of numbers (crop_scale, milestones) stays a list of numbers
        kinds = {type(x) for d in _default_values(method, keys) if type(d) is list for x in d}
        if kinds and kinds <= {int, float}:
            if not all(type(x) in kinds or (float in kinds and type(x) is int) for x in value):
                raise ConfigError(f"-o {text}: {dotted} expects a list of numbers, got {value!r}")
    if allowed <= {type(None)} or type(value) in allowed:
        return value  # (no default to learn a type from: e.g. a checkpoint path that is null)
    if float in allowed and type(value) is int:
        return float(value)
    if (float in allowed or int in allowed) and isinstance(value, str):
        # YAML reads 1e-3 (no dot) as text; a number is meant
        for kind in (int, float):
            if kind in allowed:
                with contextlib.suppress(ValueError):
                    number = kind(value)
                    if math.isfinite(number):
                        return number
    expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in sorted(allowed, key=str))
    got = _TYPE_NAMES.get(type(value), type(value).__name__)
    hint = " (quote it to pass text: -o 'key=\"...\"')" if str in allowed else ""
    raise ConfigError(f"-o {text}: {dotted} expects {expected}, got {value!r} ({got}){hint}")


def resolve_config(
    method: type[WSOLMethod], dataset: str | None, overrides: list[str] | None = None
) -> dict:
    """``defaults ⊕ presets[dataset] ⊕ overrides`` for a method.

    A trainable method's defaults start from :data:`TRAIN_DEFAULTS` under ``train``. Every
    override is typed (:func:`_typed`): a key takes the types its value has in the defaults and
    presets (``max_epochs`` an integer, ``hflip`` true or false, ``lr`` a number), unless the
    method declares its type (``config.types``) or its allowed values (``config.choices``). A
    mapping given for a section (``-o 'train.augment={hflip: false}'``) is applied key by key,
    each typed. Keys under a section whose ``type`` an override replaced (``-o
    train.optimizer.type=AdamW``) have no defaults to check against; the engine checks them when
    it builds that object. Values must be plain JSON values (finite numbers, text, lists,
    mappings): a result must be able to record them.

    Raises:
        ConfigError: an override's key is not in the method's defaults (with close matches), its
            value has the wrong type or is not an allowed choice, or it tries to replace a
            section by a scalar.
    """
    defaults = method.config.defaults
    base = (
        _merge({"train": TRAIN_DEFAULTS}, defaults) if method.capabilities.trainable else defaults
    )
    return apply_overrides(
        method, _merge(base, method.config.presets.get(dataset, {}) if dataset else {}), overrides
    )


def preset_changes(
    method: type[WSOLMethod], dataset: str | None, config: dict, *, no_pretrained: bool = False
) -> dict[str, Any]:
    """The leaves of a resolved ``config`` that are not the method's preset for ``dataset``:
    what its ``-o`` overrides changed, as ``{"train.max_epochs": 14}`` (a run records them, and a
    table names a row by them, so a changed run never passes for the preset's).

    ``no_pretrained``: against the preset with its pretrained loading off (``--no-pretrained``,
    and ``eval``, whose weights file replaces it). A section whose ``type`` changed is given
    whole: its other keys belong to the new type, whatever values the old one had.
    """
    preset = resolve_config(method, dataset)
    if no_pretrained:
        preset = without_pretrained(method, preset)
    before, after = dotted_leaves(preset), dotted_leaves(config)
    changed = {key for key, value in after.items() if key not in before or before[key] != value}
    retyped = [key.removesuffix("type") for key in changed if key.rpartition(".")[2] == "type"]
    return {
        key: value
        for key, value in after.items()
        if key in changed or any(key.startswith(section) for section in retyped)
    }


def apply_overrides(method: type[WSOLMethod], config: dict, overrides: list[str] | None) -> dict:
    """A copy of a resolved ``config`` with ``-o`` overrides applied (typed as in
    :func:`resolve_config`)."""
    config = copy.deepcopy(config)
    retyped: set[tuple[str, ...]] = set()  # sections whose type an override replaced
    for text in overrides or []:
        keys, value = parse_override(text)
        _apply(method, config, keys, value, text, retyped)
    return config


def _apply(
    method: type[WSOLMethod],
    config: dict,
    keys: list[str],
    value: Any,
    text: str,
    retyped: set[tuple[str, ...]],
) -> None:
    """Set one override (see :func:`resolve_config`) in ``config``."""
    node = config
    for depth, key in enumerate(keys):
        free = tuple(keys[:depth]) in retyped
        # a key a declared wildcard type covers may be new (lr_mult's parameter-name keys)
        open_key = _declared({**TRAIN_TYPES, **method.config.types}, ".".join(keys)) is not None
        last = depth == len(keys) - 1
        if not isinstance(node, dict) or (key not in node and not free and not (last and open_key)):
            known = sorted(node) if isinstance(node, dict) else []
            where = ".".join(keys[:depth]) or "the top level"
            raise ConfigError(
                f"-o {text}: {unknown_name_message('config key', key, known)} at {where} of "
                f"method {method.name!r}"
            )
        if not last:
            node = node.setdefault(key, {}) if free else node[key]
            continue
        current = node.get(key)
        if isinstance(current, dict) and not free:
            if not isinstance(value, dict):
                raise ConfigError(f"-o {text}: {'.'.join(keys)} is a section; set one of its keys")
            typed_children = _declared(
                {**TRAIN_TYPES, **method.config.types}, ".".join([*keys, "*"])
            )
            if "type" in value and value["type"] != current.get("type"):
                _check_plain(value, text)  # a new type: its keys are the engine's to check
                node[key] = copy.deepcopy(value)
                retyped.add(tuple(keys))
                return
            if not current and typed_children is None:
                _check_plain(value, text)  # an open mapping ({} by default: kwargs) is taken whole
                node[key] = copy.deepcopy(value)
                return
            for name, item in value.items():
                _apply(method, config, [*keys, str(name)], item, text, retyped)
            return
        value = path_value(".".join(keys), value, text)
        _check_plain(value, text)
        if not free:
            value = _typed(method, keys, value, text)
        if key == "type" and value != current:
            node.clear()  # a new type starts from its own keys (see _merge)
            retyped.add(tuple(keys[:-1]))
        node[key] = value


def is_path_key(dotted: str) -> bool:
    """Whether a dotted config key holds a path (:data:`PATH_KEY_NAMES`)."""
    return dotted.rpartition(".")[2] in PATH_KEY_NAMES


def path_value(dotted: str, value: Any, text: str, *, nullable: bool = True) -> Any:
    """An override's value for the key ``dotted``, ``~`` expanded where it is a path (a
    :func:`is_path_key`, or a ``run:DIR`` whatever its key, spaces after ``run:`` ignored); other
    values as given. ``nullable``: whether the error may offer ``null`` (no file) as the fix.

    Raises:
        ConfigError: the path is empty, or a bare ``~`` that YAML read as null, naming the
            override, the key and the fix.
    """
    none = f", or -o {dotted}=null for none" if nullable else ""
    if value is None and is_path_key(dotted) and text.partition("=")[2].strip() == "~":
        raise ConfigError(
            f"-o {text}: YAML reads a bare ~ as null (no file), not the home folder; give the "
            f"file's path{none}"
        )
    if not isinstance(value, str):
        return value  # null is no file (a checkpoint's default); other types are _typed's
    run = value.startswith(RUN_PREFIX)
    if not run and not is_path_key(dotted):
        return value
    try:
        if run:
            return RUN_PREFIX + expand_user_path(value[len(RUN_PREFIX) :].strip())
        return expand_user_path(value)
    except ValueError as exc:
        if run:
            said, fix = f"run: with {exc}", "run:DIR, the work dir of a finished run"
        else:
            said, fix = str(exc), f"a path{none}"
        raise ConfigError(f"-o {text}: {dotted} is {said}; give {fix}") from None


def _check_plain(value: Any, text: str) -> None:
    """Refuse a value a result could not record: NaN, infinities, dates, ..."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(
            f"-o {text}: {value!r} is not a plain value (a finite number, true/false, text, a "
            "list or a mapping); quote it to pass text"
        ) from None


def _pretrained_off_values(method: type[WSOLMethod]) -> dict[str, object]:
    """Dotted key → its value with pretrained loading off: ``false``, or what an option spells
    out as ``key=value`` (TeD-Loc's ``teacher=self``)."""
    values: dict[str, object] = {}
    for option in method.capabilities.pretrained_options:
        key, _, value = option.partition("=")
        values[key] = value if value else False
    return values


def pretrained_keys(method: type[WSOLMethod]) -> list[str]:
    """The dotted config keys that switch a method's pretrained loading (the keys of its
    ``capabilities.pretrained_options``)."""
    return list(_pretrained_off_values(method))


def pretrained_off_overrides(method: type[WSOLMethod]) -> list[str]:
    """The ``-o`` overrides that ``--no-pretrained`` adds: ``<key>=false`` (or the option's own
    off value) for each of the method's :func:`pretrained_keys`."""
    return [
        f"{key}={'false' if value is False else value}"
        for key, value in _pretrained_off_values(method).items()
    ]


def without_pretrained(
    method_cls: type[WSOLMethod], config: dict, keep: tuple[str, ...] = ()
) -> dict:
    """A copy of ``config`` with every pretrained-loading key of the method but those in ``keep``
    switched off (what :func:`pretrained_off_overrides` does through ``-o``, for a config already
    resolved)."""
    config = copy.deepcopy(config)
    for dotted, off in _pretrained_off_values(method_cls).items():
        if dotted in keep:
            continue
        *path, last = dotted.split(".")
        node = config
        for key in path:
            node = node.setdefault(key, {})
        node[last] = off
    return config
