"""One device check of every cost figure: inference (fp32 and AMP), training steps, data pipeline.

    bash benchmarks/gpu_check.sh --out DIR            # on a GPU machine: at most 8 minutes
    bash benchmarks/gpu_check.sh --dry-run --out DIR  # anywhere: the same code paths on the CPU,
                                                      # tiny and short (= --device cpu --quick)

Steps, each on ``--device`` (CUDA by default), results in ``<out>/gpu_check-<device>.json`` and
``.md`` (default ``reports/cost/``), named after the device:

1. **Inference** of every registered method of :data:`METHODS`, built for ``--dataset`` (CUB:
   224 × 224, 200 classes; pretrained loading off, random weights: cost does not depend on them),
   with :func:`wsolbench.cost.profile.profile_method` in fp32 and under AMP (float16 on CUDA,
   bfloat16 on CPU): MACs, latency at batch 1 (median over 50 calls after 10), throughput and peak
   memory at batch 64, and the timing conditions.
2. **Training steps** of ``cam`` and ``tedloc`` at the same size with AMP on CUDA (float16 and a
   gradient scaler; fp32 on CPU): forward, the method's losses, backward, SGD step and the
   per-step hook (TeD-Loc after its warm-up: pseudo-labels every step), ``--steps`` steps after
   ``--warmup-steps``, on a batch already on the device: images/s of the model alone.
3. **Data pipeline**: JPEG files (CUB-like 500 × 375, written to a temporary folder) decoded,
   augmented (the training transform: random resized crop + flip), normalized and collated by a
   ``DataLoader`` with the engine's loader settings (``train.num_workers: auto``, pinned memory on
   CUDA): images/s of the loader alone, and of loader + training step together, so that a
   data-bound run shows (end-to-end well below the model step's rate).
4. With ``diffusers`` installed (the ``genpromp-cost`` extra) and not ``--quick``: GenPromp's
   inference graph (:mod:`wsolbench.cost.genpromp`, random weights) timed per image at batch 1
   under AMP.

The record is written (JSON and markdown, atomically) after every measurement, so a check cut
short — an exception, a timeout, a lost machine — keeps what it measured. A measurement that
fails is recorded with its error (``errors``) and the check goes on with the next. A step that
would run past ``--budget-s`` (default 450 s) is skipped and listed as such, so the whole check
stays within the 8 minutes ``gpu_check.sh`` allows. ``--quick`` uses the synthetic
presets (96 × 96, tiny networks), 3 timed calls and 2 training steps: a test of the script, not a
measurement.

One idea per module beside this file: ``gpu_check_budget`` (the time budget, device helpers),
``gpu_check_inference`` (steps 1 and 4), ``gpu_check_training`` (step 2, with the pipeline of
step 3), ``gpu_check_data`` (step 3: JPEG files and the loader), ``gpu_check_report`` (the
markdown); this file is the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from wsolbench.util.compat import ensure_torchvision  # noqa: E402

ensure_torchvision()

# The steps live beside this file, one idea per module; they import wsolbench (after the set-up
# above). Run as a script, this folder is on the import path.
from gpu_check_budget import Clock  # noqa: E402
from gpu_check_inference import profile_all, time_genpromp  # noqa: E402
from gpu_check_report import markdown, slug  # noqa: E402
from gpu_check_training import train_and_data  # noqa: E402

from wsolbench.cost.timing import device_name  # noqa: E402
from wsolbench.results.environment import environment  # noqa: E402

METHODS = ("center", "cam", "tedloc", "clip_patch", "clip_gradcam")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default cuda)")
    parser.add_argument("--quick", action="store_true", help="test the script: tiny and short")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="the whole check on the CPU, tiny and short (--device cpu --quick): before a GPU run",
    )
    parser.add_argument("--dataset", help="whose presets and size (default cub; quick: synthetic)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--batch-size", type=int, help="throughput and training batch (64)")
    parser.add_argument("--steps", type=int, help="timed training steps (default 30; quick 2)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps first (5; quick 1)")
    parser.add_argument("--images", type=int, help="JPEG files for the pipeline (512; quick 16)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip steps past this")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "cost")
    args = parser.parse_args(argv)
    if args.dry_run:
        args.device, args.quick = "cpu", True
    quick = args.quick
    args.dataset = args.dataset or ("synthetic" if quick else "cub")
    args.batch_size = args.batch_size or (4 if quick else 64)
    args.steps = args.steps or (2 if quick else 30)
    args.warmup_steps = args.warmup_steps if args.warmup_steps is not None else (1 if quick else 5)
    args.images = args.images or (16 if quick else 512)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        print(f"error: --device {args.device!r}: use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA device here; on a CPU machine run: "
            "bash benchmarks/gpu_check.sh --device cpu --quick",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    clock = Clock(args.budget_s)

    def say(text: str) -> None:
        print(f"[{clock.elapsed():6.1f} s] {text}", flush=True)

    name = device_name(device)
    record = {
        "device": str(device),
        "device_name": name,
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "bash benchmarks/gpu_check.sh " + " ".join(argv or sys.argv[1:]),
        "quick": args.quick,
        "dataset": args.dataset,
        "batch_size": args.batch_size,
        "elapsed_s": 0.0,
        "finished": False,
        "skipped": [],
        "errors": [],
        "inference": [],
        "training": {"methods": {}},
        "genpromp": None,
        # the code (commit or files digest), libraries, threads and TF32 settings, as in a result
        "env": environment(),
    }
    stem = args.out / f"gpu_check-{slug(name)}{'-quick' if args.quick else ''}"
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        from wsolbench.util.atomic import write_json_atomic, write_text_atomic

        record["elapsed_s"] = clock.elapsed()
        write_json_atomic(stem.with_suffix(".json"), json.loads(json.dumps(record, default=str)))
        write_text_atomic(stem.with_suffix(".md"), markdown(record))

    def attempt(what: str, measure) -> None:
        """Run one measurement; a failure is recorded and the check goes on; saved either way."""
        try:
            measure()
        except Exception as exc:  # one broken measurement must not lose the others
            record["errors"].append({"step": what, "error": f"{type(exc).__name__}: {exc}"})
            say(f"FAILED {what}: {type(exc).__name__}: {exc}")
        finally:
            save()

    save()
    profile_all(args, device, clock, say, record, attempt)
    train_and_data(args, device, clock, say, record, attempt)
    attempt("genpromp", lambda: record.update(genpromp=time_genpromp(args, device, clock, say)))
    record["finished"] = True
    save()
    say(
        f"written {stem}.json and .md"
        + (f"; {len(record['errors'])} failed" if record["errors"] else "")
    )
    return 1 if record["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
