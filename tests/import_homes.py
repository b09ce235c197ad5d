"""One home per name: find the imports that take a project name from a module that does not define
it (a shim left where a name used to live, a block of imports passed on), and the modules that
pass such names on.

A name's home is the module that defines it (``def``, ``class`` or an assignment at module level).
A package face (an ``__init__.py``) may present names of its own modules as public API by listing
them in its ``__all__``; nothing else may hand on a name it imported. Read from the source with
``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class _Module:
    path: Path
    is_face: bool
    defined: set[str] = field(default_factory=set)
    exported: set[str] = field(default_factory=set)  # __all__
    imported: dict[str, tuple[str, str | None, int]] = field(default_factory=dict)  # top level
    used: set[str] = field(default_factory=set)
    aliases: dict[str, int] = field(default_factory=dict)  # name = imported.thing, at top level


def module_name(root: Path, path: Path) -> str:
    """``root/a/b/c.py`` -> ``a.b.c``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_base(node: ast.ImportFrom, name: str, is_face: bool) -> str:
    """The absolute module a ``from ... import`` in module ``name`` reads from (relative imports
    resolved; ``is_face``: ``name`` is a package's ``__init__``)."""
    if not node.level:
        return node.module or ""
    package = name if is_face else name.rpartition(".")[0]
    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*anchor, node.module] if node.module else anchor)


def _top_level(body: list[ast.stmt]):
    """The statements run at import time: module level, and inside if / try / with there."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            yield from _top_level(node.body)
            yield from _top_level(getattr(node, "orelse", []))
            for handler in getattr(node, "handlers", []):
                yield from _top_level(handler.body)


def _read(root: Path, name: str, path: Path) -> _Module:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _Module(path, path.name == "__init__.py")
    for node in _top_level(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            module.defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                module.defined.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
                if isinstance(target, ast.Name) and target.id == "__all__" and node.value:
                    module.exported.update(ast.literal_eval(node.value))
                elif isinstance(target, ast.Name) and isinstance(
                    getattr(node, "value", None), (ast.Name, ast.Attribute)
                ):
                    module.aliases[target.id] = node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = import_base(node, name, module.is_face)
            for alias in node.names:
                module.imported[alias.asname or alias.name] = (base, alias.name, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                bound = alias.asname or alias.name.partition(".")[0]
                module.imported[bound] = (alias.name if alias.asname else bound, None, node.lineno)
    module.used = {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    return module


def misplaced_imports(root: Path, packages: tuple[str, ...], trees: tuple[str, ...]) -> list[str]:
    """Every violation under ``trees`` (folders of ``root``), one line each, sorted.

    ``packages`` are the importable project packages whose names have homes; ``trees`` are the
    folders whose imports are checked (the packages, plus tests, benchmarks, scripts...).
    """
    modules = {
        module_name(root, path): path for top in packages for path in (root / top).rglob("*.py")
    }
    read = {name: _read(root, name, path) for name, path in modules.items()}

    def home(module: str, name: str, seen: frozenset = frozenset()) -> str | None:
        """Where ``module.name`` is defined; None when it is fine to take it from ``module``."""
        info = read.get(module)
        if info is None or f"{module}.{name}" in modules or name in info.defined:
            return None
        if info.is_face and name in info.exported:
            return None
        if name in info.imported and (module, name) not in seen:
            base, original, _ = info.imported[name]
            if original is None or base.partition(".")[0] not in packages:
                return None
            return home(base, original, seen | {(module, name)}) or base
        return None

    def project_object(module: _Module, value: ast.expr) -> bool:
        """Whether ``value`` (a name or ``a.b``) is something imported from the project."""
        while isinstance(value, ast.Attribute):
            value = value.value
        if not isinstance(value, ast.Name) or value.id not in module.imported:
            return False
        return module.imported[value.id][0].partition(".")[0] in packages

    found = []
    for info in read.values():
        relative = info.path.relative_to(root)
        tree = ast.parse(info.path.read_text(encoding="utf-8"))
        for node in _top_level(tree.body):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if (
                    isinstance(target, ast.Name)
                    and target.id in info.aliases
                    and project_object(info, node.value)
                ):
                    found.append(f"{relative} passes on {target.id} under a second name")
        for bound, (base, original, _) in info.imported.items():
            if original is None or base.partition(".")[0] not in packages:
                continue
            passed_on = bound in info.exported or bound not in info.used
            if passed_on and not (info.is_face and bound in info.exported):
                where = home(base, original) or base
                found.append(f"{relative} passes on {bound} (its home is {where})")
    for top in trees:
        for path in sorted((root / top).rglob("*.py")):
            name = module_name(root, path)
            tree = ast.parse(path.read_text(encoding="utf-8"))
            aliases = {}
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    base = import_base(node, name, path.name == "__init__.py")
                    for alias in node.names:
                        if f"{base}.{alias.name}" in modules:
                            aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
                        where = home(base, alias.name)
                        if where and where != name:
                            found.append(
                                f"{path.relative_to(root)}:{node.lineno} takes {alias.name} "
                                f"through {base} (its home is {where})"
                            )
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        if alias.asname and alias.name in modules:
                            aliases[alias.asname] = alias.name
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in aliases
                ):
                    where = home(aliases[node.value.id], node.attr)
                    if where:
                        found.append(
                            f"{path.relative_to(root)}:{node.lineno} takes {node.attr} "
                            f"through {aliases[node.value.id]} (its home is {where})"
                        )
    return sorted(set(found))
