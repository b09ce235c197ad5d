"""What the intervals claim, checked by simulation: BCa corrects the oracle maximum's optimism,
interval and p-value never disagree, the two-level bootstrap sees seed noise, and the letter
groups follow Holm-corrected pairwise tests."""

import numpy as np
import pytest
from scipy.stats import norm

from wsolbench.results.bootstrap import metric_terms
from wsolbench.results.confidence import (
    BCA,
    PERCENTILE,
    Replicates,
    direction,
    format_p,
    interval,
    p_value,
)
from wsolbench.results.per_image import SplitRecords
from wsolbench.results.row_bootstrap import paired_difference, row_replicates
from wsolbench.results.ties import holm, letter_groups, supported_order


def _curve_records(bits: np.ndarray) -> SplitRecords:
    """Records whose GT-known curve is ``bits`` [N, T] (every IoU curve the same)."""
    n, t = bits.shape
    curves = np.repeat(bits[:, None], 3, axis=1)
    return SplitRecords(
        np.array([f"{i:05d}" for i in range(n)]), 1 / t, [30, 50, 70], multi=curves, largest=curves
    )


def _cls_records(hits: np.ndarray) -> SplitRecords:
    n = len(hits)
    return SplitRecords(
        np.array([f"{i:05d}" for i in range(n)]), 0.01, [30, 50, 70], top1=hits, top5=hits
    )


def test_bca_corrects_the_optimism_of_the_oracle_maximum():
    """Simulated: GT-known Loc under ``oracle``, the maximum over T = 50 thresholds of correlated
    per-image bits (a Gaussian copula: image i is right at τ when 0.9 z_i + 0.44 e_iτ < Φ⁻¹(p_τ),
    z and e standard normal). The true accuracies p_τ: 50 % at the best τ, 48 % at five others
    (near-ties, about one standard error of a difference apart), 30 % elsewhere; so the truth,
    the best τ's accuracy, is 50 %. 400 test sets of N = 200 images, B = 300 resamples each.

    The sample maximum is optimistic (about +1.3 points), and its resampled maxima again: the
    percentile interval sits too high, covers about 0.90 (0.899 over 1,000 test sets) and misses
    only on one side, the truth below it. BCa moves it down: about 0.94 (0.939 over 1,000 test
    sets; 0.920-0.948 over four seeds of 400), as close to 0.95 as the percentile interval of a
    plain mean gets at this N and B (the control, the accuracy at the known best τ: 0.94-0.96).
    Not exactly 0.95, nor fully balanced: the bootstrap sees about 80 % of the optimism of
    near-tied maxima (less where the top is flat, more where it is isolated; docs/statistics.md).
    """
    n, t, sets, resamples = 200, 50, 400, 300
    p = np.full(t, 0.30)
    p[0], p[1:6] = 0.50, 0.48
    cut = norm.ppf(p)
    rng = np.random.default_rng(2024)
    covered = {BCA: 0, PERCENTILE: 0, "control": 0}
    above = {BCA: 0, PERCENTILE: 0}  # misses with the truth below the interval
    for s in range(sets):
        latent = 0.9 * rng.standard_normal((n, 1)) + np.sqrt(1 - 0.81) * rng.standard_normal((n, t))
        records = _curve_records(latent < cut)
        rep = row_replicates(
            [metric_terms(records, "gt_known_loc", None)], resamples, s, jackknife=True
        )
        for kind in (BCA, PERCENTILE):
            low, high = interval(rep, kind)
            covered[kind] += low <= 50 <= high
            above[kind] += 50 < low
        fixed = metric_terms(records, "gt_known_loc", {"gt_known_loc": 0.0})
        low, high = interval(row_replicates([fixed], resamples, s), PERCENTILE)
        covered["control"] += low <= 50 <= high
    coverage = {k: v / sets for k, v in covered.items()}
    misses = {k: sets - covered[k] for k in above}
    assert coverage["control"] > 0.92, coverage  # the bootstrap itself works at this N and B
    assert coverage[BCA] > 0.91, coverage  # 0.95 - 0.04: Monte-Carlo error (0.011) + the rest
    assert coverage[PERCENTILE] < coverage[BCA] - 0.015, coverage
    assert above[PERCENTILE] >= 0.9 * misses[PERCENTILE], (above, misses)  # shifted up
    assert above[BCA] <= 0.75 * above[PERCENTILE], (above, misses)  # much less so


