"""Reading side files a user points at (labels, config.json, artifacts): bounded, regular files only.

A FIFO would hang the read, a link to /dev/zero or /dev/urandom would fill memory, and a 2 GB
"labels.txt" is not a labels file: each read here opens without blocking, checks on the open
descriptor that it is a regular file, and reads at most ``limit + 1`` bytes (so a file that grows
between the check and the read is still refused). Errors are one-line :class:`VitdeployError`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import VitdeployError

KIB, MIB = 1 << 10, 1 << 20

# Caps, with the largest real file of each kind they must admit:
# a labels file: ImageNet-21k's 21,843 class names take ~0.5 MB; 4 MiB is 8x that.
LABELS_LIMIT = 4 * MIB
# an HF config.json: id2label/label2id for 21k classes is ~1.5 MB; 16 MiB is 10x that.
CONFIG_LIMIT = 16 * MIB
# an artifact (.tflite/.pte): LeViT-384 in fp32, the largest we write, is ~160 MB; a flatbuffer
# cannot exceed 2 GiB anyway, so more than that is not a model.
ARTIFACT_LIMIT = 2 << 30


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
