"""How the CLI turns an exception into one line on stderr and an exit code (0 ok, 1 a check failed,
2 bad input or usage, 3 a bug in vitdeploy), naming the user's file when the file is at fault.

:func:`exit_for` is the mapping; every ``vitdeploy`` command reaches it through the click classes of
:mod:`vitdeploy.cli_group`, so no command can leak a traceback (``VITDEPLOY_DEBUG=1`` shows it, for a bug report).
"""

from __future__ import annotations

import errno
import os
import signal

import click

from . import files
from .diagnostics import first_line, received_signal, visible
from .errors import CheckFailed, VitdeployError
from .untrusted import file_being_read, names_file, parser_error

_DEBUG_ENV = "VITDEPLOY_DEBUG"  # set to 1 to get the traceback of an internal error (for a bug report)
INTERNAL_ERROR_EXIT = 3


def _path_params(ctx: click.Context) -> list[str]:
    """The command's file arguments as given (the candidates for "which file was bad")."""
    out: list[str] = []
    for param in ctx.command.params:
        if not isinstance(param.type, click.Path):
            continue
        value = ctx.params.get(param.name)
        for v in value if isinstance(value, (tuple, list)) else [value]:
            if v is not None:
                out.append(str(v))
    return out


def unexpected_error_line(e: BaseException, ctx: click.Context | None) -> tuple[str, int]:
    """(one line for stderr, exit code) for an exception no vitdeploy code turned into a VitdeployError.

    A parser's exception or an OSError about a file that escaped every :func:`~vitdeploy.untrusted.reading`
    block exits 2 naming the file (its own ``filename``, else the command's first file argument); anything
    else is a bug in vitdeploy: one line (naming the file a reader was reading) and exit 3, never a traceback
    (VITDEPLOY_DEBUG=1 shows it)."""
    candidates = _path_params(ctx) if ctx is not None else []
    where = file_being_read(e)
    error = parser_error(e, where or (candidates[0] if candidates else "input"))
    if error is not None:
        return f"error: {error}", 2
    about = f" while reading {where}" if where else ""
    return (f"internal error{about}: {type(e).__name__}: {first_line(e)} (a bug in vitdeploy; "
            f"{_DEBUG_ENV}=1 shows the traceback)", INTERNAL_ERROR_EXIT)


# A write that failed for want of room or rights: the user's disk, not vitdeploy's bug nor a failed check.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
# The same, as native converters (LLVM, MLIR, TensorFlow, coremltools' C++) word it in a RuntimeError.
_DISK_TEXTS = {"no space left on device": errno.ENOSPC, "disk quota exceeded": errno.EDQUOT,
               "read-only file system": errno.EROFS}
# Parameters that name what a command writes, most specific first (where a full disk most likely hit).
_OUTPUT_PARAMS = ("out", "output", "out_dir", "into", "save_logits", "report_dir", "cache")


def _chain(e: BaseException, limit: int = 32) -> list[BaseException]:
    """``e`` and everything it was raised from or while handling (``__cause__``/``__context__``), each once."""
    seen, todo, out = set(), [e], []
    while todo and len(out) < limit:
        x = todo.pop(0)
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        out.append(x)
        todo += [x.__cause__, x.__context__]
    return out


def _output_param(ctx: click.Context | None) -> str | None:
    params = getattr(ctx, "params", None) or {}
    for name in _OUTPUT_PARAMS:
        v = params.get(name)
        if isinstance(v, (str, os.PathLike)) and str(v):
            return str(v)
    return None


def disk_error_line(e: BaseException, ctx: click.Context | None) -> str | None:
    """One line for a full disk, a quota, a read-only or forbidden destination anywhere in ``e``'s chain (an
    OSError, or a converter's RuntimeError saying "No space left on device"), naming the path; else None.
    A disk problem is the user's to fix (exit 2), whoever saw it first and however they worded it."""
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in _DISK_ERRNOS:
            if x.errno in (errno.EACCES, errno.EPERM) and not x.filename:
                continue  # "permission denied" on no file in particular: not clearly the disk
            where = x.filename or _output_param(ctx) or files.temporary_base()
            return f"error: {where}: {os.strerror(x.errno)}"
    for x in _chain(e):
        text = str(x).lower()
        code = next((c for phrase, c in _DISK_TEXTS.items() if phrase in text), None)
        if code is not None:
            out = _output_param(ctx)
            where = f"{out}: {os.strerror(code)} (there, or in the temporary folder {files.temporary_base()})" \
                if out else f"{files.temporary_base()}: {os.strerror(code)}"
            return f"error: {where}"
    return None


def _naming_the_file(message: str, e: BaseException, ctx: click.Context) -> str:
    """``message``, prefixed with the file a :func:`~vitdeploy.untrusted.reading` block was reading when
    the error did not name it (e.g. a check deep down that only knows a value): every input error names its file."""
    candidates = _path_params(ctx)
    if not candidates or any(names_file(message, c) for c in candidates):
        return message
    where = file_being_read(e)
    return f"{where}: {message}" if where and where not in message else message


def exit_for(e: BaseException, ctx: click.Context) -> None:
    """The one place that turns an exception into the exit-code contract: 1 check failed, 2 bad input (one
    line naming the file; a full disk too), 3 a bug (one line), 130/143 interrupted by SIGINT/SIGTERM; never a
    traceback unless VITDEPLOY_DEBUG=1.

    Every line goes through :func:`~vitdeploy.diagnostics.visible`: messages embed file names, checkpoint
    keys, labels and a phone's words, none of which may drive the terminal."""
    signum = received_signal()
    if signum is not None or isinstance(e, KeyboardInterrupt):
        # Whatever the signal turned into on its way up (a converter's wrapper, a swallowed interrupt), it wins.
        _fail(ctx, "interrupted", 128 + (signum or getattr(e, "signum", signal.SIGINT)))
    disk = disk_error_line(e, ctx)
    if disk:
        _fail(ctx, disk, 2)
    if isinstance(e, VitdeployError):
        _fail(ctx, f"error: {_naming_the_file(' '.join(str(e).splitlines()), e, ctx)}", e.exit_code)
    if isinstance(e, CheckFailed):
        _fail(ctx, f"check failed: {e}", e.exit_code)
    if os.environ.get(_DEBUG_ENV):
        raise e
    line, code = unexpected_error_line(e, ctx)
    _fail(ctx, line, code)


def _fail(ctx: click.Context, line: str, code: int) -> None:
    """The one line on stderr, then the exit; under --json, when the command has not printed its JSON document
    yet, an error object on stdout too (``{"error": ..., "exit_code": ...}``), so stdout is always one JSON."""
    say_error(line)
    from .progress import JSON_PRINTED_META, json_requested

    if json_requested(ctx) and not ctx.meta.get(JSON_PRINTED_META):
        import json

        text = visible(" ".join(str(line).splitlines()), newlines=False)
        for prefix in ("error: ", "check failed: "):
            text = text.removeprefix(prefix)
        click.echo(json.dumps({"error": text, "exit_code": code}))
        ctx.meta[JSON_PRINTED_META] = True
    ctx.exit(code)


def say_error(line: str) -> None:
    """The error line on stderr: one line, control characters made visible."""
    click.echo(visible(" ".join(str(line).splitlines()), newlines=False), err=True)
