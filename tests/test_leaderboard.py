"""Leaderboards: golden tables in every format, protocol checks, policies, marks, grouping.

The fixtures under tests/fixtures/results/ are hand-made results (see make_fixtures.py there). The
golden tables under tests/golden/ are rewritten with ``WSOLBENCH_UPDATE_GOLDEN=1``; review the diff
by eye.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import shutil
import statistics
from pathlib import Path

import numpy as np
import pytest

from wsolbench.leaderboard import build_leaderboard, compare, latex_escape, load_published
from wsolbench.results.record import ResultError, find_results

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures" / "results"
CUB = FIXTURES / "cub"
GOLDEN = HERE / "golden"
PUBLISHED = HERE.parent / "reports" / "published.yaml"
# golden file -> (format, wide)
GOLDEN_FILES = {"leaderboard.md": ("md", False), "leaderboard-wide.md": ("md", True),
                "leaderboard.csv": ("csv", False), "leaderboard.tex": ("latex", False),
                "leaderboard.html": ("html", False)}  # fmt: skip


def _render(fmt: str, **kwargs) -> str:
    kwargs.setdefault("published", PUBLISHED)
    return compare([CUB], fmt=fmt, **kwargs)


@pytest.mark.parametrize("name", sorted(GOLDEN_FILES))
def test_golden_leaderboard(name):
    fmt, wide = GOLDEN_FILES[name]
    text = _render(fmt, wide=wide)
    golden = GOLDEN / name
    if os.environ.get("WSOLBENCH_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.is_file(), f"{golden} missing: run with WSOLBENCH_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(encoding="utf-8"), (
        f"{name} differs from {golden}; if the change is intended, rerun with "
        "WSOLBENCH_UPDATE_GOLDEN=1 and review the diff"
    )


def _seed_counts(folder: str, split: str = "test") -> list[dict]:
    paths = sorted((CUB / folder).rglob("result.json"))
    return [json.loads(p.read_text())["counts"][split] for p in paths]


def _by_hand_v2(counts: dict) -> float:
    """MaxBoxAccV2 straight from the definition: mean over δ of the best multi-contour BoxAcc."""
    n = counts["n_images"]
    return statistics.fmean(100 * max(counts["box"]["multi"][d]) / n for d in ("30", "50", "70"))


def _md_row(text: str, name: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r} in\n{text}")


def _md_header(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("| Method"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_golden_mean_std_checked_by_hand():
    values = [_by_hand_v2(c) for c in _seed_counts("cam")]
    assert len(values) == 3
    expected = f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
    golden = (GOLDEN / "leaderboard.md").read_text(encoding="utf-8")
    row = _md_row(golden, "cam")
    header = _md_header(golden)
    assert row[header.index("MaxBoxAccV2")] == expected
    assert row[header.index("Seeds")] == "3"
    assert row[header.index("Pretrained")] == "resnet50_a1_0-14fe96d1.pth"


def test_rows_columns_and_order():
    text = _render("md", wide=True)
    header = _md_header(text)
    assert header[:4] == ["Method", "Pretrained", "Seeds", "MaxBoxAccV2"]
    assert not {"PxAP", "Dice FG", "Dice BG", "mIoU"} & set(header)  # no row has masks
    assert {"Top-1 Loc", "Top-5 Loc", "GT-known", "Top-1 Cls"} <= set(header)
    # to fit a terminal the default keeps the headline columns, in the same order
    short = _md_header(_render("md"))
    assert short[:5] == ["Method", "Pretrained", "Seeds", "MaxBoxAccV2", "Top-1 Loc"]
    assert set(short) < set(header) and short == [h for h in header if h in short]
    names = [
        line.split("|")[1].strip()
        for line in text.splitlines()
        if line.startswith("| ") and not line.startswith("| Method")
    ]
    runs = names[:5]
    assert sorted(runs) == sorted(
        ["cam", "tedloc (orthogonalize=qr)", "tedloc (orthogonalize=svd)", "clip_patch‡", "center"]
    )
    assert all("†" in n for n in names[5:]) and len(names) == 5 + 9
    v2 = [float(_md_row(text, n)[3].split()[0]) for n in runs]
    assert v2 == sorted(v2, reverse=True)
    # Published rows with MaxBoxAccV2 first, then the rest in file order.
    assert names[5:8] == ["CAM† (VGG16)", "CAM† (ResNet50)", "CAM† (InceptionV3)"]
    # A metric a row lacks is "–"; the center baseline has no classifier.
    assert _md_row(text, "center")[header.index("Top-1 Loc")] == "–"
    assert _md_row(text, "center")[header.index("Seeds")] == "1"
    assert "±" not in _md_row(text, "center")[3]


def test_header_and_notes():
    text = _render("md")
    assert "- Protocol: cub-v1 (hash 3f9a1c0d5e7b)" in text
    assert "- Split: test" in text
    assert "- Policy: oracle" in text
    assert "- Maps: ground-truth class" in text
    assert "Rows with one seed show the mean only" in text
    assert "sample std (ddof=1)" in text


NOTE = (
    "no pretrained weights: trained or run from random initialisation, "
    "not comparable with pretrained rows"
)


def test_no_pretrained_mark_in_every_format():
    for fmt in ("md", "html"):
        text = _render(fmt)
        assert "clip_patch‡" in text
        assert f"‡ {NOTE}" in text
    latex = _render("latex")
    assert r"clip\_patch\ddag{}" in latex
    assert rf"\ddag{{}} {NOTE}" in latex
    rows = list(csv.DictReader(io.StringIO(_render("csv"))))
    clip = [r for r in rows if r["method"] == "clip_patch"]
    assert len(clip) == 1 and clip[0]["pretrained"] == "none"
    assert clip[0]["note"] == NOTE
    assert all(r["note"] == "" for r in rows if r["method"] in ("cam", "tedloc", "center"))


def test_runs_with_and_without_weights_are_not_averaged(tmp_path):
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    for path in (tmp_path / "cam").rglob("result.json"):
        d = json.loads(path.read_text())
        d["seed"] += 10  # other seeds, same config: only the weights tell them apart
        d["config"]["seed"] = d["seed"]
        d["pretrained"] = "none"
        (path.parent.parent / f"none{d['seed']}").mkdir()
        (path.parent.parent / f"none{d['seed']}" / "result.json").write_text(json.dumps(d))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "cam")[2] == "3"
    assert _md_row(text, "cam‡")[2] == "3"


def test_a_row_whose_seeds_ran_under_different_conditions_says_so(tmp_path):
    """Its seeds are averaged (the config is the same), but their spread then holds more than
    the seed: cam on synthetic-v1 ends 1.1 MaxBoxAccV2 apart with one thread and with two."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    for path in (tmp_path / "cam").rglob("result.json"):
        d = json.loads(path.read_text())
        d["env"] = {**d.get("env", {}), "torch_threads": 2 if d["seed"] == 2 else 1}
        path.write_text(json.dumps(d))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "cam")[2] == "3"  # one row of the three seeds
    assert "- cam: its seeds ran under different torch_threads: 1 (seeds 0, 1), 2 (seed 2)" in text
    text = compare([CUB / "cam"], published=False)
    assert "ran under different" not in text  # the same conditions: no note


