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
from ..formats.executorch import PTE_SUFFIX
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
    if artifact.suffix.lower() == PTE_SUFFIX:
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

    suffix = artifact.suffix.lower()
    try:  # a damaged file is refused by the platform's own inspector, in its words: here it has no verdict
        if suffix == PTE_SUFFIX:
            from ..formats.executorch import read_pte_metadata

            config = read_pte_metadata(artifact)["vitdeploy"]
        elif suffix == ".tflite":
            from ..formats.tflite import read_tflite_metadata

            config = read_tflite_metadata(artifact)["vitdeploy"]
        else:
            from ..formats.coreml import METADATA_KEY

            config = _mlpackage_config(artifact, METADATA_KEY)
    except VitdeployError:
        return None
    record = target_of(config)
    return describe(record) if record is not None and not record["met"] else None


def _mlpackage_config(path: Path, key: str) -> dict | None:
    """The vitdeploy JSON of an .mlpackage, None when absent or unreadable (inspect_mlpackage judges the rest)."""
    import json

    from .inspect import mlpackage_user_metadata

    try:
        return json.loads(mlpackage_user_metadata(path).get(key, "")) or None
    except ValueError:
        return None


def infer_platform(artifact) -> str:
    """``ios`` for a .mlpackage, ``android`` for a .tflite (for a CLI whose --platform is optional)."""
    suffix = Path(artifact).suffix.lower()
    if suffix in (".mlpackage", ".mlmodel"):
        return "ios"
    if suffix == ".tflite":
        return "android"
    if suffix == PTE_SUFFIX:
        raise VitdeployError(f"{artifact}: a .pte runs on ios and android; pass --platform")
    raise VitdeployError(f"{artifact}: not a .mlpackage, .tflite or .pte; cannot tell the platform (pass --platform)")


def _check_artifact(artifact: Path, platform: str) -> None:
    if not artifact.exists():
        raise VitdeployError(f"{artifact}: no such file or directory")
    suffix = artifact.suffix.lower()
    if suffix == PTE_SUFFIX:
        if not artifact.is_file():
            raise VitdeployError(f"{artifact} is not a .pte file")
        return  # both platforms; the program itself is read (and refused if broken) by inspect_pte
    if suffix == ".tflite" and platform == "ios":
        raise VitdeployError(f"{artifact} is a TFLite model, which iOS apps do not run here; "
                             "package a .mlpackage (vitdeploy convert --target coreml) for ios")
    if suffix in (".mlpackage", ".mlmodel") and platform == "android":
        raise VitdeployError(f"{artifact} is a Core ML model, which Android cannot run; "
                             "package a .tflite (vitdeploy convert --target tflite) for android")
    if platform == "ios" and not (suffix == ".mlpackage" and (artifact / "Manifest.json").is_file()):
        raise VitdeployError(f"{artifact} is not a Core ML .mlpackage (a folder with Manifest.json)")
    if platform == "android" and not (suffix == ".tflite" and artifact.is_file()):
        raise VitdeployError(f"{artifact} is not a .tflite file")
