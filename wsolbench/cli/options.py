"""Command-line options several ``wsolbench`` commands share (``-o``, profiling, resampling).

A module of its own so that every command module (``cli.py``, ``cli_check.py``,
``cli_reports.py``) imports its options from below, never from another command module.
"""

from __future__ import annotations


def add_overrides_argument(parser, help: str) -> None:
    """``-o KEY=VALUE`` (repeatable), shared by run, eval and check."""
    parser.add_argument(
        "-o", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_profile_options(parser, *, flag: bool = False) -> None:
    """The timing options shared by ``profile`` and ``run/eval --profile``."""
    prefix = "--profile-" if flag else "--"
    parser.add_argument(
        f"{prefix}warmup", dest="profile_warmup", type=int, default=10,
        help="untimed batch-1 calls before timing (default 10; figures need ≥ 10)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}runs", dest="profile_runs", type=int, default=50,
        help="timed batch-1 calls (default 50; figures need ≥ 50)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}throughput-runs", dest="profile_throughput_runs", type=int, default=5,
        help="timed calls at the throughput batch (default 5; median reported)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}threads", dest="profile_threads", type=int, default=None,
        help="torch CPU threads while profiling (default: as set; 1 is stable on a busy CPU)",
    )  # fmt: skip
    parser.add_argument(
        f"{prefix}amp", dest="profile_amp", default="none",
        choices=["none", "float16", "bfloat16"], help="time under torch.autocast with this dtype",
    )  # fmt: skip


def profile_settings(args, batch_size: int = 64, timing: bool = True):
    from wsolbench.cost.profile import ProfileSettings

    return ProfileSettings(
        warmup=args.profile_warmup,
        runs=args.profile_runs,
        batch_size=batch_size,
        throughput_runs=args.profile_throughput_runs,
        amp=args.profile_amp,
        timing=timing,
        threads=args.profile_threads,
        strict_macs=getattr(args, "strict_macs", False),
    )


def add_resampling(parser) -> None:
    """``--resamples`` and ``--ci-seed``, shared by compare --ci and diff."""
    parser.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples of the images"
    )
    parser.add_argument("--ci-seed", type=int, default=0, help="seeds the resampling")


def resamples(args) -> int:
    if args.resamples < 100:
        raise ValueError(f"--resamples {args.resamples}: use at least 100 (1000 is the default)")
    return args.resamples
