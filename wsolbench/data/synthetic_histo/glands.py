"""Glands of the histology world: the objects, whose shape and arrangement are the class.

As in colon histology (GlaS's grades), the two classes differ in how glands look and lie:

* **benign**: round or oval glands of similar size, aligned, spaced on a loose lattice, each with
  one central open lumen and a single row of small nuclei along its outer (basal) edge;
* **malignant**: glands of very different sizes and irregular outlines, crowded at random places
  so that neighbours touch and fuse, with several small lumens (cribriform) or a slit lumen, and
  larger nuclei scattered through the whole epithelium.

A gland is its epithelium and its lumen; the ground-truth mask is their union over all glands.
Sizes are for 96-px images and scale with the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from wsolbench.data.synthetic_histo.raster import discs, stamp_star, star_vertices
from wsolbench.data.synthetic_histo.tissue import Layers

#: Outline vertices per gland.
VERTICES = 32
BENIGN, MALIGNANT = 0, 1
#: The outline vertices' polar angles, 2πi / VERTICES (computed once: the same floats).
_ANGLES = tuple(2 * math.pi * i / VERTICES for i in range(VERTICES))


@dataclass
class Gland:
    """One gland's geometry, image pixels.

    Attributes:
        centre: (x, y).
        outline: [K, 2] vertices of the outer edge, in angular order around ``centre``.
        lumens: each (centre, vertices) of a lumen inside the gland.
        nuclei: each (x, y, radius, elongation angle) of an epithelial nucleus.
    """

    centre: tuple[float, float]
    outline: np.ndarray
    lumens: list[tuple[tuple[float, float], np.ndarray]] = field(default_factory=list)
    nuclei: list[tuple[float, float, float, float]] = field(default_factory=list)


def _outline_radii(rng: np.random.Generator, radius: float, irregularity: float) -> list[float]:
    """Radii of :data:`VERTICES` outline vertices: ``radius`` times a smooth random wobble of
    relative amplitude ``irregularity`` (harmonics 2 to 5)."""
    (a2, p2), (a3, p3), (a4, p4), (a5, p5) = [
        (rng.normal(0.0, irregularity / math.sqrt(k)), rng.uniform(0, 2 * math.pi))
        for k in range(2, 6)
    ]
    radii = []
    for t in _ANGLES:  # summed left to right, as sum() over the harmonics did
        wobble = (
            a2 * math.cos(2 * t + p2)
            + a3 * math.cos(3 * t + p3)
            + a4 * math.cos(4 * t + p4)
            + a5 * math.cos(5 * t + p5)
        )
        radii.append(radius * max(0.45, 1.0 + wobble))
    return radii


def _basal_nuclei(gland: Gland, spacing: float, radius: float, inset: float) -> None:
    """A single row of round nuclei along the outline, ``inset`` of the way from the centre."""
    cx, cy = gland.centre
    points = [(cx + inset * (x - cx), cy + inset * (y - cy)) for x, y in gland.outline]
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1], strict=True):
        steps = max(1, round(math.hypot(x1 - x0, y1 - y0) / spacing))
        for s in range(steps):
            f = s / steps
            gland.nuclei.append((x0 + f * (x1 - x0), y0 + f * (y1 - y0), radius, 0.0))


def benign_glands(rng: np.random.Generator, size: int) -> list[Gland]:
    """Aligned round-to-oval glands of similar size on a loose lattice, one central lumen each."""
    scale = size / 96.0
    spacing = rng.uniform(30.0, 38.0) * scale
    radius = rng.uniform(0.33, 0.40) * spacing
    turn = rng.uniform(0, math.pi)  # the lattice's and the glands' common orientation
    offset = rng.uniform(0, spacing, size=2)
    c, s = math.cos(turn), math.sin(turn)
    glands = []
    reach = int(size / spacing) + 2
    for i in range(-reach, reach + 1):
        for j in range(-reach, reach + 1):
            row_shift = 0.5 * spacing * (j % 2)  # a staggered lattice, as crypts lie
            u = i * spacing + row_shift + offset[0] + rng.normal(0.0, 0.06 * spacing)
            v = j * spacing * 0.9 + offset[1] + rng.normal(0.0, 0.06 * spacing)
            x, y = size / 2 + c * u - s * v, size / 2 + s * u + c * v
            if not (-0.4 * radius <= x <= size + 0.4 * radius):
                continue
            if not (-0.4 * radius <= y <= size + 0.4 * radius):
                continue
            r = radius * rng.uniform(0.92, 1.08)
            aspect = rng.uniform(0.7, 0.95)
            angle = turn + rng.normal(0.0, 0.15)
            outline = star_vertices(x, y, _outline_radii(rng, r, 0.03), angle, aspect)
            lumen_r = rng.uniform(0.42, 0.55)
            lumen = star_vertices(x, y, _outline_radii(rng, r * lumen_r, 0.05), angle, aspect)
            gland = Gland((x, y), outline, lumens=[((x, y), lumen)])
            _basal_nuclei(gland, spacing=3.0 * scale, radius=0.95 * scale, inset=0.82)
            glands.append(gland)
    return glands


def malignant_glands(rng: np.random.Generator, size: int) -> list[Gland]:
    """Irregular glands of very different sizes, crowded and fused, cribriform or slit lumens,
    large nuclei scattered through the epithelium."""
    scale = size / 96.0
    glands = []
    for _ in range(int(rng.integers(6, 11))):
        x, y = rng.uniform(0.05, 0.95) * size, rng.uniform(0.05, 0.95) * size
        r = rng.uniform(7.0, 19.0) * scale
        aspect, angle = rng.uniform(0.5, 1.0), rng.uniform(0, 2 * math.pi)
        outline = star_vertices(
            x, y, _outline_radii(rng, r, rng.uniform(0.12, 0.25)), angle, aspect
        )
        gland = Gland((x, y), outline)
        if rng.random() < 0.5:  # cribriform: several small round lumens
            for _ in range(int(rng.integers(2, 5))):
                t, d = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.5) * r
                lx = x + d * math.cos(t)
                ly = y + d * aspect * math.sin(t)
                lumen_r = rng.uniform(0.12, 0.2) * r
                gland.lumens.append(((lx, ly), star_vertices(lx, ly, [lumen_r] * 12, 0.0, 1.0)))
        else:  # a slit: a thin irregular lumen along the gland
            radii = _outline_radii(rng, 0.5 * r, 0.2)
            gland.lumens.append(((x, y), star_vertices(x, y, radii, angle, 0.25 * aspect)))
        for _ in range(int(rng.integers(10, 18) * (r / (10.0 * scale)) ** 2) + 4):
            t, d = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.uniform(0.05, 0.9))
            gland.nuclei.append(
                (
                    x + d * math.cos(t + angle),
                    y + d * aspect * math.sin(t + angle),
                    rng.uniform(1.2, 1.8) * scale,
                    rng.uniform(0, math.pi),
                )
            )
        glands.append(gland)
    return glands


def draw_glands(layers: Layers, glands: list[Gland]) -> np.ndarray:
    """Paint the glands onto ``layers`` (epithelium, then lumens, then nuclei, gland by gland);
    returns the [S, S] bool ground-truth mask, the union of their outlines."""
    size = layers.eosin.shape[0]
    mask = np.zeros((size, size), dtype=bool)
    for gland in glands:
        body = stamp_star(mask, gland.centre, gland.outline)
        if body is None:
            continue
        (rows, cols), inside = body
        mask[rows, cols] |= inside
        layers.paint(body, e=0.3, h=0.22, r=0.0)  # epithelial cytoplasm: more purple than stroma
        for centre, vertices in gland.lumens:
            lumen = stamp_star(mask, centre, vertices)
            if lumen is not None:
                layers.paint(lumen, e=0.06, h=0.0)
        if gland.nuclei:  # one batch: every nucleus paints the same value
            ellipses = [(x, y, r, 0.8 * r, angle) for x, y, r, angle in gland.nuclei]
            rows, cols = discs(size, ellipses)
            keep = mask[rows, cols]  # epithelial nuclei: inside the glands drawn so far only
            layers.paint_pixels((rows[keep], cols[keep]), h=0.9)
    return mask
