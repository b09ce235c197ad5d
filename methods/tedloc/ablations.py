"""TeD-Loc's ablation on ``synthetic-v1``: every variant of the README's table, every seed.

    python -m methods.tedloc.ablations [--seeds 0 1 2 3 4] [--variants NAME ...] [--no-runs]

Each run is ``wsolbench run --method M --dataset synthetic --seed S --work-dir
work_dirs/ablations13/<variant>/seed<S> --resume [overrides]`` (one at a time; ``--resume`` keeps
finished runs, so an interrupted sweep continues where it stopped), then its ``result.json`` is
copied to ``reports/results/ablations/<variant>/seed<S>/`` and the table
``reports/tedloc-ablations.md`` is rendered from those copies alone with ``wsolbench compare
reports/results/ablations --format md --no-published`` (``--no-runs`` only re-renders).

The ``cam`` rows are the baseline the acceptance compares with, and seed 0 of them is the finished
run the ``teacher_cam`` variant reads its pseudo-labels from (the same teacher for every seed, so
that the variant is one configuration).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from wsolbench.per_image import copy_result

REPO = Path(__file__).resolve().parents[2]
WORK = Path("work_dirs/ablations13")
RESULTS = Path("reports/results/ablations")
TABLE = Path("reports/tedloc-ablations.md")
SEEDS = (0, 1, 2, 3, 4)

#: variant → (method, ``-o`` overrides); the first TeD-Loc row is the default preset.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "cam": ("cam", []),
    "default": ("tedloc", []),
    "text_random": ("tedloc", ["text.pretrained=false"]),
    "no_distill": ("tedloc", ["use_distill=false"]),
    "orthogonalize_none": ("tedloc", ["orthogonalize=none"]),
    "teacher_cam": ("tedloc", [f"teacher=run:{WORK / 'cam' / 'seed0'}"]),
    "self_teacher_live": ("tedloc", ["self_teacher=live"]),
    "mil_detach_never": ("tedloc", ["mil_detach=never"]),
}


def run(variant: str, seed: int) -> int:
    """One run (kept when finished); returns the exit status."""
    method, overrides = VARIANTS[variant]
    argv = [sys.executable, "-m", "wsolbench", "run", "--method", method]
    argv += ["--dataset", "synthetic", "--seed", str(seed)]
    argv += ["--work-dir", str(WORK / variant / f"seed{seed}"), "--resume"]
    for override in overrides:
        argv += ["-o", override]
    print("$", " ".join(argv[1:]), flush=True)
    return subprocess.call(argv, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def collect(variants: list[str], seeds: list[int]) -> None:
    for variant in variants:
        for seed in seeds:
            source = REPO / WORK / variant / f"seed{seed}"
            if (source / "result.json").is_file():
                copy_result(source, REPO / RESULTS / variant / f"seed{seed}")


def render() -> int:
    argv = [sys.executable, "-m", "wsolbench", "compare", str(RESULTS)]
    argv += ["--format", "md", "--no-published", "--output", str(TABLE)]
    print("$", " ".join(argv[1:]), flush=True)
    return subprocess.call(argv, cwd=REPO)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--no-runs", action="store_true", help="only copy results and render")
    args = parser.parse_args(argv)
    variants = list(args.variants)
    if "teacher_cam" in variants and "cam" not in variants:
        variants.insert(0, "cam")  # its teacher is cam's seed-0 run
    failed = []
    if not args.no_runs:
        # cam first: teacher_cam reads cam's seed 0
        for variant in sorted(variants, key=lambda v: v != "cam"):
            seeds = args.seeds
            if variant == "cam" and "teacher_cam" in variants and 0 not in seeds:
                seeds = [0, *seeds]
            for seed in seeds:
                if run(variant, seed) != 0:
                    failed.append(f"{variant}/seed{seed}")
    collect(variants, args.seeds)
    status = render()
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else status


if __name__ == "__main__":
    sys.exit(main())
