"""Tests of the built-in histology world (wsolbench.data.synthetic_histo) and its protocol."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsolbench.cli.main import main
from wsolbench.data.fingerprint import data_fingerprint
from wsolbench.data.generated import PROTOCOL_FILE, SPLITS
from wsolbench.data.metadata import read_split
from wsolbench.data.sources import get_dataset, read_splits
from wsolbench.data.synthetic_histo import (
    CLASSES,
    HistoConfig,
    ensure_histo,
    generate_histo,
    render_histo_sample,
)
from wsolbench.data.synthetic_histo.glands import (
    VERTICES,
    benign_glands,
    draw_glands,
    malignant_glands,
)
from wsolbench.data.synthetic_histo.render import GLAND_FRACTION
from wsolbench.data.synthetic_histo.tissue import HARD_NEGATIVES, Layers, hard_negative
from wsolbench.protocol import default_protocol_id, load_protocol
from wsolbench.util.names import check_name

TINY = HistoConfig(image_size=64, train_per_class=3, val_per_class=2, test_per_class=2, seed=5)


def _outline_area(outline: np.ndarray) -> float:
    """Shoelace area of a closed polygon [K, 2] (written here, not taken from the generator)."""
    x, y = outline[:, 0], outline[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _roundness(outline: np.ndarray) -> float:
    """4π·area / perimeter²: 1 for a circle, lower for an irregular or elongated outline."""
    perimeter = float(np.sum(np.hypot(*(outline - np.roll(outline, -1, axis=0)).T)))
    return 4 * math.pi * _outline_area(outline) / perimeter**2


# --- the image model ------------------------------------------------------------------------------


def test_every_image_has_glands_and_the_mask_is_exactly_the_glands():
    for label in (0, 1):
        for index in range(6):
            sample = render_histo_sample(TINY, "train", label, index)
            assert sample.image.shape == (64, 64, 3) and sample.image.dtype == np.uint8
            assert GLAND_FRACTION[0] <= sample.mask.mean() <= GLAND_FRACTION[1]
            assert sample.box is None and sample.label == label


def _inside_by_crossings(xx: np.ndarray, yy: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Even-odd rule: a point is inside when a ray to +x crosses the polygon's edges an odd
    number of times (the textbook test, unlike the generator's union of wedges)."""
    inside = np.zeros(xx.shape, dtype=bool)
    for (x0, y0), (x1, y1) in zip(outline, np.roll(outline, -1, axis=0), strict=True):
        spans = (y0 > yy) != (y1 > yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_cross = x0 + (yy - y0) * (x1 - x0) / (y1 - y0)
        inside ^= spans & (xx < x_cross)
    return inside


def test_the_mask_is_the_union_of_the_gland_outlines():
    """Pixel centres inside any outline by the even-odd rule are exactly the mask."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float64)
    for draw in (benign_glands, malignant_glands):
        for _ in range(5):
            glands = draw(rng, 96)
            layers = Layers(np.zeros((96, 96)), np.zeros((96, 96)), np.zeros((96, 96)))
            mask = draw_glands(layers, glands)
            expected = np.zeros((96, 96), dtype=bool)
            for gland in glands:
                expected |= _inside_by_crossings(xx, yy, gland.outline)
            assert np.array_equal(mask, expected), (draw.__name__, (mask != expected).sum())
            assert all(len(g.outline) == VERTICES for g in glands)


def test_the_grades_differ_in_gland_shape_and_arrangement():
    """Benign glands are round, alike in size and apart; malignant ones irregular, of very
    different sizes and crowded into each other."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-40:136, -40:136].astype(np.float64)  # room for glands that leave the image
    stats = {}
    for name, draw in (("benign", benign_glands), ("malignant", malignant_glands)):
        roundness, size_spread, overlaps = [], [], []
        for _ in range(30):
            glands = draw(rng, 96)
            areas = [_outline_area(g.outline) for g in glands]
            roundness += [_roundness(g.outline) for g in glands]
            size_spread.append(np.std(areas) / np.mean(areas))
            cover = [_inside_by_crossings(xx, yy, g.outline) for g in glands]
            overlaps.append(sum(c.sum() for c in cover) / np.logical_or.reduce(cover).sum())
        stats[name] = (np.mean(roundness), np.mean(size_spread), np.mean(overlaps))
    (b_round, b_spread, b_overlap), (m_round, m_spread, m_overlap) = stats.values()
    assert b_round > 0.85 > m_round, stats
    assert b_spread < 0.15 < m_spread, stats
    # pixels covered by several glands over pixels covered at all: 1 when no two glands touch
    assert b_overlap < 1.01 and m_overlap > 1.05, stats


def test_hard_negatives_never_enter_the_mask():
    rng = np.random.default_rng(1)
    for kind in HARD_NEGATIVES:
        layers = Layers(np.full((96, 96), 0.5), np.zeros((96, 96)), np.zeros((96, 96)))
        before = layers.eosin.copy(), layers.haematoxylin.copy()
        hard_negative(rng, layers, kind)
        changed = (layers.eosin != before[0]) | (layers.haematoxylin != before[1])
        assert changed.any(), kind  # it drew something
        assert draw_glands(layers, []).sum() == 0  # and no gland


def test_an_image_depends_only_on_seed_split_class_and_index():
    a = render_histo_sample(TINY, "val", 1, 1)
    b = render_histo_sample(replace(TINY, train_per_class=9), "val", 1, 1)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    other = render_histo_sample(replace(TINY, seed=6), "val", 1, 1)
    assert not np.array_equal(a.image, other.image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image_size": 32}, "image_size=32"),
        ({"test_per_class": 0}, "test_per_class=0"),
        ({"seed": -1}, "seed=-1"),
    ],
)
def test_bad_config_values_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HistoConfig(**kwargs)


