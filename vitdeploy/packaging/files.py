"""Writing packaged files: checked against ``force`` first, then written atomically (aside, then renamed)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from .. import files
from ..errors import VitdeployError
from .report import PackageReport


class Writer:
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
                copy_tree_atomically(content, target)
                size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
            else:
                write_atomically(target, content)
                size = len(content)
            self.report.written.append({"path": str(target), "bytes": size})

    @staticmethod
    def _identical(target: Path, content: bytes | Path) -> bool:
        if isinstance(content, Path):
            return target.is_dir() and tree_digest(target) == tree_digest(content)
        return target.is_file() and target.stat().st_size == len(content) and target.read_bytes() == content


def refuse_file(folder: Path) -> None:
    """An ``-o`` destination must be a folder (or not exist yet)."""
    if folder.exists() and not folder.is_dir():
        raise VitdeployError(f"{folder} is a file, not a folder")


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def write_atomically(target: Path, data: bytes) -> None:
    """:func:`vitdeploy.files.write_atomically`, replacing a directory that stands where the file goes."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    files.write_atomically(target, data)


def copy_tree_atomically(source: Path, target: Path) -> None:
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
