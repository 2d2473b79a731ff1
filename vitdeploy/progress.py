"""A sign of life on every wait longer than a few seconds: one ticking line on stderr (a leaf).

``with step("converting levit_128s -> tflite w8a8"):`` shows ``[0:12] converting levit_128s -> tflite w8a8``
on stderr, redrawn each second by a background thread, and clears it when the step ends. Steps nest (a
build cell holds a conversion): the line shows them all, the outermost's elapsed time first. ``note(text)``
adds what the innermost step is doing now (an int8 search attempt, a model of several).

Quiet unless a person watches: nothing under ``--json`` (the command's context says so), nothing when
stderr is not a terminal (a log, a pipe, CI), nothing outside the CLI (a library caller). With
``VITDEPLOY_VERBOSE=1`` and no terminal, each step prints one plain line when it starts instead.
Names in the line are untrusted (file names): control characters are shown escaped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
import time

JSON_META = "vitdeploy.json"  # ctx.meta: the command was asked for --json (set by the CLI's json option)
JSON_PRINTED_META = "vitdeploy.json_printed"  # ctx.meta: the command's JSON document is already on stdout
_VERBOSE_ENV = "VITDEPLOY_VERBOSE"
_TICK_S = 1.0

_lock = threading.RLock()
_stack: list["_Step"] = []
_ticker: "_Ticker | None" = None


class _Step:
    def __init__(self, what: str):
        self.what = what
        self.detail = ""
        self.started = time.monotonic()


def json_requested(ctx=None) -> bool:
    """Whether the running command was asked for --json (its context's meta flag, or its ``as_json`` option)."""
    if ctx is None:
        import click

        ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    return bool(ctx.meta.get(JSON_META) or (getattr(ctx, "params", None) or {}).get("as_json"))


def _in_cli() -> bool:
    import click

    return click.get_current_context(silent=True) is not None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _mode() -> str | None:
    """"tty" (a ticking line), "plain" (one line per step), or None (quiet)."""
    if not _in_cli() or json_requested():
        return None
    if _isatty(sys.stderr):
        return "tty"
    return "plain" if os.environ.get(_VERBOSE_ENV, "") not in ("", "0") else None


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _line(now: float | None = None) -> str:
    from .diagnostics import visible

    now = time.monotonic() if now is None else now
    with _lock:
        if not _stack:
            return ""
        parts = [s.what for s in _stack]
        if _stack[-1].detail:
            parts[-1] += f": {_stack[-1].detail}"
        text = f"[{_clock(now - _stack[0].started)}] " + " | ".join(parts)
    text = visible(" ".join(text.split()), newlines=False)
    width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)  # a wrapped line could not be redrawn
    return text if len(text) <= width else text[:width - 3] + "..."


class _Ticker(threading.Thread):
    def __init__(self, stream):
        super().__init__(name="vitdeploy-progress", daemon=True)
        self.stream = stream
        self.stop = threading.Event()
        self.shown = False

    def run(self) -> None:
        while not self.stop.wait(_TICK_S):
            self.draw()

    def draw(self) -> None:
        with _lock:
            if self.stop.is_set():
                return
            self._write("\r" + _line() + "\x1b[K")
            self.shown = True

    def clear(self) -> None:
        with _lock:
            if self.shown:
                self._write("\r\x1b[K")
                self.shown = False

    def _write(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # a closed or broken stderr must not fail the work
            self.stream.write(text)
            self.stream.flush()


@contextlib.contextmanager
def step(what: str):
    """Show ``what`` (with elapsed time) while the block runs; see the module's docstring for when."""
    global _ticker
    mode = _mode()
    if mode is None:
        yield
        return
    s = _Step(what)
    with _lock:
        _stack.append(s)
        outermost = len(_stack) == 1
        if mode == "plain":
            _write_plain(_line())
        elif outermost:
            _ticker = _Ticker(sys.stderr)
            _ticker.draw()
            _ticker.start()
        elif _ticker is not None:
            _ticker.draw()
    try:
        yield
    finally:
        with _lock:
            if s in _stack:
                _stack.remove(s)
            ticker = _ticker
            if ticker is not None and not _stack:
                ticker.stop.set()
                _ticker = None
        if ticker is not None:
            if not _stack:
                ticker.join(timeout=2 * _TICK_S)
                ticker.clear()
            else:
                ticker.draw()


def note(detail: str) -> None:
    """What the innermost step is doing now (shown after its name); nothing when no step is shown."""
    with _lock:
        if not _stack:
            return
        _stack[-1].detail = str(detail)
        if _ticker is not None:  # a plain log gets one line per step, not one per note
            _ticker.draw()


@contextlib.contextmanager
def printing():
    """Around printing a line of one's own: the ticking line is wiped first, and not redrawn until the line
    is out (the next tick draws it again below)."""
    with _lock:
        if _ticker is not None:
            _ticker.clear()
        yield


def _write_plain(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
