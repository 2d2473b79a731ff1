"""``untrusted.reading(path)``: what a reader's parser raises on a bad file leaves as one InputError naming it.

The CLI's one-line contract (exit 2, the file named) rests on it: a reader opts in by wrapping its work in
``with reading(path):``, with no table of reader names and no look at traceback frames.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile

import pytest
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.errors import CheckFailed, InputError, VitdeployError
from vitdeploy.exits import INTERNAL_ERROR_EXIT
from vitdeploy.untrusted import file_being_read, reading


def _raised_inside(path, action, **kwargs) -> BaseException:
    """What leaves ``with reading(path, **kwargs): action()``."""
    with pytest.raises(BaseException) as info:
        with reading(path, **kwargs):
            action()
    return info.value


def _unpack_short():
    struct.unpack("<I", b"\x01\x02")


def _open_garbage_zip(tmp_path):
    (tmp_path / "g.zip").write_bytes(b"PK\x03\x04 not really a zip")
    zipfile.ZipFile(tmp_path / "g.zip")


@pytest.mark.parametrize("action,expected", [
    (_unpack_short, "corrupt binary data (error: unpack requires a buffer of 4 bytes)"),
    (lambda: json.loads("{nope"), "not valid JSON (JSONDecodeError: Expecting property name enclosed in double "
                                  "quotes: line 1 column 2 (char 1))"),
    (lambda: pickle.loads(b"\x80\x04"), "truncated file (EOFError:"),
    (lambda: b"\xff".decode("utf-8"), "not UTF-8 text (UnicodeDecodeError:"),
    (lambda: {}["classes"], "malformed content (KeyError: 'classes')"),
    (lambda: [][0], "malformed content (IndexError: list index out of range)"),
    (lambda: int("twelve"), "malformed content (ValueError: invalid literal for int() with base 10: 'twelve')"),
    (lambda: None.shape, "malformed content (AttributeError: 'NoneType' object has no attribute 'shape')"),
])
def test_a_parsers_exception_becomes_one_input_error_naming_the_file(action, expected):
    e = _raised_inside("/data/m.bin", action)
    assert isinstance(e, InputError) and e.path == "/data/m.bin"
    assert str(e).startswith(f"/data/m.bin: {expected}"), str(e)
    assert "\n" not in str(e)
    assert e.__cause__ is not None  # the parser's own exception, for VITDEPLOY_DEBUG's traceback


def test_a_bad_zip_is_named(tmp_path):
    e = _raised_inside(tmp_path / "g.zip", lambda: _open_garbage_zip(tmp_path))
    assert isinstance(e, InputError) and str(e).startswith(f"{tmp_path / 'g.zip'}: corrupt zip archive (BadZipFile:")


def test_an_oserror_names_its_own_file_else_the_one_being_read(tmp_path):
    missing = tmp_path / "inside" / "config.json"
    e = _raised_inside(tmp_path, lambda: open(missing))
    assert isinstance(e, InputError) and str(e) == f"{missing}: No such file or directory"
    e = _raised_inside(tmp_path / "m.bin", lambda: (_ for _ in ()).throw(OSError(5, "Input/output error")))
    assert str(e) == f"{tmp_path / 'm.bin'}: Input/output error"


def test_a_vitdeploy_error_naming_the_file_passes_unchanged():
    error = VitdeployError("/data/r.yaml: unknown key 'x'")
    e = _raised_inside("/data/r.yaml", lambda: (_ for _ in ()).throw(error))
    assert e is error and file_being_read(e) is None


def test_a_vitdeploy_error_that_does_not_name_the_file_is_marked_with_it():
    """A check deep down that only knows a value ("unknown variant 'x'"): the CLI prefixes the file."""
    e = _raised_inside("/data/r.yaml", lambda: (_ for _ in ()).throw(VitdeployError("unknown variant 'x'")))
    assert type(e) is VitdeployError and str(e) == "unknown variant 'x'"
    assert file_being_read(e) == "/data/r.yaml"


def test_the_innermost_reader_names_the_file():
    def inner():
        with reading("/data/hf/config.json"):
            raise VitdeployError("id2label is not a mapping")

    e = _raised_inside("/data/hf", inner)
    assert file_being_read(e) == "/data/hf/config.json"


def test_bytes_from_a_caller_are_named_by_the_callers_reading():
    """``reading(None)``: a reader given bytes leaves naming the file to whoever read them from it."""
    def parse_bytes():
        with reading(None):
            struct.unpack("<I", b"")

    e = _raised_inside("/data/m.pte", parse_bytes)
    assert isinstance(e, InputError) and e.path == "/data/m.pte"
    with pytest.raises(struct.error):
        parse_bytes()


def test_a_bug_passes_through_marked_with_the_file():
    e = _raised_inside("/data/m.bin", lambda: (_ for _ in ()).throw(RuntimeError("vitdeploy's own mistake")))
    assert type(e) is RuntimeError and file_being_read(e) == "/data/m.bin"


def test_without_data_errors_a_type_error_stays_a_bug_but_a_parser_error_is_still_the_files():
    e = _raised_inside("/data/m.pth", lambda: len(None), data_errors=False)
    assert type(e) is TypeError and file_being_read(e) == "/data/m.pth"
    e = _raised_inside("/data/m.pth", _unpack_short, data_errors=False)
    assert isinstance(e, InputError)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), CheckFailed("parity failed")])
def test_interrupts_and_failed_checks_are_not_input_errors(exc):
    e = _raised_inside("/data/m.bin", lambda: (_ for _ in ()).throw(exc))
    assert e is exc


def test_an_input_error_survives_a_process_boundary():
    e = pickle.loads(pickle.dumps(InputError("/data/m.bin", "truncated file")))
    assert isinstance(e, InputError) and str(e) == "/data/m.bin: truncated file" and e.path == "/data/m.bin"


# --------------------------------------------------------------------------- through the CLI


def _new_reader(path) -> dict:
    """A reader vitdeploy does not have, registered nowhere: a JSON file whose ``classes`` it needs."""
    with reading(path):
        with open(path) as f:
            doc = json.load(f)
        return {"classes": len(doc["classes"])}


def test_a_new_reader_gets_a_one_line_error_naming_the_file_without_being_registered(monkeypatch, tmp_path):
    import vitdeploy.api as api

    monkeypatch.setattr(api, "inspect", lambda path, variant=None: _new_reader(path))
    bad = tmp_path / "model.json"
    for text, expected in [('{"labels": []}', "malformed content (KeyError: 'classes')"),
                           ('{"classes": 3', "not valid JSON (JSONDecodeError: Expecting ',' delimiter"),
                           ('{"classes": null}', "malformed content (TypeError: object of type 'NoneType' has no "
                                                 "len())")]:
        bad.write_text(text)
        result = CliRunner().invoke(main, ["inspect", str(bad)])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().startswith(f"error: {bad}: {expected}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_bug_inside_a_reader_is_exit_3_naming_the_file(monkeypatch, tmp_path):
    import vitdeploy.api as api

    def inspect(path, variant=None):
        with reading(path):
            raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(api, "inspect", inspect)
    monkeypatch.delenv("VITDEPLOY_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.pth")])
    assert result.exit_code == INTERNAL_ERROR_EXIT
    assert result.stderr.strip().startswith(f"internal error while reading {tmp_path / 'm.pth'}: ZeroDivisionError")
