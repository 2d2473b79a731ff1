"""PyTorch image classifier -> .tflite (LiteRT), optionally quantized, with metadata.

Input convention of the produced model
--------------------------------------
* Default (``raw_input=False``): one input ``[1, H, W, 3]`` float32 holding **RGB pixels in
  0..255** (NHWC, the layout of camera frames and of MediaPipe/LiteRT image tasks). The source's
  preprocessing -- channel flip for BGR checkpoints, ``scale``, mean/std -- runs inside the graph
  as one 1x1 convolution in front of the network, so apps feed pixels and nothing else.
* ``raw_input=True``: one input ``[1, 3, H, W]`` float32 that is already preprocessed exactly as
  the PyTorch checkpoint expects (NCHW); useful for parity checks against PyTorch.

Metadata stored in the file: :mod:`vitdeploy.formats.tflite`.

Heavy libraries (torch, litert_torch, ai_edge_litert, ai_edge_quantizer) are imported lazily.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .contract import (MIN_COSINE, Conversion, ConvertRequest, accuracy_record, check_image_arguments, publish,
                       request_from, stored_quantize)
from .image_input import image_hw, logits_module, model_inputs_from_pixels, pixel_input_module, pixel_input_spec
from ..diagnostics import converter_errors
from ..errors import ConversionError, VitdeployError
from ..formats import FORMATS, LAYOUT_PIXELS, LAYOUT_RAW
from ..formats.tflite import FP16_COMPUTE, REDUCED_PRECISION_KEY, add_metadata, set_reduced_precision
from ..preprocessing import Preprocessing
from ..quantization.calibration import natural_images_hw, split_calibration
from ..verdict import KEY as ACCURACY_TARGET

SUFFIX = FORMATS["tflite"].suffix

# LayerNorm -> Linear scale migration is tried when a LayerNorm's largest output channel is at least
# this many times its median one. Trained MobileViT-XXS here: at most 2.0 (median 1.57), and migration changed the worst-image cosine by +0.0002 (0.98709 -> 0.98731): not worth
# its ~40 s of extra calibration; the outlier-channel LayerNorms it is for reach 10x and more.
SMOOTH_MIN_SPREAD = 4.0


@dataclass
class TFLiteConversion(Conversion):
    """What :func:`convert` produced (JSON-able through :meth:`to_dict`)."""

    path: Path
    size_bytes: int
    seconds: float
    quantize: str
    precision: str  # canonical name (vitdeploy.precisions)
    accuracy_target_met: bool
    input: dict  # {"name", "shape", "dtype", "layout", "channel_order"}
    float_fallback_ops: list[str] = field(default_factory=list)
    quant_report: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def convert(model, request: ConvertRequest) -> TFLiteConversion:
    """``model`` (NCHW float -> logits) as .tflite bytes with metadata, judged when w8a8 (the contract:
    :mod:`vitdeploy.targets.contract`; :func:`~vitdeploy.targets.contract.publish` writes it).

    ``request.precision`` (:class:`vitdeploy.precisions.Precision`): ``fp32``, ``fp16`` (float16 weights),
    ``fp16-compute``, ``dynamic`` (int8 weights, float activations) or ``w8a8`` (full-integer static, calibrated on ``request.calib`` -- uint8 NHWC RGB pixels,
    default: built-in natural images -- with the ops that break accuracy kept float automatically,
    see :func:`vitdeploy.quantization.tflite.quantize_int8`). ``int8_io`` makes an int8 model take
    and return int8 tensors; otherwise every model keeps float input/output. ``int8_finetune``:
    that many steps of quantization-aware fine-tuning of the int8 graph on the calibration images
    (:func:`vitdeploy.quantization.pt2e.qat_int8`), written by litert-torch with the scales it trained
    with (int8 input/output) and judged against ``model``'s own float export. ``w8a16``: int8 weights and
    int16 activations, only when asked (no XNNPACK kernels: slow). An int8 model below the accuracy target
    has ``accuracy_target_met`` False, the measured alternatives in ``quant_report``.
    """
    channels, height, width = _check_request(request)
    started = time.perf_counter()
    input_spec = pixel_input_spec(channels, height, width, request.preprocessing, request.raw_input)
    with tempfile.TemporaryDirectory(prefix="vitdeploy-tflite-") as work:
        request.say("exporting the float model with litert-torch")
        float_model = _export_float(model, input_spec, request.preprocessing, Path(work) / f"float{SUFFIX}")
        num_classes = _check_float_model(float_model, input_spec, request.labels)
        final, quant_report = _quantized(model, float_model, input_spec, request, Path(work))
    warnings = quant_report.pop("warnings", [])
    int8_io = request.precision.activations == "int8" and (request.int8_io or bool(quant_report.get("int8_io")))  # PT2E: always
    if int8_io:
        input_spec = dict(input_spec, dtype="int8")
    request.say("writing metadata")
    config = _config(request, input_spec, num_classes, quant_report, int8_io)
    final = add_metadata(final, config=config, preprocessing=request.preprocessing, labels=request.labels,
                         name=str(request.metadata.get("name", "vitdeploy image classifier")))
    return TFLiteConversion(path=request.out, size_bytes=len(final), seconds=time.perf_counter() - started,
                            quantize=stored_quantize(request.precision), precision=request.precision.name,
                            accuracy_target_met=config.get(ACCURACY_TARGET, {}).get(
                                "met", quant_report.get("target_met", True)),
                            input=input_spec, float_fallback_ops=list(quant_report.get("float_fallback_ops", [])),
                            quant_report=quant_report, warnings=warnings, artifact=final)


def convert_tflite(model, *, input_size: tuple[int, int, int], preprocessing: Preprocessing, out: Path,
                   quantize: str = "fp32", calib: np.ndarray | None = None, labels: list[str] | None = None,
                   raw_input: bool = False, int8_io: bool = False, metadata: dict | None = None,
                   int8_finetune: int = 0, progress: Callable[[str], None] | None = None) -> TFLiteConversion:
    """:func:`convert` and :func:`~vitdeploy.targets.contract.publish` in one call (the earlier spelling): the
    file at ``out``, or at ``<out stem>.below-target.tflite`` when an int8 model missed the accuracy target."""
    request = request_from("tflite", input_size=input_size, preprocessing=preprocessing, out=out, quantize=quantize,
                           calib=calib, labels=labels, raw_input=raw_input, int8_io=int8_io, metadata=metadata,
                           int8_finetune=int8_finetune, progress=progress)
    return publish(convert(model, request), request.out, progress)


def _quantized(model, float_model: bytes, input_spec: dict, request: ConvertRequest, work: Path) -> tuple[bytes, dict]:
    """(the model at ``request.precision``, its quantization report); the float model itself for fp32."""
    if request.precision.weights == "fp32":
        return float_model, {}
    request.say(f"quantizing ({stored_quantize(request.precision)})")
    return _quantize(float_model, request.precision, input_spec, request.preprocessing, request.calib,
                     request.int8_io, request.say, finetune=(model, request.int8_finetune, work))


def _config(request: ConvertRequest, input_spec: dict, num_classes: int, quant_report: dict, int8_io: bool) -> dict:
    """The vitdeploy metadata the file carries (:mod:`vitdeploy.formats.tflite`), the w8a8 verdict included."""
    config = {
        "format": 1,
        "input": input_spec,
        "preprocessing": request.preprocessing.to_dict(),
        "num_classes": num_classes,
        "quantize": stored_quantize(request.precision),
        "precision": request.precision.name,
        "int8_io": bool(int8_io),
        "float_fallback_ops": list(quant_report.get("float_fallback_ops", [])),
        "activations": quant_report.get("activations"),
        "has_labels": bool(request.labels),
        "user": dict(request.metadata),
    }
    if "target_met" in quant_report and quant_report.get("cosine_min_after") is not None:  # verdict.KEY
        config[ACCURACY_TARGET] = accuracy_record(quant_report["cosine_min_after"], quant_report.get("eval_images", "?"),
                                                  threshold=quant_report["min_cosine"])
    return config


# ----------------------------------------------------------------------------- arguments


def _check_request(request: ConvertRequest) -> tuple[int, int, int]:
    size = _check_arguments(request.input_size, request.preprocessing, request.precision, request.int8_io,
                            request.calib, request.labels)
    _check_finetune(request.int8_finetune, request.precision)
    return size


def _check_finetune(steps, precision) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise VitdeployError(f"--int8-finetune takes a number of steps >= 0, not {steps!r}")
    if steps and precision.activations != "int8":
        raise VitdeployError("--int8-finetune needs --quantize w8a8")


def _check_arguments(input_size, preprocessing, precision, int8_io, calib, labels) -> tuple[int, int, int]:
    if precision.name not in FORMATS["tflite"].precisions or precision.compute is not None:
        raise VitdeployError(f"unknown quantization '{precision.name}'; choose one of "
                             f"{', '.join(FORMATS['tflite'].precisions)}")
    if int8_io and precision.activations != "int8":
        raise VitdeployError("int8 input/output needs --quantize w8a8")
    size = check_image_arguments(input_size, preprocessing, calib)
    if labels is not None and any("\n" in str(label) for label in labels):
        raise VitdeployError("labels must not contain newlines")
    return size




# ----------------------------------------------------------------------------- export






def _export_float(model, input_spec: dict, pre: Preprocessing, path: Path) -> bytes:
    """Trace and convert with litert-torch; returns the float .tflite bytes."""
    try:
        import litert_torch
        import torch
    except ImportError as e:
        raise VitdeployError(f"the TFLite target needs litert-torch: pip install 'vitdeploy[tflite]' ({e})") from None

    model.eval()
    if input_spec["layout"] == LAYOUT_RAW:
        wrapper = logits_module(model)
        sample = torch.from_numpy(pre.normalize(_sample_pixels(input_spec)))
    else:
        wrapper = pixel_input_module(model, pre)
        sample = torch.from_numpy(_sample_pixels(input_spec).astype(np.float32))
    with torch.no_grad(), _quiet_litert_torch():
        with converter_errors("TFLite conversion", at="torch.export/lowering"):
            edge_model = litert_torch.convert(wrapper.eval(), (sample,))
        with converter_errors("TFLite conversion", at="flatbuffer export"):
            edge_model.export(str(path))
    return path.read_bytes()


def _sample_pixels(input_spec: dict) -> np.ndarray:
    """One natural image (uint8 NHWC) of the model's size: a realistic trace input."""
    height, width = image_hw(input_spec)
    return natural_images_hw(1, height, width, seed=0)




