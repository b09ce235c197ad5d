"""The pixels of a quantized map in the order the sweeps take them, and the map with its holes
filled, in numba (:mod:`wsolbench.metrics.sweeps` consumes both).

Pixels are given as ``y << 32 | p``: p the index into the grid padded by one pixel (side W + 2),
y the padded row, so that no sweep has to divide. Compiled on first use and cached on disk, as
the sweeps are.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["flood", "pixels_by_value"]


@njit(cache=True, nogil=True)
def pixels_by_value(u, counts):
    """The pixels sorted by value (stable), as ``y << 32 | p``.

    Args:
        u: [H, W] uint8.
        counts: [256] int64, how many pixels of ``u`` hold each value (:func:`flood` counts them
            for both maps it sorts, the map and its filled map: no pass of its own).

    Returns:
        (order, starts): ``order[starts[v]:starts[v + 1]]`` are the pixels of value v.
    """
    height, width = u.shape
    starts = np.zeros(257, np.int64)
    for v in range(256):
        starts[v + 1] = starts[v] + counts[v]
    order = np.empty(height * width, np.int64)
    fill = starts[:256].copy()
    wp = width + 2
    for y in range(height):
        row = ((y + 1) << 32) | ((y + 1) * wp + 1)
        for x in range(width):
            v = u[y, x]
            order[fill[v]] = row + x
            fill[v] += 1
    return order, starts


_ROW = 1 << 32  # one padded row down, in the y << 32 | p form (p moves by W + 2 with it)


@njit(cache=True, nogil=True)
def flood(u):
    """The map with every hole filled, and the pixels ever in a hole.

    The filled value of a pixel is the smallest possible highest value along a 4-path from it to
    the image border (both ends included). A pixel is background outside every outer contour of
    level v (4-connected to the zero padding through values below v) exactly when this value is
    below v, so the level sets ``filled >= v`` are the regions the outer contours of ``u >= v``
    enclose, one 8-connected component per top-level contour, without holes; and a pixel is in a
    hole of some level exactly when its filled value is above its own (the levels
    ``u < v <= filled``). Priority flood from the border with a stack per value, on the grid
    padded by one pixel, O(H W).

    Args:
        u: [H, W] uint8.

    Returns:
        filled: [H + 2, W + 2] uint8, the filled map padded by one pixel (of value 0).
        hole_order, hole_starts: the pixels with ``filled > u`` by their own value ``u``, as
            :func:`pixels_by_value` would give them.
        counts, filled_counts: [256] int64, how many pixels of ``u`` and of the filled map
            (padding left out) hold each value.
    """
    height, width = u.shape
    wp = width + 2
    n = (height + 2) * wp
    filled = np.zeros(n, np.uint8)
    seen = np.ones(n, np.bool_)  # the padding counts as seen: it is never flooded
    # A stack of pixels per value, in the y << 32 | p form, linked through ``below`` (by p).
    head = np.full(256, -1, np.int64)
    below = np.empty(n, np.int64)
    counts = np.zeros(256, np.int64)
    for y in range(height):
        row = ((y + 1) << 32) | ((y + 1) * wp + 1)
        edge_row = y == 0 or y == height - 1
        for x in range(width):
            p = (y + 1) * wp + x + 1
            v = u[y, x]
            counts[v] += 1
            filled[p] = v
            if edge_row or x == 0 or x == width - 1:
                below[p] = head[v]
                head[v] = row + x
            else:
                seen[p] = False
    holes = np.empty(height * width, np.int64)
    hole_counts = np.zeros(257, np.int64)
    raised_to = np.zeros(256, np.int64)
    n_holes = 0
    for level in range(256):
        while head[level] >= 0:
            packed = head[level]
            p = packed & 0xFFFFFFFF
            head[level] = below[p]
            for step in (-wp - _ROW, -1, 1, wp + _ROW):  # the 4-neighbours, packed
                neighbour = packed + step
                q = neighbour & 0xFFFFFFFF
                if seen[q]:
                    continue
                seen[q] = True
                own = filled[q]
                if own < level:  # popped in increasing order: the value is final
                    filled[q] = level
                    holes[n_holes] = neighbour
                    n_holes += 1
                    hole_counts[own + 1] += 1
                    raised_to[level] += 1
                v = filled[q]
                below[q] = head[v]
                head[v] = neighbour
    filled_counts = counts - hole_counts[1:] + raised_to
    for v in range(256):
        hole_counts[v + 1] += hole_counts[v]
    hole_order = np.empty(n_holes, np.int64)
    fill = hole_counts[:256].copy()
    for i in range(n_holes):  # by own value; the hole pixels' own values are still in u
        packed = holes[i]
        y = packed >> 32
        v = u[y - 1, (packed & 0xFFFFFFFF) - y * wp - 1]
        hole_order[fill[v]] = packed
        fill[v] += 1
    return filled.reshape(height + 2, width + 2), hole_order, hole_counts, counts, filled_counts
