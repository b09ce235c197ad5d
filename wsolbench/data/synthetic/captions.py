"""Image–caption pairs of the synthetic world: the training data of wsolbench's own CLIP.

``synthclip`` (:mod:`wsolbench.blocks.synthclip`) is a small CLIP trained contrastively on pairs
made here. The images follow the image model of :mod:`wsolbench.data.synthetic` — the same smooth
cluttered background, a convex body with a small head on its boundary, the same sizes — with a
**broader vocabulary**, so that the benchmark's ten classes are a few of its many combinations:

* head colour: the benchmark's five (same RGB values) and :data:`EXTRA_HEAD_COLOURS`;
* head pattern: the benchmark's four (drawn by the same function) and ``crossed``, ``barred``;
* body shape: ``oval`` (the benchmark's ellipse), ``angular`` (its 5–8-gon), ``round``
  (an ellipse of aspect 0.85–1), ``triangular`` (a 3-gon);
* body texture: ``striped`` (the benchmark's stripes), ``plain``, ``speckled``, ``mottled``;
* body colour: ``brown`` (the benchmark's hue range and palette), ``grey``, ``olive``, ``slate``;
* and a few images with no object at all (:data:`BACKGROUND_CAPTIONS`).

Every attribute is drawn independently and uniformly, so no head colour or pattern goes with a
particular body, and the head's colour × pattern is one of 54 combinations (the benchmark's 10
among them). A caption describes the attributes in words from one of :data:`CAPTION_TEMPLATES` —
never where the object is, how large it is, or which way it points.

**No benchmark image is ever produced.** Each pair ``index`` is rendered from its own random
stream ``default_rng([CAPTION_STREAM, seed, index])``; the benchmark's streams are
``default_rng([seed, split, class, index])`` (four words, the first a small seed), and the
renderer here draws its attributes in another order, so the two never share an image. Pixels are
computed with elementwise NumPy only, as in :mod:`wsolbench.data.synthetic`: a pair is a pure
function of (``seed``, ``index``, ``image_size``, :data:`CAPTION_GENERATOR_VERSION`).
"""

from __future__ import annotations

import colorsys
import functools
import math
import re
from dataclasses import dataclass

import numpy as np

from wsolbench.data.synthetic import style
from wsolbench.data.synthetic.draw import (
    background,
    head_pattern,
    inscribed_polygon,
    local_frame,
    value_noise,
)
from wsolbench.data.synthetic.placement import (
    body_mask,
    draw_head,
    head_on_boundary,
    place_object,
)
from wsolbench.data.synthetic.style import (
    BODY_ASPECT,
    BODY_HUE_RANGE,
    BODY_HUE_SPREAD,
    HEAD_RADIUS,
    OBJECT_LENGTH,
)

#: Bump whenever a pair's pixels or caption for a given (seed, index, size) change.
CAPTION_GENERATOR_VERSION: int = 1

#: First word of every pair's seed sequence: keeps these streams apart from the benchmark's.
CAPTION_STREAM: int = 0x5C11_0001

#: Head colours beyond the benchmark's five: (name, RGB).
EXTRA_HEAD_COLOURS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("orange", (245, 135, 20)),
    ("pink", (245, 125, 190)),
    ("cyan", (30, 205, 215)),
    ("white", (240, 240, 240)),
)
HEAD_COLOURS = style.HEAD_COLOURS + EXTRA_HEAD_COLOURS
HEAD_PATTERNS: tuple[str, ...] = style.HEAD_PATTERNS + ("crossed", "barred")
BODY_SHAPES: tuple[str, ...] = ("oval", "angular", "round", "triangular")
BODY_TEXTURES: tuple[str, ...] = ("striped", "plain", "speckled", "mottled")
#: Body colours: name → (hue range in degrees, saturation range, value range); ``brown`` is the
#: benchmark's body palette.
BODY_COLOURS: dict[str, tuple[tuple[float, float], tuple[float, float], tuple[float, float]]] = {
    "brown": (BODY_HUE_RANGE, (0.2, 0.45), (0.45, 0.75)),
    "grey": ((0.0, 360.0), (0.0, 0.06), (0.4, 0.75)),
    "olive": ((60.0, 85.0), (0.3, 0.5), (0.4, 0.7)),
    "slate": ((200.0, 230.0), (0.2, 0.4), (0.4, 0.7)),
}

