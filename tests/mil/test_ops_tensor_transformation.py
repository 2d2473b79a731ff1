"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/tensor_transformation.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_T = _rand(2, 3, 4, 5)

TENSOR_CASES = [
    # iOS17 reshape: a 0 copies the input dim at the same position counted from the right.
    ("reshape", lambda x: mb.reshape(x=x, shape=[0, -1, 5]), lambda x: x.reshape(3, 8, 5)),
    ("reshape", lambda x: mb.reshape(x=x, shape=[6, 0, -1]), lambda x: x.reshape(6, 4, 5)),
    ("transpose", lambda x: mb.transpose(x=x, perm=[3, 1, 0, 2]), lambda x: x.transpose(3, 1, 0, 2)),
    ("expand_dims", lambda x: mb.expand_dims(x=x, axes=[-2]), lambda x: x[..., None, :]),
    ("expand_dims", lambda x: mb.expand_dims(x=mb.reduce_sum(x=x, axes=[0, 1]), axes=[0, -1]), lambda x: x.sum(axis=(0, 1))[None, ..., None]),
    ("squeeze", lambda x: mb.squeeze(x=mb.expand_dims(x=x, axes=[1]), axes=[1]), lambda x: x),
    (
        "slice_by_index",
        lambda x: mb.slice_by_index(x=x, begin=[1, 0, 1, 0], end=[2, 3, 4, 5], stride=[1, 2, 2, 1]),
        lambda x: x[1:2, 0:3:2, 1:4:2, 0:5],
    ),
    (
        "slice_by_index",
        lambda x: mb.slice_by_index(
            x=x,
            begin=[0, 1, -1, 3],
            end=[0, 0, 0, -1],
            stride=[1, 1, -1, 1],
            begin_mask=[True, False, False, False],
            end_mask=[True, True, True, False],
            squeeze_mask=[False, False, False, True],
        ),
        lambda x: x[:, 1:, ::-1, 3],
    ),
    ("slice_by_size", lambda x: mb.slice_by_size(x=x, begin=[0, 1, 2, 1], size=[2, -1, 2, 3]), lambda x: x[:, 1:, 2:4, 1:4]),
]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_op(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-6)


MORE_TENSOR_CASES = [
    ("reverse", lambda x: mb.reverse(x=x, axes=[1, 3]), lambda x: np.flip(x, axis=(1, 3))),
    (
        "reshape_like",
        lambda x: mb.reshape_like(
            x=x, ref_tensors=(mb.reshape(x=x, shape=[6, 20]),), begins=[0], ends=[2], end_masks=[False]
        ),
        lambda x: x.reshape(6, 20),
    ),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-5)


def test_pixel_shuffle_and_unshuffle(tmp_path):
    x = _rand(1, 8, 2, 3)

    def prog(x):
        up = mb.pixel_shuffle(x=x, upscale_factor=2)
        return up, mb.pixel_unshuffle(x=up, downscale_factor=np.uint32(2))

    (up, down), _ = run(tmp_path, prog, [x], target=ct.target.iOS16, expect_op="pixel_unshuffle")
    np.testing.assert_array_equal(up, torch.pixel_shuffle(torch.from_numpy(x), 2).numpy())
    np.testing.assert_array_equal(down, x)
