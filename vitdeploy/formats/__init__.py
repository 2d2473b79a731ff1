"""The artifact formats vitdeploy writes, as one table every stage reads (a leaf of the pipeline).

One row per target: its file suffix, the platforms that run it, the precisions it can hold (canonical names
of :mod:`vitdeploy.precisions`), the conversion options it takes, its host runtime and the compute units a
phone's harness runs it on; and the input layouts artifacts declare. This is the one place that dispatches on
a format: everything else asks :func:`format_of` what a file is and reads the row (tests/test_architecture.py
refuses a suffix literal or a target-name comparison anywhere else). A new target is a new row plus its
converter (``vitdeploy.targets``), its file reader (``vitdeploy.formats.<name>``) and its runtime
(``vitdeploy.runtimes``). Like ultralytics' ``export_formats()``, but typed.

This module imports nothing heavy; ``formats.tflite`` / ``formats.coreml`` / ``formats.executorch`` read and
write the files, and a row names its runner as a ``"module:Class"`` string, imported when a file is run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath

# Input layouts an artifact declares in its metadata.
LAYOUT_PIXELS = "NHWC-pixels"  # TFLite, ExecuTorch: RGB pixels 0..255, preprocessing inside the graph
LAYOUT_IMAGE = "image"  # Core ML: an image input (CVPixelBuffer), preprocessing inside the model
LAYOUT_RAW = "NCHW-raw"  # either: already preprocessed NCHW floats, as the PyTorch checkpoint takes them

# The compute units each phone harness takes for its platform's own format (docs/harness-protocol.md): the
# delegates on Android, Apple's MLComputeUnits on iOS (the harness's order).
ANDROID_UNITS = ("xnnpack", "cpu", "gpu", "nnapi")
IOS_UNITS = ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")
# What --calib acts on: activation-quantized files (weight-only and float modes need no images).
_CALIBRATED = ("w8a8", "w8a16")


@dataclass(frozen=True)
class Format:
    name: str  # the --target value
    suffix: str  # what the artifact is called
    platforms: tuple[str, ...]  # where it is deployed: what `package --platform` and `profile --device` accept
    precisions: tuple[str, ...]  # canonical precisions a file of this format can hold
    host_latency: bool  # its runtime runs on this host's CPU, so `profile`, `demo` and `build` time it here
    title: str = ""  # how messages name the format ("TFLite", "Core ML", "ExecuTorch")
    # Its host runner, "module:Class", imported only when a file is run (runtimes.open.runner_class), and the pip
    # package and vitdeploy extra that install that runtime (the one-line hint when it is missing).
    runner: str = ""
    runtime_package: str = ""
    extra: str = ""
    folder: bool = False  # the artifact is a folder (an .mlpackage), not one file
    # --precision values of an unquantized model that are the model's compute precision (Core ML fp16/fp32);
    # a quantized model of the format computes in one of them too (precisions.Precision.compute).
    compute_precisions: tuple[str, ...] = ()
    default_precision: str = "fp32"  # what `convert` writes when no precision is given
    # The conversion options that act on this format -> the canonical precisions they act on (None: any);
    # any other option of options.SCOPE is refused for it (options.refuse_inapplicable).
    options: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    # Platform -> the compute units its harness runs this format on (the keys are `platforms`).
    compute_units: dict[str, tuple[str, ...]] = field(default_factory=dict)
    intermediates: bool = False  # its runtime can keep every intermediate tensor (parity --localize)
    emulated: bool = False  # it runs on an emulated phone CPU (parity --cpu / --device)
    # Older suffixes of the same format: named in a refusal (`package` of an .mlmodel), never written or run.
    old_suffixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert set(self.compute_units) == set(self.platforms), f"{self.name}: compute units per platform"

    def accepts(self, path) -> bool:
        """``path`` is what a file of this format looks like: a folder or a file, as the row says."""
        from pathlib import Path

        return Path(path).is_dir() if self.folder else Path(path).is_file()


FORMATS: dict[str, Format] = {
    "tflite": Format("tflite", ".tflite", ("android",),
                     ("fp32", "fp16", "fp16-compute", "dynamic", "w8a8", "w8a16"), host_latency=True, title="TFLite",
                     runner="vitdeploy.runtimes.tflite:TFLiteRunner", runtime_package="ai-edge-litert",
                     extra="tflite", options={"--int8-io": ("w8a8",), "--int8-finetune": ("w8a8",),
                                              "--calib": _CALIBRATED},
                     compute_units={"android": ANDROID_UNITS}, intermediates=True, emulated=True),
    # Core ML's fp32/fp16 are compute precisions of an unquantized model (--precision), w8/w8a8 quantize it.
    # Core ML latency needs a Mac or an iPhone: here the MIL interpreter checks numerics, not speed.
    "coreml": Format("coreml", ".mlpackage", ("ios",), ("fp32", "fp16", "w8", "w8a8"),
                     host_latency=False, title="Core ML", runner="vitdeploy.runtimes.coreml:CoreMLRunner",
                     runtime_package="coremltools", extra="coreml", folder=True, compute_precisions=("fp16", "fp32"),
                     default_precision="fp16",
                     options={"--deployment-target": None, "--compute-units": None, "--calib": _CALIBRATED},
                     compute_units={"ios": IOS_UNITS}, intermediates=True, old_suffixes=(".mlmodel",)),
    # "cpu" is ExecuTorch's XNNPACK delegate (and portable kernels) on both phones; "coreml" on iOS runs a
    # program lowered with the Core ML delegate on the units chosen when it was lowered (no per-run switch).
    "executorch": Format("executorch", ".pte", ("android", "ios"), ("fp32", "w8a8"), host_latency=True,
                         title="ExecuTorch", runner="vitdeploy.runtimes.executorch:ExecuTorchRunner",
                         runtime_package="executorch", extra="executorch",
                         options={"--delegate": None, "--calib": _CALIBRATED},
                         compute_units={"android": ("cpu",), "ios": ("cpu", "coreml")}),
}
TARGETS = tuple(sorted(FORMATS))
ARTIFACT_SUFFIXES = tuple(f.suffix for f in FORMATS.values())
HOST_TIMED_TARGETS = tuple(name for name, f in FORMATS.items() if f.host_latency)
EMULATED_SUFFIXES = tuple(f.suffix for f in FORMATS.values() if f.emulated)  # what runs on an emulated phone CPU
LOCALIZED_SUFFIXES = tuple(f.suffix for f in FORMATS.values() if f.intermediates)  # what parity --localize reads
PLATFORMS = tuple(dict.fromkeys(p for f in FORMATS.values() for p in f.platforms))  # ("android", "ios")


def format_of(path, *, old: bool = False) -> Format | None:
    """The row whose suffix ``path`` has (``.tflite``, ``.mlpackage``, ``.pte``), or None: the one way to tell
    what format a file is. ``old``: an older suffix of a format (``.mlmodel``) names it too."""
    suffix = PurePath(path).suffix.lower()
    return next((f for f in FORMATS.values() if f.suffix == suffix or (old and suffix in f.old_suffixes)), None)


def formats_on(platform: str) -> tuple[Format, ...]:
    """The formats ``platform`` (android, ios) runs, in table order."""
    return tuple(f for f in FORMATS.values() if platform in f.platforms)


def suffixes_on(platform: str) -> tuple[str, ...]:
    """The suffixes of the formats ``platform`` runs (``android``: .tflite, .pte), what its harness takes."""
    return tuple(f.suffix for f in formats_on(platform))


def own_format(platform: str) -> Format:
    """``platform``'s own format, the one only it runs (android: TFLite, ios: Core ML)."""
    return next(f for f in formats_on(platform) if f.platforms == (platform,))


