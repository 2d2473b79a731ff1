"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/elementwise_binary.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_A = _rand(2, 3, 4)
X_B = _rand(3, 1, low=0.5, high=2.0)
X_POS = _rand(2, 3, 4, low=0.1, high=3.0)

ELEMENTWISE_CASES = [
    ("add", lambda x, y: mb.add(x=x, y=y), [X_A, X_B], lambda x, y: x + y),
    ("sub", lambda x, y: mb.sub(x=x, y=y), [X_A, X_B], lambda x, y: x - y),
    ("mul", lambda x, y: mb.mul(x=x, y=y), [X_A, X_B], lambda x, y: x * y),
    ("real_div", lambda x, y: mb.real_div(x=x, y=y), [X_A, X_B], lambda x, y: x / y),
    ("pow", lambda x, y: mb.pow(x=x, y=y), [X_POS, X_B], lambda x, y: np.power(x, y)),
    ("maximum", lambda x, y: mb.maximum(x=x, y=y), [X_A, X_B], np.maximum),
    ("minimum", lambda x, y: mb.minimum(x=x, y=y), [X_A, X_B], np.minimum),
]


@pytest.mark.parametrize("case", ELEMENTWISE_CASES, ids=[c[0] for c in ELEMENTWISE_CASES])
def test_elementwise(tmp_path, case):
    op_type, fn, inputs, ref_fn = case
    check_case(tmp_path, op_type, fn, inputs, ref_fn, atol=1e-6)


X_T = _rand(2, 3, 4, 5)

MORE_TENSOR_CASES = [
    ("floor_div", lambda x: mb.floor_div(x=x, y=0.3), lambda x: np.floor(x / 0.3)),
    ("mod", lambda x: mb.mod(x=x, y=0.3), lambda x: np.mod(x, 0.3)),
    ("less", lambda x: mb.select(cond=mb.less(x=x, y=0.1), a=x, b=mb.mul(x=x, y=-1.0)), lambda x: np.where(x < 0.1, x, -x)),
    (
        "logical_and",
        lambda x: mb.select(
            cond=mb.logical_and(x=mb.greater(x=x, y=-0.5), y=mb.less_equal(x=x, y=0.5)), a=x, b=mb.mul(x=x, y=0.0)
        ),
        lambda x: np.where((x > -0.5) & (x <= 0.5), x, 0.0),
    ),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-5)
