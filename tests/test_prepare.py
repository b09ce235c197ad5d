"""CUB and ILSVRC converters on hand-made miniature releases: output equals hand-computed lines."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from wsolbench.data.cub import convert_cub, cub_box, select_per_class
from wsolbench.data.ilsvrc import convert_ilsvrc, read_synsets
from wsolbench.data.metadata import (
    MetadataError,
    SplitMetadata,
    read_split,
    write_split,
)

# ------------------------------------------------------------------------------------------ CUB

CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
# id, path, class (1-based), is_train, (x, y, w, h), image size
CUB_IMAGES = [
    (1, "001.Black_footed_Albatross/A_0001.jpg", 1, 0, (2.0, 3.0, 10.0, 8.0), (30, 20)),
    (2, "001.Black_footed_Albatross/A_0002.jpg", 1, 1, (0.0, 0.0, 30.0, 20.0), (30, 20)),
    (3, "001.Black_footed_Albatross/A_0003.jpg", 1, 1, (1.7, 2.2, 5.5, 4.4), (16, 12)),
    (4, "001.Black_footed_Albatross/A_0004.jpg", 1, 1, (5.0, 5.0, 12.0, 7.0), (16, 12)),
    (5, "002.Laysan_Albatross/B_0005.png", 2, 1, (4.0, 1.0, 9.0, 9.0), (24, 10)),
    (6, "002.Laysan_Albatross/B_0006.png", 2, 0, (0.0, 2.0, 23.0, 7.0), (24, 10)),
    (7, "002.Laysan_Albatross/B_0007.png", 2, 1, (3.0, 3.0, 3.0, 3.0), (8, 8)),
    (8, "002.Laysan_Albatross/B_0008.png", 2, 1, (1.0, 1.0, 2.0, 2.0), (8, 8)),
]
# Hand-computed with x0=int(x), y0=int(y), x1=min(int(x+w), W-1), y1=min(int(y+h), H-1).
CUB_TRAIN_BOXES = [
    "001.Black_footed_Albatross/A_0002.jpg,0,0,29,19",  # x+w = 30 = W: clipped
    "001.Black_footed_Albatross/A_0003.jpg,1,2,7,6",  # int(7.2), int(6.6)
    "001.Black_footed_Albatross/A_0004.jpg,5,5,15,11",  # 17 > W-1, 12 = H: clipped
    "002.Laysan_Albatross/B_0005.png,4,1,13,9",  # y+h = 10 = H: clipped
    "002.Laysan_Albatross/B_0007.png,3,3,6,6",
    "002.Laysan_Albatross/B_0008.png,1,1,3,3",
]
CUB_TEST_BOXES = [
    "001.Black_footed_Albatross/A_0001.jpg,2,3,12,11",  # x + w, no "- 1"
    "002.Laysan_Albatross/B_0006.png,0,2,23,9",
]


def make_cub(root: Path, images: bool = True) -> Path:
    src = root / "CUB_200_2011"
    src.mkdir(parents=True)
    (src / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(CUB_CLASSES, 1)))
    rows = CUB_IMAGES
    (src / "images.txt").write_text("".join(f"{r[0]} {r[1]}\n" for r in rows))
    (src / "image_class_labels.txt").write_text("".join(f"{r[0]} {r[2]}\n" for r in rows))
    (src / "train_test_split.txt").write_text("".join(f"{r[0]} {r[3]}\n" for r in rows))
    (src / "bounding_boxes.txt").write_text(
        "".join(f"{r[0]} {' '.join(repr(v) for v in r[4])}\n" for r in rows)
    )
    if images:
        for _, rel, *_, size in rows:
            (src / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, (120, 80, 40)).save(src / "images" / rel)
    return src


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_cub_box_rule():
    assert cub_box(60.0, 27.0, 325.0, 304.0, 500, 335) == [60, 27, 385, 331]  # CUB id 1
    assert cub_box(5.0, 127.0, 496.0, 131.0, 500, 275) == [5, 127, 499, 258]  # CUB id 47
    assert cub_box(0.0, 0.0, 500.0, 375.0, 500, 375) == [0, 0, 499, 374]  # CUB id 272


def test_convert_cub_matches_hand_computed_lines(tmp_path):
    src = make_cub(tmp_path / "release")
    out = tmp_path / "out"
    counts = convert_cub(tmp_path / "release", out)  # the release's parent is accepted too
    assert counts == {"train": 6, "test": 2}
    meta = out / "metadata"
    assert lines(meta / "train" / "localization.txt") == CUB_TRAIN_BOXES
    assert lines(meta / "test" / "localization.txt") == CUB_TEST_BOXES
    assert lines(meta / "test" / "image_ids.txt") == [b.split(",")[0] for b in CUB_TEST_BOXES]
    assert lines(meta / "test" / "class_labels.txt") == [
        "001.Black_footed_Albatross/A_0001.jpg,0",
        "002.Laysan_Albatross/B_0006.png,1",
    ]
    assert lines(meta / "test" / "image_sizes.txt") == [
        "001.Black_footed_Albatross/A_0001.jpg,30,20",
        "002.Laysan_Albatross/B_0006.png,24,10",
    ]
    assert not (meta / "val").exists()
    assert (out / "images").is_symlink()
    assert (out / "images").resolve() == (src / "images").resolve()
    read_split(meta / "train", num_classes=2, image_root=out / "images", check_images=True)


def test_cub_missing_image_is_an_error(tmp_path):
    src = make_cub(tmp_path / "release")
    (src / "images" / "002.Laysan_Albatross" / "B_0007.png").unlink()
    with pytest.raises(MetadataError, match="B_0007.png; the converter reads image sizes"):
        convert_cub(src, tmp_path / "out")


def test_cub_malformed_release_file(tmp_path):
    src = make_cub(tmp_path / "release")
    (src / "bounding_boxes.txt").write_text("1 2.0 3.0 10.0\n")
    with pytest.raises(MetadataError, match=r"bounding_boxes.txt line 1: 4 fields, expected 5"):
        convert_cub(src, tmp_path / "out")


def test_cub_release_file_that_is_not_utf8_is_named(tmp_path):
    src = make_cub(tmp_path / "release", images=False)
    with open(src / "classes.txt", "ab") as f:
        f.write(b"3 003.Caf\xe9\n")
    with pytest.raises(ValueError, match=r"classes.txt line 3: not UTF-8"):
        convert_cub(src, tmp_path / "out")


def test_cub_val_per_class_is_deterministic_and_disjoint(tmp_path):
    src = make_cub(tmp_path / "release")
    first = convert_cub(src, tmp_path / "a", val_per_class=1, seed=3)
    convert_cub(src, tmp_path / "b", val_per_class=1, seed=3)
    assert first == {"train": 4, "test": 2, "val": 2}
    a, b = tmp_path / "a" / "metadata", tmp_path / "b" / "metadata"
    for split in ("train", "val", "test"):
        for name in ("image_ids", "class_labels", "image_sizes", "localization"):
            assert (a / split / f"{name}.txt").read_text() == (
                b / split / f"{name}.txt"
            ).read_text()
    val = read_split(a / "val")
    train = read_split(a / "train")
    assert sorted(val.labels.values()) == [0, 1]  # one per class
    assert not set(val.image_ids) & set(train.image_ids)
    original_train = {r[1] for r in CUB_IMAGES if r[3] == 1}
    assert set(val.image_ids) | set(train.image_ids) == original_train
    # val boxes are those of train, unchanged
    train_lines = dict(line.split(",", 1) for line in CUB_TRAIN_BOXES)
    for line in lines(a / "val" / "localization.txt"):
        image_id, box = line.split(",", 1)
        assert train_lines[image_id] == box
    readme = (a / "README.txt").read_text()
    assert "NOT the official CUBV2" in readme and "seed 3" in readme
    # a later conversion without val removes the stale split
    assert "val" not in convert_cub(src, tmp_path / "a")
    assert not (a / "val").exists()


def test_select_per_class_depends_on_seed():
    ids = [f"c{c}/{i}.jpg" for c in range(3) for i in range(10)]
    labels = {i: int(i[1]) for i in ids}
    kept, chosen = select_per_class(ids, labels, 2, seed=0)
    assert len(chosen) == 6 and len(kept) == 24 and kept + chosen != ids
    assert [i for i in ids if i in set(chosen)] == chosen  # original order
    selections = {tuple(select_per_class(ids, labels, 2, seed=s)[1]) for s in range(5)}
    assert len(selections) > 1
    with pytest.raises(MetadataError, match="class 0 has only 10 training image"):
        select_per_class(ids, labels, 10)


def test_cub_with_cubv2_metadata(tmp_path):
    src = make_cub(tmp_path / "release")
    extra = "001.Black_footed_Albatross/30107316117.jpg"
    Image.new("RGB", (50, 40)).save(src / "images" / extra)
    cubv2 = tmp_path / "cubv2"
    write_split(
        cubv2,
        SplitMetadata(cubv2, [extra], {extra: 0}, {extra: (50, 40)}, {extra: [[3, 4, 40, 30]]}),
    )
    counts = convert_cub(src, tmp_path / "out", cubv2=cubv2)
    assert counts == {"train": 6, "test": 2, "val": 1}
    val = tmp_path / "out" / "metadata" / "val"
    assert lines(val / "localization.txt") == [f"{extra},3,4,40,30"]
    assert "official CUBV2" in (tmp_path / "out" / "metadata" / "README.txt").read_text()

    (src / "images" / extra).unlink()
    with pytest.raises(MetadataError, match="30107316117.jpg.*does not exist"):
        convert_cub(src, tmp_path / "out2", cubv2=cubv2)
    with pytest.raises(MetadataError, match="give only one"):
        convert_cub(src, tmp_path / "out3", cubv2=cubv2, val_per_class=1)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("3 1.0 2.0 -5.0 4.0", "a width or height <= 0"),
        ("3 20.0 2.0 5.0 4.0", "lies outside the 16x12 image"),
        ("3 nan 2.0 5.0 4.0", "is not finite"),
    ],
)
def test_cub_bad_source_box_is_named_and_nothing_is_written(tmp_path, line, why):
    src = make_cub(tmp_path / "release")
    boxes = lines(src / "bounding_boxes.txt")
    boxes[2] = line
    (src / "bounding_boxes.txt").write_text("\n".join(boxes) + "\n")
    with pytest.raises(MetadataError) as raised:
        convert_cub(src, tmp_path / "out", val_per_class=1)
    message = str(raised.value)
    assert (
        message.startswith(f"{src / 'bounding_boxes.txt'} line 3: image id 3 (") and why in message
    )
    assert "restore the original release file" in message
    assert not (tmp_path / "out").exists()


def tree_state(root: Path) -> dict[str, object]:
    """Everything under ``root``: a file's bytes, a link's target (not followed), a folder."""
    state: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = f"-> {os.readlink(path)}"
            else:
                state[key] = path.read_bytes() if path.is_file() else "folder"
    return state


def fail_the_second_split(monkeypatch) -> None:
    """The second split folder a conversion writes fails (a full disk), after the first one was
    renamed into place: a conversion interrupted midway."""
    from wsolbench.util.atomic import replace_folder

    calls = []

    def fails_the_second(built, final):
        calls.append(final)
        if len(calls) == 2:
            shutil.rmtree(built)
            raise OSError(errno.ENOSPC, "No space left on device", str(final))
        replace_folder(built, final)

    # where write_split renames each split folder into place
    monkeypatch.setattr("wsolbench.data.metadata.write.replace_folder", fails_the_second)


def check_failure_leaves_the_earlier_state(monkeypatch, convert, out: Path, fresh: Path) -> None:
    """``convert(target)`` failing midway leaves ``out`` (converted before) as it was, no
    temporary folder in it, and no ``fresh`` folder at all."""
    before = tree_state(out)
    for target in (out, fresh):
        monkeypatch.undo()
        fail_the_second_split(monkeypatch)
        with pytest.raises(OSError, match="No space left"):
            convert(target)
    assert tree_state(out) == before
    assert not fresh.exists()


def test_cub_conversion_that_fails_leaves_the_earlier_one(tmp_path, monkeypatch):
    """The metadata folder is built aside and renamed into place at the end: a failure half-way
    leaves the earlier conversion (or nothing) and no temporary folder."""
    src, out = make_cub(tmp_path / "release"), tmp_path / "out"
    convert_cub(src, out, val_per_class=1)
    assert sorted(p.name for p in out.iterdir()) == ["images", "metadata"]
    check_failure_leaves_the_earlier_state(
        monkeypatch, lambda target: convert_cub(src, target, val_per_class=2), out, tmp_path / "new"
    )


def test_prepare_cub_needs_a_selection_split(tmp_path, capsys):
    """cub-v1 (the one CUB protocol) evaluates val: a root without it is refused by ``run``, so
    ``prepare`` refuses first, before reading 11,788 image headers, and ``run`` names the same
    options as required."""
    from wsolbench.cli.main import main
    from wsolbench.data.sources import get_dataset

    src = make_cub(tmp_path / "release", images=False)
    assert main(["prepare", "cub", "--src", str(src), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: prepare cub needs a val split") and len(err.splitlines()) == 1
    assert "--val-per-class N" in err and "--cubv2 DIR" in err
    assert not (tmp_path / "out").exists()
    hint = get_dataset("cub").prepare_hint
    assert "--val-per-class 5" in hint and "--cubv2 DIR" in hint and "[" not in hint


# --------------------------------------------------------------------------------------- ILSVRC

WNIDS = ["n01440764", "n01751748", "n09193705"]


def xml(name: str, size: tuple[int, int], objects: list[tuple[str, tuple[int, ...]]]) -> str:
    parts = [
        f"<annotation><folder>val</folder><filename>{name}</filename>",
        f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>",
    ]
    for wnid, (x0, y0, x1, y1) in objects:
        parts.append(
            f"<object><name>{wnid}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    return "\n".join(parts) + "</annotation>\n"


# The first record is the real ILSVRC2012_val_00000001.xml (snake, 500x375).
VAL_XML = {
    "ILSVRC2012_val_00000001": ((500, 375), [("n01751748", (111, 108, 441, 193))]),
    "ILSVRC2012_val_00000002": (
        (300, 200),
        [("n09193705", (45, 49, 299, 162)), ("n09193705", (2, 69, 300, 200))],
    ),
    "ILSVRC2012_val_00000003": ((64, 48), [("n01440764", (0, 0, 10, 12))]),
}
EXPECTED_TEST = {
    "image_ids": [
        "val/ILSVRC2012_val_00000001.JPEG",
        "val/ILSVRC2012_val_00000002.JPEG",
        "val/ILSVRC2012_val_00000003.JPEG",
    ],
    "class_labels": [
        "val/ILSVRC2012_val_00000001.JPEG,1",
        "val/ILSVRC2012_val_00000002.JPEG,2",
        "val/ILSVRC2012_val_00000003.JPEG,0",
    ],
    "image_sizes": [
        "val/ILSVRC2012_val_00000001.JPEG,500,375",
        "val/ILSVRC2012_val_00000002.JPEG,300,200",
        "val/ILSVRC2012_val_00000003.JPEG,64,48",
    ],
    "localization": [
        "val/ILSVRC2012_val_00000001.JPEG,111,108,441,193",  # the XML values, not shifted
        "val/ILSVRC2012_val_00000002.JPEG,45,49,299,162",
        "val/ILSVRC2012_val_00000002.JPEG,2,69,299,199",  # xmax = w, ymax = h: clipped
        "val/ILSVRC2012_val_00000003.JPEG,0,0,10,12",
    ],
}


def write_xmls(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # written in reverse: the converter must sort
    for name, (size, objects) in reversed(VAL_XML.items()):
        (folder / f"{name}.xml").write_text(xml(name, size, objects))


def check_test_split(out: Path) -> None:
    for stem, expected in EXPECTED_TEST.items():
        assert lines(out / "metadata" / "test" / f"{stem}.txt") == expected, stem


def test_convert_ilsvrc_kaggle_layout(tmp_path):
    src = tmp_path / "imagenet"
    write_xmls(src / "ILSVRC" / "Annotations" / "CLS-LOC" / "val")
    (src / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01751748 sea snake\nn09193705 alp\n"
    )
    val_images = src / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    val_images.mkdir(parents=True)
    for name, (size, _) in VAL_XML.items():
        Image.new("RGB", size).save(val_images / f"{name}.JPEG", format="JPEG")
    train = src / "ILSVRC" / "Data" / "CLS-LOC" / "train"
    for wnid, files in (
        ("n01440764", ["n01440764_2.JPEG", "n01440764_10.JPEG"]),
        ("n09193705", ["n09193705_1.JPEG"]),
    ):
        (train / wnid).mkdir(parents=True)
        for f in files:
            Image.new("RGB", (8, 8)).save(train / wnid / f, format="JPEG")
    (train / "n01440764" / "notes.txt").write_text("not an image")

    counts = convert_ilsvrc(src, tmp_path / "out")
    assert counts == {"test": 3, "train": 3}
    check_test_split(tmp_path / "out")
    meta = tmp_path / "out" / "metadata"
    assert lines(meta / "train" / "class_labels.txt") == [
        "train/n01440764/n01440764_10.JPEG,0",
        "train/n01440764/n01440764_2.JPEG,0",
        "train/n09193705/n09193705_1.JPEG,2",
    ]
    assert (meta / "train" / "image_sizes.txt").read_text() == ""
    assert not (meta / "train" / "localization.txt").exists()
    images = tmp_path / "out" / "images"
    read_split(meta / "test", num_classes=3, image_root=images, check_images=True)
    read_split(meta / "train", num_classes=3, image_root=images)


def test_convert_ilsvrc_official_layout_without_images(tmp_path, caplog):
    src = tmp_path / "ilsvrc"
    write_xmls(src / "val")
    (src / "synsets.txt").write_text("\n".join(WNIDS) + "\n")
    with caplog.at_level(logging.WARNING, logger="wsolbench.data.ilsvrc"):
        counts = convert_ilsvrc(src, tmp_path / "out")
    assert counts == {"test": 3}
    check_test_split(tmp_path / "out")
    assert "validation images not found" in caplog.text


def test_convert_ilsvrc_explicit_paths(tmp_path):
    write_xmls(tmp_path / "xmls")
    (tmp_path / "wnids.list").write_text("\n".join(WNIDS) + "\n")
    counts = convert_ilsvrc(
        tmp_path / "empty",
        tmp_path / "out",
        annotations=tmp_path / "xmls",
        synsets=tmp_path / "wnids.list",
    )
    assert counts == {"test": 3}
    check_test_split(tmp_path / "out")


def test_ilsvrc_errors(tmp_path):
    write_xmls(tmp_path / "src" / "val")
    with pytest.raises(MetadataError, match="no synset list"):
        convert_ilsvrc(tmp_path / "src", tmp_path / "out")
    (tmp_path / "src" / "synsets.txt").write_text("n01440764\nn01751748\n")
    with pytest.raises(MetadataError, match=r"00000002.xml: wnid 'n09193705' is not in the synset"):
        convert_ilsvrc(tmp_path / "src", tmp_path / "out")
    with pytest.raises(MetadataError, match="no ILSVRC2012_val_"):
        convert_ilsvrc(
            tmp_path / "nothing", tmp_path / "out", synsets=tmp_path / "src" / "synsets.txt"
        )
    (tmp_path / "dup.txt").write_text("n1\nn2\nn1\n")
    with pytest.raises(MetadataError, match="dup.txt line 3: duplicate wnid n1"):
        read_synsets(tmp_path / "dup.txt")
    (tmp_path / "src" / "synsets.txt").write_text("\n".join(WNIDS) + "\n")
    (tmp_path / "src" / "val" / "ILSVRC2012_val_00000003.xml").write_text(
        xml("x", (64, 48), [("n01440764", (20, 0, 10, 12))])
    )
    with pytest.raises(MetadataError, match=r"00000003.xml: box \[20, 0, 10, 12\]"):
        convert_ilsvrc(tmp_path / "src", tmp_path / "out")


def _ilsvrc_release(src: Path) -> None:
    """XMLs, a synset list and a train folder (the Kaggle layout, no validation images)."""
    write_xmls(src / "ILSVRC" / "Annotations" / "CLS-LOC" / "val")
    (src / "LOC_synset_mapping.txt").write_text("\n".join(WNIDS) + "\n")
    for wnid in WNIDS[:2]:
        (src / "ILSVRC" / "Data" / "CLS-LOC" / "train" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(
            src / "ILSVRC" / "Data" / "CLS-LOC" / "train" / wnid / "a.JPEG"
        )


def test_ilsvrc_conversion_that_fails_leaves_the_earlier_one(tmp_path, monkeypatch):
    src, out = tmp_path / "imagenet", tmp_path / "out"
    _ilsvrc_release(src)
    assert convert_ilsvrc(src, out) == {"test": 3, "train": 2}
    # a bad source record found after the test split was written: a training file whose name
    # no metadata line can hold
    (src / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" / "ILSVRC2012_val_00000003.xml").unlink()
    bad = src / "ILSVRC" / "Data" / "CLS-LOC" / "train" / WNIDS[0] / "b,c.JPEG"
    Image.new("RGB", (8, 8)).save(bad, format="JPEG")
    before = tree_state(out)
    for target in (out, tmp_path / "new"):
        with pytest.raises(MetadataError, match="without commas"):
            convert_ilsvrc(src, target)
    assert tree_state(out) == before
    assert not (tmp_path / "new").exists()
    bad.unlink()
    check_failure_leaves_the_earlier_state(
        monkeypatch, lambda target: convert_ilsvrc(src, target), out, tmp_path / "new"
    )


def test_a_link_that_cannot_be_made_stops_the_conversion_before_any_other_is_moved(tmp_path):
    """images/train a real folder (copied in by hand): refused before images/val is re-pointed
    or anything written, so the root stays the earlier conversion's."""
    src, out = tmp_path / "imagenet", tmp_path / "out"
    _ilsvrc_release(src)
    val = src / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    val.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(val / "ILSVRC2012_val_00000001.JPEG")
    convert_ilsvrc(src, out)
    assert (out / "images" / "val").is_symlink()
    moved = tmp_path / "moved"  # the release moved: images/val would point elsewhere
    src.rename(moved)
    (out / "images" / "train").unlink()
    (out / "images" / "train").mkdir()
    before = tree_state(out)
    with pytest.raises(MetadataError, match="images/train exists and is not a symbolic link"):
        convert_ilsvrc(moved, out)
    assert tree_state(out) == before


def test_ilsvrc_conversion_keeps_a_val_split_copied_in(tmp_path):
    """The reference's ImageNetV2 val is copied in by hand (not converted here): a conversion
    again replaces the metadata folder but keeps it."""
    src, out = tmp_path / "imagenet", tmp_path / "out"
    _ilsvrc_release(src)
    convert_ilsvrc(src, out)
    shutil.copytree(out / "metadata" / "test", out / "metadata" / "val")
    val = tree_state(out / "metadata" / "val")
    convert_ilsvrc(src, out)
    assert tree_state(out / "metadata" / "val") == val
    assert sorted(p.name for p in (out / "metadata").iterdir()) == ["test", "train", "val"]
