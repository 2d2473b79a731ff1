"""Tests for the numpy MIL interpreter (vitdeploy.runtimes.coreml_mil).

Per-op tests build tiny MIL programs, convert them without graph passes (so the op under
test survives), save an .mlpackage, and compare the interpreter with an independent numpy
or torch reference. End-to-end tests (slow) convert HF LeViT / MobileViT.
"""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from coremltools.converters.mil.mil import types  # noqa: E402

from vitdeploy.errors import VitdeployError  # noqa: E402
from vitdeploy.runtimes.coreml_mil import MILInterpreter, UnsupportedOpError, op_counts  # noqa: E402

RNG = np.random.default_rng(0)


def _rand(*shape, low=-1.0, high=1.0):
    return RNG.uniform(low, high, size=shape).astype(np.float32)


def _save_program(tmp_path, fn, shapes, target=ct.target.iOS17, precision=ct.precision.FLOAT32, name="m", passes=None):
    prog = mb.program(input_specs=[mb.TensorSpec(shape=s) for s in shapes], opset_version=target)(fn)
    # ct.convert ends with gc.collect(), ~0.25 s in a process holding torch and transformers;
    # skipping it keeps the ~100 per-op conversions fast.
    with mock.patch("gc.collect", return_value=0):
        mlmodel = ct.convert(
            prog,
            convert_to="mlprogram",
            minimum_deployment_target=target,
            compute_precision=precision,
            pass_pipeline=passes or ct.PassPipeline.EMPTY,  # no passes: the op under test survives as built
        )
    path = tmp_path / f"{name}.mlpackage"
    mlmodel.save(str(path))
    return path


def _run(tmp_path, fn, inputs, target=ct.target.iOS17, expect_op=None, **predict_kwargs):
    """Convert fn(*inputs) as a MIL program, run the interpreter, return (outputs list, interpreter)."""
    path = _save_program(tmp_path, fn, [x.shape for x in inputs], target)
    interp = MILInterpreter.load(path)
    if expect_op is not None:
        assert expect_op in interp.op_counts(), f"{expect_op} missing from {interp.op_counts()}"
    feeds = dict(zip(interp.input_names, inputs))
    out = interp.predict(feeds, **predict_kwargs)
    return [out[name] for name in interp.output_names], interp


# ----------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------


