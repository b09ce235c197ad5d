"""``wsolbench run`` and ``wsolbench eval``: train and/or evaluate a method, print its result."""

from __future__ import annotations

import os

from tabulate import tabulate

from wsolbench.cli.options import (
    PROFILE_DESTS,
    add_batch_size,
    add_count_workers,
    add_num_workers,
    add_overrides_argument,
    add_profile_options,
    add_seed,
    add_threads,
    path_text,
    profile_settings,
    refuse_without,
    user_path,
)
from wsolbench.results.environment import DEFAULT_EVAL_BATCH_SIZE
from wsolbench.runs.launchers import LAUNCHERS


def _add_method_and_data(parser, *, work_dir_help: str, overrides_help: str) -> None:
    """The options ``run`` and ``eval`` share: what to run, on which data, where, on what device."""
    parser.add_argument("--method", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument(
        "--data-root",
        type=path_text,
        help="prepared dataset root (synthetic: generated if omitted)",
    )
    parser.add_argument(
        "--protocol",
        type=path_text,
        help="protocol id or YAML file (default: the dataset's newest)",
    )
    parser.add_argument("--work-dir", type=path_text, help=work_dir_help)
    add_overrides_argument(parser, overrides_help)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_batch_size(parser, DEFAULT_EVAL_BATCH_SIZE, "evaluation batch size")
    add_num_workers(parser)
    add_count_workers(parser)
    add_threads(parser)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also measure cost (params, MACs, latency; see `wsolbench profile`) into the result",
    )
    add_profile_options(parser, flag=True)
    parser.add_argument(
        "--summed-pxap",
        action="store_true",
        help="keep the PxAP histograms of the per-image records summed over images only: exact "
        "PxAP, 0.3 MB less per 500 mask images, but no per-image PxAP interval (compare --ci, "
        "diff) for the run",
    )


def add_run(commands) -> None:
    parser = commands.add_parser("run", help="train (if trainable) and evaluate a method")
    _add_method_and_data(
        parser,
        work_dir_help="default: work_dirs/<protocol>/<method>/seed<N>",
        overrides_help="config override, dotted keys into sections (repeatable)",
    )
    add_seed(parser)
    parser.add_argument(
        "--resume", action="store_true", help="continue (or keep) the run in --work-dir"
    )
    parser.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="none",
        help="none | pytorch (under torchrun) | slurm (the tasks of one srun job step)",
    )
    parser.add_argument(
        "--no-pretrained", action="store_true", help="allow running without pretrained weights"
    )
    parser.set_defaults(handler=cmd_run)


def add_eval(commands) -> None:
    parser = commands.add_parser("eval", help="evaluate exported weights (weights.pt) of a method")
    _add_method_and_data(
        parser,
        work_dir_help="default: work_dirs/<protocol>/<method>/eval-<run>",
        overrides_help="config override; must describe the same architecture as the weights",
    )
    parser.add_argument("--weights", required=True, type=user_path, help="a run's weights.pt")
    parser.add_argument(
        "--resume", action="store_true", help="keep (or finish) the evaluation in --work-dir"
    )
    parser.set_defaults(handler=cmd_eval)


