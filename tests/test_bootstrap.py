"""Per-image records and the bootstrap: records add up to the counts, every metric recomputed from
them equals the protocol's, and intervals / p-values match what a hand calculation predicts."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from wsolbench import metrics
from wsolbench.results.bootstrap import (
    BootstrapError,
    metric_terms,
    metric_value,
    per_seed_resampled_by_key,
    resample_weights,
    resampled,
)
from wsolbench.results.confidence import BCA, PERCENTILE, Replicates, interval
from wsolbench.results.per_image import (
    PerImageError,
    RecordCollector,
    SplitRecords,
    load_counts,
    load_records,
    save_records,
)
from wsolbench.results.record import METRIC_KEYS, load_result
from wsolbench.results.row_bootstrap import paired_difference, row_replicates, row_replicates_by_key

STEP = 0.01  # 100 thresholds keep the tests fast; the code does not depend on the grid


def _random_split(seed: int, n: int = 40, masks: bool = True) -> tuple[dict, SplitRecords]:
    """Counts and records of ``n`` random maps with boxes (and masks), counted for real."""
    rng = np.random.default_rng(seed)
    counter = metrics.SplitCounter(metrics.threshold_grid(STEP), (30, 50, 70))
    collector = RecordCollector(STEP, [30, 50, 70])
    for i in range(n):
        yy, xx = np.mgrid[0:32, 0:32]
        cy, cx = rng.uniform(8, 24, size=2)
        scoremap = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(3, 8) ** 2))
        scoremap = (scoremap + 0.2 * rng.random((32, 32))).astype(np.float32)
        scoremap = (scoremap - scoremap.min()) / (scoremap.max() - scoremap.min())
        x0, y0 = rng.integers(0, 16, size=2)
        box = np.array([[x0, y0, x0 + rng.integers(4, 16), y0 + rng.integers(4, 16)]])
        fg = np.zeros((32, 32), bool)
        fg[box[0, 1] : box[0, 3] + 1, box[0, 0] : box[0, 2] + 1] = True
        topk = list(rng.permutation(10)[:5])
        outcome = counter.update(
            scoremap, box, int(rng.integers(0, 10)), topk, fg if masks else None, None
        )
        collector.add(f"img{i:03d}.png", outcome)
    return counter.to_dict(), collector.records()


@pytest.mark.parametrize("policy", ["oracle", "oracle-separate", "fixed:0.3", "select"])
def test_every_metric_from_records_equals_the_protocol_s(policy):
    counts, records = _random_split(0)
    val_counts, _ = _random_split(1)
    assert records.counts() == counts  # the records add up to the counts exactly
    expected, chosen = metrics.summarize(counts, policy, val_counts=val_counts)
    tau = None if policy.startswith("oracle") else chosen
    separate = policy == "oracle-separate"
    assert set(expected) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert metric_value(metric_terms(records, key, tau, separate=separate)) == pytest.approx(
            expected[key], abs=1e-9
        ), key


def test_metrics_resampled_together_equal_each_alone():
    """A row's metrics are resampled together so that the mask metrics sum their shared
    histograms once: every replicate and leave-one-out value is exactly the one-metric one."""
    runs = [_random_split(seed)[1] for seed in range(3, 8)]  # five: seeds to draw
    keys = ["pxap", "dice_fg", "dice_bg", "miou", "maxboxacc_v2", "top1_loc", "top1_cls"]
    terms = {key: [metric_terms(r, key, None) for r in runs] for key in keys}
    assert terms["pxap"][0].terms is terms["miou"][0].terms  # what makes the sharing pay
    together = row_replicates_by_key(terms, 120, 5, seed_stream=2, jackknife=True)
    for key in keys:
        alone = row_replicates(terms[key], 120, 5, seed_stream=2, jackknife=True)
        assert together[key].estimate == alone.estimate
        np.testing.assert_array_equal(together[key].values, alone.values)
        np.testing.assert_array_equal(together[key].jackknife, alone.jackknife)
        np.testing.assert_array_equal(
            per_seed_resampled_by_key(terms, 120, 5)[key],
            np.stack([resampled([t], 120, 5) for t in terms[key]]),
        )


def test_oracle_top1_loc_is_re_read_at_each_resample_s_gt_known_tau():
    """Per resample, the oracle Top-1 Loc is the weighted Top-1-Loc curve at the argmax of the
    weighted GT-known curve (computed here by hand with numpy), not its own maximum."""
    rng = np.random.default_rng(7)
    n, t = 60, 20
    # 40 images localized at low τ, 20 at high τ; only the high-τ ones classified right: the
    # GT-known maximum is at low τ, Top-1 Loc's own at high τ
    largest = np.zeros((n, 3, t), bool)
    for i in range(n):
        low = i < 40
        start = rng.integers(0, 4) if low else rng.integers(10, 14)
        largest[i, :, start : start + rng.integers(3, 7)] = True
    top1 = (np.arange(n) >= 40) & (rng.random(n) < 0.8)
    records = SplitRecords(
        np.array([f"{i:03d}" for i in range(n)]), 1 / t, [30, 50, 70],
        multi=largest, largest=largest, top1=top1, top5=top1 | (rng.random(n) < 0.5),
    )  # fmt: skip
    gt, loc = largest[:, 1].astype(float), (largest[:, 1] & top1[:, None]).astype(float)
    assert np.argmax(gt.sum(0)) != np.argmax(loc.sum(0)), "the case must separate the readings"
    weights = resample_weights(n, 50, seed=3)
    expected = [100 * (w @ loc)[np.argmax(w @ gt)] / w.sum() for w in weights]
    own_best = [100 * (w @ loc).max() / w.sum() for w in weights]
    terms = metric_terms(records, "top1_loc", None)
    assert resampled([terms], 50, 3) == pytest.approx(expected)
    separate = metric_terms(records, "top1_loc", None, separate=True)
    assert resampled([separate], 50, 3) == pytest.approx(own_best)
    assert metric_value(terms) == metrics.summarize(records.counts(), "oracle")[0]["top1_loc"]


def test_records_survive_the_file_and_refuse_another_result(tmp_path):
    counts, records = _random_split(2)
    path = tmp_path / "per_image.npz"
    sha = save_records(path, {"test": records}, {"test": counts})
    loaded = load_records(path, sha, {"test": counts})["test"]
    assert loaded.counts() == counts and list(loaded.image_ids) == list(records.image_ids)
    for field in ("multi", "largest", "top1", "top5", "fg_hist", "bg_hist"):
        assert np.array_equal(getattr(loaded, field), getattr(records, field)), field
    other, _ = _random_split(3)
    with pytest.raises(PerImageError, match="do not add up"):
        load_records(path, sha, {"test": other})
    with pytest.raises(PerImageError, match="sha256 differs"):
        load_records(path, "0" * 64, {"test": counts})
    with pytest.raises(PerImageError, match="do not add up"):
        save_records(tmp_path / "x.npz", {"test": records}, {"test": other})
    assert not (tmp_path / "x.npz").exists()


def test_the_records_file_holds_the_counts_and_summed_pxap_keeps_only_their_sums(tmp_path):
    counts, records = _random_split(2)
    val_counts, val_records = _random_split(5, n=10)
    splits, all_counts = {"test": records, "val": val_records}, {"test": counts, "val": val_counts}
    full = save_records(tmp_path / "full.npz", splits, all_counts)
    summed = save_records(tmp_path / "summed.npz", splits, all_counts, summed_pxap=True)
    for name, sha in (("full.npz", full), ("summed.npz", summed)):
        assert load_counts(tmp_path / name, sha) == all_counts  # mask sums included
    assert (tmp_path / "summed.npz").stat().st_size < (tmp_path / "full.npz").stat().st_size
    loaded = load_records(tmp_path / "summed.npz", summed, all_counts)["test"]
    assert loaded.fg_hist is None and loaded.bg_hist is None
    assert np.array_equal(loaded.multi, records.multi) and np.array_equal(loaded.top1, records.top1)
    assert metric_value(metric_terms(loaded, "maxboxacc_v2", None)) == pytest.approx(
        metrics.summarize(counts, "oracle")[0]["maxboxacc_v2"]
    )
    with pytest.raises(BootstrapError, match="--summed-pxap"):
        metric_terms(loaded, "pxap", None)
    other, _ = _random_split(3)
    with pytest.raises(PerImageError, match="do not add up"):  # the box bits are still checked
        load_records(tmp_path / "summed.npz", summed, {"test": other, "val": val_counts})
    with pytest.raises(PerImageError, match="sha256 differs"):
        load_counts(tmp_path / "summed.npz", full)


def test_shards_merge_into_the_whole_split():
    _, records = _random_split(4)
    order = np.random.default_rng(0).permutation(len(records))
    parts = [
        SplitRecords(
            records.image_ids[idx],
            records.step,
            records.iou_thresholds,
            **{
                f: getattr(records, f)[idx]
                for f in ("multi", "largest", "top1", "top5", "fg_hist", "bg_hist")
            },
        )
        for idx in (order[:13], order[13:])
    ]
    merged = SplitRecords.merge(parts)
    assert merged.counts() == records.counts()
    assert list(merged.image_ids) == list(records.image_ids)


def _cls_records(hits: np.ndarray) -> SplitRecords:
    n = len(hits)
    return SplitRecords(
        np.array([f"{i:05d}" for i in range(n)]), STEP, [30, 50, 70], top1=hits, top5=hits
    )


def test_paired_difference_matches_the_hand_calculation():
    # N images; A alone is right on 60 of them, B alone on 30, both on 200 (discordant: 90).
    n, n10, n01, both = 1000, 60, 30, 200
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:n10] = True
    b[n10 : n10 + n01] = True
    a[n10 + n01 : n10 + n01 + both] = b[n10 + n01 : n10 + n01 + both] = True
    terms_a = [metric_terms(_cls_records(a), "top1_cls", None)]
    terms_b = [metric_terms(_cls_records(b), "top1_cls", None)]
    result = paired_difference("top1_cls", terms_a, terms_b, resamples=4000, seed=0)
    # per image d_i = 100 * (a_i - b_i): mean 3.0, sd of the mean sqrt(var(d) / n)
    mean = 100 * (n10 - n01) / n
    sd = 100 * math.sqrt(((n10 + n01) / n - ((n10 - n01) / n) ** 2) / n)
    assert result.difference == pytest.approx(mean)
    assert result.a == pytest.approx(100 * (n10 + both) / n)
    # the percentile interval ≈ mean ± 1.96 sd; Monte Carlo error of a 2.5 % quantile with 4000
    # resamples is ~ 0.05 sd
    assert result.low == pytest.approx(mean - 1.96 * sd, abs=0.15 * sd)
    assert result.high == pytest.approx(mean + 1.96 * sd, abs=0.15 * sd)
    # two-sided p, the smallest α whose percentile interval excludes 0 ≈ 2 (1 - Φ(|mean| / sd))
    # = 0.0016 (z = 3.16)
    z = mean / sd
    expected_p = math.erfc(z / math.sqrt(2))
    assert result.p_value == pytest.approx(expected_p, abs=0.002)
    # the same images on both sides: a row against itself differs by exactly 0, p = 1
    same = paired_difference("top1_cls", terms_a, terms_a, resamples=500, seed=1)
    assert (same.low, same.high, same.p_value) == (0.0, 0.0, 1.0)


def test_an_interval_covers_the_hand_calculated_spread():
    hits = np.zeros(400, bool)
    hits[:100] = True  # 25 %
    terms = [metric_terms(_cls_records(hits), "top1_cls", None)]
    low, high = interval(Replicates(25.0, resampled(terms, 4000, 3)), PERCENTILE)
    sd = 100 * math.sqrt(0.25 * 0.75 / 400)
    assert low == pytest.approx(25 - 1.96 * sd, abs=0.15 * sd)
    assert high == pytest.approx(25 + 1.96 * sd, abs=0.15 * sd)


def test_resample_weights_draw_n_images_each_time():
    weights = resample_weights(50, 200, seed=5)
    assert weights.shape == (200, 50) and (weights.sum(axis=1) == 50).all()
    assert np.array_equal(weights, resample_weights(50, 200, seed=5))  # seeded
    assert abs(weights.mean() - 1) < 0.02


def test_every_committed_result_has_records_that_add_up():
    results = Path(__file__).resolve().parents[1] / "reports" / "results"
    files = sorted(results.rglob("result.json"))
    assert files, "no committed result"
    for path in files:
        assert "per_image" in json.loads(path.read_text()), f"{path}: no per-image records"
        result = load_result(path)  # schema 3: its counts from the records file it names
        records = load_records(
            path.parent / result.per_image["file"], result.per_image["sha256"], result.counts
        )
        assert set(records) == set(result.counts)


@pytest.fixture(scope="module")
def two_rows(tmp_path_factory):
    """Two center rows (two sigmas; two seeds each) on one tiny set, with per-image records."""
    from wsolbench.cli.main import main
    from wsolbench.data.synthetic import SyntheticConfig, generate

    folder = tmp_path_factory.mktemp("ci")
    config = SyntheticConfig(
        num_classes=3, image_size=32, train_per_class=2, val_per_class=4, test_per_class=10
    )
    root = generate(folder / "data", config)
    for sigma in ("0.1", "0.5"):
        for seed in (0, 1):
            argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", root]
            argv += ["--protocol", root / "protocol.yaml", "-o", f"sigma={sigma}"]
            argv += ["--seed", seed, "--work-dir", folder / "runs" / sigma / f"seed{seed}"]
            assert main([str(a) for a in argv]) == 0
    return folder / "runs"


@pytest.mark.parametrize("fmt", ["md", "csv", "latex", "html"])
def test_compare_ci_renders_intervals_in_every_format(two_rows, fmt):
    from wsolbench.leaderboard import compare

    text = compare([two_rows], fmt=fmt, published=False, ci=200)
    if fmt == "csv":
        header = text.splitlines()[0].split(",")
        assert "maxboxacc_v2_ci_low" in header and "pxap_ci_high" in header
        assert {"dice_fg_ci_low", "tpr_ci_low", "fpr_ci_high"} <= set(header)
        assert {"ci_kind", "ci_resampled", "ci_resamples", "ci_seed", "group"} <= set(header)
        assert ",BCa,images,200,0," in text  # center is seed-independent: no seed level
    else:
        assert "bootstrap interval" in text and text.count("[") >= 4
        assert "BCa" in text and "Group" in text and "Holm" in text
        assert "no row has several seeds" in text


def test_rows_get_the_intervals_of_their_own_seed_mean(two_rows):
    from wsolbench.leaderboard import build_leaderboards
    from wsolbench.results.intervals import load_run_records, row_stream
    from wsolbench.results.record import find_results

    """Oracle: BCa of the row's replicates (two-level: seeds drawn from the stream of the row's
    runs; here every row is one seed-independent run); --models-fixed: of the images-only ones;
    select: percentile. Rows of several seeds: tests/test_confidence.py."""
    for policy, models_fixed, kind in (
        ("oracle", False, BCA),
        ("oracle", True, BCA),
        ("select", False, PERCENTILE),
    ):
        (board,) = build_leaderboards(
            [two_rows], policy=policy, published=False, ci=300, ci_seed=4, models_fixed=models_fixed
        )
        assert board.interval_kind == kind
        for row in board.rows:
            runs = [load_run_records(f, r, "test", policy) for f, r in find_results(row.files)]
            terms = [run.terms("maxboxacc_v2") for run in runs]
            stream = None if models_fixed else row_stream(runs)
            rep = row_replicates(terms, 300, 4, seed_stream=stream, jackknife=kind == BCA)
            assert row.ci["maxboxacc_v2"] == pytest.approx(interval(rep, kind))
            low, high = row.ci["maxboxacc_v2"]
            assert low <= row.mean["maxboxacc_v2"] <= high


def test_a_summed_pxap_run_has_the_same_pxap_and_no_pxap_interval(two_rows, tmp_path):
    """Its PxAP has no interval (compare --ci) and no paired figure (diff): each says why."""
    from wsolbench.cli.main import main
    from wsolbench.leaderboard import build_leaderboards
    from wsolbench.results.intervals import diff, render_diff

    source = two_rows / "0.5" / "seed0"
    work = tmp_path / "summed" / "seed0"
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--summed-pxap"]
    argv += ["--data-root", two_rows.parent / "data", "-o", "sigma=0.5", "--seed", "0"]
    argv += ["--protocol", two_rows.parent / "data" / "protocol.yaml", "--work-dir", work]
    assert main([str(a) for a in argv]) == 0
    summed, full = load_result(work / "result.json"), load_result(source / "result.json")
    assert summed.metrics == full.metrics and summed.counts == full.counts
    assert (work / "per_image.npz").stat().st_size < (source / "per_image.npz").stat().st_size
    other = two_rows / "0.1"  # another row (sigma 0.1), with per-image PxAP
    (board,) = build_leaderboards([tmp_path / "summed", other], published=False, ci=100)
    summed_row = next(row for row in board.rows if work / "result.json" in row.files)
    assert "maxboxacc_v2" in summed_row.ci and "pxap" not in summed_row.ci
    [note] = [n for n in board.notes if n.startswith("No interval for PxAP of center")]
    assert "--summed-pxap" in note
    table = diff([other], [work], resamples=100)
    assert "pxap" not in [d.key for d in table.rows] and "--summed-pxap" in table.left_out["pxap"]
    assert "No paired figure for PxAP: B's runs: " in render_diff("A", "B", table)


def test_diff_cli_compares_two_rows_on_the_same_images(two_rows, capsys):
    from wsolbench.cli.main import main

    assert main(["diff", str(two_rows / "0.5"), str(two_rows / "0.1"), "--resamples", "300"]) == 0
    out = capsys.readouterr().out
    assert "MaxBoxAccV2" in out and "PxAP" in out and "95 % CI (BCa)" in out
    assert "| TPR " in out and "| FPR " in out  # the rates, paired as Dice is
    assert "TPR / FNR / TNR / FPR at mIoU's" in " ".join(out.split())  # and the τ they are read at
    # center is seed-independent: its copies under seeds 0 and 1 are one run, not seeds to draw
    assert "Models fixed (no side has several seeds to draw)" in out
    argv = ["diff", str(two_rows / "0.5"), str(two_rows / "0.1"), "--resamples", "300"]
    assert main([*argv, "--models-fixed", "--policy", "select", "--ci-seed", "7"]) == 0
    out = capsys.readouterr().out
    assert "95 % CI (percentile)" in out and "Models fixed (--models-fixed)" in out
    policy = "Policy: select (τ chosen per run on the val split, applied to the test split; Dice"
    assert policy in out and "TPR / FNR / TNR / FPR at val's best mIoU)" in " ".join(out.split())
    assert "the same test images (300 resamples, seed 7," in out
    # select on val is the oracle maximum over the images resampled: not a fixed-τ interval
    assert main([*argv, "--policy", "select", "--split", "val"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--policy oracle" in err[0]
    assert main(["diff", str(two_rows), str(two_rows / "0.1")]) == 2  # A is two rows
    assert "2 different" in capsys.readouterr().err


def test_compare_ci_resamples_the_same_in_any_number_of_workers(monkeypatch):
    """compare --ci's runs resampled by worker processes, each reading its run's records, give
    exactly the replicates of one process: the committed synthetic-v1 board, whose rows of five
    seeds draw them (two-level) beside seed-independent rows."""
    import wsolbench.results.intervals as intervals
    from wsolbench.leaderboard import build_leaderboard
    from wsolbench.results.record import find_results

    board = build_leaderboard([Path(__file__).parents[1] / "reports/results/synthetic-v1"])
    rows = [
        [intervals.load_run_records(f, r, "test", "oracle") for f, r in find_results(row.files)]
        for row in board.rows
        if not row.published
    ]
    assert max(map(len, rows)) == 5 and min(map(len, rows)) == 1
    settings = {"resamples": 200, "seed": 3, "kind": BCA}
    alone = intervals.replicates(rows, board.metric_keys, **settings, workers=2)  # too little work
    pools = []

    def pool(workers, **kwargs):
        pools.append(workers)
        return real_pool(workers, **kwargs)

    real_pool = intervals.ProcessPoolExecutor
    monkeypatch.setattr(intervals, "ProcessPoolExecutor", pool)
    monkeypatch.setattr(intervals, "RESAMPLED_IMAGES_PER_WORKER", 1)
    shared = intervals.replicates(rows, board.metric_keys, **settings, workers=2)
    assert pools == [2]
    assert [list(row.values) for row in shared] == [list(row.values) for row in alone]
    assert all("pxap" in row.values for row in alone)
    assert any("top1_loc" in row.values for row in alone)
    for row_alone, row_shared in zip(alone, shared, strict=True):
        for key, rep in row_alone.values.items():
            other = row_shared.values[key]
            assert other.estimate == rep.estimate
            assert np.array_equal(other.values, rep.values)
            assert np.array_equal(other.jackknife, rep.jackknife)


def test_models_fixed_is_refused_without_ci(two_rows, capsys):
    from wsolbench.cli.main import main

    assert main(["compare", str(two_rows), "--no-published", "--models-fixed"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--ci" in err[0]
    assert main(["compare", str(two_rows), "--no-published", "--workers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--ci" in err[0]
    assert main(["compare", str(two_rows), "--no-published", "--ci", "--models-fixed"]) == 0
    out = capsys.readouterr().out
    assert "models fixed (--models-fixed" in out and "Group" in out


def test_diff_is_the_same_in_any_number_of_workers(two_rows, capsys, monkeypatch):
    """diff resamples its two rows' runs as compare --ci does: worker processes give the table
    of one process."""
    import wsolbench.results.intervals as intervals
    from wsolbench.cli.main import main

    argv = ["diff", str(two_rows / "0.5"), str(two_rows / "0.1"), "--resamples", "200"]
    assert main([*argv, "--workers", "1"]) == 0
    alone = capsys.readouterr().out
    monkeypatch.setattr(intervals, "RESAMPLED_IMAGES_PER_WORKER", 1)
    assert main([*argv, "--workers", "2"]) == 0
    assert capsys.readouterr().out == alone and "MaxBoxAccV2" in alone


def test_a_run_without_any_metric_asked_for_has_no_replicates():
    """A row none of whose runs has one of the keys asked for (a --summed-pxap run asked for
    PxAP only) gets no replicates, as before runs were resampled one by one."""
    from wsolbench.results.row_bootstrap import row_replicates_from_runs, run_resampled

    for jackknife in (False, True):
        runs = [run_resampled({}, 50, 0, jackknife=jackknife) for _ in range(5)]
        assert row_replicates_from_runs(runs, 50, 0, seed_stream=1) == {}
