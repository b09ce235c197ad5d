"""The histology world's stain and stroma: what every image shows around and under the glands.

An image is painted as stain densities, not colours: an eosin layer ``e`` (pink: stroma,
cytoplasm) and a haematoxylin layer ``h`` (purple: nuclei), each in [0, 1] per pixel, plus a
red-cell layer for the blood in vessels. :func:`to_rgb` mixes them over white with this image's
own stain colours, so the stain varies between images as it does between slides and carries no
class information.

Hard negatives — structures that share a gland's parts but are no gland, and are never in the
mask — are drawn here, with the same distribution in both classes: **vessels** (a round lumen with
a thin wall, flat nuclei and red cells), **fat and empty spaces** (white holes without
epithelium: a lumen alone) and **lymphoid aggregates** (dense clusters of small dark nuclei: the
crowding of malignant epithelium without a gland).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsolbench.data.synthetic.draw import value_noise
from wsolbench.data.synthetic_histo.raster import disc, discs

#: Stain colours (RGB at full density): their per-image jitter models stain variation.
EOSIN_RGB = (225.0, 95.0, 160.0)
HAEMATOXYLIN_RGB = (70.0, 35.0, 120.0)
RED_CELL_RGB = (205.0, 45.0, 60.0)
STAIN_JITTER = 18.0
#: Hard negatives per image: 0..MAX_HARD_NEGATIVES, both classes alike.
MAX_HARD_NEGATIVES = 3
HARD_NEGATIVES = ("vessel", "space", "lymphoid")


@dataclass
class Layers:
    """Stain densities of one image, each [S, S] float64 in [0, 1]: ``eosin``, ``haematoxylin``,
    ``red`` (red cells)."""

    eosin: np.ndarray
    haematoxylin: np.ndarray
    red: np.ndarray

    def paint(
        self, where, e: float | None = None, h: float | None = None, r: float | None = None
    ) -> None:
        """Set the densities given (None: leave that layer) inside ``where``: a (rows, cols)
        window and a bool mask in it."""
        (rows, cols), inside = where
        for layer, value in ((self.eosin, e), (self.haematoxylin, h), (self.red, r)):
            if value is not None:
                layer[rows, cols][inside] = value

    def paint_pixels(
        self,
        pixels: tuple[np.ndarray, np.ndarray],
        e: float | None = None,
        h: float | None = None,
        r: float | None = None,
    ) -> None:
        """As :meth:`paint`, at ``pixels``: [M] row and [M] column indices (:func:`discs`)."""
        for layer, value in ((self.eosin, e), (self.haematoxylin, h), (self.red, r)):
            if value is not None:
                layer[pixels] = value


def stroma(rng: np.random.Generator, size: int) -> Layers:
    """Stroma filling the image: eosin with smooth variation and wavy fibres, a few spindle
    nuclei. Sizes scale with ``size`` (numbers for 96 px)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(3.0, 5.0) * size / 96.0
    along = xx * math.cos(angle) + yy * math.sin(angle)
    wave = along / period + 1.5 * value_noise(rng, size, 5, 1)[:, :, 0]
    fibre = np.abs(2.0 * (wave - np.floor(wave)) - 1.0)  # triangle wave in [0, 1]
    eosin = 0.45 + 0.08 * value_noise(rng, size, 4, 1)[:, :, 0] + 0.12 * fibre
    layers = Layers(
        eosin=np.clip(eosin, 0.0, 1.0),
        haematoxylin=np.zeros((size, size)),
        red=np.zeros((size, size)),
    )
    scale = size / 96.0
    nuclei = []  # fibroblast nuclei: thin, along the fibres; (x, y, rx, ry, angle) each
    for _ in range(int(rng.integers(12, 24))):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        rx = rng.uniform(1.6, 2.4) * scale
        nuclei.append((x, y, rx, 0.7 * scale, angle + math.pi / 2 + rng.normal(0.0, 0.3)))
    layers.paint_pixels(discs(size, nuclei), h=0.7)
    return layers