def platform_units(platform: str) -> tuple[str, ...]:
    """The compute units of ``platform``'s own format: its harness's full set."""
    return own_format(platform).compute_units[platform]


def refuse_on_platform(path, platform: str, where: str) -> None:
    """A one-line error when ``platform`` (android, ios) cannot run the artifact ``path``, as the table says."""
    from ..errors import VitdeployError

    fmt = format_of(path)
    name = PurePath(path).name
    if fmt is None:
        raise VitdeployError(f"{name}: profile on a device takes an artifact ({', '.join(ARTIFACT_SUFFIXES)})")
    if platform not in fmt.platforms:
        raise VitdeployError(f"{name}: a {fmt.suffix} runs on {' and '.join(fmt.platforms)}, not on {where} "
                             f"({platform}); convert to {' or '.join(suffixes_on(platform))}")


def artifact_name(stem: str, target: str, precision, variant: str | None = None) -> str:
    """``<stem>_<mode><suffix>``, the one naming of ``convert``, ``demo`` and ``build``: the mode is the
    :class:`~vitdeploy.precisions.Precision`'s canonical name; a quantized Core ML model's names its compute
    precision first (``fp16``, ``fp16_w8``). ``variant`` (``build``: several checkpoints, maybe of one variant)
    joins the stem unless the stem already names it: ``mine_levit_128s_fp32.tflite``, ``levit_128s_fp32.tflite``."""
    if variant and not re.search(rf"(^|[_.-]){re.escape(variant)}($|[_.-])", stem):
        stem = f"{stem}_{variant}"
    return f"{stem}_{precision.describe('_')}{FORMATS[target].suffix}"
