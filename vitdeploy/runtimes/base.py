"""The runner interface every runtime implements: logits for a batch preprocessed as the checkpoint takes it.

Every runner takes the same input: a float32 NCHW batch preprocessed the way the source checkpoint
expects (``predict_nchw``), and converts it to its own input convention inside. That makes logits
from different runners directly comparable (parity, eval, profile).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..preprocessing import Preprocessing


class Runner:
    """Base: ``predict_nchw(x) -> (N, classes) float32 logits``."""

    kind = "abstract"
    path: Path
    preprocessing: Preprocessing
    input_size: tuple[int, int, int]
    labels: list[str] | None = None
    variant: str | None = None

    def predict_nchw(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @classmethod
    def load_runtime(cls) -> None:
        """Import the runtime's libraries now (so a timed load measures the model's, not the imports)."""

    def runtime_name(self) -> str:
        """What runs the model, with its version (latency reports)."""
        return self.kind

    def describe(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "variant": self.variant,
                "input_size": list(self.input_size), "preprocessing": self.preprocessing.to_dict()}


class ImageArtifactRunner(Runner):
    """An artifact file that takes one image batch, as RGB pixels (``LAYOUT_PIXELS``, NHWC 0..255, preprocessing
    inside) or as the checkpoint's preprocessed NCHW floats (``LAYOUT_RAW``): the conversions between the two,
    shared by the TFLite and ExecuTorch runners. Subclasses set ``input_spec`` and ``preprocessing`` and run a
    batch already in the file's convention (:meth:`run_batch`)."""

    input_spec: dict

    def run_batch(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    @staticmethod
    def _read_artifact(path, model_content: bytes | None, suffix: str) -> tuple[Path | None, bytes]:
        """(path or None, the file's bytes): ``model_content`` when given, else the file, refused in one line
        when it is missing, a directory or empty."""
        from ..errors import VitdeployError

        if model_content is not None:
            return (None if path is None else Path(path)), model_content
        path = Path(path)
        if not path.is_file():
            raise VitdeployError(f"{path}: {'a directory, not' if path.is_dir() else 'no such'} {suffix} file")
        content = path.read_bytes()
        if not content:
            raise VitdeployError(f"{path}: empty file")
        return path, content

    def _adopt_metadata(self, name, config) -> None:
        """Set ``config``, ``preprocessing``, ``input_spec`` and ``input_size`` from the file's vitdeploy metadata:
        untrusted JSON, so a wrong type or a missing key is a damaged file, said in one line."""
        from ..diagnostics import first_line
        from ..errors import VitdeployError

        self.config = config
        try:
            if not isinstance(config, dict):
                raise TypeError(f"a JSON {type(config).__name__}, not an object")
            self.preprocessing = (Preprocessing.from_dict(config["preprocessing"])
                                  if "preprocessing" in config else None)
            self.input_spec = self._describe_input()
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise VitdeployError(f"{name}: damaged vitdeploy metadata ({type(e).__name__}: {first_line(e)})") from None
        self.input_size = image_size_of(self.input_spec)

    def predict_nchw(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(N, classes)`` for a preprocessed float32 NCHW batch, as the PyTorch checkpoint takes it."""
        from ..errors import VitdeployError
        from ..formats import LAYOUT_RAW

        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 3:
            x = x[None]
        height, width = self._image_hw()
        if x.ndim != 4 or x.shape[1:] != (3, height, width):
            raise VitdeployError(f"expected a (N, 3, {height}, {width}) batch, got {x.shape}")
        if self.input_spec["layout"] == LAYOUT_RAW:
            return self.run_batch(x)
        return self.run_batch(self._pixels_from_nchw(x))

    def predict_pixels(self, rgb: np.ndarray) -> np.ndarray:
        """Logits ``(N, classes)`` for RGB pixels (uint8 or float 0..255), NHWC or a single HWC image."""
        from ..errors import VitdeployError
        from ..formats import LAYOUT_PIXELS

        rgb = np.asarray(rgb)
        if rgb.ndim == 3:
            rgb = rgb[None]
        height, width = self._image_hw()
        if rgb.ndim != 4 or rgb.shape[1:] != (height, width, 3):
            raise VitdeployError(f"expected RGB images of shape (N, {height}, {width}, 3), got {rgb.shape}")
        if self.input_spec["layout"] == LAYOUT_PIXELS:
            return self.run_batch(rgb.astype(np.float32))
        return self.run_batch(self._require_preprocessing().normalize(rgb))

    def _image_hw(self) -> tuple[int, int]:
        from ..formats import LAYOUT_RAW

        shape = self.input_spec["shape"]
        return (shape[2], shape[3]) if self.input_spec["layout"] == LAYOUT_RAW else (shape[1], shape[2])

    def _require_preprocessing(self) -> Preprocessing:
        if self.preprocessing is None:
            from ..errors import VitdeployError

            raise VitdeployError(f"{self.path or 'model'}: no vitdeploy metadata, so its preprocessing is unknown; "
                                 "convert it with vitdeploy")
        return self.preprocessing

    def _pixels_from_nchw(self, x: np.ndarray) -> np.ndarray:
        """Undo the checkpoint's preprocessing: ``pixel = (x - b) / a`` per channel, back to RGB NHWC."""
        pre = self._require_preprocessing()
        a, b = pre.pixel_affine()
        pixels = (x - b[None, :, None, None]) / a[None, :, None, None]
        if pre.channel_order == "BGR":
            pixels = pixels[:, ::-1]
        return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1), dtype=np.float32)


def image_size_of(input_spec: dict) -> tuple[int, int, int] | None:
    """(3, H, W) of an artifact input, whichever layout it declares; None for an input that is no image batch
    (a bare model run by the quantizer or a test)."""
    from ..formats import LAYOUT_RAW

    shape = input_spec["shape"]
    if len(shape) != 4:
        return None
    h, w = (shape[2], shape[3]) if input_spec.get("layout") == LAYOUT_RAW else (shape[1], shape[2])
    return 3, int(h), int(w)
