"""Tensor operations: mirrors coremltools mil/ops/defs/iOS15/tensor_operation.py (and iOS16's fill_like)."""

from __future__ import annotations

import math

import numpy as np

from ..registry import register


@register("identity")
def identity(a):
    return a["x"]


@register("flatten2d")
def flatten2d(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis", 1)) % (x.ndim + 1) if x.ndim else 0
    return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


@register("concat")
def concat(a):
    values = [np.asarray(v) for v in a["values"]]
    axis = int(a.scalar("axis"))
    if not a.scalar("interleave", False):
        return np.concatenate(values, axis=axis)
    axis %= values[0].ndim
    stacked = np.stack(values, axis=axis + 1)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


@register("stack")
def stack(a):
    return np.stack([np.asarray(v) for v in a["values"]], axis=int(a.scalar("axis")))


@register("split")
def split(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis")) % x.ndim
    sizes = a.ints("split_sizes")
    if sizes is None:
        n = int(a.scalar("num_splits"))
        sizes = [math.ceil(x.shape[axis] / n)] * n
        sizes[-1] = x.shape[axis] - sum(sizes[:-1])
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


@register("tile")
def tile(a):
    return np.tile(a["x"], a.ints("reps"))


@register("pad")
def pad(a):
    x = np.asarray(a["x"])
    widths_flat = a.ints("pad")
    n = len(widths_flat) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(widths_flat[2 * i], widths_flat[2 * i + 1]) for i in range(n)]
    mode = a.scalar("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=a.scalar("constant_val", 0.0))
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise a.unsupported(f"mode '{mode}'")


@register("shape")
def shape(a):
    return np.asarray(np.shape(a["x"]), dtype=np.int32)


@register("fill")
def fill(a):
    return np.full(a.ints("shape"), a.scalar("value", 0.0))


@register("fill_like")
def fill_like(a):
    return np.full(np.shape(a["ref_tensor"]), a.scalar("value", 0.0))


@register("range_1d")
def range_1d(a):
    return np.arange(a.scalar("start"), a.scalar("end"), a.scalar("step"))


@register("cumsum")
def cumsum(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis", 0))
    if a.scalar("reverse", False):
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if a.scalar("exclusive", False):
        out = out - x
    return np.flip(out, axis) if a.scalar("reverse", False) else out


@register("band_part")
def band_part(a):
    x = np.asarray(a["x"])
    lower, upper = int(a.scalar("lower", -1)), int(a.scalar("upper", -1))
    rows, cols = np.arange(x.shape[-2])[:, None], np.arange(x.shape[-1])[None, :]
    keep = np.ones((x.shape[-2], x.shape[-1]), dtype=bool)
    if lower >= 0:
        keep &= rows - cols <= lower
    if upper >= 0:
        keep &= cols - rows <= upper
    return np.where(keep, x, np.zeros_like(x))
