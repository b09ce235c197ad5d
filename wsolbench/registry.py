"""Method and dataset registries, and plugin discovery.

A method is found by name, importing only what it needs, in this order:

1. already registered (``@register_method("name")`` ran);
2. a first-party folder ``methods/<name>/`` (importing ``methods.<name>`` registers it);
3. an installed plugin: entry point ``name`` in the group ``wsolbench.methods``; a third-party
   package declares it with one line in its own ``pyproject.toml``::

       [project.entry-points."wsolbench.methods"]
       mymethod = "my_pkg.method:MyMethod"

4. a ``"pkg.module:Class"`` path given directly (handy while developing a plugin);
5. otherwise ``KeyError`` naming the close matches ("did you mean 'tedloc'?").

A plugin found but unusable raises :class:`PluginError`: it fails to import, is no
:class:`~wsolbench.method.WSOLMethod`, still declares an attribute of the first interface
(``trainable = False`` instead of ``capabilities = Capabilities(trainable=False)``: the harness
would silently ignore it), or its entry point's name differs from the name it registers under.

:func:`list_methods` only lists names (folders and entry points) and imports no plugin. Plugin
modules run :func:`wsolbench.util.compat.ensure_torchvision` implicitly: it is called before any
plugin import, so a plugin may import timm or open_clip at module level on a CPU-only torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import math
import pkgutil
import re
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmengine.registry import Registry

from wsolbench.util.names import (
    FIRST_PARTY_PACKAGE,
    NAME_PATTERN,
    check_name,
    unknown_name_message,
)

if TYPE_CHECKING:
    from wsolbench.method import WSOLMethod

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "wsolbench.methods"

METHODS = Registry("wsolbench method", scope="wsolbench")

# The class attributes of the first plugin interface → the declaration and field that replaced
# each. The harness reads only ``capabilities`` and ``config``, so a plugin still declaring one of
# these is refused rather than run with the attribute ignored.
_OLD_INTERFACE = {
    "trainable": ("capabilities", "trainable"),
    "needs_grad_at_inference": ("capabilities", "needs_grad_at_inference"),
    "needs_classnames": ("capabilities", "needs_classnames"),
    "pretrained_option": ("capabilities", "pretrained_options"),
    "defaults": ("config", "defaults"),
    "presets": ("config", "presets"),
    "config_types": ("config", "types"),
    "config_choices": ("config", "choices"),
}
_DECLARATION_TYPES = {"capabilities": "Capabilities", "config": "MethodConfig"}
# A plugin class given directly: ``pkg.module:Class`` (dotted identifiers, one colon).
PLUGIN_PATH_PATTERN = re.compile(r"[^\W\d]\w*(\.[^\W\d]\w*)*:[^\W\d]\w*")


class PluginError(ImportError):
    """A method plugin that was found but cannot be used; the message names the fix.

    An ``ImportError``, so that the command line reports it as one ``error:`` line (exit 2) and
    ``wsolbench list -v`` as one broken plugin among the others.
    """


def old_interface_message(cls: type, name: str) -> str | None:
    """Why ``cls`` (to be method ``name``) is refused for declaring attributes of the first
    interface, spelling out the ``capabilities`` / ``config`` declaration that replaces them; None
    when it declares none.

    Its own class body counts, and so do its bases' up to :class:`~wsolbench.method.WSOLMethod`:
    an inherited ``trainable = False`` would be ignored just the same.
    """
    from wsolbench.method import WSOLMethod

    found: dict[str, tuple[type, object]] = {}  # old attribute -> (the class declaring it, value)
    for klass in cls.__mro__:
        if klass in WSOLMethod.__mro__:
            continue
        for old in _OLD_INTERFACE:
            if old in vars(klass) and old not in found:
                found[old] = (klass, vars(klass)[old])
    if not found:
        return None
    fields: dict[str, list[str]] = {}  # "capabilities" / "config" -> its keyword arguments
    for old, (_, value) in found.items():
        holder, field = _OLD_INTERFACE[old]
        if old == "pretrained_option":  # one dotted key or several; now always a tuple
            value = () if not value else (value,) if isinstance(value, str) else tuple(value)
        fields.setdefault(holder, []).append(f"{field}={_quoted(value)}")
    declared = " and ".join(f"`{old} = {_quoted(value)}`" for old, (_, value) in found.items())
    bases = sorted({klass.__qualname__ for klass, _ in found.values() if klass is not cls})
    where = f" (in its base {', '.join(bases)})" if bases else ""
    replacement = " and ".join(
        f"`{holder} = {_DECLARATION_TYPES[holder]}({', '.join(arguments)})`"
        for holder, arguments in fields.items()
    )
    return (
        f"method {name!r} declares {declared}{where}, the old interface; declare {replacement} "
        "instead (docs/writing-a-method.md)"
    )


def declaration_message(cls: type, name: str) -> str | None:
    """Why ``cls`` (to be method ``name``) declares something the harness cannot use, or None:
    ``capabilities`` / ``config`` not :class:`~wsolbench.method.Capabilities` /
    :class:`~wsolbench.method.MethodConfig`; a ``capabilities.reference`` that is not text (every
    result records it, every table prints it) or is a registered base class's, under another
    name; a default or preset value that is not plain JSON
    (a result records them: a ``Path`` or numpy number fails when written, after the work, a
    tuple comes back a list); a ``train`` default that is no training setting (a typo such as
    ``max_epoch`` would be recorded but never used), a ``train`` section on a training-free
    method; a constructor default that ``config.defaults`` lacks (a hyperparameter no run
    records)."""
    from wsolbench.config import TRAIN_DEFAULTS
    from wsolbench.method import Capabilities, MethodConfig

    for holder, kind in (("capabilities", Capabilities), ("config", MethodConfig)):
        if not isinstance(getattr(cls, holder, None), kind):
            return (
                f"method {name!r}: {holder} is {type(getattr(cls, holder, None)).__name__}, not "
                f"{kind.__name__}; declare `{holder} = {kind.__name__}(...)` "
                "(docs/writing-a-method.md)"
            )
    reference = cls.capabilities.reference
    if not isinstance(reference, str) or "\n" in reference:  # one line under a table
        return (
            f"method {name!r}: capabilities.reference is "
            f"{'text of several lines' if isinstance(reference, str) else type(reference).__name__}"
            ", not one line of text; declare one sentence: what its default computes relative to "
            "the paper it is named after, and which code it was checked against"
        )
    for base in cls.__mro__[1:]:  # a variant is not its base's namesake (its own name says so)
        base_name = vars(base).get("name")
        if reference and base_name and base_name != name:
            if reference == base.capabilities.reference:
                return (
                    f"method {name!r} inherits the capabilities.reference of method "
                    f"{base_name!r} ({base.__qualname__}), so its rows would claim that paper; "
                    f"declare its own: capabilities = dataclasses.replace({base.__qualname__}"
                    ".capabilities, reference='what it computes, against which paper') ('' if "
                    "none)"
                )
    sections = {"config.defaults": cls.config.defaults}
    sections.update({f"config.presets[{k!r}]": v for k, v in cls.config.presets.items()})
    for where, values in sections.items():
        problem = _not_plain(values, where)
        if problem:
            return f"method {name!r}: {problem}; use text, numbers, true/false, null, lists, maps"
    train = cls.config.defaults.get("train")
    if train is not None and not cls.capabilities.trainable:
        return (
            f"method {name!r} is training-free (capabilities.trainable=False) but its "
            "config.defaults has a 'train' section, which nothing would use: remove it"
        )
    for key in train or {}:
        if key not in TRAIN_DEFAULTS:
            message = unknown_name_message("training setting", key, sorted(TRAIN_DEFAULTS))
            return f"method {name!r}: config.defaults['train']: {message}"
    for parameter in inspect.signature(cls.__init__).parameters.values():
        hidden = parameter.default is not inspect.Parameter.empty
        if hidden and parameter.name not in (*cls.config.defaults, "num_classes", "classnames"):
            return (
                f"method {name!r}: the constructor's {parameter.name}={parameter.default!r} is a "
                "default config.defaults lacks, so no run would record it; move it to "
                f"config.defaults ({parameter.name!r}: ...) and drop the constructor's default"
            )
    return None


def _not_plain(value: object, where: str) -> str | None:
    """Where ``value`` holds something that is not a plain JSON value, or None."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}, not text"
            problem = _not_plain(item, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := _not_plain(v, f"{where}[{i}]"))), None)
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float) and math.isfinite(value):
        return None
    shown = "a tuple (use a list)" if isinstance(value, tuple) else f"{value!r}"
    return f"{where} is {shown}, not a plain value"


