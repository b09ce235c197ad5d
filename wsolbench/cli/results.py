"""``evaluate-maps``, ``fingerprint``, ``compare`` and ``diff``: commands that score saved maps,
describe data, or read results (no model is built)."""

from __future__ import annotations

from pathlib import Path

from wsolbench.cli.options import (
    add_count_workers,
    add_resampling,
    add_resampling_workers,
    check_output,
    path_text,
    refuse_without,
    resampling,
    resampling_workers,
    user_path,
)
from wsolbench.cli.run import metrics_table


def add_evaluate_maps(commands) -> None:
    parser = commands.add_parser(
        "evaluate-maps",
        help="score saved maps <maps>/<image_id>.npy against a metadata split",
        description="Evaluate maps saved by any WSOL codebase, laid out as the reference evaluator "
        "expects (<maps>/<image_id>.npy, ids keep subfolders and extension).",
    )
    parser.add_argument("--maps", type=user_path, required=True)
    parser.add_argument(
        "--metadata", type=user_path, required=True, help="a split folder (four files)"
    )
    parser.add_argument(
        "--masks", type=user_path, help="mask root: evaluate PxAP from mask records"
    )
    parser.add_argument(
        "--step", type=float, default=0.001, help="threshold step (protocol: 0.001)"
    )
    parser.add_argument("--iou", type=int, nargs="+", default=[30, 50, 70])
    parser.add_argument("--size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="min-max normalize every map (protocol-size maps are otherwise used as given)",
    )
    parser.add_argument(
        "--predictions",
        type=user_path,
        help="class predictions, one line per image: path,class,class,... (0-based, the five "
        "best or more, best first): adds Top-1 / Top-5 Cls and Loc",
    )
    add_count_workers(parser)
    parser.add_argument(
        "--json", type=user_path, help="write metrics and per-threshold counts here"
    )
    parser.set_defaults(handler=cmd_evaluate_maps)


