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

    The quantizer's profiler-based mode: the C++ runtime records each op's output min/max while XNNPACK runs
    the model, instead of Python copying every intermediate tensor out of an undelegated interpreter. The same
    tensors get ranges (695 on MobileViT-XXS, 332 on LeViT-128S), equal within 4e-7 relative (XNNPACK's float
    arithmetic vs the built-in kernels'); 8 images: 0.4 vs 2.3 s (MobileViT-XXS), 0.3 vs 0.9 s (LeViT-128S).
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
                                          mode=calibrator.CalibrationMode.CALIBRATION_PROFILER_BASED,
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
    from ai_edge_litert.interpreter import Interpreter

    name = Interpreter(model_content=bytes(float_model)).get_input_details()[0]["name"]
    if name in qsvs:
        qsvs[name] = {"min": np.full_like(qsvs[name]["min"], low), "max": np.full_like(qsvs[name]["max"], high)}
