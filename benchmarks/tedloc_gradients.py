"""How hard each TeD-Loc loss pushes the backbone at initialization (synthetic preset).

    python benchmarks/tedloc_gradients.py [--seeds 0 1 2 3 4] [--batch-size 64]

For each seed: TeD-Loc built from its ``synthetic`` preset (the from-scratch ``wsolcnn``, text
targets from synthclip-v1), one batch of random images of the protocol size with random labels,
and for each of ``loss_cls`` (the MIL classifier, s · cos with s = 1/0.07) and ``loss_teacher``
(the ``self`` teacher's CAM loss): the loss value and the L2 norm of its gradient over the
backbone's parameters. Printed per seed and as the mean ratio MIL / CAM. The figure behind
``methods/tedloc/README.md``'s account of the warm-up (a loss that starts above chance, ln C, and
pushes the backbone several times harder than CAM's).
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from wsolbench.config import resolve_config
from wsolbench.method import build_method
from wsolbench.protocol import protocol_for_dataset
from wsolbench.registry import get_method

LOSSES = ("loss_cls", "loss_teacher")


def backbone_gradients(seed: int, batch_size: int) -> dict[str, tuple[float, float]]:
    """{loss name: (value, gradient norm over the backbone)} at initialization."""
    cls = get_method("tedloc")
    protocol = protocol_for_dataset("synthetic", None)
    config = resolve_config(cls, "synthetic", [])
    method = build_method(
        cls, config, protocol.num_classes, seed=seed, classnames=protocol.classnames
    ).train()
    generator = torch.Generator().manual_seed(seed)
    height, width = protocol.eval_size
    images = torch.randn(batch_size, 3, height, width, generator=generator)
    labels = torch.randint(0, protocol.num_classes, (batch_size,), generator=generator)
    found = {}
    for name in LOSSES:
        method.zero_grad(set_to_none=True)
        value = method.loss(images, labels)[name]
        value.backward()
        squares = [
            p.grad.pow(2).sum()
            for n, p in method.named_parameters()
            if n.startswith("backbone.") and p.grad is not None
        ]
        found[name] = (float(value.detach()), float(torch.stack(squares).sum().sqrt()))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    ratios = []
    print(f"chance loss ln C = {math.log(10):.3f}")
    for seed in args.seeds:
        found = backbone_gradients(seed, args.batch_size)
        (mil, mil_grad), (cam, cam_grad) = found["loss_cls"], found["loss_teacher"]
        ratios.append(mil_grad / cam_grad)
        print(
            f"seed {seed}: MIL loss {mil:.3f}, backbone gradient {mil_grad:.4f}; "
            f"CAM loss {cam:.3f}, backbone gradient {cam_grad:.4f}; ratio {ratios[-1]:.1f}x"
        )
    print(f"mean ratio MIL / CAM over {len(ratios)} seeds: {statistics.mean(ratios):.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
