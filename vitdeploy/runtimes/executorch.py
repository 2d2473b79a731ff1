"""Run .pte classifiers on the host with the ExecuTorch runtime (its Python bindings; XNNPACK on this CPU).

:class:`ExecuTorchRunner` reads the ``vitdeploy_metadata`` JSON the converter stores in the program
(:mod:`vitdeploy.formats.executorch`) to learn the input layout and the checkpoint's preprocessing, so
callers pass what a PyTorch checkpoint takes (:meth:`ExecuTorchRunner.predict_nchw`) whichever
convention the file was converted with. Programs are exported for batch 1: a batch is run image by image.
"""

from __future__ import annotations

import numpy as np

from ..diagnostics import first_line, native_quiet, package_version, quiet
from ..errors import VitdeployError
from ..formats import FORMATS, LAYOUT_PIXELS, LAYOUT_RAW
from ..untrusted import reading
from .base import ImageArtifactRunner


def runtime():
    """ExecuTorch's runtime (imported quietly: torchao logs about CUDA kernels it cannot load)."""
    with quiet():
        from executorch.runtime import Runtime

        return Runtime.get()


def set_threads(threads: int) -> None:
    """Size XNNPACK's thread pool (process-wide in ExecuTorch's bindings, like torch.set_num_threads)."""
    with quiet():
        from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != int(threads):
        portable_lib._unsafe_reset_threadpool(int(threads))


class ExecuTorchRunner(ImageArtifactRunner):
    """One loaded ExecuTorch program (``forward``) for a converted classifier."""

    kind = "executorch"

    def __init__(self, path, *, threads: int = 2, model_content: bytes | None = None):
        from ..formats.executorch import read_pte_metadata

        with reading(path):
            self.path, model_content = self._read_artifact(path, model_content, FORMATS["executorch"].suffix)
            name = path or "model"
            stored = read_pte_metadata(model_content)  # parses the whole flatbuffer in Python first: one-line errors
            if "forward" not in stored["methods"]:
                raise VitdeployError(f"{name}: the program has no forward method "
                                     f"(methods: {', '.join(stored['methods'])})")
            delegate = (stored["vitdeploy"] or {}).get("delegate")
            if delegate == "coreml" and not backend_available("CoreMLBackend"):
                raise VitdeployError(f"{name}: lowered to the Core ML delegate, which this host's ExecuTorch runtime "
                                     "lacks (it runs on Apple devices); convert with --delegate xnnpack to run it here")
            try:
                with native_quiet():  # the thread pool's first use probes the CPU, logging natively
                    set_threads(threads)
                    self.program = runtime().load_program(bytes(model_content))
                    self.method = self.program.load_method("forward")
            except Exception as e:  # RuntimeError from the loader (a missing backend or kernel, a damaged file)
                raise VitdeployError(f"{name}: ExecuTorch cannot load it ({first_line(e)})") from None
            meta = self.method.metadata
            if meta.num_inputs() != 1 or meta.num_outputs() != 1:
                raise VitdeployError(f"{name}: expected one input and one output, found {meta.num_inputs()} and "
                                     f"{meta.num_outputs()}")
            self._shape = [int(v) for v in meta.input_tensor_meta(0).sizes()]
            self._out_shape = [int(v) for v in meta.output_tensor_meta(0).sizes()]
            self.census = stored["census"]
            self.labels: list[str] | None = stored["labels"]
            self._adopt_metadata(name, stored["vitdeploy"] or {})
            self.variant = self.config.get("variant") if isinstance(self.config.get("variant"), str) else None
            self.threads = int(threads)
            self._ready = [self._tensor(np.zeros(self._shape, np.float32))]  # run_once() works straight away

    def _describe_input(self) -> dict:
        spec = dict(self.config.get("input") or {})
        if not spec:  # a program we did not write: guess the layout from the shape
            spec = {"name": "input", "channel_order": "RGB",
                    "layout": LAYOUT_RAW if len(self._shape) == 4 and self._shape[1] == 3 else LAYOUT_PIXELS}
        spec.update(shape=list(self._shape), dtype="float32")
        return spec

    @property
    def num_classes(self) -> int:
        return int(self._out_shape[-1])

    def describe(self) -> dict:
        return {**super().describe(), "precision": self.config.get("precision"), "delegate": self.config.get("delegate"),
                **(self.census or {})}

    # ------------------------------------------------------------------ prediction

    def run_once(self) -> None:
        """One inference on the input already set (for latency measurement)."""
        self.method.execute(self._ready)

    @classmethod
    def load_runtime(cls) -> None:
        runtime()  # torch and the bindings: ~3 s on this host

    def runtime_name(self) -> str:
        return f"{package_version('executorch')} ({self.config.get('delegate') or 'xnnpack'})"

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a batch already in the program's input convention, image by image (batch-1 program)."""
        step = int(self._shape[0])
        outputs = []
        for start in range(0, len(batch), step):
            chunk = np.asarray(batch[start:start + step], dtype=np.float32)
            if len(chunk) != step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), 0)])
            (y,) = self.method.execute([self._tensor(chunk)])
            outputs.append(y.detach().numpy().astype(np.float32, copy=True))
        return np.concatenate(outputs)[:len(batch)]

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _tensor(x: np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def run_pte(model_content: bytes, inputs: np.ndarray, *, threads: int = 2) -> np.ndarray:
    """Logits for a batch already in the program's input convention."""
    return ExecuTorchRunner(None, threads=threads, model_content=model_content).run_batch(np.asarray(inputs))


def backend_available(name: str) -> bool:
    """Whether this host's ExecuTorch runtime has the backend (``XnnpackBackend``, ``CoreMLBackend``)."""
    return bool(runtime().backend_registry.is_available(name))
