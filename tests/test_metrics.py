"""Hand-computed cases pinning every rule of shared/spec/protocol.md in wsolbench.metrics."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from wsolbench import metrics as M
from wsolbench.metrics.literal import literal_normalize
from wsolbench.metrics.maps import MapRangeError, NonFiniteError

# ------------------------------------------------------------------------------------------------
# Thresholds, IoU, box rescaling
# ------------------------------------------------------------------------------------------------


def test_threshold_grid_is_arange():
    grid = M.threshold_grid(0.001)
    assert grid.dtype == np.float64
    assert len(grid) == 1000
    assert grid[0] == 0.0 and grid[1] == 0.001
    np.testing.assert_array_equal(grid, np.arange(0, 1, 0.001))
    np.testing.assert_array_equal(M.threshold_grid(0.25), [0.0, 0.25, 0.5, 0.75])
    for bad in (0, -0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="step"):
            M.threshold_grid(bad)


def test_iou_is_inclusive():
    # Two identical one-pixel boxes: area 1 each, intersection 1.
    assert M.box_iou([[3, 4, 3, 4]], [[3, 4, 3, 4]])[0, 0] == 1.0
    # Touching but not overlapping (columns 0-1 vs 2-3): IoU 0.
    assert M.box_iou([[0, 0, 1, 1]], [[2, 0, 3, 1]])[0, 0] == 0.0
    # Sharing one column: intersection 2 pixels, union 4 + 4 - 2 = 6.
    assert M.box_iou([[0, 0, 1, 1]], [[1, 0, 2, 1]])[0, 0] == pytest.approx(2 / 6, abs=0)
    # [P, G] layout and float64.
    iou = M.box_iou([[0, 0, 3, 0], [0, 0, 1, 0]], [[0, 0, 1, 0], [10, 10, 12, 12], [0, 0, 3, 0]])
    assert iou.shape == (2, 3) and iou.dtype == np.float64
    np.testing.assert_array_equal(iou, [[0.5, 0.0, 1.0], [1.0, 0.0, 0.5]])


def test_iou_degenerate_union_is_zero():
    # x1 < x0 by 2 gives a negative area; the union is <= 0 and the IoU must be 0, not NaN.
    iou = M.box_iou([[0, 0, -2, 0]], [[0, 0, -2, 0]])
    assert iou[0, 0] == 0.0


def test_rescale_multiplies_before_dividing():
    # x = 55 in a 110-pixel-wide image, to 224: 55 * 224 / 110 = 112 exactly, but
    # 55 * (224 / 110) = 111.99999999999999 truncates to 111.
    assert int(55.0 * (224.0 / 110.0)) == 111
    out = M.rescale_boxes(np.array([[55, 0, 109, 50]]), (110, 100), (224, 224))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[112, 0, int(109 * 224 / 110), int(50 * 224 / 100)]])
    assert out[0, 0] == 112
    # Width and height scale separately: sizes are (W, H).
    np.testing.assert_array_equal(
        M.rescale_boxes(np.array([[10, 10, 20, 20]]), (100, 50), (200, 200)), [[20, 40, 40, 80]]
    )
    with pytest.raises(ValueError, match="shape"):
        M.rescale_boxes(np.array([1, 2, 3, 4]), (10, 10), (20, 20))


# ------------------------------------------------------------------------------------------------
# Boxes from a map
# ------------------------------------------------------------------------------------------------


def _only(boxes_list):
    assert len(boxes_list) == 1
    return boxes_list[0].tolist()


def test_quantization_then_strict_binarization():
    m = np.zeros((8, 8))
    m[1, 1] = 1.0  # u = 255
    m[5, 5] = 0.5  # u = floor(127.5) = 127
    # tau = 0.5: int(0.5 * 255) = 127, and 127 > 127 is false: the 0.5 pixel is off.
    multi, largest = M.boxes_from_map(m, np.array([0.5]))
    assert _only(multi) == [[1, 1, 2, 2]]
    assert _only(largest) == [[1, 1, 2, 2]]
    # tau = 0.498: int(126.99) = 126 < 127: the pixel is on.
    multi, _ = M.boxes_from_map(m, np.array([0.498]))
    assert sorted(_only(multi)) == [[1, 1, 2, 2], [5, 5, 6, 6]]
    # Quantization floors: 0.999 * 255 = 254.7 -> 254, which is off at int(0.999 * 255) = 254.
    m2 = np.zeros((4, 4))
    m2[0, 0], m2[2, 2] = 1.0, 0.999
    multi, _ = M.boxes_from_map(m2, np.array([0.999]))
    assert _only(multi) == [[0, 0, 1, 1]]


def test_threshold_uses_the_map_maximum():
    # max(u) = 127: at tau 0.5 the threshold is int(63.5) = 63, so u = 64 is on, u = 63 is off.
    m = np.zeros((6, 6))
    m[0, 0] = 127.9 / 255
    m[3, 3] = 64.2 / 255
    m[5, 0] = 63.9 / 255
    multi, _ = M.boxes_from_map(m, np.array([0.5]))
    assert sorted(_only(multi)) == [[0, 0, 1, 1], [3, 3, 4, 4]]


def test_no_contour_gives_zero_box():
    multi, largest = M.boxes_from_map(np.zeros((5, 7)), M.threshold_grid(0.25))
    assert len(multi) == len(largest) == 4
    for boxes in multi + largest:
        assert boxes.tolist() == [[0, 0, 0, 0]]


def test_hole_contours_count_in_multi_mode():
    # A 3-pixel-thick ring: on at [1, 10]^2 except the hole [4, 7]^2.
    m = np.zeros((12, 12))
    m[1:11, 1:11] = 1.0
    m[4:8, 4:8] = 0.0
    multi, largest = M.boxes_from_map(m, np.array([0.5]))
    # Outer contour: x, y in [1, 10] -> (1, 1, 11, 11), clipped to W - 1 = 11. The hole contour
    # runs through the ring pixels 4-adjacent to the hole, x, y in [3, 8] -> (3, 3, 9, 9).
    assert _only(multi) == [[1, 1, 11, 11], [3, 3, 9, 9]]
    assert _only(largest) == [[1, 1, 11, 11]]
    counter = M.BoxCounter(M.threshold_grid(0.5), (50, 70))
    counter.update(m, np.array([[3, 3, 9, 9]]))
    # Multi: the hole box matches the GT exactly (IoU 1) at both taus (at tau 0 every on-pixel
    # value 255 > 0). Largest: 49 / 121 = 0.405 < 0.5.
    assert counter.multi[70].tolist() == [1, 1]
    assert counter.largest[50].tolist() == [0, 0]


def test_largest_contour_is_by_polygon_area():
    # A one-pixel-wide line of 10 pixels (polygon area 0) and a 2x2 square (area 1).
    m = np.zeros((8, 12))
    m[1, 0:10] = 1.0
    m[5:7, 6:8] = 1.0
    multi, largest = M.boxes_from_map(m, np.array([0.5]))
    assert sorted(_only(multi)) == [[0, 1, 10, 2], [6, 5, 8, 7]]
    assert _only(largest) == [[6, 5, 8, 7]]


def test_largest_contour_ties_go_to_the_first_contour():
    # Two 2x2 squares, same area: the winner is the first contour in OpenCV's order.
    m = np.zeros((8, 10))
    m[1:3, 1:3] = 1.0
    m[5:7, 6:8] = 1.0
    binary = (m > 0).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    x, y, w, h = cv2.boundingRect(contours[0])
    assert cv2.contourArea(contours[0]) == cv2.contourArea(contours[1]) == 1.0
    _, largest = M.boxes_from_map(m, np.array([0.5]))
    assert _only(largest) == [[x, y, x + w, y + h]]
    # With OpenCV 4/5 the lower square comes first.
    assert _only(largest) == [[6, 5, 8, 7]]


def test_boxes_clip_to_last_pixel():
    m = np.zeros((8, 8))
    m[5:8, 4:8] = 1.0  # touches the right and bottom borders
    m[0:2, 0:2] = 0.9  # interior box keeps its "+1" right/bottom edge
    multi, _ = M.boxes_from_map(m, np.array([0.1]))
    assert sorted(_only(multi)) == [[0, 0, 2, 2], [4, 5, 7, 7]]


def test_several_gt_boxes_take_the_max():
    m = np.zeros((10, 10))
    m[2, 2] = 1.0  # box [2, 2, 3, 3], area 4
    grid = M.threshold_grid(0.5)
    counter = M.BoxCounter(grid, (30, 50, 70))
    # First GT far away (IoU 0), second exactly 0.5 (4 / 8): correct at 30 and 50, not at 70.
    counter.update(m, np.array([[7, 7, 9, 9], [2, 2, 5, 3]]))
    assert counter.multi[30].tolist() == [1, 1]
    assert counter.multi[50].tolist() == [1, 1]  # IoU exactly 0.5 counts (>=)
    assert counter.multi[70].tolist() == [0, 0]
    assert counter.largest[50].tolist() == [1, 1]


# ------------------------------------------------------------------------------------------------
# Map normalization and checks
# ------------------------------------------------------------------------------------------------


def test_normalize_constant_gives_zeros_and_non_finite_is_an_error():
    out = M.normalize_map(np.full((7, 7), 3.5, dtype=np.float32), (224, 224))
    assert out.shape == (224, 224) and out.dtype == np.float64 and not out.any()
    # The reference scores a NaN map as all zeros (and crashes on inf); here neither is a number,
    # whatever resizing would make of it (down-sampling can drop the NaN, bicubic up-sampling
    # turns an inf into NaN).
    nan_map = np.ones((224, 224), dtype=np.float32)
    nan_map[3, 3] = np.nan
    for cam, size in [(nan_map, (224, 224)), (nan_map, (7, 7)), (nan_map.T[:4, :4], (8, 8))]:
        with pytest.raises(NonFiniteError, match="img_7: the map holds NaN or inf"):
            M.normalize_map(cam, size, "img_7")
    for size in [(2, 2), (4, 4)]:
        with pytest.raises(NonFiniteError, match="NaN or inf"):
            M.normalize_map(np.array([[0.0, np.inf], [1.0, 2.0]]), size)
    # Finite values that overflow float64 once resized or shifted are no number either.
    with pytest.raises(NonFiniteError, match="overflow"):
        M.normalize_map(np.array([[-1e308, 1e308], [0.0, 1.0]]), (2, 2))
    for bad, match in [(np.zeros((0, 5)), "empty"), (np.zeros((3, 3), complex), "real numbers")]:
        with pytest.raises(ValueError, match=match):
            M.normalize_map(bad, (4, 4))
    assert M.normalize_map(np.eye(3, dtype=bool), (3, 3)).tolist() == np.eye(3).tolist()


def test_normalize_min_max_and_same_size():
    cam = np.array([[2.0, 4.0], [6.0, 10.0]], dtype=np.float32)
    out = M.normalize_map(cam, (2, 2))
    np.testing.assert_array_equal(out, [[0.0, 0.25], [0.5, 1.0]])
    assert cam[0, 0] == 2.0  # the input is not modified


def test_normalize_resizes_bicubic_to_h_w():
    rng = np.random.default_rng(0)
    cam = rng.normal(size=(7, 9)).astype(np.float32)
    out = M.normalize_map(cam, (20, 30))
    assert out.shape == (20, 30) and out.dtype == np.float64
    assert out.min() == 0.0 and out.max() == 1.0
    # float32 input: the reference converts to float64 before resizing.
    expected = cv2.resize(cam.astype(np.float64), (30, 20), interpolation=cv2.INTER_CUBIC)
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    np.testing.assert_array_equal(out, literal_normalize(cam, (20, 30)))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)


def test_check_map_names_the_map():
    M.check_map(np.zeros((3, 3)), "ok")
    with pytest.raises(ValueError, match="img_7.*2-D"):
        M.check_map(np.zeros((1, 3, 3)), "img_7")
    with pytest.raises(ValueError, match="img_7.*NaN"):
        M.check_map(np.array([[0.0, np.nan]]), "img_7")
    with pytest.raises(ValueError, match="img_7.*NaN or inf"):
        M.check_map(np.array([[0.0, np.inf]]), "img_7")
    # finiteness is read off min and max: a NaN or an inf anywhere, in any float type, shows there
    for bad in (np.nan, np.inf, -np.inf):
        for dtype in (np.float16, np.float32, np.float64):
            scoremap = np.full((5, 4), 0.5, dtype)
            scoremap[3, 1] = bad
            with pytest.raises(NonFiniteError, match="img_7.*NaN or inf"):
                M.check_map(scoremap, "img_7")
    with pytest.raises(ValueError, match=r"img_7.*\[0, 1\].*max 1.5"):
        M.check_map(np.array([[0.0, 1.5]]), "img_7")
    with pytest.raises(ValueError, match="img_7"):
        M.check_map(np.array([[-0.1, 0.5]]), "img_7")


def test_quantized_unit_map_is_the_reference_quantization_checked_in_one_pass():
    """BoxCounter quantizes float32 / float64 maps in one pass with their check: the result is
    the reference's uint8(map * 255) in float64, written here as floor; any map check_map
    refuses is left to it (None), and update then raises check_map's own error."""
    from wsolbench.metrics.level_sets import quantized_unit_map

    rng = np.random.default_rng(11)
    edges = np.concatenate([np.arange(256) / 255, np.nextafter(np.arange(1, 256) / 255, 0), [0, 1]])
    for dtype in (np.float32, np.float64):
        for scoremap in (rng.random((37, 53)), np.resize(edges, (31, 33))):
            m = scoremap.astype(dtype)
            expected = np.floor(m.astype(np.float64) * 255).astype(np.uint8)
            np.testing.assert_array_equal(quantized_unit_map(m), expected)
            np.testing.assert_array_equal(quantized_unit_map(m.T), expected.T)  # not contiguous
    for bad in (np.nan, np.inf, -np.inf, -1e-12, np.nextafter(1.0, 2.0)):
        m = np.full((6, 5), 0.5)
        m[4, 2] = bad
        assert quantized_unit_map(m) is None
    for other in (np.zeros((4, 4), np.float16), np.zeros((4, 4), np.uint8), np.zeros((0, 3))):
        assert quantized_unit_map(other) is None
    assert quantized_unit_map(np.zeros((1, 4, 4))) is None
    counter = M.BoxCounter(M.threshold_grid(0.01))
    for bad, error in ((np.nan, NonFiniteError), (1.5, MapRangeError)):
        m = np.full((6, 5), 0.5, np.float32)
        m[4, 2] = bad
        with pytest.raises(error, match="scoremap"):
            counter.update(m, np.array([[0, 0, 2, 2]]))
    assert counter.n_images == 0
    counter.update(np.full((6, 5), 0.5, np.float16), np.array([[0, 0, 2, 2]]))  # check_map's kinds
    assert counter.n_images == 1


