"""``vitdeploy package``: put a converted model into an app the way each platform expects.

iOS (``.mlpackage``, :mod:`.ios`)
    The model package, ``<Name>_labels.txt`` when the model carries labels, and
    ``<Class>.swift`` (a Vision-based helper: ``CVPixelBuffer`` in, top-K
    ``(label, probability)`` out). With ``into=APP_DIR`` the files go into the app target's source
    folder and, unless that is an Xcode 16 synchronized folder, into ``project.pbxproj`` (edited
    with the ``pbxproj`` library, checked again before it is written).

Android (``.tflite``, :mod:`.android`)
    The model under ``app/src/main/assets/``, ``<stem>_labels.txt`` next to it, and
    ``<Class>.kt`` in the app's package (LiteRT ``Interpreter``, ``Bitmap`` in, top-K
    out). The Gradle file is never rewritten; the report says what it lacks.

ExecuTorch (``.pte``, both platforms)
    The program (one file: ``vitdeploy convert`` stores preprocessing and labels inside it), a
    labels file, and an ExecuTorch helper class (``Module``, XNNPACK) in Kotlin or Swift:
    Android assets / iOS bundle resources. The report says when the app lacks the ExecuTorch
    dependency; neither the Gradle file nor the Xcode package list is rewritten.

Each model gets its own helper class, named after the model file (``levit_128s_w8a8.tflite`` ->
``Levit128sW8a8Classifier``, :func:`.codegen.default_class_name`) or ``class_name``, so several models
live in one app; a helper of that class generated for another model is never replaced.

``out=DIR`` writes the same files into DIR with a ``README.md`` saying where they go.
Existing files are never replaced without ``force=True`` (identical files are skipped), and
every file is written atomically (written aside, then renamed).

Modules: :mod:`.inspect` reads the artifact, :mod:`.codegen` renders the helpers,
:mod:`.files` writes, :mod:`.report` holds :class:`PackageReport`; :mod:`.ios` and
:mod:`.android` use those and never each other.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckFailed, VitdeployError
from ..formats import Format, format_of, own_format
from ..formats.coreml import MANIFEST
from ..formats.executorch import PTE_SUFFIX, is_pte  # noqa: F401 (PTE_SUFFIX re-exported)
from .android import package_android, package_android_pte
from .codegen import class_identifier, default_class_name, helper_file_name
from .ios import package_ios, package_ios_pte
from .report import PackageReport

__all__ = ["PLATFORMS", "PackageReport", "default_class_name", "helper_file_name", "infer_platform", "package"]

PLATFORMS = ("ios", "android")


def package(artifact, *, platform: str, into: Path | None = None, out: Path | None = None, force: bool = False,
            top_k: int = 5, android_package: str | None = None, allow_below_target: bool = False,
            class_name: str | None = None) -> PackageReport:
    """Put ``artifact`` (.mlpackage for ``ios``, .tflite for ``android``, .pte for either) into an app.

    Exactly one of ``into`` (an app project: Xcode project folder / Android project or module) or
    ``out`` (a plain folder) is required. ``top_k`` is the helper's default number of results.
    ``android_package``: Kotlin package of the helper in ``out`` mode (``into`` detects it).
    ``class_name``: the helper's class (and file) name, a Swift / Kotlin identifier; default: named after the
    model (:func:`default_class_name`). A helper of that class generated for another model is refused.
    Raises :class:`VitdeployError` (exit 2) for bad input, a folder that is not an app, or an
    existing different file without ``force``. An artifact whose converter recorded it below its accuracy
    target (:mod:`vitdeploy.verdict`) is refused with :class:`CheckFailed` (exit 1, nothing written) unless
    ``allow_below_target``: then it is packaged with the verdict as the report's first warning.
    """
    if platform not in PLATFORMS:
        raise VitdeployError(f"unknown platform '{platform}'; choose ios or android")
    if (into is None) == (out is None):
        raise VitdeployError("give exactly one of --into APP_DIR or -o DIR")
    if int(top_k) < 1:
        raise VitdeployError(f"top-k must be at least 1, got {top_k}")
    if class_name is not None:
        class_identifier(class_name, platform)
    artifact = Path(artifact)
    _check_artifact(artifact, platform)
    below = below_target(artifact)
    if below and not allow_below_target:
        raise CheckFailed(f"{artifact}: {below}; not packaged (package it anyway: --allow-below-target)")
    if is_pte(artifact):
        if platform == "ios":
            report = package_ios_pte(artifact, into=into, out=out, force=force, top_k=int(top_k),
                                     class_name=class_name)
        else:
            report = package_android_pte(artifact, into=into, out=out, force=force, top_k=int(top_k),
                                         android_package=android_package, class_name=class_name)
    elif platform == "ios":
        report = package_ios(artifact, into=into, out=out, force=force, top_k=int(top_k), class_name=class_name)
    else:
        report = package_android(artifact, into=into, out=out, force=force, top_k=int(top_k),
                                 android_package=android_package, class_name=class_name)
    if below:
        report.warnings.insert(0, f"{below}: packaged because --allow-below-target was given")
    return report


def below_target(artifact: Path) -> str | None:
    """The artifact's recorded verdict in one line when it is below its accuracy target, else None."""
    from ..verdict import describe, target_of

    try:  # a damaged file is refused by the platform's own inspector, in its words: here it has no verdict
        config = _CONFIG_READERS[format_of(artifact).name](artifact)
    except VitdeployError:
        return None
    record = target_of(config)
    return describe(record) if record is not None and not record["met"] else None


