"""Core ML quantization of a converted ML Program: ``w8`` and ``w8a8``, both runnable on Linux.

* ``w8``: int8 weights, per output channel, symmetric
  (``coremltools.optimize.coreml.linear_quantize_weights``; ``constexpr_affine_dequantize`` ops
  that Core ML expands at load time; activations stay float).
* ``w8a8``: int8 activations too. coremltools' ``linear_quantize_activations`` calibrates by
  calling ``MLModel.predict`` on every intermediate tensor, which needs macOS. Here the calibration
  runs through vitdeploy's numpy MIL interpreter instead (:mod:`vitdeploy.runtimes.coreml_mil`,
  ``keep=True``), recording the min/max of every non-const value over the calibration images --
  the same statistic coremltools' debugger collects (but accumulated over all images: coremltools
  9.0's ``record_intermediate_output`` overwrites the range with each new sample). The ranges are
  then fed to coremltools' own graph passes, exactly as ``linear_quantize_activations`` runs them:

  1. ``compression::insert_prefix_quantize_dequantize_pair``: a quantize/dequantize pair in front
     of the non-const activation input(s) of every ``conv``, ``linear``, ``avg_pool``,
     ``max_pool`` and ``add`` (both inputs live);
  2. ``compression::insert_suffix_quantize_dequantize_pair``: a pair after those ops (and after a
     following relu/sigmoid-like activation) when their inputs were dequantized;
  3. ``common::dequantize_quantize_pair_elimination``: drop back-to-back dequantize -> quantize.

  Inputs and outputs of a ``concat`` share one range (coremltools'
  ``_adjust_concat_surrounding_activation_stats``). Then weights are quantized as in ``w8``.
  Activation quantization is per-tensor, symmetric int8; it needs iOS17 (``quantize``/``dequantize``).

Calibration images: ``calib`` (uint8 NHWC RGB pixels) or the built-in set: the first
:data:`N_CALIB` of ``natural_images(N_CALIB + N_HELDOUT, size, seed=0)``; the last
:data:`N_HELDOUT` images (random crops, never calibrated on) are kept for evaluation; with
``measure_heldout=True`` the report gives the w8a8 model's agreement with the float model on them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from ..errors import ConversionError, VitdeployError
from ..preprocessing import Preprocessing

N_CALIB = 32
N_HELDOUT = 16
CALIB_SEED = 0


def weight_config():
    """int8, symmetric, per output channel (the ``w8`` recipe)."""
    import coremltools.optimize.coreml as cto

    return cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"))


def activation_config():
    """int8, symmetric, per tensor: what coremltools' activation passes support."""
    import coremltools.optimize.coreml as cto

    return cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_tensor"))


def quantize_coreml(mlmodel, mode: str, *, input_name: str, preprocessing: Preprocessing,
                    input_size: tuple[int, int, int], raw_input: bool, calib: np.ndarray | None = None,
                    progress: Callable[[str], None] | None = None, measure_heldout: bool = False):
    """Quantize a converted ML Program; returns (new MLModel, JSON-able report).

    ``measure_heldout`` (built-in images only) adds the w8a8-vs-float agreement on the held-out
    images to the report; it costs two interpreter runs per held-out image.
    """
    say = progress or (lambda _msg: None)
    if mode == "w8":
        return quantize_weights(mlmodel), {"weights": "int8 per-channel symmetric", "activations": "float"}
    if mode != "w8a8":
        raise VitdeployError(f"unknown Core ML quantization '{mode}'; choose w8 or w8a8")
    _, height, width = input_size
    calib_pixels, heldout, source = _calibration_split(calib, height, width)
    feeds = [_feed(pixels, input_name, preprocessing, raw_input) for pixels in calib_pixels]
    say(f"calibrating activation ranges on {len(feeds)} images through the MIL interpreter")
    float_interp = _interpreter(mlmodel)
    stats = calibrate_activation_ranges(float_interp, feeds)
    _share_concat_ranges(mlmodel, stats)
    say("inserting quantize/dequantize pairs (coremltools activation passes)")
    a8 = insert_activation_quantization(mlmodel, stats)
    w8a8 = quantize_weights(a8)
    report = {
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor symmetric (min/max over calibration images)",
        "calibration_images": len(feeds),
        "calibration_source": source,
        "calibrated_tensors": len(stats),
    }
    report.update(_count_quant_ops(w8a8))
    if heldout is not None and measure_heldout:
        say(f"measuring w8a8 against the float model on {len(heldout)} held-out images")
        report.update(_heldout_agreement(float_interp, _interpreter(w8a8), heldout, input_name, preprocessing,
                                         raw_input))
    return w8a8, report


def quantize_weights(mlmodel):
    """int8 per-channel symmetric weights (works on Linux: no prediction involved)."""
    import coremltools.optimize.coreml as cto

    from ..targets.coreml import _converter_errors, _quiet

    with _quiet(), _converter_errors("weight quantization (linear_quantize_weights)"):
        return cto.linear_quantize_weights(mlmodel, config=weight_config())


# ----------------------------------------------------------------------------- calibration


