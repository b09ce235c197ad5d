"""The histology world as a :class:`~wsolbench.data.generated.GeneratedWorld`: written where
asked (:func:`generate_histo`) or cached per config digest (:func:`ensure_histo`)."""

from __future__ import annotations

import functools
from pathlib import Path

from wsolbench.data import generated
from wsolbench.data.synthetic_histo.config import CLASSES, GENERATOR_VERSION, HistoConfig
from wsolbench.data.synthetic_histo.render import render_histo_sample

#: The dataset name, its cache folder's prefix and its summary file's stem.
NAME = "synthetic-histo"
_DEFAULT_CONFIG = HistoConfig()


def histo_world(config: HistoConfig = _DEFAULT_CONFIG) -> generated.GeneratedWorld:
    """The histology set of ``config``: masks only, ``synthetic-histo.json`` as its summary."""
    return generated.GeneratedWorld(
        name=NAME,
        config=config,
        generator={"module": "wsolbench.data.synthetic_histo", "version": GENERATOR_VERSION},
        classes=list(CLASSES),
        render=functools.partial(render_histo_sample, config),
        protocol="synthetic-histo-v1",
        boxes=False,
    )


def generate_histo(
    out: str | Path, config: HistoConfig = _DEFAULT_CONFIG, *, progress: bool = False
) -> Path:
    """Write the histology set of ``config`` at ``out`` (see
    :func:`wsolbench.data.generated.generate`; ``out`` must not exist or be empty)."""
    return generated.generate(out, histo_world(config), progress=progress)


def ensure_histo(
    config: HistoConfig = _DEFAULT_CONFIG,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> Path:
    """The cached root ``<cache_dir>/synthetic-histo-<digest>`` of ``config``, generated on first
    use (see :func:`wsolbench.data.generated.ensure_generated`)."""
    return generated.ensure_generated(histo_world(config), cache_dir, progress=progress)
