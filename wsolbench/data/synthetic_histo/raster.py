"""Rasterizing the histology world's shapes: star-shaped polygons and discs, drawn in a window.

Elementwise NumPy arithmetic only, as in :mod:`wsolbench.data.synthetic.draw`: vertices are
computed with Python's scalar math, pixels are tested with products and sums (no per-pixel
transcendental function whose SIMD path could differ between machines), so a random stream draws
byte-identical images everywhere. Each shape is tested only inside its bounding window.
"""

from __future__ import annotations

import math

import numpy as np


def window(cx: float, cy: float, reach: float, size: int) -> tuple[slice, slice] | None:
    """The rows and columns of a ``size`` × ``size`` image within ``reach`` of (cx, cy), or None
    when none is."""
    x0, x1 = max(0, math.floor(cx - reach)), min(size, math.ceil(cx + reach) + 1)
    y0, y1 = max(0, math.floor(cy - reach)), min(size, math.ceil(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def star_vertices(
    cx: float, cy: float, radii: list[float], angle: float, aspect: float
) -> np.ndarray:
    """[K, 2] image-frame vertices of a star-shaped polygon around (cx, cy): vertex k at polar
    angle 2πk/K and distance ``radii[k]`` in a frame squeezed by ``aspect`` across its major axis
    and turned by ``angle``; counter-clockwise in image coordinates (y down)."""
    c, s = math.cos(angle), math.sin(angle)
    count = len(radii)
    points = []
    for k, r in enumerate(radii):
        t = 2 * math.pi * k / count
        u, v = r * math.cos(t), r * aspect * math.sin(t)
        points.append((cx + c * u - s * v, cy + s * u + c * v))
    return np.array(points, dtype=np.float64)


def inside_star(
    xx: np.ndarray, yy: np.ndarray, centre: tuple[float, float], vertices: np.ndarray
) -> np.ndarray:
    """Bool mask of the points (xx, yy) inside the polygon ``vertices`` ([K, 2], in angular order
    around ``centre``, every wedge narrower than π): the union of the triangles (centre, v_k,
    v_k+1), each the intersection of three half-planes."""
    cx, cy = centre
    px, py = xx - cx, yy - cy
    rel = vertices - np.array(centre)
    inside = np.zeros(xx.shape, dtype=bool)
    for (ax, ay), (bx, by) in zip(rel, np.roll(rel, -1, axis=0), strict=True):
        turn = 1.0 if ax * by - ay * bx >= 0 else -1.0  # the wedge's orientation
        wedge = (turn * (ax * py - ay * px) >= 0) & (turn * (px * by - py * bx) >= 0)
        edge = turn * ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) >= 0
        inside |= wedge & edge
    return inside


def stamp_star(
    canvas: np.ndarray, centre: tuple[float, float], vertices: np.ndarray
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Where a star polygon covers a [S, S] canvas: its window and the [h, w] bool mask there, or
    None when it lies outside the image."""
    size = canvas.shape[0]
    reach = float(np.max(np.hypot(*(vertices - np.array(centre)).T))) + 1.0
    rows_cols = window(centre[0], centre[1], reach, size)
    if rows_cols is None:
        return None
    rows, cols = rows_cols
    yy, xx = np.mgrid[rows, cols].astype(np.float64)
    return rows_cols, inside_star(xx, yy, centre, vertices)


def disc(
    size: int, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """An ellipse of semi-axes (rx, ry) turned by ``angle`` around (cx, cy): its window in a
    ``size``-px image and the bool mask there, or None when it lies outside the image."""
    rows_cols = window(cx, cy, max(rx, ry) + 1.0, size)
    if rows_cols is None:
        return None
    rows, cols = rows_cols
    yy, xx = np.mgrid[rows, cols].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = xx - cx, yy - cy
    u, v = c * dx + s * dy, -s * dx + c * dy
    return rows_cols, (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
