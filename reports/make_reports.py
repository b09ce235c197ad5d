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
4. **Cost** (``wsolbench profile --method M --dataset D --json``, one torch thread, timed on
   both protocols: :data:`PROFILE_FLAGS`): ``cost/<D>/<M>.json``; GenPromp's cost-only record
   (``python -m wsolbench.cost_genpromp --json cost/cub/genpromp.json``, needs the
   ``genpromp-cost`` extra); ``cost.md`` / ``cost.json`` with one table per protocol and device,
   latencies not measured clean marked ``§``, and the TeD-Loc / GenPromp ratio.
5. **Figures** (``wsolbench visualize``): ``figures/curves-synthetic.png`` (BoxAcc vs threshold,
   seed 0 of every method) and ``figures/overlays-<M>.png`` (16 test images of seed 0).
6. **Report**: ``report.html``, one self-contained file (tables inline, figures as base64).

Usage: ``python reports/make_reports.py [--methods M ...] [--seeds S ...] [--no-runs]
[--cost-datasets D ...] [--cost-only] [--reuse-cost]``; ``--no-runs`` re-renders from
``reports/results/`` without running; ``--cost-only`` runs step 4 alone (the cost files).
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
# `wsolbench profile` flags per dataset. At 224 px a batch-1 call of the ViT-B/16 methods takes
# about a second on one thread of this CPU, so CUB is timed with fewer calls (5 warm-up, 20 timed)
# and a throughput batch of 4; synthetic (96 px) with the full 10 + 50 and a batch of 64.
PROFILE_FLAGS: dict[str, list[str]] = {
    "synthetic": ["--batch-size", "64"],
    "cub": ["--warmup", "5", "--runs", "20", "--batch-size", "4", "--throughput-runs", "3"],
}
GENPROMP_DATASET = "cub"  # GenPromp's cost-only row (wsolbench.cost_genpromp) goes in this table
# One torch thread while timing: on this CPU, shared with other jobs, every parallel op with two
# threads waits for the slower thread's time slice (measured: a 13-MMAC model took 530 ms per call
# with 2 threads under load and 2 ms with 1).
PROFILE_THREADS = "1"
WORK = Path("work_dirs/reports")
RESULTS = REPORTS / "results" / PROTOCOL
FIGURES = REPORTS / "figures"
COST_DIR = REPORTS / "cost"
CI_RESAMPLES = 1000  # compare --ci: bootstrap resamples of the test images (seed 0)
# file -> (policy, format, bootstrap resamples: 0 = no intervals)
LEADERBOARD_FILES = {
    "leaderboard.md": ("oracle", "md", 0),
    "leaderboard.csv": ("oracle", "csv", 0),
    "leaderboard.tex": ("oracle", "latex", 0),
    "leaderboard.html": ("oracle", "html", 0),
    "leaderboard-select.md": ("select", "md", 0),
    "leaderboard-ci.md": ("oracle", "md", CI_RESAMPLES),
    "leaderboard-ci.csv": ("oracle", "csv", CI_RESAMPLES),
    "leaderboard-ci.tex": ("oracle", "latex", CI_RESAMPLES),
    "leaderboard-ci.html": ("oracle", "html", CI_RESAMPLES),
}
# file -> (row A, row B): `wsolbench diff` of two methods' seeds on the same test images
DIFF_FILES = {
    "diff-tedloc-cam.md": ("tedloc", "cam"),
    "diff-tedloc-center.md": ("tedloc", "center"),
    "diff-cam-center.md": ("cam", "center"),
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
    """Step 2: copy each finished run's result.json and per-image records under
    reports/results/ (from scratch)."""
    shutil.rmtree(RESULTS, ignore_errors=True)
    for method in methods:
        for seed in seeds:
            source = REPO / WORK / method / f"seed{seed}"
            if (source / "result.json").is_file():
                target = RESULTS / method / f"seed{seed}"
                target.mkdir(parents=True, exist_ok=True)
                for name in ("result.json", "per_image.npz"):
                    if (source / name).is_file():
                        shutil.copyfile(source / name, target / name)


def render_leaderboards(results: Path = RESULTS, out_dir: Path = REPORTS) -> list[Path]:
    """Step 3: the leaderboard files from the results under ``results`` (deterministic)."""
    from wsolbench.atomic import write_text_atomic
    from wsolbench.intervals import diff, render_diff
    from wsolbench.leaderboard import compare

    written = []
    for name, (policy, fmt, resamples) in LEADERBOARD_FILES.items():
        path = Path(out_dir) / name
        write_text_atomic(path, compare([results], policy=policy, fmt=fmt, ci=resamples))
        written.append(path)
    for name, (a, b) in DIFF_FILES.items():
        if (results / a).is_dir() and (results / b).is_dir():
            diffs = diff([results / a], [results / b], resamples=CI_RESAMPLES)
            path = Path(out_dir) / name
            write_text_atomic(path, render_diff(f"A: {a}", f"B: {b}", diffs))
            written.append(path)
    return written


def wait_for_quiet(max_wait: float, probe: float = 3.0) -> bool:
    """Wait until a timing would be clean: every ``probe`` seconds, spin one thread for ``probe``
    seconds under the same monitor as ``profile`` and apply its rule (``CLEAN_RULE``); False when
    ``max_wait`` seconds pass first."""
    import time

    from wsolbench.profile import TimingMonitor, describe_conditions

    deadline = time.monotonic() + max_wait
    while True:
        with TimingMonitor(int(PROFILE_THREADS)) as monitor:
            end = time.perf_counter() + probe
            while time.perf_counter() < end:
                pass
        if monitor.conditions["clean"]:
            return True
        if time.monotonic() > deadline:
            return False
        print(f"  waiting for a quiet machine: {describe_conditions(monitor.conditions)}")
        time.sleep(probe)


def measure_cost(
    methods: list[str], datasets: tuple[str, ...], retries: int = 0, max_wait: float = 300.0
) -> dict[str, dict[str, dict]]:
    """Step 4: ``wsolbench profile`` per (dataset, method) → {dataset: {method: cost}}, and
    GenPromp's cost-only record. Only the records measured are rewritten: other methods' records
    and the device checks under ``cost/`` (``benchmarks/gpu_check.sh``) are kept.

    ``retries``: a timing that was not clean (``wsolbench.profile.CLEAN_RULE``) is measured again,
    up to this many times, each after waiting (at most ``max_wait`` s) for a quiet machine.
    """
    from wsolbench.profile import latency_clean

    costs: dict[str, dict[str, dict]] = {}
    for dataset in datasets:
        for method in methods:
            out = COST_DIR / dataset / f"{method}.json"
            extra = [*PROFILE_FLAGS.get(dataset, ["--no-timing"]), "--threads", PROFILE_THREADS]
            for attempt in range(retries + 1):
                if attempt:
                    print(f"{method} on {dataset}: timing not clean; again ({attempt}/{retries})")
                    wait_for_quiet(max_wait)
                status = wsolbench(
                    "profile", "--method", method, "--dataset", dataset, "--json", out, *extra
                )
                if status != 0 or not out.is_file():
                    break
                cost = json.loads(out.read_text())
                if cost.get("latency_ms") is None or latency_clean(cost):
                    break
            if status == 0 and out.is_file():
                costs.setdefault(dataset, {})[method] = json.loads(out.read_text())
            else:
                print(f"profile {method} on {dataset} failed (exit status {status}); left out")
        if dataset == GENPROMP_DATASET:
            out = COST_DIR / dataset / "genpromp.json"
            command = [sys.executable, "-m", "wsolbench.cost_genpromp", "--json", str(out)]
            print("$ python -m wsolbench.cost_genpromp --json " + str(out), flush=True)
            if subprocess.call(command, cwd=REPO) == 0 and out.is_file():
                costs.setdefault(dataset, {})["genpromp"] = json.loads(out.read_text())
            else:
                print("GenPromp's cost not measured (pip install -e '.[genpromp-cost]'); left out")
    return costs


def load_cost() -> dict[str, dict[str, dict]]:
    """The cost records already in ``reports/cost/`` (``--reuse-cost``)."""
    costs: dict[str, dict[str, dict]] = {}
    for path in sorted(COST_DIR.glob("*/*.json")):
        costs.setdefault(path.parent.name, {})[path.stem] = json.loads(path.read_text())
    return costs


COST_HEADERS = [
    "Method", "Params (M)", "Trainable (M)", "Inference (M)", "MACs (G)",
    "Latency median (ms)", "Latency p90 (ms)", "Runs", "Throughput (img/s)", "Peak mem (MiB)",
    "Grad at inference", "Timing conditions",
]  # fmt: skip


def _cost_row(c: dict) -> list[str]:
    from wsolbench.profile import (
        LATENCY_MARK,
        MACS_LOWER_BOUND_MARK,
        describe_conditions,
        latency_clean,
        macs_complete,
    )

    p, lat, thr = c["params"], c.get("latency_ms"), c.get("throughput")
    memory = c.get("peak_memory_mb")
    mark = "" if latency_clean(c) else LATENCY_MARK
    macs = ("" if macs_complete(c) else MACS_LOWER_BOUND_MARK) + f"{c['macs'] / 1e9:.3f}"
    if c.get("cost_only"):
        name, conditions = f"{c['method']} (cost only)", "not timed (see notes)"
    else:
        name = c["method"]
        conditions = describe_conditions(c.get("timing_conditions")) if lat else "not timed"
    return [
        name, f"{p['total'] / 1e6:.3f}", f"{p['trainable'] / 1e6:.3f}",
        f"{p['inference'] / 1e6:.3f}", macs,
        f"{lat['median']:.2f}{mark}" if lat else "–", f"{lat['p90']:.2f}{mark}" if lat else "–",
        f"{lat['warmup']} + {lat['runs']}" if lat else "–",
        f"{thr['images_per_s']:.1f}{mark}" if thr else "–",
        "–" if memory is None else f"{memory:.0f}",
        "yes" if c.get("grad_at_inference") else "no", conditions,
    ]  # fmt: skip


def genpromp_notes(by_method: dict[str, dict]) -> list[str]:
    """The cost-only row's provenance and the TeD-Loc / GenPromp ratios (empty without it)."""
    genpromp = by_method.get("genpromp")
    if not genpromp:
        return []
    parts = genpromp["components"]
    listing = "; ".join(
        f"{name} {c['macs_per_call'] / 1e9:.2f} GMACs x "
        + (f"{c['calls_per_image']} per image" if c["calls_per_image"] else "")
        + (f"{c['calls_per_round']} per round" if c["calls_per_round"] else "")
        + f" ({c['params'] / 1e6:.1f} M params)"
        for name, c in parts.items()
    )
    notes = [
        "genpromp (cost only): GenPromp's inference graph built from its published architecture "
        "(Stable Diffusion v1-4's UNet and VAE encoder, CLIP ViT-L/14 text transformer, "
        "EfficientNet-B7 classifier) with random weights, counted with the same MAC counter "
        "(`python -m wsolbench.cost_genpromp`); no localization figures, not timed. Per image: "
        f"{listing}. The row is one localization round (the ground-truth class) plus the "
        f"classifier; with the top-1 round of its CUB config it is "
        f"{genpromp['macs_two_rounds'] / 1e9:.1f} GMACs.",
    ]
    tedloc = by_method.get("tedloc")
    if tedloc:
        macs = tedloc["macs"] / genpromp["macs"]
        params = tedloc["params"]["inference"] / genpromp["params"]["inference"]
        notes.append(
            f"TeD-Loc / GenPromp: MACs {tedloc['macs'] / 1e9:.3f} G / "
            f"{genpromp['macs'] / 1e9:.1f} G = {macs:.5f} ({1 / macs:.0f}x fewer); inference "
            f"parameters {tedloc['params']['inference'] / 1e6:.2f} M / "
            f"{genpromp['params']['inference'] / 1e6:.1f} M = {params:.4f} ({1 / params:.0f}x "
            "fewer). TeD-Loc at 224 x 224, GenPromp at its 512 x 512 (classifier 600 x 600)."
        )
    return notes


def cost_tables(
    costs: dict[str, dict[str, dict]], fmt: str = "github"
) -> list[tuple[str, str, list[str]]]:
    """(title, table, notes) per (protocol, device): latencies of two devices never share a table.
    Cost-only records (GenPromp) join every table of their protocol, untimed."""
    from tabulate import tabulate

    from wsolbench.profile import latency_device

    tables = []
    for by_method in costs.values():
        cost_only = [c for c in by_method.values() if c.get("cost_only")]
        by_device: dict[str, list[dict]] = {}
        for cost in by_method.values():
            if not cost.get("cost_only"):
                by_device.setdefault(latency_device(cost), []).append(cost)
        for device, group in by_device.items():
            first = group[0]
            height, width = first["input_size"]
            rows = [_cost_row(c) for c in sorted(group + cost_only, key=lambda c: c["macs"])]
            title = f"{first['protocol']} ({height}×{width}, {first['num_classes']} classes), "
            if first.get("latency_ms"):
                title += f"{device}, throughput at batch {first['throughput']['batch']}"
            else:
                title += "parameters and MACs only"
            table = tabulate(rows, headers=COST_HEADERS, tablefmt=fmt, disable_numparse=True)
            tables.append((title, table, genpromp_notes(by_method)))
    return tables


COST_HEADER = """\
Generated by `make reports` (`python reports/make_reports.py`) with `wsolbench profile --method M
--dataset D --threads 1 --json reports/cost/D/M.json` (flags per dataset: `PROFILE_FLAGS` in
`make_reports.py`; synthetic: 10 warm-up + 50 timed calls, throughput batch 64; cub: 5 + 20,
batch 4) and `python -m wsolbench.cost_genpromp --json reports/cost/cub/genpromp.json`: each
method built from its preset for the dataset, random initialisation (cost does not depend on the
weights), no training.

- Params: total / trainable / needed at inference (what `weights.pt` holds), millions.
- MACs (G): multiply-accumulates of one image at the protocol size. Counter: {counter}.
  {lower_bound}
- Latency: batch 1, median and p90 over the timed calls after the warm-up (Runs: warm-up + timed),
  `predict` plus the maps' copy to host memory, one torch thread (`--threads 1`); methods that
  need gradients at inference are timed with them.
- Throughput: images per second of the median call at the table's batch. Peak mem: {memory}.
- Timing conditions: how many of the machine's cores other processes kept busy during the timed
  calls (read from /proc/stat minus the profiling process), how much of the time the timing
  thread waited for a CPU (/proc/self/task/*/schedstat), and the 1-minute load average before
  them. A latency is {rule}. {mark}
- Each table holds one device: latencies of different devices are not comparable. GPU figures:
  `bash benchmarks/gpu_check.sh` writes `reports/cost/gpu_check-<device>.json` / `.md`.
"""


def write_cost(costs: dict[str, dict[str, dict]]) -> Path:
    from wsolbench.atomic import write_text_atomic
    from wsolbench.profile import CLEAN_RULE, LATENCY_NOTE, MACS_COUNTER, MACS_LOWER_BOUND_NOTE

    memory = "peak extra memory of the throughput calls (CPU: resident set size; CUDA: allocated)"
    header = COST_HEADER.format(
        counter=MACS_COUNTER,
        lower_bound=MACS_LOWER_BOUND_NOTE + ".",
        memory=memory,
        rule=CLEAN_RULE,
        mark=LATENCY_NOTE + ".",
    )
    lines = ["# Cost", "", header]
    for title, table, notes in cost_tables(costs):
        lines += [f"## {title}", "", table, ""]
        lines += [f"- {note}" for note in notes] + ([""] if notes else [])
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
    for title, table, notes in cost_tables(costs, fmt="html"):
        parts += [f"<h3>{html.escape(title)}</h3>", table]
        parts += [f"<p>{html.escape(note)}</p>" for note in notes]
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
        "--cost-only",
        action="store_true",
        help="step 4 alone: measure cost (or --reuse-cost) and write cost.md / cost.json; no "
        "runs, leaderboards, figures or report.html",
    )
    parser.add_argument(
        "--clean-retries",
        type=int,
        default=0,
        help="re-measure a cost whose timing was not clean up to N times, each after waiting for "
        "a quiet machine (at most --quiet-wait seconds)",
    )
    parser.add_argument("--quiet-wait", type=float, default=300.0)
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
    if not args.no_runs and not args.cost_only:
        failed = run_all(methods, seeds, finished_only=args.finished_only)
        collect_results(methods, seeds)
    if not args.cost_only:
        for path in render_leaderboards():
            print(f"written {path.relative_to(REPO)}")
    # The datasets not measured this time keep their records (e.g. --cost-datasets cub).
    costs = load_cost()
    if not args.reuse_cost:
        measured_costs = measure_cost(
            methods, tuple(args.cost_datasets), args.clean_retries, args.quiet_wait
        )
        for dataset, measured in measured_costs.items():
            costs.setdefault(dataset, {}).update(measured)
    print(f"written {write_cost(costs).relative_to(REPO)}")
    if args.cost_only:
        return 0
    for path in make_figures(methods):
        print(f"written {path.relative_to(REPO)}")
    print(f"written {write_report(methods, skipped, failed, costs).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
