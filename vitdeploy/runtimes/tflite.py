"""Run .tflite classifiers on the host with LiteRT (ai-edge-litert; XNNPACK is its default CPU delegate).

:class:`TFLiteRunner` reads the ``vitdeploy`` JSON metadata that
:func:`vitdeploy.targets.tflite.convert_tflite` stores in the file (a model-level ``Metadata``
entry named ``vitdeploy``) to learn the input layout and the checkpoint's preprocessing, so callers
can always pass what a PyTorch checkpoint takes (:meth:`TFLiteRunner.predict_nchw`) or plain RGB
pixels (:meth:`TFLiteRunner.predict_pixels`), whichever convention the file was converted with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from ..errors import VitdeployError
from ..diagnostics import first_line, native_quiet, package_version
from ..formats import FORMATS, LAYOUT_PIXELS, LAYOUT_RAW
from ..untrusted import reading
from .base import ImageArtifactRunner

class TFLiteRunner(ImageArtifactRunner):
    """One LiteRT interpreter (XNNPACK, ``threads`` CPU threads) for a converted classifier."""

    kind = "tflite"

    def __init__(self, path, *, threads: int = 2, model_content: bytes | None = None):
        from ai_edge_litert.interpreter import Interpreter

        from ..formats.tflite import read_tflite_metadata, require_tflite

        with reading(path):
            self.path, model_content = self._read_artifact(path, model_content, FORMATS["tflite"].suffix)
            name = path or "model"
            # a .pte (or anything) renamed .tflite: say so before LiteRT sees it
            require_tflite(model_content, str(name))
            if self.path is not None:  # a file from the user: untrusted bytes
                check_loadable(self.path, model_content)
            try:
                stored = read_tflite_metadata(model_content)
            except Exception as e:  # untrusted flatbuffer: any failure to parse it is a fault of the file
                raise VitdeployError(f"{name}: not a readable .tflite model ({first_line(e)})") from None
            try:
                with native_quiet():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate" line
                    self.interpreter = Interpreter(model_content=bytes(model_content), num_threads=int(threads))
                    self.interpreter.allocate_tensors()
            except Exception as e:  # ValueError/RuntimeError from LiteRT's verifier and allocator, or anything else
                raise VitdeployError(f"{name}: LiteRT cannot load it ({first_line(e)})") from None
            inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
            if len(inputs) != 1 or len(outputs) != 1:
                raise VitdeployError(f"{path or 'model'}: expected one input and one output, "
                                     f"found {len(inputs)} and {len(outputs)}")
            self._input, self._output = inputs[0], outputs[0]
            self.labels: list[str] | None = stored["labels"]
            self._adopt_metadata(name, stored["vitdeploy"] or {})
            user = self.config.get("user")
            self.variant = user.get("variant") if isinstance(user, dict) else None
            self.threads = int(threads)
            # A defined input so run_once() works straight away (timing does not care about values).
            self.interpreter.set_tensor(self._input["index"], np.zeros(self._input["shape"], self._input["dtype"]))

    def _describe_input(self) -> dict:
        shape = [int(v) for v in self._input["shape"]]
        spec = dict(self.config.get("input") or {})
        if not spec:  # a file we did not write: guess the layout from the shape
            spec = {"name": self._input["name"], "channel_order": "RGB",
                    "layout": LAYOUT_RAW if len(shape) == 4 and shape[1] == 3 else LAYOUT_PIXELS}
        scale, zero_point = self._input["quantization"]
        spec.update(shape=shape, dtype=np.dtype(self._input["dtype"]).name,
                    tensor_name=self._input["name"],
                    quantization={"scale": float(scale), "zero_point": int(zero_point)} if scale else None)
        return spec

    def op_counts(self) -> dict[str, int]:
        """Op type -> count in the interpreter's graph."""
        from collections import Counter

        return dict(Counter(op["op_name"] for op in self.interpreter._get_ops_details()).most_common())

    @property
    def num_classes(self) -> int:
        return int(self._output["shape"][-1])

    # ------------------------------------------------------------------ prediction

    def run_once(self) -> None:
        """One inference on the input already set (for latency measurement)."""
        self.interpreter.invoke()

    @classmethod
    def load_runtime(cls) -> None:
        import ai_edge_litert.interpreter  # noqa: F401

    def runtime_name(self) -> str:
        return f"{package_version('ai-edge-litert')} (XNNPACK)"

    # ------------------------------------------------------------------ internals

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Run a batch in the model's own input convention; loops when the model has batch size 1."""
        model_batch = int(self._input["shape"][0])
        outputs = []
        for start in range(0, len(batch), model_batch):
            chunk = batch[start:start + model_batch]
            if len(chunk) != model_batch:  # a fixed batch > 1 that does not divide N: pad
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], model_batch - len(chunk), 0)])
            self.interpreter.set_tensor(self._input["index"], self._quantize_input(chunk))
            self.interpreter.invoke()
            outputs.append(self._dequantize_output(self.interpreter.get_tensor(self._output["index"])))
        return np.concatenate(outputs)[:len(batch)].astype(np.float32, copy=False)

    def _quantize_input(self, x: np.ndarray) -> np.ndarray:
        dtype = np.dtype(self._input["dtype"])
        scale, zero_point = self._input["quantization"]
        if dtype.kind == "f":
            return np.ascontiguousarray(x, dtype=dtype)
        info = np.iinfo(dtype)
        q = np.round(x / scale) + zero_point
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize_output(self, y: np.ndarray) -> np.ndarray:
        scale, zero_point = self._output["quantization"]
        if np.dtype(y.dtype).kind == "f":
            return y.astype(np.float32).copy()
        return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def run_tflite(model_content: bytes, inputs: np.ndarray, *, threads: int = 2) -> np.ndarray:
    """Logits for a batch already in the model's input convention (float; quantized I/O handled)."""
    return TFLiteRunner(None, threads=threads, model_content=model_content).run_batch(np.asarray(inputs))


