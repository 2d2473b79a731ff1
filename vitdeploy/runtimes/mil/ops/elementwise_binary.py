"""Elementwise binary ops: mirrors coremltools mil/ops/defs/iOS15/elementwise_binary.py."""

from __future__ import annotations

import numpy as np

from ..program import FLOAT_TYPES
from ..registry import register
from ._utils import f32


def _binary(fn):
    return lambda a: fn(a["x"], a["y"])


def _logical(fn):
    return lambda a: fn(np.asarray(a["x"]).astype(bool), np.asarray(a["y"]).astype(bool))


register("add")(_binary(np.add))
register("sub")(_binary(np.subtract))
register("mul")(_binary(np.multiply))
register("mod")(_binary(np.mod))
register("maximum")(_binary(np.maximum))
register("minimum")(_binary(np.minimum))
register("equal")(_binary(np.equal))
register("not_equal")(_binary(np.not_equal))
register("less")(_binary(np.less))
register("less_equal")(_binary(np.less_equal))
register("greater")(_binary(np.greater))
register("greater_equal")(_binary(np.greater_equal))
register("logical_and")(_logical(np.logical_and))
register("logical_or")(_logical(np.logical_or))
register("logical_xor")(_logical(np.logical_xor))


@register("real_div")
def real_div(a):
    return np.true_divide(a["x"], a["y"])


@register("floor_div")
def floor_div(a):
    x, y = a["x"], a["y"]
    if np.asarray(x).dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu":
        return np.floor_divide(x, y)
    return np.floor(np.true_divide(x, y))


@register("pow")
def pow_(a):
    return np.power(f32(a["x"]), f32(a["y"])) if a.out_dtype() in FLOAT_TYPES else np.power(a["x"], a["y"])
