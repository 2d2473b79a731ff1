"""What every command prints, and how: human lines made visible, one JSON document under ``--json`` (a leaf of the CLI).

``json_option`` marks the context (``progress.JSON_META``): progress stays quiet, and a failure prints an error
object on stdout as well as its one stderr line (``exits._fail``); ``echo_json`` marks the document printed,
so a failure after it (a check that failed) adds nothing to stdout.
"""

from __future__ import annotations

import json

import click

from .diagnostics import visible
from .progress import JSON_META, JSON_PRINTED_META, printing


def json_option(what: str = "output"):
    return click.option("--json", "as_json", is_flag=True, help=f"Machine-readable {what}.",
                        callback=lambda ctx, _p, v: ctx.meta.update({JSON_META: v}) or v)


def echo(message: object = "", err: bool = False, nl: bool = True) -> None:
    """Every human-readable line: file names, labels, checkpoint keys and a phone's words are untrusted, so
    control characters (ANSI escapes, CR, bidi overrides) are shown escaped, never sent to the terminal."""
    with printing():  # a ticking progress line is wiped first
        click.echo(visible(message), err=err, nl=nl)


def echo_json(obj) -> None:
    # json.dumps escapes every control and non-ASCII character (ensure_ascii): nothing raw reaches the terminal.
    click.echo(json.dumps(obj, indent=2, default=str))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.meta[JSON_PRINTED_META] = True
