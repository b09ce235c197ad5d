"""Leaderboards that fit a terminal: short weights names, their footnotes, the columns markdown
keeps within 120 characters, and ``--wide`` for everything.

The boards are the committed one (reports/results/synthetic-v1) and the three rows ``make demo``
prints (center, cam, tedloc; seed 0 of the committed runs, given the demo's quick overrides and
weights).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from wsolbench.cli.main import main
from wsolbench.leaderboard import compare
from wsolbench.leaderboard.columns import TERMINAL_WIDTH
from wsolbench.leaderboard.sources import short_name, short_names
from wsolbench.results.record import METRIC_NAMES, find_results

REPO = Path(__file__).resolve().parents[1]
BOARD = REPO / "reports" / "results" / "synthetic-v1"
SYNTHCLIP = "file:/root/.cache/wsolbench/synthclip/synthclip-v1-db89e33c5b28.pt (gelu)"


def _set_pretrained(path: Path, provenance: dict[str, str]) -> None:
    """Give a copied result other weights, as ``Method.pretrained`` would sum them up."""
    record = json.loads(path.read_text())
    record["provenance"] = provenance
    parts = [f"{part}={source}" for part, source in provenance.items()]
    record["pretrained"] = "; ".join(parts) if len(parts) > 1 else provenance.popitem()[1]
    path.write_text(json.dumps(record))


def _copy_clip_patch(seed: int, target: Path) -> None:
    """The committed clip_patch run (seed-independent: one run stands for every seed) as the
    run of ``seed``."""
    shutil.copytree(BOARD / "clip_patch" / "seed0", target)
    record = json.loads((target / "result.json").read_text())
    record["seed"] = seed
    (target / "result.json").write_text(json.dumps(record))


# make demo's tedloc weights as a run records them: by file or folder name and content
QUICK_CLIP = "file:synthclip-quick-v1-3d3c3574803c.pt (sha256 0b789f70aced, gelu)"
DEMO_TEACHER = "run:cam (weights sha256 c77e3b87533c, data a1b07468cea2)"
# the rows of make demo, named by what their -o overrides changed (the weights' by Pretrained)
DEMO_ROWS = {
    "center": "center",
    "cam": "cam‡ (train.max_epochs=14)",
    "tedloc": "tedloc (train.max_epochs=14)",
}


@pytest.fixture
def demo(tmp_path) -> Path:
    """``make demo``'s three rows: the quick schedule, TeD-Loc's text from synthclip-quick-v1 and
    its teacher the demo's cam run."""
    for method in ("center", "cam", "tedloc"):
        shutil.copytree(BOARD / method / "seed0", tmp_path / method)
    provenance = {"backbone": "none", "text": QUICK_CLIP, "teacher": DEMO_TEACHER}
    _set_pretrained(tmp_path / "tedloc" / "result.json", provenance)
    overrides = {"train.max_epochs": 14}
    _set_overrides(tmp_path / "cam" / "result.json", overrides)
    weights = {"text.checkpoint": "synthclip-quick-v1", "teacher": "run:work_dirs/demo/cam"}
    _set_overrides(tmp_path / "tedloc" / "result.json", {**overrides, **weights})
    return tmp_path


def _set_overrides(path: Path, overrides: dict) -> None:
    record = json.loads(path.read_text())
    record["overrides"] = overrides
    path.write_text(json.dumps(record))


def _table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


def _cells(text: str, method: str) -> dict[str, str]:
    header, _, *rows = _table_lines(text)
    columns = [c.strip() for c in header.strip("|").split("|")]
    row = next(r for r in rows if r.split("|")[1].strip() == method)
    return dict(zip(columns, [c.strip() for c in row.strip("|").split("|")], strict=True))


def _sources(root: Path) -> set[str]:
    """Every weights source the results under ``root`` name (none and n/a name no file)."""
    found = {s for _, r in find_results([root]) for s in (r.provenance or {}).values()}
    return found - {"none", "n/a"}


def test_the_committed_board_fits_a_terminal():
    text = compare([BOARD])
    lines = _table_lines(text)
    assert lines and max(map(len, lines)) <= TERMINAL_WIDTH
    assert _cells(text, "tedloc")["Pretrained"] == (
        "backbone none; text synthclip-v1; teacher synthcam-v1"
    )
    assert _cells(text, "clip_patch")["Pretrained"] == "synthclip-v1"
    assert _cells(text, "cam‡")["Pretrained"] == "none"
    assert _cells(text, "center")["Pretrained"] == "n/a"
    # the headline metrics stay; what did not fit is named, with the way to see it
    assert {"MaxBoxAccV2", "PxAP"} <= set(_cells(text, "cam‡"))
    assert "Columns left out to fit 120 characters: IoU30" in text
    notes = " ".join(text.split())  # the notes wrap at 120 characters wherever a word ends
    assert "`compare --wide` shows every column" in notes


