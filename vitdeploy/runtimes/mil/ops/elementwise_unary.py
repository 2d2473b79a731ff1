"""Elementwise unary ops and cast: mirrors coremltools mil/ops/defs/iOS15/elementwise_unary.py (and iOS17's)."""

from __future__ import annotations

import numpy as np

from ..program import FLOAT_TYPES, NP_DTYPES
from ..registry import register
from ._utils import erf, f32


def _unary(fn):
    return lambda a: fn(f32(a["x"]))


def _epsilon_unary(fn, default_eps):
    return lambda a: fn(f32(a["x"]) + np.float32(a.scalar("epsilon", default_eps)))


register("abs")(lambda a: np.abs(a["x"]))
register("sign")(lambda a: np.sign(a["x"]))
register("square")(lambda a: np.square(a["x"]))
register("acos")(_unary(np.arccos))
register("asin")(_unary(np.arcsin))
register("atan")(_unary(np.arctan))
register("atanh")(_unary(np.arctanh))
register("ceil")(_unary(np.ceil))
register("floor")(_unary(np.floor))
register("cos")(_unary(np.cos))
register("cosh")(_unary(np.cosh))
register("sin")(_unary(np.sin))
register("sinh")(_unary(np.sinh))
register("tan")(_unary(np.tan))
register("tanh")(_unary(np.tanh))
register("exp")(_unary(np.exp))
register("exp2")(_unary(np.exp2))
register("erf")(_unary(erf))
register("sqrt")(_unary(np.sqrt))
register("rsqrt")(_epsilon_unary(lambda v: 1.0 / np.sqrt(v), 1e-12))
register("inverse")(_epsilon_unary(lambda v: 1.0 / v, 1e-4))
register("log")(_epsilon_unary(np.log, 1e-45))
register("logical_not")(lambda a: np.logical_not(np.asarray(a["x"]).astype(bool)))


@register("round")
def round_(a):
    return np.round(f32(a["x"]))


@register("clip")
def clip(a):
    return np.minimum(np.maximum(f32(a["x"]), a.scalar("alpha")), a.scalar("beta"))


@register("threshold")
def threshold(a):
    return np.maximum(f32(a["x"]), np.float32(a.scalar("alpha")))


@register("cast")
def cast(a):
    target = a.scalar("dtype")
    x = np.asarray(a["x"])
    np_dtype = NP_DTYPES.get(target)
    if np_dtype is None:
        raise a.unsupported(f"to dtype '{target}'")
    if target in FLOAT_TYPES:
        return x.astype(np.float32)
    return x.astype(np_dtype)
