"""The README and the docs/ pages point at things that exist.

Every relative link of the project's pages resolves to a file or folder of the checkout, and every
``#anchor`` to a heading of its target (GitHub's slug rules); the README stays short enough to read
in five minutes; and every path of the tree (``wsolbench/...``, ``methods/...``, ``reports/...``,
...) or ``wsolbench.x.y`` name that the README or a docs/ page puts in backticks exists, so that
moving a module or file cannot leave a stale name behind. Names are resolved from the source (files
and ``ast``), nothing is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
HTML_LINK = re.compile(r"\b(?:href|src)=\"([^\"]+)\"")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A name starts where no word, path or variable does (not `.venv/bin/wsolbench`, `$WSOLBENCH_...`).
NAME_START = r"(?<![\w./$~-])"
TREE_DIRS = (
    "wsolbench",
    "methods",
    "protocols",
    "reports",
    "benchmarks",
    "tests",
    "examples",
    "docs",
)
PATH_NAME = re.compile(NAME_START + rf"(?:{'|'.join(TREE_DIRS)})/[\w./-]*")
PATTERN_MARKS = "*<{"  # a path followed by one of these is a pattern (`reports/diff-*.md`)
MODULE_NAME = re.compile(NAME_START + r"wsolbench(?:\.[A-Za-z_]\w*)+")


def _linked_pages() -> list[Path]:
    """The pages whose links are checked."""
    return [
        README,
        *sorted((REPO / "docs").glob("*.md")),
        *sorted(REPO.glob("methods/*/README.md")),
        REPO / "reports" / "README.md",
        REPO / "benchmarks" / "README.md",
        REPO / "examples" / "wsolbench-has" / "README.md",
    ]


def _guide_pages() -> list[Path]:
    """The pages whose backticked module paths and names are checked."""
    return [README, *sorted((REPO / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (link targets, tags and emphasis marks
    dropped) lowercased, every character other than a letter, digit, ``_``, ``-`` or space
    removed, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a markdown page: one per heading (repeats get -1, -2, ...), plus HTML
    ``<a name=...>`` / ``id=...`` anchors."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _, line in prose_lines(page.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _link_targets(line: str) -> list[str]:
    """The targets linked from one line outside code (links inside code spans do not count)."""
    outside_code = CODE_SPAN.sub(lambda m: "code", line)
    return (
        INLINE_LINK.findall(outside_code)
        + REFERENCE_LINK.findall(outside_code)
        + HTML_LINK.findall(outside_code)
    )


def broken_links(page: Path, root: Path) -> list[str]:
    """Every relative link of ``page`` that names no file or folder under ``root``, or an
    anchor that no heading of its target has, as ``line N: target (why)``."""
    broken = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        for target in _link_targets(line):
            if URL_SCHEME.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
            if not resolved.is_relative_to(root.resolve()):
                broken.append(f"line {number}: {target} (outside the repository)")
            elif not resolved.exists():
                broken.append(f"line {number}: {target} (no such file)")
            elif anchor and not (resolved.is_file() and resolved.suffix == ".md"):
                broken.append(f"line {number}: {target} (an anchor into a non-markdown target)")
            elif anchor and unquote(anchor) not in anchors(resolved):
                broken.append(f"line {number}: {target} (no heading with that anchor)")
    return broken


def _defined_names(module_file: Path) -> set[str]:
    """The top-level names a module defines or imports."""
    names: set[str] = set()
    for node in ast.parse(module_file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _module_file(root: Path, parts: list[str]) -> Path | None:
    """The file of the module ``parts`` (a package's ``__init__.py``), or None."""
    base = root.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def stale_names(text: str, root: Path) -> list[str]:
    """The paths (``wsolbench/...``, ``reports/...``, ...; patterns skipped) and
    ``wsolbench.x.y`` names in the code spans of ``text`` (outside fenced blocks) that the tree
    under ``root`` does not have. A dotted name is a module, or a module followed by a name that
    module defines at its top level."""
    stale = []
    for number, line in prose_lines(text):
        for _, span in CODE_SPAN.findall(line):
            for match in PATH_NAME.finditer(span):
                path, after = match.group(), span[match.end() : match.end() + 1]
                if after and after in PATTERN_MARKS:
                    continue
                if not (root / path.rstrip("./")).exists():
                    stale.append(f"line {number}: {path} (no such path)")
            for name in MODULE_NAME.findall(span):
                parts = name.split(".")
                depth = max(i for i in range(1, len(parts) + 1) if _module_file(root, parts[:i]))
                if depth < len(parts):
                    module = _module_file(root, parts[:depth])
                    if parts[depth] not in _defined_names(module):
                        stale.append(
                            f"line {number}: {name} ({'.'.join(parts[:depth])} has no "
                            f"{parts[depth]!r})"
                        )
    return stale


@pytest.mark.parametrize("page", _linked_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert page.is_file(), f"{page.relative_to(REPO)} is missing"
    broken = broken_links(page, REPO)
    assert not broken, f"{page.relative_to(REPO)}: broken links:\n" + "\n".join(broken)


def test_readme_reads_in_five_minutes():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_readme_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    linked = {t.partition("#")[0] for _, line in prose_lines(text) for t in _link_targets(line)}
    pages = [f"docs/{p.name}" for p in sorted((REPO / "docs").glob("*.md"))]
    assert pages, "docs/ has no pages"
    missing = [p for p in pages if p not in linked]
    assert not missing, f"README.md does not link {', '.join(missing)}"


@pytest.mark.parametrize("page", _guide_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_named_module_paths_exist(page):
    stale = stale_names(page.read_text(encoding="utf-8"), REPO)
    assert not stale, f"{page.relative_to(REPO)} names what the tree lacks:\n" + "\n".join(stale)


def test_link_checker_reports_a_planted_broken_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "target.md").write_text(
        "# A `code` heading: x × y\n\n## Again\n## Again\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n"
        "[good](docs/target.md#a-code-heading-x--y) [folder](docs/) [self](#page)\n"
        "[repeat](docs/target.md#again-1) [web](https://example.org/missing.md)\n"
        "[gone](docs/missing.md) and [bad anchor](docs/target.md#no-such-heading)\n"
        "`[in code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
        "[outside](../elsewhere.md)\n"
    )
    assert broken_links(page, tmp_path) == [
        "line 4: docs/missing.md (no such file)",
        "line 4: docs/target.md#no-such-heading (no heading with that anchor)",
        "line 9: ../elsewhere.md (outside the repository)",
    ]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        (
            "Weights: every file users have, a cached tag, never a download",
            "weights-every-file-users-have-a-cached-tag-never-a-download",
        ),
        ("Configuration (every key; `-o key=value`)", "configuration-every-key--o-keyvalue"),
        ("Evaluator speed: `bench_evaluator.py`", "evaluator-speed-bench_evaluatorpy"),
        ("The [`cam`](x.md) row, **read**", "the-cam-row-read"),
    ],
)
def test_github_slug(heading, slug):
    assert github_slug(heading) == slug


