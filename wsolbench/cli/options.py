"""Command-line options several ``wsolbench`` commands share (``-o``, loader sizes, seeds,
profiling, resampling), each with the range it is checked against.

A module of its own so that every command module (``cli.py``, ``cli_check.py``,
``cli_reports.py``) imports its options from below, never from another command module.

A count or a seed out of range is refused by argparse while the command line is read (one
``error:`` line naming the flag, exit 2), so no command starts work on a value that would fail
later; checks that need several flags at once (:func:`refuse_without`, :func:`check_output`) run
first thing in the command.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from wsolbench.util.user_paths import expand_user_path

MAX_BATCH_SIZE = 4096  # beyond this an evaluation or throughput batch is a typo, not a plan
MAX_WORKERS = 256  # data-loader processes; the bound train.num_workers has too
MAX_THREADS = 1024
SEED_MAX = 2**32 - 1  # numpy's and torch's seeding take 0 <= seed < 2**32
RESAMPLES = 1000  # bootstrap resamples when --resamples is not given
MIN_RESAMPLES, MAX_RESAMPLES = 100, 100_000  # fewer: a rough interval; more: minutes for nothing


def int_in(low: int, high: int, what: str):
    """An argparse ``type``: an integer in ``[low, high]``; else argparse's one ``error:`` line
    names the flag, the value, the range and what the number counts (``what``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{value} is out of range: use {low} to {high} ({what})"
            )
        return value

    return parse


def path_text(text: str) -> str:
    """An argparse ``type`` for every path option: :func:`expand_user_path` (a leading ``~`` the
    home folder, an empty value refused); the value stays text for options that also take an
    id."""
    try:
        return expand_user_path(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc}; give a path, or leave the option out for its default"
        ) from None


def user_path(text: str) -> Path:
    """:func:`path_text` as a Path."""
    return Path(path_text(text))


def add_batch_size(parser, default: int | None, help: str, shown: str | None = None) -> None:
    """``--batch-size N`` (1 to :data:`MAX_BATCH_SIZE`), shared by run, eval, reproduce, profile
    and check; ``shown`` says what a None default means."""
    parser.add_argument(
        "--batch-size",
        type=int_in(1, MAX_BATCH_SIZE, "images per batch"),
        default=default,
        help=f"{help} (default {shown or default}; 1 to {MAX_BATCH_SIZE})",
    )


def add_num_workers(parser) -> None:
    """``--num-workers N`` (0 to :data:`MAX_WORKERS`; default: the machine's), shared by run and
    eval."""
    parser.add_argument(
        "--num-workers",
        type=int_in(0, MAX_WORKERS, "data-loader processes; 0 loads in the main process"),
        default=None,
        help="evaluation data-loader workers (default: none on a CPU machine of up to 4 cores, "
        f"all cores but one on a GPU host, at most 8; 0 loads in the main process; at most "
        f"{MAX_WORKERS})",
    )


def add_count_workers(parser) -> None:
    """``--workers N``: processes that count maps (evaluate-maps, and run / eval / reproduce's
    evaluation); the counts do not depend on it."""
    parser.add_argument(
        "--workers",
        type=int_in(1, MAX_WORKERS, "map-counting processes"),
        default=os.cpu_count() or 1,
        help="processes counting the maps (default: every core; fewer than 200 maps of 224x224 "
        "per worker are counted in one process); the counts do not depend on it",
    )


def add_resampling_workers(parser, when: str = "") -> None:
    """``--workers N``: processes resampling the runs of compare --ci (``when``: " for --ci") or
    diff; None when not given (compare refuses it without --ci). The intervals do not depend on
    it."""
    parser.add_argument(
        "--workers",
        type=int_in(1, MAX_WORKERS, "resampling processes"),
        default=None,
        help=f"processes resampling the runs{when} (default: every core; too little work is "
        "resampled in one process); the intervals do not depend on it",
    )


def resampling_workers(args) -> int:
    """``--workers`` of compare --ci / diff, or every core when not given."""
    return args.workers or os.cpu_count() or 1


def add_threads(parser) -> None:
    """``--threads N``: torch's intra-op CPU threads for the whole run (run, eval, reproduce)."""
    parser.add_argument(
        "--threads",
        type=int_in(1, MAX_THREADS, "torch intra-op CPU threads"),
        help="torch intra-op CPU threads (default: torch's own, the cores or OMP_NUM_THREADS); "
        "float reductions, so the numbers, depend on it: recorded, and --resume must give the "
        "same count",
    )


