"""Fuzzing the readers of user input: ``-o`` overrides, split metadata, result files, saved maps.

Each reader gets hundreds of mutated inputs from a seeded generator (reproducible, no extra
dependency; ``FUZZ_SEED=x FUZZ_CASES=5000 pytest tests/test_fuzz.py`` searches further). The
claim under test is the command line's contract: a bad input is a user error — one of the error
classes the CLI turns into a single ``error:`` line — never another exception (a traceback).
"""

import copy
import json
import os
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from wsolbench.cli.main import USER_ERRORS, main
from wsolbench.config import ConfigError, resolve_config
from wsolbench.counting import EvalSettings, evaluate_saved_maps
from wsolbench.data.metadata import MetadataError, SplitMetadata, read_split
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.leaderboard import compare
from wsolbench.metrics import summarize
from wsolbench.registry import get_method
from wsolbench.results.record import ResultError, load_result

FIXTURE = Path(__file__).parent / "fixtures" / "results" / "cub" / "cam" / "seed0" / "result.json"
TINY = SyntheticConfig(
    num_classes=3, image_size=32, train_per_class=2, val_per_class=2, test_per_class=2
)

VALUES = [
    "", "0", "-1", "1.5", "1e-3", "1e400", "nan", ".inf", "true", "maybe", "null", "~", "[]",
    "[1, 2]", "[a, 1]", "[[1]]", "{}", "{a: 1}", "{type: none}", "'quoted'", '"x"', "[", "{",
    "a: b", "é", "a=b", "-", "0x10", "1_000", "2026-01-01", "!!python/object:os.system ls",
]  # fmt: skip


def _keys(config: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys += _keys(value, dotted + ".")
    return keys


def _mutated_key(rng: random.Random, keys: list[str]) -> str:
    key = rng.choice(keys)
    roll = rng.random()
    if roll < 0.1:
        return key + "x"
    if roll < 0.15:
        return key.replace(".", "..", 1) if "." in key else "." + key
    if roll < 0.2:
        return key + ".deeper"
    return key


@pytest.mark.parametrize("name", ["center", "cam", "tedloc", "clip_patch", "clip_gradcam"])
def test_fuzzed_overrides_are_config_errors_or_typed_values(name):
    from wsolbench.train.config import check_train_config

    cls = get_method(name)
    keys = _keys(resolve_config(cls, "synthetic"))
    rng = random.Random(f"overrides/{name}/{os.environ.get('FUZZ_SEED', '')}")
    for _ in range(int(os.environ.get("FUZZ_CASES", 300))):
        overrides = [
            f"{_mutated_key(rng, keys)}={rng.choice(VALUES)}" for _ in range(rng.randint(1, 3))
        ]
        if rng.random() < 0.05:
            overrides.append(rng.choice(["novalue", "=1", "a.=1"]))
        try:
            config = resolve_config(cls, rng.choice(["synthetic", "cub", None]), overrides)
            if cls.capabilities.trainable:
                check_train_config(config["train"])
        except ConfigError:
            continue


def _mutate_text(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    choice = rng.randrange(9)
    if choice == 0 and lines:  # drop a line
        del lines[rng.randrange(len(lines))]
    elif choice == 1 and lines:  # duplicate a line
        lines.insert(rng.randrange(len(lines)), rng.choice(lines))
    elif choice == 2 and lines:  # a field replaced by junk
        i = rng.randrange(len(lines))
        fields = lines[i].split(",")
        fields[rng.randrange(len(fields))] = rng.choice(VALUES + ["-5", "99999999", " 3 ", "1.0"])
        lines[i] = ",".join(fields)
    elif choice == 3 and lines:  # a field added or removed
        i = rng.randrange(len(lines))
        lines[i] = lines[i] + ",7" if rng.random() < 0.5 else lines[i].rsplit(",", 1)[0]
    elif choice == 4:  # truncated mid-file
        return text[: rng.randrange(len(text) + 1)]
    elif choice == 5:
        return ""
    elif choice == 6 and lines:  # another separator
        i = rng.randrange(len(lines))
        lines[i] = lines[i].replace(",", rng.choice([";", " ", "\t", ",,"]))
    elif choice == 7 and lines:  # two ids swapped between lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    else:  # undecodable bytes appear as replacement text; and CRLF line ends
        return text.replace("\n", "\r\n") + "\udcff".encode("utf-8", "surrogatepass").decode(
            "utf-8", "replace"
        )
    return "\n".join(lines) + "\n"


def test_fuzzed_metadata_is_a_metadata_error_or_reads(tmp_path):
    root = generate(tmp_path / "tiny", TINY)
    original = root / "metadata" / "test"
    files = sorted(p.name for p in original.iterdir())
    rng = random.Random(f"metadata/{os.environ.get('FUZZ_SEED', '')}")
    for case in range(int(os.environ.get("FUZZ_CASES", 300))):
        split = tmp_path / "cases" / str(case)
        shutil.copytree(original, split)
        for _ in range(rng.randint(1, 3)):
            victim = split / rng.choice(files)
            if rng.random() < 0.05:
                victim.write_bytes(bytes(rng.randrange(256) for _ in range(64)))
            else:
                text = victim.read_text(encoding="utf-8", errors="replace")
                victim.write_text(_mutate_text(rng, text), encoding="utf-8")
        try:
            read_split(split, num_classes=TINY.num_classes)
        except MetadataError:
            pass
        shutil.rmtree(split)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list) and node:
        index = len(node) // 2
        yield from _paths(node[index], (*prefix, index))


JUNK = [None, -1, 0, 1.5, 1e308, "x", "", [], {}, True, [1, 2], {"a": 1}, [None] * 3, 10**12]


def _mutate_json(rng: random.Random, record: dict) -> dict:
    record = copy.deepcopy(record)
    path = rng.choice(list(_paths(record))[1:])
    parent = record
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and rng.random() < 0.3:
        del parent[path[-1]]
    elif isinstance(parent[path[-1]], list) and rng.random() < 0.3:
        parent[path[-1]] = parent[path[-1]][: rng.randrange(len(parent[path[-1]]) + 1)]
    else:
        parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))
    return record


