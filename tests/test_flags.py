"""Every flag is checked before work starts (issue 20): a user mistake is one ``error:`` line
naming the flag, the file or the value, and the fix; exit status 2; nothing written.

Covers the range of counts and seeds, flags that conflict or mean nothing without another,
protocol ids (they name the runs' folder), method names, the kind of an output path, raw OS
errors, and a ``|`` inside a markdown leaderboard cell.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wsolbench.cli.main import build_parser, main
from wsolbench.data.synthetic import SyntheticConfig, generate
from wsolbench.leaderboard import compare
from wsolbench.leaderboard.columns import Column, markdown_table
from wsolbench.protocol import ProtocolError, list_protocols, load_protocol

TINY = SyntheticConfig(
    num_classes=3, image_size=48, train_per_class=2, val_per_class=3, test_per_class=4
)
BOARD = Path(__file__).resolve().parents[1] / "reports" / "results" / "synthetic-v1"
RESULT = BOARD / "center" / "seed0" / "result.json"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", TINY)


def _status(argv) -> int:
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors (_Parser.error)
        return exc.code


def refused(capsys, *argv) -> str:
    """Run the command line; it must exit 2 with exactly one ``error:`` line on stderr (no
    progress line first: nothing started), which is returned."""
    status = _status(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert status == 2, (status, captured.out, captured.err)
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def _run_or_eval(command: str, root: Path, work: Path) -> list:
    """``run`` or ``eval`` of center on the tiny set (eval of a weights file that is not there:
    a flag's check must come before the file is looked at)."""
    argv = [command, "--method", "center", "--dataset", "synthetic", "--data-root", root]
    argv += ["--protocol", root / "protocol.yaml", "--work-dir", work]
    return argv + (["--weights", work.parent / "weights.pt"] if command == "eval" else [])


# --- counts and seeds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--batch-size", "0"),
        ("--batch-size", "-3"),
        ("--batch-size", "100000"),
        ("--num-workers", "-1"),
        ("--num-workers", "1000"),
    ],
)
@pytest.mark.parametrize("command", ["run", "eval"])
def test_loader_flags_are_checked_before_the_work_dir(
    tiny_root, tmp_path, capsys, command, flag, value
):
    work = tmp_path / "work"
    line = refused(capsys, *_run_or_eval(command, tiny_root, work), flag, value)
    assert flag in line and value in line
    assert not work.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["profile", "--method", "center", "--dataset", "synthetic", "--no-timing"],
        ["check", "center"],
    ],
)
def test_every_command_with_a_batch_size_checks_it(capsys, argv):
    line = refused(capsys, *argv, "--batch-size", "0")
    assert "--batch-size" in line and "1 to " in line


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--num-classes", "0"], "--num-classes"),  # was a ZeroDivisionError traceback
        (["--num-classes", "-3"], "--num-classes"),  # passed
        (["--image-size", "100000"], "--image-size"),  # an allocation traceback
        (["--image-size", "0"], "--image-size"),  # FAIL lines, exit 1
        (["--dataset", "synthtic"], "did you mean 'synthetic'"),  # checked the defaults, exit 0
        (["-o", "foo=1"], "foo"),  # FAIL builds ConfigError, exit 1
        (["-o", "sigma=abc"], "sigma"),
    ],
)
def test_check_refuses_a_mistaken_option_in_one_line(capsys, extra, named):
    assert named in refused(capsys, "check", "center", *extra)


def test_a_folder_given_for_a_file_and_a_file_for_a_folder_are_named_so(
    tiny_root, tmp_path, capsys
):
    """Both said "does not exist" of a path that exists."""
    argv = ["eval", "--method", "center", "--dataset", "synthetic", "--data-root", tiny_root]
    argv += ["--protocol", tiny_root / "protocol.yaml", "--weights", tmp_path]
    line = refused(capsys, *argv)
    assert f"--weights {tmp_path} is a folder" in line and str(tmp_path / "weights.pt") in line
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", RESULT]
    line = refused(capsys, *argv, "--work-dir", tmp_path / "w")
    assert f"--data-root {RESULT} is a file" in line


