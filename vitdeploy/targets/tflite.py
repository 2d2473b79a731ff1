"""PyTorch image classifier -> .tflite (LiteRT), optionally quantized, with metadata.

Input convention of the produced model
--------------------------------------
* Default (``raw_input=False``): one input ``[1, H, W, 3]`` float32 holding **RGB pixels in
  0..255** (NHWC, the layout of camera frames and of MediaPipe/LiteRT image tasks). The source's
  preprocessing -- channel flip for BGR checkpoints, ``scale``, mean/std -- runs inside the graph
  as one 1x1 convolution in front of the network, so apps feed pixels and nothing else.
* ``raw_input=True``: one input ``[1, 3, H, W]`` float32 that is already preprocessed exactly as
  the PyTorch checkpoint expects (NCHW); useful for parity checks against PyTorch.

Metadata stored in the file
---------------------------
* ``TFLITE_METADATA`` (the standard TFLite metadata flatbuffer, schema ``metadata_schema.fbs``,
  written here with the ``flatbuffers`` package; tflite-support is unmaintained and MediaPipe's
  writers pull in OpenCV/matplotlib). Input: ImageProperties(RGB) + NormalizationOptions;
  output: a ``labels.txt`` TENSOR_AXIS_LABELS file when labels are given, packed as a zip
  appended to the flatbuffer (the layout tflite-support and MediaPipe use).
  Because normalization already happens inside the graph, the pixel-input model declares
  **mean 0 / std 1** (pixels 0..255 pass through unchanged); declaring the checkpoint's real
  mean/std there would make MediaPipe normalize twice. Raw-input models declare the real
  mean/std in pixel units, but they are NCHW so image tasks cannot use them anyway.
* ``vitdeploy`` (a model-level ``Metadata`` entry holding UTF-8 JSON): input layout, shape, dtype,
  channel order, the full :class:`~vitdeploy.preprocessing.Preprocessing`, quantization mode and
  report, caller metadata. :class:`vitdeploy.runtimes.tflite.TFLiteRunner` reads it to turn a
  PyTorch-style preprocessed NCHW tensor back into what the model takes.

Heavy libraries (torch, litert_torch, ai_edge_litert, ai_edge_quantizer) are imported lazily.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import check_image_arguments
from ..errors import ConversionError, VitdeployError
from ..precisions import label
from ..preprocessing import Preprocessing

QUANTIZE_MODES = ("none", "fp16", "fp16-compute", "dynamic", "int8", "w8a16")  # internal keys; names: vitdeploy.precisions
BELOW_TARGET_SUFFIX = ".below-target"  # a w8a8 model that missed the accuracy target is written aside
LAYOUT_PIXELS = "NHWC-pixels"
LAYOUT_RAW = "NCHW-raw"
VITDEPLOY_METADATA = "vitdeploy"  # name of our JSON entry in Model.metadata
TFLITE_METADATA = "TFLITE_METADATA"  # name the TFLite metadata spec reserves
LABELS_FILE = "labels.txt"
METADATA_PARSER_VERSION = "1.0.0"  # we only use fields that exist since metadata schema 1.0.0
# Built-in image split: the first N_CALIB images calibrate int8, the rest only measure accuracy.
N_CALIB = 32
N_HELDOUT = 16
# LayerNorm -> Linear scale migration is tried when a LayerNorm's largest output channel is at least
# this many times its median one. Trained MobileViT-XXS here: at most 2.0 (median 1.57), and migration changed the worst-image cosine by +0.0002 (0.98709 -> 0.98731): not worth
# its ~40 s of extra calibration; the outlier-channel LayerNorms it is for reach 10x and more.
SMOOTH_MIN_SPREAD = 4.0
MIN_GIVEN_FOR_HELDOUT = 16  # --calib images: from this many on, a quarter are held out to judge int8


@dataclass
class TFLiteConversion:
    """What :func:`convert_tflite` produced (JSON-able through :meth:`to_dict`)."""

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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def convert_tflite(model, *, input_size: tuple[int, int, int], preprocessing: Preprocessing, out: Path,
                   quantize: str = "none", calib: np.ndarray | None = None, labels: list[str] | None = None,
                   raw_input: bool = False, int8_io: bool = False, metadata: dict | None = None,
                   int8_finetune: int = 0, progress: Callable[[str], None] | None = None) -> TFLiteConversion:
    """Convert ``model`` (NCHW float -> logits) to a .tflite file at ``out``.

    ``quantize``: ``none`` (float32), ``fp16`` (float16 weights), ``dynamic`` (int8 weights, float
    activations) or ``int8`` (full-integer static, calibrated on ``calib`` -- uint8 NHWC RGB pixels,
    default: built-in natural images -- with the ops that break accuracy kept float automatically,
    see :func:`vitdeploy.quantization.tflite.quantize_int8`). ``int8_io`` makes an int8 model take
    and return int8 tensors; otherwise every model keeps float input/output. ``int8_finetune``:
    that many steps of quantization-aware fine-tuning on the calibration images before int8
    (:func:`vitdeploy.quantization.finetune.finetune_for_int8`); the int8 model is still judged
    against ``model``'s own float export. ``w8a16``: int8 weights and int16 activations, only
    when asked (no XNNPACK kernels: slow).
    The file appears at ``out`` only when everything succeeded (written aside, then renamed). An
    int8 model below the accuracy target is written to ``<out stem>.below-target.tflite`` instead
    (``accuracy_target_met`` False, the measured alternatives in ``quant_report``), so nothing
    downstream picks it up as if it passed.
    """
    say = progress or (lambda _msg: None)
    out = Path(out)
    channels, height, width = _check_arguments(input_size, preprocessing, quantize, int8_io, calib, labels)
    _check_finetune(int8_finetune, quantize)
    started = time.perf_counter()
    warnings: list[str] = []
    input_spec = _input_spec(channels, height, width, preprocessing, raw_input)

    with tempfile.TemporaryDirectory(prefix="vitdeploy-tflite-") as work:
        say("exporting the float model with litert-torch")
        float_model = _export_float(model, input_spec, preprocessing, Path(work) / "float.tflite")
        num_classes = _check_float_model(float_model, input_spec, labels)

        quant_report: dict = {}
        float_fallback: list[str] = []
        if quantize == "none":
            final = float_model
        else:
            say(f"quantizing ({quantize})")
            final, quant_report = _quantize(float_model, quantize, input_spec, preprocessing, calib, int8_io, say,
                                            finetune=(model, int8_finetune, Path(work)))
            float_fallback = list(quant_report.get("float_fallback_ops", []))
            warnings += quant_report.pop("warnings", [])
        if quantize == "int8" and int8_io:
            input_spec = dict(input_spec, dtype="int8")

        say("writing metadata")
        config = {
            "format": 1,
            "input": input_spec,
            "preprocessing": preprocessing.to_dict(),
            "num_classes": num_classes,
            "quantize": quantize,
            "precision": label("tflite", quantize),
            "int8_io": bool(quantize == "int8" and int8_io),
            "float_fallback_ops": float_fallback,
            "activations": quant_report.get("activations"),
            "has_labels": bool(labels),
            "user": metadata or {},
        }
        final = add_metadata(final, config=config, preprocessing=preprocessing, labels=labels,
                             name=str((metadata or {}).get("name", "vitdeploy image classifier")))
    met = quant_report.get("target_met", True)
    if not met:
        out = out.with_name(out.stem + BELOW_TARGET_SUFFIX + out.suffix)
    _write_atomically(out, final)
    seconds = time.perf_counter() - started
    say(f"wrote {out} ({len(final) / 1e6:.1f} MB) in {seconds:.1f} s")
    return TFLiteConversion(path=out, size_bytes=out.stat().st_size, seconds=round(seconds, 2), quantize=quantize,
                            precision=label("tflite", quantize), accuracy_target_met=met, input=input_spec, float_fallback_ops=float_fallback, quant_report=quant_report,
                            warnings=warnings)


# ----------------------------------------------------------------------------- arguments


def _check_finetune(steps, quantize: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise VitdeployError(f"--int8-finetune takes a number of steps >= 0, not {steps!r}")
    if steps and quantize != "int8":
        raise VitdeployError("--int8-finetune needs --quantize w8a8")


def _check_arguments(input_size, preprocessing, quantize, int8_io, calib, labels) -> tuple[int, int, int]:
    if quantize not in QUANTIZE_MODES:
        raise VitdeployError(f"unknown quantization '{quantize}'; choose one of {', '.join(QUANTIZE_MODES)}")
    if int8_io and quantize != "int8":
        raise VitdeployError("int8 input/output needs --quantize w8a8")
    size = check_image_arguments(input_size, preprocessing, calib)
    if labels is not None and any("\n" in str(label) for label in labels):
        raise VitdeployError("labels must not contain newlines")
    return size


def _input_spec(channels: int, height: int, width: int, pre: Preprocessing, raw_input: bool) -> dict:
    if raw_input:
        return {"name": "pixel_values", "shape": [1, channels, height, width], "dtype": "float32",
                "layout": LAYOUT_RAW, "channel_order": pre.channel_order}
    # The pixel input is always RGB: the flip for BGR checkpoints is part of the graph.
    return {"name": "image", "shape": [1, height, width, channels], "dtype": "float32",
            "layout": LAYOUT_PIXELS, "channel_order": "RGB"}


# ----------------------------------------------------------------------------- export


def pixel_input_module(model, preprocessing: Preprocessing):
    """Wrap ``model`` so it takes ``[N, H, W, 3]`` RGB pixels (0..255) and returns logits.

    The channel flip (BGR checkpoints), ``scale`` and mean/std fold into one 1x1 convolution:
    a single op that every backend runs and that int8 quantizes exactly (pixels are integers).
    """
    import torch

    a, b = preprocessing.pixel_affine()
    # Output channel c (in the checkpoint's channel order) reads RGB input channel source[c].
    source = [2, 1, 0] if preprocessing.channel_order == "BGR" else [0, 1, 2]
    weight = torch.zeros(3, 3, 1, 1)
    for c, s in enumerate(source):
        weight[c, s, 0, 0] = float(a[c])
    bias = torch.tensor(b, dtype=torch.float32)

    class PixelInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = _logits_module(model)
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

        def forward(self, image):
            x = torch.nn.functional.conv2d(image.permute(0, 3, 1, 2), self.weight, self.bias)
            return self.model(x)

    return PixelInput().eval()


def _logits_module(model):
    """``model`` as a module returning a plain logits tensor (HF models return output objects)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            y = self.inner(x)
            if isinstance(y, torch.Tensor):
                return y
            if hasattr(y, "logits"):
                return y.logits
            if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
                return y[0]
            raise TypeError(f"the model returned {type(y).__name__}, not a logits tensor")

    return Logits().eval()


