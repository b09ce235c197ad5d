"""Paths as a user types them, read the one way everywhere: the command line's path options,
``-o`` values that are paths (``backbone.checkpoint=~/w.pth``, ``teacher=run:~/runs/cam``).

A module of its own, importing nothing of wsolbench, so that both the command line and the
config layer below it read a path alike.
"""

from __future__ import annotations

import os

# why an empty path is refused, for the caller's message (which adds the key and the fix)
EMPTY_PATH = "an empty path (an unset shell variable?)"


def expand_user_path(text: str) -> str:
    """``text`` with a leading ``~`` made the home folder, as the shell would have made it (it does
    not in ``--work-dir=~/x``, ``-o key=~/x`` nor in quotes, and a folder named ``~`` is never
    what was meant).

    Raises:
        ValueError: ``text`` is empty or blank (:data:`EMPTY_PATH`): it is an unset shell variable
            (``--work-dir "$OUT"``), and taking it as "not given" would write to, or read, the
            default instead of what was meant.
    """
    if not text.strip():
        raise ValueError(EMPTY_PATH)
    return os.path.expanduser(text)
