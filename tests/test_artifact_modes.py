"""Artifacts vitdeploy writes are ordinary files: 0666 & ~umask, like any file the user makes.

Issue 20 blamed mkstemp's 0600 for the Android app not reading a pushed model. On a phone that
cannot happen (adbd widens a pushed file's mode, see tests/test_devices.py::
test_android_0600_model_is_readable_by_the_app), but a 0600 artifact still surprises wherever
the mode is kept: a shared model directory, a web server, a container build context.
"""

from __future__ import annotations

import os
import stat

import pytest


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield 0o022
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_tflite_writer_gives_an_ordinary_file(tmp_path, umask_022):
    from vitdeploy.files import write_atomically as _write_atomically

    out = tmp_path / "m.tflite"
    _write_atomically(out, b"TFL3")
    assert oct(_mode(out)) == oct(0o666 & ~umask_022)
    assert [p.name for p in tmp_path.iterdir()] == ["m.tflite"]  # no partial file left


def test_tflite_writer_respects_a_strict_umask(tmp_path):
    from vitdeploy.files import write_atomically as _write_atomically

    old = os.umask(0o077)
    try:
        _write_atomically(tmp_path / "m.tflite", b"TFL3")
    finally:
        os.umask(old)
    assert oct(_mode(tmp_path / "m.tflite")) == oct(0o600)  # the user asked for private files
