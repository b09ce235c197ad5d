"""Protocol specs: shipped ones load, hashes are stable and content-sensitive, errors are clear."""

import shutil

import pytest

from wsolbench.protocol import (
    PROTOCOL_DIR,
    ProtocolError,
    default_protocol_id,
    list_protocols,
    load_protocol,
)


def test_every_shipped_protocol_loads():
    assert {"cub-v1", "ilsvrc-v1", "openimages-v1", "synthetic-v1"} <= set(list_protocols())
    for protocol_id in list_protocols():
        protocol = load_protocol(protocol_id)
        assert protocol.id == protocol_id
        assert protocol.threshold_step == 0.001
        assert protocol.iou_thresholds == (30, 50, 70)
        assert len(protocol.hash) == 64
        assert protocol.eval_splits[-1] == "test"


def test_shipped_geometry_and_classes():
    cub = load_protocol("cub-v1")
    assert cub.eval_size == (224, 224) and cub.num_classes == 200 and len(cub.classnames) == 200
    assert cub.has_boxes and not cub.has_masks and cub.checkpoint == "last"
    assert len(load_protocol("ilsvrc-v1").classnames) == 1000
    synthetic = load_protocol("synthetic-v1")
    assert synthetic.has_boxes and synthetic.has_masks and synthetic.eval_size == (96, 96)
    assert synthetic.extra["generator"]["num_classes"] == synthetic.num_classes


def test_default_protocol_is_the_newest_version(tmp_path, monkeypatch):
    assert default_protocol_id("cub") == "cub-v1"
    with pytest.raises(ProtocolError, match="no protocol for dataset 'mnist'"):
        default_protocol_id("mnist")


def test_hash_is_stable_and_moves_with_any_change(tmp_path):
    shutil.copytree(PROTOCOL_DIR / "classnames", tmp_path / "classnames")
    original = (PROTOCOL_DIR / "cub-v1.yaml").read_text()
    same = tmp_path / "same.yaml"
    same.write_text("# a comment does not change the content\n" + original)
    assert load_protocol(same).hash == load_protocol("cub-v1").hash
    mine = tmp_path / "mine.yaml"  # a protocol of one's own takes an id of its own
    mine.write_text(original.replace("id: cub-v1", "id: cub-mine"))
    before = load_protocol(mine).hash
    changed = tmp_path / "changed.yaml"
    changed.write_text(mine.read_text().replace("threshold_step: 0.001", "threshold_step: 0.01"))
    assert load_protocol(changed).hash != before
    names = tmp_path / "classnames" / "cub.txt"
    names.write_text(names.read_text().replace("Albatross", "Albatros", 1))
    assert load_protocol(mine).hash != before
    with pytest.raises(ProtocolError, match="takes the id 'cub-v1' of a shipped protocol"):
        load_protocol(same)  # the shipped id with other class names


def test_a_copy_of_a_shipped_protocol_without_its_pins_is_refused(tmp_path):
    shutil.copytree(PROTOCOL_DIR / "classnames", tmp_path / "classnames")
    original = (PROTOCOL_DIR / "synthetic-v1.yaml").read_text()
    nopin = tmp_path / "nopin.yaml"
    nopin.write_text(original.split("data_fingerprint:")[0])
    with pytest.raises(ProtocolError, match="takes the id 'synthetic-v1' of a shipped protocol"):
        load_protocol(nopin)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("classnames: [a, b, c]", "classnames must be"),
        ("selection_split: [val]", "selection_split must be"),
        ('eval_size: "32"', "eval_size must be"),
        ("eval_size: [100000, 100000]", "eval_size must be"),
        ("iou_thresholds: [50.5]", "iou_thresholds must be"),
        ("map_class: top1", "map_class must be ground_truth"),
        ("chekpoint: best", "did you mean 'checkpoint'"),
        ("version: v1", "version must be an integer"),
    ],
)
def test_protocol_keys_are_typed(tmp_path, line, message):
    shutil.copytree(PROTOCOL_DIR / "classnames", tmp_path / "classnames")
    text = (PROTOCOL_DIR / "cub-v1.yaml").read_text().replace("id: cub-v1", "id: cub-mine")
    key = line.split(":")[0]
    lines = [x for x in text.splitlines() if not x.startswith(f"{key}:")]
    path = tmp_path / "p.yaml"
    path.write_text("\n".join([*lines, line]) + "\n")
    with pytest.raises(ProtocolError, match=message) as info:
        load_protocol(path)
    assert str(path) in str(info.value)


def test_bad_protocols_are_named(tmp_path):
    with pytest.raises(ProtocolError, match="unknown protocol 'cub-v9'"):
        load_protocol("cub-v9")
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\ndataset: cub\n")
    with pytest.raises(ProtocolError, match=r"bad.yaml: missing key\(s\) version"):
        load_protocol(bad)
    bad.write_text(
        (PROTOCOL_DIR / "openimages-v1.yaml").read_text().replace("masks\n", "polygons\n")
    )
    with pytest.raises(ProtocolError, match="localization must be one of"):
        load_protocol(bad)


@pytest.mark.parametrize("step", ["1e-9", "0", "1"])
def test_a_threshold_step_too_fine_to_hold_is_refused(tmp_path, step):
    """A step of 1e-9 was accepted, then ran out of memory counting (a bit per threshold)."""
    shutil.copytree(PROTOCOL_DIR / "classnames", tmp_path / "classnames")
    original = (PROTOCOL_DIR / "cub-v1.yaml").read_text().replace("id: cub-v1", "id: cub-mine")
    mine = tmp_path / "mine.yaml"
    mine.write_text(original.replace("threshold_step: 0.001", f"threshold_step: {step}"))
    with pytest.raises(ProtocolError, match=r"threshold_step.*\[0\.0001, 1\)"):
        load_protocol(mine)
