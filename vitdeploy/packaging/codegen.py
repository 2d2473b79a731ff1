"""The generated app helpers: ``VitdeployClassifier.swift`` / ``.kt`` from ``vitdeploy/templates``."""

from __future__ import annotations

import json
import re
from importlib import resources

from ..errors import VitdeployError
from ..formats.executorch import COREML_BACKEND, RUNTIME_VERSION

SWIFT_HELPER = "VitdeployClassifier.swift"
KOTLIN_HELPER = "VitdeployClassifier.kt"
PACKAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")  # a Kotlin/Java package


def _template(name: str) -> str:
    return resources.files("vitdeploy").joinpath("templates", name).read_text(encoding="utf-8")


def _render(name: str, values: dict[str, str]) -> str:
    text = _template(name)
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise RuntimeError(f"template {name} has unfilled fields {sorted(set(left))}")
    return text


def _swift_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # JSON string escapes are valid Swift escapes


def _kotlin_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("$", "\\$")


def _crop_fraction(preprocessing: dict | None) -> float:
    """Share of the shorter side the centre crop keeps (``crop / resize``; 1.0 when unknown)."""
    if not preprocessing:
        return 1.0
    try:
        resize, crop = float(preprocessing["resize"]), float(preprocessing["crop"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    return min(1.0, crop / resize) if resize > 0 and crop > 0 else 1.0


def swift_helper(info: dict, *, model_name: str, labels_resource: str | None, top_k: int) -> str:
    """Source of ``VitdeployClassifier.swift`` for a model described by :func:`inspect_mlpackage`."""
    units = ".cpuAndGPU" if info.get("precision") == "fp32" else ".all"
    return _render("VitdeployClassifier.swift.tmpl", {
        "MODEL_NAME": _swift_string(model_name),
        "INPUT_NAME": _swift_string(info["input_name"]),
        "LOGITS_OUTPUT": _swift_string(info["logits_output"] or ""),
        "LABELS_RESOURCE": _swift_string(labels_resource) if labels_resource else "nil",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "CROP_FRACTION": repr(float(_crop_fraction(info.get("preprocessing")))),
        "COMPUTE_UNITS": units,
        "TOP_K": str(top_k),
        "IS_CLASSIFIER": "true" if info["classifier"] else "false",
    })


def kotlin_helper(info: dict, *, package_name: str, model_asset: str, labels_asset: str | None, top_k: int,
                  executorch: bool = False) -> str:
    """Source of ``VitdeployClassifier.kt`` for a model described by :func:`inspect_tflite`, or with
    ``executorch`` for a .pte described by :func:`inspect_pte` (ExecuTorch Module): same fields, two templates."""
    if not PACKAGE_NAME.match(package_name):
        raise VitdeployError(f"'{package_name}' is not a valid Kotlin package name")
    return _render("VitdeployPteClassifier.kt.tmpl" if executorch else "VitdeployClassifier.kt.tmpl", {
        "PACKAGE": package_name,
        "MODEL_ASSET": _kotlin_string(model_asset),
        "MODEL_ASSET_PLAIN": model_asset.replace("\n", " "),
        "EXECUTORCH_VERSION": RUNTIME_VERSION,
        "LABELS_ASSET": _kotlin_string(labels_asset) if labels_asset else "null",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "NUM_CLASSES": str(info["num_classes"]),
        "CROP_FRACTION": _float32_literal(_crop_fraction(info.get("preprocessing"))),
        "TOP_K": str(top_k),
    })


def _float32_literal(value: float) -> str:
    """Shortest Kotlin Float literal that round-trips (``0.8888889f``, not a double's 17 digits)."""
    import numpy as np

    text = np.format_float_positional(np.float32(value), unique=True, trim="0")
    return f"{text}f"


def labels_text(labels: list[str]) -> bytes:
    return ("\n".join(labels) + "\n").encode("utf-8")


def swift_pte_helper(info: dict, *, model_file: str, labels_resource: str | None, top_k: int) -> str:
    """Source of ``VitdeployClassifier.swift`` for a .pte described by :func:`inspect_pte` (ExecuTorch Module)."""
    return _render("VitdeployPteClassifier.swift.tmpl", {
        "MODEL_FILE": _swift_string(model_file),
        "MODEL_FILE_PLAIN": model_file.replace("\n", " "),
        "EXECUTORCH_VERSION": RUNTIME_VERSION,
        "COREML_PRODUCT": ", backend_coreml" if COREML_BACKEND in info["delegates"] else "",
        "LABELS_RESOURCE": _swift_string(labels_resource) if labels_resource else "nil",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "NUM_CLASSES": str(info["num_classes"]),
        "CROP_FRACTION": repr(float(_crop_fraction(info.get("preprocessing")))),
        "TOP_K": str(top_k),
    })
