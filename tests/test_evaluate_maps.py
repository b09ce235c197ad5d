"""`wsolbench evaluate-maps`: saved maps laid out as the reference expects, boxes and masks."""

import json

import cv2
import numpy as np
import pytest

from wsolbench.cli.main import main
from wsolbench.data.metadata import read_split
from wsolbench.data.synthetic import SyntheticConfig, generate

TINY = SyntheticConfig(
    num_classes=2, image_size=40, train_per_class=1, val_per_class=1, test_per_class=5
)
SIZE = 40  # evaluate at the images' own size


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", TINY)


def save_maps(root, maps_dir, make_map):
    meta = read_split(root / "metadata" / "test")
    for image_id in meta.image_ids:
        path = maps_dir / f"{image_id}.npy"  # the id keeps its subfolders and extension
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = cv2.imread(str(root / "masks" / image_id), cv2.IMREAD_GRAYSCALE) > 0
        np.save(path, make_map(mask))
    return meta


def evaluate(root, maps_dir, tmp_path, *extra):
    out = tmp_path / "metrics.json"
    argv = [
        "evaluate-maps",
        "--maps",
        maps_dir,
        "--metadata",
        root / "metadata" / "test",
        "--size",
        SIZE,
        SIZE,
        "--json",
        out,
        *extra,
    ]
    code = main([str(a) for a in argv])
    return code, (json.loads(out.read_text()) if code == 0 else None)


def test_perfect_maps_score_100_on_boxes_and_masks(tiny_root, tmp_path, capsys):
    maps = tmp_path / "maps"
    save_maps(tiny_root, maps, lambda mask: mask.astype(np.float32))
    code, record = evaluate(tiny_root, maps, tmp_path, "--masks", tiny_root / "masks")
    assert code == 0
    assert record["maxboxacc_v2"] == 100.0 and record["maxboxacc"] == 100.0
    assert record["pxap"] == pytest.approx(100.0)
    assert record["n_images"] == 10 and record["step"] == 0.001
    assert len(record["counts"]["box"]["multi"]["30"]) == 1000
    assert "top1_loc" not in record  # saved maps carry no class scores
    assert "maxboxacc_v2" in capsys.readouterr().out


def test_inverted_maps_score_low_and_other_sizes_are_resized(tiny_root, tmp_path):
    maps = tmp_path / "maps"
    save_maps(tiny_root, maps, lambda mask: cv2.resize((~mask).astype(np.float32) * 5.0, (16, 16)))
    code, record = evaluate(tiny_root, maps, tmp_path, "--iou", 50)
    assert code == 0
    assert set(record["counts"]["box"]["multi"]) == {"50"}
    assert "maxboxacc_v2" not in record  # defined over IoU 30, 50 and 70 only
    # The inverted object is a hole in the map; its contour is the object's outline, so the
    # multi-contour rule still finds the box, while the largest contour is the frame around it.
    assert record["maxboxacc_iou50"] == 100.0
    assert record["maxboxacc"] < 50.0


def test_protocol_size_maps_must_be_in_unit_range(tiny_root, tmp_path, capsys):
    maps = tmp_path / "maps"
    meta = save_maps(tiny_root, maps, lambda mask: mask.astype(np.float32) * 3.0)
    code, _ = evaluate(tiny_root, maps, tmp_path)
    assert code == 2
    err = capsys.readouterr().err
    assert meta.image_ids[0] in err and "--normalize" in err
    code, record = evaluate(tiny_root, maps, tmp_path, "--normalize")
    assert code == 0 and record["maxboxacc_v2"] == 100.0


def test_missing_maps_are_named(tiny_root, tmp_path, capsys):
    maps = tmp_path / "maps"
    meta = save_maps(tiny_root, maps, lambda mask: mask.astype(np.float32))
    (maps / f"{meta.image_ids[3]}.npy").unlink()
    code, _ = evaluate(tiny_root, maps, tmp_path)
    assert code == 2
    err = capsys.readouterr().err
    assert "1 of 10 maps are missing" in err and meta.image_ids[3] in err


