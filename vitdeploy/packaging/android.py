"""Android (``.tflite``): the model into a Gradle app module, with labels and the Kotlin helper.

The model goes under ``app/src/main/assets/``, ``<stem>_labels.txt`` next to it when the model carries
labels, and ``<Class>.kt`` (named after the model, or ``--class-name``) in the app's package (from the module's ``namespace`` or the
manifest's ``package``): LiteRT ``Interpreter``, ``Bitmap`` in, top-K out. The module's Gradle
file is never rewritten; the report says when it lacks ``noCompress += "tflite"`` or the LiteRT
dependency, with the exact line to add.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import VitdeployError
from ..formats import FORMATS
from ..formats.executorch import RUNTIME_VERSION
from ..untrusted import reading
from .codegen import (PACKAGE_NAME, class_identifier, comment_text, default_class_name, helper_file_name,
                      kotlin_helper, labels_text)
from .files import Writer, refuse_file
from .inspect import inspect_pte, inspect_tflite, pte_warnings
from .report import PackageReport

DEFAULT_ANDROID_PACKAGE = "com.vitdeploy.classifier"
NO_COMPRESS_KTS = 'androidResources { noCompress += "tflite" }'
NO_COMPRESS_GROOVY = "androidResources { noCompress 'tflite' }"
LITERT_KTS = 'implementation("com.google.ai.edge.litert:litert:1.4.2")'
LITERT_GROOVY = "implementation 'com.google.ai.edge.litert:litert:1.4.2'"


def labels_asset(artifact: Path) -> str:
    """The labels asset of a model: ``<stem>_labels.txt``, one per model, so several models share assets/."""
    return f"{artifact.stem}_labels.txt"


def helper_class(artifact: Path, class_name: str | None) -> str:
    """The Kotlin helper's class: ``class_name`` (checked) or the one named after the model."""
    if class_name is not None:
        return class_identifier(class_name, "android")
    return default_class_name(artifact.name, "android")


def _executorch_lines() -> tuple[str, str]:
    return (f'implementation("org.pytorch:executorch-android:{RUNTIME_VERSION}")',
            f"implementation 'org.pytorch:executorch-android:{RUNTIME_VERSION}'")


def package_android_pte(artifact: Path, *, into, out, force: bool, top_k: int,
                        android_package: str | None, class_name: str | None = None) -> PackageReport:
    """A .pte (one file: its metadata is inside) under assets/, its labels, and the ExecuTorch helper
    ``<Class>.kt``.

    The helper copies the asset to the app's files dir (Module.load takes a path), so the Gradle file
    needs no noCompress entry; the report says when it lacks the executorch-android dependency.
    """
    class_name = helper_class(artifact, class_name)
    helper = helper_file_name(class_name, "android")
    info = inspect_pte(artifact)
    report = PackageReport(platform="android", artifact=artifact, destination=Path(into or out),
                           mode="into" if into is not None else "out")
    report.warnings.extend(pte_warnings(info))
    labels_name = labels_asset(artifact) if info["labels"] else None
    kts_line, groovy_line = _executorch_lines()

    def add_files(writer: Writer, folder: Path, package_name: str, helper_dir: Path) -> None:
        writer.add(folder / artifact.name, artifact.read_bytes())
        if labels_name:
            writer.add(folder / labels_name, labels_text(info["labels"]))
        writer.add_helper(helper_dir / helper, kotlin_helper(
            info, package_name=package_name, model_asset=artifact.name, labels_asset=labels_name, top_k=top_k,
            class_name=class_name, executorch=True).encode(), artifact.name)

    if out is not None:
        folder = Path(out)
        refuse_file(folder)
        package_name = android_package or DEFAULT_ANDROID_PACKAGE
        writer = Writer(report, force)
        add_files(writer, folder, package_name, folder)
        shown = comment_text(artifact.name)  # a name in Markdown: no line break of its own
        writer.add(folder / "README.md", f"""# {shown} for Android (vitdeploy package)

Copy `{shown}`{' and `' + comment_text(labels_name) + '`' if labels_name else ''}
to `app/src/main/assets/`, and `{helper}` to your sources (it declares `package {package_name}`).

```kotlin
dependencies {{
    {kts_line}
}}
```

Input: [1, {info['height']}, {info['width']}, 3] float32 RGB pixels 0..255 (normalization runs inside the
program). Output: {info['num_classes']} logits; the helper applies softmax.

```kotlin
val classifier = {class_name}(context)   // copies assets/{shown} to filesDir, loads it
val top = classifier.classify(bitmap)           // List<{class_name}.Recognition>, top {top_k}
classifier.close()
```
""".encode())
        writer.check()
        writer.run()
        copied = artifact.name + (f" and {labels_name}" if labels_name else "")
        report.next_steps.append(f"copy {copied} to app/src/main/assets/ and {helper} to your package "
                                 "(see README.md)")
        return report

    app = _app_for(into, android_package, report)
    writer = Writer(report, force)
    add_files(writer, app["module_dir"] / "src" / "main" / "assets", app["package"], app["source_dir"])
    writer.check()
    writer.run()
    build_file: Path = app["build_file"]
    if not re.search(r"org\.pytorch:executorch-android\b", app["build_text"]):
        report.warnings.append(f"{build_file} has no ExecuTorch dependency; add inside dependencies {{ }}: "
                               f"{kts_line if build_file.suffix == '.kts' else groovy_line}")
    report.next_steps.append(f"use it: val classifier = {class_name}(context); "
                             f"val top = classifier.classify(bitmap)  (package {app['package']})")
    return report