T = TypeVar("T")


def in_image_chunks(work: Callable[[int, np.ndarray], T], inputs: np.ndarray, workers: int) -> list[T]:
    """``work(first_index, chunk)`` over ``inputs`` cut into up to ``workers`` consecutive chunks, run at once in
    threads, results in image order. For one-thread interpreters (one each): TFLite releases the GIL while
    invoking, so a second interpreter is how work on single-threaded kernels uses a second core."""
    from concurrent.futures import ThreadPoolExecutor

    parts = np.array_split(np.asarray(inputs), max(1, min(workers, len(inputs))))
    starts = np.cumsum([0] + [len(part) for part in parts[:-1]])
    chunks = [(int(start), part) for start, part in zip(starts, parts) if len(part)]
    if len(chunks) == 1:
        return [work(*chunks[0])]
    with ThreadPoolExecutor(len(chunks)) as pool:
        return list(pool.map(lambda chunk: work(*chunk), chunks))


def run_tflite_split(model_content: bytes, inputs: np.ndarray, *, workers: int = 2) -> tuple[np.ndarray, float]:
    """(logits, ms per image) with the images shared out among ``workers`` one-thread interpreters running at
    once (:func:`in_image_chunks`): for models on TFLite's single-threaded reference kernels (int16 activations).
    ms per image: each worker's own time per image, so it is the one-thread latency, not wall / images."""
    import time

    def run(_first: int, chunk: np.ndarray) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        return run_tflite(model_content, chunk, threads=1), time.perf_counter() - started

    done = in_image_chunks(run, inputs, workers)
    return np.concatenate([y for y, _ in done]), 1e3 * sum(s for _, s in done) / max(len(inputs), 1)


def delegation_census(model, *, threads: int = 1) -> dict:
    """Which ops XNNPACK takes: op counts by type, the ones it leaves out, and its partition count.

    ``model``: .tflite bytes or a path. Every node XNNPACK does not take runs on TFLite's built-in
    kernels and splits the graph, which is what makes an int8 model with unsupported int8 ops slower
    than its float original.
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(model), num_threads=threads)
    else:
        interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    return delegation_census_of(interpreter)


def delegation_census_of(interpreter) -> dict:
    """:func:`delegation_census` of an interpreter already allocated."""
    from collections import Counter

    ops = interpreter._get_ops_details()  # the public API has no op list
    delegated = delegated_nodes(interpreter)
    nodes = [op for op in ops if op["op_name"] != "DELEGATE"]
    return {"ops": dict(Counter(op["op_name"] for op in nodes).most_common()),
            "not_delegated": dict(Counter(op["op_name"] for op in nodes if op["index"] not in delegated).most_common()),
            "partitions": sum(op["op_name"] == "DELEGATE" for op in ops)}


def delegated_nodes(interpreter) -> set[int]:
    """Indices (in the file's op order) of the nodes a delegate took, of an interpreter already allocated.

    The interpreter lists the original nodes plus one ``DELEGATE`` node per partition; a node is
    delegated when it lies between a partition's outputs and its inputs (walked back through producers)."""
    ops = interpreter._get_ops_details()
    producer = {int(t): op["index"] for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    delegated: set[int] = set()
    for partition in (op for op in ops if op["op_name"] == "DELEGATE"):
        boundary = {int(t) for t in partition["inputs"]}
        todo, seen = [int(t) for t in partition["outputs"]], set()
        while todo:
            tensor = todo.pop()
            if tensor in seen or tensor in boundary or tensor not in producer:
                continue
            seen.add(tensor)
            index = producer[tensor]
            if index not in delegated:
                delegated.add(index)
                todo += [int(t) for t in ops[index]["inputs"] if int(t) >= 0]
    return delegated


# LiteRT follows a .tflite's flatbuffer offsets without verifying them: a damaged file can crash the
# process (SIGSEGV) instead of raising. A child process loads, allocates and runs it once first.
_PROBE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
for d in interpreter.get_input_details():
    interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
interpreter.invoke()
"""
_PROBED: dict[str, int] = {}  # sha256 of a file's bytes -> the probe's exit code (a file is probed once)


def check_loadable(path: Path, content: bytes | None = None, timeout_s: float = 300) -> None:
    """Raise a one-line :class:`VitdeployError` if loading or running ``path`` would crash LiteRT natively.

    A Python-level error in the child is left to the caller's own load, which reports it with its reason."""
    import hashlib
    import os
    import signal
    import subprocess
    import sys

    content = path.read_bytes() if content is None else content
    key = hashlib.sha256(content).hexdigest()
    if key not in _PROBED:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            _PROBED[key] = subprocess.run([sys.executable, "-c", _PROBE, str(path)], env=env, timeout=timeout_s,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        except subprocess.TimeoutExpired:
            raise VitdeployError(f"{path}: LiteRT did not finish loading it in {timeout_s:g} s") from None
    code = _PROBED[key]
    if code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
        raise VitdeployError(f"{path}: not a valid .tflite model (LiteRT crashed reading it: {how})")
