"""A numpy interpreter for the ML Program (MIL) inside a Core ML .mlpackage.

Core ML prediction only runs on Apple platforms. This module executes the MIL
program of an ML Program model with numpy (torch, imported lazily, computes
convolutions, pooling, linear and matmul) so Core ML numerics can be checked on
Linux. Ops run in program order; consts and constexpr_* (compressed weights) are
materialized once at load time.

Semantics follow the op definitions in ``coremltools/converters/mil/mil/ops/defs``.
With ``fp16_emulation`` every value the program types as fp16 is rounded to
float16 after the op that produces it; arithmetic itself runs in float32.

Image inputs: for ML Programs coremltools stores only the color layout and the
size in the model description (``imageType``); ``ImageType(scale=..., bias=...)``
becomes ``mul``/``add`` ops named ``<input>__scaled__``/``<input>__biased__`` at
the start of the program. The interpreter therefore only reorders the RGB pixels
into the model's color layout and NCHW; the program applies scale and bias.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vitdeploy.errors import VitdeployError


class UnsupportedOpError(VitdeployError):
    """The model contains a MIL op the interpreter does not implement."""


_NP_DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int4": np.int8,
    "uint1": np.uint8,
    "uint2": np.uint8,
    "uint3": np.uint8,
    "uint4": np.uint8,
    "uint6": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "bool": np.bool_,
}
_FLOAT_TYPES = ("fp16", "fp32", "fp64")
_OPAQUE_TYPES = ("str", "string", "dict", "list")  # classifier outputs: passed through unconverted


# --------------------------------------------------------------------------------------
# Program loading
# --------------------------------------------------------------------------------------


def _load_program(path: str | os.PathLike):
    """Return (spec, pymil Program) of an .mlpackage without compiling it."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VitdeployError(f"Core ML model not found: {path}")
    mlmodel = ct.models.MLModel(path, skip_model_load=True)
    spec = mlmodel.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise VitdeployError(f"{path} is not an ML Program model (found {spec.WhichOneof('Type')})")
    prog = load_milproto(spec, spec.specificationVersion, file_weights_dir=mlmodel.weights_dir)
    return spec, prog


def _main_function(prog):
    if "main" in prog.functions:
        return prog.functions["main"]
    return next(iter(prog.functions.values()))


def _dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types

    try:
        dtype = var.dtype
    except ValueError:  # ListVar (e.g. classify's class labels) has no element dtype
        return "list"
    try:
        return types.builtin_to_string(dtype)
    except KeyError:
        return str(dtype)


def _shape_of(var) -> list:
    shape = getattr(var, "shape", ()) or ()
    return [int(d) if isinstance(d, (int, np.integer)) else -1 for d in shape]


def _const_value(var) -> Any:
    """A const's value as float32 (for floats), its integer/bool dtype, or a str."""
    val = var.val
    if isinstance(val, str):
        return val
    if isinstance(val, (list, tuple)) and val and isinstance(val[0], str):
        return list(val)
    arr = np.asarray(val)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    return arr


def _count_ops(function) -> dict[str, int]:
    counts: dict[str, int] = {}
    for op in function.operations:
        if op.op_type != "const":
            counts[op.op_type] = counts.get(op.op_type, 0) + 1
    return counts


def op_counts(path: str | os.PathLike) -> dict[str, int]:
    """Op type -> number of ops in the model's main function, const excluded."""
    _, prog = _load_program(path)
    return _count_ops(_main_function(prog))


# --------------------------------------------------------------------------------------
# Op execution plumbing
# --------------------------------------------------------------------------------------


@dataclass
class _Arg:
    """One op input: a constant baked in at load time, or the name of a runtime value."""

    const: Any = None
    ref: str | None = None
    items: list | None = None  # tuple inputs such as concat's `values`


@dataclass
class _Step:
    op_type: str
    name: str
    fn: Callable
    args: dict[str, _Arg]
    out_names: list[str]
    out_dtypes: list[str]
    out_shapes: list[list[int]]
    frees: list[str] = field(default_factory=list)


class _Args:
    """Resolved inputs of one op, plus what the program declares about its outputs."""

    def __init__(self, values: dict[str, Any], step: _Step):
        self._values = values
        self.step = step

    def __getitem__(self, key):
        return self._values[key]

    def __contains__(self, key):
        return self._values.get(key) is not None

    def get(self, key, default=None):
        val = self._values.get(key)
        return default if val is None else val

    def scalar(self, key, default=None):
        val = self.get(key, default)
        return val.item() if isinstance(val, np.ndarray) else val

    def ints(self, key, default=None) -> list[int] | None:
        val = self.get(key, default)
        return None if val is None else [int(v) for v in np.ravel(val)]

    def out_dtype(self, i: int = 0) -> str:
        return self.step.out_dtypes[i]

    def out_spatial(self, computed_h: int, computed_w: int) -> tuple[int, int]:
        """Output (H, W) as the program declares it when static, else as computed."""
        shape = self.step.out_shapes[0]
        if len(shape) >= 2 and shape[-2] > 0 and shape[-1] > 0:
            return shape[-2], shape[-1]
        return computed_h, computed_w


def _finalize(value, dtype: str, emulate_fp16: bool):
    """Cast an op result to the dtype the program declares, rounding fp16 when emulating."""
    if dtype in _OPAQUE_TYPES:
        return value
    if dtype == "fp16":
        arr = np.asarray(value, dtype=np.float32)
        if not emulate_fp16:
            return arr
        with np.errstate(over="ignore"):  # beyond 65504 is inf, as on the device: parity reports it by name
            return arr.astype(np.float16).astype(np.float32)
    if dtype in ("fp32", "fp64"):
        return np.asarray(value, dtype=np.float32)
    np_dtype = _NP_DTYPES.get(dtype)
    return np.asarray(value) if np_dtype is None else np.asarray(value).astype(np_dtype)


def _export(value, dtype: str, emulate_fp16: bool):
    """A value as handed to callers (a copy): fp16 values as float16 only when emulating."""
    if isinstance(value, dict):
        return dict(value)
    if dtype == "fp16" and emulate_fp16:
        with np.errstate(over="ignore"):
            return np.asarray(value).astype(np.float16)
    return np.array(value, copy=True)  # may alias a const; callers must not be able to change it


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _torch():
    import torch

    return torch


# --------------------------------------------------------------------------------------
# Elementwise ops
# --------------------------------------------------------------------------------------


def _binary(fn):
    return lambda a: fn(a["x"], a["y"])


def _real_div(a):
    return np.true_divide(a["x"], a["y"])