def test_a_row_run_with_overrides_is_named_by_them(tmp_path):
    """A method's only row says what its runs changed from the preset; beside the preset's own
    row, the keys that differ name both."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    for path in (tmp_path / "cam").rglob("result.json"):
        d = json.loads(path.read_text())
        d["config"]["train"] = {"lr": 0.1, "epochs": 2}
        d["overrides"] = {"train.epochs": 2, "train.lr": 0.1}
        path.write_text(json.dumps(d))
    alone = compare([tmp_path], published=False)
    names = [line.split("|")[1].strip() for line in alone.splitlines() if line.startswith("| cam")]
    assert names == ["cam (train.epochs=2, train.lr=0.1)"]
    shutil.copytree(CUB / "cam", tmp_path / "preset")
    both = compare([tmp_path], published=False)
    assert _md_row(both, "cam (train.epochs=2, train.lr=0.1)")
    assert _md_row(both, "cam (train.epochs=50, train.lr=0.01)")
    # two changed rows that differ in one key keep the override they share
    shutil.rmtree(tmp_path / "preset")
    shutil.copytree(tmp_path / "cam", tmp_path / "vgg")
    for path in (tmp_path / "vgg").rglob("result.json"):
        d = json.loads(path.read_text())
        d["config"]["backbone"] = "vgg16"
        d["overrides"]["backbone"] = "vgg16"
        path.write_text(json.dumps(d))
    two = compare([tmp_path], published=False)
    assert _md_row(two, "cam (backbone=resnet50, train.epochs=2, train.lr=0.1)")
    assert _md_row(two, "cam (backbone=vgg16, train.epochs=2, train.lr=0.1)")


def test_pretrained_cell_keeps_every_part_by_its_short_name(tmp_path):
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    weights = "file:/home/someone/.cache/wsolbench/synthclip/synthclip-v1-0123456789ab.pt (gelu)"
    teacher = "run:/home/someone/work_dirs/cam/seed0 (weights sha256 a0d20a954fbf, data a1b0)"
    pretrained = f"backbone=none; text={weights}; teacher={teacher}"
    for path in (tmp_path / "cam").rglob("result.json"):
        d = json.loads(path.read_text())
        d["pretrained"] = pretrained
        path.write_text(json.dumps(d))
    text = compare([tmp_path], published=False)
    assert _md_row(text, "cam")[1] == "backbone none; text synthclip-v1; teacher cam/seed0"
    # the footnotes name each source by content, without the folders of one machine
    assert "- Pretrained synthclip-v1: file:synthclip/synthclip-v1-0123456789ab.pt (gelu)\n" in text
    assert (
        "- Pretrained cam/seed0: run:cam/seed0 (weights sha256 a0d20a954fbf, data a1b0)\n" in text
    )
    assert "/home/someone" not in text
    assert _md_row(compare([tmp_path], published=False, wide=True), "cam")[1] == (
        "backbone=none; text=file:synthclip/synthclip-v1-0123456789ab.pt (gelu); "
        "teacher=run:cam/seed0 (weights sha256 a0d20a954fbf, data a1b0)"
    )


def test_published_rows_are_never_averaged():
    rows = list(csv.DictReader(io.StringIO(_render("csv"))))
    published = [r for r in rows if r["published"] == "true"]
    runs = [r for r in rows if r["published"] == "false"]
    assert len(published) == 9 and len(runs) == 5
    # Figures exactly as the paper prints them, alone: no std, no seeds.
    sat = next(r for r in published if r["method"] == "SAT")
    assert (sat["top1_loc_mean"], sat["top5_loc_mean"], sat["gt_known_loc_mean"]) == (
        "80.96",
        "94.13",
        "98.45",
    )
    assert all(r["top1_loc_std"] == "" and r["seeds"] == "" for r in published)
    assert all(r["policy"] == "as published" for r in published)
    assert "source: SAT, ICCV 2023" in sat["note"]
    # The cam run row is the mean of the three cam runs only, although "CAM" rows are published.
    cam = next(r for r in runs if r["method"] == "cam")
    values = [_by_hand_v2(c) for c in _seed_counts("cam")]
    assert float(cam["maxboxacc_v2_mean"]) == pytest.approx(statistics.fmean(values), abs=1e-4)
    assert float(cam["maxboxacc_v2_std"]) == pytest.approx(statistics.stdev(values), abs=1e-4)
    assert cam["seeds"] == "3"
    md = _render("md")
    assert "† published figure, not run by wsolbench" in md
    assert "source SAT, ICCV 2023; threshold policy as published" in md


def test_published_rows_only_for_the_dataset_and_test_split(tmp_path):
    rows = load_published(PUBLISHED)
    assert {r.dataset for r in rows} == {"cub", "ilsvrc", "glas", "camelyon512"}
    assert "GenPromp" in _render("md")
    assert "†" not in compare([CUB], published=False)
    val = compare([CUB], split="val", published=PUBLISHED)
    assert "†" not in val.split("- Cells")[0]
    assert "Published rows are test-split figures" in val
    # A published file of another dataset adds nothing.
    other = tmp_path / "published.yaml"
    other.write_text(
        "rows:\n  - {method: X, dataset: ilsvrc, source: S, metrics: {top1_loc: 1.0}}\n"
    )
    assert "X†" not in compare([CUB], published=other)


def test_published_file_errors(tmp_path):
    bad = tmp_path / "published.yaml"
    bad.write_text("rows:\n  - {method: X, dataset: cub, source: S, metrics: {top1: 1.0}}\n")
    with pytest.raises(ResultError, match=r"published\.yaml: rows\[0\]: unknown metric 'top1'"):
        compare([CUB], published=bad)
    with pytest.raises(ResultError, match="no such published-rows file"):
        compare([CUB], published=tmp_path / "missing.yaml")


def test_mixed_protocol_hashes_are_refused():
    with pytest.raises(ResultError) as info:
        compare([CUB, FIXTURES / "old-protocol"])
    message = str(info.value)
    assert "protocol cub-v1 hash 3f9a1c0d5e7b" in message
    assert "protocol cub-v1 hash 0badc0de0bad" in message
    assert str(FIXTURES / "old-protocol" / "cam" / "seed0" / "result.json") in message
    assert "Compare one protocol version at a time" in message
    assert "re-evaluate" in message


def test_mixed_protocol_ids_are_refused(tmp_path):
    shutil.copytree(CUB / "center", tmp_path / "center")
    path = tmp_path / "center" / "seed0" / "result.json"
    d = json.loads(path.read_text())
    d["protocol"] = "cub-v2"
    path.write_text(json.dumps(d))
    with pytest.raises(ResultError, match=r"protocol cub-v2 hash 3f9a1c0d5e7b[0-9a-f]*: .*center"):
        compare([CUB, tmp_path])


def test_fixed_policy_is_recomputed_from_counts():
    text = _render("md", policy="fixed:0.2", published=False, wide=True)
    assert "- Policy: fixed:0.2 (τ = 0.2 for every metric)" in text
    header = _md_header(text)
    # Thresholds are arange(0, 1, 0.1): τ = 0.2 is index 2.
    values = [100 * c["box"]["multi"]["50"][2] / c["n_images"] for c in _seed_counts("cam")]
    expected = f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"
    assert _md_row(text, "cam")[header.index("IoU50")] == expected
    gt = [100 * c["box"]["largest"]["50"][2] / c["n_images"] for c in _seed_counts("cam")]
    expected_gt = f"{statistics.fmean(gt):.2f} ± {statistics.stdev(gt):.2f}"
    assert _md_row(text, "cam")[header.index("GT-known")] == expected_gt


def test_stored_metrics_are_never_used():
    # The fixtures store a stale maxboxacc_v2 of -1: the table must show values from the counts.
    assert "-1.00" not in _render("md")


def test_select_policy_uses_val_counts():
    board = build_leaderboard([CUB / "cam"], policy="select", published=False)
    (row,) = board.rows
    vals = _seed_counts("cam", "val")
    tests = _seed_counts("cam", "test")
    # GT-known: τ* = the first best threshold of val's largest-contour IoU50 counts.
    picked = []
    for v, t in zip(vals, tests, strict=True):
        curve = v["box"]["largest"]["50"]
        picked.append(100 * t["box"]["largest"]["50"][curve.index(max(curve))] / t["n_images"])
    assert row.mean["gt_known_loc"] == pytest.approx(statistics.fmean(picked))
    assert "select (τ chosen per run on the val split" in compare([CUB / "cam"], policy="select")


def test_select_without_val_is_refused(tmp_path):
    shutil.copytree(CUB / "center", tmp_path / "center")
    path = tmp_path / "center" / "seed0" / "result.json"
    d = json.loads(path.read_text())
    del d["counts"]["val"]
    path.write_text(json.dumps(d))
    with pytest.raises(ResultError, match=r"result\.json: the 'select' policy needs box or mask"):
        compare([tmp_path], policy="select")
    assert "center" in compare([tmp_path], policy="oracle")


def test_duplicate_seed_is_refused(tmp_path):
    shutil.copytree(CUB / "center", tmp_path / "a")
    shutil.copytree(CUB / "center", tmp_path / "b")
    with pytest.raises(ResultError, match="same config and seed 0"):
        compare([tmp_path])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown format 'pdf'"):
        compare([CUB], fmt="pdf")
    with pytest.raises(ValueError, match="unknown split 'train'"):
        compare([CUB], split="train")
    with pytest.raises(ValueError):
        compare([CUB], policy="best")
    with pytest.raises(ResultError, match="no such file or folder"):
        compare([FIXTURES / "nowhere"])


def test_latex_and_html_are_escaped_and_captioned():
    latex = _render("latex")
    assert r"\begin{table}" in latex and r"\caption{Protocol: cub-v1" in latex
    assert r"\toprule" in latex and r"\midrule" in latex and r"\bottomrule" in latex
    assert "±" not in latex and "–" not in latex and "τ" not in latex and "clip_patch" not in latex
    assert r"$\pm$" in latex
    html_text = _render("html")
    assert html_text.startswith('<table class="wsolbench">\n<caption>Protocol: cub-v1')
    assert html_text.count("<table") == 1 and html_text.rstrip().endswith("</table>")
    assert "<tfoot>" in html_text


def test_csv_columns():
    rows = list(csv.DictReader(io.StringIO(_render("csv"))))
    first = rows[0]
    for column in ("method", "config", "pretrained", "seeds", "published"):
        assert column in first
    assert "maxboxacc_v2_mean" in first and "maxboxacc_v2_std" in first
    assert "pxap_mean" not in first
    configs = {r["config"] for r in rows if r["method"] == "tedloc"}
    assert configs == {"orthogonalize=qr", "orthogonalize=svd"}
    center = next(r for r in rows if r["method"] == "center")
    assert center["maxboxacc_v2_std"] == "" and center["seeds"] == "1"
    assert center["top1_loc_mean"] == ""


def test_fixture_tree_is_what_the_tests_assume():
    found = find_results([CUB])
    assert {r.protocol_hash for _, r in found} == {
        "3f9a1c0d5e7b2a4c6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"
    }
    assert [r.pretrained for _, r in found].count("none") == 2


def test_a_folder_s_hidden_folders_are_not_searched(tmp_path):
    """A killed make_reports left its copy in progress, reports/results/.<protocol>.partial,
    beside the board's folder: `compare reports/results` found every run twice and refused
    ("two results of cam with the same config and seed 0"). Hidden folders are where wsolbench
    builds (.partial, .old, .tmp-, .submitit)."""
    shutil.copytree(CUB, tmp_path / "results" / "cub")
    shutil.copytree(CUB, tmp_path / "results" / ".cub.partial")
    found = find_results([tmp_path / "results"])
    assert len(found) == len(find_results([CUB]))
    assert all(".cub.partial" not in str(path) for path, _ in found)
    hidden = find_results([tmp_path / "results" / ".cub.partial"])  # named: searched as asked
    assert len(hidden) == len(found)
    # a folder whose results all lie in hidden folders says so, and which one to name
    shutil.rmtree(tmp_path / "results" / "cub")
    with pytest.raises(ResultError, match=r"only in hidden folders, which are skipped: name one"):
        find_results([tmp_path / "results"])


def test_fixed_policy_off_grid_names_the_grid_tau():
    text = _render("md", policy="fixed:0.23", published=False)
    assert "- Policy: fixed:0.23 (nearest grid τ = 0.2 for every metric)" in text
    assert text == _render("md", policy="fixed:0.23", published=False)
    on_grid = _render("md", policy="fixed:0.2", published=False)
    assert text.split("- Maps")[1] == on_grid.split("- Maps")[1]  # same numbers as τ = 0.2


def _glas_result(folder: Path, seed: int, method: str = "cam", test_fg=None) -> None:
    """A hand-made glas-v1 result: mask counts only (val = valpx, test), step 0.25; ``test_fg``
    replaces the test split's foreground values."""
    from wsolbench import metrics
    from wsolbench.protocol import load_protocol

    def counts(fg_values, bg_values) -> dict:
        counter = metrics.MaskCounter(metrics.threshold_grid(0.25))
        values = np.array([*fg_values, *bg_values], dtype=np.float64)[None]
        counter.update(values, np.arange(values.size)[None] < len(fg_values), None)
        return {**counter.to_dict(), "iou_thresholds": [30, 50, 70]}

    record = {
        "schema": 2,
        "method": method,
        "dataset": "glas",
        "protocol": "glas-v1",
        "protocol_hash": load_protocol("glas-v1").hash,
        "data_fingerprint": {
            "sha256": "91a5" * 16,
            "version": 1,
            "splits": {
                "val": {"sha256": "0a10" * 16, "n_images": 1},
                "test": {"sha256": "7e57" * 16, "n_images": 1},
            },
        },  # fmt: skip
        "seed": seed,
        "config": {"seed": seed},
        "pretrained": "resnet50",
        "metrics": {},
        "counts": {
            "val": counts([0.8, 0.8], [0.0, 0.1, 0.6]),
            "test": counts(test_fg or [1.0, 0.9, 0.5, 0.3 + 0.3 * seed], [0.0, 0.1, 0.25, 0.8]),
        },
    }
    path = folder / f"seed{seed}" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record), encoding="utf-8")


