"""The fast path of wsolbench.metrics against the literal per-threshold implementation.

Thousands of random and structured maps (noise, smooth up-sampled low-res maps like real CAMs,
rings, lines, checkerboards, sparse pixels, few-level maps, un-normalized maps, constant and tiny
maps), with one to four GT boxes each: per-threshold counts, boxes (in contour order), PxAP, map
normalization and box rescaling must be identical, not merely close.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from wsolbench import metrics as M
from wsolbench.metrics import level_sets as LS
from wsolbench.metrics import literal as L
from wsolbench.metrics import pixel_order, sweeps
from wsolbench.metrics.boxes import _levels
from wsolbench.metrics.maps import NonFiniteError

# ------------------------------------------------------------------------------------------------
# Map generators: rng, (H, W) -> [H, W] float64 in [0, 1]
# ------------------------------------------------------------------------------------------------


def _noise(rng, hw):
    return rng.random(hw)


def _smooth(rng, hw):
    low = rng.random((int(rng.integers(2, 9)), int(rng.integers(2, 9)))).astype(np.float32)
    return M.normalize_map(low, hw)


def _rings(rng, hw):
    yy, xx = np.indices(hw)
    cy, cx = rng.uniform(0, hw[0]), rng.uniform(0, hw[1])
    radius = np.hypot(yy - cy, xx - cx)
    return 0.5 + 0.5 * np.sin(radius * rng.uniform(0.3, 1.5))


def _lines(rng, hw):
    m = np.zeros(hw)
    for _ in range(int(rng.integers(1, 6))):
        value = rng.uniform(0.2, 1.0)
        kind = rng.integers(0, 3)
        if kind == 0:
            m[rng.integers(0, hw[0]), rng.integers(0, hw[1]) :] = value
        elif kind == 1:
            m[rng.integers(0, hw[0]) :, rng.integers(0, hw[1])] = value
        else:
            n = min(hw)
            start = rng.integers(0, n)
            idx = np.arange(start, n)
            m[idx, idx] = value
    return m


def _checker(rng, hw):
    cell = int(rng.integers(1, 4))
    yy, xx = np.indices(hw)
    board = ((yy // cell + xx // cell) % 2).astype(np.float64)
    return board * rng.uniform(0.3, 1.0) + (1 - board) * rng.uniform(0.0, 0.3)


def _sparse(rng, hw):
    m = np.zeros(hw)
    n = int(rng.integers(1, 12))
    m[rng.integers(0, hw[0], n), rng.integers(0, hw[1], n)] = rng.random(n)
    return m


def _few_levels(rng, hw):
    levels = int(rng.integers(2, 5))
    return rng.integers(0, levels, hw) / (levels - 1)


def _holes(rng, hw):
    # Blobs with holes and islands inside holes: a smooth map's middle band, scaled.
    s = _smooth(rng, hw)
    return np.where((s > 0.3) & (s < 0.7), s, rng.uniform(0, 0.2)) + (s > 0.85) * 0.25


def _nested(rng, hw):
    # Square or round rings with walls one to three pixels wide around a centre anywhere (also off
    # the map): holes holding islands holding holes, walls cut by the border, and some noise.
    yy, xx = np.indices(hw)
    cy, cx = rng.uniform(-4, hw[0] + 4), rng.uniform(-4, hw[1] + 4)
    if rng.random() < 0.5:
        radius = np.maximum(np.abs(yy - cy), np.abs(xx - cx))
    else:
        radius = np.hypot(yy - cy, xx - cx)
    rings = ((radius // rng.integers(1, 4)).astype(int) % 2) * rng.uniform(0.5, 1.0)
    return rings + (rng.random(hw) < rng.uniform(0, 0.1)) * rng.random(hw) * 0.5


def _tiny_parts(rng, hw):
    # Single pixels, one-pixel lines (contour area 0) and 2x2 squares at a few shared values:
    # many components whose areas tie, at 0 and above.
    m = np.zeros(hw)
    values = rng.uniform(0.1, 1.0, 3)
    for _ in range(int(rng.integers(1, 12))):
        y, x = int(rng.integers(0, hw[0])), int(rng.integers(0, hw[1]))
        v, n = values[rng.integers(0, 3)], int(rng.integers(1, 6))
        kind = rng.integers(0, 5)
        if kind == 0:
            m[y, x] = v
        elif kind == 1:
            m[y, x : x + n] = v
        elif kind == 2:
            m[y : y + n, x] = v
        elif kind == 3:
            idx = np.arange(n)
            keep = (y + idx < hw[0]) & (x + idx < hw[1])
            m[(y + idx)[keep], (x + idx)[keep]] = v
        else:
            m[y : y + 2, x : x + 2] = v
    return m


def _equal_blobs(rng, hw):
    # Copies of one small random shape at several places, at one or two values: ties in
    # contour area between separate components, broken by OpenCV's contour order.
    side = int(rng.integers(1, 5))
    shape = rng.random((side, side)) < 0.7
    m = np.zeros(hw)
    for _ in range(int(rng.integers(2, 8))):
        y, x = int(rng.integers(0, hw[0])), int(rng.integers(0, hw[1]))
        patch = shape[: hw[0] - y, : hw[1] - x]
        region = m[y : y + side, x : x + side]
        region[patch] = np.maximum(region[patch], rng.choice([0.6, 0.9]))
    return m


def _frame(rng, hw):
    # A region touching the border with holes next to it (one pixel in from the edge) and
    # notches cut into the border itself.
    m = np.full(hw, rng.uniform(0.5, 1.0))
    for _ in range(int(rng.integers(1, 8))):
        y0, x0 = int(rng.integers(0, hw[0])), int(rng.integers(0, hw[1]))
        y1, x1 = y0 + int(rng.integers(1, 4)), x0 + int(rng.integers(1, 4))
        m[y0:y1, x0:x1] = rng.uniform(0.0, 0.4)
    return m


def _plateaus(rng, hw):
    # Large flat regions of a few values (nearest-neighbour up-sampling), touching each other.
    low = rng.integers(0, 4, (int(rng.integers(2, 7)), int(rng.integers(2, 7)))) / 3
    return cv2.resize(low, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)


def _noisy_blobs(rng, hw):
    # The "poor map" of wsolevaluation issue #52: smooth blobs plus per-pixel noise, so that
    # most levels fall apart into many components, with components inside holes at most levels.
    return _smooth(rng, hw) + rng.normal(0, rng.uniform(0.05, 0.3), hw)


def _twin_rings(rng, hw):
    # Copies of one ring with islands inside (one to three nested levels) at two or three places:
    # top-level contours of equal filled area, each holding contours, ties broken by contour order.
    side = int(rng.integers(5, 12))
    yy, xx = np.indices((side, side))
    radius = np.maximum(np.abs(yy - side // 2), np.abs(xx - side // 2))
    ring = (radius // int(rng.integers(1, 3)) % 2 == (side // 2) % 2) * rng.choice([0.6, 0.9])
    m = np.zeros(hw)
    for _ in range(int(rng.integers(2, 4))):
        y, x = int(rng.integers(0, hw[0])), int(rng.integers(0, hw[1]))
        patch = ring[: hw[0] - y, : hw[1] - x]
        region = m[y : y + side, x : x + side]
        np.maximum(region, patch, out=region)
    return m


def _unnormalized(rng, hw):
    return _smooth(rng, hw) * rng.uniform(0.05, 0.9)  # max(u) < 255


def _constant(rng, hw):
    return np.full(hw, rng.choice([0.0, 0.5, 1.0, rng.random()]))


GENERATORS = {
    "noise": _noise,
    "smooth": _smooth,
    "rings": _rings,
    "lines": _lines,
    "checker": _checker,
    "sparse": _sparse,
    "few_levels": _few_levels,
    "holes": _holes,
    "nested": _nested,
    "tiny_parts": _tiny_parts,
    "equal_blobs": _equal_blobs,
    "frame": _frame,
    "plateaus": _plateaus,
    "noisy_blobs": _noisy_blobs,
    "twin_rings": _twin_rings,
    "unnormalized": _unnormalized,
    "constant": _constant,
}


def _gt_boxes(rng, hw):
    """1-4 boxes, x1 up to W (allowed by the metadata), including one-pixel and full boxes."""
    h, w = hw
    boxes = []
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.integers(0, 5)
        if kind == 0:
            boxes.append([0, 0, w - 1, h - 1])
        elif kind == 1:
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            boxes.append([x, y, x, y])
        else:
            x0, x1 = np.sort(rng.integers(0, w + 1, 2))
            y0, y1 = np.sort(rng.integers(0, h + 1, 2))
            boxes.append([x0, y0, x1, y1])
    return np.asarray(boxes, dtype=np.int64)


def _shape(rng):
    if rng.random() < 0.1:  # tiny maps
        return tuple(int(v) for v in rng.integers(1, 5, 2))
    return int(rng.integers(8, 49)), int(rng.integers(8, 49))


def _fast_counts(maps, gts, step, ious):
    counter = M.BoxCounter(M.threshold_grid(step), ious)
    for m, g in zip(maps, gts, strict=True):
        counter.update(m, g)
    box = counter.to_dict()["box"]
    return {"multi": box["multi"], "largest": box["largest"]}


STEPS = (0.01, 0.013, 0.02, 0.05, 0.1, 0.3)
IOUS = ((30, 50, 70), (30, 50, 70), (10, 50, 90), (50,), (33, 66))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_counts_match_literal(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    generator = GENERATORS[name]
    n_maps = 300
    n_checked = 0
    for batch in range(10):
        step = STEPS[batch % len(STEPS)]
        ious = IOUS[batch % len(IOUS)]
        maps, gts = [], []
        for _ in range(n_maps // 10):
            hw = _shape(rng)
            maps.append(np.clip(generator(rng, hw), 0.0, 1.0))
            gts.append(_gt_boxes(rng, hw))
        thresholds = M.threshold_grid(step)
        fast = _fast_counts(maps, gts, step, ious)
        literal = L.literal_box_counts(maps, gts, thresholds, ious)
        if fast != literal:  # localize the first differing map for the failure message
            for i, (m, g) in enumerate(zip(maps, gts, strict=True)):
                one = _fast_counts([m], [g], step, ious)
                assert one == L.literal_box_counts([m], [g], thresholds, ious), (name, batch, i)
        assert fast == literal
        n_checked += len(maps)
    assert n_checked == n_maps


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_boxes_match_literal_in_contour_order(name):
    rng = np.random.default_rng(1000 + sum(map(ord, name)))
    thresholds = M.threshold_grid(0.02)
    for _ in range(60):
        m = np.clip(GENERATORS[name](rng, _shape(rng)), 0.0, 1.0)
        multi, largest = M.boxes_from_map(m, thresholds)
        lit_multi, lit_largest = L.literal_boxes_both(m, thresholds)
        assert len(multi) == len(lit_multi) == len(thresholds)
        for t in range(len(thresholds)):
            np.testing.assert_array_equal(multi[t], lit_multi[t])
            np.testing.assert_array_equal(largest[t], lit_largest[t])


@pytest.mark.parametrize("seed", range(4))
def test_protocol_size_and_step(seed):
    """A few maps at the protocol geometry: 224 x 224, step 0.001, CAM-like and ring maps."""
    rng = np.random.default_rng(seed)
    hw = (224, 224)
    maps = [
        M.normalize_map(rng.random((7, 7)).astype(np.float32), hw),
        M.normalize_map(rng.random((14, 14)).astype(np.float32), hw),
        _rings(rng, hw),
    ]
    gts = [_gt_boxes(rng, hw) for _ in maps]
    thresholds = M.threshold_grid(0.001)
    fast = _fast_counts(maps, gts, 0.001, (30, 50, 70))
    assert fast == L.literal_box_counts(maps, gts, thresholds, (30, 50, 70))


def test_reference_structure_mode_agrees():
    rng = np.random.default_rng(11)
    thresholds = M.threshold_grid(0.01)
    maps = [np.clip(GENERATORS[n](rng, (32, 40)), 0, 1) for n in sorted(GENERATORS)]
    gts = [_gt_boxes(rng, (32, 40)) for _ in maps]
    plain = L.literal_box_counts(maps, gts, thresholds)
    assert L.literal_box_counts(maps, gts, thresholds, reference_structure=True) == plain
    assert _fast_counts(maps, gts, 0.01, (30, 50, 70)) == plain


def test_counts_are_not_trivial():
    """Guard the equivalence tests against comparing all-zero or all-n counts."""
    rng = np.random.default_rng(5)
    maps = [_smooth(rng, (40, 40)) for _ in range(50)]
    gts = [_gt_boxes(rng, (40, 40)) for _ in maps]
    counts = _fast_counts(maps, gts, 0.01, (30, 50, 70))
    for rule in ("multi", "largest"):
        for curve in counts[rule].values():
            assert 0 < max(curve) < len(maps) or min(curve) < max(curve)
    assert counts["multi"]["30"] != counts["largest"]["30"]


def test_pxap_matches_literal():
    rng = np.random.default_rng(2)
    for step in (0.001, 0.01, 0.05):
        thresholds = M.threshold_grid(step)
        maps, fgs, ignores = [], [], []
        counter = M.MaskCounter(thresholds)
        for i in range(40):
            hw = (int(rng.integers(8, 40)), int(rng.integers(8, 40)))
            name = sorted(GENERATORS)[i % len(GENERATORS)]
            m = np.clip(GENERATORS[name](rng, hw), 0, 1)
            fg = _smooth(rng, hw) > rng.uniform(0.3, 0.8)
            ignore = None if i % 3 == 0 else rng.random(hw) < 0.2
            counter.update(m, fg, ignore)
            maps.append(m)
            fgs.append(fg)
            ignores.append(ignore)
        fast = M.pxap(counter.fg_hist, counter.bg_hist)
        assert fast == L.literal_pxap(maps, fgs, ignores, thresholds)
        assert 0.0 < fast < 100.0


def test_normalize_matches_literal():
    rng = np.random.default_rng(4)
    for i in range(200):
        src = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
        dst = src if i % 4 == 0 else (int(rng.integers(1, 60)), int(rng.integers(1, 60)))
        dtype = np.float32 if i % 2 else np.float64
        cam = (rng.normal(size=src) * rng.uniform(0.1, 100)).astype(dtype)
        if i % 17 == 0:
            cam[0, 0] = np.nan  # the reference scores it as zeros; wsolbench refuses it
            with pytest.raises(NonFiniteError):
                M.normalize_map(cam, dst)
            continue
        if i % 19 == 0:
            cam[:] = 2.0
        out = M.normalize_map(cam, dst)
        expected = L.literal_normalize(cam, dst)
        assert out.dtype == expected.dtype == np.float64
        np.testing.assert_array_equal(out, expected)


def test_same_size_resize_is_a_copy():
    # normalize_map skips cv2.resize when the size already matches; that is exact only because
    # OpenCV copies a same-size input unchanged.
    cam = np.random.default_rng(0).normal(size=(31, 17))
    np.testing.assert_array_equal(cv2.resize(cam, (17, 31), interpolation=cv2.INTER_CUBIC), cam)


def test_rescale_matches_literal():
    rng = np.random.default_rng(6)
    for _ in range(300):
        w, h = int(rng.integers(1, 2000)), int(rng.integers(1, 2000))
        x0, x1 = np.sort(rng.integers(0, w + 1, 2))
        y0, y1 = np.sort(rng.integers(0, h + 1, 2))
        new = (int(rng.integers(1, 500)), int(rng.integers(1, 500)))
        out = M.rescale_boxes(np.array([[x0, y0, x1, y1]]), (w, h), new)
        assert tuple(out[0]) == L.literal_resize_box((x0, y0, x1, y1), (w, h), new)


# ------------------------------------------------------------------------------------------------
# wsolbench.metrics.level_sets (the engine behind BoxCounter), level by level against OpenCV's
# contours
# ------------------------------------------------------------------------------------------------


def _contour_scores(u, value, gt):
    """(multi, largest) best IoU of the mask ``u >= value`` from cv2.findContours, as the
    literal implementation scores one threshold."""
    height, width = u.shape
    mask = (u.astype(np.int64) >= value).astype(np.uint8)
    contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]

    def box(contour):
        x, y, w, h = cv2.boundingRect(contour)
        return [x, y, min(x + w, width - 1), min(y + h, height - 1)]

    if not contours:
        boxes = largest = np.zeros((1, 4), dtype=np.int64)
    else:
        boxes = np.asarray([box(c) for c in contours])
        largest = np.asarray([box(max(contours, key=cv2.contourArea))])
    return L.literal_iou(boxes, gt).max(), L.literal_iou(largest, gt).max()


def _check_levels(u, gt):
    u = np.ascontiguousarray(u, dtype=np.uint8)
    levels = np.append(np.unique(u), 256)
    multi, largest = LS.level_scores(u, gt, levels)
    expected = np.asarray([_contour_scores(u, v, gt) for v in levels])
    bad = np.flatnonzero((multi != expected[:, 0]) | (largest != expected[:, 1]))
    assert len(bad) == 0, f"levels {levels[bad].tolist()} differ"


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_level_scores_match_contours_at_every_level(name):
    rng = np.random.default_rng(2000 + sum(map(ord, name)))
    for _ in range(80):
        hw = _shape(rng)
        u = (np.clip(GENERATORS[name](rng, hw), 0.0, 1.0) * 255).astype(np.uint8)
        _check_levels(u, _gt_boxes(rng, hw))


def _paint(shape, *rects):
    """uint8 map of the given shape with rectangles (y0, y1, x0, x1, value) painted in order."""
    u = np.zeros(shape, dtype=np.uint8)
    for y0, y1, x0, x1, value in rects:
        u[y0:y1, x0:x1] = value
    return u


HANDMADE = {
    # A thin ring whose filled area (64) beats a solid square (25) although its own pixels'
    # windows sum to far less: the hole's fill decides the largest contour.
    "ring_beats_blob": _paint(
        (16, 24), (2, 11, 2, 11, 200), (3, 10, 3, 10, 0), (2, 8, 14, 20, 200)
    ),
    # The same ring with an island in its hole: the level is scored on the filled map.
    "island_in_ring": _paint(
        (16, 24), (2, 11, 2, 11, 200), (3, 10, 3, 10, 0), (5, 8, 5, 8, 200), (2, 8, 14, 20, 90)
    ),
    # Two equal rings, each with an island (one itself a ring with an island): equal filled
    # areas, the tie broken by contour order, never by a nested contour.
    "twin_rings_with_islands": _paint(
        (14, 26),
        (1, 10, 1, 10, 220),
        (2, 9, 2, 9, 0),
        (3, 8, 3, 8, 220),
        (4, 7, 4, 7, 0),
        (5, 6, 5, 6, 220),
        (3, 12, 14, 23, 220),
        (4, 11, 15, 22, 0),
        (6, 8, 17, 19, 150),
    ),
    # Two equal squares and two equal lines: ties broken by contour order (last found first).
    "equal_squares": _paint((12, 20), (1, 4, 1, 4, 255), (7, 10, 12, 15, 255), (5, 6, 6, 9, 100)),
    "single_pixels": _paint((9, 9), (1, 2, 1, 2, 255), (4, 5, 7, 8, 255), (8, 9, 0, 1, 255)),
    "lines": _paint((10, 10), (1, 2, 0, 6, 255), (3, 9, 8, 9, 255), (6, 7, 2, 6, 255)),
    # One-pixel holes, a hole touching only a corner region, holes next to the border.
    "pinholes": _paint(
        (8, 8), (0, 8, 0, 8, 255), (1, 2, 1, 2, 0), (3, 4, 4, 5, 0), (6, 7, 6, 7, 0)
    ),
    "checker": (np.indices((9, 11)).sum(0) % 2 * 255).astype(np.uint8),
    "full": np.full((5, 7), 255, dtype=np.uint8),
    "empty": np.zeros((5, 7), dtype=np.uint8),
    "one_pixel": np.full((1, 1), 17, dtype=np.uint8),
    "row": np.asarray([[0, 255, 255, 0, 255, 3, 255]], dtype=np.uint8),
    "column": np.asarray([[0, 255, 255, 0, 255, 3, 255]], dtype=np.uint8).T.copy(),
}


@pytest.mark.parametrize("name", sorted(HANDMADE))
def test_level_scores_handmade(name):
    u = HANDMADE[name]
    height, width = u.shape
    rng = np.random.default_rng(7)
    gts = [np.asarray([[0, 0, width - 1, height - 1]])] + [_gt_boxes(rng, (height, width))]
    gts += [np.asarray([[x, y, x + 2, y + 2]]) for y in range(height) for x in range(width)]
    for gt in gts:
        _check_levels(u, gt)


def _hole_sweep(u, gt, at_least):
    """(multi, nested) of the holes sweep on u, as level_sets runs it (every level scored)."""
    height, width = u.shape
    filled, hole_order, hole_starts, counts, filled_counts = pixel_order.flood(u)
    order, starts = pixel_order.pixels_by_value(filled[1:-1, 1:-1], filled_counts)
    present = counts > 0
    floor = sweeps.components_sweep(height, width, order, starts, present, gt, np.zeros(256), True)[
        0
    ]
    return sweeps.holes_sweep(
        height, width, hole_order, hole_starts, filled, present, gt, floor, at_least
    )


def test_flood_fills_and_sorts():
    """The flood's filled map is each pixel's minimax value over 4-paths to the border (written
    here as a relaxation until nothing changes), the hole pixels (filled > own value) come by
    their own value, and both maps' value counts are right; sorting by value is stable."""
    rng = np.random.default_rng(5)
    for name in ("nested", "holes", "noise", "smooth", "checker", "one_pixel"):
        if name in HANDMADE:
            u = HANDMADE[name]
        else:
            hw = _shape(rng)
            u = (np.clip(GENERATORS[name](rng, hw), 0, 1) * 255).astype(np.uint8)
        height, width = u.shape
        expected = u.astype(np.int64).copy()
        expected[1:-1, 1:-1] = 255
        while True:
            neighbours = np.full((4, height, width), 255)
            neighbours[0, 1:], neighbours[1, :-1] = expected[:-1], expected[1:]
            neighbours[2, :, 1:], neighbours[3, :, :-1] = expected[:, :-1], expected[:, 1:]
            relaxed = np.maximum(u, np.minimum(expected, neighbours.min(0)))
            if (relaxed == expected).all():
                break
            expected = relaxed
        padded, hole_order, hole_starts, counts, filled_counts = pixel_order.flood(u)
        np.testing.assert_array_equal(padded[1:-1, 1:-1], expected)
        np.testing.assert_array_equal(counts, np.bincount(u.ravel(), minlength=256))
        np.testing.assert_array_equal(filled_counts, np.bincount(expected.ravel(), minlength=256))
        order, starts = pixel_order.pixels_by_value(u, counts)
        ys, ps = order >> 32, order & 0xFFFFFFFF
        flat = (ys - 1) * width + ps - ys * (width + 2) - 1  # raster index in u
        np.testing.assert_array_equal(flat, np.argsort(u.ravel(), kind="stable"))
        np.testing.assert_array_equal(np.diff(starts), counts)
        assert (padded[[0, -1]] == 0).all() and (padded[:, [0, -1]] == 0).all()
        in_holes = expected > u
        ys, ps = hole_order >> 32, hole_order & 0xFFFFFFFF
        xs = ps - ys * (width + 2)
        found = np.zeros_like(in_holes)
        found[ys - 1, xs - 1] = True
        assert len(hole_order) == in_holes.sum() and (found == in_holes).all()
        assert (np.diff(u[ys - 1, xs - 1].astype(int)) >= 0).all()
        np.testing.assert_array_equal(np.diff(hole_starts), np.bincount(u[in_holes], minlength=256))


