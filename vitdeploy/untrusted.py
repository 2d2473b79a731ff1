"""Reading files a user points at (checkpoints, recipes, labels, config.json, artifacts) or a phone sends back.

:func:`reading` wraps every reader of such a file: whatever its parser raises on bad bytes (a struct, zip,
JSON, protobuf or pickle error, a ``KeyError`` while walking a damaged structure, an OSError about the file)
leaves it as one :class:`~vitdeploy.errors.InputError` naming the file (exit 2), so no reader has to list
its parser's exceptions and a new reader names its file just by using it.

Side files (labels, config.json, artifacts) are read bounded, regular files only: a FIFO would hang the
read, a link to /dev/zero or /dev/urandom would fill memory, and a 2 GB
"labels.txt" is not a labels file: each read here opens without blocking, checks on the open
descriptor that it is a regular file, and reads at most ``limit + 1`` bytes (so a file that grows
between the check and the read is still refused). Errors are one-line :class:`VitdeployError`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .diagnostics import first_line
from .errors import InputError, VitdeployError

KIB, MIB = 1 << 10, 1 << 20

# Caps, with the largest real file of each kind they must admit:
# a labels file: ImageNet-21k's 21,843 class names take ~0.5 MB; 4 MiB is 8x that.
LABELS_LIMIT = 4 * MIB
# an HF config.json: id2label/label2id for 21k classes is ~1.5 MB; 16 MiB is 10x that.
CONFIG_LIMIT = 16 * MIB
# an artifact (.tflite/.pte): LeViT-384 in fp32, the largest we write, is ~160 MB; a flatbuffer
# cannot exceed 2 GiB anyway, so more than that is not a model.
ARTIFACT_LIMIT = 2 << 30


# A parser's own exceptions for bytes that are not what they claim, matched by qualified class name anywhere in
# the exception's MRO (so nothing here imports torch, PIL, yaml, ...), with how the one line words each.
PARSER_ERRORS = {
    "builtins.EOFError": "truncated file",
    "builtins.UnicodeDecodeError": "not UTF-8 text",
    "builtins.MemoryError": "declares sizes too large to load",
    "zipfile.BadZipFile": "corrupt zip archive",
    "_pickle.UnpicklingError": "corrupt pickle data",
    "struct.error": "corrupt binary data",
    "json.decoder.JSONDecodeError": "not valid JSON",
    "yaml.error.YAMLError": "not valid YAML",
    "PIL.UnidentifiedImageError": "not a readable image",
    "PIL.Image.DecompressionBombError": "image too large",
    "google.protobuf.message.DecodeError": "corrupt protobuf",
    "safetensors_rust.SafetensorError": "not a valid safetensors file",
}
# What walking a damaged file's structure raises (a None where a list belongs, a missing key, an index past the
# end): inside :func:`reading` the file's fault, even where the reader did not validate that field itself.
DATA_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError)
_BEING_READ = "vitdeploy_file_being_read"  # the attribute reading() marks an exception it lets through with


@contextlib.contextmanager
def reading(path: str | Path | None, *, data_errors: bool = True):
    """Interpret the untrusted file ``path`` inside this block (``None``: bytes given by a caller, whose own
    ``reading`` names the file they came from; nothing is done here).

    A parser's exception (:data:`PARSER_ERRORS`, an OSError about a file, a :data:`DATA_ERRORS` one) leaves as
    :class:`InputError` ``"<path>: <what is wrong> (<Type>: <first line>)"``, chained to it. Anything else
    passes unchanged, marked with ``path`` unless its message names the file already or an inner ``reading``
    marked it (:func:`file_being_read`): the CLI then prefixes a :class:`VitdeployError` with the file, and
    calls any other exception a bug met while reading it.

    ``data_errors=False`` for a block that goes on to build from what it read (a model from a state dict):
    a ``TypeError`` there may be vitdeploy's own bug, so only a parser's exceptions are the file's fault."""
    if path is None:
        yield
        return
    try:
        yield
    except Exception as e:
        error = None
        if not isinstance(e, VitdeployError):
            error = parser_error(e, path) or (_malformed(e, path) if data_errors else None)
        if error is None:
            if not hasattr(e, _BEING_READ) and not names_file(str(e), path):
                setattr(e, _BEING_READ, str(path))
            raise
        raise error from e