def _floor_div(a):
    x, y = a["x"], a["y"]
    if np.asarray(x).dtype.kind in "iu" and np.asarray(y).dtype.kind in "iu":
        return np.floor_divide(x, y)
    return np.floor(np.true_divide(x, y))


def _pow(a):
    return np.power(_f32(a["x"]), _f32(a["y"])) if a.out_dtype() in _FLOAT_TYPES else np.power(a["x"], a["y"])


def _unary(fn):
    return lambda a: fn(_f32(a["x"]))


def _erf(x: np.ndarray) -> np.ndarray:
    torch = _torch()
    return torch.special.erf(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # tanh form avoids exp overflow warnings


def _epsilon_unary(fn, default_eps):
    return lambda a: fn(_f32(a["x"]) + np.float32(a.scalar("epsilon", default_eps)))


def _round(a):
    return np.round(_f32(a["x"]))


def _clip(a):
    return np.minimum(np.maximum(_f32(a["x"]), a.scalar("alpha")), a.scalar("beta"))


def _threshold(a):
    return np.maximum(_f32(a["x"]), np.float32(a.scalar("alpha")))


def _cast(a):
    target = a.scalar("dtype")
    x = np.asarray(a["x"])
    np_dtype = _NP_DTYPES.get(target)
    if np_dtype is None:
        raise UnsupportedOpError(
            f"Core ML op 'cast' to dtype '{target}' (op name '{a.step.name}') is not supported "
            "by vitdeploy's MIL interpreter"
        )
    if target in _FLOAT_TYPES:
        return x.astype(np.float32)
    return x.astype(np_dtype)


def _identity(a):
    return a["x"]


def _select(a):
    return np.where(np.asarray(a["cond"]).astype(bool), a["a"], a["b"])


def _logical(fn):
    return lambda a: fn(np.asarray(a["x"]).astype(bool), np.asarray(a["y"]).astype(bool))


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------


def _relu(a):
    return np.maximum(_f32(a["x"]), 0.0)


def _relu6(a):
    return np.clip(_f32(a["x"]), 0.0, 6.0)


def _leaky_relu(a):
    x = _f32(a["x"])
    return np.where(x >= 0, x, x * np.float32(a.scalar("alpha", 0.01)))


def _elu(a):
    x = _f32(a["x"])
    return np.where(x > 0, x, np.float32(a.scalar("alpha", 1.0)) * np.expm1(np.minimum(x, 0)))


def _prelu(a):
    x = _f32(a["x"])
    alpha = _f32(a["alpha"]).reshape([1, -1] + [1] * (x.ndim - 2))
    return np.where(x >= 0, x, x * alpha)


def _sigmoid_op(a):
    return _sigmoid(_f32(a["x"]))


def _sigmoid_hard(a):
    x = _f32(a["x"])
    return np.clip(np.float32(a.scalar("alpha", 0.2)) * x + np.float32(a.scalar("beta", 0.5)), 0.0, 1.0)


def _silu(a):
    x = _f32(a["x"])
    return x * _sigmoid(x)


def _softplus(a):
    return np.logaddexp(_f32(a["x"]), 0.0)


def _softplus_parametric(a):
    x = _f32(a["x"])
    shape = [1, -1] + [1] * (x.ndim - 2)
    alpha, beta = _f32(a["alpha"]).reshape(shape), _f32(a["beta"]).reshape(shape)
    return alpha * np.logaddexp(beta * x, 0.0)


def _softsign(a):
    x = _f32(a["x"])
    return x / (1.0 + np.abs(x))


def _scaled_tanh(a):
    return np.float32(a.scalar("alpha", 1.0)) * np.tanh(np.float32(a.scalar("beta", 1.0)) * _f32(a["x"]))


def _clamped_relu(a):
    x = _f32(a["x"])
    alpha, beta = np.float32(a.scalar("alpha", 0.0)), np.float32(a.scalar("beta", 6.0))
    return np.minimum(np.where(x >= 0, x, alpha * x), beta)


def _thresholded_relu(a):
    x = _f32(a["x"])
    return np.where(x > np.float32(a.scalar("alpha", 1.0)), x, np.float32(0.0))


def _linear_activation(a):
    return np.float32(a.scalar("alpha")) * _f32(a["x"]) + np.float32(a.scalar("beta", 0.0))


def _gelu(a):
    x = _f32(a["x"])
    mode = a.scalar("mode", "EXACT")
    if mode == "EXACT":
        return 0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))
    if mode == "TANH_APPROXIMATION":
        inner = np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x**3)
        return 0.5 * x * (1.0 + np.tanh(inner))
    if mode == "SIGMOID_APPROXIMATION":
        return x * _sigmoid(np.float32(1.702) * x)
    raise UnsupportedOpError(
        f"Core ML op 'gelu' mode '{mode}' (op name '{a.step.name}') is not supported by vitdeploy's MIL interpreter"
    )


def _softmax(a):
    x = _f32(a["x"])
    axis = int(a.scalar("axis", -1))
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


# --------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------


def _channel_param(value, rank: int) -> np.ndarray:
    return _f32(value).reshape([1, -1] + [1] * (rank - 2))


