"""Pre-flight checks of the paths a command will write, run before any work starts (a leaf).

A conversion takes 20-30 s and a build many minutes; an output that cannot be written must be refused
before that, in one line naming the path the user gave (not the temporary file written beside it).
Nothing is created or replaced here: a folder that does not exist yet is judged by its nearest existing
ancestor, which must be a folder this process can create entries in (checked with a probe file that is
removed at once, since ``os.access`` says yes to root on a read-only mount such as /proc or /sys).
An existing artifact is replaced only when asked (``force``: ``convert --force``, and ``build``/``demo``,
which rebuild into their own folders): ``convert`` refuses it before any work, as ``package`` does.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from .errors import VitdeployError
from .formats import FORMATS


def check_artifact_path(path: str | Path, target: str, option: str = "-o", force: bool = False) -> Path:
    """``path`` can take ``target``'s artifact: its suffix, a folder for a .mlpackage, a file otherwise; one
    already there is refused unless ``force`` (a second convert must not replace a labelled model silently)."""
    p = Path(path)
    fmt = FORMATS[target]
    if p.suffix.lower() != fmt.suffix:
        raise VitdeployError(f"{p}: {option} for --target {target} must end in {fmt.suffix}")
    if not force and _lexists(p) and fmt.accepts(p):
        raise VitdeployError(f"{p}: already exists; add --force to replace it (or choose another {option})")
    if fmt.folder:  # a Core ML package is a folder; an existing one is replaced whole
        if _lexists(p) and not p.is_dir():
            raise VitdeployError(f"{p}: exists and is not a folder; a {fmt.suffix} is a folder")
        _check_parent(p, option)
        return p
    return check_output_file(p, option)


def check_output_file(path: str | Path, option: str = "-o") -> Path:
    """``path`` can be written as a file: not a folder or a device/FIFO, in a folder that exists or can be made."""
    p = Path(path)
    if p.is_dir():
        raise VitdeployError(f"{p}: is a folder; {option} names the file to write")
    if _lexists(p):
        try:
            mode = os.stat(p).st_mode
        except OSError as e:
            raise VitdeployError(f"{p}: cannot write it ({e.strerror})") from None
        if not stat.S_ISREG(mode):
            raise VitdeployError(f"{p}: exists and is not a regular file; {option} names the file to write")
    _check_parent(p, option)
    return p


def check_output_dir(path: str | Path, option: str) -> Path:
    """``path`` is a folder this process can write into, or can be created."""
    p = Path(path)
    if _lexists(p) and not p.is_dir():
        raise VitdeployError(f"{p}: exists and is not a folder; {option} names a folder to write into")
    if p.is_dir():
        _check_writable(p, p, option)
        return p
    _check_parent(p, option)
    return p


def _check_parent(p: Path, option: str) -> None:
    ancestor = p.absolute().parent
    while not _lexists(ancestor):
        if ancestor == ancestor.parent:
            raise VitdeployError(f"{p}: no existing folder above it")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        what = "a broken link" if ancestor.is_symlink() and not ancestor.exists() else "not a folder"
        raise VitdeployError(f"{p}: cannot create it: {ancestor} is {what}")
    _check_writable(p, ancestor, option)


def _check_writable(p: Path, folder: Path, option: str) -> None:
    near = folder in (p.absolute().parent, p.absolute())
    where = "" if near else f" (its nearest existing folder {folder})"
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VitdeployError(f"{p}: cannot write there{where}: permission denied")
    try:
        fd, probe = tempfile.mkstemp(prefix=".vitdeploy-probe-", dir=folder)
    except OSError as e:
        raise VitdeployError(f"{p}: cannot write there{where}: {e.strerror or e}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _lexists(p: Path) -> bool:
    return os.path.lexists(p)
