"""Dice FG, Dice BG, mIoU and the TP / FN / TN / FP rates (shared/spec/histology.md): hand-computed
from the spec's formulas on a tiny split, under every threshold policy, and where they appear (mask
splits only)."""

from __future__ import annotations

import numpy as np
import pytest

from wsolbench import metrics as M
from wsolbench.metrics.overlap import overlap_curves

# One 2 x 7 map, step 0.25: τ ∈ {0, .25, .5, .75}; a pixel is predicted foreground at τ iff its
# value >= τ (PxAP's reading of the histogram bins). Values on a grid edge (0.5, 0.25) test the >=.
FG_VALUES = [1.0, 0.9, 0.5, 0.3]  # F = 4
BG_VALUES = [0.0, 0.1, 0.2, 0.0, 0.1, 0.2, 0.0, 0.1, 0.25, 0.8]  # B = 10
# By hand, per τ:         TP FP FN TN
#   τ = 0                  4 10  0  0
#   τ = .25                4  2  0  8   (0.25 and 0.8 of the background)
#   τ = .5                 3  1  1  9   (0.5 is >= .5: still a TP)
#   τ = .75                2  1  2  9
DICE_FG = [8 / 18, 8 / 10, 6 / 8, 4 / 7]  # 2TP / (2TP + FP + FN)
DICE_BG = [0 / 10, 16 / 18, 18 / 20, 18 / 21]  # 2TN / (2TN + FN + FP)
IOU_FG = [4 / 14, 4 / 6, 3 / 5, 2 / 5]  # TP / (TP + FP + FN)
IOU_BG = [0 / 10, 8 / 10, 9 / 11, 9 / 12]  # TN / (TN + FN + FP)
MIOU = [(f + b) / 2 for f, b in zip(IOU_FG, IOU_BG, strict=True)]  # best at τ = .25 (index 1)
# The rates as LIVIA's evaluator reads them: TP and FN over the foreground pixels (F = 4), TN and
# FP over the background pixels (B = 10), pooled over the split
TPR = [4 / 4, 4 / 4, 3 / 4, 2 / 4]
FNR = [0 / 4, 0 / 4, 1 / 4, 2 / 4]
TNR = [0 / 10, 8 / 10, 9 / 10, 9 / 10]
FPR = [10 / 10, 2 / 10, 1 / 10, 1 / 10]
RATES = {"tpr": TPR, "fnr": FNR, "tnr": TNR, "fpr": FPR}


def _record(fg_values, bg_values, step=0.25) -> dict:
    values = np.array([*fg_values, *bg_values], dtype=np.float64)
    width = len(values) // 2 if len(values) % 2 == 0 else len(values)
    scoremap = values.reshape(-1, width)
    foreground = np.zeros(len(values), bool)
    foreground[: len(fg_values)] = True
    counter = M.MaskCounter(M.threshold_grid(step))
    counter.update(scoremap, foreground.reshape(scoremap.shape), None)
    return {**counter.to_dict(), "iou_thresholds": [30, 50, 70]}


TEST = _record(FG_VALUES, BG_VALUES)


def test_histograms_and_curves_match_the_hand_counts():
    assert TEST["mask"]["fg_hist"] == [0, 1, 1, 1, 1, 0]  # bins [0,.25) [.25,.5) ... [1,2) [2,3]
    assert TEST["mask"]["bg_hist"] == [8, 1, 0, 1, 0, 0]
    curves = overlap_curves(TEST["mask"]["fg_hist"], TEST["mask"]["bg_hist"])
    np.testing.assert_allclose(curves["dice_fg"], 100 * np.array(DICE_FG), rtol=1e-12)
    np.testing.assert_allclose(curves["dice_bg"], 100 * np.array(DICE_BG), rtol=1e-12)
    np.testing.assert_allclose(curves["miou"], 100 * np.array(MIOU), rtol=1e-12)
    for key, rate in RATES.items():
        np.testing.assert_allclose(curves[key], 100 * np.array(rate), rtol=1e-12, err_msg=key)


def _rates(metrics: dict) -> list[float]:
    return [metrics[key] for key in ("tpr", "fnr", "tnr", "fpr")]


def test_rates_of_a_small_map_counted_by_hand():
    """A 3 x 4 map and mask, every pixel counted here at τ = 0.5 (predicted iff map >= 0.5)."""
    scoremap = np.array(
        [[0.9, 0.7, 0.2, 0.0],
         [0.6, 0.4, 0.5, 0.1],
         [0.3, 0.8, 0.0, 0.0]]
    )  # fmt: skip
    mask = np.array(
        [[1, 1, 0, 0],
         [1, 1, 0, 0],
         [0, 0, 0, 1]], bool
    )  # fmt: skip
    # foreground (5): 0.9 0.7 0.6 predicted (TP 3); 0.4 and the 0.0 at the corner missed (FN 2)
    # background (7): 0.5 and 0.8 predicted (FP 2); 0.2 0.0 0.1 0.3 0.0 not (TN 5)
    counter = M.MaskCounter(M.threshold_grid(0.25))
    counter.update(scoremap, mask, None)
    record = {**counter.to_dict(), "iou_thresholds": [30, 50, 70]}
    metrics, chosen = M.summarize(record, "fixed:0.5")
    assert _rates(metrics) == pytest.approx([100 * 3 / 5, 100 * 2 / 5, 100 * 5 / 7, 100 * 2 / 7])
    assert chosen["tpr"] == chosen["fpr"] == 0.5


