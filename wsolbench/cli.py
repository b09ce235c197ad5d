"""``wsolbench`` command line: a thin argparse front end; every command is a library call.

User mistakes (unknown names, missing files, bad metadata, bad overrides) print one clear ``error:``
line and exit with status 2, without a traceback; ``--debug`` shows the traceback anyway.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from wsolbench import __version__
from wsolbench.cli_options import (
    add_overrides_argument,
    add_profile_options,
    add_resampling,
    profile_settings,
    resamples,
)

# Errors a user can fix (every wsolbench error class derives from one of these); anything else is a
# bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (KeyError, ValueError, OSError, ImportError)


def _add_list(commands) -> None:
    parser = commands.add_parser("list", help="methods, datasets and protocols")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="import each method and report it"
    )
    parser.set_defaults(handler=cmd_list)


def cmd_list(args) -> int:
    from wsolbench.protocol import list_protocols
    from wsolbench.registry import check_plugins, list_datasets, list_methods

    if args.verbose:
        print("methods:")
        broken = 0
        for status in check_plugins():
            mark = "ok " if status.ok else "BROKEN"
            broken += not status.ok
            print(f"  {status.name:<16} {mark:<6} {status.source}: {status.detail}")
    else:
        print("methods:   " + ", ".join(list_methods()))
    print("datasets:  " + ", ".join(list_datasets()))
    print("protocols: " + ", ".join(list_protocols()))
    return 0


def _add_prepare(commands) -> None:
    parser = commands.add_parser(
        "prepare", help="convert a dataset into the reference metadata format"
    )
    parser.add_argument("dataset", choices=["cub", "ilsvrc", "synthetic", "synthclip"])
    parser.add_argument("--src", type=Path, help="the original release (cub, ilsvrc)")
    parser.add_argument("--out", type=Path, required=True, help="the prepared root to write")
    parser.add_argument(
        "--val-per-class",
        type=int,
        help="cub: carve a box-annotated selection split of N train images per class "
        "(not the official CUBV2 set)",
    )
    parser.add_argument("--cubv2", type=Path, help="cub: the official CUBV2 val metadata folder")
    parser.add_argument("--annotations", type=Path, help="ilsvrc: folder of validation XML files")
    parser.add_argument("--synsets", type=Path, help="ilsvrc: synset list (LOC_synset_mapping.txt)")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=cmd_prepare)


def cmd_prepare(args) -> int:
    if args.dataset == "synthclip":  # wsolbench's CLIP of the synthetic world, into --out (a cache)
        from methods.synthclip import prepare_synthclip

        print(prepare_synthclip(args.out, seed=args.seed))
        return 0
    if args.dataset == "synthetic":
        from wsolbench.data.synthetic import PROTOCOL_FILE, SyntheticConfig, generate

        root = generate(args.out, SyntheticConfig(seed=args.seed), progress=True)
        print(f"synthetic dataset written to {root}")
        if args.seed != 0:  # synthetic-v1 is seed 0: this set needs its own protocol
            print(f"not synthetic-v1's data: run it with --protocol {root / PROTOCOL_FILE}")
        return 0
    if args.src is None:
        raise ValueError(f"prepare {args.dataset} needs --src (the original release folder)")
    if args.dataset == "cub":
        from wsolbench.data.cub import convert_cub

        counts = convert_cub(
            args.src, args.out, val_per_class=args.val_per_class, cubv2=args.cubv2, seed=args.seed
        )
    else:
        from wsolbench.data.ilsvrc import convert_ilsvrc

        counts = convert_ilsvrc(
            args.src, args.out, annotations=args.annotations, synsets=args.synsets
        )
    for split, n in counts.items():
        print(f"{split:<6} {n:>7} images")
    print(f"metadata written to {args.out / 'metadata'}")
    return 0


def _add_method_and_data(parser, *, work_dir_help: str, overrides_help: str) -> None:
    """The options ``run`` and ``eval`` share: what to run, on which data, where, on what device."""
    parser.add_argument("--method", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument(
        "--data-root", help="prepared dataset root (synthetic: generated if omitted)"
    )
    parser.add_argument(
        "--protocol", help="protocol id or YAML file (default: the dataset's newest)"
    )
    parser.add_argument("--work-dir", help=work_dir_help)
    add_overrides_argument(parser, overrides_help)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--batch-size", type=int, default=64, help="evaluation batch size")
    parser.add_argument("--num-workers", type=int, default=0, help="data loader workers")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also measure cost (params, MACs, latency; see `wsolbench profile`) into the result",
    )
    add_profile_options(parser, flag=True)


def _add_run(commands) -> None:
    parser = commands.add_parser("run", help="train (if trainable) and evaluate a method")
    _add_method_and_data(
        parser,
        work_dir_help="default: work_dirs/<protocol>/<method>/seed<N>",
        overrides_help="config override, dotted keys into sections (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--resume", action="store_true", help="continue (or keep) the run in --work-dir"
    )
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument(
        "--no-pretrained", action="store_true", help="allow running without pretrained weights"
    )
    parser.set_defaults(handler=cmd_run)


def _add_eval(commands) -> None:
    parser = commands.add_parser("eval", help="evaluate exported weights (weights.pt) of a method")
    _add_method_and_data(
        parser,
        work_dir_help="default: work_dirs/<protocol>/<method>/eval-<run>",
        overrides_help="config override; must describe the same architecture as the weights",
    )
    parser.add_argument("--weights", required=True, type=Path, help="a run's weights.pt")
    parser.add_argument(
        "--resume", action="store_true", help="keep (or finish) the evaluation in --work-dir"
    )
    parser.set_defaults(handler=cmd_eval)


def cmd_eval(args) -> int:
    from wsolbench.run import RunSpec, evaluate_weights

    spec = RunSpec(
        method=args.method,
        dataset=args.dataset,
        protocol=args.protocol,
        data_root=args.data_root,
        work_dir=args.work_dir,
        overrides=args.overrides,
        device=args.device,
        resume=args.resume,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        profile=_profile_settings(args),
    )
    _print_result(evaluate_weights(spec, args.weights))
    return 0


def cmd_run(args) -> int:
    from wsolbench.run import RunSpec, execute

    result = execute(
        RunSpec(
            method=args.method,
            dataset=args.dataset,
            protocol=args.protocol,
            data_root=args.data_root,
            work_dir=args.work_dir,
            seed=args.seed,
            overrides=args.overrides,
            device=args.device,
            resume=args.resume,
            no_pretrained=args.no_pretrained,
            launcher=args.launcher,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            profile=_profile_settings(args),
        )
    )
    _print_result(result)
    return 0


def _profile_settings(args):
    """``--profile``: the timing settings (throughput at the evaluation batch size); else None."""
    if not args.profile:
        return None
    return profile_settings(args, args.batch_size)


def _print_result(result) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 alone reports
    from wsolbench.data.fingerprint import short

    print(
        f"{result.method} on {result.protocol} (seed {result.seed}, data "
        f"{short(result.data_sha256)}, pretrained: {result.pretrained})"
    )
    for split, by_policy in result.metrics.items():
        print(_metrics_table(by_policy, title=f"{split} split"))
    if result.cost:
        from wsolbench.profile import format_cost

        print("cost\n" + format_cost(result.cost))


def _metrics_table(by_policy: dict[str, dict[str, float]], title: str) -> str:
    from tabulate import tabulate

    from wsolbench.results import METRIC_KEYS

    present = {k for m in by_policy.values() for k in m}
    # canonical keys first, then any other IoU threshold (evaluate-maps --iou 40 60)
    keys = [k for k in METRIC_KEYS if k in present] + sorted(present - set(METRIC_KEYS))
    rows = [[policy] + [m.get(k) for k in keys] for policy, m in by_policy.items()]
    table = tabulate(rows, headers=["policy"] + keys, floatfmt=".2f", missingval="–")
    return f"{title}\n{table}\n"


def _add_evaluate_maps(commands) -> None:
    parser = commands.add_parser(
        "evaluate-maps",
        help="score saved maps <maps>/<image_id>.npy against a metadata split",
        description="Evaluate maps saved by any WSOL codebase, laid out as the reference evaluator "
        "expects (<maps>/<image_id>.npy, ids keep subfolders and extension).",
    )
    parser.add_argument("--maps", type=Path, required=True)
    parser.add_argument("--metadata", type=Path, required=True, help="a split folder (four files)")
    parser.add_argument("--masks", type=Path, help="mask root: evaluate PxAP from mask records")
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
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="maps counted in parallel (default: every core); the counts do not depend on it",
    )
    parser.add_argument("--json", type=Path, help="write metrics and per-threshold counts here")
    parser.set_defaults(handler=cmd_evaluate_maps)


def cmd_evaluate_maps(args) -> int:
    from wsolbench.atomic import write_json_atomic
    from wsolbench.data.metadata import read_split
    from wsolbench.evaluate import EvalSettings, evaluate_saved_maps
    from wsolbench.metrics import summarize

    if not 0 < args.step < 1:
        raise ValueError(f"--step must be in (0, 1), not {args.step}")
    if min(args.size) < 1:
        raise ValueError(f"--size {args.size[0]} {args.size[1]}: H and W must be positive pixels")
    if any(not 0 < t <= 100 for t in args.iou) or len(set(args.iou)) != len(args.iou):
        raise ValueError(f"--iou {' '.join(map(str, args.iou))}: distinct percentages in (0, 100]")
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads}: use 1 or more")
    meta = read_split(args.metadata, mask_root=args.masks)
    settings = EvalSettings(
        size=tuple(args.size),
        step=args.step,
        iou_thresholds=tuple(args.iou),
        boxes=meta.boxes is not None,
        masks=args.masks is not None,
    )
    if not settings.boxes and not settings.masks:
        raise ValueError(f"{args.metadata} holds mask records: pass --masks DIR (the mask root)")
    counts = evaluate_saved_maps(
        args.maps,
        meta,
        settings,
        mask_root=args.masks,
        normalize=args.normalize,
        threads=args.threads,
    )
    metrics, chosen = summarize(counts, "oracle")
    print(_metrics_table({"oracle": metrics}, title=f"{args.metadata} ({counts['n_images']} maps)"))
    if args.json:
        record = {**metrics, "n_images": counts["n_images"], "step": args.step}
        record.update({"policy": "oracle", "chosen_thresholds": chosen, "counts": counts})
        write_json_atomic(args.json, record)
        print(f"written {args.json}")
    return 0


def _add_fingerprint(commands) -> None:
    parser = commands.add_parser(
        "fingerprint",
        help="the data fingerprint of a prepared root under a protocol",
        description="Print the fingerprint every result of this data would carry (per split and "
        "combined) and whether it matches what the protocol pins.",
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-root", help="prepared dataset root (synthetic: the cached one)")
    parser.add_argument("--protocol", help="protocol id or YAML file (default: the newest)")
    parser.set_defaults(handler=cmd_fingerprint)


def cmd_fingerprint(args) -> int:
    from wsolbench.data.fingerprint import data_fingerprint
    from wsolbench.data.sources import read_splits
    from wsolbench.protocol import protocol_for_dataset as resolve_protocol
    from wsolbench.registry import get_dataset

    protocol = resolve_protocol(args.dataset, args.protocol)
    root = get_dataset(args.dataset)().resolve(args.data_root, protocol)
    fingerprint = data_fingerprint(read_splits(root, protocol, optional=("train",)))
    for role, split in fingerprint["splits"].items():
        pin = protocol.data_pins.get(role)
        verdict = "" if pin is None else ("  = pinned" if pin == split["sha256"] else "  ≠ PINNED")
        print(f"{role:<6} {split['sha256']}  {split['n_images']:>7} images{verdict}")
    print(f"data   {fingerprint['sha256']}")
    return 0


def _add_compare(commands) -> None:
    parser = commands.add_parser("compare", help="leaderboard from result files and folders")
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--policy", default="oracle", help="oracle | select | fixed:T")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument(
        "--format", dest="fmt", default="md", choices=["md", "csv", "latex", "html"]
    )
    parser.add_argument("--output", type=Path, help="write the table here (atomically)")
    parser.add_argument(
        "--published", type=Path, help="published rows file (default: the checkout's)"
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
        help="95%% bootstrap interval over the test images in every cell; mark rows not "
        "significantly different from the top row (needs per-image records)",
    )
    add_resampling(parser)
    parser.set_defaults(handler=cmd_compare)


def _add_diff(commands) -> None:
    parser = commands.add_parser(
        "diff",
        help="paired comparison of two rows on the same test images",
        description="A - B for every metric both have, with a 95%% paired bootstrap interval and "
        "p-value over the same images. A and B are each a run dir, a result.json, or a folder of "
        "one row's seeds.",
    )
    parser.add_argument("a", type=Path, metavar="A")
    parser.add_argument("b", type=Path, metavar="B")
    parser.add_argument("--policy", default="oracle", help="oracle | select | fixed:T")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    add_resampling(parser)
    parser.set_defaults(handler=cmd_diff)


def cmd_diff(args) -> int:
    from wsolbench.intervals import diff, render_diff

    diffs = diff(
        [args.a],
        [args.b],
        policy=args.policy,
        split=args.split,
        resamples=resamples(args),
        seed=args.ci_seed,
    )
    print(render_diff(f"A: {args.a}", f"B: {args.b}", diffs), end="")
    return 0


def cmd_compare(args) -> int:
    from wsolbench.atomic import write_text_atomic
    from wsolbench.leaderboard import compare

    published = False if args.no_published else (args.published or True)
    table = compare(
        args.paths,
        policy=args.policy,
        split=args.split,
        fmt=args.fmt,
        published=published,
        by_data=args.by_data,
        ci=resamples(args) if args.ci else 0,
        ci_seed=args.ci_seed,
    )
    if args.output:
        write_text_atomic(args.output, table)
        print(f"written {args.output}")
    else:
        print(table, end="" if table.endswith("\n") else "\n")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error style: one ``error:`` line naming the fix, exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="wsolbench", description="Benchmark harness for weakly supervised object localization."
    )
    parser.add_argument("--version", action="version", version=f"wsolbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from wsolbench.cli_check import _add_check
    from wsolbench.cli_reports import add_commands as _add_reports

    for add in (
        _add_list,
        _add_prepare,
        _add_run,
        _add_eval,
        _add_evaluate_maps,
        _add_fingerprint,
        _add_compare,
        _add_diff,
        _add_check,
        _add_reports,
    ):
        add(commands)
    return parser


class _ConsoleFormatter(logging.Formatter):
    """Progress and facts as plain lines; warnings and errors say what they are."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (callers such as tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure_logging(debug: bool) -> None:
    """wsolbench's INFO lines are the console's progress; other libraries speak only to warn.

    ``--debug`` shows everything, with the logger names.
    """
    handler = _StderrHandler()
    if debug:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(_ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in ("wsolbench", "methods"):
        logging.getLogger(name).setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.debug)
    try:
        return args.handler(args)
    except USER_ERRORS as exc:
        if args.debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
