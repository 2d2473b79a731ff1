"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/reduction.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_T = _rand(2, 3, 4, 5)

TENSOR_CASES = [
    ("reduce_mean", lambda x: mb.reduce_mean(x=x, axes=[-2, -1], keep_dims=True), lambda x: x.mean(axis=(2, 3), keepdims=True)),
    ("reduce_sum", lambda x: mb.reduce_sum(x=x, axes=[1], keep_dims=False), lambda x: x.sum(axis=1)),
    ("reduce_max", lambda x: mb.reduce_max(x=x, axes=[0, 3]), lambda x: x.max(axis=(0, 3))),
    ("reduce_min", lambda x: mb.reduce_min(x=x), lambda x: x.min()),
    ("reduce_prod", lambda x: mb.reduce_prod(x=x, axes=[2]), lambda x: x.prod(axis=2)),
    ("reduce_l2_norm", lambda x: mb.reduce_l2_norm(x=x, axes=[1]), lambda x: np.sqrt((x * x).sum(axis=1))),
    (
        "reduce_log_sum_exp",
        lambda x: mb.reduce_log_sum_exp(x=x, axes=[3], keep_dims=True),
        lambda x: np.log(np.exp(x).sum(axis=3, keepdims=True)),
    ),
]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_op(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-6)


MORE_TENSOR_CASES = [
    (
        "reduce_argmin",
        lambda x: mb.cast(x=mb.reduce_argmin(x=x, axis=-1, keep_dims=True), dtype="fp32"),
        lambda x: np.argmin(x, axis=-1)[..., None],
    ),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-5)


def test_reduce_argmax_returns_int_indices(tmp_path):
    def prog(x):
        return mb.cast(x=mb.reduce_argmax(x=x, axis=1, keep_dims=False), dtype="fp32")

    (out,), _ = run(tmp_path, prog, [X_T], expect_op="reduce_argmax")
    np.testing.assert_array_equal(out, np.argmax(X_T, axis=1))
