"""How vitdeploy talks about other libraries' failures and keeps their noise off the terminal (a leaf).

Converters and quantizers raise anything, print progress bars and log warnings; the user gets one
line per failure (exit 2 through :class:`~vitdeploy.errors.VitdeployError`) and none of the chatter.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import sys
import unicodedata
import warnings

from .errors import ConversionError, VitdeployError

# Characters a terminal acts on instead of showing: C0/C1 controls (ESC starts colour and cursor
# sequences, CR overwrites the line), format characters (U+202E reverses the text that follows, zero-width
# marks hide), line/paragraph separators, lone surrogates (unprintable: stdout would raise) and private use.
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    if ch == "\n":
        return "\\n"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def visible(text: object, newlines: bool = True) -> str:
    """``text`` with every character a terminal would act on written out (``\\x1b``, ``\\r``, ``\\u202e``):
    label strings, checkpoint keys, file names and a phone's messages are untrusted, and printed raw an
    ANSI sequence recolours or rewrites the user's terminal, a CR hides what came before it on the line, a
    bidi override reverses what follows. Newlines (and tabs) stay where text legitimately spans lines
    (``newlines=False`` escapes them too, for a one-line message). Ordinary text, non-ASCII letters
    included, is unchanged."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():  # fast path: no control, format or separator character at all
        return text
    keep = "\n\t" if newlines else ""
    return "".join(_escape_char(ch) if ch not in keep and unicodedata.category(ch) in _INVISIBLE_CATEGORIES else ch
                   for ch in text)


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
def converter_errors(stage: str, at: str | None = None):
    """Turn any exception but vitdeploy's own into ``ConversionError("<stage> failed: <one line>")``
    (``<stage> failed at <at>: ...`` with ``at``, the step of a longer conversion: ``torch.export``)."""
    try:
        yield
    except VitdeployError:
        raise
    except Exception as e:  # noqa: BLE001 - converter internals raise anything; report one line
        where = f" at {at}" if at else ""
        raise ConversionError(f"{stage} failed{where}: {one_line(e)}") from e


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


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the CLI prints "interrupted" and exits 128 + the signal number
    (130 for Ctrl-C, 143 for SIGTERM). A KeyboardInterrupt, so code that already stops on Ctrl-C stops on it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return "interrupted"


# The signal the CLI received (None: none). Sticky: a KeyboardInterrupt raised inside a ``__del__`` or a gc
# callback is printed as "Exception ignored in ..." and lost, and the work would carry on and publish its
# artifact; every stage boundary and every publishing helper asks :func:`raise_if_interrupted` instead.
_received: int | None = None
_deferred = 0  # > 0 while cleanup that must finish runs: a signal is recorded, not raised


def note_signal(signum: int) -> None:
    """Record ``signum`` (the CLI's SIGINT/SIGTERM handler); raise :class:`Interrupted` unless deferred."""
    global _received
    if _received is None or signum == signal.SIGTERM:  # SIGTERM wins over an earlier Ctrl-C: the caller asked to stop
        _received = signum
    if not _deferred:
        raise Interrupted(signum)


def received_signal() -> int | None:
    """The signal received since :func:`clear_signal` (None if none)."""
    return _received


def clear_signal() -> None:
    global _received
    _received = None


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal arrived, even one whose exception someone swallowed: call it at
    stage boundaries and before publishing anything."""
    if _received is not None:
        raise Interrupted(_received)


@contextlib.contextmanager
def signals_deferred():
    """Cleanup that must run to the end (removing temporaries): a signal arriving now is recorded, not raised."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1


def quiet_third_party_noise() -> None:
    """Silence import-time chatter of libraries the converters pull in (not vitdeploy's own messages):
    torchao's "Failed to load ..._C_cutlass_90a.so" (CUDA kernels on a CPU build), torch's pytree and
    LeafSpec deprecation notices raised from inside torch.export, coremltools' "Failed to load
    _MLModelProxy" off macOS."""
    import logging
    import warnings

    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if sys.platform != "darwin":  # coremltools' native runtime only exists on macOS: its absence is expected
        logging.getLogger("coremltools").addFilter(lambda r: not r.getMessage().startswith("Failed to load _ML"))
    # coremltools' version notes: vitdeploy pins and tests its own combination (constraints file).
    logging.getLogger("coremltools").addFilter(
        lambda r: not r.getMessage().startswith(("scikit-learn version", "Torch version")))
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(copyreg|torch\.|torchao|litert_torch)")
