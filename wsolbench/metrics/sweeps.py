"""The union-find sweeps over a quantized map's pixels that score every level, in numba.

They compute, for every level ``v`` of a uint8 map ``u`` (mask ``u >= v``), what
:mod:`wsolbench.metrics.level_sets` needs from OpenCV's contours, from the facts its docstring
lists:

- :func:`components_sweep` runs downward through the values (the foreground ``u >= v`` grows,
  8-connected) and scores each level's component boxes, and on the filled map its largest
  contour.
- :func:`holes_sweep` runs upward through the values of the hole pixels only (a hole grows,
  4-connected, until it reaches the border) and scores each level's hole boxes; it also says at
  which levels a component inside a hole could score better than everything else found there.

Each is ``O(pixels swept)`` plus, per level, the number of live components, and the IoU with the
ground truth is taken inside the sweep, with the same integer formula and float64 division as
:func:`wsolbench.metrics.box_iou`. Their inputs, the pixels in the order they take them and the
filled map, come from :mod:`wsolbench.metrics.pixel_order`.

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

__all__ = ["best_iou", "components_sweep", "holes_sweep"]


# Union-find layout. ``parent`` (int32, -1 while the pixel is not in the set) is all that a find
# touches, so it stays in the fast caches; a component's record lives in row ``root`` of ``rec``
# (int32 columns below) and is touched only when a pixel joins it or two components merge. A new
# pixel next to a component joins it directly, without a record of its own. Boxes are in padded
# coordinates. ``_KEY`` combines by minimum: a component's first pixel in raster order
# (components) or the filled value at which it reaches the border (holes, the same for all of
# its pixels). ``_SUM`` adds up: twice the window sum S(C) (components) or the Euler count (holes).
_X0, _Y0, _X1, _Y1, _SIZE, _KEY, _SUM = range(7)
_COLS = 7

# The helpers below are plain @njit functions, which LLVM inlines into the sweeps. numba's own
# ``inline="always"`` made every inlined call take and drop a reference to each array it was
# given (NRT_incref / NRT_decref: calls with atomic counts, several per pixel): a tenth of a
# sweep's time.


@njit(cache=True, nogil=True)
def _u(i):
    """An index as unsigned: numba indexes with a signed integer through a check and an add
    for negative (from-the-end) indices on every access, and with an unsigned one directly.
    Every index here is non-negative; on the sweeps' hot paths the check cost a sixth of their
    time."""
    return np.uint64(i)


@njit(cache=True, nogil=True)
def _find(parent, x):
    # Path halving: every visited node skips to its grandparent.
    while parent[_u(x)] != x:
        parent[_u(x)] = parent[_u(parent[_u(x)])]
        x = parent[_u(x)]
    return x


@njit(cache=True, nogil=True)
def _union(parent, rec, a, b):
    """Join the roots a != b (by size); boxes, keys and sums combine. Returns the new root."""
    if rec[_u(a), _SIZE] < rec[_u(b), _SIZE]:
        a, b = b, a
    parent[_u(b)] = a
    ra, rb = _u(a), _u(b)
    rec[ra, _X0] = min(rec[ra, _X0], rec[rb, _X0])
    rec[ra, _Y0] = min(rec[ra, _Y0], rec[rb, _Y0])
    rec[ra, _X1] = max(rec[ra, _X1], rec[rb, _X1])
    rec[ra, _Y1] = max(rec[ra, _Y1], rec[rb, _Y1])
    rec[ra, _SIZE] += rec[rb, _SIZE]
    rec[ra, _KEY] = min(rec[ra, _KEY], rec[rb, _KEY])
    rec[ra, _SUM] += rec[rb, _SUM]
    return a


@njit(cache=True, nogil=True)
def _join(parent, rec, root, p, x, y, key, amount):
    """Pixel p (at padded x, y) joins the component of ``root``, or starts one if root < 0."""
    if root < 0:
        r = _u(p)
        parent[r] = p
        rec[r, _X0] = x
        rec[r, _Y0] = y
        rec[r, _X1] = x
        rec[r, _Y1] = y
        rec[r, _SIZE] = 1
        rec[r, _KEY] = key
        rec[r, _SUM] = amount
        return p
    parent[_u(p)] = root
    r = _u(root)
    rec[r, _X0] = min(rec[r, _X0], x)
    rec[r, _Y0] = min(rec[r, _Y0], y)
    rec[r, _X1] = max(rec[r, _X1], x)
    rec[r, _Y1] = max(rec[r, _Y1], y)
    rec[r, _SIZE] += 1
    rec[r, _KEY] = min(rec[r, _KEY], key)
    rec[r, _SUM] += amount
    return root


@njit(cache=True, nogil=True)
def _link(parent, rec, root, nb):
    """Merge the component of the on-pixel nb into the one of ``root`` (which may be -1: none
    yet); returns the root of the result. The caller's pixel is not joined yet when root < 0."""
    other = parent[_u(nb)]
    if other == root:  # the common case: nb hangs right under the root already found
        return root
    other = _find(parent, other)
    if root < 0 or other == root:
        return other
    return _union(parent, rec, root, other)


