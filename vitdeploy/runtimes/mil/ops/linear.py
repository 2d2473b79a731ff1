"""linear, matmul, einsum: mirrors coremltools mil/ops/defs/iOS15/linear.py (torch computes linear and matmul)."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._utils import as_torch, f32, torch

# torch's batched GEMM is much faster than numpy's matmul on stacked (rank > 2) operands.


@register("linear")
def linear(a):
    F = torch().nn.functional
    bias = as_torch(a["bias"]) if "bias" in a else None
    return F.linear(as_torch(a["x"]), as_torch(a["weight"]), bias).numpy()


@register("matmul")
def matmul(a):
    x, y = as_torch(a["x"]), as_torch(a["y"])
    if a.scalar("transpose_x", False) and x.dim() >= 2:
        x = x.transpose(-1, -2)
    if a.scalar("transpose_y", False) and y.dim() >= 2:
        y = y.transpose(-1, -2)
    return torch().matmul(x, y).numpy()


@register("einsum")
def einsum(a):
    return np.einsum(a.scalar("equation"), *[f32(v) for v in a["values"]])