def _old_recentred_p(rep: Replicates) -> float:
    """The p-value before: resampled differences recentred on 0."""
    extreme = np.count_nonzero(np.abs(rep.values - rep.estimate) >= abs(rep.estimate) - 1e-9)
    return (1 + extreme) / (1 + len(rep.values))


def test_the_disagreeing_case_now_agrees():
    """The issue's case: a skewed difference whose percentile interval excludes 0 while the
    recentred p was above 0.05 (tedloc - no-distillation: [-1.37, -0.03], p = 0.059)."""
    rng = np.random.default_rng(5)
    values = -0.7 + 0.33 * rng.standard_normal(1000)
    values[:80] -= rng.exponential(0.8, 80)  # a long tail away from 0
    rep = Replicates(-0.7, values, rng.normal(0, 0.01, 500))
    low, high = interval(rep, PERCENTILE)
    assert high < 0 and _old_recentred_p(rep) > 0.05  # the old pair disagreed
    for kind in (PERCENTILE, BCA):
        low, high = interval(rep, kind)
        assert (p_value(rep, kind) < 0.05) == (high < 0 or low > 0), kind


@pytest.mark.parametrize("kind", [PERCENTILE, BCA])
def test_p_and_interval_agree_on_1000_planted_pairs(kind):
    """Random replicate sets (normal, skewed, discrete with ties at 0, shifted by a random
    difference; random skew for the acceleration): p < α exactly when the (1 - α) interval
    excludes 0, at α = 0.05 and at two other levels, and p's sign is the interval's side."""
    rng = np.random.default_rng(11)
    for _ in range(1000):
        b = int(rng.choice([200, 999, 1000]))
        shape = rng.integers(3)
        if shape == 0:
            values = rng.standard_normal(b)
        elif shape == 1:
            values = rng.gamma(rng.uniform(0.5, 4), size=b) * rng.choice([-1, 1])
        else:  # a metric's grid: ties, some of them at 0
            values = np.round(rng.standard_normal(b) * 4) / 4
        shift = rng.normal(0, 2.5)
        rep = Replicates(
            float(np.median(values) + shift + rng.normal(0, 0.2)),
            values + shift,
            rng.gamma(rng.uniform(0.5, 3), size=300) * rng.choice([-1, 1]) * 0.01,
        )
        p = p_value(rep, kind)
        for alpha in (0.05, 0.01, 0.2):
            low, high = interval(rep, kind, level=1 - alpha)
            excludes = low > 0 or high < 0
            assert (p < alpha) == excludes, (kind, alpha, p, low, high)
            if excludes:
                assert direction(rep, kind) == (1 if low > 0 else -1)


def test_a_row_against_itself_is_not_different():
    hits = np.random.default_rng(0).random(300) < 0.4
    terms = [metric_terms(_cls_records(hits), "top1_cls", None)]
    for kind in (PERCENTILE, BCA):
        same = paired_difference("top1_cls", terms, terms, resamples=300, kind=kind)
        assert (same.low, same.high, same.p_value) == (0.0, 0.0, 1.0)
    assert format_p(0.0, 1000) == "< 0.0010" and format_p(0.0123, 1000) == "0.0123"


