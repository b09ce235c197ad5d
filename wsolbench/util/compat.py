"""Make torchvision importable next to a CPU-only torch build.

The only torchvision release matching torch 2.13.0 ships a CUDA-built C extension. With the CPU
torch that extension cannot load, and ``import torchvision`` (hence ``timm`` and ``open_clip``) dies
with ``operator torchvision::nms does not exist``: torchvision registers fake (meta) kernels for
``nms`` and ``qnms`` at import time and expects the extension to have defined both operators.

:func:`ensure_torchvision` runs before the first torchvision import. Where the extension loads (a
CUDA machine, or any matching build) it loads it, exactly as torchvision itself would, and changes
nothing else. Where it cannot load, it defines the ``torchvision::nms`` and ``torchvision::qnms``
schemas with a plain-PyTorch kernel for ``nms`` (``torch.ops.torchvision.nms``), which is all the
import needs. Models and transforms then work; ``torchvision.ops`` functions still refuse to run
(torchvision checks that its extension loaded), and image decoding must go through PIL or OpenCV, as
the harness does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# Holds the fallback operator library alive for the life of the process.
_fallback_library = None


def _nms_reference(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression in plain PyTorch.

    Args:
        boxes: [N, 4] (x1, y1, x2, y2), continuous coordinates as torchvision uses them.
        scores: [N].
        iou_threshold: boxes whose IoU with a kept box exceeds this are dropped.

    Returns:
        [K] int64 indices of the kept boxes, by decreasing score.
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True)
    suppressed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.int64, device=boxes.device)


def ensure_torchvision() -> None:
    """Prepare the process so that ``import torchvision`` succeeds. Idempotent and cheap."""
    global _fallback_library
    if "torchvision" in sys.modules or _fallback_library is not None:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return  # not installed: the import error, if any, will be torchvision's own
    import torch

    package_dir = os.path.dirname(spec.origin)
    extension = next(
        (
            os.path.join(package_dir, f)
            for f in sorted(os.listdir(package_dir))
            if f.startswith("_C.")
        ),
        None,
    )
    if extension is not None:
        try:
            torch.ops.load_library(extension)
            return  # the real extension works: nothing to patch
        except (OSError, RuntimeError) as exc:
            logger.debug("torchvision C extension unavailable (%s); defining its NMS schemas", exc)
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.impl("nms", _nms_reference, "CompositeExplicitAutograd")
    # Quantized NMS is only declared (torchvision's import registers a fake kernel for it);
    # calling it raises "no kernel", which is honest: quantized detection needs the extension.
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _fallback_library = library
