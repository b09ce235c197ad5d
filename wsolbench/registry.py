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

:func:`list_methods` only lists names (folders and entry points) and imports no plugin. Plugin
modules run :func:`wsolbench.util.compat.ensure_torchvision` implicitly: it is called before any
plugin import, so a plugin may import timm or open_clip at module level on a CPU-only torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import pkgutil
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mmengine.registry import Registry

from wsolbench.util.names import NAME_PATTERN, check_name, unknown_name_message

if TYPE_CHECKING:
    from wsolbench.method import WSOLMethod

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "wsolbench.methods"
FIRST_PARTY_PACKAGE = "methods"

METHODS = Registry("wsolbench method", scope="wsolbench")


def register_method(name: str):
    """Class decorator: register a :class:`~wsolbench.method.WSOLMethod` subclass under ``name``.

    Sets ``cls.name = name``. Registering a second class under a taken name is an error.
    """
    check_name(name, "method")

    def decorator(cls):
        from wsolbench.method import WSOLMethod

        if not (isinstance(cls, type) and issubclass(cls, WSOLMethod)):
            raise TypeError(
                f"@register_method({name!r}) decorates {cls!r}, which is not a WSOLMethod "
                "subclass; derive it from wsolbench.method.WSOLMethod"
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
        raise ImportError(f"method {name!r}: importing {module_name!r} failed: {exc}") from exc


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


def _registered_class(label: str, cls) -> type[WSOLMethod]:
    """Check a class found by entry point or path, and register it under its own name if needed."""
    from wsolbench.method import WSOLMethod

    if not (isinstance(cls, type) and issubclass(cls, WSOLMethod)):
        raise TypeError(f"method {label!r} resolves to {cls!r}, which is not a WSOLMethod subclass")
    if not getattr(cls, "name", ""):
        cls.name = label.rpartition(":")[2].lower() if ":" in label else label
    if METHODS.get(cls.name) is None:
        METHODS.register_module(name=cls.name, module=cls)
    return cls


def get_method(name: str) -> type[WSOLMethod]:
    """The method class registered under ``name`` (see the module docstring for the search order).

    Raises:
        KeyError: no method has that name; the message lists close matches.
        ImportError: the plugin exists but fails to import; the message names it.
    """
    cls = METHODS.get(name)
    if cls is not None:
        return cls
    if ":" in name:
        return _from_path(name)
    if NAME_PATTERN.match(name) and name in _first_party_names():
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
            raise ImportError(
                f"method {name!r}: entry point {entry_point.value!r} "
                f"(group {ENTRY_POINT_GROUP}) failed to load: {exc}"
            ) from exc
        return _registered_class(name, loaded)
    raise KeyError(unknown_name_message("method", name, list_methods()))


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
        flags = "trainable" if cls.trainable else "training-free"
        statuses.append(
            PluginStatus(name, source, True, f"{cls.__module__}.{cls.__qualname__} ({flags})")
        )
    return statuses