def _batch_norm(a):
    x = _f32(a["x"])
    inv_std = 1.0 / np.sqrt(_f32(a["variance"]) + np.float32(a.scalar("epsilon", 1e-5)))
    scale = inv_std * (_f32(a["gamma"]) if "gamma" in a else np.float32(1.0))
    shift = (_f32(a["beta"]) if "beta" in a else np.float32(0.0)) - _f32(a["mean"]) * scale
    return x * _channel_param(scale, x.ndim) + _channel_param(shift, x.ndim)


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float) -> np.ndarray:
    mean = np.mean(x, axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    return centered / np.sqrt(var + np.float32(eps))


def _instance_norm(a):
    x = _f32(a["x"])
    y = _normalize(x, tuple(range(2, x.ndim)), a.scalar("epsilon", 1e-5))
    if "gamma" in a:
        y = y * _channel_param(a["gamma"], x.ndim)
    if "beta" in a:
        y = y + _channel_param(a["beta"], x.ndim)
    return y


def _layer_norm(a):
    x = _f32(a["x"])
    axes = a.ints("axes")
    axes = tuple(range(x.ndim)) if axes is None else tuple(ax % x.ndim for ax in axes)
    y = _normalize(x, axes, a.scalar("epsilon", 1e-5))
    # gamma/beta have the shape of x restricted to the normalized axes.
    param_shape = [x.shape[d] if d in axes else 1 for d in range(x.ndim)]
    if "gamma" in a:
        y = y * _f32(a["gamma"]).reshape(param_shape)
    if "beta" in a:
        y = y + _f32(a["beta"]).reshape(param_shape)
    return y


def _l2_norm(a):
    x = _f32(a["x"])
    axes = tuple(range(max(x.ndim - 3, 0), x.ndim))
    norm = np.sqrt(np.sum(x * x, axis=axes, keepdims=True) + np.float32(a.scalar("epsilon", 1e-6)))
    return x / norm


# --------------------------------------------------------------------------------------
# Linear algebra
# --------------------------------------------------------------------------------------


def _as_torch(x):
    # torch's batched GEMM is much faster than numpy's matmul on stacked (rank > 2) operands.
    return _torch().from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _linear(a):
    F = _torch().nn.functional
    bias = _as_torch(a["bias"]) if "bias" in a else None
    return F.linear(_as_torch(a["x"]), _as_torch(a["weight"]), bias).numpy()


def _matmul(a):
    x, y = _as_torch(a["x"]), _as_torch(a["y"])
    if a.scalar("transpose_x", False) and x.dim() >= 2:
        x = x.transpose(-1, -2)
    if a.scalar("transpose_y", False) and y.dim() >= 2:
        y = y.transpose(-1, -2)
    return _torch().matmul(x, y).numpy()


def _einsum(a):
    return np.einsum(a.scalar("equation"), *[_f32(v) for v in a["values"]])


# --------------------------------------------------------------------------------------
# Convolution and pooling (torch as the compute backend; padding resolved MIL-style)
# --------------------------------------------------------------------------------------


def _same_pads(in_sizes, eff_kernel, strides, lower: bool) -> list[tuple[int, int]]:
    pads = []
    for size, k, s in zip(in_sizes, eff_kernel, strides):
        total = max(0, s * math.ceil(size / s) - size + k - s)
        small, large = total // 2, total - total // 2
        pads.append((large, small) if lower else (small, large))
    return pads


def _spatial_pads(a, in_sizes, kernel, strides, dilations) -> list[tuple[int, int]]:
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
    raise UnsupportedOpError(
        f"Core ML op '{a.step.op_type}' pad_type '{pad_type}' (op name '{a.step.name}') "
        "is not supported by vitdeploy's MIL interpreter"
    )


def _torch_pad_arg(pads: list[tuple[int, int]]) -> list[int]:
    # torch.nn.functional.pad lists the last dim first.
    flat: list[int] = []
    for before, after in reversed(pads):
        flat += [before, after]
    return flat


def _conv(a):
    torch = _torch()
    F = torch.nn.functional
    x = torch.from_numpy(np.ascontiguousarray(_f32(a["x"])))
    w = torch.from_numpy(np.ascontiguousarray(_f32(a["weight"])))
    n_spatial = w.dim() - 2
    strides = a.ints("strides", [1] * n_spatial)
    dilations = a.ints("dilations", [1] * n_spatial)
    pads = _spatial_pads(a, list(x.shape[2:]), list(w.shape[2:]), strides, dilations)
    if all(before == after for before, after in pads):
        padding = [before for before, _ in pads]  # symmetric: let the conv pad, saving a copy
    else:
        x, padding = F.pad(x, _torch_pad_arg(pads)), [0] * n_spatial
    bias = torch.from_numpy(_f32(a["bias"])) if "bias" in a else None
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n_spatial]
    y = conv(x, w, bias, stride=strides, padding=padding, dilation=dilations, groups=int(a.scalar("groups", 1)))
    return y.numpy()


def _ceil_mode_extra(in_size, pad_total, kernel, stride) -> int:
    """Extra trailing padding so a ceil_mode pooling window count is reached (MIL formula)."""
    out = math.floor((in_size + pad_total - kernel + stride - 1) / stride + 1)
    if (out - 1) * stride >= in_size + pad_total / 2 and pad_total > 0:
        out -= 1
    return max(0, (out - 1) * stride + kernel - (in_size + pad_total))


def _pool_padding(a, x_shape, kernel, strides) -> list[tuple[int, int]]:
    pads = _spatial_pads(a, list(x_shape[2:]), kernel, strides, [1] * len(kernel))
    if a.scalar("ceil_mode", False):
        pads = [
            (before, after + _ceil_mode_extra(size, before + after, k, s))
            for (before, after), size, k, s in zip(pads, x_shape[2:], kernel, strides)
        ]
    return pads


def _pool_fns(n_spatial):
    F = _torch().nn.functional
    return {1: (F.avg_pool1d, F.max_pool1d), 2: (F.avg_pool2d, F.max_pool2d), 3: (F.avg_pool3d, F.max_pool3d)}[
        n_spatial
    ]


def _avg_pool(a):
    torch = _torch()
    F = torch.nn.functional
    x = torch.from_numpy(np.ascontiguousarray(_f32(a["x"])))
    kernel = a.ints("kernel_sizes")
    strides = a.ints("strides", [1] * len(kernel))
    pads = _pool_padding(a, x.shape, kernel, strides)
    avg_pool = _pool_fns(len(kernel))[0]
    pooled = avg_pool(F.pad(x, _torch_pad_arg(pads)), kernel, strides)
    if a.scalar("exclude_padding_from_average", False):
        ones = torch.ones((1, 1) + tuple(x.shape[2:]))
        coverage = avg_pool(F.pad(ones, _torch_pad_arg(pads)), kernel, strides)
        pooled = pooled / coverage
    return pooled.numpy()


def _max_pool(a):
    torch = _torch()
    F = torch.nn.functional
    x = torch.from_numpy(np.ascontiguousarray(_f32(a["x"])))
    kernel = a.ints("kernel_sizes")
    strides = a.ints("strides", [1] * len(kernel))
    pads = _pool_padding(a, x.shape, kernel, strides)
    max_pool = _pool_fns(len(kernel))[1]
    return max_pool(F.pad(x, _torch_pad_arg(pads), value=-math.inf), kernel, strides).numpy()


# --------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------


def _reduce_axes(a, x) -> tuple[int, ...]:
    axes = a.ints("axes")
    return tuple(range(x.ndim)) if axes is None else tuple(ax % x.ndim for ax in axes)


def _reduce(fn):
    def run(a):
        x = _f32(a["x"])
        return fn(x, axis=_reduce_axes(a, x), keepdims=bool(a.scalar("keep_dims", False)))

    return run


def _reduce_l1(x, axis, keepdims):
    return np.sum(np.abs(x), axis=axis, keepdims=keepdims)


def _reduce_l2(x, axis, keepdims):
    return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))


def _reduce_sum_square(x, axis, keepdims):
    return np.sum(x * x, axis=axis, keepdims=keepdims)


def _reduce_log_sum(x, axis, keepdims):
    return np.log(np.sum(x, axis=axis, keepdims=keepdims))


