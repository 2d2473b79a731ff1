"""A test-only entry point: the real ``vitdeploy`` group (its ``main``: signal handlers, scratch folder, exit
codes) with a few extra commands that stage temporaries, then wait where a signal should land:
tests/test_signals.py starts it as a subprocess and sends SIGINT/SIGTERM once it wrote its ``ready`` file."""

from __future__ import annotations

import errno
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import click

from vitdeploy import files
from vitdeploy.cli import main
from vitdeploy.diagnostics import converter_errors
from vitdeploy.errors import CheckFailed


def _ready(path: str) -> None:
    Path(path).write_text("ready")


def _stage() -> None:
    """Temporaries the way vitdeploy and the converters make them (in the temporary folder)."""
    work = Path(tempfile.mkdtemp(prefix="converter-"))
    (work / "float.tflite").write_bytes(b"x" * 1000)
    os.chmod(work, 0o500)  # a library that leaves a read-only folder behind
    fd, _ = tempfile.mkstemp(suffix=".bin")
    os.close(fd)


@main.command("test-slow-write")
@click.argument("out", type=click.Path())
@click.option("--ready", required=True)
@click.option("--wait", type=click.Choice(["publish", "del", "gc"]), required=True)
def slow_write(out: str, ready: str, wait: str) -> None:
    _stage()
    if wait == "publish":  # the signal lands while the .partial is written, before the rename
        real = os.replace

        def slow_replace(src, dst):
            _ready(ready)
            time.sleep(30)
            real(src, dst)

        os.replace = slow_replace
    elif wait == "del":  # the signal lands inside a third-party __del__: Python prints and drops it
        class Handle:
            def __del__(self):
                _ready(ready)
                time.sleep(30)

        h = Handle()
        del h
    else:  # ... or inside a gc callback
        def callback(phase, info):
            if phase == "start":
                gc.callbacks.remove(callback)
                _ready(ready)
                time.sleep(30)

        gc.callbacks.append(callback)
        gc.collect()
    files.write_atomically(Path(out), b"artifact")
    click.echo(f"wrote {out}")


@main.command("test-disk-full")
@click.argument("out", type=click.Path())
@click.option("--how", type=click.Choice(["write", "native", "check", "cause"]), required=True)
def disk_full(out: str, how: str) -> None:
    if how == "write":  # every write of the artifact lands on /dev/full (ENOSPC), as on a full disk
        def full(fd, mode="r", *a, **k):
            os.close(fd)
            return open("/dev/full", mode)

        files.os.fdopen = full
        files.write_atomically(Path(out), b"x" * 100_000)
    elif how == "native":  # what a converter's C++ (LLVM) says, through vitdeploy's wrapper
        with converter_errors("tflite export"):
            raise RuntimeError("LLVM ERROR: IO failure on output stream: No space left on device\n#0 0x7f llvm::...")
    elif how == "check":  # a parity check that failed because the artifact could not be written
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise CheckFailed("parity: artifact unreadable") from None
    else:
        try:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "/tmp/q/model.tflite")
        except OSError as e:
            raise RuntimeError("tensorflow::Status: INTERNAL") from e


if __name__ == "__main__":
    sys.exit(main())
