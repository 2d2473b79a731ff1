"""Every intermediate value of an artifact for a batch of images, in execution order (what localization
compares with the checkpoint's blocks), and the first op whose output stops being finite.

* TFLite: a LiteRT interpreter with ``experimental_preserve_all_tensors=True`` and no XNNPACK
  delegate (a delegate fuses the graph into one node whose insides are not kept), every op's
  output read after ``invoke`` (int8 tensors dequantized with their scale/zero point).
* Core ML: the values the MIL interpreter's ``predict(..., observe=...)`` reports, in program order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import VitdeployError
from ..formats import LAYOUT_PIXELS, LAYOUT_RAW


@dataclass
class ArtifactTensors:
    """Per-sample intermediate values of an artifact, in execution order."""

    names: list[str]
    values: list[np.ndarray]  # each (N, *shape_without_batch) float32, N = images
    kind: str
    logits: np.ndarray | None = None  # (N, classes): the model's own output
    op_types: dict[str, str] = field(default_factory=dict)  # value name -> op type, where the name hides it


def _tflite_tensors(path: Path, rgb: np.ndarray, pre, wanted_sizes: set[int]) -> ArtifactTensors:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ..formats.tflite import read_tflite_metadata

    import warnings as _w

    config = read_tflite_metadata(path).get("vitdeploy") or {}
    with _w.catch_warnings():
        _w.simplefilter("ignore")  # "preserve_all_tensors is for debugging": that is what this is
        interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                                  experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    shape = [int(v) for v in inp["shape"]]
    layout = (config.get("input") or {}).get("layout")
    if layout is None:
        layout = LAYOUT_RAW if len(shape) == 4 and shape[1] == 3 else LAYOUT_PIXELS
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    order: list[int] = []
    seen = set()
    for op in interpreter._get_ops_details():  # execution order; the public API has no op list
        if op.get("op_name") == "DELEGATE":
            continue
        for idx in op["outputs"]:
            if idx >= 0 and idx not in seen and idx in details:
                seen.add(idx)
                order.append(idx)
    per_sample: dict[int, list[np.ndarray]] = {i: [] for i in order}
    out_detail = interpreter.get_output_details()[0]
    outputs = []
    for image in rgb:
        if layout == LAYOUT_RAW:
            feed = pre.normalize(image[None])
        else:
            feed = image[None].astype(np.float32)
        dtype = np.dtype(inp["dtype"])
        if dtype.kind != "f":
            scale, zero = inp["quantization"]
            info = np.iinfo(dtype)
            feed = np.clip(np.round(feed / scale) + zero, info.min, info.max)
        interpreter.set_tensor(inp["index"], feed.astype(dtype))
        interpreter.invoke()
        y = interpreter.get_tensor(out_detail["index"])
        if np.dtype(y.dtype).kind in "iu":
            scale, zero = out_detail["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        outputs.append(np.asarray(y, dtype=np.float32).reshape(-1))
        for idx in order:
            t = details[idx]
            if int(np.prod(t["shape"])) not in wanted_sizes:
                continue
            try:
                value = interpreter.get_tensor(idx)
            except ValueError:  # a tensor the runtime did not keep
                continue
            if np.dtype(value.dtype).kind in "iu":
                scale, zero = t["quantization"]
                if not scale:
                    continue  # integer index tensors, not activations
                value = (value.astype(np.float32) - zero) * scale
            elif np.dtype(value.dtype).kind != "f":
                continue
            per_sample[idx].append(np.asarray(value, dtype=np.float32).reshape(-1))
    names, values = [], []
    for idx in order:
        if len(per_sample[idx]) == len(rgb):
            names.append(details[idx]["name"])
            values.append(np.stack(per_sample[idx]))
    return ArtifactTensors(names, values, "tflite", np.stack(outputs))


def _coreml_tensors(path: Path, rgb: np.ndarray, pre, wanted_sizes: set[int]) -> ArtifactTensors:
    from ..runtimes.mil import MILInterpreter

    interp = MILInterpreter.load(path)
    if len(interp.input_names) != 1:
        raise VitdeployError(f"{path}: localization needs a single-input model, found {interp.input_names}")
    name = interp.input_names[0]
    spec = interp.input_specs[name]
    collected: dict[str, list[np.ndarray]] = {}
    order: list[str] = []
    outputs = []

    def observe(key: str, value) -> None:
        arr = np.asarray(value)
        if arr.dtype.kind not in "f" or arr.size not in wanted_sizes:
            return
        if key not in collected:
            collected[key] = []
            order.append(key)
        collected[key].append(arr.astype(np.float32).reshape(-1))

    for image in rgb:
        if spec.get("kind") == "image":
            feed = image
        else:
            feed = pre.normalize(image[None])
            shape = spec.get("shape")
            if shape and len(shape) == 3:
                feed = feed[0]
        result = interp.predict({name: feed}, observe=observe)
        out = result.get("logits")
        if out is None:  # the first float output with one value per class
            out = next((v for v in result.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"
                        and v.ndim >= 1), None)
        if out is not None:
            outputs.append(np.asarray(out, dtype=np.float32).reshape(-1))
    names = [k for k in order if len(collected[k]) == len(rgb)]
    logits = np.stack(outputs) if len(outputs) == len(rgb) else None
    op_types = interp.producers()
    return ArtifactTensors(names, [np.stack(collected[k]) for k in names], "coreml", logits, op_types)


class _EverySize:
    """A ``wanted_sizes`` that keeps every tensor (looking for the first non-finite one, whatever its size)."""

    def __contains__(self, size) -> bool:
        return True


def _emulated_values(artifact: Path, rgb: np.ndarray, pre, names: list[str],
                     emulate: dict) -> tuple[np.ndarray, list[np.ndarray], dict]:
    """(logits, values (N, -1) float32 of the named tensors, the emulated CPU) from a run on an emulated CPU,
    the tensors made extra model outputs so that the delegate materialises them in its own arithmetic."""
    from ..emulation.run import run_model
    from ..runtimes.tflite_arm import EmulatedTFLiteRunner
    from ..formats.tflite import with_extra_outputs

    runner = EmulatedTFLiteRunner(artifact, **emulate)
    model = with_extra_outputs(runner._emulated_model, names)
    feed = pre.normalize(rgb) if runner.input_spec["layout"] == LAYOUT_RAW else rgb.astype(np.float32)
    outputs, _ = run_model(runner.env, model, runner._quantize_input(feed), cpu=runner.cpu, threads=runner.threads,
                           xnnpack=runner.xnnpack, all_outputs=True)
    details = {t["name"]: t for t in runner.interpreter.get_tensor_details()}
    values = []
    for name, value in zip(names, outputs[1:]):
        value = np.asarray(value)
        if np.dtype(value.dtype).kind in "iu":
            scale, zero = details[name]["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        values.append(value.reshape(len(rgb), -1).astype(np.float32))
    return runner._dequantize_output(outputs[0]).reshape(len(rgb), -1), values, runner.emulation()
