"""The classifier head of ct.ClassifierConfig: mirrors coremltools mil/ops/defs/iOS15/classify.py."""

from __future__ import annotations

import numpy as np

from ..registry import register
from ._utils import f32


@register("classify")
def classify(a):
    """(top label, {label: probability}) as Core ML's classifier outputs."""
    probs = np.ravel(f32(a["probabilities"]))
    classes = [c.item() if isinstance(c, np.generic) else c for c in list(a["classes"])]
    return classes[int(np.argmax(probs))], {c: float(p) for c, p in zip(classes, probs)}