def package_android(artifact: Path, *, into, out, force: bool, top_k: int,
                    android_package: str | None, class_name: str | None = None) -> PackageReport:
    class_name = helper_class(artifact, class_name)
    helper = helper_file_name(class_name, "android")
    info = inspect_tflite(artifact)
    report = PackageReport(platform="android", artifact=artifact, destination=Path(into or out),
                           mode="into" if into is not None else "out")
    if not info["vitdeploy"]:
        report.warnings.append("no vitdeploy metadata in the model: the helper assumes RGB pixels 0..255 "
                               "with normalization inside the graph")
    if info["labels"] is None:
        report.warnings.append("the model carries no labels: results are named by class index")
    labels_name = labels_asset(artifact) if info["labels"] else None

    if out is not None:
        folder = Path(out)
        refuse_file(folder)
        package_name = android_package or DEFAULT_ANDROID_PACKAGE
        kotlin = kotlin_helper(info, package_name=package_name, model_asset=artifact.name,
                               labels_asset=labels_name, top_k=top_k, class_name=class_name).encode()
        writer = Writer(report, force)
        writer.add(folder / artifact.name, artifact.read_bytes())
        if labels_name:
            writer.add(folder / labels_name, labels_text(info["labels"]))
        writer.add_helper(folder / helper, kotlin, artifact.name)
        writer.add(folder / "README.md", _android_readme(comment_text(artifact.name), labels_name, package_name, info,
                                                         top_k, class_name).encode())
        writer.check()
        writer.run()
        report.next_steps.append(f"copy {artifact.name}{' and ' + labels_name if labels_name else ''} to "
                                 f"app/src/main/assets/ and {helper} to your package (see README.md)")
        return report

    app = _app_for(into, android_package, report)
    kotlin = kotlin_helper(info, package_name=app["package"], model_asset=artifact.name,
                           labels_asset=labels_name, top_k=top_k, class_name=class_name).encode()
    assets = app["module_dir"] / "src" / "main" / "assets"
    writer = Writer(report, force)
    writer.add(assets / artifact.name, artifact.read_bytes())
    if labels_name:
        writer.add(assets / labels_name, labels_text(info["labels"]))
    writer.add_helper(app["source_dir"] / helper, kotlin, artifact.name)
    writer.check()
    writer.run()

    build_file: Path = app["build_file"]
    kts = build_file.suffix == ".kts"
    if not app["no_compress"]:
        report.warnings.append(f"{build_file} does not keep .tflite uncompressed; the helper then copies the model "
                               f"into memory instead of mapping it. Add inside android {{ }}: "
                               f"{NO_COMPRESS_KTS if kts else NO_COMPRESS_GROOVY}")
    if not app["litert"]:
        report.warnings.append(f"{build_file} has no LiteRT dependency; add inside dependencies {{ }}: "
                               f"{LITERT_KTS if kts else LITERT_GROOVY}")
    report.next_steps.append(f"use it: val classifier = {class_name}(context); "
                             f"val top = classifier.classify(bitmap)  (package {app['package']})")
    return report


