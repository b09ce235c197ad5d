"""The two union-find sweeps over a quantized map's pixels that score every level, in numba.

They compute, for every level ``v`` of a uint8 map ``u`` (mask ``u >= v``), what
:mod:`wsolbench.metrics.level_sets` needs from OpenCV's contours, from the facts its docstring
lists. The background sweep runs upward through the values (background ``u < v`` grows), the
foreground sweep downward (foreground ``u >= v`` grows); the background sweep hands each level's
holes (first pixel, fill, best IoU) to the foreground sweep. Both are ``O(H W)`` plus, per level,
the number of live components, and the IoU with the ground truth is taken inside the sweep, with
the same integer formula and float64 division as :func:`wsolbench.metrics.box_iou`.

The kernels are compiled on first use and cached on disk (``@njit(cache=True)``, in
``__pycache__`` next to this file, or numba's user-wide cache where that is not writable): the
first call in a fresh checkout compiles for about 10 s, later processes load the compiled code in
about a second (numba's import included). They release the GIL (``nogil=True``), so threads that
count different maps run in parallel. Every kernel a sweep calls lives in this file: numba's disk
cache is invalidated by changes to the caller's own file only.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "best_iou",
    "components_sweep",
    "fill_holes",
    "holes_sweep",
    "no_holes",
    "pixels_by_value",
]


# Union-find layout. ``parent`` (int32, -1 while the pixel is not in the set) is all that a find
# touches, so it stays in the fast caches; a component's record lives in row ``root`` of ``rec``
# (int32 columns below) and is touched only when a pixel joins it or two components merge. A new
# pixel next to a component joins it directly, without a record of its own.
_X0, _Y0, _X1, _Y1, _FIRST, _SIZE, _ACC, _EULER, _BORDER = range(9)  # padded coordinates
_EXTRA = _EULER  # the foreground sweep has no Euler count; it keeps a level's hole fills there
_COLS = 9


@njit(cache=True, nogil=True, inline="always")
def _find(parent, x):
    # Path halving: every visited node skips to its grandparent.
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@njit(cache=True, nogil=True, inline="always")
def _union(parent, rec, a, b):
    """Join the roots a != b (by size); boxes, first pixels and the sums add up. New root."""
    if rec[a, _SIZE] < rec[b, _SIZE]:
        a, b = b, a
    parent[b] = a
    rec[a, _X0] = min(rec[a, _X0], rec[b, _X0])
    rec[a, _Y0] = min(rec[a, _Y0], rec[b, _Y0])
    rec[a, _X1] = max(rec[a, _X1], rec[b, _X1])
    rec[a, _Y1] = max(rec[a, _Y1], rec[b, _Y1])
    rec[a, _FIRST] = min(rec[a, _FIRST], rec[b, _FIRST])
    rec[a, _SIZE] += rec[b, _SIZE]
    rec[a, _ACC] += rec[b, _ACC]
    rec[a, _EULER] += rec[b, _EULER]
    rec[a, _BORDER] |= rec[b, _BORDER]
    return a


@njit(cache=True, nogil=True, inline="always")
def _join(parent, rec, root, p, x, y, acc, euler, border):
    """Pixel p (at padded x, y) joins the component of ``root``, or starts one if root < 0."""
    if root < 0:
        parent[p] = p
        rec[p, _X0] = x
        rec[p, _Y0] = y
        rec[p, _X1] = x
        rec[p, _Y1] = y
        rec[p, _FIRST] = p
        rec[p, _SIZE] = 1
        rec[p, _ACC] = acc
        rec[p, _EULER] = euler
        rec[p, _BORDER] = border
        return p
    parent[p] = root
    rec[root, _X0] = min(rec[root, _X0], x)
    rec[root, _Y0] = min(rec[root, _Y0], y)
    rec[root, _X1] = max(rec[root, _X1], x)
    rec[root, _Y1] = max(rec[root, _Y1], y)
    rec[root, _FIRST] = min(rec[root, _FIRST], p)
    rec[root, _SIZE] += 1
    rec[root, _ACC] += acc
    rec[root, _EULER] += euler
    rec[root, _BORDER] |= border
    return root


@njit(cache=True, nogil=True, inline="always")
def _link(parent, rec, root, nb):
    """Merge the component of the on-pixel nb into the one of ``root`` (which may be -1: none
    yet); returns the root of the result. The caller's pixel is not joined yet when root < 0."""
    other = parent[nb]
    if other == root:  # the common case: nb hangs right under the root already found
        return root
    other = _find(parent, other)
    if root < 0 or other == root:
        return other
    return _union(parent, rec, root, other)


