"""The shared one-line error helpers and quiet(): what every converter failure and reader error goes through."""

import logging
import sys
import warnings

import pytest

from vitdeploy.diagnostics import converter_errors, describe, first_line, one_line, quiet
from vitdeploy.errors import ConversionError, VitdeployError


def test_lines_of_an_exception():
    assert first_line(ValueError("\n  first\nsecond")) == "first"
    assert first_line(ValueError()) == "ValueError"
    assert first_line(RuntimeError("error: nested")) == "nested"  # no "error: ... (error: ...)"
    assert describe(ValueError("a\nb")) == "ValueError: a"
    assert describe(ValueError()) == "ValueError"
    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
    assert len(one_line(ValueError("x" * 1000))) < 420


def test_converter_errors_become_one_conversion_error_and_ours_pass_through():
    with pytest.raises(ConversionError, match=r"^export failed: KeyError: 'w'$"):
        with converter_errors("export"):
            raise KeyError("w")
    with pytest.raises(VitdeployError, match="^mine$"):
        with converter_errors("export"):
            raise VitdeployError("mine")


def test_quiet_mutes_stderr_warnings_and_logs_then_restores(capsys):
    with quiet():
        print("bar", file=sys.stderr)
        warnings.warn("noise")
        logging.getLogger("coremltools").warning("noise")
        print("progress")  # stdout is the user's: kept
    out, err = capsys.readouterr()
    assert out == "progress\n" and err == ""
    with quiet(stdout=True):
        print("swallowed")
    assert capsys.readouterr().out == ""
    assert not logging.getLogger("x").manager.disable  # logging enabled again