def test_fuzzed_result_files_are_result_errors_or_compare(tmp_path):
    valid = json.loads(FIXTURE.read_text())
    rng = random.Random(f"results/{os.environ.get('FUZZ_SEED', '')}")
    path = tmp_path / "run" / "result.json"
    path.parent.mkdir()
    for _ in range(int(os.environ.get("FUZZ_CASES", 300))):
        if rng.random() < 0.1:
            text = FIXTURE.read_text()[: rng.randrange(len(FIXTURE.read_text()))]
        else:
            text = json.dumps(_mutate_json(rng, valid))
        path.write_text(text)
        try:
            load_result(path)
        except ResultError:
            continue
        for policy in ("oracle", "select", "fixed:0.5"):
            try:
                compare([path.parent], policy=policy, published=False)
            except (ResultError, ValueError):
                pass


def test_fuzzed_command_lines_exit_0_or_2(tmp_path, capsys):
    root = generate(tmp_path / "tiny", TINY)
    base = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", str(root)]
    base += ["--protocol", str(root / "protocol.yaml")]
    rng = random.Random("cli")
    options = [
        ["-o", f"sigma={rng.choice(VALUES)}"],
        ["--seed", rng.choice(["-1", "x", "1.5", "3"])],
        ["--device", rng.choice(["gpu", "cuda:9", "cpu", "tpu"])],
        ["--batch-size", rng.choice(["0", "-3", "2", "many"])],
        ["--protocol", rng.choice(["cub-v1", "nope", str(tmp_path / "missing.yaml")])],
        ["--launcher", "pytorch"],
    ]
    for case in range(12):
        argv = [*base, "--work-dir", str(tmp_path / "w" / str(case)), *rng.choice(options)]
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse: one error line, exit 2
            status = exc.code
        assert status in (0, 2), argv
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert status == 0 or err.strip().splitlines()[-1].startswith("error: ")
    assert issubclass(ConfigError, USER_ERRORS) and issubclass(MetadataError, USER_ERRORS)


