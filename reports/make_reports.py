"""Regenerate every generated file of ``reports/`` (``make reports`` runs this).

Steps, each through the ``wsolbench`` command line or the library call behind it:

1. **Runs.** For every method of :data:`METHODS` that ``wsolbench list`` knows (others are skipped
   with a message) and every seed of :data:`SEEDS`::

       wsolbench run --method M --dataset synthetic --seed S \\
           --work-dir work_dirs/reports/M/seedS --resume --profile [--no-pretrained]

   ``--resume`` keeps a finished run (adding its cost if it has none) and continues an interrupted
   one, so only missing runs cost time.
2. **Results.** Each ``result.json`` is copied to ``reports/results/synthetic-v1/M/seedS/``; the
   committed leaderboards are rendered from these copies alone.
3. **Leaderboards** (``wsolbench compare reports/results/synthetic-v1``): ``leaderboard.md``,
   ``.csv``, ``.tex``, ``.html`` (oracle policy) and ``leaderboard-select.md`` (select policy).
   No timestamp and no machine path in them: the same results give the same bytes, which
   ``tests/test_reports.py`` checks against the committed files.
4. **Cost** (``wsolbench profile --method M --dataset D --json``): ``cost/<D>/<M>.json``, and
   ``cost.md`` / ``cost.json`` with one table per protocol and device.
5. **Figures** (``wsolbench visualize``): ``figures/curves-synthetic.png`` (BoxAcc vs threshold,
   seed 0 of every method) and ``figures/overlays-<M>.png`` (16 test images of seed 0).
6. **Report**: ``report.html``, one self-contained file (tables inline, figures as base64).

Usage: ``python reports/make_reports.py [--methods M ...] [--seeds S ...] [--no-runs]
[--cost-datasets D ...]``; ``--no-runs`` re-renders from ``reports/results/`` without running.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPORTS = Path(__file__).resolve().parent
REPO = REPORTS.parent
DATASET = "synthetic"
PROTOCOL = "synthetic-v1"
# method -> extra `wsolbench run` flags. The CLIP baselines run without pretrained weights here:
# the synthetic board must build on a machine without a CLIP checkpoint.
METHODS: dict[str, list[str]] = {
    "center": [],
    "cam": [],
    "tedloc": [],
    "clip_patch": ["--no-pretrained"],
    "clip_gradcam": ["--no-pretrained"],
}
SEEDS = (0, 1, 2)
COST_DATASETS = ("synthetic", "cub")
# Latency is timed only here: at 224 px a batch-1 call of a ViT takes seconds on this shared 2-core
# CPU, so the CUB table gives the exact figures (parameters, MACs) and leaves timing to the target
# device (`wsolbench profile --method M` there).
TIMED_COST_DATASETS = ("synthetic",)
# One torch thread while timing: on this CPU, shared with other jobs, every parallel op with two
# threads waits for the slower thread's time slice (measured: a 13-MMAC model took 530 ms per call
# with 2 threads under load and 2 ms with 1).
PROFILE_THREADS = "1"
WORK = Path("work_dirs/reports")
RESULTS = REPORTS / "results" / PROTOCOL
FIGURES = REPORTS / "figures"
COST_DIR = REPORTS / "cost"
LEADERBOARD_FILES = {
    "leaderboard.md": ("oracle", "md"),
    "leaderboard.csv": ("oracle", "csv"),
    "leaderboard.tex": ("oracle", "latex"),
    "leaderboard.html": ("oracle", "html"),
    "leaderboard-select.md": ("select", "md"),
}


def wsolbench(*argv: str | Path) -> int:
    """Run ``python -m wsolbench ARGV`` (a fresh process: timings are not disturbed by this one)."""
    command = [sys.executable, "-m", "wsolbench", *map(str, argv)]
    print("$ wsolbench " + " ".join(map(str, argv)), flush=True)
    return subprocess.call(command, cwd=REPO)


def known_methods(wanted: list[str]) -> list[str]:
    from wsolbench.registry import list_methods

    known = set(list_methods())
    for name in wanted:
        if name not in known:
            print(f"skip {name}: `wsolbench list` does not know it (not in this checkout yet)")
    return [m for m in wanted if m in known]


def run_all(
    methods: list[str], seeds: tuple[int, ...], finished_only: bool = False
) -> dict[str, str]:
    """Step 1; returns {"method/seedS": reason} for the runs left out (failed, or not finished
    with ``finished_only``, which starts no training and only adds missing cost)."""
    failed = {}
    for method in methods:
        for seed in seeds:
            work_dir = WORK / method / f"seed{seed}"
            result = REPO / work_dir / "result.json"
            if finished_only and not result.is_file():
                failed[f"{method}/seed{seed}"] = "not finished when the reports were made"
                print(f"skip {method} seed {seed}: {work_dir} holds no finished run")
                continue
            if result.is_file() and json.loads(result.read_text(encoding="utf-8")).get("cost"):
                print(f"keep {work_dir}: finished, with its cost")  # what --resume would do
                continue
            status = wsolbench(
                "run", "--method", method, "--dataset", DATASET, "--seed", seed,
                "--work-dir", work_dir, "--resume",
                "--profile", "--profile-threads", PROFILE_THREADS, *METHODS.get(method, []),
            )  # fmt: skip
            if status != 0:
                failed[f"{method}/seed{seed}"] = f"exit status {status}"
                print(f"run {method} seed {seed} failed (exit status {status}); left out")
    return failed


def collect_results(methods: list[str], seeds: tuple[int, ...]) -> None:
    """Step 2: copy each finished run's result.json under reports/results/ (from scratch)."""
    shutil.rmtree(RESULTS, ignore_errors=True)
    for method in methods:
        for seed in seeds:
            source = REPO / WORK / method / f"seed{seed}" / "result.json"
            if source.is_file():
                target = RESULTS / method / f"seed{seed}" / "result.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


