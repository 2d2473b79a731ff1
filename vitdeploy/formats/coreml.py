"""The .mlpackage as vitdeploy writes and reads it: input/output names, the metadata entry, the program.

A leaf of the pipeline: the Core ML target writes through it; runtimes, parity, quantization and
packaging read through it without importing the converter. coremltools is imported lazily.
"""

from __future__ import annotations

import json
import os
import posixpath
import stat
from pathlib import Path

from ..diagnostics import first_line
from ..errors import VitdeployError
from ..untrusted import reading
from . import LAYOUT_IMAGE, LAYOUT_RAW  # noqa: F401 (re-exported: the layouts an .mlpackage input declares)

IMAGE_INPUT = "image"
RAW_INPUT = "pixel_values"
LOGITS_OUTPUT = "logits"
LABEL_OUTPUT = "classLabel"
PROBS_OUTPUT = "probabilities"
METADATA_KEY = "vitdeploy"  # user_defined_metadata key of our JSON config
METADATA_FORMAT = 1


# An .mlpackage is untrusted input, like a checkpoint: every reader calls check_package_tree before
# coremltools, the MIL interpreter or a copy touches it. Ours hold 5 entries, 4 deep and a ~700-byte manifest.
MANIFEST = "Manifest.json"
MAX_PACKAGE_ENTRIES = 1000  # files and folders below the package folder
MAX_PACKAGE_DEPTH = 12  # Data/com.apple.CoreML/weights/weight.bin is 4
MAX_MANIFEST_BYTES = 1 << 20


def shown(name: str) -> str:
    """A member name for a one-line message: quoted, with control characters and line separators escaped."""
    return repr(name)


def check_package_tree(path: str | Path) -> Path:
    """Refuse an .mlpackage folder that leads anywhere outside itself; return it when it is safe to read.

    The package folder itself may be a symbolic link (the user named it: the link is resolved once and the
    folder it points to is checked); below it, only regular files and folders, no symbolic link (not even one
    pointing inside), no FIFO, device or socket, at most ``MAX_PACKAGE_ENTRIES`` entries and
    ``MAX_PACKAGE_DEPTH`` levels. ``Manifest.json`` is a regular file of at most ``MAX_MANIFEST_BYTES``
    holding a JSON object whose ``itemInfoEntries[*].path`` are relative, normalized paths naming an
    existing file or folder under ``Data/``, and whose ``rootModelIdentifier`` names a regular file among them.
    Raises :class:`VitdeployError` (exit 2) naming the package and the offending member.
    """
    path = Path(path)
    try:
        top = os.stat(path)  # follows a link at the top only
    except OSError as e:
        raise VitdeployError(f"{path}: cannot read the .mlpackage ({e.strerror or type(e).__name__})") from None
    if not stat.S_ISDIR(top.st_mode):
        raise VitdeployError(f"{path}: not an .mlpackage directory")
    members = _walk_package(path)
    manifest = members.get(MANIFEST)
    if manifest is None:
        raise VitdeployError(f"{path}: not an .mlpackage (no {MANIFEST})")
    if not stat.S_ISREG(manifest.st_mode):
        raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} is not a regular file")
    if manifest.st_size > MAX_MANIFEST_BYTES:
        raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} is {manifest.st_size} bytes "
                             f"(at most {MAX_MANIFEST_BYTES})")
    manifest, entries = _manifest_entries(path, members)
    root = manifest.get("rootModelIdentifier")
    if not isinstance(root, str) or root not in entries:
        raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST}'s rootModelIdentifier "
                             f"{shown(str(root))} names no itemInfoEntries entry")
    if not stat.S_ISREG(members["Data/" + entries[root]].st_mode):
        raise VitdeployError(f"{path}: refusing the .mlpackage: its root model {shown('Data/' + entries[root])} "
                             "is not a file")
    return path


