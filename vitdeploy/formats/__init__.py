"""The artifact formats vitdeploy writes, as one table every stage reads (a leaf of the pipeline).

One row per target: its file suffix, the platform that runs it, the precisions it can hold (canonical
names of :mod:`vitdeploy.precisions`); and the input layouts artifacts declare. The CLI's ``--target``
choices, ``convert``'s target check and the runners' artifact suffixes read it, so a new target is a new
row plus its converter (``vitdeploy.targets``), its file reader (``vitdeploy.formats.<name>``) and its
runtime (``vitdeploy.runtimes``). Like ultralytics' ``export_formats()``, but typed.

This module imports nothing heavy; ``formats.tflite`` / ``formats.coreml`` / ``formats.executorch`` read and
write the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from ..precisions import COREML_MODES, EXECUTORCH_MODES, TFLITE_MODES, label

# Input layouts an artifact declares in its metadata.
LAYOUT_PIXELS = "NHWC-pixels"  # TFLite, ExecuTorch: RGB pixels 0..255, preprocessing inside the graph
LAYOUT_IMAGE = "image"  # Core ML: an image input (CVPixelBuffer), preprocessing inside the model
LAYOUT_RAW = "NCHW-raw"  # either: already preprocessed NCHW floats, as the PyTorch checkpoint takes them


@dataclass(frozen=True)
class Format:
    name: str  # the --target value
    suffix: str  # what the artifact is called
    platforms: tuple[str, ...]  # where it is deployed (packaging, --device)
    precisions: tuple[str, ...]  # canonical precisions a file of this format can hold
    host_latency: bool  # its runtime runs on this host's CPU, so `profile`, `demo` and `build` time it here


FORMATS: dict[str, Format] = {
    "tflite": Format("tflite", ".tflite", ("android",), tuple(TFLITE_MODES), host_latency=True),
    # Core ML's fp32/fp16 are compute precisions of an unquantized model (--precision), w8/w8a8 quantize it.
    # Core ML latency needs a Mac or an iPhone: here the MIL interpreter checks numerics, not speed.
    "coreml": Format("coreml", ".mlpackage", ("ios",), ("fp32", "fp16", *[p for p in COREML_MODES if p != "fp32"]),
                     host_latency=False),
    "executorch": Format("executorch", ".pte", ("android", "ios"), tuple(EXECUTORCH_MODES), host_latency=True),
}
TARGETS = tuple(sorted(FORMATS))
ARTIFACT_SUFFIXES = tuple(f.suffix for f in FORMATS.values())
HOST_TIMED_TARGETS = tuple(name for name, f in FORMATS.items() if f.host_latency)


def format_of(path) -> Format | None:
    """The row whose suffix ``path`` has (``.tflite``, ``.mlpackage``, ``.pte``), or None."""
    suffix = PurePath(path).suffix.lower()
    return next((f for f in FORMATS.values() if f.suffix == suffix), None)


def refuse_on_platform(path, platform: str, where: str) -> None:
    """A one-line error when ``platform`` (android, ios) cannot run the artifact ``path``, as the table says."""
    from ..errors import VitdeployError

    fmt = format_of(path)
    name = PurePath(path).name
    if fmt is None:
        raise VitdeployError(f"{name}: profile on a device takes an artifact ({', '.join(ARTIFACT_SUFFIXES)})")
    if platform not in fmt.platforms:
        raise VitdeployError(f"{name}: a {fmt.suffix} runs on {' and '.join(fmt.platforms)}, not on {where} "
                             f"({platform}); convert to {' or '.join(f.suffix for f in FORMATS.values() if platform in f.platforms)}")


def artifact_name(stem: str, target: str, quantize: str, precision: str = "fp16",
                  variant: str | None = None) -> str:
    """``<stem>_<mode><suffix>``, the one naming of ``convert``, ``demo`` and ``build``: the mode is the
    canonical precision; Core ML's names its compute precision first (``fp16``, ``fp16_w8``). ``variant``
    (``build``: several checkpoints, maybe of one variant) joins the stem unless the stem already names it:
    ``mine_levit_128s_fp32.tflite``, ``levit_128s_fp32.tflite``."""
    if variant and not re.search(rf"(^|[_.-]){re.escape(variant)}($|[_.-])", stem):
        stem = f"{stem}_{variant}"
    mode = label(target, quantize, precision)
    if target == "coreml" and mode != precision:
        mode = f"{precision}_{mode}"
    return f"{stem}_{mode}{FORMATS[target].suffix}"
