"""Cost of ``clip_gradcam``'s ``native_resolution`` option: MACs (and CPU time) of one image at the
protocol size (224 × 224) and at a typical CUB size (500 × 375, rounded up to 512 × 384), ViT-B/16
with random weights (cost does not depend on the weights), with and without refinement.

    python benchmarks/clip_gradcam_native_cost.py

MACs are counted by ``wsolbench.cost.macs.count_macs`` (the backward pass of Grad-CAM included);
seconds are the median of ``--runs`` (5) ``predict`` calls after ``--warmup`` (1), on
``--threads`` (1) torch threads, timed as ``wsolbench profile`` times (``time_calls`` inside a
``TimingMonitor``), and printed with their conditions (clean or not, the load).
"""

import argparse
import statistics
from functools import partial

import torch

from methods.clip_gradcam import ClipGradCAM
from wsolbench.config import resolve_config
from wsolbench.cost.conditions import TimingMonitor
from wsolbench.cost.formatting import describe_conditions
from wsolbench.cost.macs import count_macs
from wsolbench.cost.timing import device_name, time_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = device_name(torch.device("cpu"))
    print(f"{cpu}, {args.threads} torch thread(s), {args.warmup} + {args.runs} calls per input")
    for refine in (False, True):
        config = resolve_config(ClipGradCAM, "cub", ["clip.pretrained=false", f"refine={refine}"])
        torch.manual_seed(0)
        method = ClipGradCAM(num_classes=200, **{**config, "cache_text": False}).eval()
        for height, width in ((224, 224), (375, 500)):
            images, labels = torch.randn(1, 3, height, width), torch.tensor([0])
            macs = count_macs(method, images, labels)["macs"]
            monitor = TimingMonitor(args.threads)
            with monitor:
                call = partial(method.predict, images, labels)
                times = time_calls(call, warmup=args.warmup, runs=args.runs)
            print(
                f"refine={refine} {height}x{width}: {macs / 1e9:.2f} GMACs, "
                f"{statistics.median(times):.2f} s/image median "
                f"({describe_conditions(monitor.conditions)})"
            )


if __name__ == "__main__":
    main()