def test_mask_protocol_board_shows_overlap_metrics_and_published_rows(tmp_path):
    for seed in (0, 1):
        _glas_result(tmp_path / "cam", seed)
    text = compare([tmp_path], fmt="md", wide=True, published=PUBLISHED)
    header = _md_header(text)
    assert header[3:11] == ["PxAP", "Dice FG", "Dice BG", "mIoU", "TPR", "FNR", "TNR", "FPR"]
    assert "MaxBoxAccV2" not in header
    cam = _md_row(text, "cam")
    assert all("±" in cell for cell in cam[4:7])  # two seeds: mean ± std
    # the spec's published PxAP, as printed, marked †, the other cells empty
    assert _md_row(text, "CAM† (ResNet50)")[3:7] == ["64.4", "–", "–", "–"]
    assert _md_row(text, "NEGEV† (InceptionV3)")[3] == "70.1"
    assert _md_row(text, "U-Net† (fully supervised)")[3] == "96.2"
    assert "27.5" not in text  # camelyon512's rows stay on camelyon512's boards
    published = [r for r in csv.DictReader(io.StringIO(compare([tmp_path], fmt="csv")))
                 if r["published"] == "true"]  # fmt: skip
    assert len(published) == 13 and {r["policy"] for r in published} == {"as published"}
    masks = "Dice FG / BG, mIoU and TPR / FNR / TNR / FPR"
    assert f"{masks} at mIoU's" in " ".join(text.split())  # the header wraps
    # select: τ from the val split's mask counts (its best mIoU is at τ = 0.75)
    selected = compare([tmp_path], fmt="csv", policy="select", published=False)
    row = next(csv.DictReader(io.StringIO(selected)))
    assert float(row["dice_fg_mean"]) == pytest.approx(100 * 4 / 7)  # TP 2, FP 1, FN 2 at 0.75
    # both seeds at 0.75: TP 2 (1.0, 0.9) of F = 4, FP 1 (0.8) of B = 4
    assert float(row["tpr_mean"]) == float(row["fnr_mean"]) == pytest.approx(50.0)
    assert float(row["fpr_mean"]) == pytest.approx(25.0) and float(row["tnr_mean"]) == 75.0
    words = compare([tmp_path], policy="select", published=False).split()
    assert f"{masks} at val's best mIoU" in " ".join(words)