# ------------------------------------------------------------------------------------------------
# PxAP
# ------------------------------------------------------------------------------------------------


def _pxap_case():
    scoremap = np.array([[1.0, 0.6], [0.7, 0.2]])
    fg = np.array([[True, False], [False, True]])
    ignore = np.array([[True, False], [True, False]])  # (0, 0) is foreground: stays scored
    return scoremap, fg, ignore


def test_pxap_with_ignore_region_hand_computed():
    # Grid [0, 0.5], bins [0, .5), [.5, 1), [1, 2), [2, 3]. Foreground {1.0, 0.2}; background
    # {0.6}; 0.7 is ignored. From the top bin down: tp = [0, 1, 1, 2], fp = [0, 0, 1, 1];
    # precision[1:] = [1, 1/2, 2/3], recall = [0, 1/2, 1/2, 1]:
    # PxAP = 100 * (1 * 1/2 + 1/2 * 0 + 2/3 * 1/2) = 83.33...
    scoremap, fg, ignore = _pxap_case()
    counter = M.MaskCounter(M.threshold_grid(0.5))
    counter.update(scoremap, fg, ignore)
    assert counter.fg_hist.tolist() == [1, 0, 1, 0]
    assert counter.bg_hist.tolist() == [0, 1, 0, 0]
    assert M.pxap(counter.fg_hist, counter.bg_hist) == pytest.approx(100 * (0.5 + 1 / 3))
    # Without the ignore region 0.7 is background: precision[1:] = [1, 1/3, 1/2] -> 75.
    plain = M.MaskCounter(M.threshold_grid(0.5))
    plain.update(scoremap, fg, None)
    assert plain.bg_hist.tolist() == [0, 2, 0, 0]
    assert M.pxap(plain.fg_hist, plain.bg_hist) == pytest.approx(75.0)


