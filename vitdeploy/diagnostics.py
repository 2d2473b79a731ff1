"""How vitdeploy talks about other libraries' failures and keeps their noise off the terminal (a leaf).

Converters and quantizers raise anything, print progress bars and log warnings; the user gets one
line per failure (exit 2 through :class:`~vitdeploy.errors.VitdeployError`) and none of the chatter.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings

from .errors import ConversionError, VitdeployError


def one_line(e: BaseException, limit: int = 400) -> str:
    """``Type: first words`` of an exception, on one line (whitespace collapsed, at most ``limit`` chars)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}" if text else type(e).__name__


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message, else its type name (native tracebacks run long).

    A leading ``error: `` is dropped so the CLI's line does not read "error: ... (error: ...)".
    """
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "") or type(e).__name__
    return (text[len("error: "):] if text.startswith("error: ") else text)[:limit]


def describe(e: BaseException, limit: int = 300) -> str:
    """``Type: first line`` of an exception (just ``Type`` when it has no message)."""
    text = next((line.strip() for line in str(e).splitlines() if line.strip()), "")[:limit]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextlib.contextmanager
def converter_errors(stage: str):
    """Turn any exception but vitdeploy's own into ``ConversionError("<stage> failed: <one line>")``."""
    try:
        yield
    except VitdeployError:
        raise
    except Exception as e:  # noqa: BLE001 - converter internals raise anything; report one line
        raise ConversionError(f"{stage} failed: {one_line(e)}") from e


@contextlib.contextmanager
def quiet(stdout: bool = False):
    """Mute progress bars (tqdm and coremltools write to stderr), Python warnings and library logs below
    ERROR for the duration: what the user sees comes through vitdeploy's own ``progress``.

    ``stdout=True`` swallows stdout too (coremltools prints about its native libraries on import);
    never around code that reports progress, which goes to stdout.
    """
    logging.disable(logging.WARNING)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def package_version(name: str) -> str:
    """``name version`` of an installed distribution (just ``name`` when it has no metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return name


@contextlib.contextmanager
def native_quiet():
    """Mute native log lines that runtimes write to file descriptor 2 from C++, which Python-level
    redirection cannot catch (ExecuTorch's ``[cpuinfo_utils.cpp:71] Reading file ...``, LiteRT's
    ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``). Errors still arrive as exceptions."""
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (an embedded interpreter): nothing to mute
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
