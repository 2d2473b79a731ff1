"""select: mirrors coremltools mil/ops/defs/iOS15/control_flow.py (const is folded at load time; no loops or conds)."""

from __future__ import annotations

import numpy as np

from ..registry import register


@register("select")
def select(a):
    return np.where(np.asarray(a["cond"]).astype(bool), a["a"], a["b"])