#: Caption templates for an object; fields: colour, pattern (the head), shape, texture, body
#: (the body colour). The first is the benchmark's class-name form in CLIP's usual prompt. Six of
#: ten name the head alone: a caption that names the whole body would let the contrastive loss
#: match it by the large body and never look at the small head, the only class cue of the
#: benchmark.
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {colour} {pattern}-headed shape.",
    "a {colour} {pattern}-headed shape.",
    "a picture of a {colour} {pattern}-headed shape.",
    "a photo of the {colour} {pattern}-headed shape.",
    "a shape with a {pattern} {colour} head.",
    "a photo of a shape whose head is {colour} and {pattern}.",
    "a {colour} {pattern}-headed shape with a {shape} body.",
    "a shape with a {pattern} {colour} head and a {texture} body.",
    "a photo of a {colour} {pattern}-headed shape with a {texture} {body} {shape} body.",
    "the head is {colour} and {pattern}, the body is {body}, {texture} and {shape}.",
)
#: Captions of an image with no object (one drawn at random).
BACKGROUND_CAPTIONS: tuple[str, ...] = (
    "a photo of the background.",
    "a photo of an empty background.",
    "an empty textured background with no shape.",
)
#: Background words and template that reproduce those captions' wording for methods that build
#: background prompts as ``template.format(word)`` (TeD-Loc's background target, CLIP-ES's
#: background classes).
BACKGROUND_WORDS: tuple[str, ...] = ("the background", "an empty background")
BACKGROUND_TEMPLATE = "a photo of {}."


@dataclass(frozen=True)
class CaptionedSample:
    """One rendered pair.

    Attributes:
        image: [S, S, 3] uint8 RGB.
        caption: the text.
        attributes: ``{"colour", "pattern", "shape", "texture", "body"}`` as names, or ``{}`` for
            an image with no object.
    """

    image: np.ndarray
    caption: str
    attributes: dict


