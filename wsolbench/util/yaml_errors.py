"""A YAML syntax error as one line: PyYAML's message spans several (a snippet and a caret)."""

from __future__ import annotations


def yaml_problem(exc: Exception) -> str:
    """``line L, column C: <problem>`` (1-based, where the parser stopped) for a YAML syntax
    error; else (another YAML or a read error) the message's first line. For an error line that
    names its file before it."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        context = getattr(exc, "context", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"{where}: {problem}" + (f" ({context})" if context else "")
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