def _quoted(value: object) -> str:
    """A declared value as a message quotes it: a mapping's contents are elided."""
    return "{...}" if isinstance(value, dict) and value else repr(value)


def register_method(name: str):
    """Class decorator: register a :class:`~wsolbench.method.WSOLMethod` subclass under ``name``.

    Sets ``cls.name = name``. Registering a second class under a taken name is an error.

    Raises:
        TypeError: ``cls`` is no WSOLMethod subclass, or declares the first interface's attributes
            (:func:`old_interface_message`); discovery reports either as a :class:`PluginError`.
    """
    check_name(name, "method")

    def decorator(cls):
        from wsolbench.method import WSOLMethod

        if not (isinstance(cls, type) and issubclass(cls, WSOLMethod)):
            raise TypeError(
                f"@register_method({name!r}) decorates {cls!r}, which is not a WSOLMethod "
                "subclass; derive it from wsolbench.method.WSOLMethod"
            )
        problem = old_interface_message(cls, name) or declaration_message(cls, name)
        if problem:
            raise TypeError(problem)
        if _name_taken(name, cls):  # its results would be recorded and tabled as another's
            raise TypeError(
                f"@register_method({name!r}) on {cls.__module__}.{cls.__qualname__}: another "
                "method already has that name; register the class under a name of its own"
            )
        cls.name = name
        METHODS.register_module(name=name, module=cls)
        return cls

    return decorator