def render_leaderboards(results: Path = RESULTS, out_dir: Path = REPORTS) -> list[Path]:
    """Step 3: the leaderboard files from the results under ``results`` (deterministic)."""
    from wsolbench.atomic import write_text_atomic
    from wsolbench.leaderboard import compare

    written = []
    for name, (policy, fmt) in LEADERBOARD_FILES.items():
        path = Path(out_dir) / name
        write_text_atomic(path, compare([results], policy=policy, fmt=fmt))
        written.append(path)
    return written


def measure_cost(methods: list[str], datasets: tuple[str, ...]) -> dict[str, dict[str, dict]]:
    """Step 4: ``wsolbench profile`` per (dataset, method) → {dataset: {method: cost}}."""
    shutil.rmtree(COST_DIR, ignore_errors=True)
    costs: dict[str, dict[str, dict]] = {}
    for dataset in datasets:
        for method in methods:
            out = COST_DIR / dataset / f"{method}.json"
            extra = ["--batch-size", "64", "--threads", PROFILE_THREADS]
            if dataset not in TIMED_COST_DATASETS:
                extra += ["--no-timing"]
            status = wsolbench(
                "profile", "--method", method, "--dataset", dataset, "--json", out, *extra
            )
            if status == 0 and out.is_file():
                costs.setdefault(dataset, {})[method] = json.loads(out.read_text())
            else:
                print(f"profile {method} on {dataset} failed (exit status {status}); left out")
    return costs


def load_cost() -> dict[str, dict[str, dict]]:
    """The cost records already in ``reports/cost/`` (``--reuse-cost``)."""
    costs: dict[str, dict[str, dict]] = {}
    for path in sorted(COST_DIR.glob("*/*.json")):
        costs.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())
    return costs


