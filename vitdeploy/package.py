"""``vitdeploy package``: put a converted model into an app the way each platform expects.

iOS (``.mlpackage``)
    The model package (Xcode compiles it into ``<Name>.mlmodelc`` and generates a Swift class),
    ``<Name>_labels.txt`` when the model carries labels, and ``VitdeployClassifier.swift``: a
    Vision-based helper that takes a ``CVPixelBuffer`` and returns the top-K ``(label,
    probability)``. With ``into=APP_DIR`` the Xcode project is found, the files go into the app
    target's source folder and -- unless the folder is an Xcode 16 synchronized folder
    (``PBXFileSystemSynchronizedRootGroup``), which picks files up by itself -- they are added to
    ``project.pbxproj`` (file references, group membership, build files in the Sources /
    Resources phases). The edited project is re-parsed and checked before it is written.

Android (``.tflite``)
    The model under ``app/src/main/assets/``, ``labels.txt`` next to it when the model carries
    labels, and ``VitdeployClassifier.kt`` in the app's package (from the module's ``namespace``
    or the manifest's ``package``): LiteRT ``Interpreter``, ``Bitmap`` in, top-K out. The module's
    Gradle file is never rewritten; the report says when it lacks ``noCompress += "tflite"`` or
    the LiteRT dependency, with the exact line to add.

``out=DIR`` writes the same files into DIR with a ``README.md`` saying where they go.
Existing files are never replaced without ``force=True`` (identical files are skipped), and
every file is written atomically (written aside, then renamed).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .errors import VitdeployError

PLATFORMS = ("ios", "android")
SWIFT_HELPER = "VitdeployClassifier.swift"
KOTLIN_HELPER = "VitdeployClassifier.kt"
ANDROID_LABELS = "labels.txt"
DEFAULT_ANDROID_PACKAGE = "com.vitdeploy.classifier"
NO_COMPRESS_KTS = 'androidResources { noCompress += "tflite" }'
NO_COMPRESS_GROOVY = "androidResources { noCompress 'tflite' }"
LITERT_KTS = 'implementation("com.google.ai.edge.litert:litert:1.4.2")'
LITERT_GROOVY = "implementation 'com.google.ai.edge.litert:litert:1.4.2'"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PACKAGE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass
class PackageReport:
    """What :func:`package` did (JSON-able through :meth:`to_dict`)."""

    platform: str
    artifact: Path
    destination: Path
    mode: str  # "into" (an app project) or "out" (a plain folder)
    written: list[dict] = field(default_factory=list)  # {"path", "bytes"}
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    project: dict = field(default_factory=dict)  # what was detected about the app project
    project_edit: str = "none"  # "pbxproj" | "synchronized-folder" | "none"
    warnings: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"platform": self.platform, "artifact": str(self.artifact), "destination": str(self.destination),
                "mode": self.mode, "written": self.written, "skipped": self.skipped, "project": self.project,
                "project_edit": self.project_edit, "warnings": self.warnings, "next_steps": self.next_steps}

    def lines(self) -> list[str]:
        """Human-readable summary (what the CLI prints)."""
        out = [f"packaged {self.artifact.name} for {self.platform} -> {self.destination}"]
        out += [f"  wrote   {w['path']} ({w['bytes']} bytes)" for w in self.written]
        out += [f"  skipped {s['path']} ({s['reason']})" for s in self.skipped]
        if self.mode == "into" and self.platform == "ios":
            out.append({"pbxproj": "  Xcode project: files added to project.pbxproj",
                        "synchronized-folder": "  Xcode project: synchronized folder, files dropped in (no pbxproj edit)",
                        "none": "  Xcode project: already references every file (no pbxproj edit)"}[self.project_edit])
        out += [f"  warning: {w}" for w in self.warnings]
        out += [f"  next: {s}" for s in self.next_steps]
        return out


def package(artifact, *, platform: str, into: Path | None = None, out: Path | None = None, force: bool = False,
            top_k: int = 5, android_package: str | None = None) -> PackageReport:
    """Put ``artifact`` (.mlpackage for ``ios``, .tflite for ``android``) into an app.

    Exactly one of ``into`` (an app project: Xcode project folder / Android project or module) or
    ``out`` (a plain folder) is required. ``top_k`` is the helper's default number of results.
    ``android_package``: Kotlin package of the helper in ``out`` mode (``into`` detects it).
    Raises :class:`VitdeployError` (exit 2) for bad input, a folder that is not an app, or an
    existing different file without ``force``.
    """
    if platform not in PLATFORMS:
        raise VitdeployError(f"unknown platform '{platform}'; choose ios or android")
    if (into is None) == (out is None):
        raise VitdeployError("give exactly one of --into APP_DIR or -o DIR")
    if int(top_k) < 1:
        raise VitdeployError(f"top-k must be at least 1, got {top_k}")
    artifact = Path(artifact)
    _check_artifact(artifact, platform)
    if platform == "ios":
        return _package_ios(artifact, into=into, out=out, force=force, top_k=int(top_k))
    return _package_android(artifact, into=into, out=out, force=force, top_k=int(top_k),
                            android_package=android_package)


# ----------------------------------------------------------------------------- artifacts


def infer_platform(artifact) -> str:
    """``ios`` for a .mlpackage, ``android`` for a .tflite (for a CLI whose --platform is optional)."""
    suffix = Path(artifact).suffix.lower()
    if suffix in (".mlpackage", ".mlmodel"):
        return "ios"
    if suffix == ".tflite":
        return "android"
    raise VitdeployError(f"{artifact}: not a .mlpackage or .tflite; cannot tell the platform (pass --platform)")


def _check_artifact(artifact: Path, platform: str) -> None:
    if not artifact.exists():
        raise VitdeployError(f"{artifact}: no such file or directory")
    suffix = artifact.suffix.lower()
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


def _identifier_safe(stem: str, what: str) -> str:
    if not _IDENTIFIER.match(stem):
        raise VitdeployError(f"{what} name '{stem}' is not a valid identifier (Xcode derives a Swift class from it); "
                             "rename the file to letters, digits and underscores, not starting with a digit")
    return stem


def inspect_mlpackage(path: Path) -> dict:
    """Input/outputs/labels/metadata of an .mlpackage, read from its spec (no Core ML runtime needed)."""
    try:
        with _quiet_imports():
            import coremltools as ct
    except ImportError as e:
        raise VitdeployError(f"reading a .mlpackage needs coremltools: pip install 'vitdeploy[coreml]' ({e})") from None
    try:
        with _quiet_imports():
            spec = ct.utils.load_spec(str(path))
    except Exception as e:  # noqa: BLE001 - coremltools raises many types for a broken package
        raise VitdeployError(f"{path}: not a readable Core ML model ({type(e).__name__}: {str(e).strip()[:200]})") from None
    desc = spec.description
    images = [i for i in desc.input if i.type.WhichOneof("Type") == "imageType"]
    if len(desc.input) != 1 or not images:
        kinds = ", ".join(f"{i.name} ({i.type.WhichOneof('Type')})" for i in desc.input)
        raise VitdeployError(f"{path}: the app helper needs one image input, the model has {kinds}; "
                             "convert without --raw-input")
    image = images[0]
    color = {10: "GRAYSCALE", 20: "RGB", 30: "BGR"}.get(int(image.type.imageType.colorSpace), "RGB")
    meta = dict(desc.metadata.userDefined)
    config: dict = {}
    with contextlib.suppress(ValueError, TypeError):
        config = json.loads(meta.get("vitdeploy", "")) or {}
    outputs = {o.name: o.type.WhichOneof("Type") for o in desc.output}
    classifier = bool(desc.predictedProbabilitiesName)
    logits = config.get("logits_output") if config.get("logits_output") in outputs else None
    if logits is None:
        arrays = [name for name, kind in outputs.items() if kind == "multiArrayType"]
        logits = "logits" if "logits" in arrays else (arrays[0] if arrays else None)
    if not classifier and logits is None:
        raise VitdeployError(f"{path}: no classifier output and no multi-array (logits) output; "
                             f"outputs are {', '.join(outputs) or 'none'}")
    labels = config.get("labels") or _mlprogram_class_labels(spec)
    labels = [str(label) for label in labels] if labels else None
    return {"input_name": image.name, "width": int(image.type.imageType.width),
            "height": int(image.type.imageType.height), "color_layout": color, "outputs": outputs,
            "classifier": classifier, "logits_output": logits, "labels": labels,
            "precision": meta.get("precision") or config.get("precision"),
            "preprocessing": config.get("preprocessing"),
            "model_type": spec.WhichOneof("Type")}


def _mlprogram_class_labels(spec) -> list[str] | None:
    """Class labels of an ML Program classifier (the ``classes`` of its ``classify`` op)."""
    if spec.WhichOneof("Type") == "neuralNetworkClassifier":
        labels = spec.neuralNetworkClassifier.stringClassLabels.vector
        return list(labels) or [str(v) for v in spec.neuralNetworkClassifier.int64ClassLabels.vector] or None
    if spec.WhichOneof("Type") != "mlProgram":
        return None
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            for op in block.operations:
                if op.type != "classify" or "classes" not in op.inputs:
                    continue
                argument = op.inputs["classes"].arguments[0]
                if argument.WhichOneof("binding") != "value":
                    continue
                values = argument.value.immediateValue.list.values
                labels = []
                for v in values:
                    tensor = v.immediateValue.tensor
                    labels += [str(s) for s in tensor.strings.values] or [str(i) for i in tensor.ints.values]
                return labels or None
    return None


def inspect_tflite(path: Path) -> dict:
    """Input shape/dtype/quantization, class count, labels and vitdeploy config of a .tflite."""
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise VitdeployError(f"reading a .tflite needs ai-edge-litert: pip install 'vitdeploy[tflite]' ({e})") from None
    from .formats.tflite import read_tflite_metadata

    data = path.read_bytes()
    try:
        interpreter = Interpreter(model_content=data)
    except (ValueError, RuntimeError) as e:
        raise VitdeployError(f"{path}: not a readable .tflite model ({str(e).strip().splitlines()[0][:200]})") from None
    stored = read_tflite_metadata(data)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise VitdeployError(f"{path}: the app helper needs one input and one output, found {len(inputs)} and {len(outputs)}")
    shape = [int(v) for v in inputs[0]["shape"]]
    dtype = np.dtype(inputs[0]["dtype"]).name
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        layout = (stored["vitdeploy"] or {}).get("input", {}).get("layout")
        hint = "; convert without --raw-input" if layout == "NCHW-raw" or (len(shape) == 4 and shape[1] == 3) else ""
        raise VitdeployError(f"{path}: the app helper feeds a [1, H, W, 3] RGB pixel input, the model takes {shape}{hint}")
    if dtype not in ("float32", "int8", "uint8"):
        raise VitdeployError(f"{path}: input dtype {dtype} is not supported by the helper (float32, int8, uint8)")
    out_shape = [int(v) for v in outputs[0]["shape"]]
    out_dtype = np.dtype(outputs[0]["dtype"]).name
    if len(out_shape) != 2 or out_shape[0] != 1:
        raise VitdeployError(f"{path}: expected one [1, classes] output, the model has {out_shape}")
    labels = stored["labels"]
    if labels is not None and len(labels) != out_shape[1]:
        raise VitdeployError(f"{path}: {len(labels)} labels stored but the model has {out_shape[1]} classes")
    config = stored["vitdeploy"] or {}
    return {"input_name": str(inputs[0]["name"]), "height": shape[1], "width": shape[2], "input_dtype": dtype,
            "output_dtype": out_dtype, "num_classes": out_shape[1], "labels": labels,
            "preprocessing": config.get("preprocessing"), "vitdeploy": bool(config),
            "layout": (config.get("input") or {}).get("layout", "NHWC-pixels")}


@contextlib.contextmanager
def _quiet_imports():
    """coremltools prints warnings about optional native libraries on Linux; keep them off the CLI."""
    import io
    import logging
    import warnings

    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger().setLevel(level)


# ----------------------------------------------------------------------------- templates


def _template(name: str) -> str:
    return resources.files("vitdeploy").joinpath("templates", name).read_text(encoding="utf-8")


def _render(name: str, values: dict[str, str]) -> str:
    text = _template(name)
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = re.findall(r"@@[A-Z_]+@@", text)
    if left:
        raise RuntimeError(f"template {name} has unfilled fields {sorted(set(left))}")
    return text


def _swift_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # JSON string escapes are valid Swift escapes


def _kotlin_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False).replace("$", "\\$")


def _crop_fraction(preprocessing: dict | None) -> float:
    """Share of the shorter side the centre crop keeps (``crop / resize``; 1.0 when unknown)."""
    if not preprocessing:
        return 1.0
    try:
        resize, crop = float(preprocessing["resize"]), float(preprocessing["crop"])
    except (KeyError, TypeError, ValueError):
        return 1.0
    return min(1.0, crop / resize) if resize > 0 and crop > 0 else 1.0


def swift_helper(info: dict, *, model_name: str, labels_resource: str | None, top_k: int) -> str:
    """Source of ``VitdeployClassifier.swift`` for a model described by :func:`inspect_mlpackage`."""
    units = ".cpuAndGPU" if info.get("precision") == "fp32" else ".all"
    return _render("VitdeployClassifier.swift.tmpl", {
        "MODEL_NAME": _swift_string(model_name),
        "INPUT_NAME": _swift_string(info["input_name"]),
        "LOGITS_OUTPUT": _swift_string(info["logits_output"] or ""),
        "LABELS_RESOURCE": _swift_string(labels_resource) if labels_resource else "nil",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "CROP_FRACTION": repr(float(_crop_fraction(info.get("preprocessing")))),
        "COMPUTE_UNITS": units,
        "TOP_K": str(top_k),
        "IS_CLASSIFIER": "true" if info["classifier"] else "false",
    })


def kotlin_helper(info: dict, *, package_name: str, model_asset: str, labels_asset: str | None, top_k: int) -> str:
    """Source of ``VitdeployClassifier.kt`` for a model described by :func:`inspect_tflite`."""
    if not _PACKAGE.match(package_name):
        raise VitdeployError(f"'{package_name}' is not a valid Kotlin package name")
    return _render("VitdeployClassifier.kt.tmpl", {
        "PACKAGE": package_name,
        "MODEL_ASSET": _kotlin_string(model_asset),
        "MODEL_ASSET_PLAIN": model_asset.replace("\n", " "),
        "LABELS_ASSET": _kotlin_string(labels_asset) if labels_asset else "null",
        "INPUT_WIDTH": str(info["width"]),
        "INPUT_HEIGHT": str(info["height"]),
        "NUM_CLASSES": str(info["num_classes"]),
        "CROP_FRACTION": _float32_literal(_crop_fraction(info.get("preprocessing"))),
        "TOP_K": str(top_k),
    })


def _float32_literal(value: float) -> str:
    """Shortest Kotlin Float literal that round-trips (``0.8888889f``, not a double's 17 digits)."""
    import numpy as np

    text = np.format_float_positional(np.float32(value), unique=True, trim="0")
    return f"{text}f"


def _labels_text(labels: list[str]) -> bytes:
    return ("\n".join(labels) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------- writing


class _Writer:
    """Collects planned writes, checks them all against ``force`` first, then writes atomically."""

    def __init__(self, report: PackageReport, force: bool):
        self.report, self.force = report, force
        self.files: list[tuple[Path, bytes | Path]] = []  # bytes for files, Path for a directory copy

    def add(self, target: Path, content: bytes | Path) -> None:
        self.files.append((target, content))

    def check(self) -> None:
        """Raise before anything is written when an existing, different file would be replaced."""
        for target, content in self.files:
            if not (target.exists() or target.is_symlink()) or self.force:
                continue
            if self._identical(target, content):
                continue
            raise VitdeployError(f"{target} already exists and differs; pass --force to replace it")

    def run(self) -> None:
        for target, content in self.files:
            if (target.exists() or target.is_symlink()) and self._identical(target, content):
                self.report.skipped.append({"path": str(target), "reason": "identical file already there"})
                continue
            if isinstance(content, Path):
                _copy_tree_atomically(content, target)
                size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
            else:
                _write_atomically(target, content)
                size = len(content)
            self.report.written.append({"path": str(target), "bytes": size})

    @staticmethod
    def _identical(target: Path, content: bytes | Path) -> bool:
        if isinstance(content, Path):
            return target.is_dir() and _tree_digest(target) == _tree_digest(content)
        return target.is_file() and target.stat().st_size == len(content) and target.read_bytes() == content


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _copy_tree_atomically(source: Path, target: Path) -> None:
    """Copy a directory (an .mlpackage) aside, then swap it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        staged = work / target.name
        shutil.copytree(source, staged)
        if target.is_dir() and not target.is_symlink():
            os.replace(target, work / "previous")  # removed with ``work``
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- iOS


def _package_ios(artifact: Path, *, into, out, force: bool, top_k: int) -> PackageReport:
    model_name = _identifier_safe(artifact.stem, "model")
    if model_name == Path(SWIFT_HELPER).stem:
        raise VitdeployError(f"a model named {model_name} would make Xcode generate a class that clashes with "
                             f"{SWIFT_HELPER}; rename the .mlpackage")
    info = inspect_mlpackage(artifact)
    labels_name = f"{model_name}_labels.txt" if info["labels"] else None
    report = PackageReport(platform="ios", artifact=artifact, destination=Path(into or out),
                           mode="into" if into is not None else "out")
    if not info["labels"]:
        report.warnings.append("the model carries no labels: results are named by class index")
    swift = swift_helper(info, model_name=model_name, labels_resource=labels_name, top_k=top_k).encode()

    if out is not None:
        folder = Path(out)
        _refuse_file(folder)
        writer = _Writer(report, force)
        writer.add(folder / artifact.name, artifact)
        if labels_name:
            writer.add(folder / labels_name, _labels_text(info["labels"]))
        writer.add(folder / SWIFT_HELPER, swift)
        writer.add(folder / "README.md", _ios_readme(model_name, labels_name, info, top_k).encode())
        writer.check()
        writer.run()
        report.next_steps.append(f"drag {artifact.name}, {SWIFT_HELPER}"
                                 f"{' and ' + labels_name if labels_name else ''} into your app target in Xcode "
                                 "(see README.md)")
        return report

    project = find_xcode_project(Path(into))
    report.project = {k: str(v) if isinstance(v, Path) else v for k, v in project.items()
                      if k not in ("pbx", "pbx_text")}
    source_dir: Path = project["source_dir"]
    files = [(artifact.name, artifact, "model")]
    if labels_name:
        files.append((labels_name, _labels_text(info["labels"]), "resource"))
    files.append((SWIFT_HELPER, swift, "source"))
    writer = _Writer(report, force)
    for name, content, _ in files:
        writer.add(source_dir / name, content)
    new_pbx = None
    if project["synchronized"]:
        report.project_edit = "synchronized-folder"
    else:
        new_pbx = add_files_to_pbxproj(project["pbx_text"], project["target_id"], project["group_id"],
                                       [(name, kind) for name, _, kind in files])
        report.project_edit = "pbxproj" if new_pbx != project["pbx_text"] else "none"
        if new_pbx != project["pbx_text"]:
            writer.add(project["pbxproj"], new_pbx.encode("utf-8"))
    # The pbxproj is always ours to edit (that is what --into asks for): exempt it from the force check.
    pbx_entry = [(t, c) for t, c in writer.files if t == project["pbxproj"]]
    writer.files = [(t, c) for t, c in writer.files if t != project["pbxproj"]]
    writer.check()
    writer.files += pbx_entry
    writer.run()
    report.next_steps.append(f"use it: let classifier = try VitdeployClassifier(); "
                             f"let top = try classifier.classify(pixelBuffer)  (target {project['target_name']})")
    return report


def _refuse_file(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise VitdeployError(f"{folder} is a file, not a folder")


def _ios_readme(model_name: str, labels_name: str | None, info: dict, top_k: int) -> str:
    labels_line = f"- `{labels_name}`: class labels, one per line (a bundle resource).\n" if labels_name else ""
    kind = ("a classifier (Vision returns probabilities)" if info["classifier"]
            else f"logits in `{info['logits_output']}` (the helper applies softmax)")
    return f"""# {model_name} for iOS (vitdeploy package)

Files:
- `{model_name}.mlpackage`: the Core ML model. Xcode compiles it into `{model_name}.mlmodelc`
  and generates a `{model_name}` Swift class; it must be a member of the app target (it goes in
  the target's *Compile Sources* phase, which Xcode does when you add it to the target).
{labels_line}- `{SWIFT_HELPER}`: Vision-based helper. Input `{info['input_name']}` is a
  {info['width']}x{info['height']} {info['color_layout']} image; output is {kind}.

Add all files to your app target (drag them into the project navigator with *Copy items if
needed* and your app target ticked), then:

```swift
let classifier = try VitdeployClassifier()          // loads {model_name}.mlmodelc from the app bundle
let top = try classifier.classify(pixelBuffer)      // [(label: String, probability: Float)], top {top_k}
```

Or run `vitdeploy package {model_name}.mlpackage --platform ios --into YourApp/` to let vitdeploy
add them to the Xcode project.
"""


# --- Xcode project ---------------------------------------------------------------------------


def find_xcode_project(app_dir: Path) -> dict:
    """Locate the .xcodeproj, the app target and its source folder under ``app_dir``."""
    app_dir = Path(app_dir)
    if not app_dir.is_dir():
        raise VitdeployError(f"{app_dir}: no such folder")
    if app_dir.suffix == ".xcodeproj":
        projects = [app_dir]
    else:
        projects = sorted(p for p in app_dir.glob("*.xcodeproj") if p.is_dir())
        if not projects:
            projects = sorted(p for p in app_dir.glob("*/*.xcodeproj") if p.is_dir())
    if not projects:
        raise VitdeployError(f"{app_dir} is not an iOS app folder: no *.xcodeproj in it")
    if len(projects) > 1:
        raise VitdeployError(f"{app_dir} holds several Xcode projects ({', '.join(p.name for p in projects)}); "
                             "pass the one to use as --into")
    xcodeproj = projects[0]
    pbxproj = xcodeproj / "project.pbxproj"
    if not pbxproj.is_file():
        raise VitdeployError(f"{xcodeproj} has no project.pbxproj")
    text = pbxproj.read_text(encoding="utf-8")
    try:
        pbx = parse_pbxproj(text)
    except ValueError as e:
        raise VitdeployError(f"{pbxproj}: cannot parse it ({e})") from None
    objects = pbx.get("objects", {})
    root = objects.get(pbx.get("rootObject"), {})
    apps = [tid for tid in root.get("targets", [])
            if objects.get(tid, {}).get("productType") == "com.apple.product-type.application"]
    if not apps:
        raise VitdeployError(f"{xcodeproj.name} has no iOS application target")
    project_name = xcodeproj.stem
    target_id = next((t for t in apps if objects[t].get("name") == project_name), apps[0])
    target = objects[target_id]
    parents = _group_parents(objects)
    project_dir = xcodeproj.parent

    synced = [g for g in target.get("fileSystemSynchronizedGroups", [])
              if objects.get(g, {}).get("isa") == "PBXFileSystemSynchronizedRootGroup"]
    if synced:
        group_id = next((g for g in synced if objects[g].get("path") == target.get("name")), synced[0])
        source_dir = _group_dir(objects, parents, group_id, project_dir)
        synchronized = True
    else:
        group_id = _app_source_group(objects, parents, target)
        if group_id is None:
            raise VitdeployError(f"{xcodeproj.name}: cannot find the source folder of target "
                                 f"'{target.get('name')}' (no Swift file in its Sources phase)")
        source_dir = _group_dir(objects, parents, group_id, project_dir)
        synchronized = False
    if not source_dir.is_dir():
        raise VitdeployError(f"{xcodeproj.name}: the source folder {source_dir} of target "
                             f"'{target.get('name')}' does not exist")
    return {"xcodeproj": xcodeproj, "pbxproj": pbxproj, "pbx_text": text, "pbx": pbx, "target_id": target_id,
            "target_name": target.get("name"), "group_id": group_id, "source_dir": source_dir,
            "synchronized": synchronized}


def _group_parents(objects: dict) -> dict[str, str]:
    parents = {}
    for oid, obj in objects.items():
        if obj.get("isa") in ("PBXGroup", "PBXVariantGroup"):
            for child in obj.get("children", []):
                parents[child] = oid
    return parents


def _group_dir(objects: dict, parents: dict, group_id: str, project_dir: Path) -> Path:
    """Filesystem folder of a group (follows ``<group>``-relative paths up to the project)."""
    parts: list[str] = []
    current: str | None = group_id
    while current is not None:
        obj = objects.get(current, {})
        tree = obj.get("sourceTree", "<group>")
        if obj.get("path"):
            parts.append(obj["path"])
        if tree == "SOURCE_ROOT":
            break
        if tree == "<absolute>":
            return Path(*reversed(parts))
        if tree != "<group>":
            raise VitdeployError(f"group '{obj.get('path') or obj.get('name')}' lives under {tree}, "
                                 "which vitdeploy cannot resolve; use -o DIR and add the files by hand")
        current = parents.get(current)
    return project_dir.joinpath(*reversed(parts)) if parts else project_dir


def _app_source_group(objects: dict, parents: dict, target: dict) -> str | None:
    """The group holding the app target's Swift sources (the one with the most of them)."""
    counts: dict[str, int] = {}
    for phase_id in target.get("buildPhases", []):
        phase = objects.get(phase_id, {})
        if phase.get("isa") != "PBXSourcesBuildPhase":
            continue
        for build_file in phase.get("files", []):
            ref = objects.get(build_file, {}).get("fileRef")
            if ref and str(objects.get(ref, {}).get("path", "")).endswith(".swift") and ref in parents:
                counts[parents[ref]] = counts.get(parents[ref], 0) + 1
    if counts:
        return max(counts, key=lambda g: counts[g])
    # An app with no Swift file yet: a top-level group named like the target.
    main = objects.get(objects.get(_root_id(objects), {}).get("mainGroup", ""), {})
    for child in main.get("children", []):
        obj = objects.get(child, {})
        if obj.get("isa") == "PBXGroup" and target.get("name") in (obj.get("path"), obj.get("name")):
            return child
    return None


def _root_id(objects: dict) -> str:
    return next((oid for oid, o in objects.items() if o.get("isa") == "PBXProject"), "")


# --- pbxproj parsing (OpenStep property list) --------------------------------------------------

_TOKEN = re.compile(r'\s+|//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|[{}()=;,]|[^\s{}()=;,"]+', re.S)


def _tokens(text: str):
    if text.startswith("// !$*UTF8*$!"):
        text = text[len("// !$*UTF8*$!"):]
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        if tok[0].isspace() or tok.startswith("//") or tok.startswith("/*"):
            continue
        yield tok
    # _TOKEN matches every character, so nothing is silently skipped


def _unquote(tok: str) -> str:
    if tok.startswith('"'):
        body = tok[1:-1]
        return re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
    return tok


def parse_pbxproj(text: str) -> dict:
    """Parse a project.pbxproj (OpenStep plist) into dicts/lists/strings. Raises ValueError."""
    tokens = list(_tokens(text))
    pos = 0

    def value():
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("unexpected end of file")
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            d = {}
            while True:
                if pos >= len(tokens):
                    raise ValueError("unterminated dictionary")
                if tokens[pos] == "}":
                    pos += 1
                    return d
                key = value()
                if not isinstance(key, str) or pos >= len(tokens) or tokens[pos] != "=":
                    raise ValueError(f"expected '=' after key {key!r}")
                pos += 1
                d[key] = value()
                if pos >= len(tokens) or tokens[pos] != ";":
                    raise ValueError(f"expected ';' after the value of {key!r}")
                pos += 1
        if tok == "(":
            items = []
            while True:
                if pos >= len(tokens):
                    raise ValueError("unterminated list")
                if tokens[pos] == ")":
                    pos += 1
                    return items
                items.append(value())
                if pos < len(tokens) and tokens[pos] == ",":
                    pos += 1
                elif pos < len(tokens) and tokens[pos] != ")":
                    raise ValueError("expected ',' or ')' in a list")
        if tok in "})=;,":
            raise ValueError(f"unexpected '{tok}'")
        return _unquote(tok)

    result = value()
    if pos != len(tokens) or not isinstance(result, dict):
        raise ValueError("trailing content after the top-level dictionary")
    return result


def dangling_references(pbx: dict) -> list[str]:
    """Object IDs referenced somewhere in ``objects`` (or as rootObject) but not defined there."""
    objects = pbx.get("objects", {})
    ids = set(objects)
    pattern = re.compile(r"^[0-9A-F]{24}$")
    missing: set[str] = set()

    def walk(v, key=None):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, k)
        elif isinstance(v, list):
            for x in v:
                walk(x, key)
        elif isinstance(v, str) and pattern.match(v) and v not in ids and key not in ("remoteGlobalIDString",):
            missing.add(v)

    for obj in objects.values():
        walk(obj)
    walk(pbx.get("rootObject"))
    return sorted(missing)


# --- pbxproj editing ---------------------------------------------------------------------------

_FILE_TYPES = {".swift": "sourcecode.swift", ".mlpackage": "folder.mlpackage", ".mlmodel": "file.mlmodel",
               ".txt": "text", ".json": "text.json"}


def add_files_to_pbxproj(text: str, target_id: str, group_id: str, files: list[tuple[str, str]]) -> str:
    """Return ``text`` with ``files`` (name, kind: source|model|resource) added to a group and target.

    Each new file gets a PBXFileReference (``<group>``-relative), a child entry in ``group_id``
    and a PBXBuildFile in the target's Sources (Swift, Core ML models) or Resources (anything else)
    phase. A file the group already references only gets the build file if the target lacks it;
    otherwise it is left as it is. The result is re-parsed and checked (every referenced ID
    defined, each file in the group and its phase) before it is returned.
    """
    pbx = parse_pbxproj(text)
    objects = pbx["objects"]
    group = objects.get(group_id, {})
    target = objects.get(target_id, {})
    phases = {objects.get(p, {}).get("isa"): p for p in target.get("buildPhases", [])}
    existing = {objects.get(c, {}).get("path"): c for c in group.get("children", [])}
    taken = set(objects) | set(re.findall(r"\b[0-9A-F]{24}\b", text))
    file_refs, build_files, children, phase_entries = [], [], [], {}

    for name, kind in files:
        phase_isa = "PBXResourcesBuildPhase" if kind == "resource" else "PBXSourcesBuildPhase"
        phase_name = "Resources" if kind == "resource" else "Sources"
        if name in existing:
            ref_id = existing[name]
            phase = objects.get(phases.get(phase_isa, ""), {})
            if any(objects.get(b, {}).get("fileRef") == ref_id for b in phase.get("files", [])):
                continue  # already referenced and built by this target
        else:
            ref_id = _new_id(taken, f"ref:{group_id}:{name}")
            file_type = _FILE_TYPES.get(Path(name).suffix, "text")
            quoted = _pbx_quote(name)
            file_refs.append(f"\t\t{ref_id} /* {name} */ = {{isa = PBXFileReference; lastKnownFileType = {file_type}; "
                             f"path = {quoted}; sourceTree = \"<group>\"; }};\n")
            children.append(f"\t\t\t\t{ref_id} /* {name} */,\n")
        build_id = _new_id(taken, f"build:{target_id}:{name}")
        build_files.append(f"\t\t{build_id} /* {name} in {phase_name} */ = {{isa = PBXBuildFile; "
                           f"fileRef = {ref_id} /* {name} */; }};\n")
        if phase_isa not in phases:
            text, phase_id = _add_phase(text, taken, target_id, phase_isa, phase_name)
            phases[phase_isa] = phase_id
        phase_entries.setdefault(phases[phase_isa], []).append(f"\t\t\t\t{build_id} /* {name} in {phase_name} */,\n")

    if not build_files:
        return text
    text = _insert_in_section(text, "PBXBuildFile", "".join(build_files))
    if file_refs:
        text = _insert_in_section(text, "PBXFileReference", "".join(file_refs))
        text = _insert_in_list(text, group_id, "children", "".join(children))
    for phase_id, entries in phase_entries.items():
        text = _insert_in_list(text, phase_id, "files", "".join(entries))
    _verify_edit(text, target_id, group_id, files)
    return text


def _new_id(taken: set[str], seed: str) -> str:
    """A 24-hex-digit object ID derived from ``seed`` (stable across runs), unique in the project."""
    counter = 0
    while True:
        candidate = hashlib.sha256(f"vitdeploy:{seed}:{counter}".encode()).hexdigest()[:24].upper()
        if candidate not in taken:
            taken.add(candidate)
            return candidate
        counter += 1


def _pbx_quote(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_$/.:]+", value) and "//" not in value:
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _insert_in_section(text: str, section: str, lines: str) -> str:
    end = f"/* End {section} section */"
    if end in text:
        i = text.index(end)
        line_start = text.rindex("\n", 0, i) + 1
        return text[:line_start] + lines + text[line_start:]
    # No such section yet: create it right after the opening of ``objects``.
    m = re.search(r"objects = \{\n", text)
    if m is None:
        raise VitdeployError("project.pbxproj has no objects dictionary")
    block = f"\n/* Begin {section} section */\n{lines}/* End {section} section */\n"
    return text[:m.end()] + block + text[m.end():]


def _object_span(text: str, object_id: str) -> tuple[int, int]:
    """(start, end) of ``ID /* comment */ = { ... };`` in ``text`` (brace-matched, string-aware)."""
    m = re.search(rf"^\s*{object_id}(?:\s*/\*.*?\*/)?\s*=\s*\{{", text, re.M)
    if m is None:
        raise VitdeployError(f"project.pbxproj: object {object_id} not found")
    return m.end() - 1, _matching(text, m.end() - 1, "{", "}")


def _matching(text: str, open_at: int, opening: str, closing: str) -> int:
    depth, i = 0, open_at
    while i < len(text):
        c = text[i]
        if c == '"':
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 1
        elif c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise VitdeployError("project.pbxproj: unbalanced brackets")


def _insert_in_list(text: str, object_id: str, key: str, lines: str) -> str:
    start, end = _object_span(text, object_id)
    m = re.compile(rf"\b{key}\s*=\s*\(").search(text, start, end)
    if m is None:  # the object has no such list: add one
        indent = "\t\t\t"
        insert = f"{indent}{key} = (\n{lines}{indent});\n"
        line_start = text.index("\n", start) + 1
        return text[:line_start] + insert + text[line_start:]
    close = _matching(text, m.end() - 1, "(", ")")
    line_start = text.rindex("\n", 0, close) + 1
    return text[:line_start] + lines + text[line_start:]


def _add_phase(text: str, taken: set[str], target_id: str, isa: str, name: str) -> tuple[str, str]:
    phase_id = _new_id(taken, f"phase:{target_id}:{isa}")
    block = (f"\t\t{phase_id} /* {name} */ = {{\n\t\t\tisa = {isa};\n\t\t\tbuildActionMask = 2147483647;\n"
             f"\t\t\tfiles = (\n\t\t\t);\n\t\t\trunOnlyForDeploymentPostprocessing = 0;\n\t\t}};\n")
    text = _insert_in_section(text, isa, block)
    text = _insert_in_list(text, target_id, "buildPhases", f"\t\t\t\t{phase_id} /* {name} */,\n")
    return text, phase_id


def _verify_edit(text: str, target_id: str, group_id: str, files: list[tuple[str, str]]) -> None:
    """Re-parse the edited project: every reference defined, each file in the group and its phase."""
    try:
        pbx = parse_pbxproj(text)
    except ValueError as e:
        raise VitdeployError(f"internal error: the edited project.pbxproj does not parse ({e}); nothing written") from None
    missing = dangling_references(pbx)
    if missing:
        raise VitdeployError(f"internal error: the edited project.pbxproj references undefined IDs {missing}; "
                             "nothing written")
    objects = pbx["objects"]
    in_group = {objects[c].get("path"): c for c in objects[group_id].get("children", []) if c in objects}
    phase_refs: dict[str, set] = {}
    for p in objects[target_id].get("buildPhases", []):
        phase = objects.get(p, {})
        phase_refs.setdefault(phase.get("isa"), set()).update(
            objects.get(b, {}).get("fileRef") for b in phase.get("files", []))
    for name, kind in files:
        isa = "PBXResourcesBuildPhase" if kind == "resource" else "PBXSourcesBuildPhase"
        if name not in in_group or in_group[name] not in phase_refs.get(isa, set()):
            raise VitdeployError(f"internal error: {name} did not end up in the group and {isa}; nothing written")


# ----------------------------------------------------------------------------- Android


def _package_android(artifact: Path, *, into, out, force: bool, top_k: int,
                     android_package: str | None) -> PackageReport:
    info = inspect_tflite(artifact)
    report = PackageReport(platform="android", artifact=artifact, destination=Path(into or out),
                           mode="into" if into is not None else "out")
    if not info["vitdeploy"]:
        report.warnings.append("no vitdeploy metadata in the model: the helper assumes RGB pixels 0..255 "
                               "with normalization inside the graph")
    if info["labels"] is None:
        report.warnings.append("the model carries no labels: results are named by class index")
    labels_name = ANDROID_LABELS if info["labels"] else None

    if out is not None:
        folder = Path(out)
        _refuse_file(folder)
        package_name = android_package or DEFAULT_ANDROID_PACKAGE
        kotlin = kotlin_helper(info, package_name=package_name, model_asset=artifact.name,
                               labels_asset=labels_name, top_k=top_k).encode()
        writer = _Writer(report, force)
        writer.add(folder / artifact.name, artifact.read_bytes())
        if labels_name:
            writer.add(folder / labels_name, _labels_text(info["labels"]))
        writer.add(folder / KOTLIN_HELPER, kotlin)
        writer.add(folder / "README.md", _android_readme(artifact.name, labels_name, package_name, info, top_k).encode())
        writer.check()
        writer.run()
        report.next_steps.append(f"copy {artifact.name}{' and ' + labels_name if labels_name else ''} to "
                                 f"app/src/main/assets/ and {KOTLIN_HELPER} to your package (see README.md)")
        return report

    app = find_android_app(Path(into))
    report.project = {k: str(v) if isinstance(v, Path) else v for k, v in app.items() if k != "build_text"}
    if android_package and android_package != app["package"]:
        raise VitdeployError(f"--package {android_package} differs from the app's namespace {app['package']}; "
                             "leave it out with --into")
    kotlin = kotlin_helper(info, package_name=app["package"], model_asset=artifact.name,
                           labels_asset=labels_name, top_k=top_k).encode()
    assets = app["module_dir"] / "src" / "main" / "assets"
    writer = _Writer(report, force)
    writer.add(assets / artifact.name, artifact.read_bytes())
    if labels_name:
        writer.add(assets / labels_name, _labels_text(info["labels"]))
    writer.add(app["source_dir"] / KOTLIN_HELPER, kotlin)
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
    report.next_steps.append(f"use it: val classifier = VitdeployClassifier(context); "
                             f"val top = classifier.classify(bitmap)  (package {app['package']})")
    return report


def _android_readme(model_file: str, labels_name: str | None, package_name: str, info: dict, top_k: int) -> str:
    labels_line = f"- `{labels_name}` -> `app/src/main/assets/{labels_name}`\n" if labels_name else ""
    return f"""# {model_file} for Android (vitdeploy package)

Copy:
- `{model_file}` -> `app/src/main/assets/{model_file}`
{labels_line}- `{KOTLIN_HELPER}` -> your sources; it declares `package {package_name}`: change that line to
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

Input: `{info['input_name']}`, [1, {info['height']}, {info['width']}, 3] {info['input_dtype']} RGB pixels 0..255
(normalization runs inside the model). Output: {info['num_classes']} logits; the helper applies softmax.

```kotlin
val classifier = VitdeployClassifier(context)           // loads assets/{model_file}
val top = classifier.classify(bitmap)                   // List<VitdeployClassifier.Recognition>, top {top_k}
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
    if not _PACKAGE.match(package_name):
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
    return any("tflite" in m.group(0) for m in re.finditer(r"noCompress[^\n]*", text))
