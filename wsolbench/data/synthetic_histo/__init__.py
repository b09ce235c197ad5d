"""The built-in ``synthetic-histo`` dataset: glands in stroma, graded benign or malignant.

A CPU-sized stand-in for GlaS (``docs/histology.md``): every image is a field of colon mucosa
whose glands are the ground-truth mask, and whose class — benign or malignant — shows in how the
glands look and lie; vessels, empty spaces and lymphoid aggregates are hard negatives in both
classes. Masks only, as the histology protocols are. One idea per module:
:mod:`~wsolbench.data.synthetic_histo.config` (a set's parameters),
:mod:`~wsolbench.data.synthetic_histo.raster` (shapes to pixels),
:mod:`~wsolbench.data.synthetic_histo.tissue` (stain, stroma, hard negatives),
:mod:`~wsolbench.data.synthetic_histo.glands` (the glands of each grade),
:mod:`~wsolbench.data.synthetic_histo.render` (one sample) and
:mod:`~wsolbench.data.synthetic_histo.build` (a dataset root, cached).
"""

from wsolbench.data.synthetic_histo.build import (
    NAME,
    ensure_histo,
    generate_histo,
    histo_world,
)
from wsolbench.data.synthetic_histo.config import CLASSES, GENERATOR_VERSION, HistoConfig
from wsolbench.data.synthetic_histo.render import HistoSample, render_histo_sample

__all__ = [
    "CLASSES",
    "GENERATOR_VERSION",
    "NAME",
    "HistoConfig",
    "HistoSample",
    "ensure_histo",
    "generate_histo",
    "histo_world",
    "render_histo_sample",
]