def cost_tables(costs: dict[str, dict[str, dict]], fmt: str = "github") -> list[tuple[str, str]]:
    """(title, table) per (protocol, device): latencies of two devices never share a table."""
    from tabulate import tabulate

    from wsolbench.profile import latency_device

    headers = [
        "Method", "Params (M)", "Trainable (M)", "Inference (M)", "MACs (G)",
        "Latency median (ms)", "Latency p90 (ms)", "Throughput (img/s)", "Peak mem (MiB)",
        "Grad at inference",
    ]  # fmt: skip
    tables = []
    for by_method in costs.values():
        by_device: dict[str, list[dict]] = {}
        for cost in by_method.values():
            by_device.setdefault(latency_device(cost), []).append(cost)
        for device, group in by_device.items():
            first = group[0]
            height, width = first["input_size"]
            rows = []
            for c in sorted(group, key=lambda c: c["macs"]):
                p, lat, thr = c["params"], c.get("latency_ms"), c.get("throughput")
                memory = c.get("peak_memory_mb")
                rows.append([
                    c["method"], f"{p['total'] / 1e6:.3f}", f"{p['trainable'] / 1e6:.3f}",
                    f"{p['inference'] / 1e6:.3f}", f"{c['macs'] / 1e9:.3f}",
                    f"{lat['median']:.2f}" if lat else "–", f"{lat['p90']:.2f}" if lat else "–",
                    f"{thr['images_per_s']:.1f}" if thr else "–",
                    "–" if memory is None else f"{memory:.0f}",
                    "yes" if c.get("grad_at_inference") else "no",
                ])  # fmt: skip
            title = f"{first['protocol']} ({height}×{width}, {first['num_classes']} classes), "
            if first.get("latency_ms"):
                title += (
                    f"{device}: throughput at batch {first['throughput']['batch']}, 1-min load "
                    "average at each measurement "
                    + ", ".join(f"{c['method']} {c.get('load_avg_1min')}" for c in group)
                )
            else:
                title += "parameters and MACs only (not timed on this CPU)"
            table = tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
            tables.append((title, table))
    return tables


COST_HEADER = """\
Generated by `make reports` (`python reports/make_reports.py`) with `wsolbench profile --method M
--dataset D --json reports/cost/D/M.json`: each method built from its preset for the dataset, random
initialisation (cost does not depend on the weights), no training.

- Params: total / trainable / needed at inference (what `weights.pt` holds), millions.
- MACs (G): multiply-accumulates of one image at the protocol size. Counter: {counter}.
- Latency: batch 1, median and p90 over 50 timed calls after 10 warm-up calls, `predict` plus the
  maps' copy to host memory, one torch thread (`--threads 1`: stable on a shared CPU); methods that
  need gradients at inference are timed with them.
- Throughput: images per second of the median batch-64 call. Peak mem: {memory}.
- Each table holds one device: latencies of different devices are not comparable. This machine's
  CPU is shared with other jobs (the load average at each measurement is given); latencies here are
  indicative, MACs and parameters are exact.
"""


def write_cost(costs: dict[str, dict[str, dict]]) -> Path:
    from wsolbench.atomic import write_text_atomic
    from wsolbench.profile import MACS_COUNTER

    memory = "peak extra memory of the batch-64 calls (CPU: resident set size; CUDA: allocated)"
    lines = ["# Cost", "", COST_HEADER.format(counter=MACS_COUNTER, memory=memory)]
    for title, table in cost_tables(costs):
        lines += [f"## {title}", "", table, ""]
    write_text_atomic(REPORTS / "cost.md", "\n".join(lines))
    write_text_atomic(
        REPORTS / "cost.json", json.dumps(costs, indent=2, sort_keys=True, default=str) + "\n"
    )
    return REPORTS / "cost.md"


def make_figures(methods: list[str]) -> list[Path]:
    """Step 5: curves of seed 0 of every method, and an overlay grid per method."""
    shutil.rmtree(FIGURES, ignore_errors=True)
    FIGURES.mkdir(parents=True)
    written = []
    seed0 = [RESULTS / m / "seed0" / "result.json" for m in methods]
    seed0 = [p for p in seed0 if p.is_file()]
    if seed0:
        if wsolbench("visualize", *seed0, "--curves-only", "--output", FIGURES) == 0:
            (FIGURES / "curves.png").rename(FIGURES / "curves-synthetic.png")
            written.append(FIGURES / "curves-synthetic.png")
    for method in methods:
        work_dir = WORK / method / "seed0"
        if not (REPO / work_dir / "result.json").is_file():
            continue
        status = wsolbench("visualize", work_dir, "--n", "16", "--output", FIGURES, "--no-curves")
        if status == 0:
            target = FIGURES / f"overlays-{method}.png"
            (FIGURES / f"{method}-seed0-overlays.png").rename(target)
            written.append(target)
    return written


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _published_table() -> str:
    from tabulate import tabulate

    from wsolbench.leaderboard import (
        COLUMN_NAMES,
        MISSING,
        default_published_path,
        load_published,
    )
    from wsolbench.results import METRIC_KEYS

    rows = load_published(default_published_path())
    keys = [k for k in METRIC_KEYS if any(k in r.mean for r in rows)]
    body = [
        [r.dataset, r.display_name, r.source, r.policy]
        + [repr(r.mean[k]) if k in r.mean else MISSING for k in keys]
        for r in rows
    ]
    headers = ["Dataset", "Method", "Source", "Policy", *(COLUMN_NAMES[k] for k in keys)]
    return tabulate(body, headers=headers, tablefmt="html", disable_numparse=True)


