"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/tensor_operation.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_T = _rand(2, 3, 4, 5)

TENSOR_CASES = [
    ("flatten2d", lambda x: mb.flatten2d(x=x, axis=2), lambda x: x.reshape(6, 20)),
    ("concat", lambda x: mb.concat(values=[x, mb.mul(x=x, y=2.0)], axis=-2), lambda x: np.concatenate([x, 2 * x], axis=-2)),
    (
        "concat",
        lambda x: mb.concat(values=[x, mb.mul(x=x, y=2.0)], axis=1, interleave=True),
        lambda x: np.stack([x, 2 * x], axis=2).reshape(2, 6, 4, 5),
    ),
    ("tile", lambda x: mb.tile(x=x, reps=[1, 2, 1, 3]), lambda x: np.tile(x, (1, 2, 1, 3))),
    (
        "pad",
        lambda x: mb.pad(x=x, pad=[1, 2, 0, 3], mode="constant", constant_val=0.5),
        lambda x: np.pad(x, [(0, 0), (0, 0), (1, 2), (0, 3)], constant_values=0.5),
    ),
    (
        "pad",
        lambda x: mb.pad(x=x, pad=[1, 2, 2, 1], mode="reflect"),
        lambda x: torch.nn.functional.pad(torch.from_numpy(x), (2, 1, 1, 2), mode="reflect").numpy(),
    ),
    (
        "pad",
        lambda x: mb.pad(x=x, pad=[3, 0, 0, 2], mode="replicate"),
        lambda x: torch.nn.functional.pad(torch.from_numpy(x), (0, 2, 3, 0), mode="replicate").numpy(),
    ),
]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_op(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-6)


def _rev_exclusive_cumsum(x, axis):
    return np.flip(np.cumsum(np.flip(x, axis), axis), axis) - x


MORE_TENSOR_CASES = [
    ("stack", lambda x: mb.stack(values=[x, mb.mul(x=x, y=2.0)], axis=1), lambda x: np.stack([x, 2 * x], axis=1)),
    ("cumsum", lambda x: mb.cumsum(x=x, axis=2), lambda x: np.cumsum(x, axis=2)),
    ("cumsum", lambda x: mb.cumsum(x=x, axis=2, exclusive=True, reverse=True), lambda x: _rev_exclusive_cumsum(x, 2)),
    ("band_part", lambda x: mb.band_part(x=x, lower=1, upper=0), lambda x: np.tril(x) - np.tril(x, -2)),
    (
        "shape",
        lambda x: mb.add(x=x, y=mb.cast(x=mb.slice_by_size(x=mb.shape(x=x), begin=[1], size=[1]), dtype="fp32")),
        lambda x: x + 3,
    ),
    ("fill", lambda x: mb.add(x=x, y=mb.fill(shape=[4, 5], value=1.5)), lambda x: x + 1.5),
    ("fill_like", lambda x: mb.add(x=x, y=mb.fill_like(ref_tensor=x, value=-0.5)), lambda x: x - 0.5),
    (
        "range_1d",
        lambda x: mb.add(x=x, y=mb.cast(x=mb.range_1d(start=1, end=16, step=3), dtype="fp32")),
        lambda x: x + np.arange(1, 16, 3),
    ),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-5)


@pytest.mark.parametrize("by", ["num_splits", "split_sizes"])
def test_split(tmp_path, by):
    kwargs = {"num_splits": 2} if by == "num_splits" else {"split_sizes": [1, 3]}

    def prog(x):
        return mb.split(x=x, axis=2, **kwargs)

    outs, _ = run(tmp_path, prog, [X_T], expect_op="split")
    cuts = [2] if by == "num_splits" else [1]
    for out, ref in zip(outs, np.split(X_T, cuts, axis=2), strict=True):
        np.testing.assert_array_equal(out, ref)
