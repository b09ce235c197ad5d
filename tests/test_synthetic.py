"""Tests of the built-in synthetic dataset generator (wsolbench.data.synthetic)."""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import protocols
from wsolbench.data import generated, synthetic
from wsolbench.data.generated import SPLITS
from wsolbench.data.metadata import read_split
from wsolbench.data.synthetic import (
    HEAD_COLOURS,
    HEAD_PATTERNS,
    MAX_CLASSES,
    SyntheticConfig,
    class_names,
    draw,
    ensure_synthetic,
    generate,
    head_style,
    render_sample,
    style,
)

# Small enough that a generation takes a few tens of milliseconds.
TINY = SyntheticConfig(
    num_classes=3, image_size=48, train_per_class=2, val_per_class=2, test_per_class=3, seed=7
)


def _tight_box(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- class names and head styles -------------------------------------------------------------


def test_class_names_format_unique_and_prefix_stable():
    pattern = re.compile(
        rf"^({'|'.join(c for c, _ in HEAD_COLOURS)}) ({'|'.join(HEAD_PATTERNS)})-headed shape$"
    )
    full = class_names(MAX_CLASSES)
    assert len(set(full)) == MAX_CLASSES
    assert all(pattern.match(name) for name in full), full
    for k in (1, 3, 10):
        assert class_names(k) == full[:k]
    assert class_names(10)[0] == "red dotted-headed shape"
    with pytest.raises(ValueError, match="num_classes"):
        class_names(MAX_CLASSES + 1)


def test_neither_colour_nor_pattern_alone_decides_the_default_classes():
    styles = [head_style(k) for k in range(MAX_CLASSES)]
    assert len(set(styles)) == MAX_CLASSES  # every class has its own (colour, pattern)
    default = styles[:10]
    colours = [c for c, _ in default]
    patterns = [p for _, p in default]
    assert all(colours.count(c) >= 2 for c in colours)
    assert all(patterns.count(p) >= 2 for p in patterns)


def test_protocol_classnames_file_holds_the_default_names():
    path = Path(protocols.__file__).parent / "classnames" / "synthetic.txt"
    assert path.read_text(encoding="utf-8").splitlines() == class_names(
        SyntheticConfig().num_classes
    )


# --- rendering ---------------------------------------------------------------------------------


def test_rendered_ground_truth_is_consistent_and_inside():
    config = SyntheticConfig()
    size = config.image_size
    areas = []
    for label in range(config.num_classes):
        for index in range(15):
            s = render_sample(config, "test", label, index)
            assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
            assert s.box.tolist() == _tight_box(s.mask)
            # Fully inside, with the one-pixel margin.
            assert not (s.mask[0].any() or s.mask[-1].any() or s.mask[:, 0].any())
            assert not s.mask[:, -1].any()
            # The head is part of the object, small, and touches the rest of it (it sits on the
            # body's boundary).
            body = s.mask & ~s.head_mask
            assert (s.head_mask & s.mask).sum() == s.head_mask.sum()
            grown = cv2.dilate(body.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            assert (grown & s.head_mask).any()
            assert s.head_mask.sum() < 0.2 * s.mask.sum()
            radius = s.info["head_radius"]
            assert radius >= synthetic.MIN_HEAD_RADIUS_PX
            assert 0.35 <= s.info["length"] / size <= 0.75
            x0, y0, x1, y1 = s.box.tolist()
            areas.append((x1 - x0 + 1) * (y1 - y0 + 1) / size**2)
    # The spec asks for a mean GT box of about 20-25 % of the image.
    assert 0.18 <= float(np.mean(areas)) <= 0.27


def _ink_fraction(sample) -> float:
    colour = np.array(HEAD_COLOURS[head_style(sample.label)[0]][1], dtype=float)
    pixels = sample.image[sample.head_mask].astype(float)
    ink = np.linalg.norm(pixels - style.PATTERN_INK, axis=1)
    paint = np.linalg.norm(pixels - colour, axis=1)
    return float((ink < paint).mean())


def test_heads_of_different_classes_differ():
    config = SyntheticConfig()
    ink_by_pattern: dict[str, list[float]] = {p: [] for p in HEAD_PATTERNS}
    for label in range(config.num_classes):
        colour_idx, pattern_idx = head_style(label)
        for index in range(12):
            s = render_sample(config, "val", label, index)
            pixels = s.image[s.head_mask].astype(float)
            # Painted in the class colour (some pixels carry it exactly; the others mix it with
            # pattern ink), and in no other head colour.
            for k, (_, rgb) in enumerate(HEAD_COLOURS):
                nearest = np.linalg.norm(pixels - np.array(rgb, dtype=float), axis=1).min()
                assert nearest < 2 if k == colour_idx else nearest > 30, (label, index, k)
            ink_by_pattern[HEAD_PATTERNS[pattern_idx]].append(_ink_fraction(s))
    mean_ink = {p: float(np.mean(v)) for p, v in ink_by_pattern.items()}
    # Patterns differ in how much ink they lay down; solid heads have none.
    assert mean_ink["solid"] == 0.0
    assert 0.1 < mean_ink["dotted"] < mean_ink["ringed"] - 0.05
    assert mean_ink["ringed"] < mean_ink["checkered"] - 0.05


def test_head_patterns_are_distinct():
    yy, xx = np.mgrid[-20:21, -20:21].astype(float)
    inks = {p: draw.head_pattern(p, xx, yy, 20.0) for p in HEAD_PATTERNS}
    assert not inks["solid"].any()
    for i, p in enumerate(HEAD_PATTERNS):
        for q in HEAD_PATTERNS[i + 1 :]:
            assert (inks[p] != inks[q]).mean() > 0.1, (p, q)


def test_an_image_depends_only_on_seed_split_class_and_index():
    a = render_sample(TINY, "test", 1, 2)
    bigger = replace(TINY, num_classes=5, test_per_class=9, train_per_class=4)
    assert np.array_equal(a.image, render_sample(bigger, "test", 1, 2).image)
    assert not np.array_equal(a.image, render_sample(replace(TINY, seed=8), "test", 1, 2).image)
    assert not np.array_equal(a.image, render_sample(TINY, "val", 1, 2).image)
    assert not np.array_equal(a.image, render_sample(TINY, "test", 1, 1).image)


# --- config --------------------------------------------------------------------------------------


def test_digest_is_stable_and_changes_with_every_field():
    base = SyntheticConfig()
    assert base.digest() == SyntheticConfig().digest()
    assert re.fullmatch(r"[0-9a-f]{12}", base.digest())
    changed = {
        "num_classes": 11,
        "image_size": 128,
        "train_per_class": 99,
        "val_per_class": 21,
        "test_per_class": 49,
        "seed": 1,
    }
    digests = {replace(base, **{k: v}).digest() for k, v in changed.items()}
    assert base.digest() not in digests and len(digests) == len(changed)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 21}, "num_classes"),
        ({"num_classes": 1}, "num_classes"),
        ({"image_size": 16}, "image_size"),
        ({"test_per_class": -1}, "test_per_class"),
        ({"val_per_class": 0}, "val_per_class"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_config_values_are_refused_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig(**kwargs)


def test_config_refuses_non_integers():
    with pytest.raises(TypeError, match="image_size"):
        SyntheticConfig(image_size=96.0)


# --- writing -------------------------------------------------------------------------------------


def test_generate_writes_a_readable_dataset_root(tmp_path):
    root = generate(tmp_path / "synth", TINY)
    assert root == tmp_path / "synth"
    # no temporary folder left behind; the build's lock file stays (another may wait on it)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".synth.lock", "synth"]
    assert (root / "classnames.txt").read_text().splitlines() == class_names(3)
    info = json.loads((root / "synthetic.json").read_text())
    assert info["digest"] == TINY.digest()
    assert info["generator"] == {
        "module": "wsolbench.data.synthetic",
        "version": synthetic.GENERATOR_VERSION,
    }
    assert info["config"]["num_classes"] == 3

    for split in SPLITS:
        meta = read_split(
            root / "metadata" / split,
            num_classes=3,
            image_root=root / "images",
            check_images=True,
            mask_root=root / "masks" if split != "train" else None,
        )
        assert len(meta) == 3 * TINY.per_class(split)
        assert meta.image_ids[0] == f"{split}/00/00000.png"
        assert (meta.masks is None) == (split == "train")
        for image_id in meta.image_ids:
            assert meta.labels[image_id] == int(image_id.split("/")[1])
            assert meta.sizes[image_id] == (48, 48)
            image = cv2.imread(str(root / "images" / image_id), cv2.IMREAD_UNCHANGED)
            assert image.shape == (48, 48, 3)
            mask = cv2.imread(str(root / "masks" / image_id), cv2.IMREAD_UNCHANGED)
            assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
            assert meta.boxes[image_id].tolist() == [_tight_box(mask > 0)]
            if meta.masks is not None:
                assert meta.masks[image_id].mask_paths == [image_id]
                assert meta.masks[image_id].ignore_path is None
    text = (root / "metadata" / "test" / "mask_localization.txt").read_text().splitlines()
    assert text[0] == "test/00/00000.png,test/00/00000.png,"


def test_generated_pixels_match_render_sample(tmp_path):
    root = generate(tmp_path / "synth", TINY)
    sample = render_sample(TINY, "val", 2, 1)
    image = cv2.imread(str(root / "images" / "val" / "02" / "00001.png"))[:, :, ::-1]
    assert np.array_equal(image, sample.image)


def test_generate_is_byte_identical(tmp_path):
    a = _files(generate(tmp_path / "a", TINY))
    b = _files(generate(tmp_path / "b", TINY))
    assert len(a) > 3 * (2 + 2 + 3) * 2  # images + masks + metadata
    assert a.keys() == b.keys()
    different = [name for name in a if a[name] != b[name]]
    assert not different


def test_generate_refuses_a_non_empty_folder(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="taken"):
        generate(out, TINY)
    assert (out / "something.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (generate(empty, TINY) / "synthetic.json").is_file()


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    def broken(root, world, progress):
        (root / "partial.txt").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(generated, "_build", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        generate(tmp_path / "out", TINY)
    assert [p.name for p in tmp_path.iterdir()] == [".out.lock"]  # an empty file, kept


# --- cache ---------------------------------------------------------------------------------------


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    real = generated._build

    def counting(root, world, progress):
        calls.append(world.config)
        return real(root, world, progress)

    monkeypatch.setattr(generated, "_build", counting)
    return calls


def test_ensure_synthetic_generates_once(tmp_path, count_builds):
    first = ensure_synthetic(TINY, tmp_path)
    assert first == tmp_path / f"synthetic-{TINY.digest()}"
    stamp = (first / "synthetic.json").stat().st_mtime_ns
    second = ensure_synthetic(TINY, tmp_path)
    assert second == first and len(count_builds) == 1
    assert (first / "synthetic.json").stat().st_mtime_ns == stamp
    other = ensure_synthetic(replace(TINY, seed=8), tmp_path)
    assert other != first and len(count_builds) == 2


def test_ensure_synthetic_uses_the_cache_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path / "cache"))
    root = ensure_synthetic(TINY)
    assert root == tmp_path / "cache" / f"synthetic-{TINY.digest()}"


def test_ensure_synthetic_reports_a_corrupt_cache(tmp_path):
    root = tmp_path / f"synthetic-{TINY.digest()}"
    (root / "images").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="delete that folder"):
        ensure_synthetic(TINY, tmp_path)