def test_pxap_errors():
    with pytest.raises(ValueError, match="no foreground"):
        M.pxap(np.zeros(4), np.array([1, 2, 0, 0]))
    with pytest.raises(ValueError, match="no foreground"):
        M.pxap(np.zeros(4), np.zeros(4))
    # Unreachable with real histograms (tp + fn > 0 implies a positive prediction), kept as the
    # reference's second check: negative counts make every tp + fp zero.
    with pytest.raises(ValueError, match="no positive prediction"):
        M.pxap(np.array([0, 1]), np.array([0, -1]))


def test_mask_histogram_matches_numpy_histogram():
    rng = np.random.default_rng(3)
    grid = M.threshold_grid(0.01)
    counter = M.MaskCounter(grid)
    # Values exactly on the bin edges, 0 and 1, and random ones.
    values = np.concatenate([grid, [0.0, 1.0, 1.0], rng.random(5000)])
    expected = np.histogram(values, bins=np.append(grid, [1.0, 2.0, 3.0]))[0]
    np.testing.assert_array_equal(counter._hist(values), expected)


def test_read_mask(tmp_path):
    image = np.zeros((40, 60), dtype=np.uint8)
    image[10:30, 0:30] = 1  # a 0/1 mask: gray value 1 > 0.5 is on
    image[0, 58] = 1  # nearest neighbour samples even source columns
    path = tmp_path / "mask.png"
    cv2.imwrite(str(path), image)
    mask = M.read_mask(path, (20, 30))
    assert mask.dtype == bool and mask.shape == (20, 30)
    assert mask[5:15, 0:15].all() and not mask[0:5, 0:15].any() and not mask[5:15, 15:29].any()
    assert mask.sum() == 10 * 15 + 1
    with pytest.raises(ValueError, match="missing.png.*does not exist"):
        M.read_mask(tmp_path / "missing.png", (20, 30))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        M.read_mask(broken, (20, 30))