def cmd_evaluate_maps(args) -> int:
    from wsolbench import counting
    from wsolbench.data.metadata.parse import count_lines
    from wsolbench.data.metadata.records import IMAGE_IDS
    from wsolbench.metrics import summarize
    from wsolbench.protocol import MIN_THRESHOLD_STEP
    from wsolbench.util.atomic import write_json_atomic

    if not MIN_THRESHOLD_STEP <= args.step < 1:
        raise ValueError(
            f"--step {args.step:g}: use a step in [{MIN_THRESHOLD_STEP:g}, 1) (the protocols "
            "use 0.001; a finer one only costs memory)"
        )
    max_side = 4096  # every map is resized to H x W float64: 128 MiB at 4096 x 4096
    if min(args.size) < 1 or max(args.size) > max_side:
        raise ValueError(
            f"--size {args.size[0]} {args.size[1]}: H and W must be positive and at most "
            f"{max_side} pixels (the protocols evaluate at 224 224)"
        )
    if any(not 0 < t <= 100 for t in args.iou) or len(set(args.iou)) != len(args.iou):
        raise ValueError(f"--iou {' '.join(map(str, args.iou))}: distinct percentages in (0, 100]")
    check_output(args.json, "--json", folder=False)
    if not args.maps.is_dir():
        raise ValueError(f"--maps {args.maps}: no such folder (one <image_id>.npy per image)")
    if args.predictions is not None and not args.predictions.is_file():
        raise ValueError(f"--predictions {args.predictions}: no such file")
    if args.masks is not None and not args.masks.is_dir():
        raise ValueError(f"--masks {args.masks}: no such folder")
    # The workers start first: they load the compiled engine while this process reads the split.
    # (An error in the split waits for them to have started, a second or so, before it is shown.)
    maps = count_lines(args.metadata / IMAGE_IDS)
    pool = counting.start_counting_workers(args.workers, maps, tuple(args.size))
    try:
        counts = _count_saved_maps(args, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    metrics, chosen = summarize(counts, "oracle")
    print(metrics_table({"oracle": metrics}, title=f"{args.metadata} ({counts['n_images']} maps)"))
    if args.json:
        record = {**metrics, "n_images": counts["n_images"], "step": args.step}
        record.update({"policy": "oracle", "chosen_thresholds": chosen, "counts": counts})
        write_json_atomic(args.json, record)
        print(f"written {args.json}")
    return 0


def _count_saved_maps(args, pool) -> dict:
    """evaluate-maps' split, predictions and maps read and counted (``pool``: the workers, or
    None to count here); returns the counts record."""
    from wsolbench import counting
    from wsolbench.data.metadata import read_split
    from wsolbench.data.metadata.parse import read_predictions
    from wsolbench.util.heap import keep_freed_memory

    meta = read_split(args.metadata, mask_root=args.masks)
    settings = counting.EvalSettings(
        size=tuple(args.size),
        step=args.step,
        iou_thresholds=tuple(args.iou),
        boxes=meta.boxes is not None,
        masks=args.masks is not None,
    )
    if not settings.boxes and not settings.masks:
        raise ValueError(f"{args.metadata} holds mask records: pass --masks DIR (the mask root)")
    predictions = None
    if args.predictions is not None:
        classes = len(set(meta.labels.values()))
        predictions = read_predictions(args.predictions, meta.image_ids, classes)
    keep_freed_memory()  # this process only counts maps (and with --workers 1, counts them here)
    return counting.evaluate_saved_maps(
        args.maps,
        meta,
        settings,
        mask_root=args.masks,
        normalize=args.normalize,
        predictions=predictions,
        pool=pool,
    )


def add_fingerprint(commands) -> None:
    parser = commands.add_parser(
        "fingerprint",
        help="the data fingerprint of a prepared root under a protocol",
        description="Print the fingerprint every result of this data would carry (per split and "
        "combined) and whether it matches what the protocol pins.",
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument(
        "--data-root", type=path_text, help="prepared dataset root (synthetic: the cached one)"
    )
    parser.add_argument(
        "--protocol", type=path_text, help="protocol id or YAML file (default: the newest)"
    )
    parser.set_defaults(handler=cmd_fingerprint)


def cmd_fingerprint(args) -> int:
    from wsolbench.data.sources import get_dataset, read_data
    from wsolbench.protocol import protocol_for_dataset as resolve_protocol

    get_dataset(args.dataset)  # a misspelt name: close matches (before "no protocol for dataset")
    protocol = resolve_protocol(args.dataset, args.protocol)
    # what a training-free run reads (train too when the root has it), as its record names it
    _, _, fingerprint = read_data(
        args.dataset, args.data_root, protocol, trains=False, check_files=False
    )
    for role, split in fingerprint["splits"].items():
        pin = protocol.data_pins.get(role)
        verdict = "" if pin is None else ("  = pinned" if pin == split["sha256"] else "  ≠ PINNED")
        masks = f"  masks {split['masks_sha256']}" if "masks_sha256" in split else ""
        print(f"{role:<6} {split['sha256']}  {split['n_images']:>7} images{verdict}{masks}")
    print(f"data   {fingerprint['sha256']}")
    return 0


def add_compare(commands) -> None:
    parser = commands.add_parser("compare", help="leaderboard from result files and folders")
    parser.add_argument("paths", nargs="+", type=user_path)
    parser.add_argument(
        "--policy", default="oracle", help="oracle | oracle-separate | select | fixed:T"
    )
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=["md", "csv", "latex", "html"],
        help="table format (default: from --output's extension, .csv .tex .html .md; else md)",
    )
    parser.add_argument("--output", type=user_path, help="write the table here (atomically)")
    parser.add_argument(
        "--published", type=user_path, help="published rows file (default: the checkout's)"
    )
    parser.add_argument("--no-published", action="store_true", help="leave published rows out")
    parser.add_argument(
        "--by-data",
        action="store_true",
        help="results of different data fingerprints: one table each (default: refuse)",
    )
    parser.add_argument(
        "--ci",
        action="store_true",
        help="95%% bootstrap interval in every cell (BCa under oracle policies, percentile under "
        "select / fixed), and a Group column: rows sharing a letter are not significantly "
        "different on the ranking metric (all pairs, Holm-corrected; needs per-image records)",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="every column, and each weights source in full in its cell (default: short weights "
        "names spelled out in a footnote, and a markdown table of the columns that fit 120 "
        "characters)",
    )
    add_resampling(parser)
    _add_models_fixed(parser)
    add_resampling_workers(parser, " for --ci")
    parser.set_defaults(handler=cmd_compare)


def _add_models_fixed(parser) -> None:
    parser.add_argument(
        "--models-fixed",
        action="store_true",
        default=None,  # None when not given: compare refuses it without --ci
        help="resample the test images only, each row the mean of its own runs (another test set, "
        "these trained models); default: rows with several seeds also have their seeds drawn on "
        "every resample (two-level: another training run and another test set)",
    )


def add_diff(commands) -> None:
    parser = commands.add_parser(
        "diff",
        help="paired comparison of two rows on the same test images",
        description="A - B for every metric both have, with a 95 % paired bootstrap interval (BCa "
        "under oracle policies, percentile under select / fixed) and the p-value of the same "
        "construction, over the same images; a side with several seeds has them resampled too "
        "unless --models-fixed. A and B are each a run dir, a result.json, or a folder of one "
        "row's seeds.",
    )
    parser.add_argument("a", type=user_path, metavar="A")
    parser.add_argument("b", type=user_path, metavar="B")
    parser.add_argument(
        "--policy", default="oracle", help="oracle | oracle-separate | select | fixed:T"
    )
    parser.add_argument("--split", default="test", choices=["val", "test"])
    add_resampling(parser)
    _add_models_fixed(parser)
    add_resampling_workers(parser)
    parser.set_defaults(handler=cmd_diff)


def cmd_diff(args) -> int:
    from wsolbench.results.intervals import diff, render_diff

    resamples, seed = resampling(args)
    diffs = diff(
        [args.a],
        [args.b],
        policy=args.policy,
        split=args.split,
        resamples=resamples,
        seed=seed,
        models_fixed=bool(args.models_fixed),
        workers=resampling_workers(args),
    )
    print(render_diff(f"A: {args.a}", f"B: {args.b}", diffs), end="")
    return 0


#: the format an --output file's extension names
FORMAT_OF_EXTENSION = {
    ".md": "md",
    ".markdown": "md",
    ".csv": "csv",
    ".tex": "latex",
    ".html": "html",
    ".htm": "html",
}


def output_format(fmt: str | None, output: Path | None) -> str:
    """compare's table format: ``--format`` when given, else the one ``--output``'s extension
    names, else markdown. A given format that contradicts the extension is refused: a file named
    board.csv holding markdown is a mistake nobody sees until a spreadsheet reads it."""
    named = FORMAT_OF_EXTENSION.get(output.suffix.lower()) if output is not None else None
    if fmt is None:
        return named or "md"
    if named is not None and named != fmt:
        ext = next(e for e, f in FORMAT_OF_EXTENSION.items() if f == fmt)
        raise ValueError(
            f"--output {output.name} is a {output.suffix} file but --format {fmt} was asked for: "
            f"drop --format (or pass --format {named}) to write {named}, or write {fmt} to "
            f"{output.with_suffix(ext).name}"
        )
    return fmt


def cmd_compare(args) -> int:
    from wsolbench.leaderboard import compare
    from wsolbench.util.atomic import write_text_atomic

    refuse_without(args, "ci", ("resamples", "ci_seed", "models_fixed", "workers"))
    if args.no_published and args.published is not None:
        raise ValueError("--published and --no-published contradict each other: drop one")
    check_output(args.output, "--output", folder=False)
    fmt = output_format(args.fmt, args.output)
    resamples, seed = resampling(args) if args.ci else (0, 0)
    published = False if args.no_published else (args.published or True)
    table = compare(
        args.paths,
        policy=args.policy,
        split=args.split,
        fmt=fmt,
        published=published,
        by_data=args.by_data,
        ci=resamples,
        ci_seed=seed,
        models_fixed=bool(args.models_fixed),
        workers=resampling_workers(args),
        wide=args.wide,
    )
    if args.output:
        write_text_atomic(args.output, table)
        print(f"written {args.output}")
    else:
        print(table, end="" if table.endswith("\n") else "\n")
    return 0