def test_two_level_bootstrap_sees_seed_noise():
    """Two rows of five seeds that differ only by seed noise: each seed's accuracy level is
    drawn around the same 50 % (sd 5 points), the rows' means differ by chance (+2 points here).
    On 2,000 images the models-fixed test finds the rows different (the images alone explain a
    fraction of a point); drawing the seeds too, the difference is within seed noise."""
    rng = np.random.default_rng(3)
    n = 2000
    levels_a = [0.56, 0.47, 0.52, 0.45, 0.62]  # mean 52.4
    levels_b = [0.49, 0.57, 0.43, 0.55, 0.48]  # mean 50.4
    a = [metric_terms(_cls_records(rng.random(n) < lv), "top1_cls", None) for lv in levels_a]
    b = [metric_terms(_cls_records(rng.random(n) < lv), "top1_cls", None) for lv in levels_b]
    for kind in (PERCENTILE, BCA):
        fixed = paired_difference("top1_cls", a, b, resamples=1000, kind=kind, models_fixed=True)
        both = paired_difference("top1_cls", a, b, resamples=1000, kind=kind)
        assert fixed.p_value < 0.05 and fixed.low > 0, fixed
        assert both.p_value > 0.3 and both.low < 0 < both.high, both
        assert both.two_level and not fixed.two_level
        assert fixed.difference == both.difference
    # one seed on a side: nothing to draw there, the other side's seeds still are
    one = paired_difference("top1_cls", a, b[:1], resamples=300, kind=PERCENTILE)
    assert one.seeds == (5, 1) and one.two_level


def test_seed_level_spreads_as_the_unbiased_seed_variance():
    """With no image noise to speak of (every image the same), the two-level replicates of a row
    of k seeds spread as the unbiased variance of the seed mean, s² / k (ddof 1), not the
    plug-in (k - 1) / k of it that drawing k of k values alone gives."""
    from wsolbench.results.row_bootstrap import row_replicates_from_runs, run_resampled

    levels = np.array([0.40, 0.55, 0.47, 0.61])  # each run right on this share of every image
    runs = []
    for level in levels:
        hits = np.zeros(4000, bool)
        hits[: int(level * 4000)] = True
        runs.append(
            run_resampled({"top1_cls": metric_terms(_cls_records(hits), "top1_cls", None)}, 4000, 0)
        )
    rep = row_replicates_from_runs(runs, 4000, 0, seed_stream=9)["top1_cls"]
    expected = np.var(100 * levels, ddof=1) / len(levels)
    # images: each resample's share moves by ~0.6 points², far below the seeds' ~21; Monte
    # Carlo error of a variance from 4,000 draws ~ 3 %
    assert np.var(rep.values) == pytest.approx(expected, rel=0.1)
    assert np.var(rep.values) > 1.15 * expected * (len(levels) - 1) / len(levels)


def test_seed_draws_are_k_with_replacement_and_rows_draw_apart():
    from wsolbench.results.row_bootstrap import draw_seeds

    counts = draw_seeds(5, 400, seed=1, stream=0)
    assert counts.shape == (400, 5) and (counts.sum(axis=1) == 5).all()
    assert np.array_equal(counts, draw_seeds(5, 400, seed=1, stream=0))
    assert not np.array_equal(counts, draw_seeds(5, 400, seed=1, stream=1))
    assert abs(counts.mean() - 1) < 0.05 and (counts.max(axis=1) > 1).mean() > 0.9


