"""The histology protocols (shared/spec/histology.md): glas-v1 and camelyon512-v1, `prepare glas`
from the GlaS release layout, `prepare wsol-splits` from LIVIA's split folders (GLAS and CAMELYON512
layouts, empty mask and ignore fields), bilinear map resizing, and a normal patch scored as
background only."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_prepare import check_failure_leaves_the_earlier_state

from wsolbench import metrics as M
from wsolbench.cli.main import main
from wsolbench.counting import EvalSettings, GroundTruth, count_batch, new_counter
from wsolbench.data.glas import CLASSES, convert_glas, read_grades, split_training
from wsolbench.data.metadata import (
    MaskRecord,
    MetadataError,
    SplitMetadata,
    read_split,
    write_split,
)
from wsolbench.data.sources import get_dataset, read_splits
from wsolbench.data.wsol_splits import convert_wsol_splits
from wsolbench.metrics.maps import RESIZE_INTERPOLATION
from wsolbench.metrics.pxap import decode_mask
from wsolbench.protocol import MAP_RESIZE_MODES, PROTOCOL_DIR, ProtocolError, load_protocol

RELEASE = "Warwick_QU_Dataset_(Released_2016_07_08)"
SIZE = (12, 10)  # (w, h) of every fabricated GlaS image


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def refused(capsys, *argv) -> str:
    """The command line exits 2 with one ``error:`` line, which is returned."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    err = capsys.readouterr().err.splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ------------------------------------------------------------------------------------ protocols

# The hashes before map_resize existed: the key must not move them (results keep comparing).
SHIPPED_HASHES = {
    "cub-v1": "1c005d98d5c9183d74d402d5f405473cae5d9faf3590c425303884b26c7176a3",
    "ilsvrc-v1": "263ba1d83ceb3f8cc0a9ffa3f6ad3ad7e7d9cb73cb9be486031db17f14c2aa11",
    "openimages-v1": "555ed0482b3324cde224c876d8d43b6ab45675ec0223662d5e69f33b38890053",
    "synthetic-v1": "1deec08cbdf2d754b50771c3e96af3aeef4ad1dedc63bed9f105afe43605e961",
}


@pytest.mark.parametrize("protocol_id", ["glas-v1", "camelyon512-v1"])
def test_histology_protocols(protocol_id):
    protocol = load_protocol(protocol_id)
    assert protocol.has_masks and not protocol.has_boxes
    assert protocol.map_resize == "bilinear" and protocol.eval_size == (224, 224)
    assert protocol.splits == {"train": "train", "valcl": "valcl", "val": "valpx", "test": "test"}
    assert protocol.selection_split == "val" and protocol.eval_splits == ["val", "test"]
    assert protocol.checkpoint == "best" and protocol.threshold_step == 0.001
    assert protocol.data_pins == {}  # not pinned yet: no official data fingerprinted here
    assert protocol.num_classes == len(protocol.classnames) == 2
    assert EvalSettings.from_protocol(protocol).map_resize == "bilinear"


