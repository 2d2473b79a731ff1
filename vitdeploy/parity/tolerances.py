"""Tolerance presets for the parity gate, chosen by the artifact's numeric precision.

Keys (``None`` = not checked). ``*_min`` keys fail when the measured value is below the threshold,
``*_max`` keys when it is above. Unprefixed keys are measured on the natural images (the gate);
``random_*`` keys on the seeded random tensors (reported, not gated unless set).

======================  ========  ========  ========  =================================================
key                     fp32      fp16      int8      meaning
======================  ========  ========  ========  =================================================
cosine_min              0.99999   0.999     0.99      worst per-image cosine of the logits
cosine_mean_min         --        --        --        mean per-image cosine
rel_l2_max              1e-3      0.03      0.15      ||got - ref|| / ||ref|| over the batch
max_abs_max             --        --        --        largest absolute logit error
mean_abs_max            --        --        --        mean absolute logit error
snr_db_min              --        --        --        signal-to-noise of the logits, dB
top1_min                1.0       0.95      0.90      fraction of images whose top-1 class agrees
top5_min                0.95      0.90      0.80      mean top-5 set overlap
random_cosine_min       --        --        --        same on the random tensors
random_rel_l2_max       --        --        --
random_max_abs_max      --        --        --
======================  ========  ========  ========  =================================================

Why these values: an fp32 artifact only reorders float32 arithmetic (fused ops, XNNPACK
kernels), which leaves ~1e-6 relative error on a 20-block network, so 1e-4 / cosine 0.99999 catch any
real mistake (a wrong layout or channel order, a missing bias, a bad constant) with a wide margin and
no false alarm. float16 keeps ~3 significant digits per op; through LeViT/MobileViT that gives
0.1-1 % logit error, so 3 % / cosine 0.999 pass a good fp16 model and fail a broken one; near-ties
between the two best classes may flip, hence 95 % top-1. int8 (static or dynamic-range
weights) costs a few percent of logit error on well-behaved models; 0.99 cosine and 90 % top-1
are the usual acceptance bar for a deployable int8 classifier. ``dynamic`` TFLite
(int8 weights, float activations) and Core ML ``w8`` use the int8 preset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import VitdeployError

PRESETS: dict[str, dict[str, float | None]] = {
    "fp32": {"cosine_min": 0.99999, "rel_l2_max": 1e-3, "top1_min": 1.0, "top5_min": 0.95},
    "fp16": {"cosine_min": 0.999, "rel_l2_max": 0.03, "top1_min": 0.95, "top5_min": 0.90},
    "fp16-compute": {"cosine_min": 0.999, "rel_l2_max": 0.03, "top1_min": 0.95, "top5_min": 0.90},
    "int8": {"cosine_min": 0.99, "rel_l2_max": 0.15, "top1_min": 0.90, "top5_min": 0.80},
}

# Every key a preset or an override may set, with the metric it reads and the input set.
KEYS: dict[str, tuple[str, str]] = {
    "cosine_min": ("natural", "cosine_min"),
    "cosine_mean_min": ("natural", "cosine_mean"),
    "rel_l2_max": ("natural", "rel_l2"),
    "max_abs_max": ("natural", "max_abs"),
    "mean_abs_max": ("natural", "mean_abs"),
    "snr_db_min": ("natural", "snr_db"),
    "top1_min": ("natural", "top1"),
    "top5_min": ("natural", "top5"),
    "random_cosine_min": ("random", "cosine_min"),
    "random_rel_l2_max": ("random", "rel_l2"),
    "random_max_abs_max": ("random", "max_abs"),
}


def resolve(precision: str, overrides: dict | None = None) -> dict[str, float | None]:
    """The preset for ``precision`` with ``overrides`` applied (``None`` in an override disables a check)."""
    if precision not in PRESETS:
        raise VitdeployError(f"unknown precision preset '{precision}'; choose one of {', '.join(PRESETS)}")
    tol: dict[str, float | None] = {key: None for key in KEYS}
    tol.update(PRESETS[precision])
    for key, value in (overrides or {}).items():
        if key not in KEYS:
            raise VitdeployError(f"unknown tolerance '{key}'; known: {', '.join(KEYS)}")
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise VitdeployError(f"tolerance {key} must be a number, got {value!r}") from None
            if math.isnan(value):
                raise VitdeployError(f"tolerance {key} must be a number, got NaN")
        tol[key] = value
    return tol


def parse_overrides(items: list[str] | tuple[str, ...]) -> dict[str, float | None]:
    """``["cosine_min=0.995", "top1_min=none"]`` (CLI form) -> dict."""
    out: dict[str, float | None] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise VitdeployError(f"tolerance '{item}' must look like KEY=VALUE (e.g. cosine_min=0.995)")
        value = value.strip()
        out[key] = None if value.lower() in ("none", "off", "") else value
    resolve("fp32", out)  # validates keys and numbers
    return {k: (None if v is None else float(v)) for k, v in out.items()}


@dataclass
class Failure:
    """One metric outside its tolerance."""

    metric: str  # the tolerance key, e.g. "cosine_min"
    inputs: str  # "natural" or "random"
    measured: float
    threshold: float
    direction: str  # "min" (measured must be >= threshold) or "max" (<=)

    @property
    def miss(self) -> float:
        """By how much the measured value missed (positive)."""
        if math.isinf(self.measured) or math.isnan(self.measured):
            return float("inf")
        return abs(self.measured - self.threshold)

    def describe(self) -> str:
        sign = ">=" if self.direction == "min" else "<="
        rel = ""
        if self.threshold and math.isfinite(self.miss) and self.measured > 0:
            if self.direction == "max":
                rel = f", {self.measured / self.threshold:.3g}x the limit"
            elif self.threshold > 0:
                rel = f", {self.miss / self.threshold:.2%} below"
        return (f"{self.metric}: measured {_fmt(self.measured)} on {self.inputs} inputs, needs {sign} "
                f"{_fmt(self.threshold)} (missed by {_fmt(self.miss)}{rel})")

    def to_dict(self) -> dict:
        return {"metric": self.metric, "inputs": self.inputs, "measured": self.measured,
                "threshold": self.threshold, "direction": self.direction, "miss": self.miss,
                "message": self.describe()}


def check(measured: dict[str, dict], tolerances: dict[str, float | None]) -> list[Failure]:
    """Failures of ``measured`` (``{"natural": compare(...), "random": compare(...)}``) against ``tolerances``."""
    failures = []
    for key, threshold in tolerances.items():
        if threshold is None:
            continue
        inputs, metric = KEYS[key]
        if inputs not in measured or measured[inputs] is None:
            continue
        if measured[inputs].get(metric) is None:  # not measurable (every output non-finite): reported apart
            continue
        value = float(measured[inputs][metric])
        direction = "min" if key.endswith("_min") else "max"
        bad = math.isnan(value) or (value < threshold if direction == "min" else value > threshold)
        if bad:
            failures.append(Failure(key, inputs, value, float(threshold), direction))
    return failures


def changes(precision: str, overrides: dict | None) -> list[dict]:
    """How ``overrides`` change the ``precision`` preset: ``{"key", "preset", "given", "change"}`` per key that
    differs, ``change`` one of loosened (a check made easier or turned off), tightened, added."""
    out = []
    preset = PRESETS.get(precision, {})
    for key, given in (overrides or {}).items():
        was = preset.get(key)
        if given == was:
            continue
        if was is None:
            change = "added"
        elif given is None:
            change = "loosened"
        else:
            change = "loosened" if (float(given) < was if key.endswith("_min") else float(given) > was) else "tightened"
        out.append({"key": key, "preset": was, "given": given, "change": change})
    return out


def describe_preset(precision: str, changed: list[dict]) -> str:
    """``preset int8, loosened: cosine_min 0.99 -> 0.98`` (the preset's name alone when nothing changed)."""
    parts = [f"preset {precision}"]
    for kind in ("loosened", "tightened", "added"):
        items = [f"{c['key']} {_fmt_opt(c['preset'])} -> {_fmt_opt(c['given'])}" for c in changed if c["change"] == kind]
        if items:
            parts.append(f"{kind}: {', '.join(items)}")
    return ", ".join(parts)


def _fmt_opt(v) -> str:
    return "off" if v is None else _fmt(float(v))


@dataclass
class BelowTarget(Failure):
    """The artifact's own verdict (:mod:`vitdeploy.verdict`): its converter measured it below its accuracy target."""

    against: str = ""

    @classmethod
    def of(cls, record: dict) -> "BelowTarget":
        return cls("accuracy_target", "conversion", float(record["measured"]), float(record["threshold"]), "min",
                   against=record.get("against", "the float model"))

    def describe(self) -> str:
        return (f"below target: its converter measured {self.measured:.6g} worst-image logits cosine vs "
                f"{self.against}, needs >= {_fmt(self.threshold)} (recorded in the artifact; convert wrote it aside "
                "as .below-target): use the float or another precision, or ship it knowingly with "
                "`vitdeploy package --allow-below-target`")

    def to_dict(self) -> dict:
        return dict(super().to_dict(), against=self.against)


@dataclass
class NonFinite(Failure):
    """Artifact outputs holding NaN or inf: a finding on its own, not a metric value (cosine -1, rel L2 inf)."""

    total: int = 0  # inputs run
    nan: int = 0  # of the non-finite inputs, those with a NaN (the rest hold only +-inf)
    first_layer: str | None = None  # the first value in the graph that was not finite, when found

    @classmethod
    def of(cls, count: dict, inputs: str = "natural", first_layer: str | None = None) -> "NonFinite":
        return cls("outputs_finite", inputs, float(count["count"]), 0.0, "max", total=int(count["of"]),
                   nan=int(count["nan"]), first_layer=first_layer)

    def describe(self) -> str:
        what = "NaN" if self.nan == self.measured else ("inf" if self.nan == 0 else "NaN and inf")
        where = f"; first non-finite value at {self.first_layer}" if self.first_layer else ""
        return (f"outputs not finite on {int(self.measured)} of {self.total} {self.inputs} inputs ({what}{where}; "
                "fp16 overflow is the usual cause: try fp32 compute precision)")

    def to_dict(self) -> dict:
        return dict(super().to_dict(), total=self.total, nan=self.nan, first_layer=self.first_layer)


def _fmt(v: float) -> str:
    if math.isinf(v) or math.isnan(v):
        return str(v)
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:.6g}"
    return f"{v:.3e}"
