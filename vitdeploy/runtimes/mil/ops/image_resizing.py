"""Resizing: mirrors coremltools mil/ops/defs/iOS15/image_resizing.py (upsample_*, resize_*)."""

from __future__ import annotations

import math

import numpy as np

from ..registry import register
from ._utils import f32


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


def _nearest(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    rows = np.minimum(np.floor(np.arange(out_h) * x.shape[-2] / out_h).astype(np.int64), x.shape[-2] - 1)
    cols = np.minimum(np.floor(np.arange(out_w) * x.shape[-1] / out_w).astype(np.int64), x.shape[-1] - 1)
    return np.take(np.take(x, rows, axis=x.ndim - 2), cols, axis=x.ndim - 1)


def _scaled_size(a, x) -> tuple[int, int]:
    # Sizes come from the program's type inference: recomputing floor(size * fp32 scale) here
    # could round differently.
    return a.out_spatial(
        int(math.floor(x.shape[-2] * float(a.scalar("scale_factor_height", 1)))),
        int(math.floor(x.shape[-1] * float(a.scalar("scale_factor_width", 1)))),
    )


@register("upsample_bilinear")
def upsample_bilinear(a):
    x = f32(a["x"])
    out_h, out_w = _scaled_size(a, x)
    align = bool(a.scalar("align_corners", True))
    half_pixel = bool(a.scalar("half_pixel_centers", not align))
    return _bilinear(x, out_h, out_w, _bilinear_mode(align, half_pixel))


@register("resize_bilinear")
def resize_bilinear(a):
    x = f32(a["x"])
    out_h, out_w = int(a.scalar("target_size_height", 1)), int(a.scalar("target_size_width", 1))
    return _bilinear(x, out_h, out_w, a.scalar("sampling_mode", "DEFAULT"))


@register("upsample_nearest_neighbor")
def upsample_nearest_neighbor(a):
    x = np.asarray(a["x"])
    out_h, out_w = _scaled_size(a, x)
    return _nearest(x, out_h, out_w)


@register("resize_nearest_neighbor")
def resize_nearest_neighbor(a):
    return _nearest(np.asarray(a["x"]), int(a.scalar("target_size_height")), int(a.scalar("target_size_width")))