def test_map_resize_key_keeps_the_existing_hashes(tmp_path):
    for protocol_id, digest in SHIPPED_HASHES.items():
        protocol = load_protocol(protocol_id)
        assert protocol.hash == digest and protocol.map_resize == "bicubic"
    shutil.copytree(PROTOCOL_DIR / "classnames", tmp_path / "classnames")
    text = (PROTOCOL_DIR / "cub-v1.yaml").read_text().replace("id: cub-v1", "id: cub-mine")
    hashes = {}
    for mode in (None, "bicubic", "bilinear"):
        path = tmp_path / f"{mode}.yaml"
        path.write_text(text + (f"map_resize: {mode}\n" if mode else ""))
        hashes[mode] = load_protocol(path).hash
    assert hashes[None] == hashes["bicubic"] != hashes["bilinear"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(text + "map_resize: nearest\n")
    with pytest.raises(ProtocolError, match="map_resize must be bicubic or bilinear") as info:
        load_protocol(bad)
    assert str(bad) in str(info.value)


def test_maps_are_resized_as_the_protocol_says():
    assert set(MAP_RESIZE_MODES) == set(RESIZE_INTERPOLATION)  # the protocol's words, the modes
    rng = np.random.default_rng(0)
    small = rng.random((5, 7))
    by_hand = cv2.resize(small, (16, 12), interpolation=cv2.INTER_LINEAR)
    by_hand = (by_hand - by_hand.min()) / (by_hand - by_hand.min()).max()
    bilinear = M.normalize_map(small, (12, 16), resize="bilinear")
    np.testing.assert_allclose(bilinear, by_hand, rtol=0, atol=1e-12)
    assert not np.allclose(bilinear, M.normalize_map(small, (12, 16)))  # bicubic by default
    with pytest.raises(ValueError, match="unknown map resize 'area'"):
        M.normalize_map(small, (12, 16), resize="area")
    # the evaluation driver resizes with the protocol's mode
    meta = SplitMetadata(Path("s"), ["a"], {"a": 0}, {}, masks={"a": MaskRecord([], None)})
    for mode in ("bilinear", "bicubic"):
        settings = EvalSettings((12, 16), 0.01, (30, 50, 70), False, True, mode)
        truth = GroundTruth(meta, settings, Path("unused"))
        counter = new_counter(settings)
        count_batch(counter, truth, [0], small[None], None)
        expected = M.MaskCounter(M.threshold_grid(0.01))
        expected.update(
            M.normalize_map(small, (12, 16), resize=mode), np.zeros((12, 16), bool), None
        )
        assert counter.to_dict()["mask"] == expected.to_dict()["mask"]


# ----------------------------------------------------------------------- metadata: empty fields


def test_an_empty_mask_field_is_an_all_background_image(tmp_path):
    split = tmp_path / "test"
    split.mkdir()
    (split / "image_ids.txt").write_text("tumor/a.png\nnormal/b.png\n")
    (split / "class_labels.txt").write_text("tumor/a.png,1\nnormal/b.png,0\n")
    (split / "image_sizes.txt").write_text("tumor/a.png,8,8\nnormal/b.png,8,8\n")
    (split / "localization.txt").write_text("tumor/a.png,tumor/a_mask.png,\nnormal/b.png,,\n")
    meta = read_split(split, num_classes=2)
    assert meta.masks == {
        "tumor/a.png": MaskRecord(["tumor/a_mask.png"], None),
        "normal/b.png": MaskRecord([], None),
    }
    write_split(tmp_path / "copy", meta)
    assert lines(tmp_path / "copy" / "localization.txt") == lines(split / "localization.txt")


# ------------------------------------------------------------------------------ prepare glas

# train_1..16 benign, train_17..28 malignant; the test parts as in the release
TRAIN_NAMES = [f"train_{k}" for k in range(1, 29)]
GRADES = {
    **{n: "benign" if int(n.split("_")[1]) <= 16 else "malignant" for n in TRAIN_NAMES},
    "testA_1": "benign",
    "testA_2": "malignant",
    "testB_1": "malignant",
}


def _label_mask() -> np.ndarray:
    """[h, w] uint8: two glands labelled 1 and 2 (instance ids, not 0/255)."""
    mask = np.zeros(SIZE[::-1], np.uint8)
    mask[1:3, 2:6] = 1
    mask[5:8, 4:10] = 2
    return mask


def make_glas(root: Path, csv_text: str | None = None) -> Path:
    release = root / RELEASE
    release.mkdir(parents=True)
    for name in GRADES:
        Image.new("RGB", SIZE, (200, 120, 160)).save(release / f"{name}.bmp")
        Image.fromarray(_label_mask(), mode="L").save(release / f"{name}_anno.bmp")
    if csv_text is None:  # the release's spelling: a space before each value, CRLF, a BOM
        rows = [f"{n},{k % 7}, {g}, adenomatous" for k, (n, g) in enumerate(GRADES.items())]
        csv_text = "\ufeffname, patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)\r\n"
        csv_text += "\r\n".join(rows) + "\r\n"
    (release / "Grade.csv").write_text(csv_text, encoding="utf-8", newline="")
    return release


def test_prepare_glas_from_the_release_layout(tmp_path, capsys):
    release = make_glas(tmp_path / "src")
    out = tmp_path / "glas"
    assert main(["prepare", "glas", "--src", str(tmp_path / "src"), "--out", str(out)]) == 0
    assert "--dataset glas" in capsys.readouterr().out
    meta = out / "metadata"
    # test = testA + testB, in the release's order, every line computed by hand
    assert lines(meta / "test" / "image_ids.txt") == ["testA_1.bmp", "testA_2.bmp", "testB_1.bmp"]
    assert lines(meta / "test" / "class_labels.txt") == [
        "testA_1.bmp,0",
        "testA_2.bmp,1",
        "testB_1.bmp,1",
    ]
    assert lines(meta / "test" / "image_sizes.txt")[0] == "testA_1.bmp,12,10"
    assert lines(meta / "test" / "localization.txt") == [
        "testA_1.bmp,testA_1_anno.bmp,",
        "testA_2.bmp,testA_2_anno.bmp,",
        "testB_1.bmp,testB_1_anno.bmp,",
    ]
    ids = {s: lines(meta / s / "image_ids.txt") for s in ("train", "valcl", "valpx")}
    # valcl: ceil(20 %) per class, 4 of 16 benign + 3 of 12 malignant; valpx: 3 per class of them
    assert (len(ids["train"]), len(ids["valcl"]), len(ids["valpx"])) == (21, 7, 6)
    assert set(ids["valpx"]) < set(ids["valcl"]) and not set(ids["valcl"]) & set(ids["train"])
    assert set(ids["train"]) | set(ids["valcl"]) == {f"{n}.bmp" for n in TRAIN_NAMES}
    order = [int(i.split("_")[1].split(".")[0]) for i in ids["train"]]
    assert order == sorted(order)  # train_2 before train_10
    # the instance labels 1 and 2 become one binary mask, 0/255
    copy = decode_mask(out / "masks" / "testA_1_anno.bmp", SIZE)
    np.testing.assert_array_equal(copy, np.where(_label_mask() > 0, 255, 0))
    assert (out / "images").is_symlink() and (out / "images").resolve() == release.resolve()
    # what a run reads and checks (every image and mask of val and test decodes)
    protocol = load_protocol("glas-v1")
    root = get_dataset("glas")().resolve(out, protocol)
    splits = read_splits(root, protocol, check_files_of=("val", "test"))
    assert splits["val"].image_ids == ids["valpx"]
    # the same seed gives the same split again; the output is replaced, not added to
    assert main(["prepare", "glas", "--src", str(release), "--out", str(out)]) == 0
    assert lines(meta / "valpx" / "image_ids.txt") == ids["valpx"]


def test_glas_conversion_that_fails_leaves_the_earlier_one(tmp_path, monkeypatch):
    """Masks and metadata are built aside and renamed into place only when both are whole."""
    release, out = make_glas(tmp_path / "src"), tmp_path / "glas"
    convert_glas(release, out)
    assert sorted(p.name for p in out.iterdir()) == ["images", "masks", "metadata"]
    check_failure_leaves_the_earlier_state(
        monkeypatch, lambda target: convert_glas(release, target, seed=1), out, tmp_path / "new"
    )


def test_glas_split_sizes_are_those_of_livia_fold_0():
    names = [f"train_{k}" for k in range(1, 86)]
    labels = {n: 0 if k < 37 else 1 for k, n in enumerate(names)}  # the release: 37 / 48
    parts = split_training(names, labels)
    assert {k: len(v) for k, v in parts.items()} == {"train": 67, "valcl": 18, "valpx": 6}
    assert sum(labels[n] == 0 for n in parts["train"]) == 29  # fold 0: train 29 / 38
    assert parts == split_training(names, labels, seed=0) != split_training(names, labels, seed=1)


def test_grade_csv_is_read_tolerantly_and_bad_lines_are_named(tmp_path, capsys):
    path = tmp_path / "Grade.csv"
    path.write_text("Name ,Patient ID,  Grade (GlaS) \n train_1.bmp , 1 ,  MALIGNANT \n\n")
    assert read_grades(path) == {"train_1": CLASSES.index("malignant")}
    path.write_text("name,grade (GlaS)\ntrain_1,benign\ntrain_2, adenoma\n")
    with pytest.raises(MetadataError, match=r"Grade\.csv line 3: grade 'adenoma' of train_2"):
        read_grades(path)
    path.write_text("name,patient ID\ntrain_1,1\n")
    with pytest.raises(MetadataError, match=r"Grade\.csv line 1: expected the columns"):
        read_grades(path)
    path.write_text("name,grade (GlaS)\ntrain_1,benign\ntrain_1,benign\n")
    with pytest.raises(MetadataError, match=r"line 3: train_1 again \(first on line 2\)"):
        read_grades(path)
    bad = make_glas(tmp_path / "src", "name,grade (GlaS)\ntestA_1,benign\nvalid_9,benign\n")
    line = refused(capsys, "prepare", "glas", "--src", bad, "--out", tmp_path / "out")
    assert "Grade.csv line 3: image name 'valid_9'" in line
    (bad / "testA_1.bmp").unlink()
    (bad / "Grade.csv").write_text("name,grade (GlaS)\ntestA_1,benign\n")
    assert "testA_1.bmp (listed in Grade.csv) is missing" in refused(
        capsys, "prepare", "glas", "--src", bad, "--out", tmp_path / "out"
    )
    assert not (tmp_path / "out" / "metadata").exists()  # nothing half-written


# ----------------------------------------------------------------------- prepare wsol-splits


def _write_split(folder: Path, rows: list[tuple[str, int, str | None]], size=(16, 16)) -> None:
    """rows: (image id, label, mask path or None for a normal patch); the ignore field is empty."""
    folder.mkdir(parents=True)
    (folder / "image_ids.txt").write_text("".join(f"{i}\n" for i, _, _ in rows))
    (folder / "class_labels.txt").write_text("".join(f"{i},{c}\n" for i, c, _ in rows))
    (folder / "image_sizes.txt").write_text("".join(f"{i},{size[0]},{size[1]}\n" for i, *_ in rows))
    (folder / "localization.txt").write_text("".join(f"{i},{m or ''},\n" for i, _, m in rows))


def make_camelyon(root: Path) -> tuple[Path, Path, Path]:
    """LIVIA's CAMELYON512 layout, 16x16 patches: (fold folder, data root, mask root)."""
    data, masks = root / "patches", root / "patch-masks"
    fold = root / "splits" / "CAMELYON512" / "fold-0"
    (fold.parent).mkdir(parents=True)
    (fold.parent / "encoding.yaml").write_text("normal: 0\ntumor: 1\n")
    for split, k in (("train", 0), ("valcl", 1), ("valpx", 1), ("test", 2)):
        rows = [(f"tumor/t{k}.png", 1, f"tumor/t{k}_mask.png"), (f"normal/n{k}.png", 0, None)]
        _write_split(fold / split, rows)
        for image_id, _, mask in rows:
            (data / image_id).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (230, 180, 200)).save(data / image_id)
            if mask:
                binary = np.zeros((16, 16), np.uint8)
                binary[4:12, 2:7] = 255
                (masks / mask).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(binary, mode="L").save(masks / mask)
    return fold, data, masks


