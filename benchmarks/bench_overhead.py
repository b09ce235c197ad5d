"""Harness overhead: a ``wsolbench run``'s wall time against the pure cost of its work.

    python benchmarks/bench_overhead.py [--epochs 2] [--threads 1] [--methods cam tedloc]

For each method, on ``synthetic-v1`` with its synthetic preset cut to ``--epochs`` epochs:

- **run**: ``wsolbench run`` as a whole process (fresh work dir), wall time;
- **training**: the run's number of optimizer steps × the median time of one step, timed in this
  process as ``benchmarks/bench_train_step.py`` times it (forward, losses, backward, SGD step, the
  per-step hook; TeD-Loc past its warm-up, with its default frozen cam teacher), on a batch of the
  run's batch size and input size, with the same thread count;
- **evaluation**: the run's finished weights evaluated on the protocol's splits in this process
  (``wsolbench.evaluate.evaluate_method``: decoding, prediction, counting), timed;
- **start-up**: importing what ``wsolbench run`` imports, in a fresh process;
- **data loading**: the run's training images read, augmented and batched for its epochs, alone
  (its training set and a DataLoader with its batch size and data-loader workers), timed.

It prints the ratio run / (training + evaluation) and what is left over, with its share of the
run: data loading, start-up, and the rest (checkpoints, logging, the data's checks, the record,
per-image files). TeD-Loc needs synthclip-v1 and its cam teacher (synthcam-v1): built first when
not cached, not timed.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import train_step  # noqa: E402

from wsolbench.blocks.cam_teacher import ensure_cam_teacher, synthetic_training_data
from wsolbench.blocks.synthclip import ensure_synthclip
from wsolbench.config import resolve_config
from wsolbench.counting import EvalSettings
from wsolbench.data.dataset import training_set
from wsolbench.data.sources import get_dataset, read_splits
from wsolbench.evaluate import evaluate_method
from wsolbench.method import build_method
from wsolbench.protocol import load_protocol
from wsolbench.registry import get_method
from wsolbench.runs.rebuild import load_run
from wsolbench.util.loader import resolve_workers

PROTOCOL = "synthetic-v1"
# what a run imports before its first step (the methods' modules import timm, open_clip, ...)
IMPORTS = (
    "import wsolbench.cli.main, wsolbench.runs.execute, wsolbench.train.engine; "
    "from wsolbench.registry import get_method; get_method('cam'); get_method('tedloc')"
)


def run_wall(method: str, epochs: int, threads: int, work: Path) -> float:
    """Seconds of ``wsolbench run`` as a process."""
    argv = [sys.executable, "-m", "wsolbench", "run", "--method", method, "--dataset"]
    argv += ["synthetic", "--protocol", PROTOCOL, "--threads", str(threads), "--work-dir"]
    argv += [str(work), "-o", f"train.max_epochs={epochs}"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def built(method_name: str, epochs: int):
    """(method, config) of ``method_name``'s synthetic preset cut to ``epochs``, built as a run
    builds it (TeD-Loc with its cam teacher)."""
    cls = get_method(method_name)
    protocol = load_protocol(PROTOCOL)
    config = resolve_config(cls, "synthetic", [f"train.max_epochs={epochs}"])
    torch.manual_seed(0)
    method = build_method(cls, config, protocol.num_classes, classnames=protocol.classnames)
    if cls.capabilities.trainable:
        method.prepare_training(synthetic_training_data())
    return method, config


def step_seconds(method, config: dict, steps: int) -> float:
    """The median seconds of one training step of ``method`` (past any warm-up)."""
    protocol = load_protocol(PROTOCOL)
    method.on_train_epoch(int(config.get("warmup_epochs", 0)), 10**6)  # past any warm-up
    method.train()
    batch = int(config["train"]["batch_size"])
    height, width = protocol.eval_size
    images = torch.randn(batch, 3, height, width)
    labels = torch.arange(batch) % protocol.num_classes
    parameters = [p for p in method.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(parameters, lr=1e-3, momentum=0.9)
    times = [train_step(method, optimizer, images, labels) for _ in range(steps + 2)][2:]
    return statistics.median(times)


def data_seconds(method, config: dict, epochs: int) -> float:
    """Seconds to read, augment and batch the run's training images for ``epochs`` epochs, alone:
    the training set as a run builds it, through a DataLoader with the run's batch size and
    data-loader workers (none on a small CPU machine: the run loads in its own process)."""
    protocol = load_protocol(PROTOCOL)
    train = config["train"]
    root = get_dataset("synthetic")().resolve(None, protocol)
    meta = read_splits(root, protocol, progress=False)["train"]
    dataset = training_set(meta, root / "images", protocol.eval_size, method, train["augment"])
    loader = DataLoader(
        dataset,
        batch_size=int(train["batch_size"]),
        shuffle=True,
        num_workers=resolve_workers(train["num_workers"], "cpu"),
    )
    start = time.perf_counter()
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        for _ in loader:
            pass
    return time.perf_counter() - start


def eval_seconds(work: Path) -> float:
    """Seconds to evaluate the run's weights on every split of the protocol, in this process."""
    loaded = load_run(work)
    protocol = loaded.protocol
    root = get_dataset("synthetic")().resolve(None, protocol)
    splits = read_splits(root, protocol, progress=False)
    settings = EvalSettings.from_protocol(protocol)
    mask_root = root / "masks" if protocol.has_masks else None
    start = time.perf_counter()
    for split in protocol.eval_splits:
        evaluate_method(
            loaded.method, splits[split], root / "images", settings, mask_root=mask_root,
            progress=False,
        )  # fmt: skip
    return time.perf_counter() - start


def startup_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", IMPORTS], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of each run (2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads everywhere (1)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (10)")
    parser.add_argument("--methods", nargs="+", default=["cam", "tedloc"])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if "tedloc" in args.methods:  # what TeD-Loc's preset loads; built once, not timed
        ensure_synthclip()
        ensure_cam_teacher(synthetic_training_data())
    protocol = load_protocol(PROTOCOL)
    n_train = len(
        read_splits(get_dataset("synthetic")().resolve(None, protocol), protocol)["train"]
    )
    load = os.getloadavg()[0]
    print(f"{PROTOCOL}, {args.epochs} epochs, {args.threads} torch thread(s), load {load:.2f}")
    startup = startup_seconds()
    print(f"start-up (imports of a run, fresh process): {startup:.1f} s")
    for name in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / name
            wall = run_wall(name, args.epochs, args.threads, work)
            method, config = built(name, args.epochs)
            step = step_seconds(method, config, args.steps)
            data = data_seconds(method, config, args.epochs)
            steps = args.epochs * math.ceil(n_train / int(config["train"]["batch_size"]))
            train = steps * step
            evaluation = eval_seconds(work)
        pure = train + evaluation
        left = wall - pure
        rest = left - data - startup
        print(
            f"{name:<7} run {wall:6.1f} s | training {steps} steps x {1000 * step:.0f} ms = "
            f"{train:5.1f} s | evaluation {evaluation:5.1f} s | run / (training + evaluation) "
            f"{wall / pure:.2f}x | left over {left:5.1f} s ({100 * left / wall:.0f} % of the run): "
            f"data loading {data:.1f} s ({100 * data / wall:.0f} %), start-up {startup:.1f} s "
            f"({100 * startup / wall:.0f} %), the rest {rest:.1f} s ({100 * rest / wall:.0f} %: "
            "checkpoints, logging, data checks, the record and per-image files)"
        )
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
