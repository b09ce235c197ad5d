"""Training-step cost: TeD-Loc against CAM with the same backbone.

    python benchmarks/bench_train_step.py [--dataset synthetic] [--batch-size 64] [--steps 20]

One step = forward, the method's losses, backward, SGD step, and the engine's per-step hook
(``on_train_step``: TeD-Loc's EMA update), on random images of the protocol size. TeD-Loc is
timed after its warm-up (pseudo-labels from the EMA teacher every step: its most expensive
state). Both methods use the dataset's preset (``synthetic``: the same 0.29 M-parameter
``wsolcnn``), without pretrained weights — so TeD-Loc with the ``self`` teacher; ``-o
teacher=cam`` times the default, whose frozen CAM teacher (synthcam-v1 on synthetic, built if not
cached) runs a forward pass in every step. Steps alternate between the two methods so that a
change in machine load hits both alike; the median of each is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from wsolbench.blocks.cam_teacher import synthetic_training_data
from wsolbench.config import pretrained_off_overrides, resolve_config
from wsolbench.method import build_method
from wsolbench.protocol import protocol_for_dataset as resolve_protocol
from wsolbench.registry import get_method


def _build(name: str, dataset: str, overrides: list[str]):
    cls = get_method(name)
    protocol = resolve_protocol(dataset, None)
    config = resolve_config(cls, dataset, pretrained_off_overrides(cls) + overrides)
    method = build_method(cls, config, protocol.num_classes, classnames=protocol.classnames)
    return method.train(), protocol, config


def train_step(method, optimizer, images, labels) -> float:
    """Seconds of one step: forward, the method's losses, backward, optimizer step, hook."""
    start = time.perf_counter()
    losses = method.loss(images, labels)
    total = sum(v for k, v in losses.items() if k.startswith("loss_"))
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    optimizer.step()
    method.on_train_step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("-o", "--override", action="append", default=[], help="tedloc overrides")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cam, protocol, _ = _build("cam", args.dataset, [])
    ted, _, ted_config = _build("tedloc", args.dataset, args.override)
    if ted.teacher_kind != "self":  # a frozen teacher, built as `wsolbench run` builds it
        if args.dataset != "synthetic":
            parser.error("-o teacher=...: this benchmark builds an external teacher on synthetic")
        ted.prepare_training(synthetic_training_data())
    ted.on_train_epoch(int(ted_config.get("warmup_epochs", 0)), 10)  # pseudo-labels on
    height, width = protocol.eval_size
    images = torch.randn(args.batch_size, 3, height, width)
    labels = torch.arange(args.batch_size) % protocol.num_classes
    optimizers = {
        m: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
        for m in (cam, ted)
    }
    times: dict = {cam: [], ted: []}
    for i in range(args.warmup + args.steps):
        for method in (cam, ted) if i % 2 == 0 else (ted, cam):
            elapsed = train_step(method, optimizers[method], images, labels)
            if i >= args.warmup:
                times[method].append(elapsed)
    cam_s, ted_s = statistics.median(times[cam]), statistics.median(times[ted])
    params = {m: sum(p.numel() for p in m.parameters()) for m in (cam, ted)}
    print(
        f"dataset {args.dataset}, batch {args.batch_size} at {height}x{width}, "
        f"{torch.get_num_threads()} threads, median of {args.steps} steps"
    )
    print(f"cam     ({cam.backbone.name}, {params[cam] / 1e6:.3f} M params): {cam_s * 1e3:7.1f} ms")
    print(f"tedloc  ({ted.backbone.name}, {params[ted] / 1e6:.3f} M params): {ted_s * 1e3:7.1f} ms")
    print(f"ratio tedloc / cam: {ted_s / cam_s:.2f}x")


if __name__ == "__main__":
    main()