def test_the_missing_map_check_looks_where_the_maps_are_read(tmp_path):
    """Each id is looked up at the path its map is read from (saved_map_path): an absolute id
    too, and an id with a NUL byte is missing, not an error of its own."""
    from wsolbench.counting import _missing_maps

    maps = tmp_path / "maps"
    (maps / "a").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    np.save(maps / "a" / "x.png.npy", np.zeros((2, 2), np.float32))
    np.save(maps / "top.png.npy", np.zeros((2, 2), np.float32))
    np.save(elsewhere / "abs.png.npy", np.zeros((2, 2), np.float32))
    (maps / "dir.png.npy").mkdir()
    ids = [
        "a/x.png",
        "a//x.png",
        "top.png",
        f"{elsewhere}/abs.png",  # read from there: maps_dir / "/..." is the absolute path
        "/top.png",  # not maps/top.png: the loader opens /top.png.npy
        "dir.png",  # a folder, not a map
        "b/x.png",
        "a\x00x.png",
        "nul\x00/x.png",
    ]
    assert _missing_maps(maps, ids) == ["/top.png", "dir.png", "b/x.png", ids[7], ids[8]]


def test_worker_count_does_not_change_the_counts(tiny_root, tmp_path, monkeypatch):
    """Chunks of 3 maps over 1, 2 or 3 worker processes (each map read where it is counted):
    the same counts, in one process or in several."""
    from wsolbench import counting

    monkeypatch.setattr(counting, "SAVED_MAPS_CHUNK", 3)
    monkeypatch.setattr(counting, "PIXELS_PER_WORKER", 1)
    maps = tmp_path / "maps"
    save_maps(tiny_root, maps, lambda mask: cv2.resize((~mask).astype(np.float32), (13, 13)))
    records = []
    for workers in (1, 2, 3):
        code, record = evaluate(tiny_root, maps, tmp_path, "--workers", workers)
        assert code == 0
        records.append(record)
    assert records[0] == records[1] == records[2]
    assert records[0]["n_images"] == 10 and "maxboxacc_v2" in records[0]


def test_the_workers_start_before_the_split_is_read(tiny_root, tmp_path, monkeypatch):
    """The worker processes start (and load the compiled engine) while this process reads the
    metadata and the predictions: at ILSVRC's 50,000 maps each takes about a second, so the
    two overlap instead of adding up. The counts are those of one process."""
    from wsolbench import counting
    from wsolbench.data import metadata

    monkeypatch.setattr(counting, "SAVED_MAPS_CHUNK", 3)
    monkeypatch.setattr(counting, "PIXELS_PER_WORKER", 1)
    events = []
    start, read = counting.start_counting_workers, metadata.read_split

    def starting(*args, **kwargs):
        pool = start(*args, **kwargs)
        events.append(("workers", pool is not None))
        return pool

    def reading(*args, **kwargs):
        events.append(("read", None))
        return read(*args, **kwargs)

    monkeypatch.setattr(counting, "start_counting_workers", starting)
    monkeypatch.setattr(metadata, "read_split", reading)
    maps = tmp_path / "maps"
    save_maps(tiny_root, maps, lambda mask: cv2.resize((~mask).astype(np.float32), (13, 13)))
    code, in_workers = evaluate(tiny_root, maps, tmp_path, "--workers", 2)
    assert code == 0 and events == [("workers", True), ("read", None)]
    events.clear()
    code, here = evaluate(tiny_root, maps, tmp_path, "--workers", 1)
    assert code == 0 and events == [("workers", False), ("read", None)]
    assert in_workers == here


def test_a_bad_map_read_by_a_worker_process_is_one_error_line(
    tiny_root, tmp_path, capsys, monkeypatch
):
    from wsolbench import counting

    monkeypatch.setattr(counting, "SAVED_MAPS_CHUNK", 2)
    monkeypatch.setattr(counting, "PIXELS_PER_WORKER", 1)
    maps = tmp_path / "maps"
    meta = save_maps(tiny_root, maps, lambda mask: mask.astype(np.float32))
    bad = maps / f"{meta.image_ids[7]}.npy"
    bad.write_bytes(b"not an array")
    code, _ = evaluate(tiny_root, maps, tmp_path, "--workers", 2)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"error: map {bad} is not a NumPy array file (.npy)" in err