def _tflite_config(path: Path) -> dict | None:
    from ..formats.tflite import read_tflite_metadata

    return read_tflite_metadata(path)["vitdeploy"]


def _pte_config(path: Path) -> dict | None:
    from ..formats.executorch import read_pte_metadata

    return read_pte_metadata(path)["vitdeploy"]


def _coreml_config(path: Path) -> dict | None:
    from ..formats.coreml import METADATA_KEY

    return _mlpackage_config(path, METADATA_KEY)


# What each format (by its row's name) stores as vitdeploy's config.
_CONFIG_READERS = {"tflite": _tflite_config, "executorch": _pte_config, "coreml": _coreml_config}


def _mlpackage_config(path: Path, key: str) -> dict | None:
    """The vitdeploy JSON of an .mlpackage, None when absent or unreadable (inspect_mlpackage judges the rest)."""
    import json

    from .inspect import mlpackage_user_metadata

    try:
        return json.loads(mlpackage_user_metadata(path).get(key, "")) or None
    except ValueError:
        return None


def infer_platform(artifact) -> str:
    """The one platform that runs ``artifact``'s format (``ios`` for a .mlpackage, ``android`` for a .tflite),
    for a CLI whose --platform is optional."""
    fmt = format_of(artifact, old=True)
    if fmt is None:
        raise VitdeployError(f"{artifact}: not a .mlpackage, .tflite or .pte; cannot tell the platform "
                             "(pass --platform)")
    if len(fmt.platforms) > 1:
        on = " and ".join(p for p in PLATFORMS if p in fmt.platforms)
        raise VitdeployError(f"{artifact}: a {fmt.suffix} runs on {on}; pass --platform")
    return fmt.platforms[0]


# How a refusal says a platform cannot run another platform's format.
_CANNOT_RUN = {"ios": "iOS apps do not run here", "android": "Android cannot run"}


def _check_artifact(artifact: Path, platform: str) -> None:
    if not artifact.exists():
        raise VitdeployError(f"{artifact}: no such file or directory")
    fmt = format_of(artifact, old=True)
    if fmt is not None and platform not in fmt.platforms:
        own = own_format(platform)
        raise VitdeployError(f"{artifact} is a {fmt.title} model, which {_CANNOT_RUN[platform]}; "
                             f"package a {own.suffix} (vitdeploy convert --target {own.name}) for {platform}")
    # Its own suffix (not an older one), and a file or a folder as the row says; the program inside is read
    # (and refused if broken) by the platform's inspector.
    expected = fmt if fmt is not None and format_of(artifact) is fmt else own_format(platform)
    if format_of(artifact) is not expected or not expected.accepts(artifact) or (
            expected.folder and not (artifact / MANIFEST).is_file()):
        raise VitdeployError(f"{artifact} is not a {_described(expected)}")


def _described(fmt: Format) -> str:
    """``.tflite file``, ``Core ML .mlpackage (a folder with Manifest.json)``: what a refusal says it needs."""
    return f"{fmt.title} {fmt.suffix} (a folder with {MANIFEST})" if fmt.folder else f"{fmt.suffix} file"
