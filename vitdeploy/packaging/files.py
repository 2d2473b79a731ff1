"""Writing packaged files: checked against ``force`` first, then written atomically (aside, then renamed)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .. import files
from ..errors import VitdeployError
from .codegen import comment_text, helper_owner, same_model
from .report import PackageReport


class Writer:
    """Collects planned writes, checks them all against ``force`` first, then writes atomically."""

    def __init__(self, report: PackageReport, force: bool):
        self.report, self.force = report, force
        self.files: list[tuple[Path, bytes | Path]] = []  # bytes for files, Path for a directory copy
        self.helpers: list[tuple[Path, str]] = []  # (helper file, the model it is generated for)

    def add(self, target: Path, content: bytes | Path) -> None:
        self.files.append((target, content))

    def add_helper(self, target: Path, content: bytes, model: str) -> None:
        """A generated helper class for the model file ``model``: like :meth:`add`, but an existing helper of
        that class generated for another model is refused even with ``force`` (two models, one class)."""
        self.add(target, content)
        self.helpers.append((target, model))

    def check(self) -> None:
        """Raise before anything is written when an existing, different file would be replaced, or when a
        helper would replace one generated for a different model."""
        for target, model in self.helpers:
            owner = helper_owner(target)
            if owner is not None and not same_model(owner, model):
                raise VitdeployError(f"{target} is the helper class of {owner}, not of {comment_text(model)}: "
                                     f"two models cannot share the class {target.stem}; choose another "
                                     "--class-name (or delete the file to replace that model's helper)")
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
                copy_tree_atomically(content, target)
                size = sum(info.st_size for _, info in _tree_members(target) if stat.S_ISREG(info.st_mode))
            else:
                write_atomically(target, content)
                size = len(content)
            self.report.written.append({"path": str(target), "bytes": size})

    @staticmethod
    def _identical(target: Path, content: bytes | Path) -> bool:
        if isinstance(content, Path):
            return target.is_dir() and not target.is_symlink() and tree_digest(target) == tree_digest(content)
        return target.is_file() and target.stat().st_size == len(content) and target.read_bytes() == content


def refuse_file(folder: Path) -> None:
    """An ``-o`` destination must be a folder (or not exist yet)."""
    if folder.exists() and not folder.is_dir():
        raise VitdeployError(f"{folder} is a file, not a folder")


def _tree_members(root: Path) -> list[tuple[str, os.stat_result]]:
    """(relative POSIX name, lstat) of everything below ``root``, sorted; never follows a link below it."""
    found, stack = [], [""]
    while stack:
        rel = stack.pop()
        with os.scandir(root / rel if rel else root) as it:
            for entry in it:
                name = f"{rel}/{entry.name}" if rel else entry.name
                info = entry.stat(follow_symlinks=False)
                found.append((name, info))
                if stat.S_ISDIR(info.st_mode):
                    stack.append(name)
    return sorted(found, key=lambda item: item[0])


def tree_digest(root: Path) -> str:
    """SHA-256 of a folder's names, kinds and file contents; a link or special file below it is hashed as
    such (its target is never read), so a tree holding one never equals a tree of plain files."""
    h = hashlib.sha256()
    for name, info in _tree_members(root):
        if stat.S_ISREG(info.st_mode):
            h.update(b"f\0" + name.encode("utf-8", "surrogateescape") + b"\0")
            with open(root / name, "rb", opener=_no_follow) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        elif stat.S_ISDIR(info.st_mode):
            h.update(b"d\0" + name.encode("utf-8", "surrogateescape") + b"\0")
        else:
            h.update(b"x\0" + name.encode("utf-8", "surrogateescape") + b"\0" + str(info.st_mode).encode() + b"\0")
    return h.hexdigest()


def _no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


def write_atomically(target: Path, data: bytes) -> None:
    """:func:`vitdeploy.files.write_atomically`, replacing a directory that stands where the file goes."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    files.write_atomically(target, data)


def copy_tree_atomically(source: Path, target: Path) -> None:
    """Copy a directory (an .mlpackage) aside, then swap it into place.

    Copies regular files and folders only: a symbolic link, FIFO, device or socket anywhere below ``source``
    is refused (one-line :class:`VitdeployError`, nothing written), never followed and never recreated. A
    link at ``source`` itself is the user's own naming and is resolved (the folder it points to is copied).
    """
    members = _tree_members(source)  # listed and refused before anything is created
    for name, info in members:
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a regular file or folder"
            raise VitdeployError(f"{source}: refusing to copy it: {name!r} is {kind}; nothing written")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        staged = work / target.name
        _copy_members(source, staged, members)
        if target.is_symlink() or (target.exists() and not target.is_dir()):
            target.unlink()
        files.publish(staged, target, aside=work / "previous")  # not after a Ctrl-C; ``previous`` goes with ``work``
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _copy_members(source: Path, staged: Path, members: list[tuple[str, os.stat_result]]) -> None:
    """Recreate ``members`` (folders and regular files, checked by the caller) under ``staged``; each file is
    opened without following links and must still be the regular file that was listed."""
    staged.mkdir()
    for name, info in members:
        if stat.S_ISDIR(info.st_mode):
            (staged / name).mkdir()
            continue
        with open(source / name, "rb", opener=_no_follow) as src:
            now = os.fstat(src.fileno())
            if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                raise VitdeployError(f"{source}: {name!r} changed while it was copied; nothing written")
            with open(staged / name, "xb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