def add_reproduce(commands) -> None:
    parser = commands.add_parser(
        "reproduce",
        help="rerun a result from its record alone and compare every metric",
        description="Rerun a finished run (its work dir or result.json) with the method, config, "
        "protocol, data, seed, thread count and device its record names, then print every "
        "metric recorded vs reproduced. Exit 0 when all are equal, 1 otherwise (naming the first "
        "recorded condition that differs here: commit, threads, a library, the CPU).",
    )
    parser.add_argument("source", type=user_path, help="a run's work dir or its result.json")
    parser.add_argument(
        "--work-dir",
        type=path_text,
        help="where to rerun (default: work_dirs/reproduce/<protocol>/<method>/seed<N>)",
    )
    parser.add_argument(
        "--data-root",
        type=path_text,
        help="prepared dataset root (synthetic: generated if omitted)",
    )
    parser.add_argument("--device", help="default: the recorded device")
    add_batch_size(parser, None, "evaluation batch size", shown="the recorded one")
    parser.add_argument(
        "--weights",
        type=user_path,
        help="an eval's result: the weights file it evaluated (checked by its sha256), "
        "evaluated again",
    )
    add_overrides_argument(
        parser,
        "where a part's weights are on this machine, for a key that chooses them "
        "(backbone.checkpoint=PATH, teacher=run:DIR); checked by sha256 before any work",
    )
    add_num_workers(parser)
    add_count_workers(parser)
    parser.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from wsolbench.runs.reproduce import reproduce

    outcome = reproduce(
        args.source,
        work_dir=args.work_dir,
        data_root=args.data_root,
        device=args.device,
        batch_size=args.batch_size,
        weights=args.weights,
        weights_overrides=args.overrides,
        num_workers=args.num_workers,
        count_workers=args.workers,
    )
    rows = [
        [split, policy, key, f"{a:.4f}", "absent" if b is None else f"{b:.4f}",
         "absent" if b is None else f"{b - a:+.4f}"]
        for split, policy, key, a, b in outcome.rows
    ]  # fmt: skip
    headers = ["split", "policy", "metric", "recorded", "reproduced", "difference"]
    print(tabulate(rows, headers=headers, disable_numparse=True))
    for line in outcome.differences:
        print(f"differs: {line}")
    if outcome.equal:
        print(f"reproduced: all {len(rows)} metrics equal")
        return 0
    unequal = sum(a != b for *_, a, b in outcome.rows)
    cause = outcome.differences[0] if outcome.differences else "no recorded condition differs"
    print(f"not reproduced: {unequal} of {len(rows)} metrics differ; first difference: {cause}")
    return 1


def cmd_eval(args) -> int:
    from wsolbench.runs.context import RunSpec
    from wsolbench.runs.execute import evaluate_weights

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
        count_workers=args.workers,
        threads=args.threads,
        profile=_profile_settings(args),
        summed_pxap=args.summed_pxap,
    )
    _print_result(evaluate_weights(spec, args.weights))
    return 0


def cmd_run(args) -> int:
    from wsolbench.runs.context import RunSpec
    from wsolbench.runs.execute import execute

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
            count_workers=args.workers,
            threads=args.threads,
            profile=_profile_settings(args),
            summed_pxap=args.summed_pxap,
        )
    )
    _print_result(result)
    return 0


def _profile_settings(args):
    """``--profile``: the timing settings (throughput at the evaluation batch size); else None,
    and a ``--profile-*`` option given without ``--profile`` is an error."""
    refuse_without(args, "profile", PROFILE_DESTS)
    if not args.profile:
        return None
    return profile_settings(args, args.batch_size)


def _print_result(result) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun or srun, rank 0 alone reports (joining the group set RANK)
    from wsolbench.data.fingerprint import short

    print(
        f"{result.method} on {result.protocol} (seed {result.seed}, data "
        f"{short(result.data_sha256)}, pretrained: {result.pretrained})"
    )
    for split, by_policy in result.metrics.items():
        print(metrics_table(by_policy, title=f"{split} split"))
    if result.cost:
        from wsolbench.cost.formatting import format_cost

        print("cost\n" + format_cost(result.cost))


def metrics_table(by_policy: dict[str, dict[str, float]], title: str) -> str:
    from tabulate import tabulate

    from wsolbench.results.record import METRIC_KEYS

    present = {k for m in by_policy.values() for k in m}
    # canonical keys first, then any other IoU threshold (evaluate-maps --iou 40 60)
    keys = [k for k in METRIC_KEYS if k in present] + sorted(present - set(METRIC_KEYS))
    rows = [[policy] + [m.get(k) for k in keys] for policy, m in by_policy.items()]
    table = tabulate(rows, headers=["policy"] + keys, floatfmt=".2f", missingval="–")
    return f"{title}\n{table}\n"
