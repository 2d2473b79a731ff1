"""Reductions: mirrors coremltools mil/ops/defs/iOS15/reduction.py (and iOS17's reduce_arg*)."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._utils import f32


def _reduce_axes(a, x) -> tuple[int, ...]:
    axes = a.ints("axes")
    return tuple(range(x.ndim)) if axes is None else tuple(ax % x.ndim for ax in axes)


def _reduce(fn):
    def run(a):
        x = f32(a["x"])
        return fn(x, axis=_reduce_axes(a, x), keepdims=bool(a.scalar("keep_dims", False)))

    return run


def _l1(x, axis, keepdims):
    return np.sum(np.abs(x), axis=axis, keepdims=keepdims)


def _l2(x, axis, keepdims):
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


def _sum_square(x, axis, keepdims):
    return np.sum(x * x, axis=axis, keepdims=keepdims)


def _log_sum(x, axis, keepdims):
    return np.log(np.sum(x, axis=axis, keepdims=keepdims))


def _log_sum_exp(x, axis, keepdims):
    peak = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=axis)


def _reduce_arg(fn):
    def run(a):
        x = np.asarray(a["x"])
        axis = int(a.scalar("axis", -1))
        out = fn(x, axis=axis)
        if a.scalar("keep_dims", False):
            out = np.expand_dims(out, axis)
        return out.astype(np.int32)

    return run


register("reduce_mean")(_reduce(np.mean))
register("reduce_sum")(_reduce(np.sum))
register("reduce_max")(_reduce(np.max))
register("reduce_min")(_reduce(np.min))
register("reduce_prod")(_reduce(np.prod))
register("reduce_l1_norm")(_reduce(_l1))
register("reduce_l2_norm")(_reduce(_l2))
register("reduce_sum_square")(_reduce(_sum_square))
register("reduce_log_sum")(_reduce(_log_sum))
register("reduce_log_sum_exp")(_reduce(_log_sum_exp))
register("reduce_argmax")(_reduce_arg(np.argmax))
register("reduce_argmin")(_reduce_arg(np.argmin))