def test_generate_removes_what_a_killed_generate_left(tmp_path):
    # a folder of a build of ``out`` that nobody is building (its lock is free): a dead one's
    dead = tmp_path / ".synth.tmp-dead"
    (dead / "images").mkdir(parents=True)
    generate(tmp_path / "synth", TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".synth.lock", "synth"]


def test_ensure_synthetic_from_two_processes_at_once(tmp_path):
    # each counts its builds in a file of its own: one of the two builds, the other waits
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from wsolbench.data import generated\n"
        "from wsolbench.data.synthetic import SyntheticConfig, ensure_synthetic\n"
        "build = generated._build\n"
        "def counted(*args):\n"
        "    Path(sys.argv[2]).write_text('built')\n"
        "    return build(*args)\n"
        "generated._build = counted\n"
        f"config = SyntheticConfig(**{TINY.__dict__!r})\n"
        "print(ensure_synthetic(config, sys.argv[1]))\n"
    )
    counts = tmp_path.parent / f"{tmp_path.name}-builds"
    counts.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), str(counts / str(n))],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    expected = str(tmp_path / f"synthetic-{TINY.digest()}")
    assert outputs == [expected, expected]
    name = Path(expected).name
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".{name}.lock", name]
    assert read_split(Path(expected) / "metadata" / "test", num_classes=3).image_ids
    assert len(list(counts.iterdir())) == 1


