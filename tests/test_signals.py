"""Ctrl-C, SIGTERM and a full disk (issue 28): exit 130/143 or 2 with one line, nothing published after a
signal, no temporaries left in the output folder or in TMPDIR. Real subprocesses (tests/signal_child.py)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitdeploy import diagnostics, files

ROOT = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("signal_child.py")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _env(tmp: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}
    env.pop("VITDEPLOY_DEBUG", None)
    return env


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _default_signal_dispositions() -> None:
    """In the child, before exec: SIGINT/SIGTERM as a terminal gives them. A runner started in the background (``cmd &``
    without job control, ``nohup``) passes SIGINT on ignored, and vitdeploy rightly keeps an ignored signal ignored
    (:func:`test_a_signal_the_parent_ignored_stays_ignored`): these tests must not depend on how pytest was started."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _run_until_ready(tmp_path: Path, wait: str, sig: int, preexec=_default_signal_dispositions
                     ) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out_dir, private_tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    private_tmp.mkdir()
    ready = tmp_path / "ready"
    p = subprocess.Popen([sys.executable, str(CHILD), "test-slow-write", str(out_dir / "model.tflite"),
                          "--ready", str(ready), "--wait", wait],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(private_tmp),
                         preexec_fn=preexec)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            out, err = p.communicate()
            pytest.fail(f"the child never got ready (rc {p.returncode}): {err}")
        time.sleep(0.05)
    p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"the signal did not stop the run: {out} {err}")
    return subprocess.CompletedProcess(p.args, p.returncode, out, err), out_dir, private_tmp


def test_a_signal_the_parent_ignored_stays_ignored(tmp_path):
    """``nohup vitdeploy ... &``: SIGINT arrives ignored, so Ctrl-C in the terminal must not stop the run."""
    def ignore_sigint():
        _default_signal_dispositions()
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    r, out_dir, _ = _run_until_ready(tmp_path, "publish", signal.SIGINT, preexec=ignore_sigint)
    assert r.returncode == 0 and r.stderr == "", (r.returncode, r.stderr)
    assert (out_dir / "model.tflite").is_file()


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_publishing_exits_cleanly_and_leaves_nothing(tmp_path, sig, code):
    r, out_dir, private_tmp = _run_until_ready(tmp_path, "publish", sig)
    assert (r.returncode, r.stderr, r.stdout) == (code, "interrupted\n", "")
    assert _leftovers(out_dir) == []  # no artifact, no .partial
    assert _leftovers(private_tmp) == []  # the scratch folder went, read-only staged folders included


@pytest.mark.parametrize("wait", ["del", "gc"])
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_swallowed_by_a_del_or_gc_callback_still_wins(tmp_path, wait, sig, code):
    """Python prints "Exception ignored in ..." for a KeyboardInterrupt raised in a __del__ or gc callback and
    carries on; the run must still stop before publishing its artifact, and say so in one line."""
    r, out_dir, private_tmp = _run_until_ready(tmp_path, wait, sig)
    assert (r.returncode, r.stderr, r.stdout) == (code, "interrupted\n", "")
    assert _leftovers(out_dir) == []
    assert _leftovers(private_tmp) == []