def write_predictions(path, meta, correct):
    """One line per image: the true class first for the images in ``correct``, else second
    (behind the other of the two classes)."""
    lines = []
    for i, image_id in enumerate(meta.image_ids):
        label, other = meta.labels[image_id], 1 - meta.labels[image_id]
        lines.append(
            f"{image_id},{label},{other}" if i in correct else f"{image_id},{other},{label}"
        )
    path.write_text("\n".join(lines) + "\n")


def test_predictions_add_top1_and_top5(tiny_root, tmp_path, monkeypatch):
    """Perfect maps (GT-known 100 % at the best threshold) and 7 of 10 top-1 predictions right:
    Top-1 Cls and Loc 70 %, Top-5 100 %; the same over 1 and 2 worker processes."""
    from wsolbench import counting

    monkeypatch.setattr(counting, "SAVED_MAPS_CHUNK", 3)
    monkeypatch.setattr(counting, "PIXELS_PER_WORKER", 1)
    maps = tmp_path / "maps"
    meta = save_maps(tiny_root, maps, lambda mask: mask.astype(np.float32))
    predictions = tmp_path / "predictions.csv"
    write_predictions(predictions, meta, correct={0, 1, 2, 4, 6, 7, 9})
    records = []
    for workers in (1, 2):
        code, record = evaluate(
            tiny_root, maps, tmp_path, "--predictions", predictions, "--workers", workers
        )
        assert code == 0
        records.append(record)
    assert records[0] == records[1]
    record = records[0]
    assert record["top1_cls"] == 70.0 and record["top5_cls"] == 100.0
    assert record["gt_known_loc"] == 100.0
    assert record["top1_loc"] == 70.0 and record["top5_loc"] == 100.0


def test_predictions_too_short_for_top5_are_refused(tiny_root, tmp_path, capsys):
    """Top-5 reads the five best classes (all of them with fewer classes): a line with only the
    best would give a Top-5 equal to Top-1, reported as if measured."""
    maps = tmp_path / "maps"
    meta = save_maps(tiny_root, maps, lambda mask: mask.astype(np.float32))
    predictions = tmp_path / "predictions.csv"
    lines = [f"{i},{meta.labels[i]}" for i in meta.image_ids]  # two classes here, one given
    predictions.write_text("\n".join(lines) + "\n")
    code, _ = evaluate(tiny_root, maps, tmp_path, "--predictions", predictions)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "top5" not in capsys.readouterr().out
    assert f"{predictions} line 1: 1 class; Top-5 reads the 2 best (the split has 2 classes)" in err


def test_bad_predictions_are_named_with_their_lines(tiny_root, tmp_path, capsys):
    maps = tmp_path / "maps"
    meta = save_maps(tiny_root, maps, lambda mask: mask.astype(np.float32))
    predictions = tmp_path / "predictions.csv"
    ids = meta.image_ids
    lines = [f"{i},0,1" for i in ids[:7]] + [f"{ids[7]},one,0", "stray.png,1,0", f"{ids[0]},1,0"]
    predictions.write_text("\n".join(lines) + "\n")
    code, _ = evaluate(tiny_root, maps, tmp_path, "--predictions", predictions)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{predictions} line 8: class 'one' is not a non-negative integer" in err
    assert f"{predictions} line 9: id 'stray.png' is not in the split" in err
    assert f"{predictions} line 10: duplicate id '{ids[0]}' (first on line 1)" in err
    assert f"no line for id '{ids[8]}' (and 1 more)" in err
    code, _ = evaluate(tiny_root, maps, tmp_path, "--predictions", tmp_path / "absent.csv")
    assert code == 2 and "absent.csv: no such file" in capsys.readouterr().err
    code, _ = evaluate(tiny_root, tmp_path / "no-maps", tmp_path)
    assert code == 2 and "no-maps: no such folder" in capsys.readouterr().err
    code, _ = evaluate(tiny_root, maps, tmp_path, "--masks", tmp_path / "no-masks")
    err = capsys.readouterr().err  # was 22 lines: every mask file of the split missing
    assert code == 2 and err == f"error: --masks {tmp_path / 'no-masks'}: no such folder\n"


