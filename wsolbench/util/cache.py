"""Where wsolbench caches what it builds once: generated datasets, its own CLIPs, CAM teachers,
text embeddings, protocol files known only from a record."""

from __future__ import annotations

import os
from pathlib import Path

#: The environment variable that moves the cache.
CACHE_ENV = "WSOLBENCH_CACHE"


def default_cache_dir() -> Path:
    """``$WSOLBENCH_CACHE`` if set, else ``~/.cache/wsolbench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "wsolbench").expanduser()