def _walk_package(path: Path) -> dict[str, os.stat_result]:
    """Relative POSIX name -> lstat of every member; refuses links, special files, too many or too deep."""
    members: dict[str, os.stat_result] = {}
    stack = [("", 0)]
    while stack:
        rel, depth = stack.pop()
        try:
            with os.scandir(path / rel if rel else path) as it:
                listing = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise VitdeployError(f"{path}: cannot read {shown(rel or '.')} ({e.strerror or type(e).__name__})") from None
        for entry in listing:
            name = f"{rel}/{entry.name}" if rel else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                raise VitdeployError(f"{path}: refusing the .mlpackage: {shown(name)} is a symbolic link "
                                     "(links inside a package are never followed)")
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise VitdeployError(f"{path}: refusing the .mlpackage: {shown(name)} is not a regular file "
                                     "or folder (a FIFO, device or socket)")
            members[name] = info
            if len(members) > MAX_PACKAGE_ENTRIES:
                raise VitdeployError(f"{path}: refusing the .mlpackage: more than {MAX_PACKAGE_ENTRIES} files "
                                     "and folders in it")
            if depth + 1 > MAX_PACKAGE_DEPTH:
                raise VitdeployError(f"{path}: refusing the .mlpackage: {shown(name)} is nested more than "
                                     f"{MAX_PACKAGE_DEPTH} levels deep")
            if stat.S_ISDIR(info.st_mode):
                stack.append((name, depth + 1))
    return members


def _manifest_entries(path: Path, members: dict[str, os.stat_result]) -> tuple[dict, dict[str, str]]:
    """Manifest.json and its itemInfoEntries (identifier -> path under Data/, each checked)."""
    try:
        with open(path / MANIFEST, "rb") as f:  # checked a regular file above; read at most the bound + 1
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise VitdeployError(f"{path}: cannot read {MANIFEST} ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} is over {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} is not JSON "
                             f"({type(e).__name__}: {first_line(e)})") from None
    items = manifest.get("itemInfoEntries") if isinstance(manifest, dict) else None
    if not isinstance(items, dict):
        raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} has no itemInfoEntries object")
    entries = {}
    for key, item in items.items():
        rel = item.get("path") if isinstance(item, dict) else None
        if not isinstance(rel, str):
            raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} entry {shown(key)} has no path")
        if (not rel or rel.startswith("/") or "\\" in rel or "\0" in rel or posixpath.normpath(rel) != rel
                or ".." in rel.split("/")):
            raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} entry {shown(key)} has the path "
                                 f"{shown(rel)}, not a normalized path inside Data/")
        if "Data/" + rel not in members:
            raise VitdeployError(f"{path}: refusing the .mlpackage: {MANIFEST} entry {shown(key)} names "
                                 f"{shown('Data/' + rel)}, which is not in the package")
        entries[key] = rel
    return manifest, entries


def load_program(mlmodel):
    """The pymil Program of an (unloaded) MLModel, read from its spec and weights."""
    from coremltools.converters.mil.frontend.milproto.load import load

    spec = mlmodel.get_spec()
    return load(spec, spec.specificationVersion, file_weights_dir=mlmodel.weights_dir)


def read_config(path: str | Path) -> dict:
    """The ``vitdeploy`` JSON metadata of an .mlpackage written by ``vitdeploy.targets.coreml.convert_coreml``."""
    with reading(path):
        check_package_tree(path)
        try:
            import coremltools as ct
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise VitdeployError(f"reading .mlpackage needs coremltools: pip install 'vitdeploy[coreml]' "
                                 f"({e})") from None
        try:
            spec = ct.utils.load_spec(str(path))
        except Exception as e:  # noqa: BLE001 - a damaged package raises anything
            raise VitdeployError(f"{path}: not a readable .mlpackage "
                                 f"({e.__class__.__name__}: {first_line(e)})") from None
        raw = spec.description.metadata.userDefined.get(METADATA_KEY)
        if not raw:
            raise VitdeployError(f"{path}: no vitdeploy metadata (not converted by vitdeploy); cannot tell its input "
                                 "convention")
        try:
            config = json.loads(raw)
        except json.JSONDecodeError as e:
            raise VitdeployError(f"{path}: damaged vitdeploy metadata ({e})") from None
        if not isinstance(config, dict):
            raise VitdeployError(f"{path}: damaged vitdeploy metadata (a JSON {type(config).__name__}, not an object)")
        return config
