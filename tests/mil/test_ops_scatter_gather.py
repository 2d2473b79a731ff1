"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/scatter_gather.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_T = _rand(2, 3, 4, 5)

TENSOR_CASES = [
    (
        "gather",
        lambda x: mb.gather(x=x, indices=np.array([[3, 0], [-1, 1]], dtype=np.int32), axis=2),
        lambda x: np.take(x, [[3, 0], [3, 1]], axis=2),
    ),
    (
        "gather_along_axis",
        lambda x: mb.gather_along_axis(x=x, indices=np.array([[[[2, 0, 1, 0, 2]]]], dtype=np.int32).repeat(2, 0).repeat(3, 1), axis=2),
        lambda x: np.take_along_axis(x, np.array([[[[2, 0, 1, 0, 2]]]]).repeat(2, 0).repeat(3, 1), axis=2),
    ),
]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_op(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-6)


MORE_TENSOR_CASES = [
    (
        "gather_nd",
        lambda x: mb.gather_nd(x=x, indices=np.array([[0, 1], [1, -1]], dtype=np.int32)),
        lambda x: np.stack([x[0, 1], x[1, 2]]),
    ),
    (
        "gather",
        lambda x: mb.gather(x=x, indices=np.array([[2, 0], [1, 1]], dtype=np.int32), axis=2, batch_dims=1),
        lambda x: np.stack([np.take(x[0], [2, 0], axis=1), np.take(x[1], [1, 1], axis=1)]),
    ),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-5)
