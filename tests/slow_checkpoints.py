"""ToyCAM whose checkpoints rank 0 writes slowly (``--method slow_checkpoints:ToySlowSave``):
importing this module makes every checkpoint write of rank 0 wait two seconds first, so that a
rank that read the checkpoint without waiting for rank 0 would read the previous epoch's."""

import os
import time

from toy_method import ToyCAM

from wsolbench.registry import register_method
from wsolbench.train import engine

_write = engine.AtomicLocalBackend.put


def _slow_write(self, obj, filepath) -> None:
    if os.environ.get("RANK", "0") == "0":
        time.sleep(2.0)
    _write(self, obj, filepath)


engine.AtomicLocalBackend.put = _slow_write


@register_method("toyslowsave")
class ToySlowSave(ToyCAM):
    """ToyCAM; only its checkpoints are slow (see the module docstring)."""
