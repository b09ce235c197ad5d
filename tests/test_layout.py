"""The house's rules, checked on every commit: one idea per module (an opening docstring naming
it, at most 500 lines), and no import circle among the project's modules.

Imports are read from the source (``ast``), every one of them, also those inside functions and
under ``TYPE_CHECKING``: a lazy import still ties two modules together.
"""

import ast
from pathlib import Path

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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, name: str) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` counts a.b.c if it is a
    module, else a.b)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_import_circle():
    names = {_module_name(p): p for p in _modules() if p.parts[len(REPO.parts)] in PACKAGES}
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
