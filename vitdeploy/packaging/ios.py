"""iOS (``.mlpackage``): the model into an Xcode app target, with labels and the Swift helper.

The model package (Xcode compiles it into ``<Name>.mlmodelc`` and generates a Swift class),
``<Name>_labels.txt`` when the model carries labels, and ``<Class>.swift`` (``<Name>Classifier``, or
``--class-name``): a Vision-based helper that takes a ``CVPixelBuffer`` and returns the top-K ``(label, probability)``.
With ``into=APP_DIR`` the Xcode project is found, the files go into the app target's source folder
and -- unless the folder is an Xcode 16 synchronized folder (``PBXFileSystemSynchronizedRootGroup``),
which picks files up by itself -- they are added to ``project.pbxproj`` (file references, group
membership, build files in the Sources / Resources phases).

``project.pbxproj`` is read, edited and written with the ``pbxproj`` library (mod-pbxproj: its
OpenStep parser ``openstep_parser``, its object model and its writer). What stays here is what the
library does not offer: which target and group to use, the file types and build phases of a Core
ML package (see :func:`add_files_to_pbxproj`), and the checks that refuse an unreadable project or
an edit that would leave dangling references -- the edited text is parsed again and checked before
anything is written, and it is written atomically by the caller (``XcodeProject.save`` writes in
place).
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import openstep_parser
from pbxproj import PBXList, XcodeProject
from pbxproj.pbxextensions import TreeType
from pbxproj.pbxsections import PBXBuildFile, PBXFileReference

from ..errors import VitdeployError
from ..formats import formats_on
from ..formats.executorch import COREML_BACKEND, RUNTIME_VERSION
from ..untrusted import reading
from .codegen import (class_identifier, comment_text, default_class_name, helper_file_name, labels_text, plain_name,
                      swift_helper, swift_identifier, swift_pte_helper)
from .files import Writer, refuse_file
from .inspect import inspect_mlpackage, inspect_pte, pte_warnings
from .report import PackageReport

_APPLICATION = "com.apple.product-type.application"


def helper_class(artifact: Path, class_name: str | None) -> str:
    """The Swift helper's class: ``class_name`` (checked) or the one named after the model."""
    return class_identifier(class_name, "ios") if class_name is not None else default_class_name(artifact.name, "ios")


def package_ios(artifact: Path, *, into, out, force: bool, top_k: int, class_name: str | None = None) -> PackageReport:
    # Xcode names the model's class after its file: a model packaged with --allow-below-target goes in under its
    # plain name (``net.below-target.mlpackage`` -> ``net.mlpackage``, class ``net``); its metadata keeps the verdict.
    packaged = plain_name(artifact.name)
    model_name = swift_identifier(Path(packaged).stem)
    class_name = helper_class(artifact, class_name)
    if model_name == class_name:
        raise VitdeployError(f"a model named {model_name} makes Xcode generate a class {model_name}, which clashes "
                             f"with the helper class {class_name}; choose another --class-name")
    helper = helper_file_name(class_name, "ios")
    info = inspect_mlpackage(artifact)
    labels_name = f"{model_name}_labels.txt" if info["labels"] else None
    report = PackageReport(platform="ios", artifact=artifact, destination=Path(into or out),
                           mode="into" if into is not None else "out")
    if not info["labels"]:
        report.warnings.append("the model carries no labels: results are named by class index")
    swift = swift_helper(info, model_name=model_name, labels_resource=labels_name, top_k=top_k,
                         class_name=class_name).encode()

    if out is not None:
        folder = Path(out)
        refuse_file(folder)
        writer = Writer(report, force)
        writer.add(folder / packaged, artifact)
        if labels_name:
            writer.add(folder / labels_name, labels_text(info["labels"]))
        writer.add_helper(folder / helper, swift, artifact.name)
        writer.add(folder / "README.md", _ios_readme(model_name, labels_name, info, top_k, class_name).encode())
        writer.check()
        writer.run()
        report.next_steps.append(f"drag {packaged}, {helper}"
                                 f"{' and ' + labels_name if labels_name else ''} into your app target in Xcode "
                                 "(see README.md)")
        return report

    files = [(packaged, artifact, "model")]
    if labels_name:
        files.append((labels_name, labels_text(info["labels"]), "resource"))
    files.append((helper, swift, "source"))
    project = _write_into_project(Path(into), files, report, force, artifact.name)
    report.next_steps.append(f"use it: let classifier = try {class_name}(); "
                             f"let top = try classifier.classify(pixelBuffer)  (target {project['target_name']})")
    return report


