"""The synthetic world as a :class:`~wsolbench.data.generated.GeneratedWorld`: written where
asked (:func:`generate`) or cached per config digest (:func:`ensure_synthetic`)."""

from __future__ import annotations

import functools
from pathlib import Path

from wsolbench.data import generated
from wsolbench.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from wsolbench.data.synthetic.render import render_sample
from wsolbench.data.synthetic.style import class_names

# SyntheticConfig is frozen, so one instance can be every call's default.
_DEFAULT_CONFIG = SyntheticConfig()


def synthetic_world(config: SyntheticConfig = _DEFAULT_CONFIG) -> generated.GeneratedWorld:
    """The synthetic dataset of ``config``: boxes and masks, ``synthetic.json`` as its summary."""
    return generated.GeneratedWorld(
        name="synthetic",
        config=config,
        generator={"module": "wsolbench.data.synthetic", "version": GENERATOR_VERSION},
        classes=class_names(config.num_classes),
        render=functools.partial(render_sample, config),
        protocol="synthetic-v1",
        boxes=True,
    )


def generate(
    out: str | Path, config: SyntheticConfig = _DEFAULT_CONFIG, *, progress: bool = False
) -> Path:
    """Write the synthetic dataset of ``config`` at ``out`` (see
    :func:`wsolbench.data.generated.generate`; ``out`` must not exist or be empty)."""
    return generated.generate(out, synthetic_world(config), progress=progress)


def ensure_synthetic(
    config: SyntheticConfig = _DEFAULT_CONFIG,
    cache_dir: str | Path | None = None,
    *,
    progress: bool = False,
) -> Path:
    """The cached root ``<cache_dir>/synthetic-<digest>`` of ``config``, generated on first use
    (see :func:`wsolbench.data.generated.ensure_generated`)."""
    return generated.ensure_generated(synthetic_world(config), cache_dir, progress=progress)