def _body_colours(rng: np.random.Generator, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(light, dark) RGB in 0..255 of a body colour; ``brown`` draws as the benchmark's body."""
    hue_range, sat_range, val_range = BODY_COLOURS[name]
    hue = rng.uniform(*hue_range)
    if name == "brown":
        hue += rng.normal(0.0, BODY_HUE_SPREAD)
    hue %= 360.0
    sat, val = rng.uniform(*sat_range), rng.uniform(*val_range)
    light = np.array(colorsys.hsv_to_rgb(hue / 360.0, sat, min(1.0, val * 1.25))) * 255.0
    dark = np.array(colorsys.hsv_to_rgb(hue / 360.0, sat, val * 0.75)) * 255.0
    return light, dark


def _texture(
    rng: np.random.Generator, name: str, u: np.ndarray, v: np.ndarray, body: np.ndarray
) -> np.ndarray:
    """Mix weight in [0, 1] between the dark (0) and light (1) body colour on the body.

    Args:
        u, v: [S, S] object-frame coordinates of every pixel.
        body: [S, S] bool, the body's pixels.

    Returns:
        [n] weights at the body's pixels (row-major order). ``striped`` is the benchmark's
        triangle-wave stripes; ``plain`` a constant; ``speckled`` small dark dots on a rotated
        lattice; ``mottled`` smooth blotches of value noise.
    """
    size = body.shape[0]
    u, v = u[body], v[body]
    scale = size / 96.0
    if name == "striped":
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(4.0, 8.0) * scale
        phase = (u * math.cos(angle) + v * math.sin(angle)) / period + rng.random()
        return np.abs(2.0 * (phase - np.floor(phase)) - 1.0)
    if name == "plain":
        return np.full(u.shape, rng.uniform(0.4, 0.8))
    if name == "speckled":
        cell = rng.uniform(3.5, 5.0) * scale
        angle = rng.uniform(0, math.pi)
        c, s = math.cos(angle), math.sin(angle)
        pu, pv = (c * u + s * v) / cell, (-s * u + c * v) / cell
        du, dv = pu - np.floor(pu) - 0.5, pv - np.floor(pv) - 0.5
        return np.where(du * du + dv * dv <= 0.22**2, 0.0, 0.85)
    # mottled: smooth value noise over the image, taken on the body
    noise = value_noise(rng, size, 6, 1)[..., 0][body]
    return np.clip(0.55 + 0.45 * noise, 0.0, 1.0)


def _head_ink(pattern: str, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Ink coverage (bool) of a head pattern at head-frame points; the benchmark's four as there."""
    if pattern == "crossed":
        half = 0.17 * r
        return (np.abs(u) <= half) | (np.abs(v) <= half)
    if pattern == "barred":
        return np.abs(np.abs(v) - 0.42 * r) <= 0.15 * r
    return head_pattern(pattern, u, v, r)


def draw_attributes(rng: np.random.Generator, background_fraction: float) -> dict:
    """Uniform independent attributes of one pair (``{}``: background only)."""
    if rng.random() < background_fraction:
        return {}
    return {
        "colour": HEAD_COLOURS[int(rng.integers(len(HEAD_COLOURS)))][0],
        "pattern": HEAD_PATTERNS[int(rng.integers(len(HEAD_PATTERNS)))],
        "shape": BODY_SHAPES[int(rng.integers(len(BODY_SHAPES)))],
        "texture": BODY_TEXTURES[int(rng.integers(len(BODY_TEXTURES)))],
        "body": tuple(BODY_COLOURS)[int(rng.integers(len(BODY_COLOURS)))],
    }


def render_pair(
    seed: int,
    index: int,
    image_size: int = 96,
    background_fraction: float = 0.04,
    head_radius: tuple[float, float] = HEAD_RADIUS,
) -> CaptionedSample:
    """Render pair ``index`` of the caption set ``seed``; a pure function of its arguments.

    Args:
        seed: the set's seed (>= 0).
        index: the pair's number (>= 0).
        image_size: side of the square image, pixels (>= 32).
        background_fraction: probability that the pair shows no object.
        head_radius: range of the head radius as a fraction of the body length (the benchmark's
            by default; a wider range shows the patterns larger).

    Returns:
        The image, its caption and its attributes.
    """
    if seed < 0 or index < 0 or image_size < 32:
        raise ValueError(
            f"render_pair: seed {seed}, index {index} >= 0 and size {image_size} >= 32"
        )
    rng = np.random.default_rng([CAPTION_STREAM, seed, index])
    attributes = draw_attributes(rng, background_fraction)
    template_draw = rng.random()
    size = image_size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = background(rng, size, (xx, yy))
    if not attributes:
        caption = BACKGROUND_CAPTIONS[int(template_draw * len(BACKGROUND_CAPTIONS))]
        return CaptionedSample(_to_uint8(image), caption, {})

    shape = attributes["shape"]
    length = rng.uniform(*OBJECT_LENGTH) * size
    a = length / 2
    aspect = rng.uniform(0.85, 1.0) if shape == "round" else rng.uniform(*BODY_ASPECT)
    b = a * aspect
    rotation = rng.uniform(0, 2 * math.pi)
    poly = None
    if shape == "angular":
        poly = inscribed_polygon(rng, a, b, int(rng.integers(5, 9)), jitter=0.2)
    elif shape == "triangular":
        poly = inscribed_polygon(rng, a, b, 3, jitter=0.2)
    head_r, head_uv = head_on_boundary(rng, poly, a, b, length, head_radius)
    cx, cy, hx, hy = place_object(rng, size, (a, b, rotation, poly), head_uv, head_r)

    u, v = local_frame(xx, yy, cx, cy, rotation)
    body = body_mask(u, v, a, b, poly)
    light, dark = _body_colours(rng, attributes["body"])
    mix = _texture(rng, attributes["texture"], u, v, body)
    image[body] = dark + (light - dark) * mix[:, None]

    colour = np.array(dict(HEAD_COLOURS)[attributes["colour"]], dtype=np.float64)
    ink = functools.partial(_head_ink, attributes["pattern"])
    draw_head(rng, image, (xx, yy), (cx + hx, cy + hy), head_r, colour, ink)
    template = CAPTION_TEMPLATES[int(template_draw * len(CAPTION_TEMPLATES))]
    return CaptionedSample(_to_uint8(image), _articles(template.format(**attributes)), attributes)


def _articles(text: str) -> str:
    """``a`` before a vowel becomes ``an`` (``an orange ...``, ``an oval body``)."""
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_pairs(
    seed: int,
    start: int,
    count: int,
    image_size: int = 96,
    background_fraction: float = 0.04,
    head_radius: tuple[float, float] = HEAD_RADIUS,
) -> tuple[np.ndarray, list[str], list[dict]]:
    """Pairs ``start .. start + count - 1``: images [count, S, S, 3] uint8, captions, attributes."""
    samples = [
        render_pair(seed, i, image_size, background_fraction, head_radius)
        for i in range(start, start + count)
    ]
    images = np.stack([sample.image for sample in samples])
    return images, [sample.caption for sample in samples], [sample.attributes for sample in samples]
