"""Writing files so that a reader never sees half of one, and the temporaries of one run (a leaf).

Everything vitdeploy stages lives in one per-process scratch folder (:func:`scratch_dir`), removed when the
CLI exits, on an error or a signal too; artifacts are written beside their destination and renamed into
place (:func:`write_atomically`, :func:`publish`), and nothing is published once SIGINT/SIGTERM arrived.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .diagnostics import raise_if_interrupted, signals_deferred

SCRATCH_PREFIX = "vitdeploy-"

_scratch: Path | None = None
_scratch_pid: int | None = None
_scratch_base: str | None = None  # the temporary folder the scratch folder lives in (TMPDIR)
_saved_tempdir: tuple[bool, str | None, str | None] | None = None


def _named(e: OSError, path: Path) -> OSError:
    """``e`` naming ``path`` when the OS did not (a write or flush fails without a file name)."""
    if e.filename is None and e.errno is not None:
        return type(e)(e.errno, e.strerror or os.strerror(e.errno), str(path))
    return e


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write next to ``path`` and rename, so ``path`` is either absent/old or complete.

    The file gets ordinary permissions (0666 & ~umask): ``mkstemp`` creates 0600, and ``adb push``
    keeps the mode, so on a phone the app's uid could not read a 0600 model owned by shell (EACCES).
    Nothing is published once a signal arrived (:func:`vitdeploy.diagnostics.raise_if_interrupted`), and an
    OSError (a full disk: ENOSPC) names ``path``. The ``.partial`` file goes on any exception, signals included.
    """
    path = Path(path)
    raise_if_interrupted()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        except OSError as e:
            raise _named(e, path) from e
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        raise_if_interrupted()  # the last moment to refuse: after this the artifact is there
        os.replace(tmp, path)
    except BaseException:
        with signals_deferred(), contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def publish(staged: Path, path: Path, aside: Path | None = None) -> None:
    """Rename a finished file or folder (an .mlpackage) ``staged`` onto ``path`` -- unless a signal arrived.

    ``staged`` must be on ``path``'s filesystem (made in ``path.parent``); a folder already at ``path`` is
    moved to ``aside`` (default ``staged`` + ``.previous``) first, for the caller to remove."""
    staged, path = Path(staged), Path(path)
    raise_if_interrupted()
    if path.is_dir() and not path.is_symlink():
        os.replace(path, aside or staged.with_name(staged.name + ".previous"))
    os.replace(staged, path)


def _force_remove(root: Path) -> None:
    """``rm -rf root``, making read-only folders writable on the way (a library may leave 0500 ones)."""
    def retry(func, p, _exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), stat.S_IRWXU)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, stat.S_IRWXU)
            func(p)
    shutil.rmtree(root, onerror=retry)
    shutil.rmtree(root, ignore_errors=True)


def scratch_dir() -> Path:
    """This process's scratch folder (``$TMPDIR/vitdeploy-XXXX``), made on first use and removed at exit:
    stage temporaries here (``tempfile.mkdtemp(dir=scratch_dir())``), never beside the user's files."""
    global _scratch, _scratch_pid, _scratch_base
    if _scratch is None or _scratch_pid != os.getpid() or not _scratch.is_dir():
        if _scratch_base is None or _scratch_pid != os.getpid():
            _scratch_base = tempfile.gettempdir()
            if _scratch_pid is None:
                atexit.register(remove_scratch)
        _scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=_scratch_base))
        _scratch_pid = os.getpid()
    return _scratch


def temporary_base() -> str:
    """The temporary folder the user's environment names (TMPDIR), whatever the scratch session set."""
    return _scratch_base or tempfile.gettempdir()


def remove_scratch() -> None:
    """Remove the scratch folder (only in the process that made it: a forked worker leaves it alone)."""
    global _scratch, _scratch_base
    if _scratch is not None and _scratch_pid == os.getpid():
        with signals_deferred():
            _force_remove(_scratch)
        _scratch = _scratch_base = None


@contextlib.contextmanager
def scratch_session():
    """For one CLI run: every ``tempfile`` user in this process (vitdeploy, and the converters it calls:
    TensorFlow, coremltools, torch) and every child (``TMPDIR``) stages in :func:`scratch_dir`, removed on
    the way out, on an error, Ctrl-C or SIGTERM (the CLI turns those into exceptions) too."""
    global _saved_tempdir
    outer = _saved_tempdir is None
    if outer:
        _saved_tempdir = ("TMPDIR" in os.environ, os.environ.get("TMPDIR"), tempfile.tempdir)
    try:
        if outer:
            root = scratch_dir()
            tempfile.tempdir = str(root)
            os.environ["TMPDIR"] = str(root)
        yield
    finally:
        if outer:
            had, env, tempdir = _saved_tempdir
            if had:
                os.environ["TMPDIR"] = env
            else:
                os.environ.pop("TMPDIR", None)
            tempfile.tempdir = tempdir
            _saved_tempdir = None
            remove_scratch()


def disk_full(e: BaseException) -> bool:
    """Whether ``e`` or what it was raised from is a full disk or quota (errno, or a native converter's words)."""
    import errno

    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo and len(seen) < 32:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(t in str(x).lower() for t in ("no space left on device", "disk quota exceeded")):
            return True
        todo += [x.__cause__, x.__context__]
    return False


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks (checkpoints, farm payloads)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