# ------------------------------------------------------------------------------------------------
# Counters: classification, merge, records
# ------------------------------------------------------------------------------------------------


def _square_map():
    m = np.zeros((10, 10))
    m[2:5, 2:5] = 1.0  # box [2, 2, 5, 5] at every tau
    return m


def test_topk_loc_and_cls_counts():
    grid = M.threshold_grid(0.5)
    counter = M.BoxCounter(grid)
    good, bad = np.array([[2, 2, 5, 5]]), np.array([[8, 8, 9, 9]])
    counter.update(_square_map(), good, label=3, topk=[3, 1, 2, 0, 4])  # loc ok, top-1 ok
    counter.update(_square_map(), good, label=2, topk=[3, 1, 2, 0, 4])  # loc ok, top-5 only
    counter.update(_square_map(), bad, label=3, topk=[3, 1, 2, 0, 4])  # loc wrong
    counter.update(_square_map(), good, label=9, topk=[3, 1, 2, 0, 4, 9])  # 6th: not top-5
    d = counter.to_dict()
    assert d["cls"] == {"n": 4, "top1": 2, "top5": 3}
    assert d["box"]["largest"]["50"] == [3, 3]
    assert d["box"]["top1_loc"] == [1, 1]
    assert d["box"]["top5_loc"] == [2, 2]
    metrics, _ = M.summarize(d)
    assert metrics["top1_cls"] == 50.0 and metrics["top5_cls"] == 75.0
    assert metrics["gt_known_loc"] == 75.0 and metrics["top1_loc"] == 25.0
    assert metrics["top5_loc"] == 50.0