def _reduce_log_sum_exp(x, axis, keepdims):
    peak = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=axis)


def _reduce_arg(fn):
    def run(a):
        x = np.asarray(a["x"])
        axis = int(a.scalar("axis", -1))
        out = fn(x, axis=axis)
        if a.scalar("keep_dims", False):
            out = np.expand_dims(out, axis)
        return out.astype(np.int32)

    return run


# --------------------------------------------------------------------------------------
# Shape and data movement
# --------------------------------------------------------------------------------------


def _resolve_reshape(in_shape, target) -> list[int]:
    # A 0 copies the input dim at the same position counted from the right (iOS17 rule; identical
    # to the iOS15 rule whenever the ranks agree, which iOS15 requires).
    out = []
    for i, dim in enumerate(target):
        if dim == 0:
            j = len(in_shape) - (len(target) - i)
            out.append(in_shape[j] if 0 <= j < len(in_shape) else 1)
        else:
            out.append(int(dim))
    return out


def _reshape(a):
    x = np.asarray(a["x"])
    return x.reshape(_resolve_reshape(x.shape, a.ints("shape")))


def _reshape_like(a):
    x = np.asarray(a["x"])
    refs, begins, ends = a["ref_tensors"], a.ints("begins"), a.ints("ends")
    end_masks = [bool(m) for m in np.ravel(a["end_masks"])]
    shape: list[int] = []
    for ref, begin, end, end_mask in zip(refs, begins, ends, end_masks):
        ref_shape = list(np.shape(ref))
        shape += ref_shape[begin:] if end_mask else ref_shape[begin:end]
    return x.reshape(shape)


def _transpose(a):
    return np.transpose(a["x"], a.ints("perm"))


def _expand_dims(a):
    x = np.asarray(a["x"])
    out_rank = x.ndim + len(a.ints("axes"))
    return np.expand_dims(x, tuple(ax % out_rank for ax in a.ints("axes")))


def _squeeze(a):
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(ax % x.ndim for ax in axes))


def _flatten2d(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis", 1)) % (x.ndim + 1) if x.ndim else 0
    return x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))


def _concat(a):
    values = [np.asarray(v) for v in a["values"]]
    axis = int(a.scalar("axis"))
    if not a.scalar("interleave", False):
        return np.concatenate(values, axis=axis)
    axis %= values[0].ndim
    stacked = np.stack(values, axis=axis + 1)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def _stack(a):
    return np.stack([np.asarray(v) for v in a["values"]], axis=int(a.scalar("axis")))


def _split(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis")) % x.ndim
    sizes = a.ints("split_sizes")
    if sizes is None:
        n = int(a.scalar("num_splits"))
        sizes = [math.ceil(x.shape[axis] / n)] * n
        sizes[-1] = x.shape[axis] - sum(sizes[:-1])
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def _tile(a):
    return np.tile(a["x"], a.ints("reps"))


def _pad(a):
    x = np.asarray(a["x"])
    pad = a.ints("pad")
    n = len(pad) // 2
    widths = [(0, 0)] * (x.ndim - n) + [(pad[2 * i], pad[2 * i + 1]) for i in range(n)]
    mode = a.scalar("mode", "constant")
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=a.scalar("constant_val", 0.0))
    if mode == "reflect":
        return np.pad(x, widths, mode="reflect")
    if mode == "replicate":
        return np.pad(x, widths, mode="edge")
    raise UnsupportedOpError(
        f"Core ML op 'pad' mode '{mode}' (op name '{a.step.name}') is not supported by vitdeploy's MIL interpreter"
    )


def _slice_by_index(a):
    x = np.asarray(a["x"])
    rank = x.ndim
    begin, end = a.ints("begin"), a.ints("end")
    stride = a.ints("stride", [1] * rank)
    begin_mask = [bool(m) for m in np.ravel(a.get("begin_mask", [False] * rank))]
    end_mask = [bool(m) for m in np.ravel(a.get("end_mask", [False] * rank))]
    squeeze_mask = [bool(m) for m in np.ravel(a.get("squeeze_mask", [False] * rank))]
    index: list = []
    for d in range(rank):
        if squeeze_mask[d]:
            index.append(begin[d])
            continue
        start = None if begin_mask[d] else begin[d]
        stop = None if end_mask[d] else end[d]
        index.append(slice(start, stop, stride[d]))
    return x[tuple(index)]


def _slice_by_size(a):
    x = np.asarray(a["x"])
    begin, size = a.ints("begin"), a.ints("size")
    index = []
    for d, (b, s) in enumerate(zip(begin, size)):
        b = b % x.shape[d] if b < 0 else b
        index.append(slice(b, None if s == -1 else b + s))
    return x[tuple(index)]


def _wrap_indices(indices, size) -> np.ndarray:
    idx = np.asarray(indices).astype(np.int64)
    return np.where(idx < 0, idx + size, idx)