@njit(cache=True, nogil=True)
def _add_to_windows(windows, p, wp):
    """Count pixel p into its four 2x2 windows (each indexed by its top-left pixel, on the grid
    of row length ``wp``); returns their counts before it (north-west, north-east, south-west,
    south-east window)."""
    c0 = windows[_u(p - wp - 1)]
    c1 = windows[_u(p - wp)]
    c2 = windows[_u(p - 1)]
    c3 = windows[_u(p)]
    windows[_u(p - wp - 1)] = c0 + 1
    windows[_u(p - wp)] = c1 + 1
    windows[_u(p - 1)] = c2 + 1
    windows[_u(p)] = c3 + 1
    return c0, c1, c2, c3


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _may_beat(x0, y0, x1, y1, best, gt_area):
    """Whether the box (x0, y0, x1, y1) could have an IoU above ``best`` (see _BOUND_MARGIN)."""
    return (x1 - x0 + 1) * (y1 - y0 + 1) * _BOUND_MARGIN >= best * gt_area


@njit(cache=True, nogil=True)
def _may_hold_better(x0, y0, x1, y1, best, at_least, gt):
    """Whether a box inside (x0, y0, x1, y1) could have an IoU above ``best`` and not below
    ``at_least``: its IoU with a GT box G is at most |(x0, y0, x1, y1) ∩ G| / |G| (its
    intersection with G is no larger, its union with G no smaller than G)."""
    for g in range(gt.shape[0]):
        if gt[g, 2] < gt[g, 0] or gt[g, 3] < gt[g, 1]:
            return True  # an inverted GT box: no bound, look
        area = (gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)
        ix = max(0, min(x1, gt[g, 2]) - max(x0, gt[g, 0]) + 1)
        bound = ix * max(0, min(y1, gt[g, 3]) - max(y0, gt[g, 1]) + 1) * _BOUND_MARGIN
        if bound > best * area and bound >= at_least * area:
            return True
    return False