def test_counter_modes_cannot_mix():
    counter = M.BoxCounter(M.threshold_grid(0.5))
    counter.update(_square_map(), np.array([[2, 2, 5, 5]]))
    with pytest.raises(ValueError, match="class predictions"):
        counter.update(_square_map(), np.array([[2, 2, 5, 5]]), label=1, topk=[1])
    with pytest.raises(ValueError, match="both label and topk"):
        counter.update(_square_map(), np.array([[2, 2, 5, 5]]), label=1)
    with pytest.raises(ValueError, match="x0 <= x1"):
        counter.update(_square_map(), np.array([[5, 2, 2, 5]]))
    with pytest.raises(ValueError, match="thresholds must be exactly"):
        M.BoxCounter(np.array([0.0, 0.3, 0.5]))
    split = M.SplitCounter(M.threshold_grid(0.5))
    split.update(_square_map(), gt_boxes=np.array([[2, 2, 5, 5]]))
    with pytest.raises(ValueError, match="same annotations"):
        split.update(_square_map())


def _random_maps(n, rng, size=24):
    maps = []
    for _ in range(n):
        low = rng.random((4, 4))
        maps.append(M.normalize_map(low, (size, size)))
    return maps


def test_merge_equals_single_pass_and_round_trips():
    rng = np.random.default_rng(7)
    grid = M.threshold_grid(0.05)
    maps = _random_maps(12, rng)
    boxes = [np.array([[2, 3, 15, 20], [10, 10, 23, 23]]) for _ in maps]
    fg = [m > 0.6 for m in maps]
    labels = [int(rng.integers(0, 4)) for _ in maps]
    topk = [list(rng.permutation(4)) for _ in maps]

    def run(idx):
        counter = M.SplitCounter(grid)
        for i in idx:
            counter.update(maps[i], boxes[i], labels[i], topk[i], foreground=fg[i], ignore=None)
        return counter

    whole = run(range(12))
    part = run(range(5))
    part.merge(run(range(5, 12)))
    assert part.to_dict() == whole.to_dict()
    assert whole.to_dict()["n_images"] == 12
    # JSON round trip, then merge_counts: elementwise sums.
    record = json.loads(json.dumps(whole.to_dict()))
    assert M.SplitCounter.from_dict(record).to_dict() == whole.to_dict()
    doubled = M.merge_counts(record, record)
    assert doubled["n_images"] == 24
    assert doubled["box"]["multi"]["50"] == [2 * c for c in record["box"]["multi"]["50"]]
    assert doubled["mask"]["fg_hist"] == [2 * c for c in record["mask"]["fg_hist"]]
    assert doubled["cls"]["top1"] == 2 * record["cls"]["top1"]
    # A merge into an empty counter adopts the other's layout.
    empty = M.SplitCounter(grid)
    empty.merge(whole)
    assert empty.to_dict() == whole.to_dict()
    # Inconsistent layouts refuse to merge.
    boxes_only = M.SplitCounter(grid)
    boxes_only.update(maps[0], boxes[0], labels[0], topk[0])
    before = boxes_only.to_dict()
    with pytest.raises(ValueError, match="'mask'"):
        boxes_only.merge(run(range(2)))
    assert boxes_only.to_dict() == before  # a refused merge changes nothing
    with pytest.raises(ValueError, match=r"box.multi.30 must hold 10 integers; got \(20,\)"):
        M.SplitCounter.from_dict({**record, "step": 0.1})


