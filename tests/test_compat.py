"""The torchvision shim: torchvision, timm and open_clip import on this machine's CPU-only torch."""

import os
import subprocess
import sys


def test_torchvision_models_and_nms_work_after_the_shim():
    code = """
from wsolbench.util.compat import ensure_torchvision
ensure_torchvision()
ensure_torchvision()  # idempotent
import torch, torchvision, timm, open_clip
from torchvision.transforms import v2
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.]])
scores = torch.tensor([0.9, 0.8, 0.7])
assert torch.ops.torchvision.nms(boxes, scores, 0.5).tolist() == [0, 2]
assert torch.ops.torchvision.nms(boxes, scores, 0.9).tolist() == [0, 1, 2]
model = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
out = v2.Resize((8, 8))(torch.zeros(3, 16, 16))
assert out.shape == (3, 8, 8)
print("OK")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("OK")


def test_shim_is_a_no_op_when_the_extension_loads(monkeypatch):
    """Where torchvision's own C extension loads, no fallback operator is defined."""
    import torch

    from wsolbench.util import compat as _compat

    monkeypatch.setattr(_compat, "_fallback_library", None)
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    loaded = []
    monkeypatch.setattr(torch.ops, "load_library", lambda path: loaded.append(path))
    _compat.ensure_torchvision()
    assert len(loaded) == 1 and os.path.basename(loaded[0]).startswith("_C.")
    assert _compat._fallback_library is None


def test_import_wsolbench_is_light():
    code = (
        "import sys, wsolbench; "
        "heavy = ('torch', 'timm', 'open_clip', 'torchvision', 'methods'); "
        "heavy = [m for m in heavy if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
