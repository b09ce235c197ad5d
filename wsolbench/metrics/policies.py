"""Threshold policies and summaries: a split's counts record -> its metrics under a policy, and
every split's under the policies a result records (:func:`metrics_from_counts`).

A policy picks the map threshold each metric is read at: ``oracle`` (the best on the split itself),
``select`` (the best on the selection split's counts) or ``fixed:<tau>``.

Top-1 / Top-5 Loc are read at GT-known Loc's τ under every policy (one τ per model, as papers
that fix a CAM threshold read all three): under ``oracle`` that is GT-known Loc's best τ on the
split, not Top-1 Loc's own best, which would read it more kindly than GT-known (cam seed 0 on
synthetic-v1: 0.648 against 0.577). ``oracle-separate`` is that kinder reading, each metric at its
own best τ, named wherever it is used.

Likewise Dice FG, Dice BG, mIoU and the TP / FN / TN / FP rates (:mod:`~wsolbench.metrics.overlap`,
on every split with mask counts) are read at one τ, the best mIoU: on the split itself under
``oracle`` (an oracle reading, named as such), on the selection split's mask counts under
``select`` (the histology protocols' rule: best mIoU on valpx); ``oracle-separate`` reads Dice and
mIoU each at its own best τ and the rates still at mIoU's, a rate having no best of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from wsolbench.metrics.counters import GT_KNOWN_IOU
from wsolbench.metrics.counts import check_counts
from wsolbench.metrics.maps import threshold_grid
from wsolbench.metrics.overlap import MASK_TAU_KEYS, OVERLAP_KEYS, overlap_curves
from wsolbench.metrics.pxap import pxap

logger = logging.getLogger(__name__)

# The policies every result records (wsolbench.results.record); others are recomputed on demand.
POLICIES = ("oracle", "select")
# MaxBoxAccV2 is the mean over exactly these IoU thresholds (percent).
V2_IOU_THRESHOLDS = (30, 50, 70)
ORACLE_POLICIES = ("oracle", "oracle-separate")  # best τ on the evaluated split itself
TOP_K_LOC = ("top1_loc", "top5_loc")


def parse_policy(text: str) -> str:
    """Validate a threshold policy: ``oracle``, ``oracle-separate``, ``select`` or
    ``fixed:<tau in [0, 1)>``.

    Returns:
        The canonical spelling (``fixed:0.2`` for ``fixed:.20``).
    """
    policy = str(text).strip().lower()
    if policy in (*ORACLE_POLICIES, "select"):
        return policy
    if policy.startswith("fixed:"):
        try:
            tau = float(policy.split(":", 1)[1])
        except ValueError:
            tau = float("nan")
        if not 0.0 <= tau < 1.0:  # also rejects NaN
            raise ValueError(
                f"policy '{text}': the fixed threshold must be a number in [0, 1), e.g. fixed:0.2"
            )
        return f"fixed:{tau!r}"
    raise ValueError(
        f"unknown threshold policy '{text}'; "
        "use 'oracle', 'oracle-separate', 'select' or 'fixed:<tau>' (e.g. fixed:0.2)"
    )


def _acc(counts, n: int) -> np.ndarray:
    # Same expression as the reference: num_correct * 100. / float(cnt).
    return np.asarray(counts, dtype=np.float64) * 100.0 / float(n)


def summarize(
    counts: dict, policy: str = "oracle", val_counts: dict | None = None
) -> tuple[dict, dict]:
    """counts -> (metrics, chosen) for one split.

    Args:
        counts: the split's counts record (:mod:`wsolbench.metrics.counts`).
        policy: ``oracle`` (each metric at its own best tau on this split, except Top-1 / Top-5
            Loc, read at GT-known Loc's), ``oracle-separate`` (each metric at its own best tau,
            Top-k Loc included), ``select`` (taus chosen on ``val_counts``: per IoU threshold for
            ``maxboxacc_iouXX`` / ``maxboxacc_v2``, GT-known's tau for ``maxboxacc`` /
            ``gt_known_loc`` / ``top1_loc`` / ``top5_loc``), or ``fixed:<tau>`` (the grid tau
            nearest to the given one). Ties go to the lowest tau.
        val_counts: counts record of the selection split (``select`` only): its box curves pick
            the box metrics' taus, its mask histograms the tau of Dice, mIoU and the rates
            (best mIoU).

    Returns:
        metrics: {key: percent as float} with keys among maxboxacc_v2, maxboxacc_iou30/50/70,
            maxboxacc, gt_known_loc, top1_loc, top5_loc, top1_cls, top5_cls, pxap, dice_fg,
            dice_bg, miou, tpr, fnr, tnr, fpr; a metric that does not apply is absent.
            ``maxboxacc`` equals ``gt_known_loc`` (largest rule, IoU 50).
        chosen: {key: tau} for the thresholded metrics (maxboxacc_v2 uses the taus of its
            maxboxacc_iouXX entries, so it has none of its own).
    """
    policy = parse_policy(policy)
    check_counts(counts)
    n = int(counts["n_images"])
    thresholds = threshold_grid(counts["step"])
    metrics: dict[str, float] = {}
    chosen: dict[str, float] = {}
    box = counts.get("box")

    if box is not None:
        # (metric, curve, val-side curve that picks its tau under "select")
        plan = [
            (f"maxboxacc_iou{d}", box["multi"][str(d)], ("multi", str(d)))
            for d in counts["iou_thresholds"]
        ]
        if str(GT_KNOWN_IOU) in box["largest"]:
            gt_known = box["largest"][str(GT_KNOWN_IOU)]
            for key in ("maxboxacc", "gt_known_loc"):
                plan.append((key, gt_known, ("largest", str(GT_KNOWN_IOU))))
            for key in ("top1_loc", "top5_loc"):
                if key in box:
                    plan.append((key, box[key], ("largest", str(GT_KNOWN_IOU))))
        if policy == "select" and isinstance(val_counts, dict) and "box" in val_counts:
            check_counts(val_counts)  # (without boxes, the picker's message says more)
        pick = _tau_picker(
            policy, thresholds, val_counts if isinstance(val_counts, dict) else None, counts["step"]
        )
        for key, curve, val_key in plan:
            acc = _acc(curve, n)
            idx = int(np.argmax(acc)) if pick is None else pick(val_key)
            if key in TOP_K_LOC and policy == "oracle":
                idx = int(np.argmax(_acc(gt_known, n)))  # one τ per model: GT-known Loc's
            metrics[key] = float(acc[idx])
            chosen[key] = float(thresholds[idx])
        if all(f"maxboxacc_iou{d}" in metrics for d in V2_IOU_THRESHOLDS):
            metrics["maxboxacc_v2"] = float(
                np.mean([metrics[f"maxboxacc_iou{d}"] for d in V2_IOU_THRESHOLDS])
            )

    cls = counts.get("cls")
    if cls is not None and int(cls["n"]) > 0:
        metrics["top1_cls"] = float(int(cls["top1"]) * 100.0 / float(cls["n"]))
        metrics["top5_cls"] = float(int(cls["top5"]) * 100.0 / float(cls["n"]))
    mask = counts.get("mask")
    if mask is not None:
        metrics["pxap"] = pxap(mask["fg_hist"], mask["bg_hist"])
        curves = overlap_curves(mask["fg_hist"], mask["bg_hist"])
        # one τ for all (the best mIoU's), except under oracle-separate: Dice and mIoU each at
        # its own best (the rates, which have none, stay at mIoU's)
        separate = policy == "oracle-separate"
        if separate:
            shared = int(np.argmax(curves["miou"]))
        else:
            shared = _overlap_index(policy, curves, thresholds, val_counts, counts["step"])
        for key in MASK_TAU_KEYS:
            own = separate and key in OVERLAP_KEYS
            idx = int(np.argmax(curves[key])) if own else shared
            metrics[key] = float(curves[key][idx])
            chosen[key] = float(thresholds[idx])
    return metrics, chosen


def _nearest_index(thresholds: np.ndarray, policy: str) -> int:
    """The grid index of a ``fixed:<tau>`` policy's tau (the nearest grid tau)."""
    return int(np.argmin(np.abs(thresholds - float(policy.split(":", 1)[1]))))


