"""Compressed weights: mirrors coremltools mil/ops/defs/iOS16/constexpr_ops.py and iOS18/compression.py."""

# The interpreter folds these once at load time: they only read consts.

from __future__ import annotations

import math

import numpy as np

from ..registry import register
from ._utils import f32, per_axis


def _expand_blocks(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat a blockwise parameter so block (i0, j0, ...) covers its block of the data."""
    param = np.asarray(param)
    for axis, (size, blocks) in enumerate(zip(shape, param.shape)):
        if blocks != size:
            param = np.repeat(param, size // blocks, axis=axis)
    return param


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Unsigned n-bit elements packed LSB-first into bytes."""
    bits = np.unpackbits(np.asarray(packed).astype(np.uint8).ravel(), bitorder="little")
    bits = bits[: count * nbits].reshape(count, nbits).astype(np.int64)
    return (bits << np.arange(nbits)).sum(axis=1)


def _lut_blockwise(indices: np.ndarray, lut: np.ndarray, vector_axis) -> np.ndarray:
    """iOS18 LUT: lut[*group, palette, vector]; each index dim is split evenly across groups."""
    vector_size = lut.shape[-1]
    group_shape = lut.shape[:-2]
    block = [n // g for n, g in zip(indices.shape, group_shape)]
    group_index = tuple(
        (np.arange(n) // b).reshape([-1 if d == k else 1 for d in range(indices.ndim)])
        for k, (n, b) in enumerate(zip(indices.shape, block))
    )
    values = lut[group_index + (indices,)]  # shape: indices.shape + (vector_size,)
    if vector_size == 1:
        return values[..., 0]
    axis = int(vector_axis) % indices.ndim
    values = np.moveaxis(values, -1, axis + 1)
    shape = list(indices.shape)
    shape[axis] *= vector_size
    return values.reshape(shape)


@register("constexpr_affine_dequantize")
def constexpr_affine_dequantize(a):
    data = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = a.scalar("axis")
    zero_point = per_axis(np.asarray(a["zero_point"]).astype(np.float32), data.ndim, axis)
    return (data - zero_point) * per_axis(f32(a["scale"]), data.ndim, axis)


@register("constexpr_blockwise_shift_scale")
def constexpr_blockwise_shift_scale(a):
    data = np.asarray(a["data"]).astype(np.float32)
    if "offset" in a:
        data = data - _expand_blocks(np.asarray(a["offset"]).astype(np.float32), data.shape)
    return data * _expand_blocks(f32(a["scale"]), data.shape)


@register("constexpr_lut_to_dense")
def constexpr_lut_to_dense(a):
    lut = f32(a["lut"]) if np.asarray(a["lut"]).dtype.kind == "f" else np.asarray(a["lut"])
    indices = np.asarray(a["indices"])
    if "shape" in a:  # iOS16: one flat LUT, indices packed into bytes
        shape = a.ints("shape")
        nbits = int(round(math.log2(lut.size)))
        return lut.ravel()[_unpack_bits(indices, nbits, int(np.prod(shape)))].reshape(shape)
    return _lut_blockwise(indices.astype(np.int64), lut, a.scalar("vector_axis"))


@register("constexpr_cast")
def constexpr_cast(a):
    return f32(a["source_val"])


@register("constexpr_sparse_to_dense")
def constexpr_sparse_to_dense(a):
    nonzero = np.asarray(a["nonzero_data"])
    mask = np.asarray(a["mask"])
    if "shape" in a:  # iOS16: mask bits packed into bytes
        shape = a.ints("shape")
        flat_mask = np.unpackbits(mask.astype(np.uint8), bitorder="little")[: int(np.prod(shape))]
    else:
        shape, flat_mask = list(mask.shape), mask.ravel()
    dense = np.zeros(int(np.prod(shape)), dtype=np.float32 if nonzero.dtype.kind == "f" else nonzero.dtype)
    dense[flat_mask != 0] = nonzero
    return dense.reshape(shape)