def test_stale_name_checker_reports_moved_modules_and_files(tmp_path):
    (tmp_path / "wsolbench" / "cost").mkdir(parents=True)
    (tmp_path / "wsolbench" / "__init__.py").write_text("")
    (tmp_path / "wsolbench" / "cost" / "__init__.py").write_text("")
    (tmp_path / "wsolbench" / "cost" / "genpromp.py").write_text("from x import y as GENPROMP\n")
    (tmp_path / "wsolbench" / "config.py").write_text("TRAIN_DEFAULTS: dict = {}\ndef f(): ...\n")
    text = (
        "`python -m wsolbench.cost.genpromp` `wsolbench.config.TRAIN_DEFAULTS` `wsolbench/cost/`\n"
        "`wsolbench.cost.genpromp.GENPROMP` `.venv/bin/wsolbench` `$WSOLBENCH_CACHE/x`\n"
        "`reports/diff-*.md` `methods/<name>/` `work_dirs/demo/`\n"
        "```\npython -m wsolbench.cost_genpromp\n```\n"
        "`python -m wsolbench.cost_genpromp` `wsolbench/run.py` `wsolbench.config.NO_SUCH`\n"
        "see `reports/gone.md`\n"
    )
    assert stale_names(text, tmp_path) == [
        "line 7: wsolbench.cost_genpromp (wsolbench has no 'cost_genpromp')",
        "line 7: wsolbench/run.py (no such path)",
        "line 7: wsolbench.config.NO_SUCH (wsolbench.config has no 'NO_SUCH')",
        "line 8: reports/gone.md (no such path)",
    ]
