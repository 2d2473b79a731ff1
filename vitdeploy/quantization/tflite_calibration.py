"""Activation ranges of a float .tflite over calibration images, as ai-edge-quantizer's QSVs (a leaf of
:mod:`vitdeploy.quantization.tflite`): every range statistic from one pass over the images, and the
input's true value range written over what calibration saw."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..diagnostics import describe, quiet
from ..errors import ConversionError


def _signature(model: bytes) -> tuple[str, str]:
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=bytes(model)).get_signature_list()
    if len(signatures) != 1:
        raise ConversionError(f"int8 calibration needs one signature, the model has {list(signatures)}")
    key, sig = next(iter(signatures.items()))
    if len(sig["inputs"]) != 1:
        raise ConversionError(f"int8 calibration needs one input, signature '{key}' has {sig['inputs']}")
    return key, sig["inputs"][0]


def _calibrate(float_model: bytes, calib_inputs: np.ndarray, threads: int, statistic: str) -> dict:
    """Activation ranges over the calibration set, one statistic (see :func:`_calibrate_all`)."""
    return _calibrate_all(float_model, calib_inputs, threads, (statistic,))[statistic]


def _calibrate_all(float_model: bytes, calib_inputs: np.ndarray, threads: int,
                   statistics: tuple[str, ...] = ("moving_average", "min_max")) -> dict[str, dict]:
    """Activation ranges over the calibration set for each of ``statistics``, from one pass over the images.

    ``moving_average`` (the quantizer's default: trims rare peaks) or ``min_max`` (the full range:
    nothing seen in calibration clips). Which is better depends on the model, so :func:`quantize_int8`
    measures both. The quantizer's Calibrator takes one update rule; each image's per-tensor min/max
    are folded by every rule at once (:func:`_tee_updates`), so the model runs once, not once per
    statistic (12.8 s per pass for MobileViT-XXS on 32 images, 2 cores).
    """
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    rules = {"min_max": qsv_utils.min_max_update, "moving_average": qsv_utils.moving_average_update}
    key, input_name = _signature(float_model)
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    samples = [{input_name: np.asarray(x[None], dtype=np.float32)} for x in calib_inputs]
    try:
        with quiet():
            # Quantizer.calibrate() has no way to choose the statistic; its Calibrator does.
            calib = calibrator.Calibrator(bytearray(float_model), num_threads=threads,
                                          qsv_update_func=_tee_updates({st: rules[st] for st in statistics}))
            calib.calibrate({key: samples}, manager)
            return _untee(calib.get_model_qsvs(), statistics)
    except Exception as e:
        raise ConversionError(f"int8 calibration failed: {describe(e)}") from e


def _tee_updates(rules: dict[str, Callable]) -> Callable[[dict, dict], dict]:
    """One QSV update that keeps a running ``{"min", "max"}`` per rule under ``by_rule``; a tensor's first
    image (stored as is by the Calibrator) seeds every rule, as each rule alone would."""
    def update(old: dict, new: dict) -> dict:
        kept = old.get("by_rule") or {name: {"min": old["min"], "max": old["max"]} for name in rules}
        return {"min": new["min"], "max": new["max"],
                "by_rule": {name: rule(kept[name], new) for name, rule in rules.items()}}
    return update


def _untee(qsvs: dict, statistics: tuple[str, ...]) -> dict[str, dict]:
    out: dict[str, dict] = {st: {} for st in statistics}
    for tensor, qsv in qsvs.items():
        for st in statistics:
            picked = qsv.get("by_rule", {}).get(st, qsv)  # seen on one image only: that image's min/max
            out[st][tensor] = {**{k: v for k, v in qsv.items() if k != "by_rule"},
                               "min": picked["min"], "max": picked["max"]}
    return out


def _set_input_range(qsvs: dict, float_model: bytes, low: float, high: float) -> None:
    """Write the input's true range ``[low, high]`` over what calibration saw, and carry it exactly through a
    pixel-normalizing first op (:func:`_exact_ranges_after_input`)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(float_model))
    name = interpreter.get_input_details()[0]["name"]
    if name in qsvs:
        qsvs[name] = {**qsvs[name], "min": np.full_like(qsvs[name]["min"], low),
                      "max": np.full_like(qsvs[name]["max"], high)}
    for tensor, (lo, hi) in _exact_ranges_after_input(interpreter, low, high).items():
        if tensor in qsvs:
            qsvs[tensor] = {**qsvs[tensor], "min": np.full_like(qsvs[tensor]["min"], lo),
                            "max": np.full_like(qsvs[tensor]["max"], hi)}


# Ops that only move or pad values: the range of their output is the range of their input (and 0 for a PAD).
_PASS_THROUGH = {"PAD", "PADV2", "RESHAPE", "TRANSPOSE"}


def _exact_ranges_after_input(interpreter, low: float, high: float) -> dict[str, tuple[float, float]]:
    """{tensor name: exact (min, max)} for the output of a 1x1 CONV_2D that alone reads the graph input (the
    pixel-input module's channel order + scale + mean/std, :func:`vitdeploy.targets.image_input.pixel_input_module`)
    and for the pass-through ops that alone follow it.

    Its output is an affine image of the pixels, whose range is known without calibration; the quantizer's
    default statistic (a moving average of per-image min/max) trims it instead: trained MobileViT-XXS, the
    normalized image 0..1 got the int8 range 0.049..0.952, so every bright and dark pixel clipped before the
    stem. Written exactly, its worst held-out cosine went 0.9666 -> 0.9861 (docs/int8-goals.md, "Pixel range").
    """
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the public API has no op list
    readers: dict[int, list[dict]] = {}
    for op in ops:
        for i in op["inputs"]:
            readers.setdefault(int(i), []).append(op)
    first = readers.get(int(interpreter.get_input_details()[0]["index"]), [])
    if len(first) != 1 or first[0]["op_name"] != "CONV_2D" or len(first[0]["inputs"]) < 2:
        return {}
    conv = first[0]
    try:
        interpreter.allocate_tensors()
        weight = np.asarray(interpreter.get_tensor(int(conv["inputs"][1])), dtype=np.float64)  # [out, kh, kw, in]
        bias = (np.asarray(interpreter.get_tensor(int(conv["inputs"][2])), dtype=np.float64)
                if len(conv["inputs"]) > 2 and int(conv["inputs"][2]) >= 0 else np.zeros(weight.shape[0]))
    except (ValueError, IndexError):  # weights computed at run time, not constants: not an affine we can read
        return {}
    if weight.ndim != 4 or weight.shape[1:3] != (1, 1):
        return {}
    w = weight.reshape(weight.shape[0], -1)
    lo = float(np.min(bias + np.minimum(w * low, w * high).sum(axis=1)))
    hi = float(np.max(bias + np.maximum(w * low, w * high).sum(axis=1)))
    out = int(conv["outputs"][0])
    ranges = {tensors[out]["name"]: (lo, hi)}
    while len(readers.get(out, [])) == 1 and readers[out][0]["op_name"] in _PASS_THROUGH:
        op = readers[out][0]
        if op["op_name"].startswith("PAD"):
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        out = int(op["outputs"][0])
        ranges[tensors[out]["name"]] = (lo, hi)
    return ranges