# ------------------------------------------------------------------------------------------------
# Summaries and policies
# ------------------------------------------------------------------------------------------------


def _counts(multi, largest, n=4, top=None, cls=None, step=0.25, ious=(30, 50, 70)):
    box = {
        "multi": {str(d): c for d, c in zip(ious, multi, strict=True)},
        "largest": {str(d): c for d, c in zip(ious, largest, strict=True)},
    }
    record = {"n_images": n, "step": step, "iou_thresholds": list(ious), "box": box}
    if top is not None:
        box["top1_loc"], box["top5_loc"] = top
    if cls is not None:
        record["cls"] = cls
    return record


TEST = _counts(
    multi=[[1, 4, 3, 0], [0, 2, 2, 1], [0, 0, 1, 1]],
    largest=[[2, 4, 3, 0], [1, 3, 3, 0], [0, 1, 1, 0]],
    top=([1, 2, 1, 0], [1, 3, 2, 0]),
    cls={"n": 4, "top1": 2, "top5": 3},
)
VAL = _counts(
    multi=[[0, 1, 2, 0], [0, 0, 0, 3], [2, 0, 0, 0]],
    largest=[[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]],
    n=3,
)


def test_summarize_oracle():
    metrics, chosen = M.summarize(TEST, "oracle")
    assert metrics == {
        "maxboxacc_iou30": 100.0,
        "maxboxacc_iou50": 50.0,
        "maxboxacc_iou70": 25.0,
        "maxboxacc_v2": float(np.mean([100.0, 50.0, 25.0])),
        "maxboxacc": 75.0,
        "gt_known_loc": 75.0,
        "top1_loc": 50.0,
        "top5_loc": 75.0,
        "top1_cls": 50.0,
        "top5_cls": 75.0,
    }
    assert all(type(v) is float for v in metrics.values())
    # Ties go to the lowest tau: iou50 peaks at 0.25 and 0.5, GT-known at 0.25 and 0.5.
    assert chosen["maxboxacc_iou50"] == 0.25 and chosen["gt_known_loc"] == 0.25
    assert chosen["maxboxacc_iou70"] == 0.5
    assert "maxboxacc_v2" not in chosen and "top1_cls" not in chosen


