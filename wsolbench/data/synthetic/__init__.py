"""The built-in ``synthetic`` dataset: the central WSOL failure in miniature.

Every image holds one object whose ground truth covers a large body, while almost all the class
evidence sits in a small head, so a classifier's CAM finds the head and misses the body. See
``shared/spec/synthetic.md``. One idea per module: :mod:`~wsolbench.data.synthetic.style` (what
each class looks like), :mod:`~wsolbench.data.synthetic.config` (a dataset's parameters),
:mod:`~wsolbench.data.synthetic.draw` (drawing primitives),
:mod:`~wsolbench.data.synthetic.placement` (the object's layout),
:mod:`~wsolbench.data.synthetic.render` (one sample),
:mod:`~wsolbench.data.synthetic.build` (a dataset root with its protocol file, cached) and
:mod:`~wsolbench.data.synthetic.captions` (the image–caption pairs synthclip learns from).
"""

from wsolbench.data.synthetic.build import ensure_synthetic, generate, synthetic_world
from wsolbench.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig
from wsolbench.data.synthetic.render import SyntheticSample, render_sample
from wsolbench.data.synthetic.style import (
    BODY_ASPECT,
    BODY_HUE_RANGE,
    BODY_HUE_SPREAD,
    HEAD_COLOURS,
    HEAD_PATTERNS,
    HEAD_RADIUS,
    MAX_CLASSES,
    MIN_HEAD_RADIUS_PX,
    OBJECT_LENGTH,
    class_names,
    head_style,
)

__all__ = [
    "BODY_ASPECT",
    "BODY_HUE_RANGE",
    "BODY_HUE_SPREAD",
    "GENERATOR_VERSION",
    "HEAD_COLOURS",
    "HEAD_PATTERNS",
    "HEAD_RADIUS",
    "MAX_CLASSES",
    "MIN_HEAD_RADIUS_PX",
    "OBJECT_LENGTH",
    "SyntheticConfig",
    "SyntheticSample",
    "class_names",
    "ensure_synthetic",
    "generate",
    "synthetic_world",
    "head_style",
    "render_sample",
]