def _first_party_names() -> list[str]:
    package = importlib.import_module(FIRST_PARTY_PACKAGE)
    return sorted(
        info.name
        for info in pkgutil.iter_modules(package.__path__)
        if info.ispkg and NAME_PATTERN.match(info.name)
    )


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def list_methods() -> list[str]:
    """Names of every method that :func:`get_method` can find, without importing any plugin."""
    names = set(METHODS.module_dict) | set(_first_party_names()) | set(_entry_points())
    return sorted(names)


def _import_plugin(module_name: str, name: str):
    from wsolbench.util.compat import ensure_torchvision

    ensure_torchvision()
    try:
        return importlib.import_module(module_name)
    except Exception as exc:
        raise PluginError(f"method {name!r}: importing {module_name!r} failed: {exc}") from exc


def _from_path(spec: str) -> type[WSOLMethod]:
    module_name, _, attribute = spec.partition(":")
    module = _import_plugin(module_name, spec)
    try:
        cls = getattr(module, attribute)
    except AttributeError:
        raise KeyError(
            f"method {spec!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    return _registered_class(spec, cls)


def _registered_class(
    label: str, cls, entry_point: importlib.metadata.EntryPoint | None = None
) -> type[WSOLMethod]:
    """Check a class found by entry point (``label`` its name) or path (``label`` the path), and
    register it under its own name if needed: the name ``@register_method`` gave it, else the
    entry point's name, else the path's class name in lower case.

    Raises:
        PluginError: ``cls`` is no WSOLMethod subclass, declares the first interface, or was
            registered under another name than its entry point's.
    """
    from wsolbench.method import WSOLMethod

    if not (isinstance(cls, type) and issubclass(cls, WSOLMethod)):
        raise PluginError(
            f"method {label!r} resolves to {cls!r}, which is not a WSOLMethod subclass; point it "
            "at a subclass of wsolbench.method.WSOLMethod"
        )
    registered = vars(cls).get("name", "")  # set on the class itself, not inherited from a base
    if entry_point is not None and registered and registered != label:
        raise PluginError(
            f"entry point {label!r} ({entry_point.value}, group {ENTRY_POINT_GROUP}) loads the "
            f"method registered as {registered!r}, and the two names must agree: rename the "
            f"entry point to {registered!r} in the plugin's pyproject.toml (then reinstall it), "
            f'or register the class as @register_method("{label}")'
        )
    name = registered or (label.rpartition(":")[2].lower() if ":" in label else label)
    problem = old_interface_message(cls, name) or declaration_message(cls, name)
    if problem:
        raise PluginError(problem)
    if entry_point is None and _name_taken(name, cls):
        # A class loaded by path must not take another method's name, its class name or the one
        # it registered itself under: results would be recorded, grouped and tabled as that
        # method's (``pkg:CAM`` as ``cam``, a class registered as "center" as ``center``).
        how = "is registered as" if registered else "would be named"
        raise PluginError(
            f"method {label!r} {how} {name!r}, which another method already has; "
            f'register the class under a name of its own with @register_method("<name>")'
        )
    cls.name = name
    if METHODS.get(name) is None:
        METHODS.register_module(name=name, module=cls)
    return cls


def _name_taken(name: str, cls: type) -> bool:
    """Whether another class has, or will have on first use, the method name ``name``: one
    registered under it, a first-party method's folder of that name, or an installed entry point
    of that name, from other modules than ``cls``'s."""
    existing = METHODS.get(name)
    if existing is not None and existing is not cls:
        return True
    first_party = name in _first_party_names()
    if first_party and not cls.__module__.startswith(f"{FIRST_PARTY_PACKAGE}."):
        return True
    entry_point = _entry_points().get(name)
    top = cls.__module__.partition(".")[0]
    return entry_point is not None and entry_point.module.partition(".")[0] != top


def get_method(name: str) -> type[WSOLMethod]:
    """The method class registered under ``name`` (see the module docstring for the search order).

    Raises:
        KeyError: no method has that name; the message lists close matches.
        PluginError: the plugin exists but cannot be used (see the module docstring); the message
            names it and the fix.
    """
    # The registry's own dict, not METHODS.get: that reads "a.b" as scope "a" (importing
    # a.registry) and resolves any importable dotted name ("os.path") as if it were a method.
    cls = METHODS.module_dict.get(name)
    if cls is not None:
        return cls
    if ":" in name:
        if not PLUGIN_PATH_PATTERN.fullmatch(name):
            raise KeyError(
                f"method {name!r} is neither pkg.module:Class (dotted module names, one colon, a "
                f"class name) nor a method name (known: {', '.join(list_methods())})"
            )
        return _from_path(name)
    if NAME_PATTERN.match(name) and name in _first_party_names():
        shadowed = _entry_points().get(name)
        if shadowed is not None:  # an installed plugin of a built-in's name would never be used
            raise PluginError(
                f"two methods are named {name!r}: the built-in {FIRST_PARTY_PACKAGE}/{name} and "
                f"the installed entry point {shadowed.value!r} (group {ENTRY_POINT_GROUP}); "
                "rename the plugin's entry point and registered name, then reinstall it"
            )
        _import_plugin(f"{FIRST_PARTY_PACKAGE}.{name}", name)
        cls = METHODS.get(name)
        if cls is None:
            raise KeyError(
                f"methods/{name}/ was imported but registered no method {name!r}; decorate its "
                f'class with @register_method("{name}") and import it in methods/{name}/__init__.py'
            )
        return cls
    entry_point = _entry_points().get(name)
    if entry_point is not None:
        from wsolbench.util.compat import ensure_torchvision

        ensure_torchvision()
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise PluginError(
                f"method {name!r}: entry point {entry_point.value!r} "
                f"(group {ENTRY_POINT_GROUP}) failed to load: {exc}"
            ) from exc
        return _registered_class(name, loaded, entry_point)
    message = unknown_name_message("method", name, list_methods())
    # a plugin not installed yet is named by its path: say what a path looks like
    message += (
        "; a plugin class in development is given as pkg.module:Class, its folder on PYTHONPATH "
        "(docs/writing-a-method.md)"
    )
    raise KeyError(message)


@dataclass
class PluginStatus:
    """One line of ``wsolbench list -v``."""

    name: str
    source: str  # "methods/<name>", "entry point <value>" or "registered"
    ok: bool
    detail: str  # the class path and flags, or the error that broke the import


def check_plugins() -> list[PluginStatus]:
    """Import every method and report each, without letting a broken plugin stop the others."""
    entry_points = _entry_points()
    first_party = set(_first_party_names())
    statuses = []
    for name in list_methods():
        if name in first_party:
            source = f"{FIRST_PARTY_PACKAGE}/{name}"
        elif name in entry_points:
            source = f"entry point {entry_points[name].value}"
        else:
            source = "registered"
        try:
            cls = get_method(name)
        except Exception as exc:  # a broken plugin is reported, not fatal
            logger.debug("plugin %s failed:\n%s", name, traceback.format_exc())
            statuses.append(PluginStatus(name, source, False, f"{type(exc).__name__}: {exc}"))
            continue
        flags = "trainable" if cls.capabilities.trainable else "training-free"
        statuses.append(
            PluginStatus(name, source, True, f"{cls.__module__}.{cls.__qualname__} ({flags})")
        )
    return statuses
