"""The converter contract: one request in, one :class:`Conversion` out, and one rule that writes it.

Every target (:data:`vitdeploy.targets.CONVERTERS`) exposes ``convert(model, request) -> Conversion``: it
exports the prepared model, quantizes it and measures what it must (the w8a8 accuracy judgement, recorded in
the artifact's own metadata), and returns the artifact unwritten in :attr:`Conversion.artifact`.
:func:`publish` writes it, the same way for every target: at ``out`` when it met its accuracy target, else
aside as ``<stem>.below-target<suffix>`` (:data:`BELOW_TARGET_SUFFIX`), so nothing downstream picks it up
as if it passed (``convert`` exits 1 on it, ``package`` refuses it).
A leaf of :mod:`vitdeploy.targets`: the target modules import it, it imports none of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Mapping

from .. import files
from ..errors import VitdeployError
from ..verdict import target_record

BELOW_TARGET_SUFFIX = ".below-target"  # a w8a8 artifact that missed its accuracy target is written aside
MIN_COSINE = 0.99  # the worst held-out image's logits cosine vs float: the bar every int8 target shares
# What a TFLite or ExecuTorch file's metadata "quantize" has always said for these canonical names (the rest:
# the name itself); readers of older files and of new ones rely on it (parity.precision, summary, packaging).
STORED_QUANTIZE = {"fp32": "none", "w8a8": "int8"}


@dataclass(frozen=True, eq=False)
class ConvertRequest:
    """Everything a converter is asked: the checkpoint's facts, where the artifact goes and how to make it."""

    input_size: tuple[int, int, int]  # (3, H, W) of the checkpoint
    preprocessing: object  # vitdeploy.preprocessing.Preprocessing of the checkpoint
    out: Path  # where the artifact goes when it meets its target (publish decides)
    variant: str | None = None
    source_model: object = None  # the checkpoint's model before the passes (Core ML counts its ops); None: the same
    precision: object = None  # vitdeploy.precisions.Precision: weights, activations, compute (Core ML)
    calib: object = None  # uint8 NHWC RGB pixels (n, H, W, 3) or None: the built-in natural images
    labels: list[str] | None = None
    raw_input: bool = False  # preprocessed NCHW float input instead of pixels
    int8_io: bool = False
    int8_finetune: int = 0  # steps of quantization-aware fine-tuning (TFLite w8a8)
    metadata: Mapping = field(default_factory=dict)  # the user's keys stored in the artifact
    options: Mapping[str, object] = field(default_factory=dict)  # target-specific: delegate, deployment_target...
    progress: Callable[[str], None] | None = None

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))
        object.__setattr__(self, "metadata", dict(self.metadata or {}))

    def say(self, message: str) -> None:
        """One stage of the conversion, for the caller's progress line."""
        if self.progress is not None:
            self.progress(message)

    def option(self, name: str, default=None):
        """A target-specific option (``delegate``, ``deployment_target``...), ``default`` when not given."""
        value = self.options.get(name)
        return default if value is None else value


def request_from(target: str, *, quantize="fp32", precision=None, **arguments) -> ConvertRequest:
    """A request from an earlier entry point's keyword arguments (``convert_tflite(...)``): ``quantize`` and
    ``precision`` in the API's words, parsed for ``target`` (:func:`vitdeploy.precisions.parse_call`); the
    request's fields by name, everything else a target-specific option."""
    from ..precisions import parse_call

    known = {f.name for f in fields(ConvertRequest)}
    options = {k: v for k, v in arguments.items() if k not in known}
    return ConvertRequest(**{k: v for k, v in arguments.items() if k in known}, options=options,
                          precision=parse_call(target, quantize, precision))


@dataclass(kw_only=True)
class Conversion:
    """Base of every converter's result dataclass, JSON-able through :meth:`to_dict` (the path as a string).

    A subclass declares at least ``path``, ``size_bytes``, ``seconds``, ``accuracy_target_met`` and
    ``warnings`` (a miss's line last: ``convert`` fails with it). ``artifact`` is what :func:`publish` writes:
    the file's bytes, or ``save(path)`` for a folder a library writes (an .mlpackage); never in the report.
    """

    artifact: bytes | Callable[[Path], None] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        d = asdict(replace(self, artifact=None))
        d.pop("artifact")
        d["path"] = str(self.path)
        return d