def _export_float(model, input_spec: dict, pre: Preprocessing, path: Path) -> bytes:
    """Trace and convert with litert-torch; returns the float .tflite bytes."""
    try:
        import litert_torch
        import torch
    except ImportError as e:
        raise VitdeployError(f"the TFLite target needs litert-torch: pip install 'vitdeploy[tflite]' ({e})") from None

    model.eval()
    if input_spec["layout"] == LAYOUT_RAW:
        wrapper = _logits_module(model)
        sample = torch.from_numpy(pre.normalize(_sample_pixels(input_spec)))
    else:
        wrapper = pixel_input_module(model, pre)
        sample = torch.from_numpy(_sample_pixels(input_spec).astype(np.float32))
    stage = "torch.export/lowering"
    try:
        with torch.no_grad(), _quiet_litert_torch():
            edge_model = litert_torch.convert(wrapper.eval(), (sample,))
            stage = "flatbuffer export"
            edge_model.export(str(path))
    except Exception as e:  # the converter raises many unrelated types; report stage + reason
        raise ConversionError(f"TFLite conversion failed at {stage}: {_one_line(e)}") from e
    return path.read_bytes()


def _sample_pixels(input_spec: dict) -> np.ndarray:
    """One natural image (uint8 NHWC) of the model's size: a realistic trace input."""
    height, width = _image_hw(input_spec)
    return natural_images_hw(1, height, width, seed=0)