@njit(cache=True, nogil=True)
def components_sweep(height, width, order, starts, present, gt, floor, largest_rule):
    """Downward sweep over the foreground (8-connected): the best IoU at every present level.

    Works on the grid padded by one pixel (index p = (y + 1) * (W + 2) + x + 1); a 2x2 window is
    indexed by its top-left pixel. Padding pixels are never added.

    Args:
        order, starts: the map's pixels by value (:func:`~wsolbench.metrics.pixel_order.
            pixels_by_value`).
        present: [256] bool, the levels to score.
        floor: [256] float64, a score each level's best starts from (boxes found elsewhere).
        largest_rule: also score the largest contour (the map must have no holes: the filled
            map, whose components are the top-level contours, with their area).

    Returns:
        multi: [256] the best of ``floor`` and the IoU of every component box at level v.
        largest: [256] IoU of the box of the largest component at level v (ties: the one last
            found in raster order), 0 without ``largest_rule``.
    """
    wp = width + 2
    n = (height + 2) * wp
    parent = np.full(n, -1, np.int32)
    rec = np.empty((n, _COLS), np.int32)  # _SUM: twice the window sum S(C) of the component
    windows = np.zeros(n, np.uint8)
    live = np.empty(n, np.int64)  # every root is in there (and entries gone stale since)
    n_live = 0

    gt_area = smallest_gt_area(gt)
    multi = floor.copy()
    largest = np.zeros(256, np.float64)
    lowest = 0  # below the lowest level to score there is nothing left to sweep
    while lowest < 255 and not present[lowest]:
        lowest += 1
    for value in range(255, lowest - 1, -1):
        for k in range(starts[value], starts[value + 1]):
            y = order[_u(k)] >> 32
            p = order[_u(k)] & 0xFFFFFFFF
            x = p - y * wp
            c0, c1, c2, c3 = _add_to_windows(windows, p, wp)
            # A window turning 3 on adds 1/2, turning 4 on another 1/2.
            area = (c0 >> 1 == 1) + (c1 >> 1 == 1) + (c2 >> 1 == 1) + (c3 >> 1 == 1)
            root = -1
            north = parent[_u(p - wp)] >= 0
            south = parent[_u(p + wp)] >= 0
            west = parent[_u(p - 1)] >= 0
            east = parent[_u(p + 1)] >= 0
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
            if not (north or west) and parent[_u(p - wp - 1)] >= 0:
                root = _link(parent, rec, root, p - wp - 1)
            if not (north or east) and parent[_u(p - wp + 1)] >= 0:
                root = _link(parent, rec, root, p - wp + 1)
            if not (south or west) and parent[_u(p + wp - 1)] >= 0:
                root = _link(parent, rec, root, p + wp - 1)
            if not (south or east) and parent[_u(p + wp + 1)] >= 0:
                root = _link(parent, rec, root, p + wp + 1)
            if _join(parent, rec, root, p, x, y, p, area) == p:
                live[_u(n_live)] = p
                n_live += 1

        if not present[value]:
            continue
        best = multi[value]
        kept = 0
        win = -1
        best_area = -1
        best_first = -1
        for i in range(n_live):
            r = live[_u(i)]
            if parent[_u(r)] != r:
                continue
            live[_u(kept)] = r
            kept += 1
            x0, y0 = rec[_u(r), _X0] - 1, rec[_u(r), _Y0] - 1
            x1, y1 = min(rec[_u(r), _X1], width - 1), min(rec[_u(r), _Y1], height - 1)
            if _may_beat(x0, y0, x1, y1, best, gt_area):
                iou = best_iou(x0, y0, x1, y1, gt)
                if iou > best:
                    best = iou
            # Top-level contours come last-found first: on ties the larger first pixel wins.
            a = rec[_u(r), _SUM]
            if a > best_area or (a == best_area and rec[_u(r), _KEY] > best_first):
                best_area = a
                best_first = rec[_u(r), _KEY]
                win = r
        n_live = kept
        multi[value] = best
        if largest_rule and win >= 0:
            largest[value] = best_iou(
                rec[_u(win), _X0] - 1,
                rec[_u(win), _Y0] - 1,
                min(rec[_u(win), _X1], width - 1),
                min(rec[_u(win), _Y1], height - 1),
                gt,
            )
    return multi, largest


