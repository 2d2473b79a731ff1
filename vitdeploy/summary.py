"""What ``vitdeploy inspect`` says about every artifact format and checkpoint in the same words: input type,
precision, verdict (:mod:`vitdeploy.verdict`) and labels (count and the first few, or why there are none).

:func:`artifact_summary` reads an opened runner's vitdeploy metadata (``runner.config``), so a .tflite, a .pte
and an .mlpackage answer the same questions; :func:`checkpoint_summary` a loaded checkpoint (where its labels
came from: :func:`vitdeploy.checkpoints.load`'s labels rule).
"""

from __future__ import annotations

from .formats import LAYOUT_IMAGE, LAYOUT_PIXELS, LAYOUT_RAW
from .verdict import describe as describe_target, target_of

LABELS_SHOWN = 5  # the first few labels inspect prints


def labels_line(labels: list[str] | None, source: str | None = None, missing: str = "") -> str:
    """``22 (from labels.txt): 'a', 'b', 'c', 'd', 'e', ...`` or ``none`` and what to do about it."""
    if not labels:
        return "none" + (f" ({missing})" if missing else "")
    head = ", ".join(repr(str(label)) for label in labels[:LABELS_SHOWN])
    more = ", ..." if len(labels) > LABELS_SHOWN else ""
    return f"{len(labels)}{f' (from {source})' if source else ''}: {head}{more}"


def input_line(spec: dict | None) -> str:
    """The input an app must feed, in words."""
    spec = spec or {}
    shape, dtype = spec.get("shape"), spec.get("dtype")
    dims = f"{list(shape)} {dtype}" if shape else str(dtype or "?")
    layout = spec.get("layout")
    if layout == LAYOUT_PIXELS:
        return f"RGB pixels 0..255, {dims} (NHWC; preprocessing inside the model)"
    if layout == LAYOUT_IMAGE:
        size = f"{shape[-1]}x{shape[-2]}" if shape and len(shape) == 4 else "?"
        color = spec.get("color_layout") or spec.get("channel_order") or "RGB"
        return f"image {size} {color} (CVPixelBuffer; preprocessing inside the model)"
    if layout == LAYOUT_RAW:
        return f"preprocessed floats, {dims} (NCHW; the app applies the preprocessing below)"
    return dims


def artifact_summary(runner) -> dict[str, str]:
    """Rows ``inspect`` adds for an artifact: input, precision, status, labels."""
    config = getattr(runner, "config", None) or {}
    spec = getattr(runner, "input_spec", None) or config.get("input")
    record = target_of(config)
    if record is not None:
        status = describe_target(record)
    elif config.get("quantize") in (None, "none") and config:
        status = "ok (float: no accuracy target to miss; `vitdeploy parity` checks it against its checkpoint)"
    else:
        status = "unknown (no verdict recorded: converted before verdicts were stored, or not by vitdeploy)"
    return {"input type": input_line(spec), "precision": str(config.get("precision") or config.get("quantize") or "?"),
            "status": status,
            "labels": labels_line(getattr(runner, "labels", None), missing="the app will show class numbers; "
                                  "convert with --labels FILE")}


def checkpoint_summary(ckpt) -> dict[str, str]:
    """Rows ``inspect`` adds for a checkpoint: its labels and where they came from."""
    return {"labels": labels_line(ckpt.labels, getattr(ckpt, "labels_source", None),
                                  missing=getattr(ckpt, "labels_note", None) or
                                  "no labels.txt beside it: artifacts get none unless convert --labels FILE")}
