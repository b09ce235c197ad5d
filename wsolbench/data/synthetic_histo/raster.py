"""Rasterizing the histology world's shapes: star-shaped polygons and discs, drawn in a window.

Elementwise NumPy arithmetic only, as in :mod:`wsolbench.data.synthetic.draw`: vertices and
rotations are computed with Python's scalar math, pixels are tested with products, sums and
comparisons (no per-pixel transcendental function whose SIMD path could differ between machines),
so a random stream draws byte-identical images everywhere. Each shape is tested only inside its
bounding window.

Speed without changing a pixel: a window's pixel coordinates are an [h, 1] column of rows and a
[1, w] row of columns (``np.arange``) broadcast against each other, never an ``np.mgrid``; every
pixel still goes through the same float64 operations in the same order, so every test gives the
same boolean. A polygon tests all its K wedges at once ([K, h, w]); the many small discs of one
layer (a gland's nuclei, a lymphoid aggregate) are tested in one batch (:func:`discs`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np


def window(cx: float, cy: float, reach: float, size: int) -> tuple[slice, slice] | None:
    """The rows and columns of a ``size`` × ``size`` image within ``reach`` of (cx, cy), or None
    when none is."""
    x0, x1 = max(0, math.floor(cx - reach)), min(size, math.ceil(cx + reach) + 1)
    y0, y1 = max(0, math.floor(cy - reach)), min(size, math.ceil(cy + reach) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


@functools.cache
def _unit_circle(count: int) -> tuple[tuple[float, float], ...]:
    """(cos t, sin t) at the polar angles t = 2πk/count, k < count: computed once per count (the
    same floats as computing them per polygon)."""
    return tuple(
        (math.cos(t), math.sin(t)) for t in (2 * math.pi * k / count for k in range(count))
    )


def star_vertices(
    cx: float, cy: float, radii: list[float], angle: float, aspect: float
) -> np.ndarray:
    """[K, 2] image-frame vertices of a star-shaped polygon around (cx, cy): vertex k at polar
    angle 2πk/K and distance ``radii[k]`` in a frame squeezed by ``aspect`` across its major axis
    and turned by ``angle``; counter-clockwise in image coordinates (y down)."""
    c, s = math.cos(angle), math.sin(angle)
    points = []
    for r, (cos_t, sin_t) in zip(radii, _unit_circle(len(radii)), strict=True):
        u, v = r * cos_t, r * aspect * sin_t
        points.append((cx + c * u - s * v, cy + s * u + c * v))
    return np.array(points, dtype=np.float64)


def inside_star(
    xs: np.ndarray, ys: np.ndarray, centre: tuple[float, float], vertices: np.ndarray
) -> np.ndarray:
    """[h, w] bool mask of the pixels (xs[j], ys[i]) inside the polygon ``vertices`` ([K, 2], in
    angular order around ``centre``, every wedge narrower than π): the union of the triangles
    (centre, v_k, v_k+1), each the intersection of three half-planes. ``xs`` [w] and ``ys`` [h]
    are float64 pixel columns and rows.

    Each half-plane test ``turn · (P − Q) ≥ 0`` (``turn`` = ±1, the wedge's orientation) is
    evaluated as ``turn · P ≥ turn · Q``: negation is exact, and for finite doubles P − Q rounds
    to ≥ 0 exactly when P ≥ Q (gradual underflow: it is 0 only when P = Q), so the booleans are
    those of the difference. P depends on the row only and Q on the column only (or the other way
    round), so each is a [K, h, 1] or [K, 1, w] product: the same float64 products as per pixel,
    computed once per row or column, and only the comparisons are [K, h, w].
    """
    cx, cy = centre
    px = (xs - cx)[None, None, :]  # [1, 1, w]
    py = (ys - cy)[None, :, None]  # [1, h, 1]
    a = vertices - np.array(centre)  # [K, 2]: v_k, relative to the centre
    b = np.roll(a, -1, axis=0)  # v_k+1
    ax, ay, bx, by = (column[:, None, None] for column in (a[:, 0], a[:, 1], b[:, 0], b[:, 1]))
    turn = np.where(ax * by - ay * bx >= 0, 1.0, -1.0)  # [K, 1, 1]
    inside = turn * (ax * py) >= turn * (ay * px)  # left of centre→v_k
    inside &= turn * (px * by) >= turn * (py * bx)  # right of centre→v_k+1
    inside &= turn * ((bx - ax) * (py - ay)) >= turn * ((by - ay) * (px - ax))  # v_k→v_k+1
    return inside.any(axis=0)


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
    xs = np.arange(cols.start, cols.stop, dtype=np.float64)
    ys = np.arange(rows.start, rows.stop, dtype=np.float64)
    return rows_cols, inside_star(xs, ys, centre, vertices)


def disc(
    size: int, cx: float, cy: float, rx: float, ry: float, angle: float = 0.0
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """An ellipse of semi-axes (rx, ry) turned by ``angle`` around (cx, cy): its window in a
    ``size``-px image and the [h, w] bool mask there, or None when it lies outside the image."""
    rows_cols = window(cx, cy, max(rx, ry) + 1.0, size)
    if rows_cols is None:
        return None
    rows, cols = rows_cols
    dx = np.arange(cols.start, cols.stop, dtype=np.float64) - cx  # [w]
    dy = (np.arange(rows.start, rows.stop, dtype=np.float64) - cy)[:, None]  # [h, 1]
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # [h, w]
    return rows_cols, (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def discs(
    size: int, ellipses: Sequence[tuple[float, float, float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """The pixels of a ``size``-px image inside any of N ellipses, each ``(cx, cy, rx, ry,
    angle)`` as :func:`disc` draws it: [M] int row and [M] int column indices (a pixel may
    repeat; none when N is 0).

    One batch instead of N calls, for shapes painted with one value, where order does not matter.
    Every ellipse is tested on a grid of the largest window's side, placed where its own window
    starts; a pixel counts only inside the ellipse's own (clipped) window, so each ellipse covers
    exactly the pixels :func:`disc` gives it, through the same float64 arithmetic.
    """
    if not ellipses:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    cx, cy, rx, ry = np.array([e[:4] for e in ellipses], dtype=np.float64).T[:, :, None]  # [N, 1]
    c = np.array([math.cos(e[4]) for e in ellipses])[:, None, None]  # scalar math, as in disc
    s = np.array([math.sin(e[4]) for e in ellipses])[:, None, None]
    reach = np.maximum(rx, ry) + 1.0
    # :func:`window`'s bounds, unclipped (x0, y0: where the grid starts) and clipped.
    x0, x1 = np.floor(cx - reach).astype(np.intp), np.ceil(cx + reach).astype(np.intp) + 1
    y0, y1 = np.floor(cy - reach).astype(np.intp), np.ceil(cy + reach).astype(np.intp) + 1
    side = int(max((x1 - x0).max(), (y1 - y0).max()))
    cols = x0 + np.arange(side)  # [N, side]
    rows = y0 + np.arange(side)
    dx = (cols.astype(np.float64) - cx)[:, None, :]  # [N, 1, side]
    dy = (rows.astype(np.float64) - cy)[:, :, None]  # [N, side, 1]
    u, v = c * dx + s * dy, -s * dx + c * dy  # [N, side, side]
    inside = (u / rx[:, :, None]) ** 2 + (v / ry[:, :, None]) ** 2 <= 1.0
    in_col = (cols >= np.maximum(x0, 0)) & (cols < np.minimum(x1, size))
    in_row = (rows >= np.maximum(y0, 0)) & (rows < np.minimum(y1, size))
    inside &= in_row[:, :, None] & in_col[:, None, :]
    n, i, j = np.nonzero(inside)
    return rows[n, i], cols[n, j]
