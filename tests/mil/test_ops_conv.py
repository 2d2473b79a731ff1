"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/conv.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import ref_conv2d, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

W_CONV = _rand(6, 4, 3, 3)
W_GROUPED = _rand(6, 2, 3, 3)
W_DEPTHWISE = _rand(4, 1, 3, 3)
X_IMG = _rand(2, 4, 7, 8)

CONV_CASES = [
    # pad_type, pad, strides, dilations, groups, weight, expected pads
    ("custom_asym_stride", "custom", [1, 0, 2, 1], [2, 1], [1, 1], 1, W_CONV, [(1, 0), (2, 1)]),
    ("same_stride2", "same", None, [2, 2], [1, 1], 1, W_CONV, [(1, 1), (0, 1)]),
    ("same_lower_stride2", "same_lower", None, [2, 2], [1, 1], 1, W_CONV, [(1, 1), (1, 0)]),
    ("same_dilated", "same", None, [1, 1], [2, 2], 1, W_CONV, [(2, 2), (2, 2)]),
    ("valid_dilated_stride", "valid", None, [2, 1], [1, 2], 1, W_CONV, [(0, 0), (0, 0)]),
    ("custom_groups2", "custom", [1, 1, 1, 1], [1, 1], [1, 1], 2, W_GROUPED, [(1, 1), (1, 1)]),
    ("depthwise", "custom", [1, 1, 1, 1], [2, 2], [1, 1], 4, W_DEPTHWISE, [(1, 1), (1, 1)]),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[c[0] for c in CONV_CASES])
def test_conv(tmp_path, case):
    _, pad_type, pad, strides, dilations, groups, weight, expected_pads = case
    bias = _rand(weight.shape[0])

    def prog(x):
        kwargs = dict(x=x, weight=weight, bias=bias, strides=strides, pad_type=pad_type, dilations=dilations, groups=groups)
        if pad is not None:
            kwargs["pad"] = pad
        return mb.conv(**kwargs)

    (out,), _ = run(tmp_path, prog, [X_IMG], expect_op="conv")
    ref = ref_conv2d(X_IMG, weight, bias, strides, expected_pads, dilations, groups)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_conv1d_without_bias(tmp_path):
    x, w = _rand(1, 3, 10), _rand(4, 3, 3)

    (out,), _ = run(tmp_path, lambda x: mb.conv(x=x, weight=w, pad_type="custom", pad=[2, 0]), [x], expect_op="conv")
    ref = ref_conv2d(x[:, :, None], w[:, :, None], np.zeros(4), (1, 1), [(0, 0), (2, 0)])[:, :, 0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
