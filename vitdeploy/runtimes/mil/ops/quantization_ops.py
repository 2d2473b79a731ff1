"""quantize, dequantize: mirrors coremltools mil/ops/defs/iOS17/quantization_ops.py."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._utils import f32, int_range, per_axis


@register("quantize")
def quantize(a):
    x = f32(a["input"])
    rank, axis = x.ndim, a.scalar("axis")
    q = np.round(x / per_axis(f32(a["scale"]), rank, axis))
    if "zero_point" in a:
        q = q + per_axis(a["zero_point"], rank, axis).astype(np.float32)
    low, high = int_range(a.scalar("output_dtype"))
    return np.clip(q, low, high)


@register("dequantize")
def dequantize(a):
    x = np.asarray(a["input"]).astype(np.float32)
    rank, axis = x.ndim, a.scalar("axis")
    if "zero_point" in a:
        x = x - per_axis(a["zero_point"], rank, axis).astype(np.float32)
    return x * per_axis(f32(a["scale"]), rank, axis)
