"""Names of registered things: what a valid one looks like, and did-you-mean messages.

A module of its own, importing nothing of wsolbench, so that every layer (the method and dataset
registries, config and protocol keys) can check a name and name a typo's close matches without
importing a registry.
"""

from __future__ import annotations

import difflib
import re

#: The package of the built-in methods (``methods/<name>/``), shipped in wsolbench's distribution:
#: the registry finds them there, and a result's code record tells them from a plugin's by it.
FIRST_PARTY_PACKAGE = "methods"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
#: Dataset names may join such words with '-' (``synthetic-histo``), as protocol ids do; they
#: name no Python package.
DATASET_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(-[a-z][a-z0-9_]*)*$")


def check_name(name: str, what: str) -> None:
    """Raise ValueError unless ``name`` is a valid registered name (``tedloc``, ``clip_patch``)."""
    if what == "dataset":
        if not DATASET_NAME_PATTERN.match(name):
            raise ValueError(
                f"invalid dataset name {name!r}: use lowercase words of letters, digits and '_' "
                "joined by '-', each starting with a letter"
            )
    elif not NAME_PATTERN.match(name):
        raise ValueError(
            f"invalid {what} name {name!r}: use lowercase letters, digits and '_', "
            "starting with a letter"
        )


def unknown_name_message(what: str, name: str, known: list[str]) -> str:
    """``unknown method 'tedlock'; did you mean 'tedloc'?`` plus the list of known names."""
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what} {name!r}{hint} (known: {', '.join(known) or 'none'})"