@pytest.mark.parametrize("b", [BOARD / "center", BOARD / "center" / "seed0" / "result.json"])
def test_diff_refuses_a_run_on_both_sides(capsys, b):
    """A difference of a run with itself is zero by construction: its interval and p-value
    (0.00, p 0.91) answered no question."""
    line = refused(capsys, "diff", BOARD / "center", b, "--resamples", "100")
    assert "on both sides" in line and "seed0" in line


def test_evaluate_maps_refuses_a_step_too_fine_to_hold(tmp_path, capsys):
    """--step 1e-9 was killed for memory after 46 s, with nothing said."""
    line = refused(capsys, "evaluate-maps", "--maps", tmp_path, "--metadata", tmp_path,
                   "--step", "1e-9")  # fmt: skip
    assert "--step 1e-09: use a step in [0.0001, 1)" in line


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--method", "center", "--dataset", "synthetic", "--protocol", "BAD"],
        ["sweep", "BAD", "--dry-run"],
        ["compare", RESULT.parent, "--published", "BAD"],
    ],
)
def test_a_yaml_syntax_error_is_one_line_with_its_place(tmp_path, capsys, argv):
    """PyYAML's message is several lines (a snippet and a caret): 4 to 8 lines in all."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\n  bad: [\n")
    line = refused(capsys, *[bad if a == "BAD" else a for a in argv])
    assert str(bad) in line and "line 2, column 6: mapping values are not allowed here" in line


def test_a_published_row_of_a_misspelt_dataset_is_refused(tmp_path, capsys):
    """It was dropped from every table, with nothing said."""
    rows = tmp_path / "published.yaml"
    rows.write_text(
        "rows:\n  - {method: cam, dataset: synthtic, source: a paper, "
        "metrics: {maxboxacc_v2: 50.0}}\n"
    )
    line = refused(capsys, "compare", RESULT.parent, "--published", rows)
    assert "rows[0]" in line and "unknown dataset 'synthtic'" in line and "synthetic" in line


@pytest.mark.parametrize(
    "argv, named",
    [
        (["profile", "--method", "center", "--dataset", "synthetic", "--no-timing", "--runs", "5"],
         "--runs times calls; --no-timing times none"),
        (["profile", "--method", "center", "--dataset", "synthetic", "--no-timing",
          "--amp", "float16"], "--amp times calls; --no-timing times none"),
        (["compare", RESULT.parent, "--published", RESULT, "--no-published"],
         "--published and --no-published"),
        (["prepare", "synthetic", "--out", "OUT", "--annotations", "x"],
         "--annotations is for prepare ilsvrc, not prepare synthetic"),
        (["prepare", "cub", "--src", "x", "--out", "OUT", "--images", "x"],
         "--images is for prepare wsol-splits, not prepare cub"),
        (["visualize", RESULT.parent, "--curves-only", "--n", "5"],
         "--n takes effect only without --curves-only"),
    ],
)  # fmt: skip
def test_flags_that_would_be_ignored_are_refused(tmp_path, capsys, argv, named):
    """Each was accepted, one side quietly ignored; ``run`` and ``eval`` already refused such
    pairs."""
    argv = [tmp_path / "out" if a == "OUT" else a for a in argv]
    assert named in refused(capsys, *argv)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, named",
    [
        (["fingerprint", "--dataset", "synthtic"], "did you mean 'synthetic'"),
        (["profile", "--method", "center", "--dataset", "synthtic"], "did you mean 'synthetic'"),
        (["run", "--method", "cam", "--dataset", "synthetic", "-o", "train.optimizer.lr=-0.1",
          "--work-dir", "OUT"], "Invalid learning rate: -0.1; fix that value"),
    ],
)  # fmt: skip
def test_a_mistake_is_named_with_its_fix(tmp_path, capsys, argv, named):
    assert named in refused(capsys, *[tmp_path / "out" if a == "OUT" else a for a in argv])
    assert not (tmp_path / "out").exists()


def test_check_reports_a_plugin_s_own_preset_and_its_broken_config(capsys, monkeypatch):
    """A plugin's preset need not be a data source's name; a broken preset is the plugin's to fix
    (failed checks, exit 1), not a traceback, with or without -o."""
    from wsolbench.method import MethodConfig
    from wsolbench.registry import get_method

    center = get_method("center")
    own = MethodConfig(center.config.defaults, {"voc": {"sigma": 0.3}})
    monkeypatch.setattr(center, "config", own)
    assert _status(["check", "center", "--dataset", "voc"]) == 0
    assert "preset voc" in capsys.readouterr().out
    broken = MethodConfig(center.config.defaults, {"synthetic": ["oops"]})
    monkeypatch.setattr(center, "config", broken)
    for extra in ([], ["-o", "sigma=0.3"]):
        assert _status(["check", "center", *extra]) == 1
        captured = capsys.readouterr()
        assert "FAIL  config" in captured.out and "Traceback" not in captured.err


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seeds_are_checked_before_anything_is_written(tiny_root, tmp_path, capsys, seed):
    work = tmp_path / "work"
    line = refused(capsys, *_run_or_eval("run", tiny_root, work), "--seed", seed)
    assert "--seed" in line and seed in line and str(2**32 - 1) in line
    assert not work.exists()
    out = tmp_path / "prepared"
    line = refused(capsys, "prepare", "synthetic", "--out", out, "--seed", seed)
    assert "--seed" in line and not out.exists()
    line = refused(capsys, "compare", BOARD, "--no-published", "--ci", "--ci-seed", seed)
    assert "--ci-seed" in line


@pytest.mark.parametrize(
    "argv, dest",
    [
        (["run", "--method", "center", "--dataset", "synthetic", "--seed"], "seed"),
        (["prepare", "synthetic", "--seed"], "seed"),
        (["compare", "x", "--ci", "--ci-seed"], "ci_seed"),
    ],
)
def test_the_largest_seed_is_taken(argv, dest):
    assert getattr(build_parser().parse_args([*argv, str(2**32 - 1)]), dest) == 2**32 - 1


# --- flags that conflict, or mean nothing without another ----------------------------------------


def test_curves_only_and_no_curves_conflict(tmp_path, capsys):
    out = tmp_path / "figures"
    line = refused(capsys, "visualize", RESULT, "--curves-only", "--no-curves", "--output", out)
    assert "--curves-only" in line and "--no-curves" in line and not out.exists()


@pytest.mark.parametrize("option", [["--resamples", "500"], ["--ci-seed", "3"]])
def test_resampling_options_need_ci(capsys, option):
    line = refused(capsys, "compare", BOARD, "--no-published", *option)
    assert option[0] in line and "--ci" in line.replace(option[0], "")


def test_resamples_are_bounded(capsys):
    line = refused(capsys, "compare", BOARD, "--no-published", "--ci", "--resamples", "1000000000")
    assert "--resamples" in line and "100000" in line
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "100000" in capsys.readouterr().out


@pytest.mark.parametrize(
    "option",
    [
        ["--profile-runs", "60"],
        ["--profile-warmup", "20"],
        ["--profile-throughput-runs", "3"],
        ["--profile-threads", "1"],
        ["--profile-amp", "float16"],
    ],
)
@pytest.mark.parametrize("command", ["run", "eval"])
def test_profile_options_need_profile(tiny_root, tmp_path, capsys, command, option):
    work = tmp_path / "work"
    line = refused(capsys, *_run_or_eval(command, tiny_root, work), *option)
    assert option[0] in line and re.search(r"--profile\b(?!-)", line)
    assert not work.exists()


# --- protocol ids ---------------------------------------------------------------------------------


def _protocol_with_id(root: Path, folder: Path, protocol_id: str) -> Path:
    content = yaml.safe_load((root / "protocol.yaml").read_text())
    content["id"] = protocol_id
    content["classnames"] = str(root / content["classnames"])
    path = folder / "protocol.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "protocol_id", ["../../../escaped", "/tmp/absolute", "..", ".", "a/b", "-v1", "a b", "a\\b"]
)
def test_protocol_ids_are_plain_names(tiny_root, tmp_path, protocol_id):
    path = _protocol_with_id(tiny_root, tmp_path, protocol_id)
    with pytest.raises(ProtocolError) as refusal:
        load_protocol(path)
    message = str(refusal.value)
    assert str(path) in message and repr(protocol_id) in message and "letters, digits" in message


def test_a_protocol_id_never_sends_the_work_dir_outside_work_dirs(
    tiny_root, tmp_path, capsys, monkeypatch
):
    here = tmp_path / "a" / "b" / "c"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)  # work_dirs/../../../escaped is tmp_path/a/escaped
    path = _protocol_with_id(tiny_root, tmp_path, "../../../escaped")
    argv = ["run", "--method", "center", "--dataset", "synthetic", "--data-root", tiny_root]
    line = refused(capsys, *argv, "--protocol", path)
    assert "'../../../escaped'" in line
    assert not (tmp_path / "a" / "escaped").exists() and not (here / "work_dirs").exists()


def test_shipped_and_generated_protocols_have_plain_ids(tiny_root):
    for protocol_id in list_protocols():
        assert load_protocol(protocol_id).id == protocol_id
    assert load_protocol(tiny_root / "protocol.yaml").id == f"synthetic-custom-{TINY.digest()[:8]}"


# --- method names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cma", "did you mean 'cam'?"),
        ("../../etc/passwd", "pkg.module:Class"),
        ("os.path", "pkg.module:Class"),
        ("a b:c", "pkg.module:Class"),
        ("os:", "pkg.module:Class"),
    ],
)
def test_check_of_a_name_that_finds_no_method(capsys, name, expected):
    line = refused(capsys, "check", name)
    assert repr(name) in line and expected in line


# --- output paths ---------------------------------------------------------------------------------


def test_an_output_file_that_is_a_folder(tmp_path, capsys):
    line = refused(capsys, "compare", BOARD, "--no-published", "--output", tmp_path)
    assert f"--output {tmp_path}" in line and "folder" in line and "file" in line
    argv = ["profile", "--method", "center", "--dataset", "synthetic", "--no-timing"]
    line = refused(capsys, *argv, "--json", tmp_path)
    assert f"--json {tmp_path}" in line and "folder" in line


def test_an_output_folder_that_is_a_file(tmp_path, capsys):
    taken = tmp_path / "figures"
    taken.write_text("mine")
    line = refused(capsys, "visualize", RESULT, "--output", taken)
    assert f"--output {taken}" in line and "folder" in line
    assert taken.read_text() == "mine"


def test_an_output_extension_contradicting_format_is_refused(tmp_path, capsys):
    board = tmp_path / "board.csv"
    line = refused(capsys, "compare", BOARD, "--no-published", "--format", "md", "--output", board)
    assert "--output board.csv" in line and "--format md" in line and "--format csv" in line
    assert not board.exists()


@pytest.mark.parametrize("name, start", [("board.csv", "method,"), ("board.tex", "% requires")])
def test_an_output_extension_picks_the_format_when_format_is_not_given(tmp_path, name, start):
    board = tmp_path / name
    assert main(["compare", str(BOARD), "--no-published", "--output", str(board)]) == 0
    assert board.read_text().lstrip().lower().startswith(start), board.read_text()[:80]


# --- path values -----------------------------------------------------------------------------


RUN = ["run", "--method", "center", "--dataset", "synthetic"]


@pytest.mark.parametrize("flag", ["--work-dir", "--protocol", "--data-root"])
def test_an_empty_path_is_refused_naming_the_option(capsys, flag):
    # e.g. --work-dir "$OUT" with OUT unset: not the default folder the user did not ask for
    line = refused(capsys, *RUN, flag, "")
    assert f"argument {flag}" in line and "empty" in line


def test_an_empty_positional_path_is_refused(capsys):
    line = refused(capsys, "compare", "", "--no-published")
    assert "paths" in line and "empty" in line


def test_a_tilde_in_a_path_is_the_home_folder(monkeypatch, tmp_path):
    from wsolbench.sweep.grid import build_grid

    monkeypatch.setenv("HOME", str(tmp_path))
    args = build_parser().parse_args([*RUN, "--work-dir", "~/x", "--data-root", "~/data"])
    assert (args.work_dir, args.data_root) == (str(tmp_path / "x"), str(tmp_path / "data"))
    args = build_parser().parse_args(["compare", "~/runs", "--output", "~/board.md"])
    assert (args.paths, args.output) == ([tmp_path / "runs"], tmp_path / "board.md")
    grid = build_grid({"methods": ["cam"], "datasets": ["synthetic"], "root": "~/sweeps/abl"})
    assert grid.root_dir == tmp_path / "sweeps" / "abl"


# --- raw OS errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raised, expected",
    [
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/work/config.yaml"),
            ["/ro/work/config.yaml", "Permission denied", "writable folder"],
        ),
        (PermissionError(errno.EPERM, "Operation not permitted", "/x"), ["/x", "permissions"]),
        (OSError(errno.EROFS, "Read-only file system", "/ro/x"), ["/ro/x", "writable"]),
        (OSError(errno.ENOSPC, "No space left on device", "/full/x"), ["/full/x", "free"]),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/q/x"), ["/q/x", "quota"]),
        (OSError(errno.EFBIG, "File too large"), ["File too large", "ulimit -f"]),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/nope/x"),
            ["/nope/x", "No such file or directory", "check the path"],
        ),
        (
            OSError(errno.EXDEV, "Invalid cross-device link", "/a/x", None, "/b/y"),
            ["/a/x", "/b/y", "Invalid cross-device link"],
        ),
    ],
)
def test_raw_os_errors_name_the_file_the_reason_and_a_fix(monkeypatch, capsys, raised, expected):
    def handler(args):
        raise raised

    monkeypatch.setattr("wsolbench.cli.main.cmd_list", handler)
    line = refused(capsys, "list")
    assert all(part in line for part in expected), line
    assert "[Errno" not in line


@pytest.mark.parametrize(
    "raised", [OSError("cannot write x: the disk is full; free space"), FileNotFoundError("no x")]
)
def test_our_own_os_errors_keep_their_message(monkeypatch, capsys, raised):
    def handler(args):
        raise raised

    monkeypatch.setattr("wsolbench.cli.main.cmd_list", handler)
    assert refused(capsys, "list") == f"error: {raised}"


def test_a_file_size_limit_is_one_error_line(tmp_path):
    """``ulimit -f``: Python ignores SIGXFSZ, so the write fails with EFBIG, not the process."""
    command = f"ulimit -f 20; exec {sys.executable} -m wsolbench visualize {RESULT} --output "
    done = subprocess.run(
        ["bash", "-c", command + str(tmp_path / "figures")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = done.stderr.splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert last.startswith("error: ") and "ulimit -f" in last, done.stderr


# --- markdown cells -------------------------------------------------------------------------------


def _separators(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_a_pipe_in_a_cell_is_escaped_in_markdown():
    columns = [
        Column("method", "Method", "left", ("a|b", "c")),
        Column("pretrained", "Pre|trained", "left", ("x", "y||z")),
    ]
    lines = markdown_table(columns).splitlines()
    assert {_separators(line) for line in lines} == {3}
    assert r"a\|b" in lines[2] and r"y\|\|z" in lines[3]


@pytest.mark.parametrize("wide", [False, True])
def test_a_pipe_in_a_result_keeps_the_leaderboard_columns(tmp_path, wide):
    for name, config in (("a", {"sigma": "0.25|0.5"}), ("b", {"sigma": 0.25})):
        shutil.copytree(BOARD / "center" / "seed0", tmp_path / name)
        record = json.loads((tmp_path / name / "result.json").read_text())
        record["config"] = config
        (tmp_path / name / "result.json").write_text(json.dumps(record))
    shutil.copytree(BOARD / "cam" / "seed0", tmp_path / "cam")
    record = json.loads((tmp_path / "cam" / "result.json").read_text())
    record["pretrained"] = "file:/weights/a|b.pt"
    record["provenance"] = {"backbone": "file:/weights/a|b.pt"}
    (tmp_path / "cam" / "result.json").write_text(json.dumps(record))
    text = compare([tmp_path], fmt="md", published=False, wide=wide)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3 and "\\|" in "".join(table)
    assert len({_separators(line) for line in table}) == 1, text


def test_every_command_s_help_prints_its_text_as_written():
    """argparse %-formats help strings but not a description without ``%(prog)``: a ``%%`` there
    is printed as is (``diff --help`` read "a 95%% paired bootstrap interval")."""
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert "diff" in commands and "compare" in commands
    for name, parser in commands.items():
        assert "%%" not in parser.format_help(), name
