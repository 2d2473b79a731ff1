"""One verdict per artifact: the accuracy target a converter judged it on, stored in the artifact itself.

A converter that can miss an accuracy target (TFLite and ExecuTorch w8a8, Core ML w8a8) writes the record
:func:`target_record` returns into the artifact's vitdeploy metadata under :data:`KEY`::

    "accuracy_target": {"met": false, "status": "below target", "metric": "cosine_min",
                        "threshold": 0.99, "measured": 0.9856, "against": "the float model, 24 held-out images"}

Everything downstream reads it through :func:`target_of` (the metadata is untrusted JSON: a malformed record
is ignored, never trusted as "met"), so ``inspect``, ``parity``, ``package``, the demo and ``build`` give
the same verdict: ``parity`` fails it (exit 1) naming the target it missed, ``package`` warns on it.
A leaf: formats, targets, parity and packaging import it, it imports nothing of theirs.
"""

from __future__ import annotations

import math

KEY = "accuracy_target"
STATUS_OK = "ok"
STATUS_BELOW_TARGET = "below target"
# What each metric means, for the one line that explains a verdict.
METRICS = {"cosine_min": "worst-image logits cosine", "cosine_mean": "mean logits cosine",
           "top1_agreement": "top-1 agreement"}


def target_record(metric: str, threshold: float, measured: float, *, against: str = "the float model") -> dict:
    """The record a converter stores: met when ``measured >= threshold`` (every metric here is a minimum)."""
    met = bool(measured >= threshold)
    return {"met": met, "status": STATUS_OK if met else STATUS_BELOW_TARGET, "metric": str(metric),
            "threshold": float(threshold), "measured": round(float(measured), 6), "against": str(against)}


def target_of(config) -> dict | None:
    """The well-formed target record in an artifact's vitdeploy metadata ``config``, or None."""
    record = config.get(KEY) if isinstance(config, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("met"), bool):
        return None
    try:
        threshold, measured = float(record["threshold"]), float(record["measured"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(threshold) and math.isfinite(measured)):
        return None
    met = record["met"] and measured >= threshold  # a record that contradicts itself is not a pass
    return {"met": met, "status": STATUS_OK if met else STATUS_BELOW_TARGET, "metric": str(record.get("metric", "?")),
            "threshold": threshold, "measured": measured, "against": str(record.get("against", "the float model"))}


def status_of(config) -> str | None:
    """``"ok"``, ``"below target"``, or None when the artifact records no target (float artifacts)."""
    record = target_of(config)
    return None if record is None else record["status"]


def describe(record: dict) -> str:
    """``below target: worst-image logits cosine 0.9856 < 0.99 (vs the float model, 24 held-out images)``."""
    what = METRICS.get(record["metric"], record["metric"])
    sign = ">=" if record["met"] else "<"
    return (f"{record['status']}: {what} {record['measured']:.6g} {sign} {record['threshold']:g} "
            f"(measured at conversion vs {record['against']})")