def test_the_demo_board_fits_a_terminal(demo):
    text = compare([demo], published=False)
    lines = _table_lines(text)
    assert len(lines) == 2 + 3 and max(map(len, lines)) <= TERMINAL_WIDTH
    cells = _cells(text, DEMO_ROWS["tedloc"])
    assert cells["Pretrained"] == "backbone none; text synthclip-quick-v1; teacher cam"
    assert {"MaxBoxAccV2", "Top-1 Loc"} <= set(cells)
    assert _cells(text, DEMO_ROWS["cam"])["Pretrained"] == "none"


@pytest.mark.parametrize("root", ["committed", "demo"])
def test_the_footnote_gives_every_shortened_source_by_content(root, request):
    """Each footnote names a source by what identifies it (file or folder name with its digest,
    every recorded digest), without the folders of the machine that made it."""
    path = BOARD if root == "committed" else request.getfixturevalue("demo")
    text = compare([path], published=False)
    notes = [line for line in text.splitlines() if line.startswith("- Pretrained ")]
    sources = _sources(path)
    assert len(notes) == len(sources) == 2  # the CLIP and TeD-Loc's cam teacher
    names = ("synthclip-v1", "synthcam-v1") if root == "committed" else ("synthclip-quick-v1",)
    names += ("cam",) if root == "demo" else ()
    tedloc = "tedloc" if root == "committed" else DEMO_ROWS["tedloc"]
    assert "/root/" not in text
    for source in sources:
        body, _, details = source.partition(" (")
        entry = body.rstrip("/").rsplit("/", 1)[-1]  # the file or folder, with its digest
        (note,) = [n for n in notes if entry in n and n.endswith(f" ({details}")]
        name = note.removeprefix("- Pretrained ").partition(":")[0]
        assert name in names
        assert name in _cells(text, tedloc)["Pretrained"]
    assert "- Pretrained none" not in text  # "none" needs no footnote


def test_wide_shows_every_source_in_full_and_every_column(demo, capsys):
    assert main(["compare", str(demo), "--no-published", "--wide"]) == 0
    text = capsys.readouterr().out
    assert "/root/" not in text  # every source by content, not by the machine's folders
    for _, result in find_results([demo]):
        name = DEMO_ROWS[result.method]
        assert _cells(text, name)["Pretrained"] == result.pretrained
    header = set(_cells(text, DEMO_ROWS["tedloc"]))
    assert {METRIC_NAMES[k] for k in ("maxboxacc_iou30", "top5_cls", "gt_known_loc")} <= header
    assert "Params (M)" in header and "Latency shown when clean" in text
    assert "- Pretrained " not in text and "Columns left out" not in text
    assert main(["compare", str(demo), "--no-published"]) == 0
    header = _table_lines(capsys.readouterr().out)[0]
    assert "Top-1 Loc" in header and "Params (M)" not in header  # the default leaves cost out


def test_the_cost_notes_go_with_the_cost_columns():
    text = compare([BOARD])
    assert "MACs (G)" not in _table_lines(text)[0]
    assert "Latency shown when clean" not in text and "multiply-accumulates" not in text
    wide = compare([BOARD], wide=True)
    assert "MACs (G)" in _table_lines(wide)[0] and "multiply-accumulates" in wide


def test_latex_and_html_show_short_names_with_footnotes_and_the_csv_keeps_full_sources(demo):
    tedloc = next(r for _, r in find_results([demo]) if r.method == "tedloc")
    for fmt in ("latex", "html"):
        text = compare([demo], fmt=fmt, published=False)
        assert "teacher cam" in text and f"Pretrained cam: {DEMO_TEACHER}" in text
        assert "PxAP" in text and "IoU30" in text  # only the terminal's table leaves columns out
        wide = compare([demo], fmt=fmt, published=False, wide=True)
        assert "teacher cam" not in wide and "Pretrained cam" not in wide
    assert f"teacher={DEMO_TEACHER}" in compare([demo], fmt="html", published=False, wide=True)
    for wide in (False, True):
        text = compare([demo], fmt="csv", published=False, wide=wide)
        assert "/root/" not in text
        rows = csv.DictReader(io.StringIO(text))
        assert tedloc.pretrained in {r["pretrained"] for r in rows}