def test_prepare_wsol_splits_camelyon_layout(tmp_path, capsys):
    fold, data, masks = make_camelyon(tmp_path)
    out = tmp_path / "camelyon"
    argv = ["prepare", "wsol-splits", "--src", fold, "--images", data, "--masks", masks]
    assert main([str(a) for a in [*argv, "--out", out]]) == 0
    assert "--dataset camelyon512" in capsys.readouterr().out
    for split in ("train", "valcl", "valpx", "test"):
        for name in ("image_ids", "class_labels", "image_sizes", "localization"):
            assert lines(out / "metadata" / split / f"{name}.txt") == lines(
                fold / split / f"{name}.txt"
            ), (split, name)
    assert "normal/n2.png,," in lines(out / "metadata" / "test" / "localization.txt")
    assert sorted(p.name for p in (out / "masks" / "tumor").iterdir()) == [
        f"t{k}_mask.png" for k in range(3)
    ]
    assert not (out / "masks" / "normal").exists()  # a normal patch has no mask file

    # A normal patch counts only as background pixels: through the mask records and the counter.
    protocol = load_protocol("camelyon512-v1")
    root = get_dataset("camelyon512")().resolve(out, protocol)
    splits = read_splits(root, protocol, check_files_of=("val", "test"))
    test = splits["test"]
    assert test.masks["normal/n2.png"] == MaskRecord([], None)
    settings = EvalSettings.from_protocol(protocol)
    truth = GroundTruth(test, settings, root / "masks")
    normal_fg, normal_ignore = truth.masks("normal/n2.png")
    assert not normal_fg.any() and normal_ignore is None
    tumor_fg, _ = truth.masks("tumor/t2.png")
    assert (
        tumor_fg.sum() == 112 * 70
    )  # rows 4:12, cols 2:7 of 16, nearest to 224: 8 x 5 -> 112 x 70
    rng = np.random.default_rng(1)
    maps = rng.random((2, 7, 7)).astype(np.float32)
    counter = new_counter(settings)
    count_batch(counter, truth, [0, 1], maps, None)
    counts = counter.to_dict()
    edges = np.append(M.threshold_grid(0.001), [1.0, 2.0, 3.0])
    normal_map = M.normalize_map(maps[1], (224, 224), resize="bilinear")
    tumor_map = M.normalize_map(maps[0], (224, 224), resize="bilinear")
    assert counts["mask"]["fg_hist"] == np.histogram(tumor_map[tumor_fg], edges)[0].tolist()
    expected_bg = np.histogram(tumor_map[~tumor_fg], edges)[0] + np.histogram(normal_map, edges)[0]
    assert counts["mask"]["bg_hist"] == expected_bg.tolist()
    assert sum(counts["mask"]["bg_hist"]) == 2 * 224 * 224 - 112 * 70
    values, _ = M.summarize(counts, "oracle")
    assert {"pxap", "dice_fg", "dice_bg", "miou"} <= set(values)


