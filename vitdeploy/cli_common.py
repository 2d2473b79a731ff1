"""What every ``vitdeploy`` command module shares: the common options (one spelling each, old spellings kept as
hidden aliases), terminal-safe printing. A leaf of the CLI: ``cli.py`` and the ``cli_*`` modules import it,
it imports none of them; nothing heavy is imported here.
"""

from __future__ import annotations

import json

import click

from .diagnostics import visible
from .progress import JSON_META, JSON_PRINTED_META, printing


class AliasOption(click.Option):
    """An option whose earlier spellings (``hidden_aliases``) still parse but are left out of ``--help``."""

    def __init__(self, *args, hidden_aliases: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx):
        shown = self.opts
        self.opts = [o for o in shown if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


def json_option(what: str = "output"):
    """``--json``; marks the context (``progress.JSON_META``): progress stays quiet, and a failure prints an error
    object on stdout as well as its one stderr line (``exits.exit_for``)."""
    return click.option("--json", "as_json", is_flag=True, help=f"Machine-readable {what}.",
                        callback=lambda ctx, _p, v: ctx.meta.update({JSON_META: v}) or v)


def threads_option(help: str | None = None):  # noqa: A002 - click's keyword
    return click.option("--threads", default=2, show_default=True, type=click.IntRange(1, None), help=help)


def runtime_option(help: str | None = None):  # noqa: A002 - click's keyword
    return click.option("--runtime", type=click.Choice(["auto", "coreml", "interpreter"]), default="auto",
                        show_default=True, help=help)


def data_option(help: str, required: bool = False):  # noqa: A002 - click's keyword
    """``--data DIR``: the one spelling of an image folder across commands (``--images`` still parses)."""
    return click.option("--data", "--images", "data_dir", cls=AliasOption, hidden_aliases=("--images",),
                        required=required, type=click.Path(path_type=str), help=help)


def top_k_option(help: str, default: int = 5):  # noqa: A002 - click's keyword
    """``--top-k N``: classes per input, one spelling across commands (``--top`` still parses)."""
    return click.option("--top-k", "--top", "top_k", cls=AliasOption, hidden_aliases=("--top",), default=default,
                        show_default=True, type=click.IntRange(1, None), help=help)


def echo(message: object = "", err: bool = False, nl: bool = True) -> None:
    """Every human-readable line: file names, labels, checkpoint keys and a phone's words are untrusted, so
    control characters (ANSI escapes, CR, bidi overrides) are shown escaped, never sent to the terminal."""
    with printing():  # a ticking progress line is wiped first
        click.echo(visible(message), err=err, nl=nl)


def echo_json(obj) -> None:
    # json.dumps escapes every control and non-ASCII character (ensure_ascii): nothing raw reaches the terminal.
    click.echo(json.dumps(obj, indent=2, default=str))
    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # printed: a failure after it (a check that failed) adds nothing to stdout
        ctx.meta[JSON_PRINTED_META] = True


def check_report_dir(report_dir: str | None) -> None:
    """--report must be a folder that can be written, judged before the measurements that fill it."""
    if report_dir:
        from .outputs import check_output_dir

        check_output_dir(report_dir, "--report")