def write_report(methods: list[str], skipped: list[str], failed: dict[str, str], costs) -> Path:
    """Step 6: one self-contained HTML file."""
    from wsolbench.atomic import write_text_atomic

    board = (REPORTS / "leaderboard.html").read_text(encoding="utf-8")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>wsolbench report</title>',
        "<style>body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}caption{text-align:left;color:#444}"
        "img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}</style></head><body>",
        "<h1>wsolbench report: synthetic-v1</h1>",
        "<p>Regenerated by <code>make reports</code> (<code>python reports/make_reports.py</code>)"
        "; every number comes from a result file under <code>reports/results/</code> or a "
        "<code>wsolbench profile</code> record under <code>reports/cost/</code>.</p>",
        f"<p>Methods: {', '.join(methods) or 'none'}; seeds {', '.join(map(str, SEEDS))}.</p>",
    ]
    if skipped:
        parts.append(f"<p>Not in this checkout when generated (skipped): {', '.join(skipped)}.</p>")
    if failed:
        listing = ", ".join(f"{k} ({v})" for k, v in failed.items())
        parts.append(f"<p>Runs left out: {html.escape(listing)}.</p>")
    parts += ["<h2>Leaderboard (oracle policy)</h2>", board]
    from wsolbench.leaderboard import compare

    parts += [
        "<h2>Leaderboard (select policy: τ chosen on val)</h2>",
        compare([RESULTS], policy="select", fmt="html"),
        "<h2>Cost</h2>",
        "<p>See <code>reports/cost.md</code> for the definitions; one table per device.</p>",
    ]
    for title, table in cost_tables(costs, fmt="html"):
        parts += [f"<h3>{html.escape(title)}</h3>", table]
    parts.append("<h2>BoxAcc vs threshold</h2>")
    curves = FIGURES / "curves-synthetic.png"
    if curves.is_file():
        parts.append(_image(curves, "BoxAcc vs threshold"))
    parts.append("<h2>Overlays (seed 0, 16 test images)</h2>")
    for method in methods:
        path = FIGURES / f"overlays-{method}.png"
        if path.is_file():
            parts += [f"<h3>{html.escape(method)}</h3>", _image(path, f"overlays of {method}")]
    parts += [
        "<h2>Published figures (†: from papers, not run by wsolbench)</h2>",
        "<p>Shown next to runs of the same dataset by <code>wsolbench compare</code>; none is "
        "on synthetic-v1.</p>",
        _published_table(),
        "</body></html>",
    ]
    path = REPORTS / "report.html"
    write_text_atomic(path, "\n".join(parts) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--cost-datasets", nargs="+", default=list(COST_DATASETS))
    parser.add_argument(
        "--no-runs", action="store_true", help="use reports/results/ as committed; run nothing"
    )
    parser.add_argument(
        "--reuse-cost", action="store_true", help="keep reports/cost/ as measured before"
    )
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="start no training: use the finished runs in work_dirs/reports (adding their cost)",
    )
    args = parser.parse_args(argv)
    methods = known_methods(args.methods)
    skipped = [m for m in args.methods if m not in methods]
    seeds = tuple(args.seeds)
    failed: dict[str, str] = {}
    if not args.no_runs:
        failed = run_all(methods, seeds, finished_only=args.finished_only)
        collect_results(methods, seeds)
    for path in render_leaderboards():
        print(f"written {path.relative_to(REPO)}")
    if args.reuse_cost:
        costs = load_cost()
    else:
        costs = measure_cost(methods, tuple(args.cost_datasets))
    print(f"written {write_cost(costs).relative_to(REPO)}")
    for path in make_figures(methods):
        print(f"written {path.relative_to(REPO)}")
    print(f"written {write_report(methods, skipped, failed, costs).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