def test_a_killed_build_is_removed_by_the_next_one(tmp_path):
    # A build killed outright (SIGKILL: no cleanup of its own runs) leaves its hidden folder; the
    # next build of that world removes it, since the kernel freed the dead builder's lock.
    code = (
        "import os, signal, sys\n"
        "from wsolbench.data import generated\n"
        "from wsolbench.data.synthetic import SyntheticConfig, ensure_synthetic\n"
        "def killed(root, world, progress):\n"
        "    (root / 'half.png').write_bytes(b'x')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "generated._build = killed\n"
        f"ensure_synthetic(SyntheticConfig(**{TINY.__dict__!r}), sys.argv[1])\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=60)
    assert killed.returncode == -9
    left = [p.name for p in tmp_path.iterdir()]
    assert any(".tmp-" in name for name in left), left  # what the kill left behind
    root = ensure_synthetic(TINY, tmp_path)
    lock = f".{root.name}.lock"  # kept: another process may be waiting on it
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, lock])


def test_a_build_in_progress_is_waited_for_not_disturbed(tmp_path, caplog):
    # Another process holds the build lock (its build running): this one waits, leaving that
    # build's folder alone, and takes the lock once it is free.
    busy = tmp_path / f".synthetic-{TINY.digest()}.tmp-busy"
    busy.mkdir()
    done = []
    with open(tmp_path / f".synthetic-{TINY.digest()}.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = threading.Thread(target=lambda: done.append(ensure_synthetic(TINY, tmp_path)))
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and busy.is_dir() and not done
        assert "waiting for another process to finish building" in caplog.text  # said, not silent
    waiting.join(timeout=60)  # the holder ended without building: its folder is a dead one's
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [done[0].name]


def test_generating_into_a_log_prints_complete_lines_not_a_bar(tmp_path, capsys):
    """The first run on an empty cache generates the data: into a log or a pipe (stderr not a
    terminal) its progress is plain lines, as every other loop's (wsolbench.util.progress), not
    a tqdm bar redrawn with carriage returns."""
    config = SyntheticConfig(
        num_classes=2, image_size=32, train_per_class=1, val_per_class=1, test_per_class=1
    )
    synthetic.generate(tmp_path / "tiny", config, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "synthetic: 6/6 (100%)" in err.splitlines()


def test_generating_never_names_its_temporary_folder(tmp_path, caplog):
    # The folder it builds in is renamed away at the end: a log line naming it names nothing.
    with caplog.at_level("INFO", logger="wsolbench"):
        generate(tmp_path / "synth", TINY)
    assert "synthetic" in caplog.text and ".tmp-" not in caplog.text
