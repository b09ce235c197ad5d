"""Parameters of a method: total, trainable, what inference needs, and the size of its weights.

``inference`` counts the parameters in :meth:`~wsolbench.method.WSOLMethod.inference_state_dict`,
what exported weights hold: a teacher or a text tower used only in training is not counted.
"""

from __future__ import annotations

import torch

from wsolbench.method import WSOLMethod


def count_parameters(method: torch.nn.Module) -> dict[str, int]:
    """``{"total", "trainable", "inference"}`` parameter counts (shared parameters once).

    ``inference`` counts the entries of ``method.inference_state_dict()`` that are parameters of
    the module (buffers such as BatchNorm statistics are not parameters); a plain module without
    that method counts all its parameters.
    """
    named = dict(method.named_parameters())
    total = sum(p.numel() for p in named.values())
    trainable = sum(p.numel() for p in named.values() if p.requires_grad)
    if isinstance(method, WSOLMethod):
        state = method.inference_state_dict()
        seen: set[int] = set()
        inference = 0
        for key, tensor in state.items():
            param = named.get(key)
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                inference += tensor.numel()
    else:
        inference = total
    return {"total": int(total), "trainable": int(trainable), "inference": int(inference)}


def weights_megabytes(method: torch.nn.Module) -> float:
    """Size in MiB of what inference loads (``inference_state_dict``: parameters and buffers)."""
    state = method.inference_state_dict() if isinstance(method, WSOLMethod) else method.state_dict()
    return sum(t.numel() * t.element_size() for t in state.values()) / 2**20
