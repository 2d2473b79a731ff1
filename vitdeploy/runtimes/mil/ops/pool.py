"""avg_pool, max_pool: mirrors coremltools mil/ops/defs/iOS15/pool.py (torch computes; MIL-style padding)."""

from __future__ import annotations

import math

import numpy as np

from ..registry import register
from ._utils import f32, spatial_pads, torch, torch_pad_arg


def _ceil_mode_extra(in_size, pad_total, kernel, stride) -> int:
    """Extra trailing padding so a ceil_mode pooling window count is reached (MIL formula)."""
    out = math.floor((in_size + pad_total - kernel + stride - 1) / stride + 1)
    if (out - 1) * stride >= in_size + pad_total / 2 and pad_total > 0:
        out -= 1
    return max(0, (out - 1) * stride + kernel - (in_size + pad_total))


def _pool_padding(a, x_shape, kernel, strides) -> list[tuple[int, int]]:
    pads = spatial_pads(a, list(x_shape[2:]), kernel, strides, [1] * len(kernel))
    if a.scalar("ceil_mode", False):
        pads = [
            (before, after + _ceil_mode_extra(size, before + after, k, s))
            for (before, after), size, k, s in zip(pads, x_shape[2:], kernel, strides)
        ]
    return pads


def _pool_fns(n_spatial):
    F = torch().nn.functional
    return {1: (F.avg_pool1d, F.max_pool1d), 2: (F.avg_pool2d, F.max_pool2d), 3: (F.avg_pool3d, F.max_pool3d)}[
        n_spatial
    ]


def _pool_arguments(a):
    """(x as a torch tensor, kernel, strides, torch pad argument) of a pooling op."""
    x = torch().from_numpy(np.ascontiguousarray(f32(a["x"])))
    kernel = a.ints("kernel_sizes")
    strides = a.ints("strides", [1] * len(kernel))
    return x, kernel, strides, torch_pad_arg(_pool_padding(a, x.shape, kernel, strides))


@register("avg_pool")
def avg_pool(a):
    t = torch()
    F = t.nn.functional
    x, kernel, strides, pad = _pool_arguments(a)
    pool = _pool_fns(len(kernel))[0]
    pooled = pool(F.pad(x, pad), kernel, strides)
    if a.scalar("exclude_padding_from_average", False):
        ones = t.ones((1, 1) + tuple(x.shape[2:]))
        coverage = pool(F.pad(ones, pad), kernel, strides)
        pooled = pooled / coverage
    return pooled.numpy()


@register("max_pool")
def max_pool(a):
    x, kernel, strides, pad = _pool_arguments(a)
    pool = _pool_fns(len(kernel))[1]
    return pool(torch().nn.functional.pad(x, pad, value=-math.inf), kernel, strides).numpy()
