"""PyTorch image classifier -> ExecuTorch .pte (XNNPACK delegate), float32 or PT2E int8, with metadata.

Input convention of the produced program (the TFLite target's, :mod:`vitdeploy.targets.tflite`)
---------------------------------------------------------------------------------------------
* Default (``raw_input=False``): one input ``[1, H, W, 3]`` float32 of **RGB pixels 0..255** (NHWC);
  the source's preprocessing (BGR flip, scale, mean/std) is one 1x1 convolution inside the graph.
* ``raw_input=True``: ``[1, 3, H, W]`` float32 already preprocessed as the checkpoint expects (NCHW).

Batch 1 (phones classify one frame at a time); runners loop over a batch. The metadata (input spec,
preprocessing, labels, precision, source checksum, variant, vitdeploy version) is a constant method in
the program (:mod:`vitdeploy.formats.executorch`), so the artifact is one file, written atomically.

``w8a8``: :func:`vitdeploy.quantization.executorch.quantize_int8` (PT2E, XNNPACK quantizer, small float
fallback search), then the lowered program itself is judged on the held-out images against the float
module: below the worst-image cosine target (0.99, TFLite's) it is written to ``<stem>.below-target.pte``.
Heavy libraries (torch, executorch, torchao) are imported lazily.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .contract import (MIN_COSINE, Conversion, ConvertRequest, accuracy_record, check_image_arguments,
                       missed_target_line, publish, request_from, stored_quantize)
from .image_input import image_hw, logits_module, model_inputs_from_pixels, pixel_input_module, pixel_input_spec
from ..diagnostics import converter_errors, describe, quiet
from ..errors import ConversionError, VitdeployError
from ..formats import FORMATS, LAYOUT_PIXELS, LAYOUT_RAW
from ..formats.executorch import constant_methods, with_metadata_in_place
from ..preprocessing import Preprocessing
from ..quantization.calibration import natural_images_hw, split_calibration
from ..verdict import KEY as ACCURACY_TARGET, target_record

DELEGATES = ("xnnpack", "coreml")


@dataclass
class ExecuTorchConversion(Conversion):
    """What :func:`convert` produced (JSON-able through :meth:`to_dict`)."""

    path: Path
    size_bytes: int
    seconds: float
    quantize: str
    precision: str
    delegate: str
    accuracy_target_met: bool
    input: dict
    rewrites: dict = field(default_factory=dict)  # XNNPACK rewrites (vitdeploy.passes.xnnpack): name -> count
    quant_report: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def convert(model, request: ConvertRequest) -> ExecuTorchConversion:
    """``model`` (NCHW float -> logits, BatchNorm already folded) as .pte bytes, judged when w8a8 (the contract:
    :mod:`vitdeploy.targets.contract`; :func:`~vitdeploy.targets.contract.publish` writes it).

    ``request.calib``: uint8 NHWC RGB pixels for int8 (default: built-in natural images), split into calibration
    and judging images by :func:`vitdeploy.quantization.calibration.split_calibration`. Options: ``delegate``
    (xnnpack, coreml); ``search`` (default True): whether int8 may try keeping modules in float when full int8
    misses the target.
    """
    delegate, pre = request.option("delegate", "xnnpack"), request.preprocessing
    channels, height, width = _check_arguments(request.input_size, pre, request.precision, request.calib,
                                               request.labels, delegate)
    if request.out.suffix.lower() != FORMATS["executorch"].suffix:
        raise VitdeployError(f"{request.out}: an ExecuTorch program is written to a {FORMATS['executorch'].suffix} file")
    started = time.perf_counter()
    input_spec = pixel_input_spec(channels, height, width, pre, request.raw_input)
    model, rewrites, always_float = _for_delegate(model, delegate)
    wrapper = _wrapped(model, pre, request.raw_input)
    sample = model_inputs_from_pixels(natural_images_hw(1, height, width, seed=0), input_spec, pre)
    num_classes = _num_classes(wrapper, sample, request.labels)
    to_lower, quant_report, eval_inputs = wrapper, {}, None
    if request.precision.quantized:
        to_lower, quant_report, eval_inputs = _quantize(model, wrapper, sample, input_spec, request, always_float)
    config = _config(request, input_spec, num_classes, quant_report, delegate)
    request.say(f"lowering to ExecuTorch ({delegate})")
    program = _lower(to_lower, sample, delegate, config)
    warnings, met = _delegate_warnings(delegate), True
    if request.precision.quantized:
        program, met, missed = _judge(program, wrapper, eval_inputs, quant_report, config, request.say,
                                      relower=lambda updated: _lower(to_lower, sample, delegate, updated))
        warnings += missed
    return ExecuTorchConversion(path=request.out, size_bytes=len(program), seconds=time.perf_counter() - started,
                                quantize=stored_quantize(request.precision), precision=request.precision.name,
                                delegate=delegate, accuracy_target_met=met, input=input_spec, rewrites=rewrites,
                                quant_report=quant_report, warnings=warnings, artifact=program)


def convert_executorch(model, *, input_size: tuple[int, int, int], preprocessing: Preprocessing, out: Path,
                       quantize: str = "fp32", calib: np.ndarray | None = None, labels: list[str] | None = None,
                       raw_input: bool = False, metadata: dict | None = None, delegate: str = "xnnpack",
                       search: bool = True, progress: Callable[[str], None] | None = None) -> ExecuTorchConversion:
    """:func:`convert` and :func:`~vitdeploy.targets.contract.publish` in one call (the earlier spelling): the
    program at ``out``, or at ``<out stem>.below-target.pte`` when w8a8 missed the accuracy target."""
    request = request_from("executorch", input_size=input_size, preprocessing=preprocessing, out=out, quantize=quantize,
                           calib=calib, labels=labels, raw_input=raw_input, metadata=metadata, delegate=delegate,
                           search=search, progress=progress)
    return publish(convert(model, request), request.out, progress)


def _for_delegate(model, delegate: str) -> tuple[object, dict, tuple[str, ...]]:
    """(model, XNNPACK rewrites made, module classes int8 must leave float). For XNNPACK, on a copy: a no-op
    when convert already ran passes.PIPELINES["executorch"]."""
    if delegate != "xnnpack":
        return model, {}, ()
    import copy

    from ..passes.xnnpack import layernorm_as_linear, layernorm_class_name

    model = copy.deepcopy(model)
    rewrites = {"layernorm_as_linear": layernorm_as_linear(model)}
    # int8 reductions would quantize the variance: the LayerNorms stay float (XNNPACK runs them in fp32).
    if any(f"{type(m).__module__}.{type(m).__qualname__}" == layernorm_class_name() for m in model.modules()):
        return model, rewrites, (layernorm_class_name(),)
    return model, rewrites, ()


def _quantize(model, wrapper, sample: np.ndarray, input_spec: dict, request: ConvertRequest,
              always_float: tuple[str, ...]) -> tuple[object, dict, np.ndarray]:
    """(the PT2E int8 module to lower, its report, the held-out inputs that judge it)."""
    from ..quantization.executorch import quantize_int8

    pre = request.preprocessing
    height, width = image_hw(input_spec)
    calib_pixels, heldout_pixels, source = split_calibration(request.calib, height, width)
    eval_inputs = model_inputs_from_pixels(heldout_pixels, input_spec, pre)
    # Pixel input: the preprocessing conv stays out of int8 (``quantized_under``; it was an extra int8
    # activation + int8 weights in front of the stem), and is folded into the stem's first conv when that
    # is exact (no mean shift: MobileViT). Worst held-out cosine of the w8a8 .pte vs float, trained
    # references, before -> after: LeViT-128S 0.9964 -> 0.9995 (float conv, not foldable); MobileViT-XXS
    # 0.9856 -> 0.9888 folded (search keeps the stem float; unfolded: 0.9840). Held-out top-1 drop
    # unchanged (0.91 / 0.45 points); latency unchanged (30 interleaved rounds, 2 threads: LeViT 1.93 ->
    # 1.89 ms, MobileViT 5.40 -> 5.28 ms).
    folded = None if request.raw_input else _folded_pixel_module(model, pre, wrapper, sample)
    request.say(f"quantizing (w8a8, PT2E) on {len(calib_pixels)} images")
    module, report = quantize_int8(
        folded or wrapper, calib_inputs=model_inputs_from_pixels(calib_pixels, input_spec, pre),
        eval_inputs=eval_inputs, inner=model, min_cosine=MIN_COSINE, search=request.option("search", True),
        progress=request.say, calib_source=source, always_float=always_float,
        quantized_under="" if request.raw_input else "model")
    return module, report, eval_inputs


def _config(request: ConvertRequest, input_spec: dict, num_classes: int, quant_report: dict, delegate: str) -> dict:
    """The metadata method's content (:mod:`vitdeploy.formats.executorch`); w8a8 gets room for its verdict,
    measured on the lowered program and written in place (:func:`_judge`)."""
    config = {"input": input_spec, "preprocessing": request.preprocessing.to_dict(), "num_classes": num_classes,
              "quantize": stored_quantize(request.precision), "precision": request.precision.name, "delegate": delegate,
              "labels": list(request.labels) if request.labels else None,
              "float_modules": quant_report.get("float_modules", []),
              **{k: v for k, v in request.metadata.items() if k not in ("input", "labels", ACCURACY_TARGET)}}
    if request.precision.quantized:
        config[ACCURACY_TARGET] = dict(target_record("cosine_min", MIN_COSINE, 0.0, against=" " * 80),
                                       pending=" " * 40)
    return config


def _delegate_warnings(delegate: str) -> list[str]:
    if delegate != "coreml":
        return []
    from ..runtimes.executorch import backend_available

    if backend_available("CoreMLBackend"):
        return []
    return ["lowered to the Core ML delegate but not run: this host's ExecuTorch runtime has no "
            "CoreMLBackend (Apple devices only), so parity is unchecked here"]


def _judge(program: bytes, wrapper, eval_inputs: np.ndarray, quant_report: dict, config: dict,
           say: Callable[[str], None], relower: Callable[[dict], bytes]) -> tuple[bytes, bool, list[str]]:
    """(program with its verdict in its metadata, met, the miss's warning): the lowered w8a8 program itself
    against the float module on the held-out images."""
    import torch

    from ..quantization.executorch import score
    from ..runtimes.executorch import run_pte

    with torch.no_grad():
        reference = wrapper(torch.from_numpy(eval_inputs)).numpy()
    measured = score(run_pte(program, eval_inputs), reference)
    record = accuracy_record(measured["cosine_min"], len(eval_inputs))
    quant_report.update(target_met=record["met"], cosine_min_after=measured["cosine_min"],
                        cosine_after=measured["cosine_mean"], top1_agreement_after=measured["top1_agreement"])
    say(f"w8a8 .pte: worst-image cosine {measured['cosine_min']:.4f}, mean {measured['cosine_mean']:.4f} vs float")
    missed = [] if record["met"] else [missed_target_line(
        measured["cosine_min"], f" (tried: {', '.join(h['tried'] for h in quant_report['search'])})", "fp32")]
    updated = dict(config, **{ACCURACY_TARGET: record})
    return with_metadata_in_place(program, config, updated) or relower(updated), record["met"], missed


def _check_arguments(input_size, preprocessing, precision, calib, labels, delegate) -> tuple[int, int, int]:
    held = FORMATS["executorch"].precisions
    if precision.name not in held or precision.compute is not None:
        raise VitdeployError(f"unknown quantization '{precision.name}' for executorch; choose one of {', '.join(held)}")
    if delegate not in DELEGATES:
        raise VitdeployError(f"unknown delegate '{delegate}'; choose one of {', '.join(DELEGATES)}")
    if delegate == "coreml" and precision.quantized:
        raise VitdeployError("--delegate coreml takes fp32 only here (its int8 needs Core ML's own quantizer)")
    size = check_image_arguments(input_size, preprocessing, calib)
    if labels is not None and any("\n" in str(x) for x in labels):
        raise VitdeployError("labels must not contain newlines")
    return size


def _wrapped(model, preprocessing: Preprocessing, raw_input: bool):
    model.eval()
    return logits_module(model) if raw_input else pixel_input_module(model, preprocessing)


def _folded_pixel_module(model, preprocessing: Preprocessing, wrapper, sample: np.ndarray):
    """Pixel-input module whose stem's first conv takes the RGB pixels itself (:func:`passes.pixel_input.
    fold_pixel_affine`), or None when that is not exact; checked against ``wrapper`` on ``sample``."""
    import torch

    from ..passes.pixel_input import fold_pixel_affine

    inner = fold_pixel_affine(model, preprocessing)
    if inner is None:
        return None

    class FoldedPixelInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = logits_module(inner)

        def forward(self, image):
            return self.model(image.permute(0, 3, 1, 2))

    folded = FoldedPixelInput().eval()
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    with torch.no_grad():
        want, got = wrapper(x), folded(x)
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())):
        return None
    return folded


def _num_classes(wrapper, sample: np.ndarray, labels) -> int:
    import torch

    with torch.no_grad():
        y = wrapper(torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32)))
    if y.ndim != 2 or y.shape[0] != 1:
        raise ConversionError(f"the model returned shape {tuple(y.shape)}, expected (1, classes) logits")
    if labels is not None and len(labels) != y.shape[1]:
        raise VitdeployError(f"{len(labels)} labels given but the model has {y.shape[1]} classes")
    return int(y.shape[1])


def _lower(module, sample: np.ndarray, delegate: str, config: dict) -> bytes:
    """torch.export (batch 1) -> edge -> delegate partitions -> .pte bytes, with the metadata method."""
    import torch

    from ..passes import graph_pipeline

    partitioner = _partitioner(delegate)
    with quiet(), torch.no_grad():
        with converter_errors("ExecuTorch conversion", at="torch.export"):
            from executorch.exir import to_edge_transform_and_lower

            exported = torch.export.export(module, (torch.from_numpy(np.ascontiguousarray(sample)),))
        with converter_errors("ExecuTorch conversion", at=f"lowering to {delegate}"):
            edge = to_edge_transform_and_lower(exported, transform_passes=graph_pipeline("executorch-edge"),
                                               partitioner=[partitioner], constant_methods=constant_methods(config))
        with converter_errors("ExecuTorch conversion", at="serialization"):
            return bytes(edge.to_executorch().buffer)


def _partitioner(delegate: str):
    if delegate == "xnnpack":
        with quiet():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        return XnnpackPartitioner()
    try:
        with quiet(stdout=True):
            from executorch.backends.apple.coreml.partition import CoreMLPartitioner
    except Exception as e:  # ImportError, or coremltools failing to load its native parts
        raise VitdeployError(f"--delegate coreml is unavailable here: {describe(e)}") from None
    return CoreMLPartitioner()


__all__ = ["LAYOUT_PIXELS", "LAYOUT_RAW", "ExecuTorchConversion", "convert", "convert_executorch"]
