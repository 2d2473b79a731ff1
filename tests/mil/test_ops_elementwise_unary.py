"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/elementwise_unary.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_A = _rand(2, 3, 4)
X_POS = _rand(2, 3, 4, low=0.1, high=3.0)

ELEMENTWISE_CASES = [
    ("sqrt", lambda x: mb.sqrt(x=x), [X_POS], np.sqrt),
    ("rsqrt", lambda x: mb.rsqrt(x=x, epsilon=0.5), [X_POS], lambda x: 1 / np.sqrt(x + 0.5)),
    ("inverse", lambda x: mb.inverse(x=x, epsilon=0.25), [X_POS], lambda x: 1 / (x + 0.25)),
    ("log", lambda x: mb.log(x=x, epsilon=0.1), [X_POS], lambda x: np.log(x + 0.1)),
    ("exp", lambda x: mb.exp(x=x), [X_A], np.exp),
    ("tanh", lambda x: mb.tanh(x=x), [X_A], np.tanh),
    ("abs", lambda x: mb.abs(x=x), [X_A], np.abs),
    ("square", lambda x: mb.square(x=x), [X_A], np.square),
    ("erf", lambda x: mb.erf(x=x), [X_A], lambda x: np.vectorize(math.erf)(x.astype(np.float64))),
    ("floor", lambda x: mb.floor(x=x), [X_A * 3], np.floor),
    ("clip", lambda x: mb.clip(x=x, alpha=-0.3, beta=0.4), [X_A], lambda x: np.clip(x, -0.3, 0.4)),
]


@pytest.mark.parametrize("case", ELEMENTWISE_CASES, ids=[c[0] for c in ELEMENTWISE_CASES])
def test_elementwise(tmp_path, case):
    op_type, fn, inputs, ref_fn = case
    check_case(tmp_path, op_type, fn, inputs, ref_fn, atol=1e-6)


X_T = _rand(2, 3, 4, 5)

TENSOR_CASES = [
    ("cast", lambda x: mb.cast(x=mb.cast(x=mb.mul(x=x, y=4.0), dtype="int32"), dtype="fp32"), lambda x: np.trunc(x * 4.0)),
]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_op(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-6)


MORE_TENSOR_CASES = [
    ("threshold", lambda x: mb.threshold(x=x, alpha=0.2), lambda x: np.maximum(x, 0.2)),
    ("round", lambda x: mb.round(x=mb.mul(x=x, y=3.0)), lambda x: np.round(3 * x)),
    ("sign", lambda x: mb.sign(x=x), np.sign),
    ("sin", lambda x: mb.sin(x=x), np.sin),
    ("cos", lambda x: mb.cos(x=x), np.cos),
    ("atan", lambda x: mb.atan(x=x), np.arctan),
    ("ceil", lambda x: mb.ceil(x=mb.mul(x=x, y=3.0)), lambda x: np.ceil(3 * x)),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-5)