def ref_conv2d(x, w, b, stride, pads, dilation=(1, 1), groups=1):
    """Direct convolution in float64; pads = [(top, bottom), (left, right)]."""
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(pads))
    n, _, h, wd = x.shape
    out_c, in_per_group, kh, kw = w.shape
    oh = (h - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (wd - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    out = np.zeros((n, out_c, oh, ow))
    out_per_group = out_c // groups
    for g in range(groups):
        xs = x[:, g * in_per_group : (g + 1) * in_per_group]
        ws = w[g * out_per_group : (g + 1) * out_per_group].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dilation[0], j * dilation[1]
                patch = xs[:, :, r0 : r0 + (oh - 1) * stride[0] + 1 : stride[0], c0 : c0 + (ow - 1) * stride[1] + 1 : stride[1]]
                out[:, g * out_per_group : (g + 1) * out_per_group] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def ref_pool2d(x, kernel, stride, pads, kind, exclude_padding=False):
    n, c, h, w = x.shape
    padded = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(pads), constant_values=np.nan)
    oh = (padded.shape[2] - kernel[0]) // stride[0] + 1
    ow = (padded.shape[3] - kernel[1]) // stride[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            win = padded[:, :, i * stride[0] : i * stride[0] + kernel[0], j * stride[1] : j * stride[1] + kernel[1]]
            if kind == "max":
                out[:, :, i, j] = np.nanmax(win, axis=(2, 3))
            elif exclude_padding:
                out[:, :, i, j] = np.nanmean(win, axis=(2, 3))
            else:
                out[:, :, i, j] = np.nansum(win, axis=(2, 3)) / (kernel[0] * kernel[1])
    return out


def ref_interp_1d(rows, grid):
    """Linear interpolation along the last axis at fractional source positions `grid`."""
    grid = np.asarray(grid, dtype=np.float64)
    low = np.floor(grid).astype(int)
    high = np.minimum(low + 1, rows.shape[-1] - 1)
    frac = grid - low
    return rows[..., low] * (1 - frac) + rows[..., high] * frac


def ref_bilinear(x, out_h, out_w, grid_fn):
    gh, gw = grid_fn(x.shape[-2], out_h), grid_fn(x.shape[-1], out_w)
    along_h = np.swapaxes(ref_interp_1d(np.swapaxes(x, -1, -2), gh), -1, -2)
    return ref_interp_1d(along_h, gw)


def _np_gelu_tanh(x):
    return torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()


def _np_gelu_exact(x):
    return torch.nn.functional.gelu(torch.from_numpy(x)).numpy()


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


# ----------------------------------------------------------------------------------------
# Per-op cases: (id, builder, inputs, reference, op type that must be present)
# ----------------------------------------------------------------------------------------

W_CONV = _rand(6, 4, 3, 3)
B_CONV = _rand(6)
W_GROUPED = _rand(6, 2, 3, 3)
W_DEPTHWISE = _rand(4, 1, 3, 3)
W_LINEAR = _rand(5, 8)
B_LINEAR = _rand(5)
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

    (out,), _ = _run(tmp_path, prog, [X_IMG], expect_op="conv")
    ref = ref_conv2d(X_IMG, weight, bias, strides, expected_pads, dilations, groups)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_conv1d_without_bias(tmp_path):
    x, w = _rand(1, 3, 10), _rand(4, 3, 3)

    (out,), _ = _run(tmp_path, lambda x: mb.conv(x=x, weight=w, pad_type="custom", pad=[2, 0]), [x], expect_op="conv")
    ref = ref_conv2d(x[:, :, None], w[:, :, None], np.zeros(4), (1, 1), [(0, 0), (2, 0)])[:, :, 0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def _matmul_case(tx, ty):
    x = _rand(2, 3, 4, 5) if not tx else _rand(2, 3, 5, 4)
    y = _rand(3, 5, 6) if not ty else _rand(3, 6, 5)
    ref_x = np.swapaxes(x, -1, -2) if tx else x
    ref_y = np.swapaxes(y, -1, -2) if ty else y
    return x, y, np.matmul(ref_x.astype(np.float64), ref_y)


@pytest.mark.parametrize("tx,ty", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_transpose_flags(tmp_path, tx, ty):
    x, y, ref = _matmul_case(tx, ty)
    (out,), _ = _run(
        tmp_path, lambda a, b: mb.matmul(x=a, y=b, transpose_x=tx, transpose_y=ty), [x, y], expect_op="matmul"
    )
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_linear(tmp_path):
    x = _rand(2, 3, 8)
    (out,), _ = _run(tmp_path, lambda x: mb.linear(x=x, weight=W_LINEAR, bias=B_LINEAR), [x], expect_op="linear")
    np.testing.assert_allclose(out, x.astype(np.float64) @ W_LINEAR.T + B_LINEAR, rtol=1e-5, atol=1e-6)


X_A = _rand(2, 3, 4)
X_B = _rand(3, 1, low=0.5, high=2.0)
X_POS = _rand(2, 3, 4, low=0.1, high=3.0)

ELEMENTWISE_CASES = [
    ("add", lambda x, y: mb.add(x=x, y=y), [X_A, X_B], lambda x, y: x + y),
    ("sub", lambda x, y: mb.sub(x=x, y=y), [X_A, X_B], lambda x, y: x - y),
    ("mul", lambda x, y: mb.mul(x=x, y=y), [X_A, X_B], lambda x, y: x * y),
    ("real_div", lambda x, y: mb.real_div(x=x, y=y), [X_A, X_B], lambda x, y: x / y),
    ("pow", lambda x, y: mb.pow(x=x, y=y), [X_POS, X_B], lambda x, y: np.power(x, y)),
    ("maximum", lambda x, y: mb.maximum(x=x, y=y), [X_A, X_B], np.maximum),
    ("minimum", lambda x, y: mb.minimum(x=x, y=y), [X_A, X_B], np.minimum),
    ("sqrt", lambda x: mb.sqrt(x=x), [X_POS], np.sqrt),
    ("rsqrt", lambda x: mb.rsqrt(x=x, epsilon=0.5), [X_POS], lambda x: 1 / np.sqrt(x + 0.5)),
    ("inverse", lambda x: mb.inverse(x=x, epsilon=0.25), [X_POS], lambda x: 1 / (x + 0.25)),
    ("log", lambda x: mb.log(x=x, epsilon=0.1), [X_POS], lambda x: np.log(x + 0.1)),
    ("exp", lambda x: mb.exp(x=x), [X_A], np.exp),
    ("tanh", lambda x: mb.tanh(x=x), [X_A], np.tanh),
    ("abs", lambda x: mb.abs(x=x), [X_A], np.abs),
    ("square", lambda x: mb.square(x=x), [X_A], np.square),
    ("erf", lambda x: mb.erf(x=x), [X_A], lambda x: np.vectorize(math.erf)(x.astype(np.float64))),
    ("floor", lambda x: mb.floor(x=x), [X_A * 3], np.floor),
    ("clip", lambda x: mb.clip(x=x, alpha=-0.3, beta=0.4), [X_A], lambda x: np.clip(x, -0.3, 0.4)),
    ("select", lambda x, y: mb.select(cond=mb.greater(x=x, y=0.0), a=x, b=y), [X_A, X_POS], lambda x, y: np.where(x > 0, x, y)),
]


@pytest.mark.parametrize("case", ELEMENTWISE_CASES, ids=[c[0] for c in ELEMENTWISE_CASES])
def test_elementwise(tmp_path, case):
    op_type, fn, inputs, ref_fn = case
    (out,), _ = _run(tmp_path, fn, inputs, expect_op=op_type)
    ref = ref_fn(*[x.astype(np.float64) for x in inputs])
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


X_ACT = _rand(2, 6, 5, 5, low=-5.0, high=5.0)

ACTIVATION_CASES = [
    ("relu", lambda x: mb.relu(x=x), lambda x: np.maximum(x, 0)),
    ("relu6", lambda x: mb.relu6(x=x), lambda x: np.clip(x, 0, 6)),
    ("leaky_relu", lambda x: mb.leaky_relu(x=x, alpha=0.1), lambda x: np.where(x >= 0, x, 0.1 * x)),
    ("elu", lambda x: mb.elu(x=x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    ("sigmoid", lambda x: mb.sigmoid(x=x), _sigmoid),
    ("silu", lambda x: mb.silu(x=x), lambda x: x * _sigmoid(x)),
    ("sigmoid_hard", lambda x: mb.sigmoid_hard(x=x, alpha=1 / 6, beta=0.5), lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    ("thresholded_relu", lambda x: mb.thresholded_relu(x=x, alpha=-3.0), lambda x: np.where(x > -3.0, x, 0.0)),
    ("softplus", lambda x: mb.softplus(x=x), lambda x: np.log1p(np.exp(x))),
    ("gelu", lambda x: mb.gelu(x=x, mode="EXACT"), _np_gelu_exact),
    ("gelu", lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"), _np_gelu_tanh),
    ("gelu", lambda x: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"), lambda x: x * _sigmoid(1.702 * x)),
    ("softmax", lambda x: mb.softmax(x=x, axis=1), lambda x: torch.softmax(torch.from_numpy(x), 1).numpy()),
    ("softmax", lambda x: mb.softmax(x=x, axis=-1), lambda x: torch.softmax(torch.from_numpy(x), -1).numpy()),
]


@pytest.mark.parametrize(
    "case", ACTIVATION_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(ACTIVATION_CASES)]
)
def test_activation(tmp_path, case):
    op_type, fn, ref_fn = case
    (out,), _ = _run(tmp_path, fn, [X_ACT], expect_op=op_type)
    x = X_ACT if op_type in ("gelu", "softmax") else X_ACT.astype(np.float64)
    np.testing.assert_allclose(out, ref_fn(x), rtol=1e-5, atol=1e-6)


def test_hardswish_pattern(tmp_path):
    """LeViT's hardswish lowers to thresholded_relu * sigmoid_hard."""

    def prog(x):
        t = mb.thresholded_relu(x=x, alpha=-3.0)
        return mb.mul(x=t, y=mb.sigmoid_hard(x=t, alpha=1 / 6, beta=0.5))

    (out,), _ = _run(tmp_path, prog, [X_ACT])
    ref = torch.nn.functional.hardswish(torch.from_numpy(X_ACT)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_layer_norm_last_axis(tmp_path):
    x, gamma, beta = _rand(2, 5, 8), _rand(8), _rand(8)
    (out,), _ = _run(
        tmp_path, lambda x: mb.layer_norm(x=x, axes=[-1], gamma=gamma, beta=beta, epsilon=1e-3), [x], expect_op="layer_norm"
    )
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x), (8,), torch.from_numpy(gamma), torch.from_numpy(beta), 1e-3)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_layer_norm_middle_axes_without_affine(tmp_path):
    x = _rand(2, 3, 4, 5) * 3 + 1
    (out,), _ = _run(tmp_path, lambda x: mb.layer_norm(x=x, axes=[1, 2], epsilon=1e-5), [x], expect_op="layer_norm")
    xd = x.astype(np.float64)
    mean, var = xd.mean(axis=(1, 2), keepdims=True), xd.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, (xd - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)


def test_batch_norm(tmp_path):
    x = _rand(2, 4, 3, 3)
    mean, var, gamma, beta = _rand(4), _rand(4, low=0.5, high=2), _rand(4), _rand(4)
    (out,), _ = _run(
        tmp_path,
        lambda x: mb.batch_norm(x=x, mean=mean, variance=var, gamma=gamma, beta=beta, epsilon=1e-3),
        [x],
        expect_op="batch_norm",
    )
    ref = torch.nn.functional.batch_norm(
        torch.from_numpy(x), *(torch.from_numpy(v) for v in (mean, var, gamma, beta)), training=False, eps=1e-3
    )
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_batch_norm_rank3(tmp_path):
    """LeViT's BatchNorm1d shows up as batch_norm on a rank-3 tensor."""
    x = _rand(1, 4, 6)
    mean, var = _rand(4), _rand(4, low=0.5, high=2)
    (out,), _ = _run(tmp_path, lambda x: mb.batch_norm(x=x, mean=mean, variance=var), [x], expect_op="batch_norm")
    ref = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_instance_norm(tmp_path):
    x, gamma, beta = _rand(2, 3, 4, 5), _rand(3), _rand(3)
    (out,), _ = _run(tmp_path, lambda x: mb.instance_norm(x=x, gamma=gamma, beta=beta), [x], expect_op="instance_norm")
    ref = torch.nn.functional.instance_norm(torch.from_numpy(x), weight=torch.from_numpy(gamma), bias=torch.from_numpy(beta))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


X_T = _rand(2, 3, 4, 5)

TENSOR_CASES = [
    # iOS17 reshape: a 0 copies the input dim at the same position counted from the right.
    ("reshape", lambda x: mb.reshape(x=x, shape=[0, -1, 5]), lambda x: x.reshape(3, 8, 5)),
    ("reshape", lambda x: mb.reshape(x=x, shape=[6, 0, -1]), lambda x: x.reshape(6, 4, 5)),
    ("transpose", lambda x: mb.transpose(x=x, perm=[3, 1, 0, 2]), lambda x: x.transpose(3, 1, 0, 2)),
    ("expand_dims", lambda x: mb.expand_dims(x=x, axes=[-2]), lambda x: x[..., None, :]),
    ("expand_dims", lambda x: mb.expand_dims(x=mb.reduce_sum(x=x, axes=[0, 1]), axes=[0, -1]), lambda x: x.sum(axis=(0, 1))[None, ..., None]),
    ("squeeze", lambda x: mb.squeeze(x=mb.expand_dims(x=x, axes=[1]), axes=[1]), lambda x: x),
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
    ("reduce_mean", lambda x: mb.reduce_mean(x=x, axes=[-2, -1], keep_dims=True), lambda x: x.mean(axis=(2, 3), keepdims=True)),
    ("reduce_sum", lambda x: mb.reduce_sum(x=x, axes=[1], keep_dims=False), lambda x: x.sum(axis=1)),
    ("reduce_max", lambda x: mb.reduce_max(x=x, axes=[0, 3]), lambda x: x.max(axis=(0, 3))),
    ("reduce_min", lambda x: mb.reduce_min(x=x), lambda x: x.min()),
    ("reduce_prod", lambda x: mb.reduce_prod(x=x, axes=[2]), lambda x: x.prod(axis=2)),
    ("reduce_l2_norm", lambda x: mb.reduce_l2_norm(x=x, axes=[1]), lambda x: np.sqrt((x * x).sum(axis=1))),
    (
        "reduce_log_sum_exp",
        lambda x: mb.reduce_log_sum_exp(x=x, axes=[3], keep_dims=True),
        lambda x: np.log(np.exp(x).sum(axis=3, keepdims=True)),
    ),
    (
        "einsum",
        lambda x: mb.einsum(values=(x, mb.transpose(x=x, perm=[0, 3, 2, 1])), equation="nchw,nwhu->nchu"),
        lambda x: np.einsum("nchw,nwhu->nchu", x, x.transpose(0, 3, 2, 1)),
    ),
    ("cast", lambda x: mb.cast(x=mb.cast(x=mb.mul(x=x, y=4.0), dtype="int32"), dtype="fp32"), lambda x: np.trunc(x * 4.0)),
]


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(TENSOR_CASES)])
def test_tensor_op(tmp_path, case):
    op_type, fn, ref_fn = case
    (out,), _ = _run(tmp_path, fn, [X_T], expect_op=op_type)
    ref = ref_fn(X_T.astype(np.float64))
    assert out.shape == np.shape(ref)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def _rev_exclusive_cumsum(x, axis):
    return np.flip(np.cumsum(np.flip(x, axis), axis), axis) - x


MORE_TENSOR_CASES = [
    ("stack", lambda x: mb.stack(values=[x, mb.mul(x=x, y=2.0)], axis=1), lambda x: np.stack([x, 2 * x], axis=1)),
    ("reverse", lambda x: mb.reverse(x=x, axes=[1, 3]), lambda x: np.flip(x, axis=(1, 3))),
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
    (
        "reduce_argmin",
        lambda x: mb.cast(x=mb.reduce_argmin(x=x, axis=-1, keep_dims=True), dtype="fp32"),
        lambda x: np.argmin(x, axis=-1)[..., None],
    ),
    ("l2_norm", lambda x: mb.l2_norm(x=x, epsilon=1e-3), lambda x: x / np.sqrt((x * x).sum(axis=(1, 2, 3), keepdims=True) + 1e-3)),
    (
        "reshape_like",
        lambda x: mb.reshape_like(
            x=x, ref_tensors=(mb.reshape(x=x, shape=[6, 20]),), begins=[0], ends=[2], end_masks=[False]
        ),
        lambda x: x.reshape(6, 20),
    ),
    ("threshold", lambda x: mb.threshold(x=x, alpha=0.2), lambda x: np.maximum(x, 0.2)),
    ("round", lambda x: mb.round(x=mb.mul(x=x, y=3.0)), lambda x: np.round(3 * x)),
    ("sign", lambda x: mb.sign(x=x), np.sign),
    ("sin", lambda x: mb.sin(x=x), np.sin),
    ("cos", lambda x: mb.cos(x=x), np.cos),
    ("atan", lambda x: mb.atan(x=x), np.arctan),
    ("ceil", lambda x: mb.ceil(x=mb.mul(x=x, y=3.0)), lambda x: np.ceil(3 * x)),
    ("floor_div", lambda x: mb.floor_div(x=x, y=0.3), lambda x: np.floor(x / 0.3)),
    ("mod", lambda x: mb.mod(x=x, y=0.3), lambda x: np.mod(x, 0.3)),
    ("less", lambda x: mb.select(cond=mb.less(x=x, y=0.1), a=x, b=mb.mul(x=x, y=-1.0)), lambda x: np.where(x < 0.1, x, -x)),
    (
        "logical_and",
        lambda x: mb.select(
            cond=mb.logical_and(x=mb.greater(x=x, y=-0.5), y=mb.less_equal(x=x, y=0.5)), a=x, b=mb.mul(x=x, y=0.0)
        ),
        lambda x: np.where((x > -0.5) & (x <= 0.5), x, 0.0),
    ),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    (out,), _ = _run(tmp_path, fn, [X_T], expect_op=op_type)
    ref = ref_fn(X_T.astype(np.float64))
    assert out.shape == np.shape(ref)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


ALPHA6, BETA6 = _rand(6, low=0.1, high=0.9), _rand(6, low=0.5, high=1.5)

MORE_ACTIVATION_CASES = [
    ("prelu", lambda x: mb.prelu(x=x, alpha=ALPHA6), lambda x: np.where(x >= 0, x, x * ALPHA6.reshape(1, 6, 1, 1))),
    (
        "softplus_parametric",
        lambda x: mb.softplus_parametric(x=x, alpha=ALPHA6, beta=BETA6),
        lambda x: ALPHA6.reshape(1, 6, 1, 1) * np.log1p(np.exp(BETA6.reshape(1, 6, 1, 1) * x)),
    ),
    ("softsign", lambda x: mb.softsign(x=x), lambda x: x / (1 + np.abs(x))),
    ("scaled_tanh", lambda x: mb.scaled_tanh(x=x, alpha=1.5, beta=0.7), lambda x: 1.5 * np.tanh(0.7 * x)),
    ("linear_activation", lambda x: mb.linear_activation(x=x, alpha=2.0, beta=-1.0), lambda x: 2 * x - 1),
    (
        "clamped_relu",
        lambda x: mb.clamped_relu(x=x, alpha=0.1, beta=2.0),
        lambda x: np.minimum(np.where(x >= 0, x, 0.1 * x), 2.0),
    ),
    (
        "resize_nearest_neighbor",
        lambda x: mb.resize_nearest_neighbor(x=x, target_size_height=10, target_size_width=15),
        lambda x: x.repeat(2, axis=2).repeat(3, axis=3),
    ),
]


@pytest.mark.parametrize("case", MORE_ACTIVATION_CASES, ids=[c[0] for c in MORE_ACTIVATION_CASES])
def test_more_activation_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    (out,), _ = _run(tmp_path, fn, [X_ACT], expect_op=op_type)
    np.testing.assert_allclose(out, ref_fn(X_ACT.astype(np.float64)), rtol=1e-5, atol=1e-5)


def test_pixel_shuffle_and_unshuffle(tmp_path):
    x = _rand(1, 8, 2, 3)

    def prog(x):
        up = mb.pixel_shuffle(x=x, upscale_factor=2)
        return up, mb.pixel_unshuffle(x=up, downscale_factor=np.uint32(2))

    (up, down), _ = _run(tmp_path, prog, [x], target=ct.target.iOS16, expect_op="pixel_unshuffle")
    np.testing.assert_array_equal(up, torch.pixel_shuffle(torch.from_numpy(x), 2).numpy())
    np.testing.assert_array_equal(down, x)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_scaled_dot_product_attention(tmp_path, mask_kind):
    q, k, v = _rand(1, 2, 4, 8), _rand(1, 2, 6, 8), _rand(1, 2, 6, 3)
    bool_mask = RNG.random((4, 6)) > 0.3
    bool_mask[:, 0] = True  # every query attends to something
    float_mask = _rand(4, 6)

    def prog(q, k, v):
        kwargs = {}
        if mask_kind == "bool":
            kwargs["attn_mask"] = bool_mask
        elif mask_kind == "float":
            kwargs["attn_mask"] = float_mask
        return mb.scaled_dot_product_attention(query=q, key=k, value=v, **kwargs)

    (out,), _ = _run(tmp_path, prog, [q, k, v], target=ct.target.iOS18, expect_op="scaled_dot_product_attention")
    mask = {"none": None, "bool": torch.from_numpy(bool_mask), "float": torch.from_numpy(float_mask)}[mask_kind]
    ref = torch.nn.functional.scaled_dot_product_attention(*(torch.from_numpy(t) for t in (q, k, v)), attn_mask=mask)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


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

    (out,), interp = _run(tmp_path, prog, [x], target=ct.target.iOS16)
    assert {"constexpr_cast", "constexpr_sparse_to_dense"} <= set(interp.op_counts())
    np.testing.assert_allclose(out, x + half.astype(np.float32) + dense, rtol=1e-6)


@pytest.mark.parametrize("by", ["num_splits", "split_sizes"])
def test_split(tmp_path, by):
    kwargs = {"num_splits": 2} if by == "num_splits" else {"split_sizes": [1, 3]}

    def prog(x):
        return mb.split(x=x, axis=2, **kwargs)

    outs, _ = _run(tmp_path, prog, [X_T], expect_op="split")
    cuts = [2] if by == "num_splits" else [1]
    for out, ref in zip(outs, np.split(X_T, cuts, axis=2), strict=True):
        np.testing.assert_array_equal(out, ref)


def test_reduce_argmax_returns_int_indices(tmp_path):
    def prog(x):
        return mb.cast(x=mb.reduce_argmax(x=x, axis=1, keep_dims=False), dtype="fp32")

    (out,), _ = _run(tmp_path, prog, [X_T], expect_op="reduce_argmax")
    np.testing.assert_array_equal(out, np.argmax(X_T, axis=1))


POOL_CASES = [
    # kind, pad_type, pad, kernel, strides, exclude_padding, expected pads
    ("avg", "valid", None, [2, 2], [2, 2], False, [(0, 0), (0, 0)]),
    ("avg", "custom", [1, 1, 1, 0], [3, 3], [2, 2], True, [(1, 1), (1, 0)]),
    ("avg", "custom", [1, 1, 1, 0], [3, 3], [2, 2], False, [(1, 1), (1, 0)]),
    ("avg", "same", None, [3, 3], [2, 2], True, [(1, 1), (0, 1)]),
    ("max", "same", None, [3, 3], [2, 2], False, [(1, 1), (0, 1)]),
    ("max", "custom", [0, 1, 1, 1], [2, 3], [1, 2], False, [(0, 1), (1, 1)]),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[f"{c[0]}_{c[1]}_{i}" for i, c in enumerate(POOL_CASES)])
def test_pool(tmp_path, case):
    kind, pad_type, pad, kernel, strides, exclude, expected_pads = case

    def prog(x):
        kwargs = dict(x=x, kernel_sizes=kernel, strides=strides, pad_type=pad_type)
        if pad is not None:
            kwargs["pad"] = pad
        if kind == "avg":
            return mb.avg_pool(exclude_padding_from_average=exclude, **kwargs)
        return mb.max_pool(**kwargs)

    (out,), _ = _run(tmp_path, prog, [X_IMG], expect_op=f"{kind}_pool")
    ref = ref_pool2d(X_IMG, kernel, strides, expected_pads, kind, exclude)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def _grid_align(n_in, n_out):
    return np.arange(n_out) * (n_in - 1) / (n_out - 1)


def _grid_half_pixel(n_in, n_out):
    return np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)


def _grid_asymmetric(n_in, n_out):
    return np.clip(np.arange(n_out) * n_in / n_out, 0, n_in - 1)


@pytest.mark.parametrize(
    "align_corners,half_pixel,grid_fn",
    [(True, False, _grid_align), (False, True, _grid_half_pixel), (False, False, _grid_asymmetric)],
)
def test_upsample_bilinear(tmp_path, align_corners, half_pixel, grid_fn):
    x = _rand(1, 2, 3, 4)

    def prog(x):
        return mb.upsample_bilinear(
            x=x, scale_factor_height=2.0, scale_factor_width=3.0, align_corners=align_corners, half_pixel_centers=half_pixel
        )

    (out,), _ = _run(tmp_path, prog, [x], expect_op="upsample_bilinear")
    np.testing.assert_allclose(out, ref_bilinear(x.astype(np.float64), 6, 12, grid_fn), rtol=1e-5, atol=1e-6)
    if align_corners or half_pixel:  # both also exist in torch
        torch_ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=(6, 12), mode="bilinear", align_corners=align_corners)
        np.testing.assert_allclose(out, torch_ref.numpy(), rtol=1e-5, atol=1e-6)


# Grid points for Xin=2, Xout=5 as printed in the MIL resize_bilinear documentation.
RESIZE_GRIDS = {
    "UNALIGN_CORNERS": [0.0, 0.1, 0.5, 0.9, 1.0],
    "STRICT_ALIGN_CORNERS": [0.0, 0.25, 0.5, 0.75, 1.0],
    "ALIGN_CORNERS": [0.0, 0.25, 0.5, 0.75, 1.0],
    "DEFAULT": [0.0, 0.4, 0.8, 1.0, 1.0],
    "OFFSET_CORNERS": [0.1, 0.3, 0.5, 0.7, 0.9],
}


@pytest.mark.parametrize("mode", sorted(RESIZE_GRIDS))
def test_resize_bilinear_sampling_modes(tmp_path, mode):
    x = np.array([[[[1.0, 3.0], [5.0, 11.0]]]], dtype=np.float32)

    def prog(x):
        return mb.resize_bilinear(x=x, target_size_height=5, target_size_width=5, sampling_mode=mode)

    (out,), _ = _run(tmp_path, prog, [x], expect_op="resize_bilinear")
    grid = np.array(RESIZE_GRIDS[mode])
    ref = ref_bilinear(x.astype(np.float64), 5, 5, lambda n_in, n_out: grid)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_upsample_nearest_neighbor(tmp_path):
    x = _rand(1, 2, 3, 4)
    (out,), _ = _run(
        tmp_path,
        lambda x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=3),
        [x],
        expect_op="upsample_nearest_neighbor",
    )
    np.testing.assert_array_equal(out, x.repeat(2, axis=2).repeat(3, axis=3))


# ----------------------------------------------------------------------------------------
# Quantization
# ----------------------------------------------------------------------------------------


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

    (out,), _ = _run(tmp_path, prog, [x], expect_op="quantize")
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

    (out,), _ = _run(tmp_path, prog, [x], expect_op="dequantize")
    ref = _ref_fake_quant(x.astype(np.float64), scale.astype(np.float64), zp.astype(np.float64), 0, 255, axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_constexpr_affine_dequantize_per_channel(tmp_path):
    data = RNG.integers(-128, 127, size=(3, 4), dtype=np.int8)
    zp = np.array([1, -2, 0], dtype=np.int8)
    scale = np.array([0.1, 0.2, 0.05], dtype=np.float32)
    x = _rand(3, 4)

    def prog(x):
        w = mb.constexpr_affine_dequantize(quantized_data=data, zero_point=zp, scale=scale, axis=0)
        return mb.add(x=x, y=w)

    (out,), _ = _run(tmp_path, prog, [x], target=ct.target.iOS16, expect_op="constexpr_affine_dequantize")
    ref = x + (data.astype(np.float64) - zp[:, None]) * scale[:, None]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_constexpr_blockwise_shift_scale(tmp_path):
    data = RNG.integers(-128, 127, size=(4, 6), dtype=np.int8)
    scale = _rand(2, 3, low=0.01, high=0.1)  # blocks of 2x2
    offset = RNG.integers(-5, 5, size=(2, 3), dtype=np.int8)
    x = _rand(4, 6)

    def prog(x):
        return mb.add(x=x, y=mb.constexpr_blockwise_shift_scale(data=data, scale=scale, offset=offset))

    (out,), _ = _run(tmp_path, prog, [x], target=ct.target.iOS18, expect_op="constexpr_blockwise_shift_scale")
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

    (out,), _ = _run(tmp_path, prog, [x], target=ct.target.iOS16, expect_op="constexpr_lut_to_dense")
    np.testing.assert_allclose(out, x + lut[indices], rtol=1e-6)


def test_constexpr_lut_to_dense_ios18_grouped(tmp_path):
    indices = RNG.integers(0, 16, size=(4, 3)).astype(types.np_uint4_dtype)
    lut = _rand(2, 1, 16, 1)  # two LUTs, one per pair of rows
    x = _rand(4, 3)

    def prog(x):
        return mb.add(x=x, y=mb.constexpr_lut_to_dense(indices=indices, lut=lut))

    (out,), _ = _run(tmp_path, prog, [x], target=ct.target.iOS18, expect_op="constexpr_lut_to_dense")
    group = np.arange(4) // 2
    ref = x + lut[group[:, None], 0, indices.astype(int), 0]
    np.testing.assert_allclose(out, ref, rtol=1e-6)


# ----------------------------------------------------------------------------------------
# fp16 emulation, intermediates, errors, inputs
# ----------------------------------------------------------------------------------------


def test_fp16_emulation_rounds_every_fp16_value(tmp_path):
    x = _rand(1, 64, low=1.0, high=2.0)

    def prog(x):
        return mb.add(x=mb.mul(x=x, y=np.float32(3.0001), name="scaled"), y=np.float32(1e-3), name="shifted")

    # The default pipeline is what inserts the fp16 casts (fp32 in, fp16 compute, fp32 out).
    path = _save_program(tmp_path, prog, [x.shape], precision=ct.precision.FLOAT16, passes=ct.PassPipeline.DEFAULT)
    interp = MILInterpreter.load(path)
    assert interp.op_counts().get("cast") == 2
    name = interp.output_names[0]

    f16 = np.float16
    product = (x.astype(f16).astype(np.float32) * np.float32(f16(3.0001))).astype(f16)
    expected = (product.astype(np.float32) + np.float32(f16(1e-3))).astype(f16)
    emulated = interp.predict({"x": x}, keep=True)[name]
    np.testing.assert_array_equal(emulated, expected.astype(np.float32))
    fp16_values = [v for v in interp.last_intermediates.values() if v.dtype == np.float16]
    assert len(fp16_values) >= 3  # cast in, mul, add

    exact = interp.predict({"x": x}, fp16_emulation=False)[name]
    np.testing.assert_allclose(exact, x * np.float32(f16(3.0001)) + np.float32(f16(1e-3)), rtol=1e-6)
    assert not np.array_equal(exact, emulated)


def test_fp16_constexpr_weights_are_rounded_when_emulating(tmp_path):
    data = RNG.integers(-128, 127, size=(4, 6), dtype=np.int8)
    scale = _rand(4, 1, low=0.001, high=0.01).astype(np.float16)
    x = _rand(4, 6)

    def prog(x):
        weight = mb.constexpr_blockwise_shift_scale(data=data, scale=scale)  # an fp16 tensor
        return mb.cast(x=mb.add(x=mb.cast(x=x, dtype="fp16"), y=weight), dtype="fp32")

    path = _save_program(tmp_path, prog, [x.shape], target=ct.target.iOS18)
    interp = MILInterpreter.load(path)
    name = interp.output_names[0]
    weight32 = data.astype(np.float32) * scale.astype(np.float32)
    weight16 = weight32.astype(np.float16).astype(np.float32)
    assert not np.array_equal(weight16, weight32)
    expected = (x.astype(np.float16).astype(np.float32) + weight16).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(interp.predict({"x": x})[name], expected)
    np.testing.assert_allclose(interp.predict({"x": x}, fp16_emulation=False)[name], x + weight32, rtol=1e-6)


@pytest.mark.parametrize("labels", [["cat", "dog", "eel"], [10, 20, 30]])
def test_classifier_outputs_label_and_probabilities(tmp_path, labels):
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3), torch.nn.Softmax(-1)).eval()
    x = torch.randn(1, 3, 2, 2)
    with mock.patch("gc.collect", return_value=0):
        mlmodel = ct.convert(
            torch.export.export(module, (x,)).run_decompositions({}),
            inputs=[ct.TensorType(name="x", shape=x.shape)],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS17,
            compute_precision=ct.precision.FLOAT32,
            classifier_config=ct.ClassifierConfig(labels),
        )
    mlmodel.save(str(tmp_path / "classifier.mlpackage"))
    interp = MILInterpreter.load(tmp_path / "classifier.mlpackage")
    assert "classify" in interp.op_counts()
    out = interp.predict({"x": x.numpy()})
    probs = module(x).detach().numpy()[0]
    assert out["classLabel"].item() == labels[int(np.argmax(probs))]
    assert out["classLabel_probs"] == pytest.approx(dict(zip(labels, probs.tolist())), rel=1e-5)


def test_keep_returns_intermediates(tmp_path):
    def prog(x):
        h = mb.relu(x=x, name="hidden")
        return mb.mul(x=h, y=2.0, name="out")

    x = _rand(2, 3)
    _, interp = _run(tmp_path, prog, [x], keep=True)
    assert set(interp.last_intermediates) >= {"hidden", "out"}
    np.testing.assert_allclose(interp.last_intermediates["hidden"], np.maximum(x, 0))

    interp.predict({"x": x}, keep=lambda name: name == "hidden")
    assert list(interp.last_intermediates) == ["hidden"]
    interp.predict({"x": x})
    assert interp.last_intermediates == {}


def test_unsupported_op_names_type_and_op(tmp_path):
    def prog(x):
        values, _ = mb.topk(x=x, k=2, axis=-1, name="my_topk")
        return values

    path = _save_program(tmp_path, prog, [(2, 5)])
    with pytest.raises(UnsupportedOpError) as info:
        MILInterpreter.load(path)
    message = str(info.value)
    assert "'topk'" in message and "'my_topk'" in message and "\n" not in message
    assert isinstance(info.value, VitdeployError)


def test_op_counts_exclude_const(tmp_path):
    def prog(x):
        return mb.add(x=mb.relu(x=x), y=mb.relu(x=mb.mul(x=x, y=2.0)))

    path = _save_program(tmp_path, prog, [(2, 3)])
    assert op_counts(path) == {"relu": 2, "mul": 1, "add": 1}
    assert MILInterpreter.load(path).op_counts() == {"relu": 2, "mul": 1, "add": 1}


def test_tensor_input_shape_is_checked(tmp_path):
    path = _save_program(tmp_path, lambda x: mb.relu(x=x), [(1, 3, 4)])
    interp = MILInterpreter.load(path)
    assert interp.input_specs["x"] == {"kind": "tensor", "shape": [1, 3, 4], "dtype": "float32"}
    with pytest.raises(VitdeployError, match="expects shape"):
        interp.predict({"x": np.zeros((1, 4, 3), np.float32)})
    with pytest.raises(VitdeployError, match="missing"):
        interp.predict({})
    with pytest.raises(VitdeployError, match="unknown"):
        interp.predict({"x": np.zeros((1, 3, 4), np.float32), "y": np.zeros(1)})


def test_module_imports_without_coremltools():
    import subprocess
    import sys

    code = (
        "import sys; import vitdeploy.runtimes.coreml_mil as m; "
        "assert 'coremltools' not in sys.modules, 'coremltools imported at module level'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------
# End-to-end (slow): torch -> Core ML -> interpreter
# ----------------------------------------------------------------------------------------


def _random_batchnorm_stats(model):
    """Seeded random BatchNorm affine parameters and running stats around 1/0."""
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.weight.data.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def _calibrated_batchnorm_stats(model, size):
    """Random BatchNorm affine parameters, running stats estimated from random images.

    MobileViT's conv stack has no residual path around most BatchNorms; with HF's init
    (BatchNorm weights ~ N(0, 0.02)) or arbitrary stats its activations vanish towards
    denormals or explode, which would make a parity check vacuous.
    """
    gen = torch.Generator().manual_seed(1)
    _random_batchnorm_stats(model)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn((4, 3, size, size), generator=gen))
    return model.eval()


def _levit_128s():
    from transformers import LevitConfig, LevitForImageClassificationWithTeacher

    torch.manual_seed(0)
    config = LevitConfig(
        hidden_sizes=[128, 256, 384], num_attention_heads=[4, 6, 8], depths=[2, 3, 4], key_dim=[16, 16, 16], num_labels=1000
    )
    # Calibrated stats make this random LeViT ill-conditioned (torch fp32 vs fp64 differ by 3e-3).
    return _random_batchnorm_stats(LevitForImageClassificationWithTeacher(config)), 224


def _mobilevit_xxs():
    from transformers import MobileViTConfig, MobileViTForImageClassification

    torch.manual_seed(0)
    config = MobileViTConfig(
        hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0, num_labels=1000
    )
    return _calibrated_batchnorm_stats(MobileViTForImageClassification(config), 256), 256


def _logits_module(model):
    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixel_values):
            return self.model(pixel_values).logits

    return Logits().eval()


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _w8(mlmodel):
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    )
    return cto.linear_quantize_weights(mlmodel, config)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["levit", "mobilevit"])