EXECUTORCH_PACKAGE_URL = "https://github.com/pytorch/executorch"


def package_ios_pte(artifact: Path, *, into, out, force: bool, top_k: int,
                    class_name: str | None = None) -> PackageReport:
    """A .pte (one file: its metadata is inside) and labels as app resources, and the ExecuTorch helper
    ``<Class>.swift``.

    The ExecuTorch Swift package is not added to the user's project (it is a build setting and
    linker-flag decision: -all_load, iOS 17); the report says what to add when the project lacks it.
    """
    class_name = helper_class(artifact, class_name)
    helper = helper_file_name(class_name, "ios")
    info = inspect_pte(artifact)
    # No class is generated from a program's name (unlike a Core ML package's), so any file name will do.
    labels_name = f"{artifact.stem}_labels.txt" if info["labels"] else None
    report = PackageReport(platform="ios", artifact=artifact, destination=Path(into or out),
                           mode="into" if into is not None else "out")
    report.warnings.extend(pte_warnings(info))
    swift = swift_pte_helper(info, model_file=artifact.name, labels_resource=labels_name, top_k=top_k,
                             class_name=class_name).encode()
    files = [(artifact.name, artifact.read_bytes(), "resource")]
    if labels_name:
        files.append((labels_name, labels_text(info["labels"]), "resource"))
    files.append((helper, swift, "source"))
    products = "executorch, backend_xnnpack" + (", backend_coreml" if COREML_BACKEND in info["delegates"] else "")
    products += ", kernels_optimized"
    package_step = (f"add the Swift package {EXECUTORCH_PACKAGE_URL} (branch swiftpm-{RUNTIME_VERSION}; products "
                    f"{products}) to the app target, with Other Linker Flags -all_load and iOS 17+")

    if out is not None:
        folder = Path(out)
        refuse_file(folder)
        writer = Writer(report, force)
        for name, content, kind in files:
            if kind == "source":
                writer.add_helper(folder / name, content, artifact.name)
            else:
                writer.add(folder / name, content)
        shown = comment_text(artifact.name)  # a name in Markdown: no line break of its own
        writer.add(folder / "README.md", f"""# {shown} for iOS (vitdeploy package)

Add {', '.join(f'`{comment_text(n)}`' for n, _, kind in files if kind == 'resource')} to the app target as bundle
resources (Copy Bundle Resources) and `{helper}` as a source; then {package_step}.

Input: [1, {info['height']}, {info['width']}, 3] float32 RGB pixels 0..255 (normalization runs inside the
program). Output: {info['num_classes']} logits; the helper applies softmax.

```swift
let classifier = try {class_name}()     // loads {shown} from the app bundle
let top = try classifier.classify(cgImage)     // [(label: String, probability: Float)], top {top_k}
```
""".encode())
        writer.check()
        writer.run()
        report.next_steps.append(f"drag the files into your app target in Xcode, then {package_step} (see README.md)")
        return report

    project = _write_into_project(Path(into), files, report, force, artifact.name)
    if EXECUTORCH_PACKAGE_URL not in project["pbx_text"]:
        report.warnings.append(f"{project['xcodeproj'].name} does not use the ExecuTorch Swift package: {package_step}")
    report.next_steps.append(f"use it: let classifier = try {class_name}(); "
                             f"let top = try classifier.classify(cgImage)  (target {project['target_name']})")
    return report