def test_oracle_reads_top_k_loc_at_gt_known_loc_s_tau():
    """spec/protocol.md: under oracle, Top-1 / Top-5 Loc are read at GT-known Loc's best τ (one τ
    per model); oracle-separate reads each at its own best. Hand-made curves over 4 τ, 4 images:
    GT-known peaks at τ index 0 (3 of 4), Top-1 Loc at index 1 (2 of 4), Top-5 Loc at index 1."""
    counts = _counts(
        multi=[[4, 4, 3, 0], [3, 2, 2, 0], [1, 1, 1, 0]],
        largest=[[4, 4, 3, 0], [3, 2, 1, 0], [1, 1, 0, 0]],
        top=([1, 2, 1, 0], [2, 2, 1, 0]),
        cls={"n": 4, "top1": 2, "top5": 3},
    )
    at_gt_known, chosen = M.summarize(counts, "oracle")
    assert at_gt_known["gt_known_loc"] == 75.0 and chosen["gt_known_loc"] == 0.0
    assert (at_gt_known["top1_loc"], chosen["top1_loc"]) == (25.0, 0.0)  # 1 of 4 at τ = 0
    assert (at_gt_known["top5_loc"], chosen["top5_loc"]) == (50.0, 0.0)
    separate, chosen = M.summarize(counts, "oracle-separate")
    assert (separate["top1_loc"], chosen["top1_loc"]) == (50.0, 0.25)  # its own best, 2 of 4
    assert separate["top5_loc"] == 50.0 and chosen["top5_loc"] == 0.0  # ties: the lowest τ
    assert {k: v for k, v in separate.items() if k not in ("top1_loc",)} == {
        k: v for k, v in at_gt_known.items() if k not in ("top1_loc",)
    }