@njit(cache=True, nogil=True, inline="always")
def best_iou(x0, y0, x1, y1, gt):
    """max over GT boxes of the inclusive-pixel IoU of (x0, y0, x1, y1), as metrics.box_iou."""
    best = 0.0
    area_p = (x1 - x0 + 1) * (y1 - y0 + 1)
    for g in range(gt.shape[0]):
        ix0 = max(x0, gt[g, 0])
        iy0 = max(y0, gt[g, 1])
        ix1 = min(x1, gt[g, 2])
        iy1 = min(y1, gt[g, 3])
        inter = max(0, ix1 - ix0 + 1) * max(0, iy1 - iy0 + 1)
        union = area_p + (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1) - inter
        if union > 0:
            iou = inter / union
            if iou > best:
                best = iou
    return best


# A box of area a has IoU at most a / |G| with any GT box G (the intersection is at most a, the
# union at least |G|): a box smaller than best · (smallest GT area) cannot raise the best IoU, and
# its IoU is not computed. The margin keeps a box whose bound ties the best within rounding.
_BOUND_MARGIN = 1.0 + 1e-9


@njit(cache=True, nogil=True)
def smallest_gt_area(gt):
    """The smallest GT box area (inclusive pixels); 0 (no box is ever skipped) when a box is
    empty or inverted."""
    smallest = np.iinfo(np.int64).max
    for g in range(gt.shape[0]):
        area = (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)
        if gt[g, 2] < gt[g, 0] or gt[g, 3] < gt[g, 1]:
            return 0
        smallest = min(smallest, area)
    return smallest if gt.shape[0] else 0


@njit(cache=True, nogil=True, inline="always")
def _may_beat(x0, y0, x1, y1, best, gt_area):
    """Whether the box (x0, y0, x1, y1) could have an IoU above ``best`` (see _BOUND_MARGIN)."""
    return (x1 - x0 + 1) * (y1 - y0 + 1) * _BOUND_MARGIN >= best * gt_area


@njit(cache=True, nogil=True)
def pixels_by_value(u):
    """Pixels sorted by value (stable), as ``y << 32 | p`` with p the index into the grid padded
    by one pixel (side W + 2) and y the padded row (so that no sweep has to divide).

    Returns:
        (order, starts): ``order[starts[v]:starts[v + 1]]`` are the pixels of value v.
    """
    height, width = u.shape
    counts = np.zeros(257, np.int64)
    for y in range(height):
        for x in range(width):
            counts[u[y, x] + 1] += 1
    for v in range(256):
        counts[v + 1] += counts[v]
    order = np.empty(height * width, np.int64)
    fill = counts[:256].copy()
    wp = width + 2
    for y in range(height):
        row = ((y + 1) << 32) | ((y + 1) * wp + 1)
        for x in range(width):
            v = u[y, x]
            order[fill[v]] = row + x
            fill[v] += 1
    return order, counts


