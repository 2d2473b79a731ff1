"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/linear.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

W_LINEAR = _rand(5, 8)
B_LINEAR = _rand(5)


def _matmul_case(tx, ty):
    x = _rand(2, 3, 4, 5) if not tx else _rand(2, 3, 5, 4)
    y = _rand(3, 5, 6) if not ty else _rand(3, 6, 5)
    ref_x = np.swapaxes(x, -1, -2) if tx else x
    ref_y = np.swapaxes(y, -1, -2) if ty else y
    return x, y, np.matmul(ref_x.astype(np.float64), ref_y)


@pytest.mark.parametrize("tx,ty", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_transpose_flags(tmp_path, tx, ty):
    x, y, ref = _matmul_case(tx, ty)
    (out,), _ = run(
        tmp_path, lambda a, b: mb.matmul(x=a, y=b, transpose_x=tx, transpose_y=ty), [x, y], expect_op="matmul"
    )
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_linear(tmp_path):
    x = _rand(2, 3, 8)
    (out,), _ = run(tmp_path, lambda x: mb.linear(x=x, weight=W_LINEAR, bias=B_LINEAR), [x], expect_op="linear")
    np.testing.assert_allclose(out, x.astype(np.float64) @ W_LINEAR.T + B_LINEAR, rtol=1e-5, atol=1e-6)


X_T = _rand(2, 3, 4, 5)

TENSOR_CASES = [
    (
        "einsum",
        lambda x: mb.einsum(values=(x, mb.transpose(x=x, perm=[0, 3, 2, 1])), equation="nchw,nwhu->nchu"),
        lambda x: np.einsum("nchw,nwhu->nchu", x, x.transpose(0, 3, 2, 1)),
    ),
]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_op(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-6)
