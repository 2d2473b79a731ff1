"""gather, gather_along_axis, gather_nd: mirrors coremltools mil/ops/defs/iOS15/scatter_gather.py (and iOS17's)."""

from __future__ import annotations

import numpy as np

from ..registry import register


def _wrap_indices(indices, size) -> np.ndarray:
    idx = np.asarray(indices).astype(np.int64)
    return np.where(idx < 0, idx + size, idx)


@register("gather")
def gather(a):
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


@register("gather_along_axis")
def gather_along_axis(a):
    x = np.asarray(a["x"])
    axis = int(a.scalar("axis", 0)) % x.ndim
    return np.take_along_axis(x, _wrap_indices(a["indices"], x.shape[axis]), axis=axis)


@register("gather_nd")
def gather_nd(a):
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
