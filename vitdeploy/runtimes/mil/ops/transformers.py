"""scaled_dot_product_attention: mirrors coremltools mil/ops/defs/iOS18/transformers.py."""

from __future__ import annotations

import math

import numpy as np

from ..registry import register
from ._utils import f32


@register("scaled_dot_product_attention")
def scaled_dot_product_attention(a):
    q, k, v = f32(a["query"]), f32(a["key"]), f32(a["value"])
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / np.float32(math.sqrt(q.shape[-1]))
    if "attn_mask" in a:
        mask = np.asarray(a["attn_mask"])
        scores = np.where(mask, scores, -np.inf) if mask.dtype == np.bool_ else scores + f32(mask)
    scores = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    return np.matmul(scores / np.sum(scores, axis=-1, keepdims=True), v)