@njit(cache=True, nogil=True)
def holes_sweep(height, width, order, starts, present, gt):
    """Upward sweep over the background (4-connected): each level's holes.

    Works on the grid padded by one pixel (index p = (y + 1) * (W + 2) + x + 1); a 2x2 window is
    indexed by its top-left pixel. Padding pixels are never added.

    Returns:
        hole_iou: [256] best IoU of a hole box at level v (mask u >= v), 0 without hole.
        nested: [256] bool, some hole of level v holds a foreground component.
        rec_start: [257] the holes of level v are records rec_start[v] to rec_start[v + 1] - 1.
        rec_first: padded index of each hole's first pixel in raster order.
        rec_fill: twice the area that filling the hole adds to its parent's outer contour.
    """
    wp = width + 2
    n = (height + 2) * wp
    parent = np.full(n, -1, np.int32)
    rec = np.empty((n, _COLS), np.int32)
    windows = np.zeros(n, np.uint8)
    live = np.empty(n, np.int64)  # every root is in there (and entries gone stale since)
    n_live = 0

    gt_area = smallest_gt_area(gt)
    hole_iou = np.zeros(256, np.float64)
    nested = np.zeros(256, np.bool_)
    rec_start = np.zeros(257, np.int64)
    cap = 64
    rec_first = np.empty(cap, np.int64)
    rec_fill = np.empty(cap, np.int64)
    n_rec = 0
    for value in range(256):
        for k in range(starts[value], starts[value + 1]):
            y = order[k] >> 32
            p = order[k] & 0xFFFFFFFF
            x = p - y * wp
            # The pixel's four 2x2 windows (indexed by their top-left pixel).
            c0 = windows[p - wp - 1]
            c1 = windows[p - wp]
            c2 = windows[p - 1]
            c3 = windows[p]
            windows[p - wp - 1] = c0 + 1
            windows[p - wp] = c1 + 1
            windows[p - 1] = c2 + 1
            windows[p] = c3 + 1
            # h(1) - h(0) = h(2) - h(1) = 1/2: windows holding no or one background pixel yet.
            fill = (c0 < 2) + (c1 < 2) + (c2 < 2) + (c3 < 2)
            west = parent[p - 1] >= 0
            north = parent[p - wp] >= 0
            east = parent[p + 1] >= 0
            south = parent[p + wp] >= 0
            # Euler count V - E + F: the pixel, its 4-adjacent pairs, the squares it completes.
            euler = 1 + (c0 == 3) + (c1 == 3) + (c2 == 3) + (c3 == 3)
            euler -= west + north + east + south
            # A window with three background pixels already joins two of the 4-neighbours
            # through its corner: one link covers both.
            root = -1
            if north:
                root = _link(parent, rec, root, p - wp)
            if west and not (north and c0 == 3):
                root = _link(parent, rec, root, p - 1)
            if east and not (north and c1 == 3):
                root = _link(parent, rec, root, p + 1)
            if south and not ((west and c2 == 3) or (east and c3 == 3)):
                root = _link(parent, rec, root, p + wp)
            edge = (y == 1) | (x == 1) | (y == height) | (x == width)
            if _join(parent, rec, root, p, x, y, fill, euler, edge) == p:
                live[n_live] = p
                n_live += 1

        level = value + 1
        if level > 255 or not present[level]:
            continue
        rec_start[level] = n_rec
        best = 0.0
        kept = 0
        for i in range(n_live):
            r = live[i]
            if parent[r] != r or rec[r, _BORDER]:
                continue  # merged away, or joined the outside (for good)
            live[kept] = r
            kept += 1
            # Hole box grown by one pixel, in image coordinates (padded minus 1).
            x0, y0 = rec[r, _X0] - 2, rec[r, _Y0] - 2
            x1, y1 = min(rec[r, _X1] + 1, width - 1), min(rec[r, _Y1] + 1, height - 1)
            if _may_beat(x0, y0, x1, y1, best, gt_area):
                iou = best_iou(x0, y0, x1, y1, gt)
                if iou > best:
                    best = iou
            if rec[r, _EULER] < 1:
                nested[level] = True
            if n_rec == cap:
                cap *= 2
                grown = np.empty(cap, np.int64)
                grown[:n_rec] = rec_first[:n_rec]
                rec_first = grown
                grown = np.empty(cap, np.int64)
                grown[:n_rec] = rec_fill[:n_rec]
                rec_fill = grown
            rec_first[n_rec] = rec[r, _FIRST]
            rec_fill[n_rec] = rec[r, _ACC]
            n_rec += 1
        n_live = kept
        if nested[level]:
            n_rec = rec_start[level]  # the foreground sweep does not read this level's holes
        rec_start[level + 1] = n_rec
        hole_iou[level] = best
    return hole_iou, nested, rec_start, rec_first[:n_rec], rec_fill[:n_rec]