def test_digest_changes_with_every_field():
    digests = {TINY.digest()}
    for field, value in [("image_size", 65), ("train_per_class", 4), ("seed", 6)]:
        digests.add(replace(TINY, **{field: value}).digest())
    assert len(digests) == 4


# --- the dataset root and its protocol ------------------------------------------------------------


def test_generate_writes_a_masks_only_root_with_its_protocol(tmp_path):
    root = generate_histo(tmp_path / "histo", TINY)
    assert (root / "classnames.txt").read_text().splitlines() == list(CLASSES)
    info = json.loads((root / "synthetic-histo.json").read_text())
    assert info["digest"] == TINY.digest() and info["config"]["seed"] == 5
    for split in SPLITS:
        meta = read_split(
            root / "metadata" / split,
            num_classes=2,
            image_root=root / "images",
            check_images=True,
            mask_root=root / "masks" if split != "train" else None,
        )
        assert len(meta) == 2 * TINY.per_class(split) and meta.boxes is None
        assert (meta.masks is None) == (split == "train")
    lines = (root / "metadata" / "test" / "localization.txt").read_text().splitlines()
    assert lines[0] == "test/00/00000.png,test/00/00000.png,"  # the mask form, no ignore
    mask = cv2.imread(str(root / "masks" / "test" / "01" / "00001.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(mask > 0, render_histo_sample(TINY, "test", 1, 1).mask)

    protocol = load_protocol(str(root / PROTOCOL_FILE))
    shipped = load_protocol("synthetic-histo-v1")
    assert protocol.localization == shipped.localization == "masks"
    assert protocol.dataset == "synthetic-histo" and protocol.eval_size == (64, 64)
    assert protocol.extra["generator"]["seed"] == 5
    splits = read_splits(root, protocol)
    pins = {s: i["sha256"] for s, i in data_fingerprint(splits)["splits"].items()}
    assert protocol.content["data_fingerprint"] == pins


#: sha256 over every image and mask of the default world, decoded (path, shape, pixels): the data
#: fingerprint pins the records, not the pixels, and a faster generator must draw the same ones
DEFAULT_WORLD_PIXELS = "274a698f65f935df47a0a49ecd603266b3754d77b59b13b71afe530aa8224522"


def pixels_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        digest.update(f"{path.relative_to(root)}{array.shape}".encode() + array.tobytes())
    return digest.hexdigest()


def test_the_shipped_protocol_pins_the_default_world(tmp_path):
    """synthetic-histo-v1 is the default config's data, fingerprint for fingerprint, pixel for
    pixel (the whole set is drawn: about 8 s)."""
    protocol = load_protocol(default_protocol_id("synthetic-histo"))
    assert protocol.id == "synthetic-histo-v1" and protocol.has_masks and not protocol.has_boxes
    assert HistoConfig(**protocol.extra["generator"]) == HistoConfig()
    root = get_dataset("synthetic-histo")().resolve(None, protocol)
    assert root == ensure_histo(HistoConfig())
    splits = read_splits(root, protocol)
    pins = {s: i["sha256"] for s, i in data_fingerprint(splits)["splits"].items()}
    assert pins == protocol.content["data_fingerprint"]
    assert pixels_digest(root) == DEFAULT_WORLD_PIXELS


def test_dataset_names_may_join_words_with_a_hyphen():
    check_name("synthetic-histo", "dataset")
    for bad in ("Synthetic-histo", "synthetic--histo", "-histo", "histo-", "synthetic-2x"):
        with pytest.raises(ValueError, match="invalid dataset name"):
            check_name(bad, "dataset")
    with pytest.raises(ValueError, match="invalid method name"):
        check_name("synthetic-histo", "method")


def test_tedloc_runs_on_it_with_its_teacher_and_reports_the_mask_metrics(tmp_path, capsys):
    root = generate_histo(tmp_path / "histo", replace(TINY, train_per_class=6))
    work = tmp_path / "run"
    argv = ["run", "--method", "tedloc", "--dataset", "synthetic-histo", "--work-dir", str(work)]
    argv += ["--data-root", str(root), "--protocol", str(root / PROTOCOL_FILE)]
    argv += ["-o", "train.max_epochs=1"]
    assert main(argv) == 0
    result = json.loads((work / "result.json").read_text())
    assert result["dataset"] == "synthetic-histo"
    assert f"teacher=run:cam-{result['protocol']}-" in result["pretrained"]
    assert "none" in result["pretrained"]  # random text towers: said so in the record
    for split in ("val", "test"):
        for policy in ("oracle", "select"):
            metrics = result["metrics"][split][policy]
            assert set(metrics) >= {"pxap", "dice_fg", "dice_bg", "miou"}
            assert "maxboxacc_v2" not in metrics
            assert all(0 <= v <= 100 for v in metrics.values())
    out = capsys.readouterr().out
    assert "dice_fg" in out and "miou" in out
    # its pictures: mask outlines on the overlays, the mask metrics' curves
    from wsolbench.runs.visualize import GT_COLOR, PRED_COLOR, visualize

    overlays, curves = visualize([work], n=4, output=tmp_path / "vis")
    assert curves.name == "curves.png" and curves.stat().st_size > 0
    grid = cv2.imread(str(overlays))[:, :, ::-1]
    for colour in (GT_COLOR, PRED_COLOR):
        assert (grid == colour).all(axis=-1).sum() > 20, colour


def test_prepare_writes_it_and_a_seed_of_its_own_says_which_protocol(tmp_path, capsys, monkeypatch):
    from wsolbench.data import synthetic_histo

    def tiny(seed: int = 0) -> HistoConfig:  # the default counts take seconds to draw
        return replace(TINY, seed=seed)

    monkeypatch.setattr(synthetic_histo, "HistoConfig", tiny)
    out = tmp_path / "histo"
    assert main(["prepare", "synthetic-histo", "--out", str(out), "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert f"--protocol {out / PROTOCOL_FILE}" in printed
    config = json.loads((out / "synthetic-histo.json").read_text())["config"]
    assert config == asdict(replace(TINY, seed=1))
    assert Path(out / "metadata" / "val" / "localization.txt").is_file()