def test_a_runs_evaluation_counts_the_same_with_any_number_of_workers(
    tiny_root, tmp_path, monkeypatch
):
    """A method's maps counted by 1, 2 or 3 worker processes while it predicts the next
    batches (batches of 3): the same counts and the same per-image records."""
    import torch
    from toy_method import ToyCAM

    from wsolbench import counting
    from wsolbench.evaluate import evaluate_method
    from wsolbench.protocol import load_protocol
    from wsolbench.results.per_image import RecordCollector

    monkeypatch.setattr(counting, "PIXELS_PER_WORKER", 1)
    settings = counting.EvalSettings.from_protocol(load_protocol(str(tiny_root / "protocol.yaml")))
    torch.manual_seed(0)
    method = ToyCAM(TINY.num_classes)
    outcomes = []
    for workers in (1, 2, 3):
        collector = RecordCollector(settings.step, list(settings.iou_thresholds))
        counts = evaluate_method(
            method,
            read_split(tiny_root / "metadata" / "test"),
            tiny_root / "images",
            settings,
            mask_root=tiny_root / "masks",
            batch_size=3,
            progress=False,
            records=collector,
            count_workers=workers,
        )
        outcomes.append((json.dumps(counts, sort_keys=True), collector.records()))
    (counts_1, records_1), *others = outcomes
    assert json.loads(counts_1)["n_images"] == 10
    for counts_n, records_n in others:
        assert counts_n == counts_1
        assert list(records_n.image_ids) == list(records_1.image_ids)
        for field in ("multi", "largest", "top1", "top5", "fg_hist", "bg_hist"):
            assert np.array_equal(getattr(records_n, field), getattr(records_1, field)), field


def test_the_workers_of_a_run_are_only_spawned_when_they_pay():
    from wsolbench.counting import worker_count

    assert worker_count(8, 500, (96, 96)) == 1  # synthetic-v1's test split: counted in-process
    assert worker_count(8, 50_000, (224, 224)) == 8
    assert worker_count(2, 399, (224, 224)) == 1 and worker_count(2, 400, (224, 224)) == 2


def test_maps_sharing_a_header_read_as_numpy_reads_them(tmp_path):
    """The reader parses a .npy header once and reads later files with the same header bytes
    directly: every array equals np.load's (byte order, Fortran order, 0-d, empty), and a file cut
    short after a known header is still refused, named."""
    from wsolbench.counting import MapFileError, _read_npy

    rng = np.random.default_rng(0)
    arrays = [
        rng.random((7, 5)).astype(np.float32),
        rng.random((7, 5)).astype(">f8"),
        np.asfortranarray(rng.random((6, 4))),
        np.array(3.5),
        np.zeros((0, 9), np.uint8),
        rng.integers(0, 9, (3, 3), dtype=np.int16),
    ]
    for i, array in enumerate(arrays):
        for twin in range(3):  # the first read parses the header, the others reuse it
            path = tmp_path / f"{i}-{twin}.npy"
            np.save(path, array + twin if array.size else array)
            read = _read_npy(path)
            expected = np.load(path)
            assert read.dtype == expected.dtype and read.shape == expected.shape
            assert np.array_equal(read, expected)
    cut = tmp_path / "cut.npy"
    cut.write_bytes((tmp_path / "0-0.npy").read_bytes()[:-4])
    with pytest.raises(MapFileError, match=f"map {cut} is not a readable .npy array"):
        _read_npy(cut)


def test_a_counting_process_keeps_its_freed_memory_where_malloc_is_glibcs():
    """mallopt takes both settings under glibc, and elsewhere nothing is touched."""
    import platform

    from wsolbench.util.heap import keep_freed_memory

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