def test_level_sets_special_paths_are_exercised():
    """The structured generators reach every branch: maps with holes, levels whose nested
    components are swept, and levels where the bound spares that sweep."""
    rng = np.random.default_rng(3)
    n_with_holes = n_nested = n_spared = 0
    for _ in range(40):
        u = (np.clip(_nested(rng, (40, 40)), 0, 1) * 255).astype(np.uint8)
        gt = _gt_boxes(rng, (40, 40))
        n_with_holes += len(pixel_order.flood(u)[1]) > 0
        nested = _hole_sweep(u, gt, 0.0)[1]
        n_nested += int(nested.sum())
        n_spared += int((nested & ~_hole_sweep(u, gt, 0.5)[1]).sum())
    assert n_with_holes > 0 and n_nested > 0 and n_spared > 0


@pytest.mark.parametrize("name", ["noise", "nested", "noisy_blobs", "holes", "smooth"])
def test_scores_below_at_least_may_only_fall(name):
    """With ``at_least``, every score at or above it is exact and every one below stays below:
    counting IoU thresholds >= at_least is unchanged (the counters pass their lowest)."""
    rng = np.random.default_rng(40 + len(name))
    thresholds = M.threshold_grid(0.01)
    for _ in range(30):
        hw = _shape(rng)
        u = (np.clip(GENERATORS[name](rng, hw), 0, 1) * 255).astype(np.uint8)
        gt = _gt_boxes(rng, hw)
        k = (thresholds * float(u.max())).astype(np.int64)
        exact = LS.threshold_scores(u, gt, k)
        for at_least in (0.1, 0.3, 0.5):
            pruned = LS.threshold_scores(u, gt, k, at_least=at_least)
            np.testing.assert_array_equal(pruned[1], exact[1])  # the largest rule: exact
            high = exact[0] >= at_least
            np.testing.assert_array_equal(pruned[0][high], exact[0][high])
            assert (pruned[0][~high] < at_least).all()