def test_rates_pool_the_split_s_pixels_not_images():
    """One foreground pixel found in image A, three missed in image B: TPR is 1 / 4 of the split's
    foreground pixels (LIVIA's histograms are summed over the split), not the mean of 100 and 0."""
    counter = M.MaskCounter(M.threshold_grid(0.5))
    counter.update(np.array([[0.9, 0.0]]), np.array([[True, False]]), None)
    counter.update(np.array([[0.1, 0.2, 0.3, 0.0]]), np.array([[True, True, True, False]]), None)
    record = {**counter.to_dict(), "iou_thresholds": [30, 50, 70]}
    assert _rates(M.summarize(record, "fixed:0.5")[0]) == pytest.approx([25.0, 75.0, 100.0, 0.0])


def test_oracle_reads_all_three_at_the_best_miou():
    metrics, chosen = M.summarize(TEST, "oracle")
    assert metrics["miou"] == pytest.approx(100 * MIOU[1]) == pytest.approx(100 * (4 / 6 + 0.8) / 2)
    assert metrics["dice_fg"] == pytest.approx(80.0)
    assert metrics["dice_bg"] == pytest.approx(100 * 16 / 18)  # not its own best (90 at τ = .5)
    assert chosen["miou"] == chosen["dice_fg"] == chosen["dice_bg"] == 0.25
    assert _rates(metrics) == pytest.approx([100.0, 0.0, 80.0, 20.0])  # TP 4 FN 0 TN 8 FP 2
    assert {chosen[key] for key in RATES} == {0.25}
    separate, chosen = M.summarize(TEST, "oracle-separate")
    assert separate["dice_bg"] == pytest.approx(90.0) and chosen["dice_bg"] == 0.5
    assert separate["dice_fg"] == pytest.approx(80.0) and separate["miou"] == metrics["miou"]
    # a rate has no best of its own (TPR is 100 at τ = 0, FNR's maximum its worst): mIoU's τ
    assert _rates(separate) == _rates(metrics) and {chosen[key] for key in RATES} == {0.25}


def test_fixed_and_select():
    fixed, chosen = M.summarize(TEST, "fixed:0.5")
    assert fixed["dice_fg"] == pytest.approx(75.0) and fixed["dice_bg"] == pytest.approx(90.0)
    assert fixed["miou"] == pytest.approx(100 * (3 / 5 + 9 / 11) / 2)
    assert _rates(fixed) == pytest.approx([75.0, 25.0, 90.0, 10.0])  # TP 3 FN 1 TN 9 FP 1
    assert set(chosen.values()) == {0.5}
    # val: two foreground pixels at 0.8 and background below: mIoU is 1 at τ = .75 only
    # (τ = .5: TP 2, FP 1 (the 0.6), TN 3 -> (2/3 + 3/4) / 2)
    val = _record([0.8, 0.8], [0.0, 0.1, 0.2, 0.6])
    selected, chosen = M.summarize(TEST, "select", val_counts=val)
    assert chosen["miou"] == chosen["dice_fg"] == chosen["dice_bg"] == 0.75
    assert selected["dice_fg"] == pytest.approx(100 * 4 / 7)
    assert selected["dice_bg"] == pytest.approx(100 * 18 / 21)
    assert selected["miou"] == pytest.approx(100 * (0.4 + 0.75) / 2)
    assert _rates(selected) == pytest.approx([50.0, 50.0, 90.0, 10.0])  # TP 2 FN 2 TN 9 FP 1
    assert {chosen[key] for key in RATES} == {0.75}
    assert selected["pxap"] == M.summarize(TEST)[0]["pxap"]  # PxAP has no threshold
    with pytest.raises(ValueError, match="validation split with masks"):
        M.summarize(TEST, "select")
    boxes_only = {"n_images": 1, "step": 0.25, "iou_thresholds": [50], "box": {}}
    with pytest.raises(ValueError, match="validation split with masks"):
        M.summarize(TEST, "select", val_counts=boxes_only)


def test_an_empty_class_agrees_with_an_empty_prediction():
    """No background pixel and none predicted: 0 / 0 counts as full agreement, never NaN."""
    record = _record([0.9, 1.0], [])
    curves = overlap_curves(record["mask"]["fg_hist"], record["mask"]["bg_hist"])
    assert np.isfinite(curves["miou"]).all()
    np.testing.assert_allclose(curves["dice_bg"], 100.0)  # TN = FN = FP = 0 at every τ
    assert M.summarize(record)[0]["miou"] == 100.0
    # no background pixel: none wrongly predicted (FPR 0), all of none kept (TNR 100), as Dice BG
    np.testing.assert_allclose(curves["tnr"], 100.0)
    np.testing.assert_allclose(curves["fpr"], 0.0)
    # and no foreground pixel (a normal patch's split): none missed (FNR 0), all of none found
    empty = _record([], [0.1, 0.9])
    curves = overlap_curves(empty["mask"]["fg_hist"], empty["mask"]["bg_hist"])
    np.testing.assert_allclose(curves["tpr"], 100.0)
    np.testing.assert_allclose(curves["fnr"], 0.0)
    # τ = 0, .25, .5, .75: both background pixels, then 0.9 alone, predicted foreground
    np.testing.assert_allclose(curves["fpr"], [100.0, 50.0, 50.0, 50.0])


def test_only_splits_with_mask_counts_have_them():
    box = {"multi": {"50": [1, 1]}, "largest": {"50": [1, 0]}}
    boxes = {"n_images": 2, "step": 0.5, "iou_thresholds": [50], "box": box}
    for policy in ("oracle", "oracle-separate", "fixed:0.5"):
        assert not {"dice_fg", "dice_bg", "miou", *RATES} & set(M.summarize(boxes, policy)[0])
