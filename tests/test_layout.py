"""The house's rules, checked on every commit: one idea per module (an opening docstring naming
it, at most 500 lines), no import circle among the project's modules, packages that import only
the layers below their own, a small public top level, and one home per name (no re-exports).

Imports are read from the source (``ast``), every one of them, also those inside functions and
under ``TYPE_CHECKING``: a lazy import still ties two modules together.
"""

import ast
import textwrap
from pathlib import Path

from import_homes import import_base, misplaced_imports, module_name

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("wsolbench", "methods", "protocols")
TREES = (*PACKAGES, "reports", "benchmarks", "examples")
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(
        p for tree in TREES for p in (REPO / tree).rglob("*.py") if "tests" not in p.parts
    )


def test_every_module_names_its_one_idea_and_stays_small():
    too_long, undocumented = [], []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_LINES:
            too_long.append(f"{path.relative_to(REPO)} ({len(text.splitlines())} lines)")
        docstring = ast.get_docstring(ast.parse(text))
        if path.name != "__init__.py" or text.strip():
            if not docstring or not docstring.strip().splitlines()[0].strip():
                undocumented.append(str(path.relative_to(REPO)))
    assert not too_long, f"modules over {MAX_LINES} lines: {', '.join(too_long)}"
    assert not undocumented, f"modules without an opening docstring: {', '.join(undocumented)}"


def _imports(path: Path, name: str) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` counts a.b.c if it is a
    module, else a.b)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = import_base(node, name, path.name == "__init__.py")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_import_circle():
    names = {module_name(REPO, p): p for p in _modules() if p.parts[len(REPO.parts)] in PACKAGES}
    graph = {}
    for name, path in names.items():
        targets = set()
        for imported in _imports(path, name):
            # the deepest project module the import names (a.b.c -> a.b.c, else a.b, ...)
            parts = imported.split(".")
            for cut in range(len(parts), 0, -1):
                candidate = ".".join(parts[:cut])
                if candidate in names:
                    if candidate != name:
                        targets.add(candidate)
                    break
        # a package's face re-exporting its own modules is not a circle with them
        graph[name] = {t for t in targets if not (name and t.startswith(name + "."))}
    cycles = _cycles(graph)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# wsolbench's layers, bottom to top: a module imports only from its own layer and those below
# (the package face ``wsolbench`` itself, which holds the version, from anywhere).
LAYERS = (
    "util",  # compat, atomic writes, progress, names, device
    "metrics",  # the protocol's arithmetic: numpy, OpenCV, numba
    "protocol",
    "config",
    "data",
    "counting",  # maps against a split's ground truth, saved maps in worker processes (no torch)
    "method",  # the plugin contract
    "results",  # records, per-image records, work dirs, grouping, intervals (no torch)
    "registry",
    "evaluate",
    "cost",
    "leaderboard",
    "blocks",  # what methods share
    "train",  # mmengine's Runner
    "testing",  # check_method
    "runs",
    "sweep",  # grids of runs through submitit
    "cli",
    "__main__",
)
# The public face at the top of the package: what a plugin author and a script import.
TOP_LEVEL = {
    "__init__",
    "__main__",
    "method",
    "config",
    "registry",
    "testing",
    "protocol",
    "counting",
    "evaluate",
}


def _layer(module: str) -> str | None:
    """``wsolbench.runs.execute`` -> ``runs``; None for the face ``wsolbench`` and other trees."""
    parts = module.split(".")
    return parts[1] if parts[0] == "wsolbench" and len(parts) > 1 else None


def _deepest_module(imported: str, names) -> str | None:
    """The deepest project module an import names (``a.b.c`` -> ``a.b.c``, else ``a.b``, ...)."""
    parts = imported.split(".")
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in names:
            return ".".join(parts[:cut])
    return None


def test_top_level_holds_the_public_face_only():
    package = REPO / "wsolbench"
    modules = {p.stem for p in package.glob("*.py")}
    assert modules == TOP_LEVEL, (
        f"wsolbench/ top level: {sorted(modules - TOP_LEVEL)} should move into the package of "
        f"their role; {sorted(TOP_LEVEL - modules)} are missing"
    )
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")}
    assert subpackages | {m for m in TOP_LEVEL if not m.startswith("__")} == set(LAYERS) - {
        "__main__"
    }, "every subpackage and top-level module has its place in LAYERS"


def test_every_package_says_its_role():
    silent = [
        str(init.relative_to(REPO))
        for init in (REPO / "wsolbench").rglob("__init__.py")
        if not ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    ]
    assert not silent, f"packages without a docstring that says their role: {silent}"


def test_packages_import_only_downward():
    names = {module_name(REPO, p): p for p in _modules() if p.parts[len(REPO.parts)] == "wsolbench"}
    upward = []
    for name, path in names.items():
        here = _layer(name)
        for imported in _imports(path, name):
            target = _deepest_module(imported, names) or ""
            there = _layer(target)
            if here is None or there is None or there == here:
                continue
            if LAYERS.index(there) > LAYERS.index(here):
                upward.append(f"{name} imports {target} ({there} sits above {here})")
    assert not upward, "imports from a layer above:\n" + "\n".join(sorted(set(upward)))


def test_one_home_per_name():
    """No module passes on a name defined elsewhere (package faces' ``__all__`` excepted), and
    every import, in the code, tests, benchmarks and reports, takes a name from its home."""
    found = misplaced_imports(REPO, PACKAGES, TREES + ("tests",))
    assert not found, "names imported away from their home:\n" + "\n".join(found)


def test_one_home_check_catches_a_planted_reexport(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Face."""\n')
    (pkg / "sub" / "__init__.py").write_text(
        '"""Face."""\nfrom pkg.sub.home import thing\n\n__all__ = ["thing"]\n'
    )
    (pkg / "sub" / "home.py").write_text('"""Home."""\n\ndef thing():\n    return 1\n')
    (pkg / "shim.py").write_text(
        textwrap.dedent(
            """\
            \"\"\"Passes a name on.\"\"\"
            from pkg.sub.home import thing  # noqa: F401

            __all__ = ["thing"]
            """
        )
    )
    (pkg / "alias.py").write_text(
        '"""Private alias."""\nfrom pkg.sub import home\n\n_thing = home.thing\n'
    )
    (pkg / "user.py").write_text(
        '"""User."""\nfrom pkg import shim\nfrom pkg.shim import thing\n'
        "from pkg.sub import thing as t\nprint(thing, t, shim.thing)\n"
    )
    found = misplaced_imports(tmp_path, ("pkg",), ("pkg",))
    assert found == [
        "pkg/alias.py passes on _thing under a second name",
        "pkg/shim.py passes on thing (its home is pkg.sub.home)",
        "pkg/user.py:3 takes thing through pkg.shim (its home is pkg.sub.home)",
        "pkg/user.py:5 takes thing through pkg.shim (its home is pkg.sub.home)",
    ], found