def _overlap_index(
    policy: str,
    curves: dict[str, np.ndarray],
    thresholds: np.ndarray,
    val_counts: dict | None,
    step: float,
) -> int:
    """The grid index Dice, mIoU and the rates are read at under ``oracle``, ``select`` or
    ``fixed``: the best mIoU on this split or on ``val_counts``, or the fixed tau. Ties go to the
    lowest tau, as everywhere."""
    if policy == "oracle":
        return int(np.argmax(curves["miou"]))
    if policy.startswith("fixed:"):
        return _nearest_index(thresholds, policy)
    val_mask = val_counts.get("mask") if isinstance(val_counts, dict) else None
    if val_mask is None or not int(val_counts.get("n_images", 0)):
        raise ValueError(
            "policy 'select' needs the counts of a validation split with masks (val_counts) to "
            "choose the threshold of Dice, mIoU and the rates; this protocol has none: use "
            "--policy oracle or fixed:<tau>"
        )
    check_counts(val_counts)
    if float(val_counts["step"]) != float(step):
        raise ValueError(
            f"policy 'select': validation step {val_counts['step']} != split step {step}"
        )
    return int(np.argmax(overlap_curves(val_mask["fg_hist"], val_mask["bg_hist"])["miou"]))


def _tau_picker(policy: str, thresholds: np.ndarray, val_counts: dict | None, step: float):
    """None for the oracle policies; else a function (section, delta) -> threshold index."""
    if policy in ORACLE_POLICIES:
        return None
    if policy.startswith("fixed:"):
        idx = _nearest_index(thresholds, policy)
        return lambda _val_key: idx
    if val_counts is None or "box" not in val_counts or not int(val_counts.get("n_images", 0)):
        raise ValueError(
            "policy 'select' needs the counts of a validation split with boxes (val_counts); "
            "this protocol has none: use --policy oracle or fixed:<tau>"
        )
    if float(val_counts["step"]) != float(step):
        raise ValueError(
            f"policy 'select': validation step {val_counts['step']} != split step {step}"
        )

    def pick(val_key: tuple[str, str]) -> int:
        section, delta = val_key
        curve = val_counts["box"][section].get(delta)
        if curve is None:
            raise ValueError(
                f"policy 'select': the validation counts have no {section} curve at IoU {delta}"
            )
        return int(np.argmax(np.asarray(curve, dtype=np.int64)))

    return pick


