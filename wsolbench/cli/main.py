"""``wsolbench`` command line: a thin argparse front end; every command is a library call.

User mistakes (unknown names, missing files, bad metadata, bad overrides) print one clear ``error:``
line and exit with status 2, without a traceback; ``--debug`` shows the traceback anyway.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys

from wsolbench import __version__
from wsolbench.cli.options import add_seed, user_path
from wsolbench.cli.results import add_compare, add_diff, add_evaluate_maps, add_fingerprint
from wsolbench.cli.run import add_eval, add_reproduce, add_run
from wsolbench.cli.sweep import add_sweep

# Errors a user can fix (every wsolbench error class derives from one of these); anything else is a
# bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (KeyError, ValueError, OSError, ImportError)

_WRITABLE = "choose a writable folder, or fix the permissions"
# The fix for a raw OS error, by errno (one the OS raised, not a wsolbench error with a message).
_OS_ERROR_FIXES = {
    errno.EACCES: _WRITABLE,
    errno.EPERM: _WRITABLE,
    errno.EROFS: "the file system is read-only; " + _WRITABLE,
    errno.ENOSPC: "free disk space and run the command again",
    errno.EDQUOT: "free space within your disk quota and run the command again",
    errno.EFBIG: "raise the file-size limit (`ulimit -f`) or free space, and run the command again",
    errno.ENOENT: "check the path, or create the folder it should be in",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; give the path of a file",
    errno.EEXIST: "move it out of the way or choose another path",
}


def _error_line(exc: BaseException) -> str:
    """The one ``error:`` line a user error prints.

    wsolbench's own errors carry the whole message (what is wrong and the fix). A raw OS error,
    one that carries an errno, says only e.g. ``[Errno 13] Permission denied: 'x'``: its line
    names the file(s), the OS's reason and a fix for that errno instead.
    """
    if isinstance(exc, KeyError) and exc.args:
        return f"error: {exc.args[0]}"  # str() of a KeyError would quote the message
    if not isinstance(exc, OSError) or exc.errno is None or not exc.strerror:
        return f"error: {_worker_message(str(exc))}"
    files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    code = errno.errorcode.get(exc.errno, str(exc.errno))
    fallback = "check that path" if files else "`wsolbench --debug ...` shows where it happened"
    fix = _OS_ERROR_FIXES.get(exc.errno, fallback)
    return f"error: {files + ': ' if files else ''}{exc.strerror} ({code}); {fix}"


def _worker_message(text: str) -> str:
    """The message itself of an error a DataLoader worker raised: torch re-raises it in the main
    process with the worker's whole traceback as its text ("Caught X in DataLoader worker process
    N." first), whose last line is ``<module.Class>: <message>``."""
    first = text.partition("\n")[0]
    if not (first.startswith("Caught ") and " in DataLoader worker process " in first):
        return text
    return text.rstrip().rpartition("\n")[2].partition(": ")[2] or text


def _add_list(commands) -> None:
    parser = commands.add_parser("list", help="methods, datasets and protocols")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="import each method and report it (exit 1 if one is broken)",
    )
    parser.set_defaults(handler=cmd_list)


def cmd_list(args) -> int:
    from wsolbench.data.sources import list_datasets
    from wsolbench.protocol import list_protocols
    from wsolbench.registry import check_plugins, list_methods

    broken = 0
    if args.verbose:
        print("methods:")
        for status in check_plugins():
            mark = "ok " if status.ok else "BROKEN"
            broken += not status.ok
            print(f"  {status.name:<16} {mark:<6} {status.source}: {status.detail}")
    else:
        print("methods:   " + ", ".join(list_methods()))
    print("datasets:  " + ", ".join(list_datasets()))
    print("protocols: " + ", ".join(list_protocols()))
    return 1 if args.verbose and broken else 0  # a broken plugin fails a script that lists them


def _add_prepare(commands) -> None:
    parser = commands.add_parser(
        "prepare",
        help="convert a dataset into the reference metadata format, or build synthclip or "
        "synthcam (wsolbench's own CLIP and CAM teacher of the synthetic world) into the cache",
    )
    parser.add_argument(
        "dataset",
        choices=[
            "cub",
            "ilsvrc",
            "glas",
            "wsol-splits",
            "synthetic",
            "synthetic-histo",
            "synthclip",
            "synthclip-quick",
            "synthcam",
        ],
    )
    parser.add_argument(
        "--src",
        type=user_path,
        help="the original release (cub, ilsvrc, glas); wsol-splits: one fold of LIVIA's "
        "histology splits, <DS>/fold-<k>",
    )
    parser.add_argument(
        "--out",
        type=user_path,
        help="the prepared root to write (synthclip[-quick], synthcam: the cache folder; default "
        "$WSOLBENCH_CACHE)",
    )
    parser.add_argument(
        "--val-per-class",
        type=int,
        help="cub: carve a box-annotated selection split of N train images per class "
        "(not the official CUBV2 set)",
    )
    parser.add_argument(
        "--cubv2", type=user_path, help="cub: the official CUBV2 val metadata folder"
    )
    parser.add_argument(
        "--annotations", type=user_path, help="ilsvrc: folder of validation XML files"
    )
    parser.add_argument(
        "--synsets", type=user_path, help="ilsvrc: synset list (LOC_synset_mapping.txt)"
    )
    parser.add_argument(
        "--images",
        type=user_path,
        help="wsol-splits: the data root the splits' image ids are under",
    )
    parser.add_argument(
        "--masks",
        type=user_path,
        help="wsol-splits: the root the splits' mask paths are under (default: --images)",
    )
    parser.add_argument(
        "--from",
        dest="adopt",
        type=user_path,
        metavar="RUN",
        help="synthcam: take this finished cam run as the teacher instead of training it, when it "
        "is the very run the teacher would be (seed, one thread, CPU, default config)",
    )
    add_seed(parser)
    parser.set_defaults(handler=cmd_prepare)