def test_end_to_end_hf_models(tmp_path, family):
    model, size = _levit_128s() if family == "levit" else _mobilevit_xxs()
    module = _logits_module(model)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 3, size, size)).astype(np.float32))
    with torch.no_grad():
        ref = module(x).numpy()
    assert ref.std() > 0.01, "degenerate random model: the parity check would be vacuous"
    exported = torch.export.export(module, (x,)).run_decompositions({})

    def convert(precision, target):
        return ct.convert(
            exported,
            inputs=[ct.TensorType(name="pixel_values", shape=x.shape)],
            convert_to="mlprogram",
            minimum_deployment_target=target,
            compute_precision=precision,
        )

    fp32 = convert(ct.precision.FLOAT32, ct.target.iOS16)
    # w8 on iOS17 stores constexpr_affine_dequantize, on iOS18 constexpr_blockwise_shift_scale: cover both.
    fp16_target = ct.target.iOS17 if family == "levit" else ct.target.iOS18
    dequant_op = "constexpr_affine_dequantize" if family == "levit" else "constexpr_blockwise_shift_scale"
    fp16 = convert(ct.precision.FLOAT16, fp16_target)
    results = {}
    for name, mlmodel in [("fp32", fp32), ("fp16", fp16), ("w8", _w8(fp16))]:
        path = tmp_path / f"{family}_{name}.mlpackage"
        mlmodel.save(str(path))
        interp = MILInterpreter.load(path)
        out = interp.predict({"pixel_values": x.numpy()})
        results[name] = (out[interp.output_names[0]].astype(np.float32), interp)

    fp32_out = results["fp32"][0]
    max_rel = np.abs(fp32_out - ref).max() / np.abs(ref).max()
    assert max_rel < 1e-4, max_rel
    assert _cosine(results["fp16"][0], ref) >= 0.999
    assert _cosine(results["w8"][0], ref) >= 0.999
    assert dequant_op in results["w8"][1].op_counts()
    assert np.abs(results["fp16"][0] - fp32_out).max() > 1e-5, "fp16 emulation should leave a trace"
    assert not np.array_equal(results["fp16"][0], results["w8"][0])
    print(
        f"{family}: fp32 max rel {max_rel:.2e}, fp16 1-cosine {1 - _cosine(results['fp16'][0], ref):.2e}, "
        f"w8 1-cosine {1 - _cosine(results['w8'][0], ref):.2e}"
    )