def test_prepare_wsol_splits_glas_layout(tmp_path):
    """GLAS: ids and masks under the release folder of one data root, instance-labelled masks."""
    data = tmp_path / "GlaS"
    release = make_glas(data)
    fold = tmp_path / "splits" / "GLAS" / "fold-0"
    fold.parent.mkdir(parents=True)
    (fold.parent / "encoding.yaml").write_text("benign: 0\nmalignant: 1\n")
    parts = {
        "train": ["train_1", "train_20"],
        "valcl": ["train_2", "train_21"],
        "valpx": ["train_2"],
        "test": ["testA_1", "testB_1"],
    }
    for split, names in parts.items():
        rows = [
            (f"{RELEASE}/{n}.bmp", CLASSES.index(GRADES[n]), f"{RELEASE}/{n}_anno.bmp")
            for n in names
        ]
        _write_split(fold / split, rows, size=SIZE)
    dataset, counts = convert_wsol_splits(fold, tmp_path / "out", images=data)
    assert dataset == "glas" and counts == {"train": 2, "valcl": 2, "valpx": 1, "test": 2}
    out = tmp_path / "out"
    assert lines(out / "metadata" / "test" / "localization.txt") == [
        f"{RELEASE}/testA_1.bmp,{RELEASE}/testA_1_anno.bmp,",
        f"{RELEASE}/testB_1.bmp,{RELEASE}/testB_1_anno.bmp,",
    ]
    copy = decode_mask(out / "masks" / RELEASE / "testB_1_anno.bmp", SIZE)
    np.testing.assert_array_equal(copy, np.where(_label_mask() > 0, 255, 0))
    assert (out / "images").resolve() == data.resolve()
    assert (release / "testB_1_anno.bmp").is_file()  # the release is never touched
    protocol = load_protocol("glas-v1")
    read_splits(out, protocol, check_files_of=("val", "test"))


