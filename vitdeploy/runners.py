"""One interface over everything vitdeploy can run: checkpoints (PyTorch eager) and
artifacts (.tflite through LiteRT, .pte through ExecuTorch, .mlpackage through Core ML or the MIL interpreter).

Every runner takes the same input: a float32 NCHW batch preprocessed the way the
source checkpoint expects (``predict_nchw``), and converts it to its own input
convention inside. That makes logits from different runners directly comparable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .diagnostics import first_line
from .errors import VitdeployError
from .formats import ARTIFACT_SUFFIXES
from .runtimes.base import Runner
from .runtimes.pytorch import TorchRunner

__all__ = ["Runner", "TorchRunner", "is_artifact", "open_runner", "read_inputs"]


def is_artifact(path: str | Path) -> bool:
    return Path(path).suffix.lower() in ARTIFACT_SUFFIXES


# Artifact files and the runtime runner of each: (module, class, the pip extra that installs its runtime, that runtime).
_FILE_RUNTIMES = {
    ".tflite": ("vitdeploy.runtimes.tflite", "TFLiteRunner", "tflite", "ai-edge-litert"),
    ".pte": ("vitdeploy.runtimes.executorch", "ExecuTorchRunner", "executorch", "executorch"),
}


def open_runner(path: str | Path, *, variant: str | None = None, threads: int = 2, runtime: str = "auto",
                emulate: dict | None = None, require_metadata: bool = True) -> Runner:
    """A runner for a checkpoint or an artifact, chosen by what ``path`` is.

    ``emulate`` (.tflite only): ``{"cpu", "fp16", "xnnpack"}`` runs it on an emulated phone CPU
    (:class:`vitdeploy.runtimes.tflite_arm.EmulatedTFLiteRunner`). ``require_metadata=False`` opens a
    .tflite/.pte vitdeploy did not write (it can be timed; comparing it needs its preprocessing).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if emulate and suffix != ".tflite":
        raise VitdeployError(f"{path}: an emulated phone CPU runs .tflite artifacts only")
    if emulate:
        return _open_emulated_tflite(path, threads, emulate)
    if suffix in _FILE_RUNTIMES:
        runner = _open_file(path, suffix, threads)
        return _with_preprocessing(runner) if require_metadata else runner
    if suffix == ".mlpackage":
        return _open_coreml(path, runtime)
    from . import checkpoints

    return TorchRunner(checkpoints.load(path, variant=variant))


def _open_file(path: Path, suffix: str, threads: int) -> Runner:
    if not path.is_file():
        raise VitdeployError(f"{path}: no such file")
    return runtime_class(suffix)(path, threads=threads)


def runtime_class(suffix: str) -> type:
    """The runner class of an artifact suffix in :data:`_FILE_RUNTIMES` (one-line error when its runtime is missing)."""
    import importlib

    module, name, extra, package = _FILE_RUNTIMES[suffix]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise VitdeployError(f"running {suffix} needs {package}: pip install 'vitdeploy[{extra}]' ({e})") from None


def _open_emulated_tflite(path: Path, threads: int, emulate: dict) -> Runner:
    if not path.is_file():
        raise VitdeployError(f"{path}: no such file")
    from .runtimes.tflite_arm import EmulatedTFLiteRunner

    return _with_preprocessing(EmulatedTFLiteRunner(path, threads=threads, **emulate))


def _with_preprocessing(runner: Runner) -> Runner:
    """``runner``, once its file is known to say how its input was preprocessed (vitdeploy wrote it)."""
    if runner.preprocessing is None:
        raise VitdeployError(f"{runner.path}: not written by vitdeploy (no preprocessing metadata); "
                             "convert the checkpoint with `vitdeploy convert`")
    labels = getattr(runner, "labels", None)
    if labels is not None and len(labels) != runner.num_classes:  # predict would index past the list
        raise VitdeployError(f"{runner.path}: damaged metadata: {len(labels)} labels for {runner.num_classes} classes")
    return runner


def _open_coreml(path: Path, runtime: str) -> Runner:
    if not path.is_dir():
        raise VitdeployError(f"{path}: not an .mlpackage directory")
    try:
        from .runtimes.coreml import CoreMLRunner
    except ImportError as e:
        raise VitdeployError(f"running .mlpackage needs coremltools: pip install 'vitdeploy[coreml]' ({e})") from None
    return CoreMLRunner(path, runtime=runtime)


def read_inputs(paths: list[str | Path], runner: Runner) -> np.ndarray:
    """Image files (preprocessed as the runner's source expects) or one .npy NCHW float32 batch, as is."""
    from .preprocessing import load_images

    if not paths:
        raise VitdeployError("no input given: pass image files or one .npy NCHW batch")
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise VitdeployError(f"{p}: {_not_a_file(p)}")
    npys = [p for p in paths if p.suffix.lower() == ".npy"]
    if npys:
        if len(paths) != 1:
            raise VitdeployError("a .npy input must be the only input (one NCHW batch)")
        return _read_npy(npys[0], runner.input_size)
    return load_images(paths, runner.preprocessing)


def _not_a_file(p: Path) -> str:
    """Why ``p`` cannot be read as an input file, in the words a user needs."""
    if p.is_dir():
        return "a directory, not a file"
    if p.is_symlink() and not p.exists():
        return "dangling symlink or symlink loop"
    return "not a regular file" if p.exists() else "no such file"


def _read_npy(path: Path, input_size: tuple[int, int, int]) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise VitdeployError(f"{path}: not a readable .npy array ({first_line(e)})") from None
    except MemoryError:
        raise VitdeployError(f"{path}: the .npy header declares an array too large to load") from None
    except Exception as e:  # untrusted header: any parse failure is a fault of the file
        raise VitdeployError(f"{path}: not a readable .npy array ({type(e).__name__}: {first_line(e)})") from None
    if not isinstance(x, np.ndarray):  # np.load returns an NpzFile for a .npz renamed .npy
        raise VitdeployError(f"{path}: not a .npy array (an .npz archive?)")
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_size):
        raise VitdeployError(f"{path}: expected a float NCHW batch of shape (N, {', '.join(map(str, input_size))}), "
                             f"got {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise VitdeployError(f"{path}: expected float32 values (already preprocessed), got {x.dtype}")
    if len(x) == 0:
        raise VitdeployError(f"{path}: an empty batch (shape {tuple(x.shape)})")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf here, reported just below
        x = np.ascontiguousarray(x, dtype=np.float32)
    bad = int((~np.isfinite(x).all(axis=(1, 2, 3))).sum())
    if bad:
        raise VitdeployError(f"{path}: values not finite (NaN or inf) in {bad} of {len(x)} inputs")
    return x