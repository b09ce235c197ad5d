"""Metadata reader / validator / writer: round trips, and one test per defect it must report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsolbench.data.metadata import (
    MAX_REPORTED,
    MaskRecord,
    MetadataError,
    SplitMetadata,
    check_images,
    link_dir,
    read_split,
    write_split,
)

IDS = "a/1.png\na/2.png\nb/3.png\n"
LABELS = "a/1.png,0\na/2.png,0\nb/3.png,1\n"
SIZES = "a/1.png,40,30\na/2.png,20,20\nb/3.png,32,16\n"
BOXES = "a/1.png,0,0,39,29\na/2.png,1,2,3,4\na/2.png,5,6,19,19\nb/3.png,3,1,31,15\n"


def make_split(root: Path, **files: str | None) -> Path:
    """Write a split folder; keyword = file stem, value = text (None: leave the file out)."""
    split = root / "metadata" / "test"
    split.mkdir(parents=True, exist_ok=True)
    contents = {
        "image_ids": IDS,
        "class_labels": LABELS,
        "image_sizes": SIZES,
        "localization": BOXES,
    }
    contents.update(files)
    for stem, text in contents.items():
        if text is not None:
            (split / f"{stem}.txt").write_text(text, encoding="utf-8")
    return split


def error_of(split: Path, **kwargs) -> str:
    with pytest.raises(MetadataError) as info:
        read_split(split, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------------- valid input


def test_valid_split_is_read(tmp_path):
    meta = read_split(make_split(tmp_path), num_classes=2)
    assert meta.image_ids == ["a/1.png", "a/2.png", "b/3.png"]
    assert len(meta) == 3
    assert meta.labels == {"a/1.png": 0, "a/2.png": 0, "b/3.png": 1}
    assert meta.sizes["b/3.png"] == (32, 16)
    assert meta.masks is None
    assert meta.boxes["a/2.png"].dtype == np.int64
    np.testing.assert_array_equal(meta.boxes["a/2.png"], [[1, 2, 3, 4], [5, 6, 19, 19]])


def test_round_trip_boxes_and_masks(tmp_path):
    meta = SplitMetadata(
        split_dir=Path("ignored"),
        image_ids=["x/1.png", "x/2.png"],
        labels={"x/1.png": 3, "x/2.png": 0},
        sizes={"x/1.png": (10, 20), "x/2.png": (30, 40)},
        boxes={
            "x/1.png": np.array([[0, 0, 9, 19]]),
            "x/2.png": np.array([[1, 2, 3, 4], [5, 6, 7, 8]]),
        },
        masks={
            "x/1.png": MaskRecord(["m/1.png"], None),
            "x/2.png": MaskRecord(["m/2a.png", "m/2b.png"], "m/2_ignore.png"),
        },
    )
    write_split(tmp_path / "val", meta)
    assert (tmp_path / "val" / "mask_localization.txt").read_text() == (
        "x/1.png,m/1.png,\nx/2.png,m/2a.png,m/2_ignore.png\nx/2.png,m/2b.png,\n"
    )
    back = read_split(tmp_path / "val")
    assert back.split_dir == tmp_path / "val"
    assert back.image_ids == meta.image_ids
    assert back.labels == meta.labels
    assert back.sizes == meta.sizes
    assert back.masks == meta.masks
    for image_id in meta.image_ids:
        np.testing.assert_array_equal(back.boxes[image_id], meta.boxes[image_id])


def test_masks_only_go_to_localization(tmp_path):
    meta = SplitMetadata(
        Path("x"), ["i.jpg"], {"i.jpg": 1}, {}, masks={"i.jpg": MaskRecord(["i.png"], "ig.png")}
    )
    write_split(tmp_path / "s", meta)
    assert (tmp_path / "s" / "localization.txt").read_text() == "i.jpg,i.png,ig.png\n"
    assert (tmp_path / "s" / "image_sizes.txt").read_text() == ""
    back = read_split(tmp_path / "s")
    assert back.boxes is None and back.masks == meta.masks and back.sizes == {}


def test_write_replaces_existing_split_and_keeps_it_on_error(tmp_path):
    split = make_split(tmp_path)
    (split / "stale.txt").write_text("old")
    good = read_split(split)
    good.image_ids = good.image_ids[:1]
    write_split(split, good)
    assert not (split / "stale.txt").exists()
    assert read_split(split).image_ids == ["a/1.png"]
    bad = read_split(split)
    del bad.labels["a/1.png"]
    with pytest.raises(MetadataError, match="'a/1.png' has no label"):
        write_split(split, bad)
    assert read_split(split).image_ids == ["a/1.png"]  # untouched
    assert [p.name for p in split.parent.iterdir()] == ["test"]  # no temporary folder left


def test_write_rejects_an_id_with_a_comma(tmp_path):
    meta = SplitMetadata(Path("x"), ["a,b.png"], {"a,b.png": 0}, {"a,b.png": (4, 4)})
    with pytest.raises(MetadataError, match="without commas"):
        write_split(tmp_path / "s", meta)


def test_crlf_blank_lines_and_missing_final_newline(tmp_path):
    split = make_split(
        tmp_path,
        image_ids=IDS.replace("\n", "\r\n") + "\r\n",
        class_labels=LABELS.rstrip("\n"),
        localization="\n" + BOXES + "\n\n",
    )
    meta = read_split(split)
    assert meta.image_ids == ["a/1.png", "a/2.png", "b/3.png"]
    assert meta.labels["b/3.png"] == 1


def test_label_only_split(tmp_path):
    split = make_split(tmp_path, localization=None, image_sizes="")
    meta = read_split(split)
    assert meta.boxes is None and meta.masks is None and meta.sizes == {}
    # An empty localization.txt is a label-only split too (the reference's ILSVRC train).
    split = make_split(tmp_path, localization="")
    assert read_split(split).boxes is None


def test_box_may_reach_the_image_size(tmp_path):
    # x1 == w: boxes built from x + width reach it; accepted (see the module docstring).
    split = make_split(
        tmp_path, localization=BOXES.replace("b/3.png,3,1,31,15", "b/3.png,3,1,32,16")
    )
    np.testing.assert_array_equal(read_split(split).boxes["b/3.png"], [[3, 1, 32, 16]])


def test_empty_ignore_path_and_mask_localization(tmp_path):
    split = make_split(
        tmp_path,
        mask_localization="a/1.png,m/1a.png,\na/1.png,m/1b.png,\na/2.png,m/2.png,m/2i.png\n"
        "b/3.png,m/3.png,\n",
    )
    meta = read_split(split)
    assert meta.boxes is not None
    assert meta.masks["a/1.png"] == MaskRecord(["m/1a.png", "m/1b.png"], None)
    assert meta.masks["a/2.png"].ignore_path == "m/2i.png"
    masks = tmp_path / "masks"
    (masks / "m").mkdir(parents=True)
    for rel, image in [
        ("m/1a.png", "a/1.png"),
        ("m/1b.png", "a/1.png"),
        ("m/2.png", "a/2.png"),
        ("m/2i.png", "a/2.png"),
        ("m/3.png", "b/3.png"),
    ]:
        Image.new("L", SIZE_MAP[image]).save(masks / rel)  # a mask has its image's size
    assert read_split(split, mask_root=masks).masks["b/3.png"].ignore_path is None


def test_reads_a_50000_image_split_quickly(tmp_path):
    n = 50_000
    ids = [f"val/ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, n + 1)]
    split = make_split(
        tmp_path,
        image_ids="".join(f"{i}\n" for i in ids),
        class_labels="".join(f"{i},{k % 1000}\n" for k, i in enumerate(ids)),
        image_sizes="".join(f"{i},500,375\n" for i in ids),
        localization="".join(f"{i},10,20,300,200\n{i},0,0,499,374\n" for i in ids),
    )
    start = time.perf_counter()
    meta = read_split(split, num_classes=1000)
    elapsed = time.perf_counter() - start
    assert len(meta) == n and meta.boxes[ids[-1]].shape == (2, 4)
    assert elapsed < 3.0, f"reading 50,000 images took {elapsed:.1f} s"


# ---------------------------------------------------------------------------------- defects


def test_missing_file(tmp_path):
    message = error_of(make_split(tmp_path, class_labels=None))
    assert "missing class_labels.txt" in message
    assert "must contain image_ids.txt and class_labels.txt" in message


def test_missing_sizes_with_boxes(tmp_path):
    message = error_of(make_split(tmp_path, image_sizes=None))
    assert "missing image_sizes.txt" in message


def test_missing_split_folder(tmp_path):
    message = error_of(tmp_path / "nope")
    assert "nope" in message and "does not exist" in message


@pytest.mark.parametrize(
    ("stem", "text", "line", "value"),
    [
        ("image_ids", IDS + "a/1.png\n", 4, "a/1.png"),
        ("class_labels", LABELS.replace("a/2.png,0", "a/1.png,1"), 2, "a/1.png"),
        ("image_sizes", SIZES + "b/3.png,32,16\n", 4, "b/3.png"),
    ],
)
def test_duplicate_id(tmp_path, stem, text, line, value):
    message = error_of(make_split(tmp_path, **{stem: text}))
    assert f"{stem}.txt line {line}: duplicate id '{value}'" in message


def test_id_missing_from_labels(tmp_path):
    message = error_of(make_split(tmp_path, class_labels="a/1.png,0\nb/3.png,1\n"))
    assert "image_ids.txt line 2: id 'a/2.png' has no line in class_labels.txt" in message


def test_id_missing_from_sizes(tmp_path):
    message = error_of(make_split(tmp_path, image_sizes="a/1.png,40,30\na/2.png,20,20\n"))
    assert "image_ids.txt line 3: id 'b/3.png' has no line in image_sizes.txt" in message


def test_id_without_box(tmp_path):
    message = error_of(make_split(tmp_path, localization="a/1.png,0,0,1,1\nb/3.png,0,0,1,1\n"))
    assert "image_ids.txt line 2: id 'a/2.png' has no box in localization.txt" in message


@pytest.mark.parametrize(
    ("stem", "text", "line"),
    [
        ("class_labels", LABELS + "c/9.png,1\n", 4),
        ("image_sizes", SIZES + "c/9.png,4,4\n", 4),
        ("localization", BOXES + "c/9.png,0,0,1,1\n", 5),
    ],
)
def test_id_unknown_to_image_ids(tmp_path, stem, text, line):
    message = error_of(make_split(tmp_path, **{stem: text}))
    assert f"{stem}.txt line {line}: id 'c/9.png' is not in image_ids.txt" in message


@pytest.mark.parametrize(
    ("stem", "text", "line", "expected"),
    [
        ("class_labels", "a/1.png,0\na/2.png,0,7\nb/3.png,1\n", 2, "3 comma-separated field(s)"),
        ("image_sizes", "a/1.png,40\na/2.png,20,20\nb/3.png,32,16\n", 1, "expected 3"),
        ("localization", BOXES + "b/3.png,1,2,3\n", 5, "4 comma-separated field(s)"),
        ("class_labels", LABELS + ",1\n", 4, "empty image id"),
        ("image_ids", IDS + " \t,\n", 4, "2 comma-separated field(s)"),
    ],
)
def test_malformed_line(tmp_path, stem, text, line, expected):
    message = error_of(make_split(tmp_path, **{stem: text}))
    assert f"{stem}.txt line {line}: " in message
    assert expected in message


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ("a/1.png,0,0,39.5,29", "x1 (39.5) is not a non-negative integer"),
        ("a/1.png,-3,0,39,29", "x0 (-3) is not a non-negative integer"),
        ("a/1.png,0,zero,39,29", "y0 (zero) is not a non-negative integer"),
        ("a/1.png,12,0,10,29", "x1 (10) < x0 (12)"),
        ("a/1.png,0,20,39,5", "y1 (5) < y0 (20)"),
        ("a/1.png,0,0,41,29", "box (0,0,41,29) lies outside the 40x30 image"),
        ("a/1.png,0,0,39,31", "outside the 40x30 image (needs x1 <= 40, y1 <= 30)"),
    ],
)
def test_bad_box(tmp_path, box, expected):
    message = error_of(make_split(tmp_path, localization=BOXES.replace("a/1.png,0,0,39,29", box)))
    assert "localization.txt line 1: " in message
    assert expected in message


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("b/3.png,32.0,16", "w (32.0) is not a positive integer"),
        ("b/3.png,32,-16", "h (-16) is not a positive integer"),
        ("b/3.png,0,16", "w (0) is not a positive integer"),
    ],
)
def test_bad_size(tmp_path, size, expected):
    message = error_of(make_split(tmp_path, image_sizes=SIZES.replace("b/3.png,32,16", size)))
    assert f"image_sizes.txt line 3: {expected}" in message


@pytest.mark.parametrize(
    ("label", "num_classes", "expected"),
    [
        ("-1", None, "negative class index (-1)"),
        ("2", 2, "unknown class index (2); labels are 0-based and must be < num_classes (2)"),
        ("one", None, "class index 'one' is not an integer"),
    ],
)
def test_bad_label(tmp_path, label, num_classes, expected):
    split = make_split(tmp_path, class_labels=LABELS.replace("b/3.png,1", f"b/3.png,{label}"))
    message = error_of(split, num_classes=num_classes)
    assert f"class_labels.txt line 3: {expected}" in message


def test_mixed_localization_formats(tmp_path):
    message = error_of(make_split(tmp_path, localization=BOXES + "b/3.png,m.png,\n"))
    assert "localization.txt line 5: a mask record (3 fields) in a box file" in message
    message = error_of(
        make_split(tmp_path, localization="a/1.png,m.png,\na/2.png,0,0,1,1\nb/3.png,m.png,\n")
    )
    assert "localization.txt line 2: a box record (5 fields) in a mask file" in message


def test_conflicting_ignore_paths(tmp_path):
    split = make_split(
        tmp_path,
        localization="a/1.png,m1.png,i1.png\na/1.png,m2.png,i2.png\na/2.png,m.png,\nb/3.png,m.png,\n",
    )
    message = error_of(split)
    assert "localization.txt line 2: ignore path 'i2.png' differs from the one on line 1" in message


def test_masks_in_both_files(tmp_path):
    masks = "a/1.png,m.png,\na/2.png,m.png,\nb/3.png,m.png,\n"
    message = error_of(make_split(tmp_path, localization=masks, mask_localization=masks))
    assert "mask_localization.txt" in message and "already holds masks" in message


def test_all_defects_reported_at_once(tmp_path):
    labels = "".join(f"a/{i}.png,-1\n" for i in range(30))
    ids = "".join(f"a/{i}.png\n" for i in range(30))
    split = make_split(
        tmp_path, image_ids=ids, class_labels=labels, image_sizes=None, localization=None
    )
    message = error_of(split)
    assert message.startswith(f"30 defect(s) in {split}")
    assert message.count("negative class index") == MAX_REPORTED
    assert f"... and {30 - MAX_REPORTED} more" in message


def _images(root: Path, sizes: dict[str, tuple[int, int]]) -> None:
    for rel, size in sizes.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 20, 30)).save(root / rel)


SIZE_MAP = {"a/1.png": (40, 30), "a/2.png": (20, 20), "b/3.png": (32, 16)}


def test_check_images_accepts_good_images(tmp_path):
    _images(tmp_path / "images", SIZE_MAP)
    meta = read_split(make_split(tmp_path), check_images=True)  # default root: <root>/images
    check_images(meta, tmp_path / "images", decode=True)


def test_missing_image(tmp_path):
    _images(tmp_path / "images", {"a/1.png": (40, 30), "b/3.png": (32, 16)})
    message = error_of(make_split(tmp_path), image_root=tmp_path / "images")
    assert "a/2.png" in message and "does not exist" in message


def test_undecodable_image(tmp_path):
    _images(tmp_path / "images", SIZE_MAP)
    (tmp_path / "images" / "b" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    meta = read_split(make_split(tmp_path), image_root=tmp_path / "images")  # existence only
    with pytest.raises(MetadataError, match=r"3\.png \(id 'b/3.png'\) cannot be decoded"):
        check_images(meta, tmp_path / "images")


def test_image_size_mismatch(tmp_path):
    _images(tmp_path / "images", {**SIZE_MAP, "a/2.png": (21, 20)})
    message = error_of(make_split(tmp_path), check_images=True)
    assert "2.png is 21x20 but image_sizes.txt says 20x20" in message


def test_missing_and_undecodable_masks(tmp_path):
    split = make_split(
        tmp_path,
        localization="a/1.png,m/1.png,m/1i.png\na/2.png,m/2.png,\nb/3.png,m/3.png,\n",
    )
    masks = tmp_path / "masks"
    (masks / "m").mkdir(parents=True)
    Image.new("L", (40, 30), 255).save(masks / "m" / "1.png")  # a mask of a/1.png's size
    (masks / "m" / "2.png").write_bytes(b"garbage")
    message = error_of(split, mask_root=masks)
    assert f"mask file {masks / 'm/1i.png'} (of 'a/1.png') does not exist" in message
    assert f"mask file {masks / 'm/2.png'} cannot be decoded" in message
    assert f"{masks / 'm/3.png'}" in message


def test_link_dir(tmp_path):
    target = tmp_path / "release" / "images"
    target.mkdir(parents=True)
    link_dir(tmp_path / "out" / "images", target)
    link_dir(tmp_path / "out" / "images", target)  # replacing its own link is fine
    assert (tmp_path / "out" / "images").resolve() == target.resolve()
    (tmp_path / "real").mkdir()
    with pytest.raises(MetadataError, match="is not a symbolic link"):
        link_dir(tmp_path / "real", target)


def test_unknown_localization_format_names_the_first_record(tmp_path):
    message = error_of(make_split(tmp_path, localization="\na/1.png,0,0,1\n"))
    assert "localization.txt line 2: 4 comma-separated fields" in message


def test_mask_localization_must_hold_masks(tmp_path):
    message = error_of(make_split(tmp_path, mask_localization=BOXES))
    assert "mask_localization.txt line 1: 5 comma-separated fields, not a mask record" in message


def test_non_utf8_file(tmp_path):
    split = make_split(tmp_path)
    (split / "class_labels.txt").write_bytes(b"a/1.png,0\n\xff\xfe,1\n")
    message = error_of(split)
    assert "class_labels.txt line 2: not UTF-8 text" in message


def test_a_non_utf8_byte_deep_in_a_file_is_named_on_its_line(tmp_path):
    """The decoder reads ahead: a Latin-1 'é' on line 400 was reported on line 1."""
    split = make_split(tmp_path)
    lines = [f"a/{i}.png,0".encode() for i in range(1, 800)]
    lines[399] = "a/caf\xe9.png,0".encode("latin-1")
    (split / "class_labels.txt").write_bytes(b"\n".join(lines) + b"\n")
    assert "class_labels.txt line 400: not UTF-8 text" in error_of(split)
