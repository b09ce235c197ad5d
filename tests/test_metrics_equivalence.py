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
from wsolbench import metrics_literal as L

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
            cam[0, 0] = np.nan
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
