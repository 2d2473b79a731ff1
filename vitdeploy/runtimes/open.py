"""One interface over everything vitdeploy can run: checkpoints (PyTorch eager) and
artifacts (.tflite through LiteRT, .pte through ExecuTorch, .mlpackage through Core ML or the MIL interpreter).

Every runner takes the same input: a float32 NCHW batch preprocessed the way the
source checkpoint expects (``predict_nchw``), and converts it to its own input
convention inside. That makes logits from different runners directly comparable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..diagnostics import first_line
from ..errors import VitdeployError
from ..formats import EMULATED_SUFFIXES, Format, format_of
from .base import Runner
from .pytorch import TorchRunner

__all__ = ["Runner", "TorchRunner", "is_artifact", "open_runner", "read_inputs"]


def is_artifact(path: str | Path) -> bool:
    return format_of(path) is not None


def open_runner(path: str | Path, *, variant: str | None = None, threads: int = 2, runtime: str = "auto",
                emulate: dict | None = None, require_metadata: bool = True) -> Runner:
    """A runner for a checkpoint or an artifact, chosen by what ``path`` is (its row in the formats table).

    ``emulate`` (formats that run on an emulated CPU: .tflite): ``{"cpu", "fp16", "xnnpack"}`` runs it on an
    emulated phone CPU (:class:`vitdeploy.runtimes.tflite_arm.EmulatedTFLiteRunner`). ``require_metadata=False``
    opens a .tflite/.pte vitdeploy did not write (it can be timed; comparing it needs its preprocessing).
    ``runtime``: the Core ML runtime (a folder format's runner takes it instead of ``threads``).
    """
    path = Path(path)
    fmt = format_of(path)
    if emulate and (fmt is None or not fmt.emulated):
        raise VitdeployError(f"{path}: an emulated phone CPU runs {'/'.join(EMULATED_SUFFIXES)} artifacts only")
    if emulate:
        return _open_emulated_tflite(path, threads, emulate)
    if fmt is not None and fmt.folder:
        return _open_folder(path, fmt, runtime)
    if fmt is not None:
        runner = _open_file(path, fmt, threads)
        return _with_preprocessing(runner) if require_metadata else runner
    from .. import checkpoints

    return TorchRunner(checkpoints.load(path, variant=variant))


def _open_file(path: Path, fmt: Format, threads: int) -> Runner:
    if not path.is_file():
        raise VitdeployError(f"{path}: no such file")
    return runner_class(fmt)(path, threads=threads)


def runner_class(fmt: Format) -> type:
    """The runner class the row names (``"module:Class"``, imported now); one-line error when its runtime is
    missing."""
    import importlib

    module, _, name = fmt.runner.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise VitdeployError(f"running {fmt.suffix} needs {fmt.runtime_package}: pip install "
                             f"'vitdeploy[{fmt.extra}]' ({e})") from None


def _open_emulated_tflite(path: Path, threads: int, emulate: dict) -> Runner:
    if not path.is_file():
        raise VitdeployError(f"{path}: no such file")
    from .tflite_arm import EmulatedTFLiteRunner

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


def _open_folder(path: Path, fmt: Format, runtime: str) -> Runner:
    if not path.is_dir():
        raise VitdeployError(f"{path}: not an {fmt.suffix} directory")
    return runner_class(fmt)(path, runtime=runtime)


def read_inputs(paths: list[str | Path], runner: Runner) -> np.ndarray:
    """Image files (preprocessed as the runner's source expects) or one .npy NCHW float32 batch, as is."""
    from ..preprocessing import load_images

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