def file_of(path_or_bytes) -> str | Path | None:
    """What to pass :func:`reading` in a reader given a file or its bytes: the file, or None for bytes."""
    return path_or_bytes if isinstance(path_or_bytes, (str, os.PathLike)) else None


def parser_error(e: BaseException, path: str | Path) -> InputError | None:
    """The :class:`InputError` that ``e``, raised while reading ``path``, amounts to, if it is a parser's
    exception or an OSError about a file (named by its own ``filename`` when it has one); else None."""
    if isinstance(e, OSError) and (e.filename or e.strerror):
        return InputError(e.filename or path, e.strerror or first_line(e))
    for cls in type(e).__mro__:
        kind = PARSER_ERRORS.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind:
            return InputError(path, f"{kind} ({type(e).__name__}: {first_line(e)})")
    return None


def _malformed(e: BaseException, path: str | Path) -> InputError | None:
    if isinstance(e, DATA_ERRORS):
        return InputError(path, f"malformed content ({type(e).__name__}: {first_line(e)})")
    return None


def file_being_read(e: BaseException) -> str | None:
    """The file a :func:`reading` block was interpreting when ``e`` passed through it unconverted, if any."""
    return getattr(e, _BEING_READ, None)


def names_file(message: str, path: str | Path) -> bool:
    """Whether ``message`` names ``path`` (in full, or by its last component as many messages do)."""
    text = str(path)
    base = os.path.basename(text.rstrip("/"))
    return text in message or bool(base) and base in message


def _human(n: int) -> str:
    return f"{n / MIB:.0f} MiB" if n >= MIB else f"{n / KIB:.0f} KiB" if n >= KIB else f"{n} bytes"


def read_side_file(path: str | Path, limit: int, what: str = "file", *, error=VitdeployError) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes, or one-line ``error`` naming it.

    ``what`` names the file's role in messages ("labels file", "config.json")."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        gone = "dangling symlink or symlink loop" if path.is_symlink() else "no such file"
        raise error(f"{path}: {what}: {gone}") from None
    except IsADirectoryError:
        raise error(f"{path}: {what}: a directory, not a file") from None
    except OSError as e:
        raise error(f"{path}: {what}: cannot open it ({e.strerror or e})") from None
    try:
        _require_regular(os.fstat(fd), path, limit, what, error)
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise error(f"{path}: {what}: more than the {_human(limit)} such a file can be")
        return b"".join(chunks)
    except OSError as e:
        raise error(f"{path}: {what}: cannot read it ({e.strerror or e})") from None
    finally:
        os.close(fd)


def read_side_text(path: str | Path, limit: int, what: str = "file", *, error=VitdeployError) -> str:
    """:func:`read_side_file` decoded as UTF-8 (a BOM is dropped); binary data is a one-line ``error``."""
    data = read_side_file(path, limit, what, error=error)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(f"{path}: {what}: not UTF-8 text (byte {e.start})") from None


def require_regular_file(path: str | Path, limit: int, what: str = "file", *, error=VitdeployError) -> None:
    """Refuse ``path`` unless it is a regular file of at most ``limit`` bytes (for readers that open it themselves)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        gone = "dangling symlink or symlink loop" if path.is_symlink() else "no such file"
        raise error(f"{path}: {what}: {gone}") from None
    except OSError as e:
        raise error(f"{path}: {what}: cannot read it ({e.strerror or e})") from None
    _require_regular(info, path, limit, what, error)


def _require_regular(info: os.stat_result, path, limit: int, what: str, error) -> None:
    """A regular file of at most ``limit`` bytes, from its stat; else a one-line ``error``."""
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: {what}: a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: {what}: not a regular file (a pipe, socket or device)")
    if info.st_size > limit:
        raise error(f"{path}: {what}: {_human(info.st_size)}, more than the {_human(limit)} such a file can be")