def test_full_cells_keep_the_folders_that_tell_two_sources_apart(tmp_path):
    """Two user files of one name in folders whose last parts agree read alike without the
    folders above them: then each keeps its whole path (with --wide and in the CSV)."""
    first, second = "file:/data/a/run/best.pth", "file:/data/b/run/best.pth"
    for seed, source in enumerate((first, second)):
        _copy_clip_patch(seed, tmp_path / f"s{seed}")
        _set_pretrained(tmp_path / f"s{seed}" / "result.json", {"clip": source})
    wide = compare([tmp_path], published=False, wide=True)
    cells = sorted(line.split("|")[2].strip() for line in _table_lines(wide)[2:])
    assert cells == [first, second]
    rows = csv.DictReader(io.StringIO(compare([tmp_path], fmt="csv", published=False)))
    assert sorted(r["pretrained"] for r in rows) == [first, second]
    shutil.rmtree(tmp_path / "s1")  # alone in its table, the file needs no folder above it
    wide = compare([tmp_path], published=False, wide=True)
    assert [line.split("|")[2].strip() for line in _table_lines(wide)[2:]] == ["file:run/best.pth"]


def test_two_sources_never_share_a_short_name_in_one_table(tmp_path):
    """Two synthclip-v1 files of other digests (a rebuilt cache) are two rows told apart by their
    digests, each with its own footnote."""
    other = "file:/home/me/.cache/wsolbench/synthclip/synthclip-v1-0123456789ab.pt (gelu)"
    for seed in (0, 1):
        _copy_clip_patch(seed, tmp_path / f"a{seed}")
        _copy_clip_patch(seed, tmp_path / f"b{seed}")
        _set_pretrained(tmp_path / f"b{seed}" / "result.json", {"clip": other})
    text = compare([tmp_path], published=False)
    pretrained = sorted(line.split("|")[2].strip() for line in _table_lines(text)[2:])
    assert pretrained == ["synthclip-v1@01234567", "synthclip-v1@65c81f83"]
    assert "- Pretrained synthclip-v1@01234567: file:synthclip/synthclip-v1-0123456789ab.pt" in text
    assert "- Pretrained synthclip-v1@65c81f83: file:synthclip-v1-db89e33c5b28.pt" in text


@pytest.mark.parametrize(
    ("source", "name"),
    [
        ("none", "none"),
        ("n/a", "n/a"),
        ("dino_vits16", "dino_vits16"),
        ("cache:resnet50.tv_in1k", "resnet50.tv_in1k"),
        ("cache:ViT-B-16/openai (quickgelu)", "ViT-B-16/openai"),
        (SYNTHCLIP, "synthclip-v1"),
        ("file:/data/ckpt/resnet50_a1_0-14fe96d1.pth", "resnet50_a1_0-14fe96d1.pth"),
        ("/home/alice/.cache/torch/hub/checkpoints/x.pth", "x.pth"),  # before "file:" existed
        ("file:/w/has/seed0/weights.pt (sha256 0a1b2c3d4e5f)", "weights.pt@0a1b2c3d"),
        ("run:/w/work_dirs/cam/seed0 (weights sha256 a0d20a954fbf, data a1b0)", "cam/seed0"),
        ("run:/root/.cache/wsolbench/synthcam/synthcam-v1-dd2dd7afc8b6 (weights …)", "synthcam-v1"),
        ("weights-file", "weights-file"),
    ],
)
def test_short_names(source, name):
    assert short_name(source) == name


def test_short_names_that_clash_grow_until_they_differ():
    # the same name, told apart by the recorded digests
    a, b = "file:/a/weights.pt (sha256 aaaaaaaaaaaa)", "file:/b/weights.pt (sha256 bbbbbbbbbbbb)"
    assert short_names([a, b]) == {a: "weights.pt@aaaaaaaa", b: "weights.pt@bbbbbbbb"}
    # no digest, or one file under two activations: the full sources
    c, d = "file:/a/x.pth", "file:/b/x.pth"
    e, f = f"{SYNTHCLIP.removesuffix(' (gelu)')} (quickgelu)", SYNTHCLIP
    names = short_names([c, d, e, f, "cache:x.pth", "none"])
    assert names == {c: c, d: d, e: e, f: f, "cache:x.pth": "cache:x.pth", "none": "none"}
    # a run folder of the same two last parts as another
    g, h = "run:/w1/cam/seed0 (weights sha256 111111111111)", "run:/w2/cam/seed0"
    assert short_names([g, h]) == {g: "cam/seed0@11111111", h: "cam/seed0"}
    assert len(set(short_names([a, b, c, d, e, f, g, h]).values())) == 8