def test_jackknife_leaves_each_image_out():
    """The leave-one-out values equal the metric recomputed without the image (oracle: the best
    τ of the other images), for the box curves and for PxAP's histograms."""
    from wsolbench.results.bootstrap import jackknife_values, metric_value

    rng = np.random.default_rng(4)
    n, t = 30, 20
    starts = rng.integers(0, 12, n)
    bits = (np.arange(t)[None] >= starts[:, None]) & (np.arange(t)[None] < starts[:, None] + 6)
    fg = rng.integers(0, 50, (n, t + 2)).astype(np.int64)
    bg = rng.integers(0, 50, (n, t + 2)).astype(np.int64)
    records = _curve_records(bits)
    records.fg_hist, records.bg_hist = fg, bg
    for key in ("maxboxacc_v2", "pxap"):
        jack = jackknife_values(metric_terms(records, key, None))
        for i in (0, 7, n - 1):
            keep = np.arange(n) != i
            rest = SplitRecords(
                records.image_ids[keep], records.step, [30, 50, 70],
                multi=records.multi[keep], largest=records.largest[keep],
                fg_hist=fg[keep], bg_hist=bg[keep],
            )  # fmt: skip
            assert jack[i] == pytest.approx(metric_value(metric_terms(rest, key, None))), key


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_letters_group_the_rows_not_told_apart():
    # 0 > 2, 0 > 3, 1 > 3; every other pair not told apart
    assert letter_groups(4, {(0, 2), (0, 3), (1, 3)}) == ["a", "ab", "bc", "c"]
    assert letter_groups(3, set()) == ["a", "a", "a"]
    assert letter_groups(3, {(0, 1), (0, 2), (1, 2)}) == ["a", "b", "c"]
    # the committed board's shape: a top row, then a row, then three ties
    five = {(0, j) for j in range(1, 5)} | {(1, 3), (1, 4)}
    assert letter_groups(5, five) == ["a", "b", "bc", "c", "c"]
    for n, different in ((4, {(0, 2), (0, 3), (1, 3)}), (5, five)):
        letters = letter_groups(n, different)
        for i in range(n):
            for j in range(i + 1, n):
                share = bool(set(letters[i]) & set(letters[j]))
                assert share == ((i, j) not in different), (i, j, letters)


def test_the_order_sentence_claims_only_what_the_tests_support():
    names = ["tedloc", "clip_patch", "cam", "clip_gradcam", "center"]
    chain = {(0, j) for j in range(1, 5)} | {(1, j) for j in range(2, 5)}
    assert supported_order(names, chain) == "tedloc > clip_patch > {cam, clip_gradcam, center}"
    overlap = {(0, j) for j in range(1, 5)} | {(1, 3), (1, 4)}  # cam ties both sides
    assert supported_order(names, overlap) == (
        "tedloc above clip_patch, cam, clip_gradcam, center; clip_patch above clip_gradcam, center"
    )
    assert supported_order(names[:2], set()) == "no pair told apart"


def _fake_run(name: str, hits: np.ndarray):
    """A run of ``hits`` as compare --ci reads it: its records and the sha256 its result names
    (here its name), which picks its row's seed-draw stream."""
    from pathlib import Path
    from types import SimpleNamespace

    from wsolbench.results.intervals import RunRecords

    result = SimpleNamespace(per_image={"sha256": name})
    return RunRecords(Path(name), result, _cls_records(hits), "test", "oracle", None)


def test_board_rows_two_level_intervals_and_groups_share_the_resamples():
    """The glue of compare --ci: a row of five seeds has them drawn from its runs' stream, a
    one-run row has no seed level, and each pair's p is that of the difference of the same
    replicates the intervals come from, Holm-corrected into letters."""
    from wsolbench.results.intervals import replicates, row_groups, row_intervals, row_stream

    rng = np.random.default_rng(8)
    n = 400
    levels = (0.8, 0.7, 0.75, 0.72, 0.78)
    rows = [[_fake_run(f"a{s}", rng.random(n) < lv) for s, lv in enumerate(levels)]]
    rows += [[_fake_run("b", rng.random(n) < 0.5)], [_fake_run("c", rng.random(n) < 0.52)]]
    settings = {"resamples": 300, "seed": 2, "kind": BCA}
    drawn = replicates(rows, ["top1_cls", "top5_cls"], **settings)
    cells = row_intervals(drawn, BCA)
    fixed = row_intervals(replicates(rows, ["top1_cls"], **settings, models_fixed=True), BCA)
    reps = []
    for position, row in enumerate(rows):
        terms = [r.terms("top1_cls") for r in row]
        rep = row_replicates(terms, 300, 2, seed_stream=row_stream(row), jackknife=True)
        reps.append(rep)
        assert cells[position]["top1_cls"] == pytest.approx(interval(rep, BCA))
        alone = row_replicates(terms, 300, 2, jackknife=True)
        assert fixed[position]["top1_cls"] == pytest.approx(interval(alone, BCA))
    # only the 5-seed row draws seeds
    assert cells[0]["top1_cls"] != fixed[0]["top1_cls"]
    assert cells[1]["top1_cls"] == fixed[1]["top1_cls"]
    groups = row_groups([row.values["top1_cls"] for row in drawn], BCA)
    for (i, j), p in groups.p_values.items():
        assert p == pytest.approx(p_value(reps[i] - reps[j], BCA))
    assert groups.above == {(0, 1), (0, 2)} and groups.letters == ["a", "b", "b"]