def natural_images_hw(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """:func:`vitdeploy.sample_images.natural_images` for a possibly non-square size."""
    from ..sample_images import natural_images

    side = max(height, width)
    images = natural_images(n, side, seed)
    top, left = (side - height) // 2, (side - width) // 2
    return np.ascontiguousarray(images[:, top:top + height, left:left + width])


def _image_hw(input_spec: dict) -> tuple[int, int]:
    shape = input_spec["shape"]
    return (shape[1], shape[2]) if input_spec["layout"] == LAYOUT_PIXELS else (shape[2], shape[3])


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


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = next((line.strip() for line in text if line.strip()), "")
    return f"{type(e).__name__}: {first[:300]}" if first else type(e).__name__


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


def model_inputs_from_pixels(pixels: np.ndarray, input_spec: dict, pre: Preprocessing) -> np.ndarray:
    """uint8 RGB NHWC pixels -> the batch the converted (float-interface) model takes."""
    if input_spec["layout"] == LAYOUT_RAW:
        return pre.normalize(pixels)
    return np.asarray(pixels, dtype=np.float32)


def _quantize(float_model: bytes, mode: str, input_spec: dict, pre: Preprocessing, calib, int8_io: bool,
              say: Callable[[str], None], finetune: tuple = (None, 0, None)) -> tuple[bytes, dict]:
    from ..quantization import tflite as q

    if mode == "fp16":
        return q.quantize_fp16(float_model), {"recipe": "weight-only float16 (float_casting)"}
    if mode == "fp16-compute":  # the file asks XNNPACK for fp16 arithmetic where the CPU has it
        return (set_reduced_precision(q.quantize_fp16(float_model), FP16_COMPUTE),
                {"recipe": f"weight-only float16 + {REDUCED_PRECISION_KEY}={FP16_COMPUTE}"})
    if mode == "dynamic":
        return q.quantize_dynamic(float_model), {"recipe": "dynamic_wi8_afp32"}
    height, width = _image_hw(input_spec)
    calib_pixels, heldout_pixels, source = split_calibration(calib, height, width)
    input_range = (0.0, 255.0) if input_spec["layout"] == LAYOUT_PIXELS else None
    if mode == "w8a16":
        return q.quantize_w8a16(float_model, calib_inputs=model_inputs_from_pixels(calib_pixels, input_spec, pre),
                                eval_inputs=model_inputs_from_pixels(heldout_pixels, input_spec, pre), progress=say,
                                input_range=input_range, calib_source=source)
    torch_model, steps, work = finetune
    to_quantize, finetune_report, equivalents, smoothing = float_model, None, {}, None
    if steps:
        to_quantize, finetune_report = _finetuned_float(torch_model, steps, calib_pixels, heldout_pixels, input_spec,
                                                        pre, work, say)
    elif torch_model is not None:
        equivalents, smoothing = _smoothed_float(torch_model, calib_pixels, input_spec, pre, work, say)
    model, report = q.quantize_int8(
        to_quantize, reference_model=float_model if steps else None, equivalents=equivalents,
        calib_inputs=model_inputs_from_pixels(calib_pixels, input_spec, pre),
        eval_inputs=model_inputs_from_pixels(heldout_pixels, input_spec, pre),
        int8_io=int8_io, progress=say,
        input_range=input_range, calib_source=source,
    )
    if finetune_report is not None:
        report["finetune"] = finetune_report
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
    return {"smoothed": _export_float(smoothed, input_spec, pre, work / "smoothed.tflite")}, {**report, "tried": True}


def _finetuned_float(model, steps: int, calib_pixels, heldout_pixels, input_spec: dict, pre: Preprocessing,
                     work: Path, say: Callable[[str], None]) -> tuple[bytes, dict]:
    """Fine-tune ``model`` for int8 on the calibration images and export it as a float .tflite."""
    from ..quantization.finetune import finetune_for_int8

    say(f"fine-tuning for int8 ({steps} steps on {len(calib_pixels)} images)")
    tuned, report = finetune_for_int8(model, pre.normalize(calib_pixels), steps=steps,
                                      eval_images=pre.normalize(heldout_pixels), progress=say)
    return _export_float(tuned, input_spec, pre, work / "finetuned.tflite"), report


def split_calibration(calib, height: int, width: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(calibration pixels, held-out pixels the int8 search judges on, description).

    Built-in natural images by default. Given images (``--calib``) are the user's domain, so the
    search judges on them too: every fourth is held out (never calibrated on) when at least
    ``MIN_GIVEN_FOR_HELDOUT`` are given; with fewer, all calibrate and the built-in images judge.
    """
    given = None if calib is None else np.asarray(calib)
    if given is None or len(given) < MIN_GIVEN_FOR_HELDOUT:
        builtin = natural_images_hw(N_CALIB + N_HELDOUT, height, width, seed=0)
        if given is None:
            return builtin[:N_CALIB], builtin[N_CALIB:], "built-in natural images"
        return given, builtin[N_CALIB:], f"{len(given)} given images (judged on built-in natural images)"
    held = np.zeros(len(given), dtype=bool)
    held[3::4] = True
    return given[~held], given[held], f"{int((~held).sum())} given images ({int(held.sum())} more held out to judge)"


# ----------------------------------------------------------------------------- metadata


def add_metadata(model_bytes: bytes, *, config: dict, preprocessing: Preprocessing, labels: list[str] | None,
                 name: str = "vitdeploy image classifier") -> bytes:
    """Return ``model_bytes`` with TFLITE_METADATA, our ``vitdeploy`` JSON and a labels zip added."""
    entries = {
        TFLITE_METADATA: _model_metadata_flatbuffer(config, preprocessing, labels, name),
        VITDEPLOY_METADATA: json.dumps(config, sort_keys=True, default=str).encode(),
    }
    return _with_metadata_entries(model_bytes, entries, labels)


def _with_metadata_entries(model_bytes: bytes, entries: dict[str, bytes | None], labels: list[str] | None) -> bytes:
    """``model_bytes`` with each named Model.metadata entry replaced (None: removed), labels zip appended."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    kept = [m for m in (model.metadata or []) if _decode(m.name) not in entries]
    for key, blob in entries.items():
        if blob is None:
            continue
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(blob, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = key, len(model.buffers) - 1
        kept.append(entry)
    model.metadata = kept
    packed = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    return _append_labels_zip(packed, labels) if labels else packed


REDUCED_PRECISION_KEY = "reduced_precision_support"  # TFLite's key; XNNPACK reads it at delegation
FP16_COMPUTE = "fp16accfp16"  # fp16 inference with fp16 accumulation: what XNNPACK needs to run fp16


def set_reduced_precision(model_bytes: bytes, value: str | None) -> bytes:
    """``model_bytes`` with the ``reduced_precision_support`` entry set to ``value`` (None: removed).

    ``fp16accfp16`` asks XNNPACK for fp16 arithmetic on CPUs that have it (ARMv8.2+ with FP16; ignored on
    x86 and older cores), in apps and in the classic Interpreter alike. The labels zip is kept.
    """
    blob = None if value is None else value.encode()
    return _with_metadata_entries(model_bytes, {REDUCED_PRECISION_KEY: blob}, _read_labels(bytes(model_bytes)))


def with_extra_outputs(model_bytes: bytes, tensor_names: list[str]) -> bytes:
    """``model_bytes`` whose main subgraph also outputs the named tensors, after its own outputs.

    A delegate then has to materialise them, in whatever arithmetic it runs (fp16 included): how
    localization reads block values from a run it cannot look inside. Unknown names are an error.
    """
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    index = {_decode(t.name): i for i, t in enumerate(graph.tensors)}
    missing = [n for n in tensor_names if n not in index]
    if missing:
        raise VitdeployError(f"no tensor named {missing[0]!r} in the model")
    graph.outputs = [int(i) for i in graph.outputs] + [index[n] for n in tensor_names]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def reduced_precision(model_bytes: bytes) -> str | None:
    """The model's ``reduced_precision_support`` value, or None."""
    blob = _metadata_blobs(bytes(model_bytes)).get(REDUCED_PRECISION_KEY)
    return None if blob is None else blob.decode("ascii", "replace")


def _decode(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _append_labels_zip(model_bytes: bytes, labels: list[str]) -> bytes:
    """Append ``labels.txt`` as a zip archive after the flatbuffer (tflite-support's packing).

    Stored uncompressed so runtimes can memory-map it; the interpreter ignores trailing bytes.
    """
    stream = io.BytesIO(model_bytes)
    stream.seek(0, io.SEEK_END)
    with zipfile.ZipFile(stream, mode="a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(LABELS_FILE, "\n".join(str(label) for label in labels) + "\n")
    return stream.getvalue()


def _model_metadata_flatbuffer(config: dict, pre: Preprocessing, labels: list[str] | None, name: str) -> bytes:
    """Serialize a ModelMetadata table (metadata_schema.fbs, file identifier M001)."""
    fb = _FlatBuilder()
    spec = config["input"]
    if spec["layout"] == LAYOUT_PIXELS:
        # Normalization is inside the graph: image tasks must pass pixels through unchanged.
        mean, std = [0.0], [1.0]
        in_description = ("RGB pixels 0..255, float32 NHWC; the checkpoint's preprocessing "
                          f"({pre.describe()}) runs inside the model")
    else:
        # x = (pixel * scale - mean) / std  ==  (pixel - mean/scale) / (std/scale), in channel_order.
        mean = [m / pre.scale for m in pre.mean]
        std = [s / pre.scale for s in pre.std]
        in_description = (f"preprocessed NCHW float32, channels {pre.channel_order}: "
                          f"(pixel - mean) / std with the mean/std below in pixel units")

    norm = fb.table([(0, "off", fb.floats(mean)), (1, "off", fb.floats(std))])
    unit = fb.table([(0, "u8", 1), (1, "off", norm)])  # ProcessUnitOptions.NormalizationOptions = 1
    image_props = fb.table([(0, "i8", 1)])  # ColorSpaceType.RGB = 1
    in_content = fb.table([(0, "u8", 2), (1, "off", image_props)])  # ContentProperties.ImageProperties = 2
    in_stats = fb.table([(0, "off", fb.floats([255.0])), (1, "off", fb.floats([0.0]))]) \
        if spec["layout"] == LAYOUT_PIXELS else None
    in_meta = fb.table([(0, "off", fb.string(spec["name"])), (1, "off", fb.string(in_description)),
                        (3, "off", in_content), (4, "off", fb.vector([unit])), (5, "off", in_stats)])

    out_files = None
    if labels:
        label_file = fb.table([(0, "off", fb.string(LABELS_FILE)),
                               (1, "off", fb.string("class names, one per output index")),
                               (2, "i8", 2)])  # AssociatedFileType.TENSOR_AXIS_LABELS = 2
        out_files = fb.vector([label_file])
    feature = fb.table([])
    out_content = fb.table([(0, "u8", 1), (1, "off", feature)])  # ContentProperties.FeatureProperties = 1
    out_meta = fb.table([(0, "off", fb.string("logits")),
                         (1, "off", fb.string(f"{config['num_classes']} class logits (no softmax)")),
                         (3, "off", out_content), (6, "off", out_files)])

    subgraph = fb.table([(0, "off", fb.string("image_classifier")),
                         (2, "off", fb.vector([in_meta])), (3, "off", fb.vector([out_meta]))])
    description = (f"Image classifier converted by vitdeploy ({config.get('precision') or config['quantize']}); "
                   f"source preprocessing: {pre.describe()}")
    root = fb.table([(0, "off", fb.string(name)), (1, "off", fb.string(description)),
                     (2, "off", fb.string(str(config.get("user", {}).get("version", "")) or None)),
                     (3, "off", fb.vector([subgraph])),
                     (7, "off", fb.string(METADATA_PARSER_VERSION))])
    return fb.finish(root, b"M001")


class _FlatBuilder:
    """The few flatbuffers.Builder calls a hand-written table needs (children before parents)."""

    def __init__(self):
        import flatbuffers

        self.b = flatbuffers.Builder(1024)

    def string(self, text: str | None):
        return None if text is None else self.b.CreateString(text)

    def floats(self, values):
        self.b.StartVector(4, len(values), 4)
        for v in reversed(values):
            self.b.PrependFloat32(float(v))
        return self.b.EndVector()

    def vector(self, offsets):
        self.b.StartVector(4, len(offsets), 4)
        for o in reversed(offsets):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def table(self, fields):
        """``fields``: (slot, kind, value) with kind "off" (child offset), "i8" or "u8"; None skipped."""
        self.b.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
        for slot, kind, value in fields:
            if value is None:
                continue
            if kind == "off":
                self.b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "i8":
                self.b.PrependInt8Slot(slot, value, 0)
            else:
                self.b.PrependUint8Slot(slot, value, 0)
        return self.b.EndObject()

    def finish(self, root, identifier: bytes) -> bytes:
        self.b.Finish(root, file_identifier=identifier)
        return bytes(self.b.Output())


def read_tflite_metadata(path_or_bytes) -> dict:
    """Read back what :func:`add_metadata` stored.

    Returns ``{"vitdeploy": dict | None, "model_metadata": dict | None, "labels": list | None}``
    where ``model_metadata`` is the parsed TFLITE_METADATA (name, description, min_parser_version,
    input/output tensor metadata with normalization mean/std, colour space, associated files).
    """
    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else bytes(path_or_bytes)
    blobs = _metadata_blobs(data)
    vitdeploy = json.loads(blobs[VITDEPLOY_METADATA].decode()) if VITDEPLOY_METADATA in blobs else None
    model_metadata = _parse_model_metadata(blobs[TFLITE_METADATA]) if TFLITE_METADATA in blobs else None
    return {"vitdeploy": vitdeploy, "model_metadata": model_metadata, "labels": _read_labels(data)}


def _metadata_blobs(data: bytes) -> dict[str, bytes]:
    """Model.metadata entries as name -> bytes, without unpacking the whole model."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(data, 0)
        blobs = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            buffer = model.Buffers(entry.Buffer())
            if buffer.Offset():  # data stored outside the flatbuffer (large-model layout)
                blob = data[buffer.Offset():buffer.Offset() + buffer.Size()]
            else:
                blob = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
            blobs[_decode(entry.Name())] = bytes(blob)
        return blobs
    except Exception as e:
        raise VitdeployError(f"not a readable .tflite model ({_one_line(e)})") from None


def _read_labels(data: bytes) -> list[str] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if LABELS_FILE not in archive.namelist():
                return None
            text = archive.read(LABELS_FILE).decode()
    except zipfile.BadZipFile:
        return None
    return text.splitlines()


def _parse_model_metadata(blob: bytes) -> dict:
    if blob[4:8] != b"M001":
        raise VitdeployError("TFLITE_METADATA does not carry the M001 file identifier")
    root = _Table.root(blob)
    subgraphs = [{"name": sg.string(0), "description": sg.string(1),
                  "inputs": [_parse_tensor(t) for t in sg.tables(2)],
                  "outputs": [_parse_tensor(t) for t in sg.tables(3)]} for sg in root.tables(3)]
    return {"name": root.string(0), "description": root.string(1), "version": root.string(2),
            "subgraphs": subgraphs, "min_parser_version": root.string(7)}


def _parse_tensor(t: "_Table") -> dict:
    content = t.table(3)
    kind = {1: "feature", 2: "image", 3: "bounding_box"}.get(content.u8(0) if content else 0, "unknown")
    color = None
    if kind == "image":
        color = {0: "UNKNOWN", 1: "RGB", 2: "GRAYSCALE"}.get(content.table(1).i8(0))
    normalization = None
    for unit in t.tables(4):
        if unit.u8(0) == 1:  # NormalizationOptions
            options = unit.table(1)
            normalization = {"mean": options.floats(0), "std": options.floats(1)}
    stats = t.table(5)
    files = [{"name": f.string(0), "description": f.string(1),
              "type": {1: "DESCRIPTIONS", 2: "TENSOR_AXIS_LABELS", 3: "TENSOR_VALUE_LABELS"}.get(f.i8(2), "UNKNOWN")}
             for f in t.tables(6)]
    return {"name": t.string(0), "description": t.string(1), "content": kind, "color_space": color,
            "normalization": normalization,
            "stats": {"max": stats.floats(0), "min": stats.floats(1)} if stats else None,
            "associated_files": files}


class _Table:
    """Minimal read access to a flatbuffer table by field slot (no generated code needed)."""

    def __init__(self, buf: bytes, pos: int):
        from flatbuffers import table

        self.t = table.Table(bytearray(buf) if not isinstance(buf, bytearray) else buf, pos)

    @classmethod
    def root(cls, buf: bytes) -> "_Table":
        from flatbuffers import encode, packer

        buf = bytearray(buf)
        return cls(buf, encode.Get(packer.uoffset, buf, 0))

    def _field(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._field(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def u8(self, slot: int) -> int:
        from flatbuffers import number_types as N

        o = self._field(slot)
        return self.t.Get(N.Uint8Flags, o + self.t.Pos) if o else 0

    def i8(self, slot: int) -> int:
        from flatbuffers import number_types as N

        o = self._field(slot)
        return self.t.Get(N.Int8Flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> "_Table | None":
        o = self._field(slot)
        return _Table(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Table"]:
        o = self._field(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Table(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def floats(self, slot: int) -> list[float]:
        from flatbuffers import number_types as N

        o = self._field(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [float(self.t.Get(N.Float32Flags, start + 4 * i)) for i in range(self.t.VectorLen(o))]


# ----------------------------------------------------------------------------- output


def _write_atomically(out: Path, data: bytes) -> None:
    """Write next to ``out`` and rename, so ``out`` is either absent/old or complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        # mkstemp creates 0600, and `adb push` keeps the mode: on a phone the app's uid could not
        # read a 0600 model owned by shell (EACCES). An artifact is an ordinary file: 0666 & ~umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