def hard_negative(rng: np.random.Generator, layers: Layers, kind: str) -> None:
    """Draw one hard negative of ``kind`` (one of :data:`HARD_NEGATIVES`) at a random place."""
    size = layers.eosin.shape[0]
    scale = size / 96.0
    cx, cy = rng.uniform(0, size), rng.uniform(0, size)
    if kind == "vessel":
        r = rng.uniform(3.0, 7.0) * scale
        aspect, angle = rng.uniform(0.6, 1.0), rng.uniform(0, math.pi)
        wall = disc(size, cx, cy, r + 1.0 * scale, (r + 1.0 * scale) * aspect, angle)
        lumen = disc(size, cx, cy, r, r * aspect, angle)
        if wall is None or lumen is None:
            return
        layers.paint(wall, e=0.75, h=0.0)
        layers.paint(lumen, e=0.05, h=0.0)
        cells = []  # red cells: (x, y, rx, ry, angle) each
        for _ in range(int(rng.integers(2, 9))):
            t, d = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.7) * r
            x, y = cx + d * math.cos(t), cy + d * aspect * math.sin(t)
            cells.append((x, y, 1.2 * scale, 1.2 * scale, 0.0))
        layers.paint_pixels(discs(size, cells), e=0.0, r=0.9)
        nuclei = []  # flat endothelial nuclei on the wall
        for _ in range(int(rng.integers(1, 4))):
            t = rng.uniform(0, 2 * math.pi)
            x = cx + (r + 0.5) * (
                math.cos(angle) * math.cos(t) - aspect * math.sin(angle) * math.sin(t)
            )
            y = cy + (r + 0.5) * (
                math.sin(angle) * math.cos(t) + aspect * math.cos(angle) * math.sin(t)
            )
            nuclei.append((x, y, 1.8 * scale, 0.7 * scale, t + math.pi / 2 + angle))
        layers.paint_pixels(discs(size, nuclei), h=0.8)
    elif kind == "space":
        r = rng.uniform(4.0, 9.0) * scale
        rim = disc(size, cx, cy, r + 0.8 * scale, (r + 0.8 * scale) * 0.9, 0.0)
        hole = disc(size, cx, cy, r, r * 0.9, 0.0)
        if rim is None or hole is None:
            return
        layers.paint(rim, e=0.7, h=0.0)
        layers.paint(hole, e=0.03, h=0.0, r=0.0)
    else:  # lymphoid aggregate
        r = rng.uniform(5.0, 10.0) * scale
        cells = []
        for _ in range(int(rng.integers(25, 45))):
            t, d = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.random())
            cells.append(
                (cx + d * math.cos(t), cy + d * math.sin(t), 1.1 * scale, 1.1 * scale, 0.0)
            )
        layers.paint_pixels(discs(size, cells), h=0.95)


def to_rgb(rng: np.random.Generator, layers: Layers) -> np.ndarray:
    """[S, S, 3] uint8 RGB: the densities mixed over white with this image's stain colours."""
    white = np.full(3, 250.0) - rng.uniform(0.0, 12.0)
    colours = [
        np.array(rgb) + rng.normal(0.0, STAIN_JITTER, size=3)
        for rgb in (EOSIN_RGB, HAEMATOXYLIN_RGB, RED_CELL_RGB)
    ]
    image = np.broadcast_to(white, layers.eosin.shape + (3,)).copy()
    # Haematoxylin over eosin: where a nucleus is, it hides the pink below it.
    eosin = layers.eosin * (1.0 - layers.haematoxylin) * (1.0 - layers.red)
    for density, colour in zip((eosin, layers.haematoxylin, layers.red), colours, strict=True):
        image += density[:, :, None] * (colour - white)
    grain = 4.0 * rng.standard_normal(image.shape[:2])[:, :, None]  # scanner noise
    return np.clip(np.rint(image + grain), 0, 255).astype(np.uint8)