def test_a_board_without_boxes_ranks_its_rows_by_pxap(tmp_path):
    """PxAP is the ranking metric where no row has boxes (its first column, and what the Group
    letters and the order note test): the rows follow it, not the method names."""
    _glas_result(tmp_path / "cam", 0)
    _glas_result(tmp_path / "tedloc", 0, method="tedloc", test_fg=[1.0, 0.9, 0.9, 0.9])
    text = compare([tmp_path], fmt="md", published=False)
    assert float(_md_row(text, "tedloc")[3]) > float(_md_row(text, "cam")[3])
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["tedloc", "cam"]
    # the published rows after them, by PxAP too (the file lists them by method)
    text = compare([tmp_path], fmt="md", published=PUBLISHED)
    names = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ")]
    column = _md_header(text).index("PxAP")
    pxaps = [float(_md_row(text, name)[column]) for name in names if "†" in name]
    assert len(pxaps) == 13 and pxaps == sorted(pxaps, reverse=True)


def test_one_teacher_under_two_paths_is_one_row(tmp_path):
    """A row is its weights by content: seeds whose teacher (or checkpoint) is the same file under
    two machines' paths are one row, and no label shows a path."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    teacher = "run:{} (weights sha256 a0d20a954fbf, data a1b0)"
    for path in sorted((tmp_path / "cam").rglob("result.json")):
        d = json.loads(path.read_text())
        folder = f"/lab{d['seed']}/work_dirs/cam-seed0"  # another folder per seed: one file
        d["config"].update(teacher=f"run:{folder}", text={"checkpoint": f"{folder}/clip.pt"})
        d["overrides"] = {"teacher": f"run:{folder}", "text.checkpoint": f"{folder}/clip.pt"}
        text = f"file:clip.pt (sha256 {'c' * 12})"
        d["pretrained"] = f"text={text}; teacher={teacher.format('cam-seed0')}"
        d["provenance"] = {"text": text, "teacher": teacher.format("cam-seed0")}
        path.write_text(json.dumps(d))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "cam")[2] == "3"  # one row of the three seeds
    assert "/lab" not in text


def test_a_one_part_method_s_top_level_checkpoint_is_its_weights_key(tmp_path):
    """The example plugin's convention (``pretrained`` / ``checkpoint`` at the top of its config,
    one part ``features``): its seeds under two machines' paths are one row."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    source = f"file:weights.pt (sha256 {'d' * 12})"
    for path in sorted((tmp_path / "cam").rglob("result.json")):
        d = json.loads(path.read_text())
        d["config"].update(pretrained=True, checkpoint=f"/lab{d['seed']}/has/weights.pt")
        d["pretrained"], d["provenance"] = source, {"features": source}
        path.write_text(json.dumps(d))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "cam")[2] == "3" and "/lab" not in text