@njit(cache=True, nogil=True)
def components_sweep(height, width, order, starts, present, gt, holes):
    """Downward sweep over the foreground (8-connected): both rules' best IoU at every level.

    Same padded grid as :func:`holes_sweep`; ``holes`` is its output.

    Returns:
        multi: [256] best IoU over all contour boxes of level v (outer and hole contours).
        largest: [256] IoU of the largest contour's box at level v.
        nested: [256] bool, a hole of level v holds a component: its ``largest`` is not scored
            here (:mod:`wsolbench.metrics.level_sets`, fact 7).
    """
    hole_iou, nested, rec_start, rec_first, rec_fill = holes
    wp = width + 2
    n = (height + 2) * wp
    parent = np.full(n, -1, np.int32)
    rec = np.empty((n, _COLS), np.int32)  # _ACC: twice the window sum S(C) of the component
    windows = np.zeros(n, np.uint8)
    live = np.empty(n, np.int64)
    n_live = 0

    gt_area = smallest_gt_area(gt)
    multi = np.zeros(256, np.float64)
    largest = np.zeros(256, np.float64)
    unscored = np.zeros(256, np.bool_)
    for value in range(255, -1, -1):
        for k in range(starts[value], starts[value + 1]):
            y = order[k] >> 32
            p = order[k] & 0xFFFFFFFF
            x = p - y * wp
            c0 = windows[p - wp - 1]
            c1 = windows[p - wp]
            c2 = windows[p - 1]
            c3 = windows[p]
            windows[p - wp - 1] = c0 + 1
            windows[p - wp] = c1 + 1
            windows[p - 1] = c2 + 1
            windows[p] = c3 + 1
            # A window turning 3 on adds 1/2, turning 4 on another 1/2.
            area = (c0 >> 1 == 1) + (c1 >> 1 == 1) + (c2 >> 1 == 1) + (c3 >> 1 == 1)
            root = -1
            north = parent[p - wp] >= 0
            south = parent[p + wp] >= 0
            west = parent[p - 1] >= 0
            east = parent[p + 1] >= 0
            # Two on 4-neighbours that are 8-adjacent (N and E, E and S, ...) are in one
            # component already: one link covers them, except opposite pairs (N and S, W and E)
            # with nothing on between them.
            if north:
                root = _link(parent, rec, root, p - wp)
            elif west:
                root = _link(parent, rec, root, p - 1)
            elif south:
                root = _link(parent, rec, root, p + wp)
            elif east:
                root = _link(parent, rec, root, p + 1)
            if north and south and not (west or east):
                root = _link(parent, rec, root, p + wp)
            if west and east and not (north or south):
                root = _link(parent, rec, root, p + 1)
            # So is a diagonal neighbour next to an on 4-neighbour.
            if not (north or west) and parent[p - wp - 1] >= 0:
                root = _link(parent, rec, root, p - wp - 1)
            if not (north or east) and parent[p - wp + 1] >= 0:
                root = _link(parent, rec, root, p - wp + 1)
            if not (south or west) and parent[p + wp - 1] >= 0:
                root = _link(parent, rec, root, p + wp - 1)
            if not (south or east) and parent[p + wp + 1] >= 0:
                root = _link(parent, rec, root, p + wp + 1)
            if _join(parent, rec, root, p, x, y, area, 0, 0) == p:
                live[n_live] = p
                n_live += 1

        if not present[value]:
            continue
        best = hole_iou[value]
        kept = 0
        for i in range(n_live):
            r = live[i]
            if parent[r] != r:
                continue
            live[kept] = r
            kept += 1
            x0, y0 = rec[r, _X0] - 1, rec[r, _Y0] - 1
            x1, y1 = min(rec[r, _X1], width - 1), min(rec[r, _Y1], height - 1)
            if _may_beat(x0, y0, x1, y1, best, gt_area):
                iou = best_iou(x0, y0, x1, y1, gt)
                if iou > best:
                    best = iou
        n_live = kept
        multi[value] = best

        if nested[value]:
            unscored[value] = True
            continue
        for j in range(rec_start[value], rec_start[value + 1]):
            # The pixel left of a hole's first pixel belongs to the component around the hole.
            rec[_find(parent, rec_first[j] - 1), _EXTRA] += rec_fill[j]
        win = -1
        best_area = -1
        best_first = -1
        for i in range(n_live):
            r = live[i]
            a = rec[r, _ACC] + rec[r, _EXTRA]
            rec[r, _EXTRA] = 0
            # Top-level contours come last-found first: on ties the larger first pixel wins.
            if a > best_area or (a == best_area and rec[r, _FIRST] > best_first):
                best_area = a
                best_first = rec[r, _FIRST]
                win = r
        largest[value] = best_iou(
            rec[win, _X0] - 1,
            rec[win, _Y0] - 1,
            min(rec[win, _X1], width - 1),
            min(rec[win, _Y1], height - 1),
            gt,
        )
    return multi, largest, unscored


@njit(cache=True, nogil=True)
def fill_holes(u):
    """The map with every hole filled: [H, W] uint8, each pixel's smallest possible highest value
    along a 4-path from it to the image border (both ends included).

    A pixel is background outside every outer contour of level v (4-connected to the zero padding
    through values below v) exactly when this value is below v, so the level sets of the result
    (``filled >= v``) are the regions the outer contours of ``u >= v`` enclose, one 8-connected
    component per top-level contour, without holes. Priority flood from the border with a bucket
    per value: O(H W).
    """
    height, width = u.shape
    n = height * width
    filled = np.empty(n, np.uint8)
    seen = np.zeros(n, np.bool_)
    head = np.full(256, -1, np.int64)  # a stack of pixels per value
    below = np.empty(n, np.int64)
    for y in range(height):
        for x in range(width):
            if y == 0 or x == 0 or y == height - 1 or x == width - 1:
                p = y * width + x
                value = u[y, x]
                filled[p] = value
                seen[p] = True
                below[p] = head[value]
                head[value] = p
    for level in range(256):
        while head[level] >= 0:
            p = head[level]
            head[level] = below[p]
            y, x = p // width, p % width
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                qy, qx = y + dy, x + dx
                if qy < 0 or qx < 0 or qy >= height or qx >= width:
                    continue
                q = qy * width + qx
                if seen[q]:
                    continue
                seen[q] = True
                value = max(level, u[qy, qx])  # popped in increasing order: final
                filled[q] = value
                below[q] = head[value]
                head[value] = q
    return filled.reshape(height, width)


def no_holes() -> tuple:
    """What :func:`holes_sweep` returns for a map none of whose levels has a hole."""
    empty = np.empty(0, np.int64)
    return np.zeros(256), np.zeros(256, np.bool_), np.zeros(257, np.int64), empty, empty