def _write_into_project(into: Path, files: list, report: PackageReport, force: bool, model: str) -> dict:
    """``files`` ((name, content, kind)) into the Xcode project's source folder, and into its target through
    the pbxproj unless the folder is synchronized; returns the project found at ``into``. The ``source``
    file is the helper generated for the model file ``model`` (:meth:`Writer.add_helper`).

    The pbxproj is always ours to edit (that is what --into asks for): only the files are held to --force."""
    with reading(into):  # the user's Xcode project: a refusal below names it
        for name, _, _ in files:
            pbxproj_name(name)
        project = find_xcode_project(into)
    report.project = {k: str(v) if isinstance(v, Path) else v for k, v in project.items() if k != "pbx_text"}
    writer = Writer(report, force)
    for name, content, kind in files:
        if kind == "source":
            writer.add_helper(project["source_dir"] / name, content, model)
        else:
            writer.add(project["source_dir"] / name, content)
    new_pbx = None
    if project["synchronized"]:
        report.project_edit = "synchronized-folder"
    else:
        new_pbx = add_files_to_pbxproj(project["pbx_text"], project["target_id"], project["group_id"],
                                       [(name, kind) for name, _, kind in files])
        report.project_edit = "pbxproj" if new_pbx != project["pbx_text"] else "none"
    writer.check()
    if report.project_edit == "pbxproj":
        writer.add(project["pbxproj"], new_pbx.encode("utf-8"))
    writer.run()
    return project


def _ios_readme(model_name: str, labels_name: str | None, info: dict, top_k: int, class_name: str) -> str:
    labels_line = f"- `{labels_name}`: class labels, one per line (a bundle resource).\n" if labels_name else ""
    kind = ("a classifier (Vision returns probabilities)" if info["classifier"]
            else f"logits in `{comment_text(info['logits_output'] or '')}` (the helper applies softmax)")
    return f"""# {model_name} for iOS (vitdeploy package)

Files:
- `{model_name}.mlpackage`: the Core ML model. Xcode compiles it into `{model_name}.mlmodelc`
  and generates a `{model_name}` Swift class; it must be a member of the app target (it goes in
  the target's *Compile Sources* phase, which Xcode does when you add it to the target).
{labels_line}- `{class_name}.swift`: Vision-based helper (class `{class_name}`). Input `{comment_text(info['input_name'])}` is a
  {info['width']}x{info['height']} {info['color_layout']} image; output is {kind}.

Add all files to your app target (drag them into the project navigator with *Copy items if
needed* and your app target ticked), then:

```swift
let classifier = try {class_name}()          // loads {model_name}.mlmodelc from the app bundle
let top = try classifier.classify(pixelBuffer)      // [(label: String, probability: Float)], top {top_k}
```

Or run `vitdeploy package {model_name}.mlpackage --platform ios --into YourApp/` to let vitdeploy
add them to the Xcode project.
"""


def pbxproj_name(name: str) -> str:
    """``name`` when project.pbxproj can hold it. The pbxproj writer quotes a file name correctly inside
    strings but also writes it raw into ``/* name */`` comments, so a name with a line break or any other
    non-printable character, ``*/`` or ``/*`` is refused (VitdeployError) rather than escaped there."""
    if not name or any(not c.isprintable() for c in name) or "*/" in name or "/*" in name:
        raise VitdeployError(f"file name {name!r} cannot go into an Xcode project (line breaks, control "
                             "characters, '*/' and '/*' break project.pbxproj); rename the file")
    return name