def test_an_eval_s_row_is_its_weights_not_a_training_config_it_did_not_run(tmp_path):
    """An eval records the config of the run whose weights it evaluated, or the preset's when the
    file sits outside any run: its training keys say nothing of the evaluated weights, which its
    pretrained names by sha256 (the same file evaluated from two places is one row)."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    for path in sorted((tmp_path / "cam").rglob("result.json")):
        d = json.loads(path.read_text())
        d["config"]["train"] = {"max_epochs": 1 + d["seed"]}
        d["evaluated_weights"] = "e" * 64
        path.write_text(json.dumps(d))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "cam")[2] == "3" and "max_epochs" not in text


def test_a_cache_folder_is_where_a_machine_keeps_files_not_what_a_run_is(tmp_path):
    """``text.cache_dir`` (any ``*cache_dir`` key) names a folder of one machine: runs that differ
    only there are seeds of one row, and no label shows it."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    for path in sorted((tmp_path / "cam").rglob("result.json")):
        d = json.loads(path.read_text())
        d["config"]["text"] = {"cache_dir": f"/lab{d['seed']}/textcache"}
        d["overrides"] = {"text.cache_dir": f"/lab{d['seed']}/textcache"}
        path.write_text(json.dumps(d))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "cam")[2] == "3" and "/lab" not in text


