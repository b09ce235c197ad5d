"""Did-you-mean messages for unknown names (methods, datasets, config and protocol keys).

A module of its own, importing nothing of wsolbench, so that every layer can name a typo's close
matches without importing the registry.
"""

from __future__ import annotations

import difflib


def unknown_name_message(what: str, name: str, known: list[str]) -> str:
    """``unknown method 'tedlock'; did you mean 'tedloc'?`` plus the list of known names."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what} {name!r}{hint} (known: {', '.join(known) or 'none'})"
