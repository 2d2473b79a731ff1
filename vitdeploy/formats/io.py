"""A model file's inputs and outputs as a harness feeds and reads them: shapes, dtypes, quantization.

About the artifact, not the phone: the Android backend (adb), the iOS backend (devicectl) and the farm
backends all read a model's I/O here before they touch a device, so a model the harness cannot feed is
refused offline with one line. LiteRT, ExecuTorch's flatbuffer reader and coremltools are imported lazily.

  .tflite     :func:`model_io` (the host LiteRT runtime), :func:`default_input`, :func:`check_harness_dtypes`
  .pte        :func:`pte_model_io` (the program's flatbuffer, no runtime)
  .mlpackage  :func:`mlpackage_input`, :func:`mlpackage_input_shape` (coremltools, no model load)
  any         :func:`model_input` (quantize a float input), :func:`dequantized` (an integer output as float32)
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VitdeployError
from ..untrusted import reading

# The Java Interpreter API's org.tensorflow.lite.DataType has no FLOAT16: the Android harness can neither
# feed nor read such a tensor, so the host says so before touching the phone.
JAVA_DTYPES = ("float32", "int32", "int64", "int16", "int8", "uint8", "bool")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def model_io(model_path: Path) -> tuple[list[dict], list[dict]]:
    """Input and output tensor details of a .tflite, read with the host LiteRT runtime."""
    from ai_edge_litert.interpreter import Interpreter

    with reading(model_path):
        try:
            interp = Interpreter(model_path=str(model_path))
            return interp.get_input_details(), interp.get_output_details()
        except (ValueError, RuntimeError) as e:
            raise VitdeployError(f"cannot read {Path(model_path).name} with LiteRT: {_last_line(str(e))}") from None


def default_input(model_path: Path, seed: int = 0):
    """A fixed random input with the model's input shape (read with the host LiteRT runtime)."""
    import numpy as np

    det = model_io(model_path)[0][0]
    return np.random.default_rng(seed).standard_normal(tuple(det["shape"])).astype(np.float32)


def check_harness_dtypes(model_path: Path, inputs: list[dict], outputs: list[dict]) -> None:
    """A one-line error for a .tflite tensor type the Android harness (LiteRT Java API) cannot use."""
    import numpy as np

    for kind, dets in (("input", inputs), ("output", outputs)):
        for i, det in enumerate(dets):
            name = np.dtype(det["dtype"]).name
            if name not in JAVA_DTYPES:
                raise VitdeployError(f"{Path(model_path).name}: {kind} {i} is {name}, which the Android harness "
                                     "(LiteRT Java Interpreter API) cannot use; export with float32 or integer I/O")


def model_input(det: dict, array):
    """`array` in the type the model takes: float32 as is; for an int8/uint8/int16 input, a float
    array is quantized with the tensor's scale and zero point (an integer array is passed through)."""
    import numpy as np

    want = np.dtype(det["dtype"])
    a = np.asarray(array)
    if want == np.float32:
        return np.ascontiguousarray(a, dtype=np.float32)
    if a.dtype == want:
        return np.ascontiguousarray(a)
    scale, zero_point = det.get("quantization", (0.0, 0))
    if not scale:
        raise VitdeployError(f"input {det.get('name')} is {want.name} without quantization parameters: "
                             f"pass a {want.name} input array")
    info = np.iinfo(want)
    q = np.round(a.astype(np.float64) / scale + zero_point)
    return np.ascontiguousarray(np.clip(q, info.min, info.max).astype(want))


def dequantized(array, det: dict | None):
    """An integer output of a quantized model as float32 (what parity compares); others unchanged."""
    import numpy as np

    if det is None or not np.issubdtype(np.asarray(array).dtype, np.integer):
        return array
    scale, zero_point = det.get("quantization", (0.0, 0))
    if not scale:
        return array
    return ((np.asarray(array, dtype=np.float64) - zero_point) * scale).astype(np.float32)


def pte_model_io(model_path: Path, platform: str = "android") -> tuple[list[dict], list[dict]]:
    """Input/output details of a .pte's forward method, shaped like LiteRT's (shape, dtype), and a
    one-line error when its delegates cannot run on ``platform``'s CPU (Core ML on Android) -- before
    the phone is touched."""
    import numpy as np

    from .executorch import forward_of, unit_mismatch

    model_path = Path(model_path)
    with reading(model_path):
        fwd = forward_of(model_path)
        why = unit_mismatch(platform, "cpu", fwd["delegates"])
        if why:
            raise VitdeployError(f"{model_path.name}: {why}")

        def dets(values, kind):
            out = []
            for i, v in enumerate(values):
                if v["dtype"] is None:
                    raise VitdeployError(f"{model_path.name}: forward {kind} {i} is not a tensor of a type the harness "
                                         "reads (float32/int* tensors only)")
                out.append({"shape": np.array(v["shape"]), "dtype": np.dtype(v["dtype"]), "quantization": (0.0, 0)})
            return out

        ins, outs = dets(fwd["inputs"], "input"), dets(fwd["outputs"], "output")
        bad = [d for d in ins if d["dtype"] != np.float32]
        if bad:
            raise VitdeployError(f"{model_path.name}: the harness feeds a .pte float32 inputs; forward takes "
                                 f"{bad[0]['dtype'].name}")
        return ins, outs


def mlpackage_input(model_path: Path) -> dict:
    """The first input of an .mlpackage (coremltools, no model load).

    {"name", "kind": "multiArray", "shape"} or, for an ImageType input (the default Core ML
    export), {"name", "kind": "image", "shape": [H, W, C], "color": "RGB"|"BGR"|"GRAYSCALE"}:
    the harness builds a CVPixelBuffer of that size from C-channel uint8 pixels.
    """
    from .coreml import check_package_tree

    with reading(model_path):
        model_path = check_package_tree(model_path)  # untrusted: no link out of it before coremltools reads it
        try:
            import coremltools as ct
        except ImportError:
            raise VitdeployError("pass an input array (or install coremltools to read the model's input)") from None
        try:
            spec = ct.models.MLModel(str(model_path), skip_model_load=True).get_spec()
        except Exception as e:  # coremltools raises RuntimeError/ValueError/... for a damaged package
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise VitdeployError(f"cannot read {model_path.name} with coremltools: {msg}") from None
        inputs = spec.description.input
        if not inputs:
            raise VitdeployError(f"{model_path.name}: the model has no inputs")
        first = inputs[0]
        kind = first.type.WhichOneof("Type")
        if kind == "imageType":
            it = first.type.imageType
            color = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(it.colorSpace)
            if color not in ("RGB", "BGR", "GRAYSCALE"):
                raise VitdeployError(f"{model_path.name}: image input {first.name} has color space {color}; "
                                     "the harness builds RGB, BGR and grayscale pixel buffers")
            return {"name": first.name, "kind": "image",
                    "shape": [int(it.height), int(it.width), 1 if color == "GRAYSCALE" else 3], "color": color}
        if kind == "multiArrayType":
            return {"name": first.name, "kind": "multiArray",
                    "shape": [int(d) for d in first.type.multiArrayType.shape]}
        raise VitdeployError(f"{model_path.name}: input {first.name} is a {kind}; "
                             "the harness feeds multi-arrays and images")


def mlpackage_input_shape(model_path: Path) -> list[int]:
    """The first input's shape: a multi-array's shape, or [H, W, C] pixels for an image input."""
    return mlpackage_input(model_path)["shape"]