def test_threshold_scores_follow_the_levels():
    rng = np.random.default_rng(8)
    for step in (0.001, 0.013, 0.3):
        thresholds = M.threshold_grid(step)
        for name in ("smooth", "unnormalized", "constant", "sparse"):
            hw = _shape(rng)
            u = (np.clip(GENERATORS[name](rng, hw), 0, 1) * 255).astype(np.uint8)
            gt = _gt_boxes(rng, hw)
            k = (thresholds * float(u.max())).astype(np.int64)
            multi, largest = LS.threshold_scores(u, gt, k)
            levels, level_of_tau = _levels(u, thresholds)
            by_level = LS.level_scores(u, gt, levels)
            np.testing.assert_array_equal(multi, by_level[0][level_of_tau])
            np.testing.assert_array_equal(largest, by_level[1][level_of_tau])


@pytest.mark.parametrize("seed", range(3))
def test_level_scores_at_protocol_size(seed):
    """Every level of CAM-like, ring and nested maps at 224 x 224, against OpenCV."""
    rng = np.random.default_rng(100 + seed)
    hw = (224, 224)
    for m in (_smooth(rng, hw), M.normalize_map(rng.random((14, 14)), hw), _nested(rng, hw)):
        u = (np.clip(m, 0, 1) * 255).astype(np.uint8)
        _check_levels(u, _gt_boxes(rng, hw))


def test_level_sets_reject_bad_levels():
    u = np.asarray([[0, 3], [3, 7]], dtype=np.uint8)
    gt = np.asarray([[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="present in the map"):
        LS.level_scores(u, gt, np.asarray([5]))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        LS.threshold_scores(u, gt, np.asarray([256]))
