"""The click classes every ``vitdeploy`` command is made of: :class:`_Group` (the entry point: signals become
exceptions, temporaries live in one scratch folder) and :class:`_Command` (an error becomes one line and the
documented exit code, through :func:`vitdeploy.exits.exit_for`, while the command's arguments are known).

The CLI modules build on these; what an exception maps to is :mod:`vitdeploy.exits`'s.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

import click

from . import files
from .diagnostics import clear_signal, note_signal, raise_if_interrupted, received_signal
from .exits import exit_for, say_error


@contextlib.contextmanager
def signals_handled():
    """For one CLI run: SIGINT and SIGTERM raise :class:`~vitdeploy.diagnostics.Interrupted` in the main thread
    (so ``finally`` blocks remove temporaries and ``.partial`` files, which the default SIGTERM would not) and
    are remembered (so an interrupt swallowed by a ``__del__`` or gc callback still stops the run before it
    publishes). The previous handlers come back afterwards; a signal the parent ignored stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    clear_signal()

    def handler(signum, _frame):
        note_signal(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old = signal.getsignal(sig)
        if old is signal.SIG_IGN:  # nohup, a background job: the caller chose to ignore it
            continue
        previous[sig] = old
        signal.signal(sig, handler)
    hook = sys.unraisablehook

    def unraisable(u):
        # The interrupt raised inside a __del__ or gc callback is lost there: it is recorded and the run stops
        # at the next stage boundary; no "Exception ignored in ..." noise on the user's terminal.
        if isinstance(u.exc_value, KeyboardInterrupt) and received_signal() is not None:
            return
        hook(u)

    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


class _Command(click.Command):
    """Every subcommand: errors become one line while the command's own arguments are still known."""

    def invoke(self, ctx: click.Context):
        try:
            rv = super().invoke(ctx)
            raise_if_interrupted()  # a signal swallowed on the way (a __del__, a gc callback) still fails the run
            return rv
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors and exits already follow the contract
        except (Exception, KeyboardInterrupt) as e:
            exit_for(e, ctx)


class _Group(click.Group):
    """Turns vitdeploy's errors into one line on stderr and the documented exit code."""

    command_class = _Command  # @main.command() makes _Commands: no command can leak a traceback

    def main(self, *args, **kwargs):
        """The entry point: signals become exceptions, temporaries live in one scratch folder that goes
        whatever happens (:func:`signals_handled`, :func:`vitdeploy.files.scratch_session`)."""
        with signals_handled(), files.scratch_session():
            return super().main(*args, **kwargs)

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except KeyboardInterrupt as e:  # while click parses: still "interrupted", not click's "Aborted!" (exit 1)
            say_error("interrupted")
            raise click.exceptions.Exit(128 + (received_signal() or getattr(e, "signum", signal.SIGINT))) from None

    def invoke(self, ctx: click.Context):
        try:
            rv = super().invoke(ctx)
            raise_if_interrupted()
            return rv
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (Exception, KeyboardInterrupt) as e:
            exit_for(e, ctx)