def _as_plugin_runs(folder: Path, code_of_seed) -> None:
    """The cam fixture's runs relabelled as the example plugin's ``has``, each seed's
    ``env["code"]`` naming wsolbench-has as ``code_of_seed(seed)`` = (version, dirty) records."""
    ours = {"commit": "2" * 40, "dirty": False, "distribution": "wsolbench", "version": "0.1.0"}
    for path in folder.rglob("result.json"):
        d = json.loads(path.read_text())
        version, dirty = code_of_seed(d["seed"])
        theirs = {"commit": "1" * 40, "dirty": dirty, "distribution": "wsolbench-has"}
        d["method"] = "has"
        d["env"] = {**d.get("env", {}), "code": {"wsolbench": ours, "wsolbench_has": theirs}}
        d["env"]["code"]["wsolbench_has"]["version"] = version
        path.write_text(json.dumps(d))


def test_two_versions_of_a_plugin_are_two_rows_named_by_version(tmp_path):
    """wsolbench-has 0.2.0 may compute something else than 0.1.0 under the same method name:
    its runs are not seeds of 0.1.0's row, and the labels say which is which."""
    shutil.copytree(CUB / "cam", tmp_path / "has")
    _as_plugin_runs(tmp_path / "has", lambda seed: ("0.2.0" if seed == 2 else "0.1.0", False))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "has (plugin=wsolbench-has 0.1.0)")[2] == "2"
    assert _md_row(text, "has (plugin=wsolbench-has 0.2.0)")[2] == "1"
    assert "ran under different" not in text
    # one version alone needs no name
    shutil.rmtree(tmp_path / "has" / "seed2")
    assert _md_row(compare([tmp_path], published=False, wide=True), "has")[2] == "2"
    # a record made before env.code may be of either version: not averaged with a known one
    d = json.loads((tmp_path / "has" / "seed0" / "result.json").read_text())
    del d["env"]["code"]
    d["seed"] = d["config"]["seed"] = 5
    (tmp_path / "has" / "seed5").mkdir()
    (tmp_path / "has" / "seed5" / "result.json").write_text(json.dumps(d))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "has (plugin=version unknown)")[2] == "1"


