"""Cost of ``clip_gradcam``'s ``native_resolution`` option: MACs (and CPU time) of one image at the
protocol size (224 × 224) and at a typical CUB size (500 × 375, rounded up to 512 × 384), ViT-B/16
with random weights (cost does not depend on the weights), with and without refinement.

    python benchmarks/clip_gradcam_native_cost.py

MACs are counted by ``wsolbench.cost.macs.count_macs`` (the backward pass of Grad-CAM included);
seconds are the mean of 3 calls after one warm-up, on whatever the machine is doing.
"""

import time

import torch

from methods.clip_gradcam import ClipGradCAM
from wsolbench.config import resolve_config
from wsolbench.cost.macs import count_macs


def main() -> None:
    for refine in (False, True):
        config = resolve_config(ClipGradCAM, "cub", ["clip.pretrained=false", f"refine={refine}"])
        torch.manual_seed(0)
        method = ClipGradCAM(num_classes=200, **{**config, "cache_text": False}).eval()
        for height, width in ((224, 224), (375, 500)):
            images, labels = torch.randn(1, 3, height, width), torch.tensor([0])
            macs = count_macs(method, images, labels)["macs"]
            method.predict(images, labels)
            start = time.perf_counter()
            for _ in range(3):
                method.predict(images, labels)
            seconds = (time.perf_counter() - start) / 3
            print(
                f"refine={refine} {height}x{width}: {macs / 1e9:.2f} GMACs, "
                f"{seconds:.2f} s/image ({torch.get_num_threads()} threads)"
            )


if __name__ == "__main__":
    main()
