"""Core ML quantization of a converted ML Program: ``w8`` and ``w8a8``, both runnable on Linux.

* ``w8``: int8 weights, per output channel, symmetric
  (``coremltools.optimize.coreml.linear_quantize_weights``; ``constexpr_affine_dequantize`` ops
  that Core ML expands at load time; activations stay float).
* ``w8a8``: int8 activations too. coremltools' ``linear_quantize_activations`` calibrates by
  calling ``MLModel.predict`` on every intermediate tensor, which needs macOS. Here the calibration
  runs through vitdeploy's numpy MIL interpreter instead (:mod:`vitdeploy.runtimes.mil`, an
  ``observe`` callback), recording the min/max of every non-const value over the calibration images --
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

  Two measured changes to that recipe (trained references, ``vitdeploy eval`` on the 220 images of
  ``references/heldout``; float = checkpoint):

  * Ranges: each tensor's symmetric clip level is the MSE-optimal one on values sampled during
    calibration (:func:`symmetric_mse_range`), not max|v|: after BatchNorm folding a few wide
    channels set max|v| and the rest get a handful of int8 levels.
  * Float prefix: the first k quantizable ops (program order; k from :data:`FLOAT_PREFIX_STEPS`)
    stay float, k the smallest whose activation-quantized logits keep a worst-image cosine >=
    :data:`TARGET_COSINE` with the float model on 8 calibration images. Per-op leave-one-out on
    MobileViT-XXS showed the error starts in the stem and the first MV2 blocks (leaving one of those
    float: +0.7..1.6 dB logits SQNR; any transformer op: ~0). MobileViT-XXS gets k=17 (the stem and
    the MV2 blocks before the first MobileViT block), LeViT-128S k=0 or 5.

  MobileViT-XXS: float 84.5 %; min/max 79.1 % (-5.5 pts); MSE ranges 80.9 %; asymmetric (``linear``)
  min/max 82.3 %; asymmetric + MSE 83.6 %; MSE + 5-op float prefix 84.1 %; MSE + the prefix this
  module picks (17 ops, worst calibration cosine >= 0.999) 85.0 % (+0.5 pts).  LeViT-128S: float 90.5 %;
  min/max 91.8 %; this module (5 ops) 90.5 %. On 440 photo-region crops calibrated on 64 training-region
  crops (bench/int8_goals.py): MobileViT-XXS -0.2 pts (k=17; the mean >= 0.99 rule picked k=5: -2.7),
  LeViT-128S +0.2 (k=0).
  Asymmetric activations were not kept: Apple recommends ``linear_symmetric`` for the Neural
  Engine's int8-int8 compute, and symmetric + float prefix did better.

Calibration images: ``calib`` (uint8 NHWC RGB pixels) or the built-in set, split into calibration and
held-out images by the policy every target shares (:mod:`vitdeploy.quantization.calibration`); with
``measure_heldout=True`` the report gives the w8a8 model's agreement with the float model on the held-out ones.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import numpy as np

from ..diagnostics import converter_errors, quiet
from ..errors import ConversionError, VitdeployError
from ..preprocessing import Preprocessing
from ..similarity import cosine_rows, logits_agreement
from .calibration import CALIB_SEED, split_calibration


# The op types coremltools' insert_prefix_quantize_dequantize_pair quantizes (coremltools 9.0).
QUANTIZED_OP_TYPES = ("conv", "linear", "avg_pool", "max_pool", "add")

# Activation ranges: MSE-optimal symmetric clipping (see the module docstring for the numbers).
# Values sampled per calibration image and tensor (plus its min and max) for the range search.
SAMPLES_PER_IMAGE = 4096
# Fractions of max|v| tried as the clip level: log-spaced down to 1 % (as vitdeploy.quantization.ranges).
CLIP_FRACTIONS = tuple(float(a) for a in np.geomspace(1.0, 0.01, 33))

# Float prefix: the first k quantizable ops (program order) stay float, k the first of these steps
# whose activation-quantized logits reach TARGET_COSINE (worst of SEARCH_FEEDS calibration images)
# against the float model. Why the worst image and 0.999: calibration images flatter the ranges fitted
# on them. MobileViT-XXS calibrated on 64 photo-region training crops (bench/int8_goals.py), worst
# calibration cosine -> held-out top-1 drop on 440 crops: k=0 0.803 -> 5.9 pts, k=5 0.989 -> 2.7 pts
# (its *mean*, 0.997, passed the earlier mean >= 0.99 rule), k=9 0.998 -> 1.1 pts, k=17 0.999 -> 0.2 pts.
# Built-in calibration: k=9 0.988, k=17 0.998. LeViT-128S: k=0 0.999 (photo crops) / 0.997 (built-in,
# k=5 0.9996).
FLOAT_PREFIX_STEPS = (0, 5, 9, 17)
TARGET_COSINE = 0.999
SEARCH_FEEDS = 8


def weight_config():
    """int8, symmetric, per output channel (the ``w8`` recipe)."""
    import coremltools.optimize.coreml as cto

    return cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"))


def activation_config(float_ops=()):
    """int8, symmetric, per tensor (Apple's recommended activation mode for the Neural Engine's
    int8-int8 compute); ops named in ``float_ops`` are left float (``op_name_configs`` None)."""
    import coremltools.optimize.coreml as cto

    return cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_tensor"),
        op_name_configs={name: None for name in float_ops})


def quantize_coreml(mlmodel, mode: str, *, input_name: str, preprocessing: Preprocessing,
                    input_size: tuple[int, int, int], raw_input: bool, calib: np.ndarray | None = None,
                    progress: Callable[[str], None] | None = None, measure_heldout: bool = False):
    """Quantize a converted ML Program; returns (new MLModel, JSON-able report).

    Which images calibrate and which are held out: :func:`vitdeploy.quantization.calibration.split_calibration`,
    as for TFLite. ``measure_heldout`` adds the w8a8-vs-float agreement on the held-out images to the
    report; it costs two interpreter runs per held-out image.
    """
    say = progress or (lambda _msg: None)
    if mode == "w8":
        return quantize_weights(mlmodel), {"weights": "int8 per-channel symmetric", "activations": "float"}
    if mode != "w8a8":
        raise VitdeployError(f"unknown Core ML quantization '{mode}'; choose w8 or w8a8")
    _, height, width = input_size
    calib_pixels, heldout, source = split_calibration(calib, height, width)  # the same policy as TFLite's
    feeds = [_feed(pixels, input_name, preprocessing, raw_input) for pixels in calib_pixels]
    say(f"calibrating activation ranges on {len(feeds)} images through the MIL interpreter")
    float_interp = _interpreter(mlmodel)
    samples: dict[str, list[np.ndarray]] = {}
    stats = calibrate_activation_ranges(float_interp, feeds, samples=samples,
                                        sample_names=quantizable_value_names(mlmodel))
    stats, clipped = mse_clipped_ranges(stats, samples)
    del samples
    _share_concat_ranges(mlmodel, stats)
    say("choosing the float prefix by measured logits cosine (coremltools activation passes)")
    search_feeds = feeds[::max(1, len(feeds) // SEARCH_FEEDS)][:SEARCH_FEEDS]
    a8, search = search_float_prefix(mlmodel, stats, float_interp, search_feeds)
    w8a8 = quantize_weights(a8)
    report = {
        "weights": "int8 per-channel symmetric",
        "activations": "int8 per-tensor symmetric (MSE-optimal clipping over calibration images)",
        "calibration_images": len(feeds),
        "calibration_source": source,
        "calibrated_tensors": len(stats),
        "clipped_tensors": clipped,
        "float_prefix": len(search["float_ops"]),
        "float_prefix_cosine": search["tried"][-1]["cosine_min"] if search["tried"] else None,
        "float_ops": search["float_ops"],
        "float_prefix_search": search["tried"],
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


    with quiet(), converter_errors("weight quantization (linear_quantize_weights)"):
        return cto.linear_quantize_weights(mlmodel, config=weight_config())


# ----------------------------------------------------------------------------- calibration


def _feed(pixels: np.ndarray, input_name: str, pre: Preprocessing, raw_input: bool) -> dict:
    """One interpreter input: RGB pixels for image models, the preprocessed tensor for raw ones."""
    pixels = np.asarray(pixels, dtype=np.uint8)[None]
    if raw_input:
        return {input_name: pre.normalize(pixels)}
    return {input_name: pixels}


def _interpreter(mlmodel):
    from ..formats.coreml import load_program
    from ..runtimes.mil import MILInterpreter

    try:
        return MILInterpreter(mlmodel.get_spec(), load_program(mlmodel), str(getattr(mlmodel, "package_path", "")))
    except VitdeployError as e:
        raise ConversionError(f"w8a8 calibration needs the MIL interpreter, which cannot run this model: {e}") from e


def calibrate_activation_ranges(interp, feeds: list[dict], samples: dict | None = None,
                                sample_names: set[str] | None = None, seed: int = CALIB_SEED) -> dict[str, dict[str, float]]:
    """{value name: {"rmin", "rmax"}} over all feeds, for every input and non-const op output.

    Values are kept as the device holds them (fp16 emulation), like coremltools' predict-based
    calibration on the fp16 model. With ``samples`` (a dict), a random sample of each value in
    ``sample_names`` (all when None), :data:`SAMPLES_PER_IMAGE` per feed plus its min and max, is
    appended there as float32 arrays (for :func:`mse_clipped_ranges`).
    """
    stats: dict[str, dict[str, float]] = defaultdict(dict)
    rng = np.random.default_rng(seed)

    def observe(name: str, value) -> None:
        if isinstance(value, np.ndarray) and value.size and np.issubdtype(value.dtype, np.floating):
            _update_range(stats, name, value)
            if samples is not None and (sample_names is None or name in sample_names):
                flat = value.astype(np.float32).ravel()
                if flat.size > SAMPLES_PER_IMAGE:
                    flat = np.concatenate([flat[rng.integers(0, flat.size, SAMPLES_PER_IMAGE)],
                                           [flat.min(), flat.max()]])
                samples.setdefault(name, []).append(flat)

    for feed in feeds:
        for name, value in feed.items():
            _update_range(stats, name, np.asarray(value, dtype=np.float32))
        try:
            interp.predict(feed, observe=observe)
        except VitdeployError as e:
            raise ConversionError(f"w8a8 calibration failed in the MIL interpreter: {e}") from e
    return dict(stats)


def quantizable_value_names(mlmodel) -> set[str]:
    """Values coremltools' passes may put a quantize op on: the non-const inputs and the output of
    every conv/linear/pool/add, and the outputs of the ops right after them (a fused activation)."""
    from ..formats.coreml import load_program

    names: set[str] = set()
    for op in load_program(mlmodel).functions["main"].operations:
        if op.op_type not in QUANTIZED_OP_TYPES:
            continue
        for key in ("x", "y"):
            var = op.inputs.get(key)
            if var is not None and getattr(var.op, "op_type", None) != "const":
                names.add(var.name)
        for out in op.outputs:
            names.add(out.name)
            for child in out.child_ops:
                names.update(v.name for v in child.outputs)
    return names


def symmetric_mse_range(values: np.ndarray) -> tuple[float, float]:
    """(clip level a, MSE gain over a = max|v|): the a among :data:`CLIP_FRACTIONS` of max|v| that
    minimises the mean squared error of symmetric int8 (scale a/127, codes -127..127, as
    coremltools' ``linear_symmetric``) quantize-dequantize of ``values``."""
    values = np.asarray(values, dtype=np.float32).ravel()
    a0 = float(np.max(np.abs(values))) if values.size else 0.0
    if a0 <= 0.0:
        return a0, 1.0

    def mse(a: float) -> float:
        step = a / 127.0
        return float(np.mean((np.clip(np.round(values / step), -127, 127) * step - values) ** 2))

    best = min((a0 * f for f in CLIP_FRACTIONS), key=mse)
    return best, mse(a0) / max(mse(best), 1e-30)


def mse_clipped_ranges(stats: dict, samples: dict) -> tuple[dict, int]:
    """``stats`` with each sampled value's range clipped to its :func:`symmetric_mse_range` (the
    symmetric scale is max(|rmin|, |rmax|) / 127, so only the ends beyond the level move); and how
    many ranges were clipped."""
    out = {name: dict(entry) for name, entry in stats.items()}
    clipped = 0
    for name, parts in samples.items():
        if name not in out:
            continue
        level, _gain = symmetric_mse_range(np.concatenate(parts))
        entry = out[name]
        if level < max(abs(entry["rmin"]), abs(entry["rmax"])):
            entry["rmin"], entry["rmax"] = max(entry["rmin"], -level), min(entry["rmax"], level)
            clipped += 1
    return out, clipped


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

    from ..formats.coreml import load_program

    groups = []
    for op in load_program(mlmodel).functions["main"].operations:
        if op.op_type == "concat":
            groups.append([v.name for v in op.inputs["values"]] + [op.outputs[0].name])
    if groups:
        _adjust_concat_surrounding_activation_stats(groups, stats)


# ----------------------------------------------------------------------------- coremltools passes


def quantized_op_names(mlmodel) -> list[str]:
    """Names of the ops the prefix pass can quantize (non-const ``x``), in program order."""
    from ..formats.coreml import load_program

    return [op.name for op in load_program(mlmodel).functions["main"].operations
            if op.op_type in QUANTIZED_OP_TYPES and getattr(op.inputs["x"].op, "op_type", None) != "const"]


def search_float_prefix(mlmodel, stats: dict, float_interp, feeds: list[dict]):
    """(activation-quantized model, {"float_ops", "tried"}): the shortest float prefix among
    :data:`FLOAT_PREFIX_STEPS` whose logits keep a worst-image cosine >= :data:`TARGET_COSINE` with the
    float model's on ``feeds``; the longest one tried when none does."""
    from ..formats.coreml import LOGITS_OUTPUT

    names = quantized_op_names(mlmodel)
    ref = [np.ravel(float_interp.predict(feed)[LOGITS_OUTPUT]).astype(np.float64) for feed in feeds]
    tried, model, k = [], None, 0
    for k in [k for k in FLOAT_PREFIX_STEPS if k <= len(names)]:
        model = insert_activation_quantization(mlmodel, stats, float_ops=names[:k])
        interp = _interpreter(model)
        got = [np.ravel(interp.predict(feed)[LOGITS_OUTPUT]) for feed in feeds]
        cos = cosine_rows(np.stack(ref), np.stack(got)).tolist() if feeds else []
        tried.append({"float_prefix": k, "cosine_mean": round(float(np.mean(cos)), 5) if cos else None,
                      "cosine_min": round(float(np.min(cos)), 5) if cos else None})
        if not cos or np.min(cos) >= TARGET_COSINE:
            break
    return model, {"float_ops": names[:k], "tried": tried}


def insert_activation_quantization(mlmodel, stats: dict, float_ops=()):
    """Run coremltools' activation-quantization passes with precomputed ranges (no predict).

    ``float_ops``: op names the prefix pass leaves alone (``op_name_configs`` set to None): their
    inputs are not quantized, and so neither is their output unless a following op quantizes it."""
    from coremltools import _SPECIFICATION_VERSION_IOS_17
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models import utils as model_utils


    # An op whose output is a model output that `classify` also reads (a labelled model's logits) stays float:
    # coremltools' suffix pass would otherwise try to remove it ("cannot delete op ... that's block's output"),
    # which failed every Core ML w8a8 conversion of a labelled model.
    config = activation_config((*float_ops, *_output_producers(mlmodel)))
    passes = []
    for name in ("compression::insert_prefix_quantize_dequantize_pair",
                 "compression::insert_suffix_quantize_dequantize_pair"):
        graph_pass = PASS_REGISTRY[name]
        graph_pass.set_options([PassOption("config", config)])
        graph_pass.set_options([PassOption("activation_stats", stats)])
        passes.append(graph_pass)
    passes.append(PASS_REGISTRY["common::dequantize_quantize_pair_elimination"])
    with quiet(), converter_errors("activation quantization passes"):
        return model_utils._apply_graph_pass(mlmodel, passes, spec_version=_SPECIFICATION_VERSION_IOS_17,
                                             pymil_load_func=milproto_load.load, skip_model_load=True)


def _output_producers(mlmodel) -> list[str]:
    """Names of the ops whose output is a model output that another op also reads (a classifier's logits, read by
    `classify`); an unlabelled model's logits have no reader and are not listed (its quantization is unchanged)."""
    from ..formats.coreml import load_program

    main = load_program(mlmodel).functions["main"]
    outputs = {id(v) for v in main.outputs}
    return [op.name for op in main.operations if any(id(v) in outputs and v.child_ops for v in op.outputs)]


def _count_quant_ops(mlmodel) -> dict:
    from ..formats.coreml import load_program

    ops = load_program(mlmodel).functions["main"].operations
    return {"quantize_ops": sum(op.op_type == "quantize" for op in ops),
            "dequantize_ops": sum(op.op_type == "dequantize" for op in ops)}


def _heldout_agreement(float_interp, quant_interp, heldout, input_name, pre, raw_input) -> dict:
    """Cosine and top-1 agreement of the w8a8 logits with the float model's, on held-out images."""
    from ..formats.coreml import LOGITS_OUTPUT

    ref, got = [], []
    for pixels in heldout:
        feed = _feed(pixels, input_name, pre, raw_input)
        ref.append(np.ravel(float_interp.predict(feed)[LOGITS_OUTPUT]).astype(np.float64))
        got.append(np.ravel(quant_interp.predict(feed)[LOGITS_OUTPUT]).astype(np.float64))
    score = logits_agreement(np.stack(got), np.stack(ref))
    return {"heldout_images": len(heldout), "heldout_cosine_min": score["cosine_min"],
            "heldout_top1_agreement": score["top1_agreement"]}
