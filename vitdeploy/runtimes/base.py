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


def image_size_of(input_spec: dict) -> tuple[int, int, int] | None:
    """(3, H, W) of an artifact input, whichever layout it declares; None for an input that is no image batch
    (a bare model run by the quantizer or a test)."""
    from ..formats import LAYOUT_RAW

    shape = input_spec["shape"]
    if len(shape) != 4:
        return None
    h, w = (shape[2], shape[3]) if input_spec.get("layout") == LAYOUT_RAW else (shape[1], shape[2])
    return 3, int(h), int(w)
