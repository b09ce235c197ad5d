"""Drawing one synthetic sample: an object whose class evidence sits in a small head.

Every image holds one object on a cluttered background. The object is a large convex-ish **body**
(an ellipse or a convex polygon) with a small **head** (a disc) on its boundary. The ground truth —
box and mask — covers body ∪ head, but almost all the class evidence sits in the head, so a
classifier's CAM peaks on the head and misses most of the body: the "only the discriminative part"
error of real WSOL, measurable in seconds on a CPU. See ``shared/spec/synthetic.md``.

Image model (all sizes scale with ``image_size``; numbers below are for the default 96 px):

* **Background**: smooth value noise (two octaves, 4 and 8 cells across) around a random base
  colour, plus 2–5 small clutter ellipses of random colour, size and position. Clutter is drawn
  independently of the class, so it carries no class information.
* **Body**: length (major axis) uniform in 35–75 % of the image side, aspect 0.5–0.8, random
  rotation, position uniform among those that keep the whole object (head included) at least one
  pixel inside the image. Texture: oriented stripes (random angle, period and phase) in a grey-brown
  palette shared by all classes. The hue carries a WEAK class cue: its mean moves with the class
  over 15°–45° (:data:`BODY_HUE_RANGE`), its per-image spread (:data:`BODY_HUE_SPREAD`, σ = 8°) is
  several times the gap between classes, so the body alone is a poor classifier.
* **Head**: a disc of radius 8–10 % of the body length (at least 4 px, so its pattern renders)
  centred on the body's boundary near one end of the major axis — far from most of the body, as an
  animal's head is. Its colour (:data:`HEAD_COLOURS`) and pattern (:data:`HEAD_PATTERNS`: dotted,
  ringed, checkered, solid) decide the class: the STRONG cue (which head each class has:
  :mod:`wsolbench.data.synthetic.style`).

Ground truth: the mask is body ∪ head rasterized at pixel centres; the box is the tight box of that
mask, inclusive pixel coordinates (``x1`` = last column on). With the default sizes the mean GT box
covers about 22 % of the image (the ``synthetic.json`` of a generated root has the measured value).

Determinism: each image has its own random stream, seeded by ``(seed, split, class, index)``, so an
image does not depend on generation order, on the number of images per split, or on how many classes
there are. Pixels are computed with elementwise NumPy arithmetic only (no interpolation kernels or
SIMD transcendental functions per pixel) and PNGs are written by OpenCV with a fixed compression
level: the same config gives byte-identical files with the same library versions.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, field

import numpy as np

from wsolbench.data.generated import SPLIT_STREAM, SPLITS
from wsolbench.data.synthetic.config import SyntheticConfig
from wsolbench.data.synthetic.draw import background, body_shape, head_pattern, local_frame
from wsolbench.data.synthetic.placement import (
    body_mask,
    draw_head,
    head_on_boundary,
    place_object,
)
from wsolbench.data.synthetic.style import (
    BODY_ASPECT,
    BODY_HUE_SPREAD,
    HEAD_COLOURS,
    HEAD_PATTERNS,
    HEAD_RADIUS,
    OBJECT_LENGTH,
    class_hue,
    head_style,
)


@dataclass
class SyntheticSample:
    """One rendered image with its ground truth.

    Attributes:
        image: [S, S, 3] uint8 RGB.
        mask: [S, S] bool, body ∪ head (the GT mask).
        head_mask: [S, S] bool, the head disc alone.
        box: [4] int64 tight box of ``mask``: x0, y0, x1, y1, inclusive pixel coordinates.
        label: class index.
        info: geometry, for statistics: ``length`` (body major axis, px), ``head_radius`` (px),
            ``polygon`` (True for a polygon body, False for an ellipse).
    """

    image: np.ndarray
    mask: np.ndarray
    head_mask: np.ndarray
    box: np.ndarray
    label: int
    info: dict = field(default_factory=dict)


def _image_rng(config: SyntheticConfig, split: str, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, SPLIT_STREAM[split], label, index])


def render_sample(config: SyntheticConfig, split: str, label: int, index: int) -> SyntheticSample:
    """Render image ``index`` of class ``label`` in ``split``; a pure function of its arguments.

    Args:
        config: the dataset parameters (image size, seed).
        split: one of :data:`SPLITS`.
        label: class index, 0 <= label < config.num_classes.
        index: image number within the class and split.

    Returns:
        The image and its ground truth (see :class:`SyntheticSample`).
    """
    if split not in SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not 0 <= label < config.num_classes:
        raise ValueError(f"class index {label} out of range 0..{config.num_classes - 1}")
    rng = _image_rng(config, split, label, index)
    size = config.image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = background(rng, size, (xx, yy))

    # Geometry in the object frame: body centred at the origin, major axis along u.
    length = rng.uniform(*OBJECT_LENGTH) * size
    a = length / 2
    b = a * rng.uniform(*BODY_ASPECT)
    rotation = rng.uniform(0, 2 * math.pi)
    poly = body_shape(rng, a, b)
    head_r, head_uv = head_on_boundary(rng, poly, a, b, length, HEAD_RADIUS)
    cx, cy, hx, hy = place_object(rng, size, (a, b, rotation, poly), head_uv, head_r)

    # Body: stripes in a grey-brown palette whose hue carries the weak class cue.
    u, v = local_frame(xx, yy, cx, cy, rotation)
    body = body_mask(u, v, a, b, poly)
    hue = (class_hue(label) + rng.normal(0.0, BODY_HUE_SPREAD)) % 360.0
    sat, val = rng.uniform(0.2, 0.45), rng.uniform(0.45, 0.75)
    light = np.array(colorsys.hsv_to_rgb(hue / 360.0, sat, min(1.0, val * 1.25))) * 255.0
    dark = np.array(colorsys.hsv_to_rgb(hue / 360.0, sat, val * 0.75)) * 255.0
    stripe_angle = rng.uniform(0, math.pi)
    period = rng.uniform(4.0, 8.0) * size / 96.0
    phase = (u * math.cos(stripe_angle) + v * math.sin(stripe_angle)) / period + rng.random()
    tri = np.abs(2.0 * (phase - np.floor(phase)) - 1.0)  # triangle wave in [0, 1]
    image[body] = dark + (light - dark) * tri[body][:, None]

    # Head: a disc centred on the body boundary; colour x pattern is the class.
    colour_idx, pattern_idx = head_style(label)
    colour = np.array(HEAD_COLOURS[colour_idx][1], dtype=np.float64)
    ink = functools.partial(head_pattern, HEAD_PATTERNS[pattern_idx])
    head = draw_head(rng, image, (xx, yy), (cx + hx, cy + hy), head_r, colour, ink)

    mask = body | head
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)
    info = {"length": length, "head_radius": head_r, "polygon": poly is not None}
    return SyntheticSample(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        mask=mask,
        head_mask=head,
        box=box,
        label=label,
        info=info,
    )
