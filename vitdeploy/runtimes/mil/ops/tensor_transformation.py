"""Tensor transformations: mirrors coremltools mil/ops/defs/iOS15/tensor_transformation.py (and iOS16/iOS17's)."""

from __future__ import annotations

import numpy as np

from ..registry import register


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


@register("reshape")
def reshape(a):
    x = np.asarray(a["x"])
    return x.reshape(_resolve_reshape(x.shape, a.ints("shape")))


@register("reshape_like")
def reshape_like(a):
    x = np.asarray(a["x"])
    refs, begins, ends = a["ref_tensors"], a.ints("begins"), a.ints("ends")
    end_masks = [bool(m) for m in np.ravel(a["end_masks"])]
    shape: list[int] = []
    for ref, begin, end, end_mask in zip(refs, begins, ends, end_masks):
        ref_shape = list(np.shape(ref))
        shape += ref_shape[begin:] if end_mask else ref_shape[begin:end]
    return x.reshape(shape)


@register("transpose")
def transpose(a):
    return np.transpose(a["x"], a.ints("perm"))


@register("expand_dims")
def expand_dims(a):
    x = np.asarray(a["x"])
    out_rank = x.ndim + len(a.ints("axes"))
    return np.expand_dims(x, tuple(ax % out_rank for ax in a.ints("axes")))


@register("squeeze")
def squeeze(a):
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(ax % x.ndim for ax in axes))


@register("reverse")
def reverse(a):
    x = np.asarray(a["x"])
    axes = a.ints("axes")
    return np.flip(x, axis=None if axes is None else tuple(axes))


@register("slice_by_index")
def slice_by_index(a):
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


@register("slice_by_size")
def slice_by_size(a):
    x = np.asarray(a["x"])
    begin, size = a.ints("begin"), a.ints("size")
    index = []
    for d, (b, s) in enumerate(zip(begin, size)):
        b = b % x.shape[d] if b < 0 else b
        index.append(slice(b, None if s == -1 else b + s))
    return x[tuple(index)]


@register("pixel_shuffle")
def pixel_shuffle(a):
    x = np.asarray(a["x"])
    r = int(a.scalar("upscale_factor"))
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (r * r), h * r, w * r)


@register("pixel_unshuffle")
def pixel_unshuffle(a):
    x = np.asarray(a["x"])
    r = int(a.scalar("downscale_factor"))
    n, c, h, w = x.shape
    return x.reshape(n, c, h // r, r, w // r, r).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h // r, w // r)