def test_a_plugin_edited_between_seeds_is_one_row_whose_note_names_its_code(tmp_path):
    """The same version with uncommitted edits is a developer's change, not a release: the seeds
    stay one row, and the note names the plugin's code beside wsolbench's (which did not move)."""
    shutil.copytree(CUB / "cam", tmp_path / "has")
    _as_plugin_runs(tmp_path / "has", lambda seed: ("0.1.0", seed == 2))
    text = compare([tmp_path], published=False, wide=True)
    assert _md_row(text, "has")[2] == "3"
    plugin = "222222222222 + wsolbench-has 0.1.0 111111111111"
    assert (
        f"- has: its seeds ran under different code: {plugin} (seeds 0, 1), "
        f"{plugin} with uncommitted changes (seed 2)"
    ) in " ".join(text.split())  # the note as one line, however it wraps


def _with_reference(folder: Path, reference_of_seed) -> None:
    """Each record's ``method_reference`` set to ``reference_of_seed(seed)`` (None: left out, as
    in a record made before the key)."""
    for path in folder.rglob("result.json"):
        d = json.loads(path.read_text())
        d.pop("method_reference", None)
        text = reference_of_seed(d["seed"])
        if text is not None:
            d["method_reference"] = text
        path.write_text(json.dumps(d))