@pytest.mark.slow
def test_mobilevit_at_224_resizes_patches_with_upsample_bilinear(tmp_path):
    """At 224 px the 7x7 feature map is not a multiple of the patch size: HF interpolates."""
    model, _ = _mobilevit_xxs()
    module = _logits_module(model)
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        ref = module(x).numpy()
    mlmodel = ct.convert(
        torch.export.export(module, (x,)).run_decompositions({}),
        inputs=[ct.TensorType(name="pixel_values", shape=x.shape)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
    )
    path = tmp_path / "mobilevit224.mlpackage"
    mlmodel.save(str(path))
    interp = MILInterpreter.load(path)
    assert interp.op_counts().get("upsample_bilinear", 0) >= 2
    out = interp.predict({"pixel_values": x.numpy()})[interp.output_names[0]]
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-4


class _SmallConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.head = torch.nn.Linear(8, 5)
        with torch.no_grad():
            self.head.weight.mul_(20.0)  # logits of order 1, so a channel swap is far outside fp16 noise

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["RGB", "BGR"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_image_input_applies_layout_scale_and_bias(tmp_path, layout, precision):
    module = _SmallConvNet().eval()
    scale, bias = 1 / 58.0, [-2.1, -1.9, -1.7]  # bias is given in the model's channel order
    example = torch.zeros(1, 3, 20, 24)
    exported = torch.export.export(module, (example,)).run_decompositions({})
    mlmodel = ct.convert(
        exported,
        inputs=[ct.ImageType(name="image", shape=example.shape, scale=scale, bias=bias, color_layout=layout)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
    )
    path = tmp_path / "image.mlpackage"
    mlmodel.save(str(path))
    interp = MILInterpreter.load(path)

    spec = interp.input_specs["image"]
    assert spec["kind"] == "image" and spec["color_layout"] == layout
    assert spec["height"] == 20 and spec["width"] == 24
    assert spec["scale"] == pytest.approx(scale) and spec["bias"] == pytest.approx(bias)

    rgb = np.random.default_rng(4).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    channels = rgb[..., ::-1] if layout == "BGR" else rgb
    manual = channels.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(scale)
    manual = manual + np.array(bias, dtype=np.float32).reshape(1, 3, 1, 1)
    with torch.no_grad():
        ref = module(torch.from_numpy(manual)).numpy()
        swapped = module(torch.from_numpy(np.ascontiguousarray(manual[:, ::-1]))).numpy()

    out = interp.predict({"image": rgb})[interp.output_names[0]].astype(np.float32)
    tol = 1e-5 if precision == "fp32" else 1e-2
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    assert np.abs(ref - swapped).max() > 0.2, "channel order must matter for this check to mean anything"
    batched = interp.predict({"image": rgb[None].astype(np.float32)})[interp.output_names[0]]
    np.testing.assert_array_equal(batched, interp.predict({"image": rgb})[interp.output_names[0]])
    with pytest.raises(VitdeployError, match="20x24"):
        interp.predict({"image": rgb[:10]})
    with pytest.raises(VitdeployError, match="HxWx3"):
        interp.predict({"image": rgb[..., :2]})


@pytest.mark.slow
def test_corrupted_weight_blob_changes_output(tmp_path):
    module = _SmallConvNet().eval()
    x = torch.randn(1, 3, 20, 24)
    exported = torch.export.export(module, (x,)).run_decompositions({})
    mlmodel = ct.convert(
        exported,
        inputs=[ct.TensorType(name="x", shape=x.shape)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT32,
    )
    path = tmp_path / "blob.mlpackage"
    mlmodel.save(str(path))
    before = MILInterpreter.load(path).predict({"x": x.numpy()})
    name = next(iter(before))
    np.testing.assert_allclose(before[name], module(x).detach().numpy(), rtol=1e-5, atol=1e-5)

    blob = path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(blob.read_bytes())
    weight_bytes = module.conv.weight.detach().numpy().astype(np.float32).tobytes()
    start = bytes(data).find(weight_bytes)
    assert start >= 0, "conv weight not stored in weight.bin"
    for i in range(start, start + 40 * 4, 4):
        data[i + 3] ^= 0x80  # flip the sign bit of 40 float32 weights
    blob.write_bytes(bytes(data))

    after = MILInterpreter.load(path).predict({"x": x.numpy()})
    assert np.abs(after[name] - before[name]).max() > 1e-2
