"""The committed leaderboards of reports/ equal what reports/make_reports.py renders from the
committed results (reports/results/): regenerate with `make reports` after changing either."""

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPORTS = Path(__file__).resolve().parents[1] / "reports"


def report_step(name: str):
    """One step of reports/make_reports.py (its folder on the path: the steps import each other by
    name, as make_reports.py runs them)."""
    if str(REPORTS) not in sys.path:
        sys.path.insert(0, str(REPORTS))
    return importlib.import_module(name)


@pytest.mark.parametrize("board_name", ["main", "synthetic-histo"])
def test_committed_leaderboards_are_up_to_date(board_name, tmp_path):
    boards = report_step("report_boards")
    board = report_step("report_settings").BOARDS[board_name]
    results = board.results
    assert any(results.rglob("result.json")), f"{results} holds no result: run `make reports`"
    written = boards.render_leaderboards(results, tmp_path)
    expected = list(boards.LEADERBOARD_FILES) + list(boards.DIFF_FILES)
    assert [p.name for p in written] == expected
    out = board.out_dir
    stale = [
        p.name
        for p in written
        if not (out / p.name).is_file() or (out / p.name).read_bytes() != p.read_bytes()
    ]
    assert not stale, f"{out}: {', '.join(stale)} out of date: run reports/make_reports.py"


@pytest.mark.parametrize("board_name", ["main", "synthetic-histo"])
def test_rows_without_pretrained_weights_are_marked_in_every_format(board_name, tmp_path):
    boards = report_step("report_boards")
    board = report_step("report_settings").BOARDS[board_name]
    results = board.results
    from wsolbench.results.record import find_results

    no_weights = sorted({r.method for _, r in find_results([results]) if not r.has_pretrained})
    if not no_weights:  # e.g. only center (no weights to load: "n/a") on the board
        return
    text = {n: (board.out_dir / n).read_text(encoding="utf-8") for n in boards.LEADERBOARD_FILES}
    for method in no_weights:
        assert f"{method}‡" in text["leaderboard.md"] and f"{method}‡" in text["leaderboard.html"]
        assert method.replace("_", "\\_") + "\\ddag{}" in text["leaderboard.tex"]
        rows = [x for x in text["leaderboard.csv"].splitlines() if x.startswith(f"{method},")]
        assert rows and all(",none," in x and "no pretrained weights" in x for x in rows)


def test_the_histology_board_ranks_by_pxap_and_shows_the_mask_metrics():
    """A board without boxes: PxAP first (the Group column beside it tests PxAP), then mIoU and
    Dice, before the classification columns; every CLIP row marked as running without weights."""
    board = report_step("report_settings").BOARDS["synthetic-histo"]

    def header(name: str) -> list[str]:
        text = (board.out_dir / name).read_text(encoding="utf-8")
        line = next(line for line in text.splitlines() if line.startswith("| Method"))
        return [cell.strip() for cell in line.strip("|").split("|")]

    assert header("leaderboard-ci.md")[3:5] == ["PxAP", "Group"]
    assert header("leaderboard.md")[3:5] == ["PxAP", "mIoU"]
    wide = header("leaderboard-wide.md")
    assert wide[3:7] == ["PxAP", "Dice FG", "Dice BG", "mIoU"] and wide.index("Top-1 Cls") > 6
    text = (board.out_dir / "leaderboard-ci.md").read_text(encoding="utf-8")
    assert "Group: rows sharing a letter are not significantly different on PxAP" in text
    for method in ("clip_patch", "clip_gradcam"):
        assert f"| {method}‡" in text


def test_every_report_script_imports():
    """The scripts behind `make reports` and the TeD-Loc ablation table import: no test runs them
    end to end (they train), so a renamed library function would otherwise break them unseen."""
    for path in sorted(REPORTS.glob("*.py")):
        report_step(path.stem)
    importlib.import_module("methods.tedloc.ablations")


def test_an_interrupted_copy_of_the_results_leaves_the_earlier_ones_whole(tmp_path, monkeypatch):
    """Step 2 copies the results from scratch: cut short (Ctrl-C), the folder the boards are
    rendered from (`--no-runs`) must hold the earlier copy, not a few methods of the new one."""
    runs = report_step("report_runs")
    results = tmp_path / "results" / "synthetic-v1"
    (results / "old" / "seed0").mkdir(parents=True)
    (results / "old" / "seed0" / "result.json").write_text("{}")
    cells = [SimpleNamespace(method=m, seed=0, work_dir=tmp_path / m) for m in ("a", "b")]
    monkeypatch.setattr(runs, "board_cells", lambda methods, seeds, board: cells)
    monkeypatch.setattr(runs, "finished", lambda found: found)
    copied = []

    def copy_result(source, target):
        if copied:
            raise KeyboardInterrupt
        copied.append(target)
        target.mkdir(parents=True)
        (target / "result.json").write_text("{}")

    monkeypatch.setattr(runs, "copy_result", copy_result)
    board = SimpleNamespace(results=results)
    with pytest.raises(KeyboardInterrupt):
        runs.collect_results(["a", "b"], (0,), board)
    assert [p.name for p in results.parent.iterdir()] == ["synthetic-v1"]  # no temporary left
    assert [p.name for p in results.iterdir()] == ["old"]
    copied.clear()
    monkeypatch.setattr(runs, "finished", lambda found: found[:1])
    runs.collect_results(["a", "b"], (0,), board)
    assert [p.name for p in results.iterdir()] == ["a"]
