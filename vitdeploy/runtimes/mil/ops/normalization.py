"""Normalization: mirrors coremltools mil/ops/defs/iOS15/normalization.py (and iOS17's)."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._utils import f32


def _channel_param(value, rank: int) -> np.ndarray:
    return f32(value).reshape([1, -1] + [1] * (rank - 2))


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    return centered / np.sqrt(var + np.float32(eps))


@register("batch_norm")
def batch_norm(a):
    x = f32(a["x"])
    inv_std = 1.0 / np.sqrt(f32(a["variance"]) + np.float32(a.scalar("epsilon", 1e-5)))
    scale = inv_std * (f32(a["gamma"]) if "gamma" in a else np.float32(1.0))
    shift = (f32(a["beta"]) if "beta" in a else np.float32(0.0)) - f32(a["mean"]) * scale
    return x * _channel_param(scale, x.ndim) + _channel_param(shift, x.ndim)


@register("instance_norm")
def instance_norm(a):
    x = f32(a["x"])
    y = _normalize(x, tuple(range(2, x.ndim)), a.scalar("epsilon", 1e-5))
    if "gamma" in a:
        y = y * _channel_param(a["gamma"], x.ndim)
    if "beta" in a:
        y = y + _channel_param(a["beta"], x.ndim)
    return y


@register("layer_norm")
def layer_norm(a):
    x = f32(a["x"])
    axes = a.ints("axes")
    axes = tuple(range(x.ndim)) if axes is None else tuple(ax % x.ndim for ax in axes)
    y = _normalize(x, axes, a.scalar("epsilon", 1e-5))
    # gamma/beta have the shape of x restricted to the normalized axes.
    param_shape = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
    if "gamma" in a:
        y = y * f32(a["gamma"]).reshape(param_shape)
    if "beta" in a:
        y = y + f32(a["beta"]).reshape(param_shape)
    return y


@register("l2_norm")
def l2_norm(a):
    x = f32(a["x"])
    axes = tuple(range(max(x.ndim - 3, 0), x.ndim))
    norm = np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + np.float32(a.scalar("epsilon", 1e-6)))
    return x / norm
