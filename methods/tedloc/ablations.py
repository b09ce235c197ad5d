"""TeD-Loc's ablation on ``synthetic-v1``: every variant of the README's table, every seed.

    python -m methods.tedloc.ablations [--seeds 0 1 2 3 4] [--variants NAME ...] [--no-runs]

Each run is ``wsolbench run --method tedloc --dataset synthetic --seed S --work-dir
work_dirs/ablations/<variant>/seed<S> --resume -o OVERRIDE ...`` (one at a time; ``--resume``
keeps finished runs, so an interrupted sweep continues where it stopped); its ``result.json`` and
per-image records are copied to ``reports/results/ablations/<variant>/seed<S>/``, and the table
``reports/tedloc-ablations.md`` is rendered from the copies alone (``--no-runs`` only copies and
renders) beside the default and CAM rows of the board (``reports/results/synthetic-v1``, made by
``make reports`` with the same seeds): ``wsolbench compare reports/results/synthetic-v1/tedloc
reports/results/synthetic-v1/cam reports/results/ablations --format md --no-published``.

The default's teacher is ``synthcam-v1`` (wsolbench's cached ``cam`` run, seed 0); the
``self_*`` variants repeat the text and QR switches with the spec's ``self`` teacher.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from wsolbench.results.per_image import copy_result

REPO = Path(__file__).resolve().parents[2]
WORK = Path("work_dirs/ablations")
RESULTS = Path("reports/results/ablations")
BOARD = Path("reports/results/synthetic-v1")  # the default rows: the board's tedloc and cam runs
TABLE = Path("reports/tedloc-ablations.md")
SEEDS = (0, 1, 2, 3, 4)

#: variant → ``-o`` overrides of TeD-Loc's synthetic preset (the default itself is the board's row)
VARIANTS: dict[str, list[str]] = {
    "text_random": ["text.pretrained=false"],
    "no_distill": ["use_distill=false"],
    "orthogonalize_none": ["orthogonalize=none"],
    "teacher_self": ["teacher=self"],
    "self_text_random": ["teacher=self", "text.pretrained=false"],
    "self_no_distill": ["teacher=self", "use_distill=false"],
    "self_orthogonalize_none": ["teacher=self", "orthogonalize=none"],
    "self_teacher_detach": ["teacher=self", "teacher_detach=true"],
    "self_mil_detach_warmup": ["teacher=self", "mil_detach=warmup"],
}


def run(variant: str, seed: int) -> int:
    """One run (kept when finished); returns the exit status."""
    argv = [sys.executable, "-m", "wsolbench", "run", "--method", "tedloc"]
    argv += ["--dataset", "synthetic", "--seed", str(seed)]
    argv += ["--work-dir", str(WORK / variant / f"seed{seed}"), "--resume"]
    for override in VARIANTS[variant]:
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
    rows = [BOARD / "tedloc", BOARD / "cam", RESULTS]
    argv = [sys.executable, "-m", "wsolbench", "compare", *map(str, rows)]
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
    failed = []
    if not args.no_runs:
        for variant in variants:
            for seed in args.seeds:
                if run(variant, seed) != 0:
                    failed.append(f"{variant}/seed{seed}")
    collect(variants, args.seeds)
    status = render()
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else status


if __name__ == "__main__":
    sys.exit(main())