def add_seed(parser, flag: str = "--seed", help: str = "random seed", default: int | None = 0):
    """A seed flag (0 to :data:`SEED_MAX`, default 0), shared by run, prepare, compare and diff.

    ``default`` None: the command reads 0 itself, and can tell that the flag was given
    (:func:`refuse_without`).
    """
    parser.add_argument(
        flag,
        type=int_in(0, SEED_MAX, "numpy and torch take 32-bit seeds"),
        default=default,
        help=f"{help} (default 0; 0 to {SEED_MAX})",
    )


def add_overrides_argument(parser, help: str) -> None:
    """``-o KEY=VALUE`` (repeatable), shared by run, eval and check."""
    parser.add_argument(
        "-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


# The profile options' dests, ``profile_<field of ProfileSettings>``; unset ones are None and
# leave ProfileSettings' own default.
PROFILE_DESTS = (
    "profile_warmup",
    "profile_runs",
    "profile_throughput_runs",
    "profile_threads",
    "profile_amp",
)


def add_profile_options(parser, *, flag: bool = False) -> None:
    """The timing options shared by ``profile`` and ``run/eval --profile`` (dests
    :data:`PROFILE_DESTS`, None when not given)."""
    prefix = "--profile-" if flag else "--"
    parser.add_argument(
        f"{prefix}warmup", dest="profile_warmup", type=int,
        help="untimed batch-1 calls before timing (default 10; figures need ≥ 10)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}runs", dest="profile_runs", type=int,
        help="timed batch-1 calls (default 50; figures need ≥ 50)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}throughput-runs", dest="profile_throughput_runs", type=int,
        help="timed calls at the throughput batch (default 5; median reported)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}threads", dest="profile_threads", type=int,
        help="torch CPU threads while profiling (default: as set; 1 is stable on a busy CPU)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}amp", dest="profile_amp", choices=["none", "float16", "bfloat16"],
        help="time under torch.autocast with this dtype (default none)",
    )  # fmt: skip


def profile_settings(args, batch_size: int = 64, timing: bool = True):
    from wsolbench.cost.profile import ProfileSettings

    given = {
        dest.removeprefix("profile_"): getattr(args, dest)
        for dest in PROFILE_DESTS
        if getattr(args, dest) is not None
    }
    return ProfileSettings(
        batch_size=batch_size,
        timing=timing,
        strict_macs=getattr(args, "strict_macs", False),
        **given,
    )


def add_resampling(parser) -> None:
    """``--resamples`` and ``--ci-seed``, shared by compare --ci and diff (None when not given:
    :func:`resampling` reads the defaults)."""
    parser.add_argument(
        "--resamples",
        type=int_in(MIN_RESAMPLES, MAX_RESAMPLES, "bootstrap resamples of the images"),
        help=f"bootstrap resamples of the images (default {RESAMPLES}; {MIN_RESAMPLES} to "
        f"{MAX_RESAMPLES})",
    )
    add_seed(parser, "--ci-seed", help="seeds the resampling", default=None)


def resampling(args) -> tuple[int, int]:
    """``(resamples, seed)``: ``--resamples`` and ``--ci-seed``, or their defaults."""
    resamples = RESAMPLES if args.resamples is None else args.resamples
    return resamples, args.ci_seed or 0


def refuse_without(args, switch: str, dests: tuple[str, ...]) -> None:
    """Options (``dests``) that take effect only with the switch ``switch`` (a dest too) must
    not be given without it: ignoring them would run without what they ask for. Raises
    ValueError naming both flags (a dest's flag is its ``--`` spelling)."""
    if getattr(args, switch):
        return
    needed = _flag(switch)
    for dest in dests:
        if getattr(args, dest) is not None:
            given = _flag(dest)
            raise ValueError(
                f"{given} takes effect only with {needed}: add {needed}, or drop {given}"
            )


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_output(path: Path | None, flag: str, *, folder: bool) -> None:
    """Refuse, before any work, an output path of the wrong kind: an existing folder where a
    file is to be written (``folder`` False), or an existing file where a folder is."""
    if path is None:
        return
    if not folder and path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give the path of a file to write")
    if folder and path.exists() and not path.is_dir():
        raise ValueError(
            f"{flag} {path} is a file; give a folder to write into (created if missing)"
        )