def test_a_method_s_reference_is_a_note_under_its_table_in_every_format(tmp_path):
    """What a row named after a paper computes relative to it, from its records; a method whose
    records carry none gets no note (the table reads records only, never the registry)."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    shutil.copytree(CUB / "center", tmp_path / "center")
    text = "CAM as wsolevaluation's code trains it_ but 100 % on the spec's & <schedule>"
    _with_reference(tmp_path / "cam", lambda seed: text)
    md = compare([tmp_path], published=False)
    assert f"- cam: {text}" in " ".join(md.split())  # the note as one line, however it wraps
    assert "- center:" not in md
    assert f"cam: {html.escape(text)}" in compare([tmp_path], published=False, fmt="html")
    assert f"cam: {latex_escape(text)}" in compare([tmp_path], published=False, fmt="latex")
    rows = list(csv.DictReader(io.StringIO(compare([tmp_path], published=False, fmt="csv"))))
    assert {r["method"]: r["reference"] for r in rows} == {"cam": text, "center": ""}
    # records without the key render as before: no note, no column
    plain = compare([CUB], published=False, fmt="csv")
    assert "reference" not in plain.splitlines()[0].split(",")


def test_records_of_one_method_that_disagree_show_each_text_by_row(tmp_path):
    """Two versions of a plugin may describe themselves differently: each text is shown, named by
    the rows that carry it; a run without the key adds none."""
    shutil.copytree(CUB / "cam", tmp_path / "has")
    _as_plugin_runs(tmp_path / "has", lambda seed: ("0.2.0" if seed == 2 else "0.1.0", False))
    _with_reference(tmp_path / "has", lambda seed: "HaS, version two" if seed == 2 else "HaS")
    text = compare([tmp_path], published=False)
    assert "- has (plugin=wsolbench-has 0.1.0): HaS\n" in text
    assert "- has (plugin=wsolbench-has 0.2.0): HaS, version two\n" in text
    _with_reference(tmp_path / "has", lambda seed: None if seed == 2 else "HaS")
    text = compare([tmp_path], published=False)
    assert "- has (plugin=wsolbench-has 0.1.0): HaS\n" in text and "0.2.0):" not in text


def test_one_csv_of_boards_with_different_columns_keeps_each_cell_under_its_header(tmp_path):
    """--by-data: a board of a method that classifies and one of a method that does not (no
    Top-k columns) share one header; the second board's Top-k cells are empty, not the next
    columns' shifted in."""
    shutil.copytree(CUB / "cam", tmp_path / "cam")
    shutil.copytree(CUB / "center", tmp_path / "center")
    for path in (tmp_path / "center").rglob("result.json"):
        d = json.loads(path.read_text())
        d["data_fingerprint"]["sha256"] = "0f" * 32
        path.write_text(json.dumps(d))
    text = compare([tmp_path], published=False, by_data=True, fmt="csv")
    header, *body = csv.reader(io.StringIO(text))
    assert body and all(len(row) == len(header) for row in body)
    rows = {r["method"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows["cam"]["top1_loc_mean"] and not rows["center"]["top1_loc_mean"]
    assert rows["center"]["data_fingerprint"] == "0f" * 32 and rows["center"]["split"] == "test"