@contextlib.contextmanager
def _quiet_litert_torch():
    """Silence litert-torch's own progress printing (we report through ``progress``)."""
    from litert_torch import config

    before = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    config.show_progress = False
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = before


def _check_float_model(model_bytes: bytes, input_spec: dict, labels: list[str] | None) -> int:
    """Check the converted signature matches what we promised; returns the number of classes."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model_bytes))
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or list(inputs[0]["shape"]) != input_spec["shape"]:
        raise ConversionError(f"TFLite conversion produced inputs {[list(i['shape']) for i in inputs]}, "
                              f"expected one {input_spec['shape']}")
    if len(outputs) != 1 or len(outputs[0]["shape"]) != 2:
        raise ConversionError(f"TFLite conversion produced outputs {[list(o['shape']) for o in outputs]}, "
                              "expected one (1, classes) logits tensor")
    num_classes = int(outputs[0]["shape"][1])
    if labels is not None and len(labels) != num_classes:
        raise VitdeployError(f"{len(labels)} labels given but the model has {num_classes} classes")
    return num_classes


# ----------------------------------------------------------------------------- quantization




def _quantize(float_model: bytes, precision, input_spec: dict, pre: Preprocessing, calib, int8_io: bool,
              say: Callable[[str], None], finetune: tuple = (None, 0, None)) -> tuple[bytes, dict]:
    from ..quantization import tflite as q

    if precision.weights == "fp16" and precision.activations == "fp32":
        return q.quantize_fp16(float_model), {"recipe": "weight-only float16 (float_casting)"}
    if precision.weights == "fp16":  # fp16 activations: the file asks XNNPACK for fp16 arithmetic where it can
        return (set_reduced_precision(q.quantize_fp16(float_model), FP16_COMPUTE),
                {"recipe": f"weight-only float16 + {REDUCED_PRECISION_KEY}={FP16_COMPUTE}"})
    if precision.activations == "dynamic":
        return q.quantize_dynamic(float_model), {"recipe": "dynamic_wi8_afp32"}
    height, width = image_hw(input_spec)
    calib_pixels, heldout_pixels, source = split_calibration(calib, height, width)
    input_range = (0.0, 255.0) if input_spec["layout"] == LAYOUT_PIXELS else None
    if precision.activations == "int16":
        return q.quantize_w8a16(float_model, calib_inputs=model_inputs_from_pixels(calib_pixels, input_spec, pre),
                                eval_inputs=model_inputs_from_pixels(heldout_pixels, input_spec, pre), progress=say,
                                input_range=input_range, calib_source=source)
    torch_model, steps, work = finetune
    if steps:
        return _pt2e_int8(torch_model, steps, float_model, calib_pixels, heldout_pixels, input_spec, pre, work,
                          say, input_range, source)
    equivalents, smoothing = {}, None
    if torch_model is not None:
        equivalents, smoothing = _smoothed_float(torch_model, calib_pixels, input_spec, pre, work, say)
    model, report = q.quantize_int8(
        float_model, equivalents=equivalents,
        calib_inputs=model_inputs_from_pixels(calib_pixels, input_spec, pre),
        eval_inputs=model_inputs_from_pixels(heldout_pixels, input_spec, pre),
        int8_io=int8_io, progress=say,
        input_range=input_range, calib_source=source,
    )
    if smoothing is not None:
        report["smoothing"] = {**smoothing, "kept": report["calibration"]["graph"] == "smoothed"}
    return model, report


def _smoothed_float(model, calib_pixels, input_spec: dict, pre: Preprocessing, work: Path,
                    say: Callable[[str], None]) -> tuple[dict, dict | None]:
    """The float model after LayerNorm -> Linear scale migration (same function, same graph), exported;
    ({}, None) for models without such pairs (LeViT)."""
    import copy

    from ..passes.smooth import layernorm_linear_pairs, smooth_layernorm_linear

    if not layernorm_linear_pairs(model):
        return {}, None
    smoothed = copy.deepcopy(model)
    report = smooth_layernorm_linear(smoothed, pre.normalize(calib_pixels))
    if report["max_channel_spread_before"] < SMOOTH_MIN_SPREAD:
        say(f"LayerNorm outputs have no outlier channels (largest/median <= {report['max_channel_spread_before']}): "
            "no scale migration")
        return {}, {**report, "tried": False}
    say(f"LayerNorm -> Linear scale migration on {report['pairs']} pairs (channel spread "
        f"{report['channel_spread_before']} -> {report['channel_spread_after']})")
    return {"smoothed": _export_float(smoothed, input_spec, pre, work / f"smoothed{SUFFIX}")}, {**report, "tried": True}


def _pt2e_int8(model, steps: int, float_model: bytes, calib_pixels, heldout_pixels, input_spec: dict,
               pre: Preprocessing, work: Path, say: Callable[[str], None], input_range, source: str,
               min_cosine: float = MIN_COSINE) -> tuple[bytes, dict]:
    """``--int8-finetune``: the int8 graph trained in PyTorch (:mod:`vitdeploy.quantization.pt2e`) and written
    by litert-torch with its own scales, judged as a file against the float export on the held-out images.
    Trained MobileViT-XXS: see docs/int8-goals.md, "Learned ranges through PT2E"."""
    import litert_torch
    import torch
    from litert_torch.quantize.quant_config import QuantConfig

    from ..quantization.pt2e import activation_scales, qat_int8
    from ..quantization.tflite_graph import float_op_counts, int16_op_counts
    from ..runtimes.tflite import run_tflite
    from ..similarity import logits_agreement

    wrapper = logits_module(model) if input_spec["layout"] == LAYOUT_RAW else pixel_input_module(model, pre)
    calib = model_inputs_from_pixels(calib_pixels, input_spec, pre)
    held = model_inputs_from_pixels(heldout_pixels, input_spec, pre)
    say(f"fine-tuning the int8 graph ({steps} steps on {len(calib_pixels)} images)")
    converted, quantizer, finetune = qat_int8(wrapper, calib_inputs=calib, eval_inputs=held, steps=steps,
                                              input_range=input_range, progress=say)
    say("writing the int8 graph with litert-torch (its own scales)")
    with torch.no_grad(), _quiet_litert_torch(), converter_errors("TFLite int8 conversion of the fine-tuned graph"):
        edge = litert_torch.convert(converted, (torch.from_numpy(held[:1]),),
                                    quant_config=QuantConfig(pt2e_quantizer=quantizer))
        edge.export(str(work / f"pt2e{SUFFIX}"))
    model_bytes = (work / f"pt2e{SUFFIX}").read_bytes()
    score = logits_agreement(run_tflite(model_bytes, held), run_tflite(float_model, held))
    met = score["cosine_min"] >= min_cosine
    floats = float_op_counts(model_bytes)
    report = {"recipe": finetune["recipe"], "precision": "w8a8", "activations": "int8", "target_met": met,
              "min_cosine": min_cosine, "calibration": {"images": len(calib), "source": source, "ranges": "histogram",
                                                        "graph": "pt2e"},
              "eval_images": len(held), "criterion": f"logits cosine vs float >= {min_cosine} on every held-out image",
              "cosine_after": score["cosine_mean"], "cosine_min_after": score["cosine_min"],
              "top1_agreement_after": score["top1_agreement"], "float_fallback_ops": sorted(floats),
              "float_op_counts": floats, "int16_op_counts": int16_op_counts(model_bytes), "int8_io": True,
              "finetune": {**finetune, "activation_scales": activation_scales(converted)}, "warnings": []}
    if not met:
        report["warnings"].append(f"int8 after {steps} fine-tuning steps: worst held-out logits cosine "
                                  f"{score['cosine_min']:.4f} < {min_cosine}; more steps or --calib images "
                                  "of your domain may help")
    return model_bytes, report


# ----------------------------------------------------------------------------- output