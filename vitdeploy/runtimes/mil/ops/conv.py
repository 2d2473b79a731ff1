"""Convolution: mirrors coremltools mil/ops/defs/iOS15/conv.py (torch computes it; padding resolved MIL-style)."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._utils import f32, spatial_pads, torch, torch_pad_arg


@register("conv")
def conv(a):
    t = torch()
    F = t.nn.functional
    x = t.from_numpy(np.ascontiguousarray(f32(a["x"])))
    w = t.from_numpy(np.ascontiguousarray(f32(a["weight"])))
    n_spatial = w.dim() - 2
    strides = a.ints("strides", [1] * n_spatial)
    dilations = a.ints("dilations", [1] * n_spatial)
    pads = spatial_pads(a, list(x.shape[2:]), list(w.shape[2:]), strides, dilations)
    if all(before == after for before, after in pads):
        padding = [before for before, _ in pads]  # symmetric: let the conv pad, saving a copy
    else:
        x, padding = F.pad(x, torch_pad_arg(pads)), [0] * n_spatial
    bias = t.from_numpy(f32(a["bias"])) if "bias" in a else None
    conv_fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n_spatial]
    y = conv_fn(x, w, bias, stride=strides, padding=padding, dilation=dilations, groups=int(a.scalar("groups", 1)))
    return y.numpy()
