"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/quantization_ops.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)


def _ref_fake_quant(x, scale, zero_point, low, high, axis=None):
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = np.reshape(scale, shape), np.reshape(zero_point, shape)
    q = np.clip(np.round(x / scale) + zero_point, low, high)
    return (q - zero_point) * scale


@pytest.mark.parametrize("with_zero_point", [True, False])
def test_quantize_dequantize_per_tensor_int8(tmp_path, with_zero_point):
    x = _rand(2, 3, 4, low=-2, high=2)
    scale, zp = np.float32(0.01), np.int8(3)
    zp_kwargs = {"zero_point": zp} if with_zero_point else {}

    def prog(x):
        q = mb.quantize(input=x, scale=scale, output_dtype="int8", **zp_kwargs)
        return mb.dequantize(input=q, scale=scale, **zp_kwargs)

    (out,), _ = run(tmp_path, prog, [x], expect_op="quantize")
    ref = _ref_fake_quant(x.astype(np.float64), 0.01, 3 if with_zero_point else 0, -128, 127)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    assert np.any(np.abs(x) > 1.3), "the test input must reach the clipping range"


def test_quantize_dequantize_per_channel_uint8(tmp_path):
    x = _rand(2, 3, 4, low=-1, high=1)
    scale = np.array([0.002, 0.01, 0.004], dtype=np.float32)
    zp = np.array([128, 100, 10], dtype=np.uint8)

    def prog(x):
        q = mb.quantize(input=x, scale=scale, zero_point=zp, axis=1, output_dtype="uint8")
        return mb.dequantize(input=q, scale=scale, zero_point=zp, axis=1)

    (out,), _ = run(tmp_path, prog, [x], expect_op="dequantize")
    ref = _ref_fake_quant(x.astype(np.float64), scale.astype(np.float64), zp.astype(np.float64), 0, 255, axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
