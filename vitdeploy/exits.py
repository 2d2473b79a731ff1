"""How the CLI turns an exception into one line on stderr and an exit code (0 ok, 1 a check failed,
2 bad input or usage, 3 a bug in vitdeploy), naming the user's file when the file is at fault.

Every ``vitdeploy`` command is a :class:`_Command` of the :class:`_Group`, so no command can leak a
traceback (``VITDEPLOY_DEBUG=1`` shows it, for a bug report).
"""

from __future__ import annotations

import os

import click

from .diagnostics import first_line
from .errors import CheckFailed, VitdeployError

# Exceptions that mean "this input file is malformed" whatever reader raised them, matched by
# qualified class name anywhere in the exception's MRO so the CLI need not import torch, PIL, yaml, ...
_INPUT_ERROR_TYPES = {
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
# Functions that interpret the contents of an untrusted file, by module and qualified name (no import needed).
# A data error raised inside one (a None where a list belongs, a missing key) is the file's fault, not a bug:
# exit 2 naming the file, even where the reader did not validate that field itself.
_READERS = {
    "vitdeploy.recipes": {"load_recipe", "load_recipes", "Recipe.cells", "Recipe.default_mode"},
    "vitdeploy.checkpoints.reader": {"read_checkpoint", "_hf_directory_files", "_unwrap", "_strip_prefixes"},
    "vitdeploy.checkpoints": {"_hf_labels"},
    "vitdeploy.convert": {"read_labels", "read_calibration_images"},
    "vitdeploy.parity.evaluate": {"read_image_folder"},
    "vitdeploy.runtimes.coreml": {"CoreMLRunner.__init__"},
    "vitdeploy.formats.coreml": {"read_config"},
    "vitdeploy.formats.executorch": {"read_pte_metadata", "_decode_config"},
    "vitdeploy.runtimes.executorch": {"ExecuTorchRunner.__init__"},
    "vitdeploy.formats.tflite": {"read_tflite_metadata", "_metadata_blobs", "_parse_model_metadata", "_read_labels"},
}
_DATA_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError)
_DEBUG_ENV = "VITDEPLOY_DEBUG"  # set to 1 to get the traceback of an internal error (for a bug report)
INTERNAL_ERROR_EXIT = 3


def _input_error_kind(e: BaseException) -> str | None:
    for cls in type(e).__mro__:
        kind = _INPUT_ERROR_TYPES.get(f"{cls.__module__}.{cls.__qualname__}")
        if kind:
            return kind
    return None


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


def _file_in_traceback(e: BaseException, candidates: list[str], skip=None) -> str | None:
    """The command argument nearest to where ``e`` was raised: the innermost frame holding one of
    ``candidates`` (or a path inside one) in a local variable -- readers keep the path they read in a local.
    Frames of the ``skip`` code object (the command body, which holds every argument) do not count."""
    import traceback
    from pathlib import PurePath

    frames = [f for f, _ in traceback.walk_tb(e.__traceback__) if f.f_code is not skip]
    for frame in reversed(frames):
        for value in list(frame.f_locals.values()):
            if not isinstance(value, (str, PurePath)):
                continue
            text = str(value)
            if any(text == c or text.startswith(c.rstrip("/") + "/") for c in candidates):
                return text
    return None


def _reader_frame_file(e: BaseException, candidates: list[str]) -> str | None:
    """The file a registered reader (``_READERS``) was interpreting when ``e`` was raised inside it, if any."""
    import traceback
    from pathlib import PurePath

    for frame, _ in reversed(list(traceback.walk_tb(e.__traceback__))):
        name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
        if name not in _READERS.get(frame.f_globals.get("__name__", ""), ()):
            continue
        values = list(frame.f_locals.values())
        owner = frame.f_locals.get("self")
        values.append(getattr(owner, "path", None))  # a method of a parsed file's object (Recipe.cells)
        paths = [str(v) for v in values if isinstance(v, (str, PurePath))]
        for text in paths:
            if any(text == c or text.startswith(c.rstrip("/") + "/") for c in candidates):
                return text
        return paths[0] if paths else (candidates[0] if candidates else "input")
    return None


def unexpected_error_line(e: BaseException, ctx: click.Context | None) -> tuple[str, int]:
    """(one line for stderr, exit code) for an exception no vitdeploy code turned into a VitdeployError.

    Input errors (an OSError, or a parser's own exception type) exit 2 naming the file; anything else is a
    bug in vitdeploy: one line and exit 3, never a traceback (VITDEPLOY_DEBUG=1 shows it)."""
    candidates = _path_params(ctx) if ctx is not None else []
    # The command body holds every argument: only a frame below it (a reader) tells which file was at fault.
    body = getattr(getattr(ctx, "command", None), "callback", None)
    where = _file_in_traceback(e, candidates, skip=getattr(body, "__code__", None))
    if isinstance(e, OSError) and (e.filename or e.strerror):
        where = e.filename or where or (candidates[0] if candidates else "input")
        return f"error: {where}: {e.strerror or first_line(e)}", 2
    if isinstance(e, _DATA_ERRORS):
        read = _reader_frame_file(e, candidates)
        if read:
            return f"error: {read}: malformed content ({type(e).__name__}: {first_line(e)})", 2
    kind = _input_error_kind(e)
    if kind:
        where = where or (candidates[0] if candidates else "input")
        return f"error: {where}: {kind} ({type(e).__name__}: {first_line(e)})", 2
    about = f" while reading {where}" if where else ""
    return (f"internal error{about}: {type(e).__name__}: {first_line(e)} (a bug in vitdeploy; "
            f"{_DEBUG_ENV}=1 shows the traceback)", INTERNAL_ERROR_EXIT)


def _naming_the_file(message: str, e: BaseException, ctx: click.Context) -> str:
    """``message``, prefixed with the file being read when a reader deep down did not name it
    (e.g. "unknown variant 'None'" from a recipe's ``variant:``): every input error names its file."""
    candidates = _path_params(ctx)
    if not candidates or any(c in message or os.path.basename(c.rstrip("/")) in message for c in candidates):
        return message
    callback = getattr(ctx.command.callback, "__code__", None)
    where = _file_in_traceback(e, candidates, skip=callback)
    return f"{where}: {message}" if where and where not in message else message


def _exit_for(e: BaseException, ctx: click.Context) -> None:
    """The one place that turns an exception into the exit-code contract: 1 check failed, 2 bad input (one
    line naming the file), 3 a bug (one line), 130 interrupted; never a traceback unless VITDEPLOY_DEBUG=1."""
    if isinstance(e, VitdeployError):
        click.echo(f"error: {_naming_the_file(' '.join(str(e).splitlines()), e, ctx)}", err=True)
        ctx.exit(e.exit_code)
    if isinstance(e, CheckFailed):
        click.echo(f"check failed: {e}", err=True)
        ctx.exit(e.exit_code)
    if isinstance(e, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        ctx.exit(130)
    if os.environ.get(_DEBUG_ENV):
        raise e
    line, code = unexpected_error_line(e, ctx)
    click.echo(line, err=True)
    ctx.exit(code)


class _Command(click.Command):
    """Every subcommand: errors become one line while the command's own arguments are still known."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # click's own usage errors and exits already follow the contract
        except (Exception, KeyboardInterrupt) as e:
            _exit_for(e, ctx)


class _Group(click.Group):
    """Turns vitdeploy's errors into one line on stderr and the documented exit code."""

    command_class = _Command  # @main.command() makes _Commands: no command can leak a traceback

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except (Exception, KeyboardInterrupt) as e:
            _exit_for(e, ctx)