def stored_quantize(precision) -> str:
    """The metadata's ``quantize`` word for a :class:`~vitdeploy.precisions.Precision` (:data:`STORED_QUANTIZE`)."""
    return STORED_QUANTIZE.get(precision.name, precision.name)


def below_target_path(out: Path) -> Path:
    """Where an artifact that missed its accuracy target goes: ``net.tflite`` -> ``net.below-target.tflite``."""
    out = Path(out)
    return out.with_name(out.stem + BELOW_TARGET_SUFFIX + out.suffix)


def publish(conversion: Conversion, out: Path, progress: Callable[[str], None] | None = None) -> Conversion:
    """Write ``conversion``'s artifact at ``out``, or aside (:func:`below_target_path`) when it missed its
    accuracy target; fills in the path, size and seconds written. Nothing appears at a path unless complete."""
    if conversion.artifact is None:
        raise ValueError("the conversion holds no artifact to write (published already?)")
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    path = Path(out) if conversion.accuracy_target_met else below_target_path(out)
    write_artifact(conversion.artifact, path, say)
    conversion.artifact = None
    conversion.path, conversion.size_bytes = path, artifact_size(path)
    conversion.seconds = round(conversion.seconds + time.perf_counter() - started, 2)
    say(f"wrote {path} ({conversion.size_bytes / 1e6:.1f} MB) in {conversion.seconds:.1f} s")
    return conversion


def write_artifact(artifact: bytes | Callable[[Path], None], path: Path,
                   say: Callable[[str], None] | None = None) -> None:
    """Bytes written beside ``path`` and renamed; a library's folder saved beside it and renamed into place
    (a file or link already at ``path`` goes, an old folder only once the new one is complete)."""
    path = Path(path)
    if isinstance(artifact, (bytes, bytearray, memoryview)):
        files.write_atomically(path, bytes(artifact))
        return
    if say is not None:
        say(f"writing {path}")  # a package takes seconds to save (its weights are serialized now)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        staged = work / path.name
        artifact(staged)
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            os.replace(path, work / "previous")
        files.publish(staged, path, aside=work / "previous")  # not after a Ctrl-C; the old one goes with ``work``
    finally:
        shutil.rmtree(work, ignore_errors=True)


def artifact_size(path: Path) -> int:
    """Bytes of a file, or of every file in a folder (an .mlpackage)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def accuracy_record(measured: float, images, threshold: float = MIN_COSINE) -> dict:
    """The w8a8 verdict an artifact stores (:mod:`vitdeploy.verdict`): the worst held-out image's logits
    cosine against the float model, on ``images`` images never calibrated on."""
    return target_record("cosine_min", threshold, measured, against=f"the float model, {images} held-out images")


def missed_target_line(measured: float, detail: str, instead: str) -> str:
    """The warning of a w8a8 artifact below :data:`MIN_COSINE`: what was tried (``detail``), where it went,
    and what to use ``instead``."""
    return (f"w8a8 misses the accuracy target: worst held-out image logits cosine {measured:.4f} < {MIN_COSINE}"
            f"{detail}; written aside as {BELOW_TARGET_SUFFIX}; use {instead}")


def check_image_arguments(input_size, preprocessing, calib) -> tuple[int, int, int]:
    """The checks every target shares: (3, H, W) input, RGB/BGR source, calibration pixels (n, H, W, 3)."""
    import numpy as np

    if len(tuple(input_size)) != 3 or int(input_size[0]) != 3:
        raise VitdeployError(f"input size must be (3, H, W), got {tuple(input_size)}")
    if preprocessing.channel_order not in ("RGB", "BGR"):
        raise VitdeployError(f"channel order must be RGB or BGR, got {preprocessing.channel_order!r}")
    _, height, width = (int(v) for v in input_size)
    if calib is not None:
        calib = np.asarray(calib)
        if calib.ndim != 4 or calib.shape[1:] != (height, width, 3) or len(calib) == 0:
            raise VitdeployError(f"calibration images must be (n, {height}, {width}, 3) RGB pixels, "
                                 f"got shape {calib.shape}")
    return 3, height, width