def _android_readme(model_file: str, labels_name: str | None, package_name: str, info: dict, top_k: int,
                    class_name: str) -> str:
    labels_name = comment_text(labels_name) if labels_name else None  # from the model's file name: one line
    labels_line = f"- `{labels_name}` -> `app/src/main/assets/{labels_name}`\n" if labels_name else ""
    return f"""# {model_file} for Android (vitdeploy package)

Copy:
- `{model_file}` -> `app/src/main/assets/{model_file}`
{labels_line}- `{class_name}.kt` -> your sources (class `{class_name}`); it declares `package {package_name}`: change that line to
  your app's package (or re-run with `--package`, or use `--into` to detect it).

In the app module's `build.gradle.kts`:

```kotlin
android {{
    {NO_COMPRESS_KTS}   // memory-map the model instead of copying it
}}
dependencies {{
    {LITERT_KTS}
}}
```

Input: `{comment_text(info['input_name'])}`, [1, {info['height']}, {info['width']}, 3] {info['input_dtype']} RGB pixels 0..255
(normalization runs inside the model). Output: {info['num_classes']} logits; the helper applies softmax.

```kotlin
val classifier = {class_name}(context)           // loads assets/{model_file}
val top = classifier.classify(bitmap)                   // List<{class_name}.Recognition>, top {top_k}
classifier.close()
```
"""


def find_android_app(app_dir: Path) -> dict:
    """Locate the application module, its package and source folder under ``app_dir``."""
    app_dir = Path(app_dir)
    if not app_dir.is_dir():
        raise VitdeployError(f"{app_dir}: no such folder")

    def is_module(d: Path) -> bool:
        return (d / "src" / "main" / "AndroidManifest.xml").is_file() and _build_file(d) is not None

    with reading(app_dir):  # the user's app: a build file that is not text is named
        if is_module(app_dir):
            module = app_dir
        else:
            candidates = [d for d in sorted(app_dir.iterdir()) if d.is_dir() and is_module(d)]
            apps = [d for d in candidates if "com.android.application" in _build_file(d).read_text(encoding="utf-8")]
            if not candidates:
                raise VitdeployError(f"{app_dir} is not an Android app: no module with src/main/AndroidManifest.xml "
                                     "and build.gradle(.kts) in it")
            if len(apps) == 1:
                module = apps[0]
            elif (app_dir / "app") in (apps or candidates):
                module = app_dir / "app"
            else:
                names = ", ".join(d.name for d in (apps or candidates))
                raise VitdeployError(f"{app_dir} has several modules ({names}); pass the app module's folder as --into")
        build_file = _build_file(module)
        build_text = build_file.read_text(encoding="utf-8")
        package_name = _namespace(build_text) or _manifest_package(module / "src" / "main" / "AndroidManifest.xml")
        if not package_name:
            raise VitdeployError(f"{module}: no namespace in {build_file.name} and no package in AndroidManifest.xml")
        if not PACKAGE_NAME.fullmatch(package_name):
            raise VitdeployError(f"{module}: '{package_name}' is not a valid package name")
        rel = Path(*package_name.split("."))
        java_dir, kotlin_dir = module / "src/main/java" / rel, module / "src/main/kotlin" / rel
        source_dir = kotlin_dir if kotlin_dir.is_dir() and not java_dir.is_dir() else java_dir
        return {"module_dir": module, "build_file": build_file, "build_text": build_text, "package": package_name,
                "source_dir": source_dir, "no_compress": _keeps_tflite_uncompressed(build_text),
                "litert": bool(re.search(r"com\.google\.ai\.edge\.litert:litert\b|org\.tensorflow:tensorflow-lite\b",
                                         build_text))}


def _build_file(module: Path) -> Path | None:
    for name in ("build.gradle.kts", "build.gradle"):
        if (module / name).is_file():
            return module / name
    return None


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)


def _namespace(build_text: str) -> str | None:
    m = re.search(r"""(?:^|[\s{;])namespace\s*(?:=\s*)?["']([^"']+)["']""", _strip_comments(build_text))
    return m.group(1) if m else None


def _manifest_package(manifest: Path) -> str | None:
    m = re.search(r"""<manifest\b[^>]*\bpackage\s*=\s*["']([^"']+)["']""", manifest.read_text(encoding="utf-8"), re.S)
    return m.group(1) if m else None


def _keeps_tflite_uncompressed(build_text: str) -> bool:
    text = _strip_comments(build_text)
    extension = FORMATS["tflite"].suffix.lstrip(".")  # what noCompress names
    return any(extension in m.group(0) for m in re.finditer(r"noCompress[^\n]*", text))


def _app_for(into, android_package: str | None, report: PackageReport) -> dict:
    """The Android app module at ``into`` (recorded in the report); ``--package`` must agree with its namespace."""
    app = find_android_app(Path(into))
    report.project = {k: str(v) if isinstance(v, Path) else v for k, v in app.items() if k != "build_text"}
    if android_package and android_package != app["package"]:
        raise VitdeployError(f"--package {android_package} differs from the app's namespace {app['package']}; "
                             "leave it out with --into")
    return app
