"""``wsolbench profile`` and ``wsolbench visualize``: cost and pictures of methods and runs.

Kept apart from ``cli.py`` (like ``cli_check.py``) so that these commands' options live together;
``cli.py`` registers them with :func:`add_commands`.
"""

from __future__ import annotations

from wsolbench.cli.options import (
    PROFILE_DESTS,
    add_batch_size,
    add_overrides_argument,
    add_profile_options,
    check_output,
    path_text,
    profile_settings,
    user_path,
)

GRID_IMAGES = 16  # visualize: images in the overlay grid unless --n says otherwise


def _add_profile(commands) -> None:
    parser = commands.add_parser(
        "profile",
        help="parameters, MACs, latency, throughput and memory of a method",
        description="Build a method for a dataset's protocol (its preset config, random "
        "initialisation: cost does not depend on the weights; no training, no weight file read) "
        "and measure parameters, MACs of one inference at the protocol size (every attention "
        "kernel counted), latency at batch 1 (median, p90, IQR), throughput, peak memory, and "
        "how busy the machine was meanwhile (a latency measured while other processes took the "
        "cores it needed is marked). See wsolbench/cost/profile.py for each definition.",
    )
    parser.add_argument("--method", required=True)
    parser.add_argument(
        "--dataset", default="cub", help="whose protocol and preset (default: cub, 224x224)"
    )
    parser.add_argument(
        "--protocol", type=path_text, help="protocol id or YAML file (default: the dataset's)"
    )
    add_overrides_argument(parser, "config override, dotted keys into sections (repeatable)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_batch_size(parser, 64, "throughput batch")
    add_profile_options(parser)
    parser.add_argument(
        "--no-timing",
        action="store_true",
        help="parameters and MACs only (no latency, throughput or memory)",
    )
    parser.add_argument(
        "--strict-macs",
        action="store_true",
        help="an op the MAC counter has no formula for is an error (default: a warning, and the "
        "MACs are reported as a lower bound)",
    )
    parser.add_argument("--json", type=user_path, help="also write the cost record here")
    parser.set_defaults(handler=cmd_profile)


def cmd_profile(args) -> int:
    from wsolbench.cost.formatting import format_cost
    from wsolbench.runs.profile import profile
    from wsolbench.util.atomic import write_json_atomic

    check_output(args.json, "--json", folder=False)
    if args.no_timing:  # a timing option would be ignored
        for dest in PROFILE_DESTS:
            if getattr(args, dest) is not None:
                given = "--" + dest.removeprefix("profile_").replace("_", "-")
                raise ValueError(f"{given} times calls; --no-timing times none: drop one of them")
    cost = profile(
        args.method,
        args.dataset,
        protocol=args.protocol,
        overrides=args.overrides,
        device=args.device,
        settings=profile_settings(args, args.batch_size, timing=not args.no_timing),
        progress=lambda line: print(f"  {line} ...", flush=True),
    )
    print(f"{args.method} on {cost['protocol']} (random initialisation, config of {args.dataset})")
    print(format_cost(cost))
    if args.json:
        write_json_atomic(args.json, cost)
        print(f"written {args.json}")
    return 0


def _add_visualize(commands) -> None:
    parser = commands.add_parser(
        "visualize",
        help="overlay grid (map, GT box, predicted box) and BoxAcc-vs-threshold curves of runs",
        description="For each run dir: a grid of test images with the map of the GT class, the "
        "GT boxes (green) and the predicted box (red) at the policy's threshold "
        "(overlays.png). For all runs together: BoxAcc-vs-threshold curves per IoU from the "
        "stored counts (curves.png). result.json files give curves only.",
    )
    parser.add_argument(
        "paths", nargs="+", type=user_path, help="run work dirs or result.json files"
    )
    parser.add_argument("--n", type=int, help=f"images in the overlay grid (default {GRID_IMAGES})")
    parser.add_argument(
        "--output", type=user_path, help="folder for the figures (needed with several runs)"
    )
    parser.add_argument(
        "--policy", default="oracle", help="oracle | oracle-separate | select | fixed:T"
    )
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument(
        "--data-root", type=path_text, help="prepared dataset root (synthetic: the cache)"
    )
    parser.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    drawn = parser.add_mutually_exclusive_group()  # both: nothing would be drawn
    drawn.add_argument("--curves-only", action="store_true", help="no overlay grid")
    drawn.add_argument("--no-curves", action="store_true", help="no curves (overlays only)")
    parser.set_defaults(handler=cmd_visualize)


def cmd_visualize(args) -> int:
    from wsolbench.runs.visualize import visualize
    from wsolbench.util.device import resolve_device

    if args.n is not None and args.curves_only:
        raise ValueError(
            "--n takes effect only without --curves-only (it counts the overlay grid's images): "
            "drop one of them"
        )
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n {args.n}: draw at least one image")
    if args.no_curves and all(path.is_file() for path in args.paths):
        raise ValueError(
            f"--no-curves: {args.paths[0]} is a result file, which gives curves only: nothing "
            "would be drawn; pass run work dirs for overlays, or drop --no-curves"
        )
    device = resolve_device(args.device)
    check_output(args.output, "--output", folder=True)
    written = visualize(
        args.paths,
        n=GRID_IMAGES if args.n is None else args.n,
        output=args.output,
        policy=args.policy,
        split=args.split,
        data_root=args.data_root,
        device=device,
        overlays=not args.curves_only,
        curves=not args.no_curves,
    )
    for path in written:
        print(f"written {path}")
    return 0


def add_commands(commands) -> None:
    """Register ``profile`` and ``visualize``."""
    _add_profile(commands)
    _add_visualize(commands)