@pytest.mark.parametrize("how,expected", [
    ("write", "error: {out}: No space left on device"),
    ("native", "error: {out}: No space left on device (there, or in the temporary folder {tmp})"),
    ("check", "error: {out}: No space left on device"),
    ("cause", "error: /tmp/q/model.tflite: Disk quota exceeded"),
])
def test_a_full_disk_is_exit_2_naming_the_path(tmp_path, how, expected):
    out_dir, private_tmp = tmp_path / "out", tmp_path / "tmp"
    out_dir.mkdir()
    private_tmp.mkdir()
    out = out_dir / "model.tflite"
    r = subprocess.run([sys.executable, str(CHILD), "test-disk-full", str(out), "--how", how],
                       capture_output=True, text=True, env=_env(private_tmp), timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr == expected.format(out=out, tmp=private_tmp) + "\n"
    assert "LLVM" not in r.stderr
    assert _leftovers(out_dir) == [] and _leftovers(private_tmp) == []


def test_write_atomically_on_a_full_disk_names_the_path_and_removes_the_partial(tmp_path, monkeypatch):
    def full(fd, mode="r", *a, **k):
        os.close(fd)
        return open("/dev/full", mode)

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    monkeypatch.setattr(files.os, "fdopen", full)
    with pytest.raises(OSError) as e:
        files.write_atomically(tmp_path / "a.bin", b"x" * 100_000)
    assert (e.value.errno, e.value.filename) == (errno.ENOSPC, str(tmp_path / "a.bin"))
    assert list(tmp_path.iterdir()) == []


def test_nothing_is_published_once_a_signal_arrived(tmp_path, monkeypatch):
    monkeypatch.setattr(diagnostics, "_received", signal.SIGTERM)
    with pytest.raises(diagnostics.Interrupted) as e:
        files.write_atomically(tmp_path / "a.bin", b"x")
    assert e.value.exit_code == 143
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(diagnostics.Interrupted):
        files.publish(staged, tmp_path / "model.mlpackage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staged"]


def test_scratch_session_gathers_every_temporary_and_restores_tmpdir(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    with files.scratch_session():
        scratch = files.scratch_dir()
        assert scratch.parent == tmp_path and scratch.name.startswith("vitdeploy-")
        assert Path(tempfile.mkdtemp()).parent == scratch and os.environ["TMPDIR"] == str(scratch)
        assert files.temporary_base() == str(tmp_path)
    assert list(tmp_path.iterdir()) == [] and os.environ["TMPDIR"] == str(tmp_path) and tempfile.tempdir is None


def test_a_swallowed_signal_stops_a_conversion_before_it_writes(tmp_path, monkeypatch):
    """convert asks at its stage boundaries: a Ctrl-C some converter's GC callback swallowed still stops it,
    before the (tens of seconds of) export and before anything reaches -o."""
    from vitdeploy import checkpoints, convert as convert_module, passes, targets
    from vitdeploy.synthetic import seeded_model

    ckpt = tmp_path / "m.pth"
    import torch

    torch.save(seeded_model("levit_128s").state_dict(), ckpt)
    prepare_for = passes.prepare_for

    def prepare_then_swallowed_ctrl_c(*args, **kwargs):
        prepared = prepare_for(*args, **kwargs)
        diagnostics._received = signal.SIGINT  # what note_signal records when the raise is lost
        return prepared

    monkeypatch.setattr(diagnostics, "_received", None)
    monkeypatch.setattr(passes, "prepare_for", prepare_then_swallowed_ctrl_c)
    monkeypatch.setitem(targets.CONVERTERS, "tflite", targets.Target(lambda *a, **k: pytest.fail("the export started")))
    assert checkpoints.load(ckpt).variant == "levit_128s"
    with pytest.raises(diagnostics.Interrupted) as e:
        convert_module.convert(ckpt, "tflite", out=tmp_path / "m.tflite")
    assert e.value.exit_code == 130
    assert not (tmp_path / "m.tflite").exists()


def test_a_full_disk_in_a_build_cell_stops_the_build(tmp_path, monkeypatch):
    """A full disk is not one failed cell of many (exit 1) but the user's to fix: it propagates (exit 2)."""
    from vitdeploy import cell, convert as convert_module

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "m.tflite"))

    monkeypatch.setattr(convert_module, "convert", full)
    with pytest.raises(OSError) as e:
        cell.build_artifact(tmp_path / "m.pth", "tflite", "fp32", "none", tmp_path / "m.tflite")
    assert e.value.errno == errno.ENOSPC
    monkeypatch.setattr(convert_module, "convert", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bad graph")))
    assert cell.build_artifact(tmp_path / "m.pth", "tflite", "fp32", "none", tmp_path / "m.tflite")["status"] \
        == "failed"