def test_a_rows_interval_does_not_depend_on_the_other_rows_of_its_table():
    """A row draws its seeds from its own runs' stream: alone, first or second in a table, its
    replicates are the same (the note's resamples and seed reproduce it)."""
    from wsolbench.results.intervals import replicates

    rng = np.random.default_rng(3)
    a = [_fake_run(f"a{s}", rng.random(300) < 0.6 + 0.02 * s) for s in range(5)]
    b = [_fake_run(f"b{s}", rng.random(300) < 0.5 + 0.03 * s) for s in range(5)]
    settings = {"resamples": 200, "seed": 1, "kind": PERCENTILE}
    alone = replicates([a], ["top1_cls"], **settings)[0].values["top1_cls"]
    first = replicates([a, b], ["top1_cls"], **settings)
    second = replicates([b, a], ["top1_cls"], **settings)
    assert np.array_equal(first[0].values["top1_cls"].values, alone.values)
    assert np.array_equal(second[1].values["top1_cls"].values, alone.values)
    # two rows draw differently: their seed draws are not one shared stream
    a_values, b_values = (row.values["top1_cls"].values for row in first)
    assert not np.array_equal(a_values - a_values.mean(), b_values - b_values.mean())


def test_too_few_seeds_to_draw_are_refused_naming_the_row_and_the_fix():
    """Two seeds are too few for the two-level bootstrap (benchmarks/bench_seed_level.py measures
    how narrow it is): refused before any resampling; --models-fixed answers the other question
    with the same runs."""
    from wsolbench.results.intervals import replicates
    from wsolbench.results.row_bootstrap import MIN_DRAWN_SEEDS, TooFewSeedsError

    rng = np.random.default_rng(4)
    rows = [[_fake_run(f"seeds/s{s}/result.json", rng.random(50) < 0.5) for s in range(2)]]
    rows.append([_fake_run("one/result.json", rng.random(50) < 0.5)])
    settings = {"resamples": 50, "seed": 0, "kind": PERCENTILE}
    with pytest.raises(TooFewSeedsError, match=r"^seeds: 2 seeds are too few .*--models-fixed"):
        replicates(rows, ["top1_cls"], **settings)
    assert replicates(rows, ["top1_cls"], **settings, models_fixed=True)[0].values
    assert MIN_DRAWN_SEEDS == 3


def _efron_bca(estimate, values, jackknife, level=0.95):
    """BCa as Efron & Tibshirani (1993, eq. 14.9-14.15) write it, with numpy's quantiles:
    z0 from the share of replicates below the estimate (ties half), a from the jackknife."""
    z0 = norm.ppf((np.sum(values < estimate) + np.sum(values == estimate) / 2) / len(values))
    d = jackknife.mean() - jackknife
    a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    ends = []
    for z in norm.ppf([(1 - level) / 2, (1 + level) / 2]):
        ends.append(np.quantile(values, norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))))
    return tuple(ends)


def test_bca_interval_is_efrons_formula():
    """The interval against the textbook BCa written here: skewed jackknife (a far from 0), the
    estimate off the replicates' centre (z0 far from 0), and ties at the estimate."""
    rng = np.random.default_rng(11)
    for trial in range(20):
        values = np.round(rng.gamma(2.0 + trial % 3, 1.0, size=301) * 4) / 4  # ties
        estimate = float(np.quantile(values, 0.3 + 0.02 * trial))
        jackknife = rng.exponential(1.0, size=57) ** (1 + trial % 2)  # a ~ 0.1-0.3
        rep = Replicates(estimate, values, jackknife)
        low, high = interval(rep, BCA)
        assert (low, high) == pytest.approx(_efron_bca(estimate, values, jackknife), abs=1e-12)