def describe_policy(
    policy: str,
    split: str = "test",
    taus: Sequence[float] = (),
    overlap: bool = False,
    top_loc: bool = True,
) -> str:
    """One line saying what a threshold policy means: ``"fixed:0.2 (τ = 0.2 for every metric)"``.

    Args:
        policy: canonical policy text (:func:`wsolbench.metrics.parse_policy`).
        split: the evaluated split.
        taus: for ``fixed``, the grid thresholds actually used (the grid τ nearest the request),
            named when they differ from the request.
        overlap: the table shows the mask metrics read at a τ (Dice, mIoU, the rates), which
            ``oracle`` and ``select`` read at one τ, the best mIoU, and ``oracle-separate`` the
            rates at mIoU's (:mod:`wsolbench.metrics.policies`): say so.
        top_loc: the table shows Top-1 / Top-5 Loc, which ``oracle`` reads at GT-known Loc's τ:
            say so (a board without boxes has none).
    """
    masks = "Dice FG / BG, mIoU and TPR / FNR / TNR / FPR"
    if policy == "oracle":
        read_at = ["Top-1 / Top-5 Loc at GT-known Loc's"] if top_loc else []
        read_at += [f"{masks} at mIoU's"] if overlap else []
        also = "".join(f"; {text}" for text in read_at)
        return f"oracle (each metric at its best τ on the {split} split{also})"
    if policy == "oracle-separate":
        also = "; TPR / FNR / TNR / FPR at mIoU's" if overlap else ""
        return f"oracle-separate (each metric at its own best τ on the {split} split{also})"
    if policy == "select":
        also = f"; {masks} at val's best mIoU" if overlap else ""
        return f"select (τ chosen per run on the val split, applied to the {split} split{also})"
    if policy.startswith("fixed:"):
        requested = policy.split(":", 1)[1]
        used = sorted({round(t, 6) for t in taus})
        if used and used != [round(float(requested), 6)]:
            grid = ", ".join(f"{t:g}" for t in used)
            return f"{policy} (nearest grid τ = {grid} for every metric)"
        return f"{policy} (τ = {requested} for every metric)"
    return policy


def can_select(split_counts: dict | None) -> bool:
    """Whether a split's counts record can choose thresholds (the ``select`` policy): it holds
    box curves or mask histograms."""
    return bool(split_counts) and bool(split_counts.get("box") or split_counts.get("mask"))


def metrics_from_counts(
    counts: dict[str, dict], policies: Sequence[str] = POLICIES
) -> dict[str, dict[str, dict[str, float]]]:
    """Summarize every split's counts under each threshold policy.

    Args:
        counts: ``counts[split]`` = a counts record of :mod:`wsolbench.metrics`.
        policies: policy names (``"oracle"``, ``"select"``, ``"fixed:<tau>"``; the output uses
            the canonical spelling of :func:`wsolbench.metrics.parse_policy`). ``select`` chooses
            thresholds on ``counts["val"]``; without a val split with boxes or masks it is
            omitted and a warning is logged.

    Returns:
        ``metrics[split][policy][key]`` in percent [0, 100].
    """
    policies = [parse_policy(p) for p in policies]
    val = counts.get("val")
    selectable = can_select(val)
    if "select" in policies and not selectable:
        logger.warning(
            "no val split with boxes or masks: the 'select' policy (thresholds chosen on val) "
            "is left out; only %s are reported",
            ", ".join(p for p in policies if p != "select") or "no policy",
        )
    out: dict[str, dict[str, dict[str, float]]] = {}
    for split, split_counts in counts.items():
        out[split] = {}
        for policy in policies:
            if policy == "select" and not selectable:
                continue
            values, _chosen = summarize(
                split_counts, policy, val_counts=val if policy == "select" else None
            )
            out[split][policy] = values
    return out