def _calibration_split(calib, height: int, width: int):
    """(calibration pixels, held-out pixels or None, description of the source)."""
    if calib is not None:
        calib = np.asarray(calib, dtype=np.uint8)
        return calib, None, f"caller's {len(calib)} images"
    from ..targets.tflite import natural_images_hw

    builtin = natural_images_hw(N_CALIB + N_HELDOUT, height, width, seed=CALIB_SEED)
    return (builtin[:N_CALIB], builtin[N_CALIB:],
            f"built-in natural_images: first {N_CALIB} of {N_CALIB + N_HELDOUT} (seed {CALIB_SEED})")


def _feed(pixels: np.ndarray, input_name: str, pre: Preprocessing, raw_input: bool) -> dict:
    """One interpreter input: RGB pixels for image models, the preprocessed tensor for raw ones."""
    pixels = np.asarray(pixels, dtype=np.uint8)[None]
    if raw_input:
        return {input_name: pre.normalize(pixels)}
    return {input_name: pixels}


def _interpreter(mlmodel):
    from ..runtimes.coreml_mil import MILInterpreter
    from ..targets.coreml import load_program

    try:
        return MILInterpreter(mlmodel.get_spec(), load_program(mlmodel), str(getattr(mlmodel, "package_path", "")))
    except VitdeployError as e:
        raise ConversionError(f"w8a8 calibration needs the MIL interpreter, which cannot run this model: {e}") from e


def calibrate_activation_ranges(interp, feeds: list[dict]) -> dict[str, dict[str, float]]:
    """{value name: {"rmin", "rmax"}} over all feeds, for every input and non-const op output.

    Values are kept as the device holds them (fp16 emulation), like coremltools' predict-based
    calibration on the fp16 model.
    """
    stats: dict[str, dict[str, float]] = defaultdict(dict)
    for feed in feeds:
        for name, value in feed.items():
            _update_range(stats, name, np.asarray(value, dtype=np.float32))
        try:
            interp.predict(feed, keep=True)
        except VitdeployError as e:
            raise ConversionError(f"w8a8 calibration failed in the MIL interpreter: {e}") from e
        for name, value in interp.last_intermediates.items():
            if isinstance(value, np.ndarray) and value.size and np.issubdtype(value.dtype, np.floating):
                _update_range(stats, name, value)
        interp.last_intermediates = {}
    return dict(stats)


def _update_range(stats: dict, name: str, value: np.ndarray) -> None:
    low, high = float(np.min(value)), float(np.max(value))
    entry = stats[name]
    entry["rmin"] = min(low, entry.get("rmin", low))
    entry["rmax"] = max(high, entry.get("rmax", high))


def _share_concat_ranges(mlmodel, stats: dict) -> None:
    """Inputs and output of a concat get one common range (coremltools does the same)."""
    from coremltools.optimize.coreml.experimental._post_training_quantization import (
        _adjust_concat_surrounding_activation_stats,
    )

    from ..targets.coreml import load_program

    groups = []
    for op in load_program(mlmodel).functions["main"].operations:
        if op.op_type == "concat":
            groups.append([v.name for v in op.inputs["values"]] + [op.outputs[0].name])
    if groups:
        _adjust_concat_surrounding_activation_stats(groups, stats)


# ----------------------------------------------------------------------------- coremltools passes


def insert_activation_quantization(mlmodel, stats: dict):
    """Run coremltools' activation-quantization passes with precomputed ranges (no predict)."""
    from coremltools import _SPECIFICATION_VERSION_IOS_17
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models import utils as model_utils

    from ..targets.coreml import _converter_errors, _quiet

    config = activation_config()
    passes = []
    for name in ("compression::insert_prefix_quantize_dequantize_pair",
                 "compression::insert_suffix_quantize_dequantize_pair"):
        graph_pass = PASS_REGISTRY[name]
        graph_pass.set_options([PassOption("config", config)])
        graph_pass.set_options([PassOption("activation_stats", stats)])
        passes.append(graph_pass)
    passes.append(PASS_REGISTRY["common::dequantize_quantize_pair_elimination"])
    with _quiet(), _converter_errors("activation quantization passes"):
        return model_utils._apply_graph_pass(mlmodel, passes, spec_version=_SPECIFICATION_VERSION_IOS_17,
                                             pymil_load_func=milproto_load.load, skip_model_load=True)


def _count_quant_ops(mlmodel) -> dict:
    from ..targets.coreml import load_program

    ops = load_program(mlmodel).functions["main"].operations
    return {"quantize_ops": sum(op.op_type == "quantize" for op in ops),
            "dequantize_ops": sum(op.op_type == "dequantize" for op in ops)}


def _heldout_agreement(float_interp, quant_interp, heldout, input_name, pre, raw_input) -> dict:
    """Cosine and top-1 agreement of the w8a8 logits with the float model's, on held-out images."""
    from ..targets.coreml import LOGITS_OUTPUT

    ref, got = [], []
    for pixels in heldout:
        feed = _feed(pixels, input_name, pre, raw_input)
        ref.append(np.ravel(float_interp.predict(feed)[LOGITS_OUTPUT]).astype(np.float64))
        got.append(np.ravel(quant_interp.predict(feed)[LOGITS_OUTPUT]).astype(np.float64))
    ref, got = np.stack(ref), np.stack(got)
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1) + 1e-30)
    return {"heldout_images": len(heldout), "heldout_cosine_min": round(float(cos.min()), 6),
            "heldout_top1_agreement": round(float(np.mean(ref.argmax(1) == got.argmax(1))), 4)}