# --- Xcode project: finding the app target and its source folder ------------------------------


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
    with reading(pbxproj):  # the user's project file: what is wrong in it is named
        try:
            text = pbxproj.read_text(encoding="utf-8")
            project = load_pbxproj(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise VitdeployError(f"{pbxproj}: cannot parse it ({_one_line(e)})") from None
        objects = project.objects
        root = objects[project.rootObject]
        apps = [t for t in (objects[tid] for tid in root.get("targets", [])) if t is not None
                and t.get("productType", None) == _APPLICATION]
        if not apps:
            raise VitdeployError(f"{xcodeproj.name} has no iOS application target")
        target = next((t for t in apps if t.get("name", None) == xcodeproj.stem), apps[0])
        target_name = str(target.get("name", ""))
        parents = _group_parents(project)
        project_dir = xcodeproj.parent

        synced = [objects[g] for g in target.get("fileSystemSynchronizedGroups", [])
                  if objects[g] is not None and objects[g].isa == "PBXFileSystemSynchronizedRootGroup"]
        if synced:
            group = next((g for g in synced if g.get("path", None) == target_name), synced[0])
        else:
            group = _app_source_group(project, parents, target)
            if group is None:
                raise VitdeployError(f"{xcodeproj.name}: cannot find the source folder of target "
                                     f"'{target_name}' (no Swift file in its Sources phase)")
        source_dir = _group_dir(parents, group, project_dir)
        if not source_dir.is_dir():
            raise VitdeployError(f"{xcodeproj.name}: the source folder {source_dir} of target "
                                 f"'{target_name}' does not exist")
        return {"xcodeproj": xcodeproj, "pbxproj": pbxproj, "pbx_text": text, "target_id": str(target.get_id()),
                "target_name": target_name, "group_id": str(group.get_id()), "source_dir": source_dir,
                "synchronized": bool(synced)}


def _group_parents(project: XcodeProject) -> dict:
    """Object ID -> the group (PBXGroup / PBXVariantGroup object) listing it as a child."""
    parents = {}
    for group in project.objects.get_objects_in_section("PBXGroup", "PBXVariantGroup"):
        for child in group.get("children", []):
            parents[str(child)] = group
    return parents


def _group_dir(parents: dict, group, project_dir: Path) -> Path:
    """Filesystem folder of a group (follows ``<group>``-relative paths up to the project)."""
    parts: list[str] = []
    current = group
    while current is not None:
        tree = current.get("sourceTree", "<group>")
        if current.get("path", None):
            parts.append(str(current.path))
        if tree == "SOURCE_ROOT":
            break
        if tree == "<absolute>":
            return Path(*reversed(parts))
        if tree != "<group>":
            raise VitdeployError(f"group '{current.get('path', None) or current.get('name', None)}' lives under "
                                 f"{tree}, which vitdeploy cannot resolve; use -o DIR and add the files by hand")
        current = parents.get(str(current.get_id()))
    return project_dir.joinpath(*reversed(parts)) if parts else project_dir


def _app_source_group(project: XcodeProject, parents: dict, target):
    """The group holding the app target's Swift sources (the one with the most of them)."""
    objects = project.objects
    counts: dict[str, int] = {}
    for phase_id in target.get("buildPhases", []):
        phase = objects[phase_id]
        if phase is None or phase.isa != "PBXSourcesBuildPhase":
            continue
        for build_id in phase.get("files", []):
            build = objects[build_id]
            ref = objects[build.get("fileRef", None)] if build is not None else None
            if ref is not None and str(ref.get("path", "")).endswith(".swift") and str(ref.get_id()) in parents:
                gid = str(parents[str(ref.get_id())].get_id())
                counts[gid] = counts.get(gid, 0) + 1
    if counts:
        return objects[max(counts, key=lambda g: counts[g])]
    # An app with no Swift file yet: a top-level group named like the target.
    main = objects[objects[project.rootObject].get("mainGroup", None)]
    name = target.get("name", None)
    if main is None or not name:
        return None
    named = project.get_groups_by_name(name, parent=main) or project.get_groups_by_path(name, parent=main)
    return named[0] if named else None


# --- project.pbxproj: reading, checking, editing -----------------------------------------------


def parse_pbxproj(text: str) -> dict:
    """A project.pbxproj (OpenStep plist) as dicts/lists/strings, read with pbxproj's parser. Raises ValueError."""
    try:
        tree = openstep_parser.OpenStepDecoder.ParseFromString(text)
    except IndexError:
        raise ValueError("unexpected end of file") from None
    except Exception as e:  # noqa: BLE001 - openstep_parser raises bare Exception for malformed input
        raise ValueError(_one_line(e)) from None
    if not isinstance(tree, dict) or not isinstance(tree.get("objects"), dict):
        raise ValueError("no objects dictionary")
    if not isinstance(tree["objects"].get(tree.get("rootObject")), dict):
        raise ValueError("no root object")
    return tree


def load_pbxproj(text: str) -> XcodeProject:
    """``text`` as a pbxproj ``XcodeProject``. Raises ValueError when it cannot be read."""
    tree = parse_pbxproj(text)
    try:
        with _quiet():
            project = XcodeProject(tree, None)
    except Exception as e:  # noqa: BLE001 - the library assumes a well-formed project
        raise ValueError(f"{type(e).__name__}: {_one_line(e)}") from None
    if project.objects[project.rootObject] is None or project.objects[project.rootObject].isa != "PBXProject":
        raise ValueError("the root object is not a PBXProject")
    return project


def dangling_references(pbx: dict) -> list[str]:
    """Object IDs referenced somewhere in ``objects`` (or as rootObject) but not defined there.

    Own code: pbxproj only warns (on stderr, when loading) about build phases listing undefined
    build files; a reference from a group, a build file or a target is not checked at all.
    """
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


def _model_file_types() -> dict[str, str]:
    """Xcode's type of each model file iOS runs, by extension: ``folder.<ext>`` for a package (.mlpackage),
    ``file.<ext>`` for an older single-file model Xcode knows (.mlmodel), a plain ``file`` for a program it
    does not (.pte)."""
    types = {}
    for fmt in formats_on("ios"):
        types[fmt.suffix] = f"folder{fmt.suffix}" if fmt.folder else "file"
        types.update({old: f"file{old}" for old in fmt.old_suffixes})
    return types


# File types Xcode gives the files vitdeploy adds. pbxproj's own table has no ``.mlpackage``.
_FILE_TYPES = {".swift": "sourcecode.swift", **_model_file_types(), ".txt": "text", ".json": "text.json"}


def _phase_isa(kind: str) -> str:
    # Core ML models are compiled (Sources) so that Xcode generates their class; labels are a resource.
    return "PBXResourcesBuildPhase" if kind == "resource" else "PBXSourcesBuildPhase"


def add_files_to_pbxproj(text: str, target_id: str, group_id: str, files: list[tuple[str, str]]) -> str:
    """Return ``text`` with ``files`` (name, kind: source|model|resource) added to a group and target.

    Each new file gets a PBXFileReference (``<group>``-relative), a child entry in ``group_id``
    and a PBXBuildFile in the target's Sources (Swift, Core ML models) or Resources (anything else)
    phase, created when the target has none. A file the group already references only gets the
    build file if the target lacks it; otherwise it is left as it is, and with nothing to add
    ``text`` comes back unchanged. A project that cannot be read or already references undefined
    objects is refused; the result is parsed again and checked (:func:`_verify_edit`) before it is
    returned. Errors are one-line :class:`VitdeployError`\\ s; nothing is written here.

    The edit is made on pbxproj's object model (``PBXFileReference.create``, ``PBXBuildFile.create``,
    ``get_or_create_build_phase``, ``add_child``, ``add_build_file``) rather than with
    ``XcodeProject.add_file``, which (pbxproj 4.3) rejects ``.mlpackage`` as an unknown extension
    (or, told to ignore that, files it untyped under Resources, so Xcode would neither compile it
    nor generate its class), adds a second PBXFileReference for a file the group already lists,
    and with ``force=False`` fails on targets that link a Swift package product (a PBXBuildFile
    with ``productRef`` and no ``fileRef``).
    """
    try:
        tree = parse_pbxproj(text)
        project = load_pbxproj(text)
    except ValueError as e:
        raise VitdeployError(f"project.pbxproj: cannot parse it ({e}); nothing written") from None
    missing = dangling_references(tree)
    if missing:
        raise VitdeployError(f"project.pbxproj references objects it does not define ({', '.join(missing[:5])}); "
                             "open the project in Xcode to repair it; nothing written")
    objects = project.objects
    target, group = objects[target_id], objects[group_id]
    if target is None or group is None:
        raise VitdeployError(f"project.pbxproj: no object {target_id if target is None else group_id}; nothing written")
    if "children" not in group:
        group["children"] = PBXList()
    existing = {str(objects[c].get("path", "")): objects[c] for c in group.children
                if objects[c] is not None and objects[c].isa == "PBXFileReference"}
    changed = False
    for name, kind in files:
        phase_isa = _phase_isa(kind)
        ref = existing.get(name)
        if ref is None:
            ref = PBXFileReference.create(name, tree=TreeType.GROUP)
            del ref["name"]  # Xcode writes a name only when it differs from the path
            ref.set_last_known_file_type(_FILE_TYPES.get(Path(name).suffix, "text"))
            objects[ref.get_id()] = ref
            group.add_child(ref)
            existing[name] = ref
        elif _built_by(objects, target, ref, phase_isa):
            continue  # already referenced and built by this target
        phase = target.get_or_create_build_phase(phase_isa)[0]
        build = PBXBuildFile.create(ref)
        objects[build.get_id()] = build
        phase.add_build_file(build)
        changed = True
    if not changed:
        return text
    try:
        with _quiet():
            edited = repr(project) + "\n"  # what XcodeProject.save writes
    except Exception as e:  # noqa: BLE001 - the writer assumes a well-formed project
        raise VitdeployError(f"project.pbxproj: pbxproj cannot write this project back ({type(e).__name__}: "
                             f"{_one_line(e)}); use -o DIR and add the files by hand; nothing written") from None
    _verify_edit(tree, edited, target_id, group_id, files)
    return edited


def _built_by(objects, target, ref, phase_isa: str) -> bool:
    for phase_id in target.get("buildPhases", []):
        phase = objects[phase_id]
        if phase is not None and phase.isa == phase_isa and any(
                objects[b] is not None and objects[b].get("fileRef", None) == ref.get_id()
                for b in phase.get("files", [])):
            return True
    return False


def _verify_edit(before: dict, text: str, target_id: str, group_id: str, files: list[tuple[str, str]]) -> None:
    """Parse the edited project again: every reference defined, each file in the group and its phase,
    and every object of the original project still there and unchanged but for the lists the edit
    appends to (the group's children, the target's build phases and their files)."""
    try:
        pbx = parse_pbxproj(text)
    except ValueError as e:
        raise VitdeployError(f"internal error: the edited project.pbxproj does not parse ({e}); nothing written") from None
    missing = dangling_references(pbx)
    if missing:
        raise VitdeployError(f"internal error: the edited project.pbxproj references undefined IDs {missing}; "
                             "nothing written")
    objects = pbx["objects"]
    appended = {(group_id, "children"), (target_id, "buildPhases")}
    appended |= {(p, "files") for p in objects[target_id].get("buildPhases", [])}
    for oid, old in before["objects"].items():
        new = objects.get(oid)
        same = new is not None and set(new) == set(old) and all(
            new[k] == v or ((oid, k) in appended and isinstance(v, list) and new[k][:len(v)] == v)
            for k, v in old.items())
        if not same:
            raise VitdeployError(f"internal error: the edited project.pbxproj changed object {oid}; nothing written")
    if {k: v for k, v in pbx.items() if k != "objects"} != {k: v for k, v in before.items() if k != "objects"}:
        raise VitdeployError("internal error: the edited project.pbxproj changed its header; nothing written")
    in_group = {objects[c].get("path"): c for c in objects[group_id].get("children", []) if c in objects}
    phase_refs: dict[str, set] = {}
    for p in objects[target_id].get("buildPhases", []):
        phase = objects.get(p, {})
        phase_refs.setdefault(phase.get("isa"), set()).update(
            objects.get(b, {}).get("fileRef") for b in phase.get("files", []))
    for name, kind in files:
        isa = _phase_isa(kind)
        if name not in in_group or in_group[name] not in phase_refs.get(isa, set()):
            raise VitdeployError(f"internal error: {name} did not end up in the group and {isa}; nothing written")


@contextlib.contextmanager
def _quiet():
    """pbxproj prints warnings on stderr while loading and writing; vitdeploy reports problems itself."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__