def test_wsol_splits_conversion_that_fails_leaves_the_earlier_one(tmp_path, monkeypatch):
    fold, data, masks = make_camelyon(tmp_path)
    out = tmp_path / "out"
    convert_wsol_splits(fold, out, images=data, masks=masks)
    assert sorted(p.name for p in out.iterdir()) == ["images", "masks", "metadata"]
    # another mask now: a conversion that replaced masks/ before failing would show it
    Image.new("L", (16, 16), 255).save(masks / "tumor" / "t0_mask.png")
    check_failure_leaves_the_earlier_state(
        monkeypatch,
        lambda target: convert_wsol_splits(fold, target, images=data, masks=masks),
        out,
        tmp_path / "new",
    )


def test_wsol_splits_errors_name_the_file(tmp_path, capsys):
    fold, data, masks = make_camelyon(tmp_path)
    out = tmp_path / "out"

    def convert(src=fold):
        return convert_wsol_splits(src, out, images=data, masks=masks)

    with pytest.raises(MetadataError, match=r"holds folds \(fold-0\).*--src .*fold-0"):
        convert(fold.parent)
    encoding = fold.parent / "encoding.yaml"
    encoding.write_text("normal: 1\ntumor: 0\n")
    with pytest.raises(MetadataError, match=r"encoding\.yaml: the classes are"):
        convert()
    encoding.write_text("normal: 0\ntumor: 1\n")
    (data / "normal" / "n2.png").unlink()
    with pytest.raises(MetadataError, match=r"normal/n2\.png .*does not exist"):
        convert()
    Image.new("RGB", (16, 16)).save(data / "normal" / "n2.png")
    Image.new("L", (9, 9)).save(masks / "tumor" / "t2_mask.png")
    with pytest.raises(MetadataError, match=r"t2_mask\.png is 9x9 but its image is 16x16"):
        convert()
    assert not (out / "metadata").exists() and not (out / "masks").exists()  # nothing written
    (fold / "valpx" / "localization.txt").unlink()
    with pytest.raises(MetadataError, match=r"valpx/localization\.txt: no mask records"):
        convert()
    other = tmp_path / "splits" / "BACH" / "fold-0"
    shutil.copytree(fold, other)
    with pytest.raises(MetadataError, match="dataset folder 'BACH' is none of GLAS, CAMELYON512"):
        convert(other)
    line = refused(capsys, "prepare", "wsol-splits", "--src", fold, "--out", out)
    assert "needs --images DIR" in line