@njit(cache=True, nogil=True)
def holes_sweep(height, width, order, starts, filled, present, gt, floor, at_least):
    """Upward sweep over the hole pixels (4-connected background): each level's hole boxes.

    Only the pixels that are ever in a hole (``filled > u``) are swept: a hole of level v is a
    4-connected component of ``u < v <= filled``, all of its pixels have the same filled value
    (the level at which it reaches the border and stops being a hole), and a background pixel
    4-adjacent to a hole is in the hole. So the sweep never meets the background outside, and a
    window's count misses only a pixel outside the hole diagonal to it, where one more or one
    fewer changes neither an Euler count nor a link. Same padded grid as
    :func:`components_sweep`.

    Args:
        order, starts: the pixels with filled > u by value
            (:func:`~wsolbench.metrics.pixel_order.flood`).
        filled: [H + 2, W + 2] uint8, the filled map, padded
            (:func:`~wsolbench.metrics.pixel_order.flood`).
        present: [256] bool, the levels to score.
        floor: [256] float64, the best score each level has without its holes.
        at_least: the lowest score that matters (the lowest IoU threshold counted): a score
            below it may come out lower than it is, still below it.

    Returns:
        multi: [256] the best of ``floor`` and the IoU of every hole box at level v (below
            ``at_least``, possibly less).
        nested: [256] bool, a hole of level v holds a component (its Euler number is below 1)
            whose box could score above ``multi[v]`` and at least ``at_least``: only those
            levels need the map's own components (the filled map's are the top-level ones).
    """
    wp = width + 2
    n = (height + 2) * wp
    parent = np.full(n, -1, np.int32)
    rec = np.empty((n, _COLS), np.int32)  # _SUM: the Euler count V - E + F
    windows = np.zeros(n, np.uint8)
    # The holes whose box is large enough to score at_least with the smallest GT box, and
    # entries gone stale since; a hole joins the list when it grows that large (most holes of
    # a noisy map never do), so a level visits only those.
    live = np.empty(n, np.int64)
    listed = np.zeros(n, np.bool_)
    holding = np.empty(n, np.int64)  # this level's holes that hold a component
    n_live = 0

    gt_area = smallest_gt_area(gt)
    least_area = at_least * gt_area / _BOUND_MARGIN
    multi = floor.copy()
    nested = np.zeros(256, np.bool_)
    highest = 255  # above the highest level to score there is nothing left to sweep
    while highest > 0 and not present[highest]:
        highest -= 1
    for value in range(highest):
        for k in range(starts[value], starts[value + 1]):
            y = order[_u(k)] >> 32
            p = order[_u(k)] & 0xFFFFFFFF
            x = p - y * wp
            c0, c1, c2, c3 = _add_to_windows(windows, p, wp)
            west = parent[_u(p - 1)] >= 0
            north = parent[_u(p - wp)] >= 0
            east = parent[_u(p + 1)] >= 0
            south = parent[_u(p + wp)] >= 0
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
            root = _join(parent, rec, root, p, x, y, filled[y, x], euler)
            # The area of the hole's box as scored below, before clipping (an upper bound).
            if (
                not listed[_u(root)]
                and (rec[_u(root), _X1] - rec[_u(root), _X0] + 4)
                * (rec[_u(root), _Y1] - rec[_u(root), _Y0] + 4)
                >= least_area
            ):
                listed[_u(root)] = True
                live[_u(n_live)] = root
                n_live += 1

        level = value + 1
        if level > 255 or not present[level]:
            continue
        best = multi[level]
        kept = 0
        n_holding = 0
        for i in range(n_live):
            r = live[_u(i)]
            if parent[_u(r)] != r or rec[_u(r), _KEY] < level:
                continue  # merged away, or reached the border (for good)
            live[_u(kept)] = r
            kept += 1
            # The hole's box: its pixels' box from x0 - 1 to x1 + 2 (and y), clipped (fact 3).
            x0, y0 = rec[_u(r), _X0] - 2, rec[_u(r), _Y0] - 2
            x1, y1 = min(rec[_u(r), _X1] + 1, width - 1), min(rec[_u(r), _Y1] + 1, height - 1)
            if _may_beat(x0, y0, x1, y1, best, gt_area):
                iou = best_iou(x0, y0, x1, y1, gt)
                if iou > best:
                    best = iou
            if rec[_u(r), _SUM] < 1:
                holding[_u(n_holding)] = r
                n_holding += 1
        n_live = kept
        multi[level] = best
        for j in range(n_holding):
            r = holding[_u(j)]
            # What a hole holds lies inside its box.
            x0, y0 = rec[_u(r), _X0] - 2, rec[_u(r), _Y0] - 2
            x1, y1 = min(rec[_u(r), _X1] + 1, width - 1), min(rec[_u(r), _Y1] + 1, height - 1)
            if _may_hold_better(x0, y0, x1, y1, best, at_least, gt):
                nested[level] = True
                break
    return multi, nested
