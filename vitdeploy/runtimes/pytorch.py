"""PyTorch eager: the checkpoint itself, the reference every artifact is compared with."""

from __future__ import annotations

import numpy as np

from .base import Runner


class TorchRunner(Runner):
    """A checkpoint run in PyTorch eager mode (the reference)."""

    kind = "checkpoint"

    def __init__(self, checkpoint):
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.path = checkpoint.path
        self.preprocessing = checkpoint.preprocessing
        self.input_size = checkpoint.input_size
        self.labels = checkpoint.labels
        self.variant = checkpoint.variant

    def predict_nchw(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
