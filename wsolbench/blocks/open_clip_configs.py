"""open_clip with wsolbench's own model configurations registered, and the error every CLIP loading
path raises.

The configurations are the JSON files of ``wsolbench/blocks/clip_configs/`` (:data:`TINY_CLIP`, the
tests' 2-block model, and ``wsolbench-synthclip-v1``, :mod:`wsolbench.blocks.synthclip`'s); they are
added to open_clip's registry the first time :func:`import_open_clip` runs. Both
:mod:`wsolbench.blocks.clip_models` (loading) and :mod:`wsolbench.blocks.synthclip` (training) start
from here, so neither imports the other's internals.
"""

from __future__ import annotations

import logging
from pathlib import Path

from wsolbench.util.compat import ensure_torchvision

TINY_CLIP = "wsolbench-tiny-clip"
CONFIG_DIR = Path(__file__).with_name("clip_configs")


class ClipWeightsError(ValueError):
    """CLIP weights are unavailable or do not fit; the message says how to fix it."""


def import_open_clip():
    """The ``open_clip`` module, with every config of :data:`CONFIG_DIR` registered."""
    ensure_torchvision()  # open_clip imports torchvision
    import open_clip

    if TINY_CLIP not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def create_model(name: str, **kwargs):
    """``open_clip.create_model(name, pretrained=None, **kwargs)``, without open_clip's
    "No pretrained weights loaded" warning: wsolbench loads the weights itself right after, and
    every result says where they came from (``pretrained``)."""
    open_clip = import_open_clip()
    root = logging.getLogger()  # open_clip warns through the root logger
    drop = _DropRandomInitWarning()
    root.addFilter(drop)
    try:
        return open_clip.create_model(name, pretrained=None, **kwargs)
    finally:
        root.removeFilter(drop)


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No pretrained weights loaded")
