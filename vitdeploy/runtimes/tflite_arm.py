"""A .tflite run on an emulated phone CPU (qemu + the aarch64 LiteRT), behind the host runner's interface.

:class:`EmulatedTFLiteRunner` is a :class:`~vitdeploy.runtimes.tflite.TFLiteRunner` whose batches run in
:mod:`vitdeploy.emulation` instead of the host interpreter: the host side still reads the metadata,
converts the input convention and (de)quantizes, so the two runners' logits compare directly.
"""

from __future__ import annotations

import numpy as np

from ..errors import VitdeployError
from .tflite import TFLiteRunner

FP16_MODES = ("model", "force", "off")  # honour the file's request / ask for fp16 arithmetic / never


class EmulatedTFLiteRunner(TFLiteRunner):
    """``cpu``: an emulated CPU (:data:`vitdeploy.emulation.CPUS`); ``fp16``: one of :data:`FP16_MODES`."""

    kind = "tflite-arm"

    def __init__(self, path, *, cpu: str, threads: int = 2, fp16: str = "model", xnnpack: bool = True,
                 env=None, model_content: bytes | None = None):
        from ..emulation.environment import check_cpu, require_environment
        from ..formats.tflite import FP16_COMPUTE, reduced_precision, set_reduced_precision

        super().__init__(path, threads=threads, model_content=model_content)
        if fp16 not in FP16_MODES:
            raise VitdeployError(f"fp16 mode {fp16!r}: choose one of {', '.join(FP16_MODES)}")
        self.cpu = check_cpu(cpu)
        self.env = env or require_environment()
        data = model_content if model_content is not None else self.path.read_bytes()
        requested = reduced_precision(data)
        if fp16 == "force":
            data = set_reduced_precision(data, FP16_COMPUTE)
        elif fp16 == "off" and requested is not None:
            data = set_reduced_precision(data, None)
        self._emulated_model = bytes(data)
        self.fp16_requested = requested == FP16_COMPUTE
        self.fp16 = fp16
        self.fp16_compute = xnnpack and (fp16 == "force" or (fp16 == "model" and self.fp16_requested))
        self.xnnpack = bool(xnnpack)
        self.last_report: dict = {}

    def describe(self) -> dict:
        return {**super().describe(), **self.emulation()}

    def emulation(self) -> dict:
        """The emulated CPU and how it runs the model (what reports show as the phone)."""
        return {"cpu": self.cpu, "emulator": f"qemu-aarch64 {self.env.manifest.get('qemu_version', '?')}",
                "litert": self.env.manifest.get("litert"), "xnnpack": self.xnnpack, "fp16_mode": self.fp16,
                "fp16_compute": self.fp16_compute, "threads": self.threads}

    def run_once(self) -> None:
        raise VitdeployError("latency under emulation means nothing (500-800x slower than a phone); "
                             "profile on a real device or on the host")

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        from ..emulation.run import run_model

        model_batch = int(self._input["shape"][0])
        n = len(batch)
        pad = (-n) % model_batch
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad, 0)])
        raw, self.last_report = run_model(self.env, self._emulated_model, self._quantize_input(batch), cpu=self.cpu,
                                          threads=self.threads, xnnpack=self.xnnpack)
        if self.xnnpack and not self.last_report.get("delegated"):
            self.last_report["warning"] = "XNNPACK took no op on the emulated CPU: built-in kernels ran"
        return self._dequantize_output(raw)[:n].astype(np.float32, copy=False)
