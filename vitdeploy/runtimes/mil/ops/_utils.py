"""Helpers shared by the op modules (as coremltools' mil/ops/defs/_utils.py is for its op definitions)."""

from __future__ import annotations

import math

import numpy as np

from ..program import NP_DTYPES


def f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def torch():
    """torch, imported on first use (it computes convolutions, pooling, linear, matmul and erf)."""
    import torch as _torch

    return _torch


def as_torch(x):
    return torch().from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def erf(x: np.ndarray) -> np.ndarray:
    return torch().special.erf(as_torch(x)).numpy()


def sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # tanh form avoids exp overflow warnings


# -- padding (conv and pool) -------------------------------------------------------------


def _same_pads(in_sizes, eff_kernel, strides, lower: bool) -> list[tuple[int, int]]:
    pads = []
    for size, k, s in zip(in_sizes, eff_kernel, strides):
        total = max(0, s * math.ceil(size / s) - size + k - s)
        small, large = total // 2, total - total // 2
        pads.append((large, small) if lower else (small, large))
    return pads


def spatial_pads(a, in_sizes, kernel, strides, dilations) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim for MIL's pad_type/pad."""
    pad_type = a.scalar("pad_type", "valid")
    eff_kernel = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if pad_type in ("same", "same_lower"):
        return _same_pads(in_sizes, eff_kernel, strides, lower=pad_type == "same_lower")
    if pad_type == "custom":
        pad = a.ints("pad", [0] * (2 * len(kernel)))
        return [(pad[2 * i], pad[2 * i + 1]) for i in range(len(kernel))]
    if pad_type == "valid":
        return [(0, 0)] * len(kernel)
    raise a.unsupported(f"pad_type '{pad_type}'")


def torch_pad_arg(pads: list[tuple[int, int]]) -> list[int]:
    # torch.nn.functional.pad lists the last dim first.
    flat: list[int] = []
    for before, after in reversed(pads):
        flat += [before, after]
    return flat


# -- quantization parameters (quantize/dequantize and constexpr_*) --------------------------


def per_axis(param, rank: int, axis) -> np.ndarray:
    """Broadcast a scalar or per-channel vector quantization parameter against a rank-`rank` tensor."""
    param = np.asarray(param)
    if param.ndim in (0, rank):
        return param
    shape = [1] * rank
    shape[int(axis) % rank] = -1
    return param.reshape(shape)


def int_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(NP_DTYPES[dtype])
    return int(info.min), int(info.max)
