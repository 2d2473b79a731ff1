"""Shared helpers of the MIL interpreter tests (tests/mil): tiny MIL programs, independent references.

Per-op tests build tiny MIL programs, convert them without graph passes (so the op under test
survives), save an .mlpackage, and compare the interpreter with an independent numpy or torch
reference.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

ct = pytest.importorskip("coremltools")
torch = pytest.importorskip("torch")

from coremltools.converters.mil import Builder as mb  # noqa: E402

from vitdeploy.runtimes.mil import MILInterpreter  # noqa: E402


def uniform(rng: np.random.Generator):
    """``rand(*shape, low=-1, high=1)``: float32 uniform samples drawn from ``rng``."""

    def rand(*shape, low=-1.0, high=1.0):
        return rng.uniform(low, high, size=shape).astype(np.float32)

    return rand


def save_program(tmp_path, fn, shapes, target=ct.target.iOS17, precision=ct.precision.FLOAT32, name="m", passes=None):
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


def run(tmp_path, fn, inputs, target=ct.target.iOS17, expect_op=None, **predict_kwargs):
    """Convert fn(*inputs) as a MIL program, run the interpreter, return (outputs list, interpreter)."""
    path = save_program(tmp_path, fn, [x.shape for x in inputs], target)
    interp = MILInterpreter.load(path)
    if expect_op is not None:
        assert expect_op in interp.op_counts(), f"{expect_op} missing from {interp.op_counts()}"
    feeds = dict(zip(interp.input_names, inputs))
    out = interp.predict(feeds, **predict_kwargs)
    return [out[name] for name in interp.output_names], interp


def check_case(tmp_path, op_type, fn, inputs, ref_fn, *, atol, ref_in_float64=True):
    """The table-driven per-op check: ``op_type`` survives in fn(*inputs) and the interpreter's
    output matches ``ref_fn`` (on float64 copies of the inputs unless told) in shape and value."""
    (out,), _ = run(tmp_path, fn, inputs, expect_op=op_type)
    ref = ref_fn(*[x.astype(np.float64) if ref_in_float64 else x for x in inputs])
    assert out.shape == np.shape(ref)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=atol)


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


def ref_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