#: prepare's options that some datasets alone read (dest → those datasets): given for another,
#: they would be ignored
PREPARE_OPTIONS_OF = {
    "val_per_class": ("cub",),
    "cubv2": ("cub",),
    "annotations": ("ilsvrc",),
    "synsets": ("ilsvrc",),
    "images": ("wsol-splits",),
    "masks": ("wsol-splits",),
    "adopt": ("synthcam",),
}


def cmd_prepare(args) -> int:
    for dest, datasets in PREPARE_OPTIONS_OF.items():
        if getattr(args, dest) is not None and args.dataset not in datasets:
            flag = "--from" if dest == "adopt" else "--" + dest.replace("_", "-")
            raise ValueError(
                f"{flag} is for prepare {' / '.join(datasets)}, not prepare {args.dataset}; drop it"
            )
    if args.dataset in ("synthclip", "synthclip-quick"):  # wsolbench's CLIP of the synthetic world
        from wsolbench.blocks.synthclip import SYNTHCLIP, SYNTHCLIP_QUICK, prepare_synthclip

        name = SYNTHCLIP if args.dataset == "synthclip" else SYNTHCLIP_QUICK
        print(prepare_synthclip(args.out, seed=args.seed, name=name))
        return 0
    if args.dataset == "synthcam":  # the CAM run TeD-Loc's synthetic preset learns from
        from wsolbench.blocks.cam_teacher import prepare_synthcam

        print(prepare_synthcam(args.out, seed=args.seed, adopt=args.adopt))
        return 0
    if args.out is None:
        raise ValueError(f"prepare {args.dataset} needs --out (the folder to write the dataset to)")
    if args.dataset in ("synthetic", "synthetic-histo"):
        from wsolbench.data import generated
        from wsolbench.data.synthetic import SyntheticConfig, synthetic_world
        from wsolbench.data.synthetic_histo import HistoConfig, histo_world

        world = (
            synthetic_world(SyntheticConfig(seed=args.seed))
            if args.dataset == "synthetic"
            else histo_world(HistoConfig(seed=args.seed))
        )
        root = generated.generate(args.out, world, progress=True)
        print(f"{args.dataset} dataset written to {root}")
        if args.seed != 0:  # the shipped protocol is seed 0: this set needs its own protocol
            print(
                f"not {world.protocol}'s data: run it with --protocol "
                f"{root / generated.PROTOCOL_FILE}"
            )
        return 0
    if args.src is None:
        raise ValueError(f"prepare {args.dataset} needs --src (the original release folder)")
    dataset = args.dataset
    if args.dataset == "cub":
        if args.val_per_class is None and args.cubv2 is None:
            # cub-v1 evaluates val: a root without it would only be refused by `run`
            raise ValueError(
                "prepare cub needs a val split (the protocol selects and reports on it): add "
                "--val-per-class N (N train images per class, e.g. 5; not the official set) or "
                "--cubv2 DIR (the official CUBV2 val metadata)"
            )
        from wsolbench.data.cub import convert_cub

        counts = convert_cub(
            args.src, args.out, val_per_class=args.val_per_class, cubv2=args.cubv2, seed=args.seed
        )
    elif args.dataset == "glas":
        from wsolbench.data.glas import convert_glas

        counts = convert_glas(args.src, args.out, seed=args.seed, progress=True)
    elif args.dataset == "wsol-splits":
        if args.images is None:
            raise ValueError(
                "prepare wsol-splits needs --images DIR, the data root the splits' image ids are "
                "relative to"
            )
        from wsolbench.data.wsol_splits import convert_wsol_splits

        dataset, counts = convert_wsol_splits(
            args.src, args.out, images=args.images, masks=args.masks, progress=True
        )
    else:
        from wsolbench.data.ilsvrc import convert_ilsvrc

        counts = convert_ilsvrc(
            args.src, args.out, annotations=args.annotations, synsets=args.synsets
        )
    for split, n in counts.items():
        print(f"{split:<6} {n:>7} images")
    print(f"metadata written to {args.out / 'metadata'}")
    if dataset in ("glas", "camelyon512"):
        print(f"evaluate with: --dataset {dataset} --data-root {args.out}")
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
    # `sweep` runs each cell through this very entry point (cli.sweep cannot import it)
    parser.set_defaults(entry=main)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from wsolbench.cli.check import _add_check
    from wsolbench.cli.reports import add_commands as _add_reports

    for add in (
        _add_list,
        _add_prepare,
        add_run,
        add_eval,
        add_reproduce,
        add_evaluate_maps,
        add_fingerprint,
        add_compare,
        add_diff,
        _add_check,
        _add_reports,
        add_sweep,
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
        print(_error_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
