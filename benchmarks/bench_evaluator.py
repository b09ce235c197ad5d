"""Evaluator speed: ``evaluate-maps`` at ILSVRC scale, and the fast path against the literal sweep.

Workload (seeded): CAM-like maps, i.e. random low-res maps (7 x 7 or 14 x 14, uniform in [0, 1),
float32 like a model's output) resized bicubic to ``--size`` and min-max normalized with
:func:`wsolbench.metrics.normalize_map`, each with one or two random GT boxes whose sides are
20-90 % of the map; ``noisy`` maps add per-pixel Gaussian noise (the "poor map" whose levels fall
apart into thousands of components, wsolevaluation issue #52).

By default it measures ``evaluate-maps`` as a user runs it: ``--n`` maps are written once as
``<id>.npy`` (float32) with a metadata split of their boxes and labels (1,000 classes) and a
predictions file (top-5 classes, the first right about 3 times in 4), then ``wsolbench
evaluate-maps --predictions`` (V1 + V2 + GT-known + Top-1/5, step ``--step``) runs as a whole
process with 1 worker and with ``--workers`` workers (after ``sync``, so that the maps' own
write-back is not timed). It prints the wall time and ms per map of each, its CPU time per map
(user + system, workers included), the ratio of the wall times, whether the counts are
identical, the ratio to the reference evaluator's structure
(``literal_box_counts(reference_structure=True)``) timed on ``--reference-sample`` of the maps,
and the fast path's time per map on noisy against CAM-like maps (``--kinds-sample`` of each,
timed map by map in turn in this process). Progress is one line per 10 %.

``--in-memory`` times the sides on maps held in memory instead, map by map in turn so that all
see the same machine load, single process, single thread (and ``--threads`` for the fast path):

* ``fast``: :class:`wsolbench.metrics.BoxCounter` (:mod:`wsolbench.metrics.level_sets`: a flood
  and union-find sweeps per map compiled with numba; no contour search). Its one-off cost,
  compiling the numba code or loading it from the on-disk cache, is paid on a warm-up map before
  timing and reported on its own line (``warmup``).
* ``literal``: :func:`wsolbench.metrics.literal.literal_box_counts`, one contour search per
  threshold shared by both rules -- a plain baseline that is already faster than the reference.
* ``reference`` (``--literal reference`` or ``both``): the same module with
  ``reference_structure=True``, i.e. the reference evaluator's own structure (one full sweep per
  rule, per-threshold IoU slicing as it does it): what getting both numbers from it costs.

The counts of every side must be identical; the script exits with status 1 otherwise.

``--stages`` splits the fast path's time per map on ``--n`` maps in memory into its stages
(checking and quantizing the map, the flood, sorting the filled map's pixels, the foreground
and holes sweeps, and :func:`~wsolbench.metrics.level_sets.threshold_scores` whole), each stage
run over all maps in turn.

    python benchmarks/bench_evaluator.py --n 50000            # ILSVRC's validation set's size
    python benchmarks/bench_evaluator.py --stages --n 500     # where a map's time goes
    python benchmarks/bench_evaluator.py --in-memory          # 2,000 maps, fast vs literal
    python benchmarks/bench_evaluator.py --in-memory --literal both --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from wsolbench import metrics as M
from wsolbench.metrics import literal as L
from wsolbench.util.atomic import write_json_atomic
from wsolbench.util.heap import keep_freed_memory

IOUS = (30, 50, 70)


MAP_KINDS = ("cam", "noisy")


def iter_workload(n: int, size: int, seed: int, kind: str = "cam"):
    """The maps and boxes of :func:`make_workload`, one (map, boxes) pair at a time. ``noisy``:
    the CAM-like map plus per-pixel Gaussian noise (sigma 0.15 of its range), re-normalized: the
    "poor map" whose levels fall apart into thousands of components (wsolevaluation issue #52)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        low = int(rng.choice([7, 14]))
        cam = rng.random((low, low)).astype(np.float32)
        scoremap = M.normalize_map(cam, (size, size))
        if kind == "noisy":
            noise = rng.normal(0.0, 0.15, (size, size))
            scoremap = M.normalize_map((scoremap + noise).astype(np.float32), (size, size))
        gt = []
        for _ in range(int(rng.integers(1, 3))):
            w, h = (rng.uniform(0.2, 0.9, 2) * size).astype(int)
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            gt.append([x0, y0, x0 + w, y0 + h])
        yield scoremap, np.asarray(gt, dtype=np.int64)


def make_workload(
    n: int, size: int, seed: int, kind: str = "cam"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n [size, size] float64 maps in [0, 1] of ``kind`` and their [G, 4] GT boxes (G = 1, 2)."""
    pairs = list(iter_workload(n, size, seed, kind))
    return [m for m, _ in pairs], [b for _, b in pairs]


def _add(total: dict | None, one: dict) -> dict:
    if total is None:
        return {rule: {k: list(v) for k, v in curves.items()} for rule, curves in one.items()}
    for rule, curves in one.items():
        for key, curve in curves.items():
            total[rule][key] = [a + b for a, b in zip(total[rule][key], curve, strict=True)]
    return total


def _threaded_fast(maps, boxes, thresholds, threads: int) -> dict:
    """The fast path over all maps in ``threads`` contiguous chunks (as ``evaluate-maps`` does);
    OpenCV's contour search releases the GIL, so the chunks run in parallel."""
    chunks = np.array_split(np.arange(len(maps)), threads)

    def count(indices) -> M.BoxCounter:
        counter = M.BoxCounter(thresholds, IOUS)
        for i in indices:
            counter.update(maps[i], boxes[i])
        return counter

    with ThreadPoolExecutor(max_workers=threads) as pool:
        counters = list(pool.map(count, chunks))
    for more in counters[1:]:
        counters[0].merge(more)
    return counters[0].to_dict()["box"]


def run(
    n: int, step: float, size: int, seed: int, literal: str, threads: int = 1, kind: str = "cam"
) -> dict:
    """Time every side on the same workload; return the figures (seconds, ratios, identical)."""
    maps, boxes = make_workload(n, size, seed, kind)
    thresholds = M.threshold_grid(step)
    sides = ["fast", "literal"] if literal == "plain" else ["fast", "reference"]
    if literal == "both":
        sides = ["fast", "literal", "reference"]
    baselines = sides[1:]
    seconds = dict.fromkeys(sides, 0.0)
    # CPU seconds of the process as well: on a shared machine they move less with the load.
    cpu = dict.fromkeys(sides, 0.0)
    counts: dict[str, dict | None] = dict.fromkeys(sides)
    # One-off: numba compiles the engine (first run in a checkout) or loads it from its cache.
    start = time.perf_counter()
    M.BoxCounter(thresholds, IOUS).update(maps[0], boxes[0])
    warmup = time.perf_counter() - start
    counter = M.BoxCounter(thresholds, IOUS)
    for scoremap, gt in tqdm(list(zip(maps, boxes, strict=True)), desc="maps", unit="map"):
        start, start_cpu = time.perf_counter(), time.process_time()
        counter.update(scoremap, gt)
        seconds["fast"] += time.perf_counter() - start
        cpu["fast"] += time.process_time() - start_cpu
        for side in sides[1:]:
            start, start_cpu = time.perf_counter(), time.process_time()
            one = L.literal_box_counts(
                [scoremap], [gt], thresholds, IOUS, reference_structure=(side == "reference")
            )
            seconds[side] += time.perf_counter() - start
            cpu[side] += time.process_time() - start_cpu
            counts[side] = _add(counts[side], one)
    box = counter.to_dict()["box"]
    counts["fast"] = {"multi": box["multi"], "largest": box["largest"]}
    if threads > 1:
        side = f"fast_{threads}_threads"
        start = time.perf_counter()
        threaded = _threaded_fast(maps, boxes, thresholds, threads)
        seconds[side] = time.perf_counter() - start
        counts[side] = {"multi": threaded["multi"], "largest": threaded["largest"]}
        sides.append(side)
    identical = all(counts[side] == counts["fast"] for side in sides)
    result = {
        "maps": kind,
        "n": n,
        "step": step,
        "size": size,
        "seed": seed,
        "seconds": seconds,
        "ms_per_map": {side: 1000 * s / n for side, s in seconds.items()},
        "speedup": {side: seconds[side] / seconds["fast"] for side in baselines},
        "cpu_seconds": cpu,
        "cpu_speedup": {side: cpu[side] / cpu["fast"] for side in baselines},
        "threaded_speedup": {
            side: seconds[side] / seconds[sides[-1]] for side in baselines if sides[-1] != "fast"
        }
        if threads > 1
        else {},
        "identical": identical,
        "warmup_seconds": warmup,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "opencv_threads": cv2.getNumThreads(),
        },
    }
    return result


def _tenths(done: int, total: int, what: str) -> None:
    """One line each time another 10 % of ``total`` is done."""
    if total and (done * 10 // total) != ((done - 1) * 10 // total):
        print(f"  {what}: {done}/{total} ({100 * done // total}%)", flush=True)


def write_maps(folder: Path, n: int, size: int, seed: int, kind: str) -> None:
    """``<folder>/maps/<id>.npy`` (float32), ``<folder>/meta`` (their boxes, labels of 1,000
    classes) and ``<folder>/predictions.csv`` (top-5 classes), as a user saves them for
    ``evaluate-maps``."""
    from wsolbench.data.metadata import SplitMetadata, write_split

    (folder / "maps").mkdir(parents=True)
    rng = np.random.default_rng(seed + 1)  # the classes' own stream: the maps stay as they were
    ids, labels, sizes, boxes, predictions = [], {}, {}, {}, []
    for i, (scoremap, gt) in enumerate(iter_workload(n, size, seed, kind), 1):
        image_id = f"{i:06d}.png"
        np.save(folder / "maps" / f"{image_id}.npy", scoremap.astype(np.float32))
        ids.append(image_id)
        labels[image_id], sizes[image_id] = i % 1000, (size, size)
        boxes[image_id] = [[int(v) for v in box] for box in gt]
        top5 = rng.choice(1000, 5, replace=False)
        if rng.random() < 0.75:
            top5[0] = labels[image_id]
        predictions.append(f"{image_id}," + ",".join(str(c) for c in top5))
        _tenths(i, n, "writing maps")
    write_split(folder / "meta", SplitMetadata(folder / "meta", ids, labels, sizes, boxes))
    (folder / "predictions.csv").write_text("\n".join(predictions) + "\n")


def evaluate_maps_wall(
    folder: Path, step: float, size: int, workers: int
) -> tuple[float, float, dict]:
    """Wall and CPU seconds (user + system, its workers included) of ``wsolbench evaluate-maps``
    as a process, and the counts it wrote."""
    out = folder / f"counts-{workers}.json"
    argv = [sys.executable, "-m", "wsolbench", "evaluate-maps", "--maps", str(folder / "maps")]
    argv += ["--metadata", str(folder / "meta"), "--step", str(step), "--size", str(size)]
    argv += [str(size), "--predictions", str(folder / "predictions.csv")]
    argv += ["--workers", str(workers), "--json", str(out)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # its own progress lines (every 30 s) are left out: this script prints one per 10 %
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"evaluate-maps failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(out.read_text())


def time_kinds(sample: int, size: int, seed: int, step: float) -> dict[str, float]:
    """ms per map of the fast path on ``sample`` maps of each kind, timed map by map in turn."""
    thresholds = M.threshold_grid(step)
    maps = {kind: make_workload(sample, size, seed, kind) for kind in MAP_KINDS}
    counters = {kind: M.BoxCounter(thresholds, IOUS) for kind in MAP_KINDS}
    counters["cam"].update(maps["cam"][0][0], maps["cam"][1][0])  # numba: compile or load
    seconds = dict.fromkeys(MAP_KINDS, 0.0)
    for i in range(sample):
        for kind in MAP_KINDS:
            start = time.perf_counter()
            counters[kind].update(maps[kind][0][i], maps[kind][1][i])
            seconds[kind] += time.perf_counter() - start
    return {kind: 1000 * s / sample for kind, s in seconds.items()}


def time_stages(n: int, size: int, seed: int, kind: str, step: float) -> dict[str, float]:
    """ms per map of each stage of the fast path, on ``n`` maps of ``kind`` held in memory."""
    from wsolbench.metrics import level_sets as LS
    from wsolbench.metrics.pixel_order import flood, pixels_by_value
    from wsolbench.metrics.sweeps import components_sweep, holes_sweep

    maps, boxes = make_workload(n, size, seed, kind)
    thresholds = M.threshold_grid(step)
    at_least = min(IOUS) / 100
    used = np.ones(256, dtype=bool)
    used[0] = False  # the lowest threshold, 0, keeps the pixels above 0: level 1 up
    floor = np.zeros(256)

    def prepared(m):  # as BoxCounter.update: checked and quantized in one pass
        u = LS.quantized_unit_map(m)
        return u, (thresholds * float(u.max())).astype(np.int64)

    prep = [prepared(m) for m in maps]
    filled = [flood(u) for u, _ in prep]
    order = [pixels_by_value(f[0][1:-1, 1:-1], f[4]) for f in filled]
    stages = {
        "check and quantize": lambda i: prepared(maps[i]),
        "flood": lambda i: flood(prep[i][0]),
        "sort the filled map's pixels": lambda i: pixels_by_value(
            filled[i][0][1:-1, 1:-1], filled[i][4]
        ),
        "foreground sweep (filled map)": lambda i: components_sweep(
            size, size, *order[i], used, boxes[i], floor, True
        ),
        "holes sweep": lambda i: holes_sweep(
            size, size, filled[i][1], filled[i][2], filled[i][0], used, boxes[i], floor, at_least
        ),
        "threshold_scores, whole": lambda i: LS.threshold_scores(
            prep[i][0], boxes[i], prep[i][1], at_least
        ),
    }
    seconds = {}
    for name, stage in stages.items():
        stage(0)  # numba: compile or load
        start = time.perf_counter()
        for i in range(n):
            stage(i)
        seconds[name] = 1000 * (time.perf_counter() - start) / n
    return seconds


def run_disk(args) -> int:
    """evaluate-maps on maps written to disk, 1 and N workers; the reference; noisy maps."""
    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench-evaluator-"))
    if folder.exists() and any(folder.iterdir()):
        print(f"error: --folder {folder} is not empty; give a new or empty folder")
        return 2
    load_before = os.getloadavg()[0]
    print(f"load average before: {load_before:.2f}; writing {args.n} maps to {folder}")
    try:
        write_maps(folder, args.n, args.size, args.seed, args.maps)
        os.sync()  # the maps' own write-back would otherwise run during the first timing
        walls, cpus, counts = {}, {}, {}
        for workers in sorted({1, args.workers}):
            walls[workers], cpus[workers], counts[workers] = evaluate_maps_wall(
                folder, args.step, args.size, workers
            )
            print(
                f"  evaluate-maps, {workers} worker(s): {walls[workers]:7.1f} s wall, "
                f"{1000 * walls[workers] / args.n:6.2f} ms/map (whole process); CPU "
                f"{1000 * cpus[workers] / args.n:.2f} ms/map",
                flush=True,
            )
        sample = min(args.reference_sample, args.n)
        maps, boxes = make_workload(sample, args.size, args.seed, args.maps)
        thresholds = M.threshold_grid(args.step)
        start = time.perf_counter()
        for i, (scoremap, gt) in enumerate(zip(maps, boxes, strict=True), 1):
            L.literal_box_counts([scoremap], [gt], thresholds, IOUS, reference_structure=True)
            _tenths(i, sample, "reference sample")
        reference_ms = 1000 * (time.perf_counter() - start) / sample
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    kinds = time_kinds(args.kinds_sample, args.size, args.seed, args.step)
    identical = all(c == counts[1] for c in counts.values())
    best = walls[args.workers]
    print(f"{args.n} {args.maps} maps, {args.size}x{args.size}, step {args.step}")
    if args.workers > 1:
        print(f"  {args.workers} workers are {walls[1] / best:.2f}x one")
    print(
        f"  reference structure: {reference_ms:.1f} ms/map on {sample} maps: "
        f"{reference_ms * args.n / 1000 / best:.0f}x the evaluate-maps wall time with "
        f"{args.workers} worker(s) (extrapolated to {args.n} maps)"
    )
    print(
        f"  fast path, {args.kinds_sample} maps of each kind in turn: CAM-like "
        f"{kinds['cam']:.2f} ms/map, noisy {kinds['noisy']:.2f} ms/map: noisy "
        f"{kinds['noisy'] / kinds['cam']:.2f}x"
    )
    load_after = os.getloadavg()[0]
    print(f"  counts identical: {identical}; load average after: {load_after:.2f}")
    if args.json:
        figures = {
            "n": args.n, "maps": args.maps, "size": args.size, "step": args.step,
            "wall_seconds": walls, "cpu_seconds": cpus, "reference_ms_per_map": reference_ms,
            "reference_sample": sample, "kinds_ms_per_map": kinds, "identical": identical,
            "load_average": [load_before, load_after],
        }  # fmt: skip
        write_json_atomic(args.json, figures)  # a cut-short run leaves no half a file
    return 0 if identical else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="number of maps (default 2000)")
    parser.add_argument("--step", type=float, default=0.001, help="threshold step (0.001)")
    parser.add_argument("--size", type=int, default=224, help="map side in pixels (224)")
    parser.add_argument("--seed", type=int, default=0, help="workload seed (0)")
    parser.add_argument(
        "--literal",
        choices=("plain", "reference", "both"),
        default="plain",
        help="--in-memory: baseline(s), the plain literal sweep, the reference's structure, or "
        "both (the reference structure is slow: ~0.15-0.3 s per 224 px map)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="--in-memory: also time the fast path on this many threads (default: every core; "
        "1 skips it)",
    )
    parser.add_argument(
        "--maps",
        choices=(*MAP_KINDS, "both"),
        default="cam",
        help="CAM-like maps, noisy ones, or (--in-memory) both, then the ratio of the fast path's "
        "time per map",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="time the fast path against the literal sweep on maps in memory (default: "
        "evaluate-maps on maps written to disk)",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="evaluate-maps workers"
    )
    parser.add_argument(
        "--reference-sample", type=int, default=1000, help="maps the reference times (1000)"
    )
    parser.add_argument(
        "--kinds-sample", type=int, default=500, help="maps of each kind timed in turn (500)"
    )
    parser.add_argument("--folder", help="where to write the maps (default: a temp dir)")
    parser.add_argument(
        "--stages", action="store_true", help="ms per map of each stage of the fast path"
    )
    args = parser.parse_args(argv)
    keep_freed_memory()  # what this process times, it times as a counting process runs it
    if args.stages:
        kind = "cam" if args.maps == "both" else args.maps
        print(f"load average before: {os.getloadavg()[0]:.2f}; {args.n} {kind} maps in memory")
        for name, ms in time_stages(args.n, args.size, args.seed, kind, args.step).items():
            print(f"  {name:32s} {ms:6.3f} ms/map")
        print(f"  load average after: {os.getloadavg()[0]:.2f}")
        return 0
    if not args.in_memory:
        if args.maps == "both":
            parser.error(
                "evaluate-maps on disk takes --maps cam or noisy (both kinds are timed "
                "in turn on --kinds-sample maps)"
            )
        return run_disk(args)

    kinds = MAP_KINDS if args.maps == "both" else (args.maps,)
    results = {}
    for kind in kinds:
        results[kind] = result = run(
            args.n, args.step, args.size, args.seed, args.literal, args.threads, kind
        )
        _print(args, result)
    if len(results) == 2:
        ratio = results["noisy"]["ms_per_map"]["fast"] / results["cam"]["ms_per_map"]["fast"]
        print(f"noisy maps take {ratio:.2f}x the fast path's time per map of CAM-like ones")
    if args.json:
        write_json_atomic(args.json, results if len(results) == 2 else result)
    return 0 if all(r["identical"] for r in results.values()) else 1


def _print(args, result: dict) -> None:
    print(
        f"{args.n} {result['maps']} maps, {args.size}x{args.size}, step {args.step} "
        f"({len(M.threshold_grid(args.step))} thresholds), seed {args.seed}"
    )
    for side, seconds in result["seconds"].items():
        line = f"  {side:<10} {seconds:9.2f} s  {result['ms_per_map'][side]:8.2f} ms/map"
        if side in result["speedup"]:
            line += f"   fast path is {result['speedup'][side]:.1f}x faster"
            if side in result["threaded_speedup"]:
                line += f" ({result['threaded_speedup'][side]:.1f}x on {args.threads} threads)"
        print(line)
    for side in result["cpu_speedup"]:
        print(
            f"  CPU time: fast {result['cpu_seconds']['fast']:.2f} s, {side} "
            f"{result['cpu_seconds'][side]:.2f} s: {result['cpu_speedup'][side]:.1f}x"
        )
    print(
        f"  warmup     {result['warmup_seconds']:9.2f} s  (once per process, not in the times "
        "above: numba compiling the fast path, or loading it from its cache)"
    )
    print(f"  counts identical: {result['identical']}")


if __name__ == "__main__":
    sys.exit(main())