def test_summarize_select_uses_val_taus():
    metrics, chosen = M.summarize(TEST, "select", val_counts=VAL)
    # val argmax: iou30 -> 0.5, iou50 -> 0.75, iou70 -> 0.0, GT-known (largest@50) -> 0.5.
    assert chosen["maxboxacc_iou30"] == 0.5 and metrics["maxboxacc_iou30"] == 75.0
    assert chosen["maxboxacc_iou50"] == 0.75 and metrics["maxboxacc_iou50"] == 25.0
    assert chosen["maxboxacc_iou70"] == 0.0 and metrics["maxboxacc_iou70"] == 0.0
    assert metrics["maxboxacc_v2"] == float(np.mean([75.0, 25.0, 0.0]))
    for key, value in (("maxboxacc", 75.0), ("gt_known_loc", 75.0), ("top1_loc", 25.0)):
        assert chosen[key] == 0.5 and metrics[key] == value
    assert metrics["top5_loc"] == 50.0
    assert metrics["top1_cls"] == 50.0  # not thresholded
    with pytest.raises(ValueError, match="validation split with boxes"):
        M.summarize(TEST, "select")
    with pytest.raises(ValueError, match="validation split with boxes"):
        M.summarize(TEST, "select", val_counts={"n_images": 3, "step": 0.25, "mask": {}})
    with pytest.raises(ValueError, match="step"):
        M.summarize(TEST, "select", val_counts={**VAL, "step": 0.5})


def test_summarize_fixed():
    metrics, chosen = M.summarize(TEST, "fixed:0.5")
    assert metrics["maxboxacc_iou30"] == 75.0 and metrics["maxboxacc_iou50"] == 50.0
    assert metrics["maxboxacc_iou70"] == 25.0 and metrics["maxboxacc_v2"] == 50.0
    assert metrics["gt_known_loc"] == 75.0 and metrics["top1_loc"] == 25.0
    assert set(chosen.values()) == {0.5}
    # The nearest grid tau: 0.6 -> 0.5, 0.7 -> 0.75, 0.99 -> 0.75.
    assert M.summarize(TEST, "fixed:0.6")[1]["gt_known_loc"] == 0.5
    assert M.summarize(TEST, "fixed:0.7")[1]["gt_known_loc"] == 0.75
    assert M.summarize(TEST, "fixed:0.99")[0]["maxboxacc_iou70"] == 25.0


def test_summarize_absent_metrics():
    plain = _counts(multi=[[1, 1, 0, 0]] * 3, largest=[[1, 1, 0, 0]] * 3)
    metrics, _ = M.summarize(plain)
    assert "top1_loc" not in metrics and "top1_cls" not in metrics and "pxap" not in metrics
    assert metrics["maxboxacc_v2"] == 25.0
    only50 = _counts(multi=[[1, 2, 0, 0]], largest=[[2, 1, 0, 0]], ious=(50,))
    metrics, _ = M.summarize(only50)
    assert set(metrics) == {"maxboxacc_iou50", "maxboxacc", "gt_known_loc"}
    assert metrics["maxboxacc"] == 50.0 and metrics["maxboxacc_iou50"] == 50.0
    # A mask-only split: PxAP (the same under every policy) and the overlap metrics, no box metric.
    mask = M.MaskCounter(M.threshold_grid(0.5))
    mask.update(*_pxap_case())
    record = {**mask.to_dict(), "iou_thresholds": [30, 50, 70]}
    oracle = M.summarize(record)[0]
    assert set(oracle) == {"pxap", "dice_fg", "dice_bg", "miou", "tpr", "fnr", "tnr", "fpr"}
    assert oracle["pxap"] == pytest.approx(100 * (0.5 + 1 / 3))
    assert M.summarize(record, "fixed:0.2")[0]["pxap"] == oracle["pxap"]
    with pytest.raises(ValueError, match="no image"):
        M.summarize({**plain, "n_images": 0})


def test_parse_policy():
    assert M.parse_policy("oracle") == "oracle"
    assert M.parse_policy("Oracle-Separate") == "oracle-separate"
    assert M.parse_policy(" SELECT ") == "select"
    assert M.parse_policy("fixed:.2") == "fixed:0.2"
    assert M.parse_policy("fixed:0") == "fixed:0.0"
    for bad in ("fixed:1", "fixed:-0.1", "fixed:abc", "fixed:nan"):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            M.parse_policy(bad)
    with pytest.raises(ValueError, match="oracle.*select.*fixed"):
        M.parse_policy("best")
