"""Run a vitdeploy .mlpackage: real Core ML on macOS, vitdeploy's numpy MIL interpreter elsewhere.

``CoreMLRunner.predict_nchw(x)`` takes what every vitdeploy runner takes -- float32 NCHW
preprocessed as the source checkpoint expects -- and returns (N, classes) float32 logits:

* raw-input models (``pixel_values``) get ``x`` as is, one image at a time (the models have batch 1);
* image-input models get 8-bit pixels back: ``pixel = (x - b) / a`` per channel (the source's
  ``x = a * pixel + b``, :meth:`Preprocessing.pixel_affine`), channels put back into RGB order,
  then **rounded to the nearest integer (numpy ``rint``, ties to even) and clipped to 0..255** --
  exact for inputs made from real 8-bit images; other inputs are quantized to 8-bit pixels,
  as a camera frame would be (use a raw-input artifact for exact float parity);
* the output is the ``logits`` output, which classifier models (``--labels``) expose next to
  ``classLabel`` / ``probabilities``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import VitdeployError
from ..diagnostics import first_line
from ..formats import LAYOUT_RAW
from ..formats.coreml import check_package_tree, read_config
from ..preprocessing import Preprocessing
from ..untrusted import reading
from .base import Runner

RUNTIMES = ("auto", "coreml", "interpreter")


class CoreMLRunner(Runner):
    """A vitdeploy-made .mlpackage; ``runtime``: ``auto`` (Core ML on macOS, else interpreter),
    ``coreml`` or ``interpreter``."""

    kind = "coreml"

    def __init__(self, path: str | Path, runtime: str = "auto", fp16_emulation: bool = True):
        if runtime not in RUNTIMES:
            raise VitdeployError(f"unknown Core ML runtime '{runtime}'; choose one of {', '.join(RUNTIMES)}")
        self.path = Path(path)
        with reading(self.path):
            check_package_tree(self.path)  # before anything reads it (read_config and the interpreter check again)
            self.config = read_config(self.path)
            try:  # the metadata is untrusted JSON: a missing key or a wrong type is a damaged package
                self.preprocessing = Preprocessing.from_dict(self.config["preprocessing"])
                shape = self.config["input"]["shape"]
                self.input_size = (int(shape[1]), int(shape[2]), int(shape[3]))
                self.input_name = str(self.config["input"]["name"])
                self.raw_input = self.config["input"]["layout"] == LAYOUT_RAW
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
                raise VitdeployError(f"{self.path}: damaged vitdeploy metadata ({type(e).__name__}: "
                                     f"{first_line(e)})") from None
            self.labels = self.config.get("labels")
            self.variant = self.config.get("variant")
            self.logits_output = self.config.get("logits_output", "logits")
            self.fp16_emulation = fp16_emulation
            self.runtime = _choose_runtime(runtime)
            self._interp = None
            self._mlmodel = None
            if self.runtime == "interpreter":
                self._interp = _load_interpreter(self.path)
            else:  # pragma: no cover - macOS only
                import coremltools as ct

                self._mlmodel = ct.models.MLModel(str(self.path))

    def describe(self) -> dict:
        d = super().describe()
        d.update(runtime=self.runtime, input=self.config["input"], precision=self.config.get("precision"),
                 quantize=self.config.get("quantize"), deployment_target=self.config.get("deployment_target"),
                 labels=len(self.labels) if self.labels else None, source=self.config.get("user", {}))
        return d

    def op_counts(self) -> dict[str, int]:
        """Op type -> count in the ML Program (const excluded)."""
        if self._interp is not None:
            return self._interp.op_counts()
        from .mil import op_counts

        return op_counts(self.path)

    def predict_nchw(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.input_size):
            raise VitdeployError(f"expected a float NCHW batch of shape (N, {', '.join(map(str, self.input_size))}), "
                                 f"got {tuple(x.shape)}")
        rows = [self._predict_one(x[i:i + 1]) for i in range(len(x))]
        return np.stack(rows).astype(np.float32)

    def _predict_one(self, x: np.ndarray) -> np.ndarray:
        value = x if self.raw_input else nchw_to_rgb_pixels(x, self.preprocessing)
        if self._interp is not None:
            out = self._interp.predict({self.input_name: value}, fp16_emulation=self.fp16_emulation)
        else:  # pragma: no cover - macOS only
            out = self._mlmodel.predict({self.input_name: value if self.raw_input else _pil_image(value[0])})
        if self.logits_output not in out:
            raise VitdeployError(f"{self.path}: the model has no '{self.logits_output}' output "
                                 f"(outputs: {', '.join(out)})")
        return np.ravel(np.asarray(out[self.logits_output], dtype=np.float32))


def _load_interpreter(path: Path):
    """The MIL interpreter for ``path``; a damaged program or weight file is the package's fault, said so."""
    from .mil import MILInterpreter

    try:
        return MILInterpreter.load(path)
    except VitdeployError:
        raise
    except Exception as e:  # noqa: BLE001 - protobuf, mmap of weight.bin, blob offsets: a damaged package raises anything
        raise VitdeployError(f"{path}: not a readable .mlpackage ({e.__class__.__name__}: "
                             f"{first_line(e)})") from None


def nchw_to_rgb_pixels(x: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Invert ``pre``: float NCHW model input -> uint8 NHWC RGB pixels (rint, clipped to 0..255)."""
    a, b = pre.pixel_affine()
    pixels = (x.astype(np.float64) - b.reshape(1, 3, 1, 1)) / a.reshape(1, 3, 1, 1)
    if pre.channel_order == "BGR":
        pixels = pixels[:, ::-1]
    pixels = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(pixels, 1, -1))


def _choose_runtime(runtime: str) -> str:
    if runtime == "interpreter":
        return runtime
    on_mac = sys.platform == "darwin"
    if runtime == "coreml" and not on_mac:
        raise VitdeployError("Core ML prediction needs macOS; use --runtime interpreter (vitdeploy's MIL interpreter)")
    return "coreml" if on_mac else "interpreter"


def _pil_image(rgb: np.ndarray):  # pragma: no cover - macOS only
    from PIL import Image

    return Image.fromarray(rgb, mode="RGB")