MAP_DTYPES = [
    bool, np.int8, np.uint8, np.int64, np.uint64, np.float16, np.float32, np.float64,
    np.complex64, [("score", "f4"), ("n", "i2")], "U3", "datetime64[s]",
]  # fmt: skip


def _write_fuzzed_map(rng: random.Random, path: Path, side: int) -> tuple[str, bool]:
    """Write something a user might save as a map at ``path``: an array of any shape, dtype and
    values (NaN / inf at random places), or a file that is not an array at all.

    Returns:
        (what was written, whether it is a numeric array holding NaN or inf).
    """
    gen = np.random.default_rng(rng.getrandbits(64))
    roll = rng.random()
    if roll < 0.1:  # not a .npy array
        kind = rng.choice(["text", "bytes", "npz", "pickle", "truncated"])
        if kind == "text":
            path.write_text("0.1, 0.2\n0.3, 0.4\n")
        elif kind == "bytes":
            path.write_bytes(gen.bytes(rng.randrange(100)))
        elif kind == "npz":
            with open(path, "wb") as f:
                np.savez(f, gen.random((side, side)))
        elif kind == "pickle":
            np.save(path, np.array([{"map": 1}, None], dtype=object), allow_pickle=True)
        else:
            np.save(path, gen.random((side, side)))
            path.write_bytes(path.read_bytes()[: rng.randrange(200)])
        return kind, False
    shape = rng.choice(
        [(side, side), (side, side), (7, 9), (1, side, side), (side, side, 1), (2, 5, 5), (5,),
         (), (0,), (0, side), (side, 0), (1, 1), (1, 40), (3, 4, 5, 6), (300, 2)]
    )  # fmt: skip
    values = np.array(gen.random(shape) * rng.choice([1.0, 1e-300, 1e30, 1e308, -1e308]))
    if rng.random() < 0.2:
        values[...] = rng.choice([0.0, 1.0, 0.5])
    if values.size and rng.random() < 0.4:
        flat = values.reshape(-1)
        flat[gen.integers(0, flat.size, rng.randint(1, 3))] = rng.choice([np.nan, np.inf, -np.inf])
    dtype = np.dtype(rng.choice(MAP_DTYPES))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casting NaN or 1e308 to an int says so
        array = values.astype(dtype) if dtype.fields is None else np.zeros(shape, dtype)
    np.save(path, array)
    non_finite = dtype.kind in "fc" and not np.isfinite(array).all()
    return f"{dtype} {shape}", non_finite


def test_fuzzed_saved_maps_are_scored_or_user_errors(tmp_path):
    root = generate(tmp_path / "tiny", TINY)
    full = read_split(root / "metadata" / "test")
    first = full.image_ids[0]
    meta = SplitMetadata(full.split_dir, [first], full.labels, full.sizes, full.boxes, full.masks)
    side = TINY.image_size
    settings = EvalSettings((side, side), 0.01, (30, 50, 70), boxes=True, masks=True)
    path = tmp_path / "maps" / f"{first}.npy"
    path.parent.mkdir(parents=True)
    rng = random.Random(f"maps/{os.environ.get('FUZZ_SEED', '')}")
    for _ in range(int(os.environ.get("FUZZ_CASES", 300))):
        what, non_finite = _write_fuzzed_map(rng, path, side)
        try:
            counts = evaluate_saved_maps(
                tmp_path / "maps",
                meta,
                settings,
                mask_root=root / "masks",
                normalize=rng.random() < 0.5,
                progress=False,
            )
        except USER_ERRORS as exc:
            assert str(path) in str(exc) and "\n" not in str(exc), (what, exc)
            continue
        assert not non_finite, f"a map holding NaN or inf was scored: {what}"
        summarize(counts, "oracle")
