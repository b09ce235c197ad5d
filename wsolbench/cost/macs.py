"""The multiply-accumulate counter: MACs of one inference, every op that runs, forward and backward.

:class:`MacCounter` is a ``TorchDispatchMode`` that sees every aten op that runs, whatever kernel
torch picks. What it counts:

- matrix multiplies and convolutions: the formulas of ``torch.utils.flop_counter``, halved, since
  torch counts a multiply-add as 2 FLOPs while fvcore / mmengine / open_clip / timm (and most WSOL
  papers' "FLOPs") count it once;
- attention, in every form the methods run: the fused SDPA kernels (flash, memory-efficient,
  cuDNN, the CPU flash kernel), ``nn.MultiheadAttention``'s inference fast path
  (``aten._native_multi_head_attention``: in-projection, both attention products, output
  projection) and ``nn.TransformerEncoderLayer``'s. Each is counted as the math kernel would run
  it: forward ``Lq·Lk·(d + d_v)`` per head (scores, then weighted values), backward twice that
  (the four products of the two matmuls' gradients). So a model gets the same count whether a
  fast path ran or not, on every device (a fused backward's recomputed scores are not added);
- element-wise ops, norms, softmax, pooling and interpolation are not multiply-accumulates and
  are not counted (as timm's and open_clip's published profiles leave them out; fvcore and
  mmengine add one per element of a norm: 25 M more for cam's ResNet-50 at 224 px, +0.4 %,
  20 M for open_clip's ViT-B/16 image tower, +0.1 %);
- an op that may multiply-accumulate but has no formula here (an unknown kernel, a library's
  custom op, linear algebra such as SVD) is never silently counted as zero: it is listed in
  ``macs_uncounted``, ``wsolbench profile`` prints a warning (``--strict-macs`` makes it an
  error) and tables mark the MACs as a lower bound (``≥``).

The counter sees the backward pass, so a method that needs gradients at inference (Grad-CAM) is
charged for it — a tracing counter (fvcore, mmengine) cannot follow ``torch.autograd.grad``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from wsolbench.cost.formatting import MACS_COUNTER
from wsolbench.method import WSOLMethod


class UncountedOpsError(ValueError):
    """The MAC counter met ops it has no formula for (with ``strict_macs``); a ValueError, so the
    command line reports it as one ``error:`` line."""


def _attention_macs(query: Sequence[int], key: Sequence[int], value: Sequence[int]) -> int:
    """Forward MACs of softmax(q kᵀ) v as the math kernel runs it: ``Lq·Lk·d`` for the scores and
    ``Lq·Lk·d_v`` for the weighted values, per (batch, head).

    Args:
        query: [..., Lq, d] (e.g. [B, H, Lq, d]); key: [..., Lk, d]; value: [..., Lk, d_v]. The
            leading dimensions of ``query`` (batch, query heads) count the products, so grouped
            key/value heads are handled.
    """
    *lead, lq, d = query
    lk, dv = key[-2], value[-1]
    return math.prod(lead) * lq * lk * (d + dv)


def _sdpa_forward(args, kwargs, out) -> int:
    query, key, value = args[0], args[1], args[2]
    return _attention_macs(query.shape, key.shape, value.shape)


def _sdpa_backward(args, kwargs, out) -> int:
    # (grad_out, query, key, value, ...): the gradients of both products, two matmuls each.
    query, key, value = args[1], args[2], args[3]
    return 2 * _attention_macs(query.shape, key.shape, value.shape)


def _self_attention_block(batch: int, lq: int, lk: int, embed: int) -> int:
    """In-projection (q from Lq tokens, k and v from Lk), both attention products, output
    projection of an ``embed``-wide multi-head attention (any head count: heads split ``embed``)."""
    projections = batch * (lq + 2 * lk) * embed * embed + batch * lq * embed * embed
    return projections + batch * lq * lk * 2 * embed


def _native_mha(args, kwargs, out) -> int:
    # _native_multi_head_attention(query [B, Lq, E], key [B, Lk, E], value, embed_dim, ...).
    query, key = args[0], args[1]
    if query.is_nested or key.is_nested:
        raise _NoFormula
    batch, lq, embed = query.shape
    return _self_attention_block(batch, lq, key.shape[1], embed)


def _encoder_layer(args, kwargs, out) -> int:
    # _transformer_encoder_layer_fwd(src [B, L, E], ..., ffn_weight_1 [F, E] at index 14, ...).
    src, ffn_weight_1 = args[0], args[14]
    if src.is_nested:
        raise _NoFormula
    batch, length, embed = src.shape
    ffn = ffn_weight_1.shape[0]
    return _self_attention_block(batch, length, length, embed) + 2 * batch * length * embed * ffn


def _matrix_product(m: int, k: int, n: int, batch: int = 1) -> int:
    return batch * m * k * n


def _addmm_activation(args, kwargs, out) -> int:
    (m, k), n = args[1].shape, args[2].shape[1]
    return _matrix_product(m, k, n)


def _matrix_vector(args, kwargs, out) -> int:
    # mv(mat [M, N], vec [N]) / addmv(self, mat, vec)
    mat = args[0] if len(args) == 2 else args[1]
    return mat.shape[0] * mat.shape[1]


def _dot(args, kwargs, out) -> int:
    return args[0].numel()


def _addbmm(args, kwargs, out) -> int:
    (b, m, k), n = args[1].shape, args[2].shape[2]
    return _matrix_product(m, k, n, b)


def _int_mm(args, kwargs, out) -> int:
    (m, k), n = args[0].shape, args[1].shape[1]
    return _matrix_product(m, k, n)


class _NoFormula(Exception):
    """A formula cannot count this call (e.g. nested tensors): report the op as uncounted."""


_aten = torch.ops.aten
#: Formulas of this counter: (args, kwargs, out) → MACs. They take precedence over torch's.
MAC_FORMULAS: dict = {
    _aten._native_multi_head_attention: _native_mha,
    _aten._transformer_encoder_layer_fwd: _encoder_layer,
    _aten._addmm_activation: _addmm_activation,
    _aten.mv: _matrix_vector,
    _aten.addmv: _matrix_vector,
    _aten.dot: _dot,
    _aten.vdot: _dot,
    _aten.addbmm: _addbmm,
    _aten._int_mm: _int_mm,
}
for _name in (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
):
    if hasattr(_aten, _name):
        MAC_FORMULAS[getattr(_aten, _name)] = _sdpa_forward
    if hasattr(_aten, _name + "_backward"):
        MAC_FORMULAS[getattr(_aten, _name + "_backward")] = _sdpa_backward

# Names of aten ops that multiply-accumulate (or may): met without a formula, they are reported.
_MAC_LIKE = re.compile(
    r"mm($|_)|conv(olution|_|\d|$)|attention|(^|_)linear($|_)|matmul|(^|_)mv($|_)|(^|_)v?dot$"
    r"|^_?trilinear$|lstm|gru|rnn|transformer|linalg|svd|(^|_)qr$|eig|cholesky|(^|_)lu(_|$)"
    r"|solve|inverse|triangular|fft|stft|cdist|tensordot|fbgemm|int\dpack|einsum"
)
# Ops of other namespaces known to do no multiply-accumulate; any other non-aten op is reported.
_NO_MAC_FOREIGN = frozenset(
    {
        "torchvision::nms",
        "torchvision::roi_align",
        "torchvision::roi_pool",
        "torchvision::ps_roi_align",
        "torchvision::ps_roi_pool",
    }
)


# aten ops the pattern above matches that are norms or checks: not multiply-accumulates by the
# convention followed here (the module docstring).
_NO_MAC_ATEN = frozenset({"linalg_vector_norm", "_linalg_check_errors", "linalg_cross"})


def _is_mac_like(func) -> bool:
    namespace = func.namespace
    name = func._overloadpacket.__name__
    if namespace in ("aten", "prims"):
        return name not in _NO_MAC_ATEN and bool(_MAC_LIKE.search(name))
    return namespace != "profiler" and f"{namespace}::{name}" not in _NO_MAC_FOREIGN


class MacCounter(TorchDispatchMode):
    """Counts multiply-accumulates of every matmul, convolution and attention kernel that runs,
    forward and backward (see the module docstring for the rules).

    Use as a context manager; ``macs`` is the total, ``by_op`` the split by aten op, ``uncounted``
    the ops met that may multiply-accumulate but have no formula (name → calls). Ops without a
    formula that decompose into ops with one (composite ops) are decomposed first, as
    ``torch.utils.flop_counter.FlopCounterMode`` does; this class keeps no module hierarchy, whose
    backward hooks break ``torch.autograd.grad`` on leaves. It works on meta tensors too (shapes
    only: a model too big to run can be counted).
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()

    @property
    def macs(self) -> int:
        return int(sum(self.by_op.values()))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        formula = MAC_FORMULAS.get(packet)
        torch_formula = None if formula is not None else flop_registry.get(packet)
        if formula is None and torch_formula is None:
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        name = str(packet).removeprefix("aten.")
        try:
            if formula is not None:
                self.by_op[name] += int(formula(args, kwargs, out))
            elif torch_formula is not None:
                self.by_op[name] += int(torch_formula(*args, **kwargs, out_val=out)) // 2
            elif _is_mac_like(func):
                self.uncounted[name] += 1
        except _NoFormula:
            self.uncounted[name] += 1
        return out


def count_macs(method: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Multiply-accumulates of one ``predict`` call on ``images`` (whatever attention kernels and
    fast paths torch picks: each is counted, see the module docstring).

    Args:
        method: a :class:`WSOLMethod` (its ``predict`` through ``predict_batch``), or any module
            (its ``forward(images)``).
        images: [B, 3, H, W] normalized images on the method's device.
        labels: [B] int64 target classes.

    Returns:
        ``{"macs": int (whole batch), "by_op": {aten op: MACs}, "uncounted": {op: calls},
        "counter": MACS_COUNTER}``; ``uncounted`` is empty when every op was counted.
    """
    from wsolbench.evaluate import predict_batch

    method.eval()
    counter = MacCounter()
    with torch.no_grad(), counter:
        if isinstance(method, WSOLMethod):
            predict_batch(method, images, labels)
        else:
            method(images)
    return {
        "macs": counter.macs,
        "by_op": dict(sorted(counter.by_op.items())),
        "uncounted": dict(sorted(counter.uncounted.items())),
        "counter": MACS_COUNTER,
    }
