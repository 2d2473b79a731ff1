"""The Python API behind each CLI command, under the same names.

    import vitdeploy.api as vd
    vd.inspect("levit_128s.pth")
    vd.predict("levit_128s.pth", ["cat.jpg"], top=5)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .runners import is_artifact, open_runner, read_inputs


def inspect(path: str | Path, *, variant: str | None = None) -> dict:
    """What a checkpoint or artifact is: family, variant, layout, params, input, preprocessing, BN folding."""
    if is_artifact(path):
        runner = open_runner(path)
        info = runner.describe()
        if hasattr(runner, "op_counts"):
            info["op_counts"] = runner.op_counts()
        return info
    from . import checkpoints
    from .passes import fold_batchnorm

    ckpt = checkpoints.load(path, variant=variant)
    info = ckpt.describe()
    info["bn_folding"] = fold_batchnorm(copy.deepcopy(ckpt.model)).to_dict()
    return info


@dataclass
class Prediction:
    logits: np.ndarray  # (N, classes) float32
    labels: list[str] | None
    inputs: list[str]

    def top(self, k: int) -> list[list[dict]]:
        """Per input, the k best classes with softmax probabilities."""
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        out = []
        for row_logits, row_probs in zip(self.logits, probs):
            idx = np.argsort(-row_logits, kind="stable")[:k]
            out.append([{"class": int(i), "label": self.labels[i] if self.labels else None,
                         "logit": float(row_logits[i]), "prob": float(row_probs[i])} for i in idx])
        return out


def predict(model: str | Path, inputs: list[str | Path], *, variant: str | None = None, threads: int = 2,
            runtime: str = "auto") -> Prediction:
    """Logits of a checkpoint or artifact on image files or one preprocessed .npy NCHW batch."""
    runner = open_runner(model, variant=variant, threads=threads, runtime=runtime)
    x = read_inputs(list(inputs), runner)
    logits = np.asarray(runner.predict_nchw(x), dtype=np.float32)
    names = [str(p) for p in inputs]
    if len(names) == 1 and str(names[0]).endswith(".npy"):
        names = [f"{names[0]}[{i}]" for i in range(len(logits))]
    return Prediction(logits=logits, labels=runner.labels, inputs=names)


def write_atomically(path: str | Path, write) -> Path:
    """Call ``write(binary_file)`` on a temp file beside ``path``, then rename: never half a file at ``path``."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """Write a .npy atomically."""
    return write_atomically(path, lambda f: np.save(f, array))


def save_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    return write_atomically(path, lambda f: f.write(text.encode("utf-8")))


def setup_arm(cache: str | Path | None = None, *, force: bool = False, say=print):
    """``vitdeploy setup arm``: build (or reuse) the emulated phone CPU environment; returns it."""
    from .emulation import setup_arm as build

    return build(Path(cache) if cache else None, force=force, say=say)
