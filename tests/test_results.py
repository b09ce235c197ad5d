"""Result schema: atomic save, load errors, round trip, discovery, metrics from counts."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from wsolbench.metrics.policies import metrics_from_counts
from wsolbench.results.environment import code_label, environment, plugin_release
from wsolbench.results.grouping import row_key
from wsolbench.results.record import (
    SCHEMA_VERSION,
    Result,
    ResultError,
    find_results,
    load_result,
    save_result,
)

FIXTURES = Path(__file__).parent / "fixtures" / "results"


def _counts(n: int = 4, multi50=(1, 3, 2, 0), classifies: bool = True) -> dict:
    """A 4-threshold (step 0.25) counts record; IoU30 / IoU70 curves derived from IoU50's."""
    multi50 = list(multi50)
    multi = {"30": [min(n, c + 1) for c in multi50], "50": multi50, "70": [c // 2 for c in multi50]}
    record = {
        "n_images": n,
        "step": 0.25,
        "iou_thresholds": [30, 50, 70],
        "box": {"multi": multi, "largest": {k: list(v) for k, v in multi.items()}},
    }
    if classifies:
        record["box"]["top1_loc"] = [max(0, c - 1) for c in multi50]
        record["box"]["top5_loc"] = list(multi50)
        record["cls"] = {"n": n, "top1": 2, "top5": 3}
    return record


def _result(**changes) -> Result:
    fields = dict(
        method="cam",
        dataset="cub",
        protocol="cub-v1",
        protocol_hash="ab" * 32,
        data_fingerprint={"sha256": "cd" * 32, "version": 1, "splits": {}},
        seed=0,
        config={"backbone": "resnet50", "train": {"lr": 0.01}},
        pretrained="resnet50.pth",
        metrics={"test": {"oracle": {"maxboxacc_v2": 50.0}}},
        counts={"test": _counts()},
        cost={"params": 25_000_000},
        env={"python": "3.11"},
        created="2026-01-01T00:00:00Z",
    )
    fields.update(changes)
    return Result(**fields)


# --- save / load ---------------------------------------------------------------------------------


def test_round_trip(tmp_path):
    result = _result()
    path = tmp_path / "run" / "result.json"
    save_result(path, result)
    assert load_result(path) == result
    on_disk = json.loads(path.read_text())
    assert on_disk["schema"] == SCHEMA_VERSION
    assert list(on_disk)[0] == "schema"
    assert Result.from_dict(result.to_dict()) == result


def test_save_converts_numpy_values(tmp_path):
    np = pytest.importorskip("numpy")
    counts = _counts()
    counts["box"]["multi"]["50"] = np.array([1, 3, 2, 0])
    counts["n_images"] = np.int64(4)
    save_result(tmp_path / "result.json", _result(counts={"test": counts}))
    loaded = load_result(tmp_path / "result.json")
    assert loaded.counts["test"]["box"]["multi"]["50"] == [1, 3, 2, 0]
    assert loaded.counts["test"]["n_images"] == 4


def test_save_is_atomic_and_leaves_no_temp(tmp_path):
    path = tmp_path / "result.json"
    save_result(path, _result(seed=1))
    save_result(path, _result(seed=2))
    assert load_result(path).seed == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    save_result(path, _result(seed=1))
    before = path.read_bytes()

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)  # fails after the new text was written to the temp file
    with pytest.raises(OSError, match="disk full"):
        save_result(path, _result(seed=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_unserializable_value_fails_before_touching_disk(tmp_path):
    path = tmp_path / "result.json"
    save_result(path, _result(seed=1))
    before = path.read_bytes()
    with pytest.raises(ResultError, match=r"result\.json: cannot write result"):
        save_result(path, _result(metrics={"test": {"oracle": {"pxap": float("nan")}}}))
    with pytest.raises(ResultError, match="cannot write result"):
        save_result(path, _result(config={"model": object()}))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_bad_json_names_file_line_and_column(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{\n  "schema": 1,\n  "method": \n}\n')
    with pytest.raises(ResultError) as info:
        load_result(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 4 column 1" in message
    assert "not valid JSON" in message


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "result.json"
    save_result(path, _result())
    path.write_text(path.read_text()[:50])
    with pytest.raises(ResultError, match="not valid JSON"):
        load_result(path)


def _write(path: Path, d: dict) -> Path:
    path.write_text(json.dumps(d))
    return path


def test_missing_schema(tmp_path):
    d = _result().to_dict()
    del d["schema"]
    path = _write(tmp_path / "r.json", d)
    with pytest.raises(ResultError, match=r"r\.json: no 'schema' key"):
        load_result(path)


def test_newer_schema_says_upgrade(tmp_path):
    path = _write(tmp_path / "r.json", {**_result().to_dict(), "schema": SCHEMA_VERSION + 1})
    with pytest.raises(ResultError) as info:
        load_result(path)
    assert str(path) in str(info.value)
    assert "newer" in str(info.value) and "upgrade wsolbench" in str(info.value)


def test_older_schema_says_reevaluate(tmp_path):
    path = _write(tmp_path / "r.json", {**_result().to_dict(), "schema": 0})
    with pytest.raises(ResultError) as info:
        load_result(path)
    assert "older" in str(info.value) and "re-evaluate" in str(info.value)
    assert str(path) in str(info.value)


def test_schema_1_reads_with_an_unknown_data_fingerprint(tmp_path):
    old = _result().to_dict()
    del old["data_fingerprint"]
    result = load_result(_write(tmp_path / "r.json", {**old, "schema": 1}))
    assert result.data_fingerprint is None and result.data_sha256 is None
    assert "data_fingerprint" not in result.to_dict()  # rewritten as it was read


def test_schema_2_needs_its_data_fingerprint(tmp_path):
    d = _result().to_dict()
    del d["data_fingerprint"]
    with pytest.raises(ResultError, match="needs 'data_fingerprint'"):
        load_result(_write(tmp_path / "r.json", d))
    with pytest.raises(ResultError, match="without its data_fingerprint"):
        save_result(tmp_path / "w.json", _result(data_fingerprint=None))
    assert not (tmp_path / "w.json").exists()


def test_missing_keys_are_named(tmp_path):
    d = _result().to_dict()
    del d["counts"], d["protocol_hash"]
    path = _write(tmp_path / "r.json", d)
    with pytest.raises(ResultError) as info:
        load_result(path)
    message = str(info.value)
    assert str(path) in message
    assert "missing key(s) protocol_hash, counts" in message


def test_wrong_type_is_named(tmp_path):
    path = _write(tmp_path / "r.json", {**_result().to_dict(), "seed": "zero"})
    with pytest.raises(ResultError, match=r"r\.json: key 'seed' must be an integer"):
        load_result(path)
    path = _write(tmp_path / "r.json", {**_result().to_dict(), "seed": True})
    with pytest.raises(ResultError, match="'seed' must be an integer"):
        load_result(path)


def test_the_method_reference_is_recorded_and_older_records_read_without_it(tmp_path):
    """What the method computes relative to its namesake paper (Capabilities.reference): kept as
    written; a record made before the key, or by a plugin declaring none, has the empty text."""
    text = "reconstructed from TeD-Loc's paper (arXiv 2501.12632); no public code to check it"
    save_result(tmp_path / "result.json", _result(method_reference=text))
    assert load_result(tmp_path / "result.json").method_reference == text
    older = _result().to_dict()
    del older["method_reference"]
    assert Result.from_dict(older).method_reference == ""
    path = _write(tmp_path / "r.json", {**older, "method_reference": ["CAM"]})
    with pytest.raises(ResultError, match="key 'method_reference' must be a string"):
        load_result(path)


def test_not_an_object(tmp_path):
    path = _write(tmp_path / "r.json", [1, 2])
    with pytest.raises(ResultError, match="must be a JSON object"):
        load_result(path)


def test_unknown_keys_are_ignored_with_a_warning(tmp_path, caplog):
    path = _write(tmp_path / "r.json", {**_result().to_dict(), "extra": 1})
    with caplog.at_level(logging.WARNING, logger="wsolbench.results.record"):
        assert load_result(path) == _result()
    assert "extra" in caplog.text


def test_missing_file(tmp_path):
    with pytest.raises(ResultError, match="no such result file"):
        load_result(tmp_path / "nope.json")


# --- find_results --------------------------------------------------------------------------------


def test_find_results_recurses_nested_folders(tmp_path):
    save_result(tmp_path / "a" / "result.json", _result(seed=0))
    save_result(tmp_path / "b" / "deep" / "er" / "result.json", _result(seed=1))
    (tmp_path / "b" / "notes.json").write_text("{}")  # not a result.json: ignored
    extra = tmp_path / "elsewhere.json"
    save_result(extra, _result(seed=7))

    found = find_results([tmp_path / "a", tmp_path / "b", extra])
    assert [r.seed for _, r in found] == [0, 1, 7]
    assert found[1][0] == tmp_path / "b" / "deep" / "er" / "result.json"


def test_find_results_loads_each_file_once(tmp_path):
    save_result(tmp_path / "a" / "result.json", _result())
    found = find_results([tmp_path, tmp_path / "a", tmp_path / "a" / "result.json"])
    assert len(found) == 1


def test_find_results_on_fixture_tree():
    found = find_results([FIXTURES / "cub"])
    assert len(found) == 11
    assert {r.method for _, r in found} == {"cam", "tedloc", "clip_patch", "center"}


def test_find_results_errors_name_the_path(tmp_path):
    with pytest.raises(ResultError, match=r"missing: no such file or folder"):
        find_results([tmp_path / "missing"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ResultError, match=r"empty: no result\.json found"):
        find_results([tmp_path / "empty"])
    with pytest.raises(ResultError, match="no result path given"):
        find_results([])


def test_find_results_propagates_a_bad_file(tmp_path):
    bad = tmp_path / "run" / "result.json"
    bad.parent.mkdir()
    bad.write_text("{oops")
    with pytest.raises(ResultError, match=r"run/result\.json: not valid JSON"):
        find_results([tmp_path])


# --- environment ---------------------------------------------------------------------------------


def test_environment_is_json_and_names_versions():
    import wsolbench

    env = environment()
    json.dumps(env)
    assert env["wsolbench"] == wsolbench.__version__
    assert env["python"].count(".") == 2
    assert env["cpu_count"] >= 1
    assert "numpy" in env


def _plugin_code(version: str, commit: str = "1" * 40, dirty: bool = False) -> dict:
    """``env["code"]`` of a run of the example plugin ``has`` (wsolbench-has ``version``)."""
    ours = {"commit": "2" * 40, "dirty": False, "distribution": "wsolbench", "version": "0.1.0"}
    theirs = {"commit": commit, "dirty": dirty, "distribution": "wsolbench-has"}
    return {"wsolbench": ours, "wsolbench_has": {**theirs, "version": version}}


def test_a_plugin_s_other_version_is_another_row_and_its_edits_are_not():
    """Another release of a plugin may compute something else under the same method name: its
    runs are not seeds of the other release's row. A developer's edits (same version, another
    commit) stay one row (the leaderboard notes the code), and so do records without any code
    and the built-in methods, whose package is wsolbench's own."""

    def key(code: dict | None, seed: int = 0):
        env = {"python": "3.11"} | ({"code": code} if code is not None else {})
        return row_key(_result(method="has", seed=seed, env=env))

    assert key(_plugin_code("0.1.0")) != key(_plugin_code("0.2.0"))
    assert key(_plugin_code("0.1.0")) == key(_plugin_code("0.1.0", "3" * 40, True), seed=1)
    assert key(None) == key(None, seed=1)
    ours = _plugin_code("0.1.0")["wsolbench"]
    built_in = {"wsolbench": ours, "methods": {**ours, "version": "0.2.0"}}
    assert key(None) == key(built_in)
    assert plugin_release(_plugin_code("0.2.0")) == "wsolbench-has 0.2.0"
    assert plugin_release(built_in) == plugin_release(None) == ""
    # run from a checkout, not installed: no distribution names the built-in methods' package
    checkout = {"wsolbench": {"files_sha256": "4" * 64}, "methods": {"files_sha256": "4" * 64}}
    assert code_label(checkout) == "files 444444444444"  # no "+ methods ...": not a plugin


# --- metrics_from_counts -------------------------------------------------------------------------


def test_metrics_from_counts_with_val():
    counts = {"val": _counts(multi50=(3, 1, 0, 0)), "test": _counts(multi50=(1, 3, 2, 0))}
    metrics = metrics_from_counts(counts)
    assert set(metrics) == {"val", "test"}
    assert set(metrics["test"]) == {"oracle", "select"}
    test = metrics["test"]
    # oracle: best threshold on test (index 1: 3 of 4 images at IoU 50).
    assert test["oracle"]["maxboxacc"] == pytest.approx(75.0)
    assert test["oracle"]["gt_known_loc"] == pytest.approx(75.0)
    # select: val's best GT-known threshold is index 0, where test has 1 of 4.
    assert test["select"]["gt_known_loc"] == pytest.approx(25.0)
    assert test["select"]["maxboxacc_v2"] < test["oracle"]["maxboxacc_v2"]
    assert test["oracle"]["top1_cls"] == pytest.approx(50.0)
    assert "pxap" not in test["oracle"]  # no masks: absent, not 0


def test_metrics_from_counts_without_val_drops_select(caplog):
    with caplog.at_level(logging.WARNING, logger="wsolbench.metrics.policies"):
        metrics = metrics_from_counts({"test": _counts(classifies=False)})
    assert set(metrics["test"]) == {"oracle"}
    assert "select" in caplog.text and "no val split" in caplog.text
    oracle = metrics["test"]["oracle"]
    assert "top1_loc" not in oracle and "top1_cls" not in oracle
    # MaxBoxAccV2 = mean of the best IoU30 (4/4), IoU50 (3/4) and IoU70 (1/4) rates.
    assert oracle["maxboxacc_v2"] == pytest.approx((100 + 75 + 25) / 3)


def test_metrics_from_counts_fixed_policy():
    metrics = metrics_from_counts({"test": _counts(multi50=(1, 3, 2, 0))}, policies=["fixed:0"])
    assert metrics["test"]["fixed:0.0"]["maxboxacc_iou50"] == pytest.approx(25.0)


def test_a_plugins_code_is_compared_like_wsolbenchs():
    """A rerun with the method's plugin edited (its files digest) or upgraded (its version)
    names that difference, before the libraries; equal code names none."""
    from wsolbench.results.environment import env_changes

    plugin = {"files_sha256": "a" * 64, "distribution": "wsolbench-gapmax", "version": "0.2.0"}
    recorded = {"code": {"wsolbench": {"commit": "c" * 40, "dirty": False}, "maxcam": plugin}}
    assert env_changes(recorded, recorded) == []
    edited = {"code": {**recorded["code"], "maxcam": {**plugin, "files_sha256": "b" * 64}}}
    edited["torch"] = "9.9"
    changes = env_changes(recorded, edited)
    assert changes[0] == f"code.maxcam.files_sha256: {'a' * 64!r} recorded, {'b' * 64!r} here"
    assert changes[1].startswith("torch:")
    upgraded = {"code": {**recorded["code"], "maxcam": {**plugin, "version": "0.3.0"}}}
    assert env_changes(recorded, upgraded) == [
        "code.maxcam.version: '0.2.0' recorded, '0.3.0' here"
    ]