def _gather(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis", 0)) % x.ndim
    batch_dims = int(a.scalar("batch_dims", 0))
    indices = _wrap_indices(a["indices"], x.shape[axis])
    if batch_dims == 0:
        return np.take(x, indices, axis=axis)
    batch_shape = x.shape[:batch_dims]
    xb = x.reshape((-1,) + x.shape[batch_dims:])
    ib = indices.reshape((-1,) + indices.shape[batch_dims:])
    parts = [np.take(xb[i], ib[i], axis=axis - batch_dims) for i in range(xb.shape[0])]
    return np.stack(parts).reshape(batch_shape + parts[0].shape)


def _gather_along_axis(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis", 0)) % x.ndim
    return np.take_along_axis(x, _wrap_indices(a["indices"], x.shape[axis]), axis=axis)


def _gather_nd(a):
    x = np.asarray(a["x"])
    indices = np.asarray(a["indices"]).astype(np.int64)
    batch_dims = int(a.scalar("batch_dims", 0))
    depth = indices.shape[-1]
    if batch_dims == 0:
        wrapped = [_wrap_indices(indices[..., k], x.shape[k]) for k in range(depth)]
        return x[tuple(wrapped)]
    batch_shape = x.shape[:batch_dims]
    xb = x.reshape((-1,) + x.shape[batch_dims:])
    ib = indices.reshape((-1,) + indices.shape[batch_dims:])
    parts = [
        xb[i][tuple(_wrap_indices(ib[i][..., k], xb.shape[1 + k]) for k in range(depth))] for i in range(xb.shape[0])
    ]
    return np.stack(parts).reshape(batch_shape + parts[0].shape)


def _shape(a):
    return np.asarray(np.shape(a["x"]), dtype=np.int32)


def _fill(a):
    return np.full(a.ints("shape"), a.scalar("value", 0.0))


def _fill_like(a):
    return np.full(np.shape(a["ref_tensor"]), a.scalar("value", 0.0))


def _range_1d(a):
    return np.arange(a.scalar("start"), a.scalar("end"), a.scalar("step"))


def _reverse(a):
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    return np.flip(x, axis=None if axes is None else tuple(axes))


def _cumsum(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis", 0))
    if a.scalar("reverse", False):
        x = np.flip(x, axis)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if a.scalar("exclusive", False):
        out = out - x
    return np.flip(out, axis) if a.scalar("reverse", False) else out


def _band_part(a):
    x = np.asarray(a["x"])
    lower, upper = int(a.scalar("lower", -1)), int(a.scalar("upper", -1))
    rows, cols = np.arange(x.shape[-2])[:, None], np.arange(x.shape[-1])[None, :]
    keep = np.ones((x.shape[-2], x.shape[-1]), dtype=bool)
    if lower >= 0:
        keep &= rows - cols <= lower
    if upper >= 0:
        keep &= cols - rows <= upper
    return np.where(keep, x, np.zeros_like(x))


def _pixel_shuffle(a):
    x = np.asarray(a["x"])
    r = int(a.scalar("upscale_factor"))
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


def _pixel_unshuffle(a):
    x = np.asarray(a["x"])
    r = int(a.scalar("downscale_factor"))
    n, c, h, w = x.shape
    return x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h // r, w // r)


# --------------------------------------------------------------------------------------
# Resizing
# --------------------------------------------------------------------------------------


def _grid(in_size: int, out_size: int, mode: str) -> np.ndarray:
    """Source coordinates of output samples along one axis (see MIL resize_bilinear docs)."""
    i = np.arange(out_size, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if out_size == 1:
            grid = np.full(1, (in_size - 1) / 2.0 if mode == "ALIGN_CORNERS" else 0.0)
        else:
            grid = i * (in_size - 1) / (out_size - 1)
    elif mode == "DEFAULT":
        grid = i * (in_size - in_size / out_size) / (out_size - 1) if out_size > 1 else np.zeros(1)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, in_size - 1) / out_size
        grid = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        spacing = in_size / out_size
        grid = i * spacing + 0.5 * spacing - 0.5
    elif mode == "ASYMMETRIC":
        grid = i * in_size / out_size
    else:
        raise ValueError(f"unknown sampling_mode '{mode}'")
    return np.clip(grid, 0.0, in_size - 1)


def _interp_axis(x: np.ndarray, grid: np.ndarray, axis: int) -> np.ndarray:
    low = np.floor(grid).astype(np.int64)
    high = np.minimum(low + 1, x.shape[axis] - 1)
    frac_shape = [1] * x.ndim
    frac_shape[axis] = -1
    frac = (grid - low).astype(np.float32).reshape(frac_shape)
    return np.take(x, low, axis=axis) * (1 - frac) + np.take(x, high, axis=axis) * frac


def _bilinear(x: np.ndarray, out_h: int, out_w: int, mode: str) -> np.ndarray:
    y = _interp_axis(x, _grid(x.shape[-2], out_h, mode), x.ndim - 2)
    return _interp_axis(y, _grid(x.shape[-1], out_w, mode), x.ndim - 1)


def _bilinear_mode(align_corners: bool, half_pixel_centers: bool) -> str:
    if align_corners:
        return "STRICT_ALIGN_CORNERS"
    return "UNALIGN_CORNERS" if half_pixel_centers else "ASYMMETRIC"


def _upsample_bilinear(a):
    x = _f32(a["x"])
    # Sizes come from the program's type inference: recomputing floor(size * fp32 scale) here
    # could round differently.
    out_h, out_w = a.out_spatial(
        int(math.floor(x.shape[-2] * float(a.scalar("scale_factor_height", 1)))),
        int(math.floor(x.shape[-1] * float(a.scalar("scale_factor_width", 1)))),
    )
    align = bool(a.scalar("align_corners", True))
    half_pixel = bool(a.scalar("half_pixel_centers", not align))
    return _bilinear(x, out_h, out_w, _bilinear_mode(align, half_pixel))


def _resize_bilinear(a):
    x = _f32(a["x"])
    out_h, out_w = int(a.scalar("target_size_height", 1)), int(a.scalar("target_size_width", 1))
    return _bilinear(x, out_h, out_w, a.scalar("sampling_mode", "DEFAULT"))


def _nearest(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    rows = np.minimum(np.floor(np.arange(out_h) * x.shape[-2] / out_h).astype(np.int64), x.shape[-2] - 1)
    cols = np.minimum(np.floor(np.arange(out_w) * x.shape[-1] / out_w).astype(np.int64), x.shape[-1] - 1)
    return np.take(np.take(x, rows, axis=x.ndim - 2), cols, axis=x.ndim - 1)


def _upsample_nearest_neighbor(a):
    x = np.asarray(a["x"])
    out_h, out_w = a.out_spatial(
        int(math.floor(x.shape[-2] * float(a.scalar("scale_factor_height", 1)))),
        int(math.floor(x.shape[-1] * float(a.scalar("scale_factor_width", 1)))),
    )
    return _nearest(x, out_h, out_w)


def _resize_nearest_neighbor(a):
    return _nearest(np.asarray(a["x"]), int(a.scalar("target_size_height")), int(a.scalar("target_size_width")))


# --------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------


def _scaled_dot_product_attention(a):
    q, k, v = _f32(a["query"]), _f32(a["key"]), _f32(a["value"])
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / np.float32(math.sqrt(q.shape[-1]))
    if "attn_mask" in a:
        mask = np.asarray(a["attn_mask"])
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + _f32(mask)
    scores = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    return np.matmul(scores / np.sum(scores, axis=-1, keepdims=True), v)


# --------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------


def _per_axis(param, rank: int, axis) -> np.ndarray:
    """Broadcast a scalar or per-channel vector quantization parameter against a rank-`rank` tensor."""
    param = np.asarray(param)
    if param.ndim in (0, rank):
        return param
    shape = [1] * rank
    shape[int(axis) % rank] = -1
    return param.reshape(shape)


def _int_range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(_NP_DTYPES[dtype])
    return int(info.min), int(info.max)


def _quantize(a):
    x = _f32(a["input"])
    rank, axis = x.ndim, a.scalar("axis")
    q = np.round(x / _per_axis(_f32(a["scale"]), rank, axis))
    if "zero_point" in a:
        q = q + _per_axis(a["zero_point"], rank, axis).astype(np.float32)
    low, high = _int_range(a.scalar("output_dtype"))
    return np.clip(q, low, high)


def _dequantize(a):
    x = np.asarray(a["input"]).astype(np.float32)
    rank, axis = x.ndim, a.scalar("axis")
    if "zero_point" in a:
        x = x - _per_axis(a["zero_point"], rank, axis).astype(np.float32)
    return x * _per_axis(_f32(a["scale"]), rank, axis)


def _constexpr_affine_dequantize(a):
    data = np.asarray(a["quantized_data"]).astype(np.float32)
    axis = a.scalar("axis")
    zero_point = _per_axis(np.asarray(a["zero_point"]).astype(np.float32), data.ndim, axis)
    return (data - zero_point) * _per_axis(_f32(a["scale"]), data.ndim, axis)


def _expand_blocks(param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Repeat a blockwise parameter so block (i0, j0, ...) covers its block of the data."""
    param = np.asarray(param)
    for axis, (size, blocks) in enumerate(zip(shape, param.shape)):
        if blocks != size:
            param = np.repeat(param, size // blocks, axis=axis)
    return param


def _constexpr_blockwise_shift_scale(a):
    data = np.asarray(a["data"]).astype(np.float32)
    if "offset" in a:
        data = data - _expand_blocks(np.asarray(a["offset"]).astype(np.float32), data.shape)
    return data * _expand_blocks(_f32(a["scale"]), data.shape)


def _unpack_bits(packed: np.ndarray, nbits: int, count: int) -> np.ndarray:
    """Unsigned n-bit elements packed LSB-first into bytes."""
    bits = np.unpackbits(np.asarray(packed).astype(np.uint8).ravel(), bitorder="little")
    bits = bits[: count * nbits].reshape(count, nbits).astype(np.int64)
    return (bits << np.arange(nbits)).sum(axis=1)


def _constexpr_lut_to_dense(a):
    lut = _f32(a["lut"]) if np.asarray(a["lut"]).dtype.kind == "f" else np.asarray(a["lut"])
    indices = np.asarray(a["indices"])
    if "shape" in a:  # iOS16: one flat LUT, indices packed into bytes
        shape = a.ints("shape")
        nbits = int(round(math.log2(lut.size)))
        return lut.ravel()[_unpack_bits(indices, nbits, int(np.prod(shape)))].reshape(shape)
    return _lut_blockwise(indices.astype(np.int64), lut, a.scalar("vector_axis"))


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


def _constexpr_cast(a):
    return _f32(a["source_val"])


def _constexpr_sparse_to_dense(a):
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


# --------------------------------------------------------------------------------------
# Classifier head (ct.ClassifierConfig)
# --------------------------------------------------------------------------------------


def _classify(a):
    """(top label, {label: probability}) as Core ML's classifier outputs."""
    probs = np.ravel(_f32(a["probabilities"]))
    classes = [c.item() if isinstance(c, np.generic) else c for c in list(a["classes"])]
    return classes[int(np.argmax(probs))], {c: float(p) for c, p in zip(classes, probs)}


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[_Args], Any]] = {
    # elementwise binary
    "add": _binary(np.add),
    "sub": _binary(np.subtract),
    "mul": _binary(np.multiply),
    "real_div": _real_div,
    "floor_div": _floor_div,
    "mod": _binary(np.mod),
    "pow": _pow,
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "equal": _binary(np.equal),
    "not_equal": _binary(np.not_equal),
    "less": _binary(np.less),
    "less_equal": _binary(np.less_equal),
    "greater": _binary(np.greater),
    "greater_equal": _binary(np.greater_equal),
    "logical_and": _logical(np.logical_and),
    "logical_or": _logical(np.logical_or),
    "logical_xor": _logical(np.logical_xor),
    # elementwise unary
    "abs": lambda a: np.abs(a["x"]),
    "sign": lambda a: np.sign(a["x"]),
    "square": lambda a: np.square(a["x"]),
    "acos": _unary(np.arccos),
    "asin": _unary(np.arcsin),
    "atan": _unary(np.arctan),
    "atanh": _unary(np.arctanh),
    "ceil": _unary(np.ceil),
    "floor": _unary(np.floor),
    "cos": _unary(np.cos),
    "cosh": _unary(np.cosh),
    "sin": _unary(np.sin),
    "sinh": _unary(np.sinh),
    "tan": _unary(np.tan),
    "tanh": _unary(np.tanh),
    "exp": _unary(np.exp),
    "exp2": _unary(np.exp2),
    "erf": _unary(_erf),
    "sqrt": _unary(np.sqrt),
    "round": _round,
    "rsqrt": _epsilon_unary(lambda v: 1.0 / np.sqrt(v), 1e-12),
    "inverse": _epsilon_unary(lambda v: 1.0 / v, 1e-4),
    "log": _epsilon_unary(np.log, 1e-45),
    "logical_not": lambda a: np.logical_not(np.asarray(a["x"]).astype(bool)),
    "clip": _clip,
    "threshold": _threshold,
    "cast": _cast,
    "identity": _identity,
    "select": _select,
    # activations
    "relu": _relu,
    "relu6": _relu6,
    "leaky_relu": _leaky_relu,
    "elu": _elu,
    "prelu": _prelu,
    "sigmoid": _sigmoid_op,
    "sigmoid_hard": _sigmoid_hard,
    "silu": _silu,
    "softplus": _softplus,
    "softplus_parametric": _softplus_parametric,
    "softsign": _softsign,
    "scaled_tanh": _scaled_tanh,
    "clamped_relu": _clamped_relu,
    "thresholded_relu": _thresholded_relu,
    "linear_activation": _linear_activation,
    "gelu": _gelu,
    "softmax": _softmax,
    # normalization
    "batch_norm": _batch_norm,
    "instance_norm": _instance_norm,
    "layer_norm": _layer_norm,
    "l2_norm": _l2_norm,
    # linear algebra
    "linear": _linear,
    "matmul": _matmul,
    "einsum": _einsum,
    "scaled_dot_product_attention": _scaled_dot_product_attention,
    # convolution and pooling
    "conv": _conv,
    "avg_pool": _avg_pool,
    "max_pool": _max_pool,
    # reductions
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_max": _reduce(np.max),
    "reduce_min": _reduce(np.min),
    "reduce_prod": _reduce(np.prod),
    "reduce_l1_norm": _reduce(_reduce_l1),
    "reduce_l2_norm": _reduce(_reduce_l2),
    "reduce_sum_square": _reduce(_reduce_sum_square),
    "reduce_log_sum": _reduce(_reduce_log_sum),
    "reduce_log_sum_exp": _reduce(_reduce_log_sum_exp),
    "reduce_argmax": _reduce_arg(np.argmax),
    "reduce_argmin": _reduce_arg(np.argmin),
    # shape and data movement
    "reshape": _reshape,
    "reshape_like": _reshape_like,
    "transpose": _transpose,
    "expand_dims": _expand_dims,
    "squeeze": _squeeze,
    "flatten2d": _flatten2d,
    "concat": _concat,
    "stack": _stack,
    "split": _split,
    "tile": _tile,
    "pad": _pad,
    "slice_by_index": _slice_by_index,
    "slice_by_size": _slice_by_size,
    "gather": _gather,
    "gather_along_axis": _gather_along_axis,
    "gather_nd": _gather_nd,
    "shape": _shape,
    "fill": _fill,
    "fill_like": _fill_like,
    "range_1d": _range_1d,
    "reverse": _reverse,
    "cumsum": _cumsum,
    "band_part": _band_part,
    "pixel_shuffle": _pixel_shuffle,
    "pixel_unshuffle": _pixel_unshuffle,
    # resizing
    "upsample_bilinear": _upsample_bilinear,
    "resize_bilinear": _resize_bilinear,
    "upsample_nearest_neighbor": _upsample_nearest_neighbor,
    "resize_nearest_neighbor": _resize_nearest_neighbor,
    # quantization
    "quantize": _quantize,
    "dequantize": _dequantize,
    "constexpr_affine_dequantize": _constexpr_affine_dequantize,
    "constexpr_blockwise_shift_scale": _constexpr_blockwise_shift_scale,
    "constexpr_lut_to_dense": _constexpr_lut_to_dense,
    "constexpr_cast": _constexpr_cast,
    "constexpr_sparse_to_dense": _constexpr_sparse_to_dense,
    # classifier
    "classify": _classify,
}


def supported_ops() -> list[str]:
    """MIL op types the interpreter executes (const is handled at load time)."""
    return sorted(_OPS) + ["const"]


def _unsupported(op_type: str, op_name: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"Core ML op '{op_type}' (op name '{op_name}') is not supported by vitdeploy's MIL interpreter"
    )


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _image_preprocessing(function, input_name: str) -> tuple[float, list[float]]:
    """Scale and bias that coremltools folded into the program as `<input>__scaled__`/`__biased__` ops."""
    scale, bias = 1.0, [0.0, 0.0, 0.0]
    for op in function.operations:
        if op.op_type == "mul" and op.name == f"{input_name}__scaled__":
            scale = float(np.asarray(op.y.val).ravel()[0])
        elif op.op_type == "add" and op.name == f"{input_name}__biased__":
            bias = [float(v) for v in np.asarray(op.y.val).ravel()]
    return scale, bias


def _describe_inputs(spec, function) -> dict[str, dict]:
    described = {feature.name: feature for feature in spec.description.input}
    specs: dict[str, dict] = {}
    for name, var in function.inputs.items():
        entry = {"kind": "tensor", "shape": _shape_of(var), "dtype": _dtype_label(_dtype_name(var))}
        feature = described.get(name)
        if feature is not None and feature.type.WhichOneof("Type") == "imageType":
            image = feature.type.imageType
            color_space = image.ColorSpace.Name(image.colorSpace)
            scale, bias = _image_preprocessing(function, name)
            entry.update(
                kind="image",
                color_layout=color_space,
                scale=scale,
                bias=bias,
                height=int(image.height),
                width=int(image.width),
            )
        specs[name] = entry
    return specs


def _dtype_label(dtype: str) -> str:
    return {"fp16": "float16", "fp32": "float32"}.get(dtype, dtype)


def _image_to_tensor(pixels, spec: dict, name: str) -> np.ndarray:
    """RGB pixels (HxWx3 or NxHxWx3, 0..255) -> the tensor Core ML builds from the image buffer."""
    arr = np.asarray(pixels, dtype=np.float32)
    if spec["color_layout"] in ("GRAYSCALE", "GRAYSCALE_FLOAT16"):
        if arr.ndim >= 3 and arr.shape[-1] == 3:
            raise VitdeployError(f"grayscale image input '{name}' expects HxW or HxWx1 pixels, got shape {arr.shape}")
        if arr.ndim >= 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        arr = arr[..., None]
    elif arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise VitdeployError(f"image input '{name}' expects HxWx3 or NxHxWx3 RGB pixels, got shape {arr.shape}")
    elif spec["color_layout"] == "BGR":
        arr = arr[..., ::-1]
    if arr.ndim == 3:
        arr = arr[None]
    fixed_size = spec["height"] > 0 and spec["width"] > 0  # 0 when the model takes flexible sizes
    if fixed_size and arr.shape[1:3] != (spec["height"], spec["width"]):
        raise VitdeployError(
            f"image input '{name}' expects {spec['height']}x{spec['width']} pixels, got {arr.shape[1]}x{arr.shape[2]}"
        )
    shape = spec["shape"]
    if len(shape) == 4 and shape[0] not in (-1, arr.shape[0]):
        raise VitdeployError(f"image input '{name}' expects a batch of {shape[0]}, got {arr.shape[0]} images")
    channels_last = len(shape) == 4 and shape[-1] == arr.shape[-1] and shape[1] != arr.shape[-1]
    tensor = arr if channels_last else np.transpose(arr, (0, 3, 1, 2))
    if len(shape) == 3:
        tensor = tensor[0]
    return np.ascontiguousarray(tensor)


def _check_tensor_shape(value: np.ndarray, spec: dict, name: str) -> None:
    shape = spec["shape"]
    if len(shape) != value.ndim or any(d != -1 and d != v for d, v in zip(shape, value.shape)):
        raise VitdeployError(f"input '{name}' expects shape {shape}, got {list(value.shape)}")


def _check_result_shape(step: _Step, out_name: str, declared: list[int], value: np.ndarray) -> None:
    # A mismatch with the program's own type inference means the interpreter got an op wrong.
    if not isinstance(value, np.ndarray):
        return
    if len(declared) != value.ndim or any(d not in (-1, v) for d, v in zip(declared, value.shape)):
        raise VitdeployError(
            f"MIL interpreter bug: op '{step.op_type}' (op name '{step.name}') produced {out_name} with shape "
            f"{list(value.shape)}, but the program declares {declared}"
        )


# --------------------------------------------------------------------------------------
# Interpreter
# --------------------------------------------------------------------------------------


class MILInterpreter:
    """Executes the main function of an ML Program .mlpackage with numpy."""

    def __init__(self, spec, prog, path: str = ""):
        self.path = path
        self._function = _main_function(prog)
        self._input_dtypes = {name: _dtype_name(var) for name, var in self._function.inputs.items()}
        self.input_names: list[str] = list(self._function.inputs)
        self.output_names: list[str] = [var.name for var in self._function.outputs]
        self.input_specs: dict[str, dict] = _describe_inputs(spec, self._function)
        self._value_dtypes: dict[str, str] = dict(self._input_dtypes)
        self._consts: dict[str, Any] = {}
        # Results of compile-time (constexpr_*) ops, exact and as the fp16 device would hold them.
        self._folded: dict[bool, dict[str, np.ndarray]] = {False: {}, True: {}}
        self._steps: list[_Step] = []
        self._compile()
        self.last_intermediates: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MILInterpreter":
        """Load an .mlpackage (ML Program); raises UnsupportedOpError for ops it cannot run."""
        spec, prog = _load_program(path)
        return cls(spec, prog, os.fspath(path))

    def op_counts(self) -> dict[str, int]:
        """Op type -> count in the main function, const excluded."""
        return _count_ops(self._function)

    # -- compilation ------------------------------------------------------------------

    def _compile(self) -> None:
        for op in self._function.operations:
            if op.op_type == "const":
                self._consts[op.outputs[0].name] = _const_value(op.outputs[0])
                self._value_dtypes[op.outputs[0].name] = _dtype_name(op.outputs[0])
                continue
            fn = _OPS.get(op.op_type)
            if fn is None:
                raise _unsupported(op.op_type, op.name)
            step = _Step(
                op_type=op.op_type,
                name=op.name,
                fn=fn,
                args={key: self._arg(var) for key, var in op.inputs.items()},
                out_names=[v.name for v in op.outputs],
                out_dtypes=[_dtype_name(v) for v in op.outputs],
                out_shapes=[_shape_of(v) for v in op.outputs],
            )
            for out_name, dtype in zip(step.out_names, step.out_dtypes):
                self._value_dtypes[out_name] = dtype
            if op.op_type.startswith("constexpr_"):
                self._fold_constexpr(step)
            else:
                self._steps.append(step)
        self._plan_frees()

    def _arg(self, var) -> _Arg:
        if isinstance(var, (list, tuple)):
            return _Arg(items=[self._arg(v) for v in var])
        producer = getattr(var, "op", None)
        if producer is None and var.name not in self._function.inputs and var.val is not None:
            return _Arg(const=_const_value(var))
        if producer is not None and producer.op_type == "const":
            return _Arg(const=self._consts.get(var.name, _const_value(var)))
        return _Arg(ref=var.name)

    def _fold_constexpr(self, step: _Step) -> None:
        # Compile-time ops only read consts; their result stays fixed across predictions.
        values = {key: self._resolve(arg, self._consts) for key, arg in step.args.items()}
        result = step.fn(_Args(values, step))
        results = result if isinstance(result, tuple) else (result,)
        for out_name, dtype, value in zip(step.out_names, step.out_dtypes, results):
            self._consts[out_name] = _finalize(value, dtype, emulate_fp16=False)
            for emulate in (False, True):
                self._folded[emulate][out_name] = _finalize(value, dtype, emulate)

    def _plan_frees(self) -> None:
        last_use: dict[str, int] = {}
        for index, step in enumerate(self._steps):
            for name in self._refs(step.args.values()):
                last_use[name] = index
        keep = set(self.output_names)
        for name, index in last_use.items():
            if name not in keep:
                self._steps[index].frees.append(name)

    def _refs(self, args) -> list[str]:
        names = []
        for arg in args:
            if arg.items is not None:
                names += self._refs(arg.items)
            elif arg.ref is not None:
                names.append(arg.ref)
        return names

    # -- execution --------------------------------------------------------------------

    def _resolve(self, arg: _Arg, env: dict[str, Any]):
        if arg.items is not None:
            return [self._resolve(item, env) for item in arg.items]
        if arg.ref is not None:
            return env[arg.ref] if arg.ref in env else self._consts[arg.ref]
        return arg.const

    def _run_step(self, step: _Step, env: dict[str, Any]) -> tuple:
        values = {key: self._resolve(arg, env) for key, arg in step.args.items()}
        try:
            result = step.fn(_Args(values, step))
        except VitdeployError:
            raise
        except Exception as exc:  # name the op: a bare numpy/torch error says nothing about where
            raise VitdeployError(
                f"MIL interpreter failed at op '{step.op_type}' (op name '{step.name}'): {exc}".replace("\n", " ")
            ) from exc
        return result if isinstance(result, tuple) else (result,)

    def _prepare_inputs(self, inputs: dict[str, np.ndarray], emulate: bool) -> dict[str, np.ndarray]:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise VitdeployError(f"missing model input(s): {', '.join(missing)} (expected {self.input_names})")
        unknown = [name for name in inputs if name not in self.input_names]
        if unknown:
            raise VitdeployError(f"unknown model input(s): {', '.join(unknown)} (expected {self.input_names})")
        env = dict(self._folded[emulate])
        for name in self.input_names:
            spec = self.input_specs[name]
            if spec["kind"] == "image":
                value = _image_to_tensor(inputs[name], spec, name)
            else:
                value = np.asarray(inputs[name])
                _check_tensor_shape(value, spec, name)
            env[name] = _finalize(value, self._input_dtypes[name], emulate)
        return env

    def predict(
        self,
        inputs: dict[str, np.ndarray],
        *,
        fp16_emulation: bool = True,
        keep: bool | Callable[[str], bool] = False,
    ) -> dict[str, np.ndarray]:
        """Run the program.

        Image inputs take RGB pixels 0..255 (HxWx3 or NxHxWx3, uint8 or float); the model's
        color layout, scale and bias are applied as Core ML would. Tensor inputs take arrays
        of the declared shape. ``keep`` (True or a predicate on MIL value names) stores
        intermediate values in ``self.last_intermediates``. Classifier models return their
        label as a 0-d array and their probabilities as a ``{label: probability}`` dict.
        """
        env = self._prepare_inputs(inputs, fp16_emulation)
        wanted = (lambda _name: True) if keep is True else (keep or None)
        kept: dict[str, np.ndarray] = {}
        for step in self._steps:
            results = self._run_step(step, env)
            for out_name, dtype, shape, value in zip(step.out_names, step.out_dtypes, step.out_shapes, results):
                env[out_name] = _finalize(value, dtype, fp16_emulation)
                _check_result_shape(step, out_name, shape, env[out_name])
                if wanted is not None and wanted(out_name):
                    kept[out_name] = _export(env[out_name], dtype, fp16_emulation)
            for name in step.frees:
                env.pop(name, None)
        self.last_intermediates = kept
        return {
            name: _export(self._resolve(_Arg(ref=name), env), self._value_dtypes[name], fp16_emulation)
            for name in self.output_names
        }
