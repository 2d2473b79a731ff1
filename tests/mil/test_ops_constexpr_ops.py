"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/constexpr_ops.py (compressed weights)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402
from mil_helpers import run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)


def test_constexpr_cast_and_sparse_to_dense(tmp_path):
    half = _rand(3, 5).astype(np.float16)
    dense = _rand(3, 5) * (RNG.random((3, 5)) > 0.5)
    mask_bits = (dense.ravel() != 0).astype(np.uint8)
    packed_mask = np.packbits(mask_bits, bitorder="little")
    x = _rand(3, 5)

    def prog(x):
        upcast = mb.constexpr_cast(source_val=half, output_dtype="fp32")
        sparse = mb.constexpr_sparse_to_dense(
            nonzero_data=dense.ravel()[mask_bits != 0], mask=packed_mask, shape=np.array([3, 5], dtype=np.uint32)
        )
        return mb.add(x=mb.add(x=x, y=upcast), y=sparse)

    (out,), interp = run(tmp_path, prog, [x], target=ct.target.iOS16)
    assert {"constexpr_cast", "constexpr_sparse_to_dense"} <= set(interp.op_counts())
    np.testing.assert_allclose(out, x + half.astype(np.float32) + dense, rtol=1e-6)


def test_constexpr_affine_dequantize_per_channel(tmp_path):
    data = RNG.integers(-128, 127, size=(3, 4), dtype=np.int8)
    zp = np.array([1, -2, 0], dtype=np.int8)
    scale = np.array([0.1, 0.2, 0.05], dtype=np.float32)
    x = _rand(3, 4)

    def prog(x):
        w = mb.constexpr_affine_dequantize(quantized_data=data, zero_point=zp, scale=scale, axis=0)
        return mb.add(x=x, y=w)

    (out,), _ = run(tmp_path, prog, [x], target=ct.target.iOS16, expect_op="constexpr_affine_dequantize")
    ref = x + (data.astype(np.float64) - zp[:, None]) * scale[:, None]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_constexpr_blockwise_shift_scale(tmp_path):
    data = RNG.integers(-128, 127, size=(4, 6), dtype=np.int8)
    scale = _rand(2, 3, low=0.01, high=0.1)  # blocks of 2x2
    offset = RNG.integers(-5, 5, size=(2, 3), dtype=np.int8)
    x = _rand(4, 6)

    def prog(x):
        return mb.add(x=x, y=mb.constexpr_blockwise_shift_scale(data=data, scale=scale, offset=offset))

    (out,), _ = run(tmp_path, prog, [x], target=ct.target.iOS18, expect_op="constexpr_blockwise_shift_scale")
    block_scale = scale.repeat(2, 0).repeat(2, 1).astype(np.float64)
    block_offset = offset.repeat(2, 0).repeat(2, 1)
    np.testing.assert_allclose(out, x + (data - block_offset) * block_scale, rtol=1e-5, atol=1e-6)


def test_constexpr_lut_to_dense_ios16_packed_indices(tmp_path):
    lut = _rand(4)
    indices = RNG.integers(0, 4, size=(3, 5))
    packed = np.packbits(
        ((indices.ravel()[:, None] >> np.arange(2)) & 1).astype(np.uint8).ravel(), bitorder="little"
    )
    x = _rand(3, 5)

    def prog(x):
        w = mb.constexpr_lut_to_dense(lut=lut, indices=packed, shape=np.array([3, 5], dtype=np.uint32))
        return mb.add(x=x, y=w)

    (out,), _ = run(tmp_path, prog, [x], target=ct.target.iOS16, expect_op="constexpr_lut_to_dense")
    np.testing.assert_allclose(out, x + lut[indices], rtol=1e-6)


def test_constexpr_lut_to_dense_ios18_grouped(tmp_path):
    indices = RNG.integers(0, 16, size=(4, 3)).astype(types.np_uint4_dtype)
    lut = _rand(2, 1, 16, 1)  # two LUTs, one per pair of rows
    x = _rand(4, 3)

    def prog(x):
        return mb.add(x=x, y=mb.constexpr_lut_to_dense(indices=indices, lut=lut))

    (out,), _ = run(tmp_path, prog, [x], target=ct.target.iOS18, expect_op="constexpr_lut_to_dense")
    group = np.arange(4) // 2
    ref = x + lut[group[:, None], 0, indices.astype(int), 0]
    np.testing.assert_allclose(out, ref, rtol=1e-6)
