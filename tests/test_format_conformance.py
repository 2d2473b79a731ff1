"""Every format of the formats table, end to end through the CLI: convert -> host runner + parity -> package
-> profile on the emulated phone (tests/adb_emulator.py, the real adb client).

Parametrized over ``vitdeploy.formats.FORMATS`` itself, so a new row is tested here the day it is added and no
stage can keep an old suffix list (``profile --device`` once refused .pte that way). A format the emulated
Android phone cannot run (.mlpackage) must be refused by ``profile`` with one line, exit 2, and still go
through convert, parity and package. Cheap on purpose: the smallest variant (levit_128s, seeded), fp32.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.formats import FORMATS
from vitdeploy.synthetic import write_seeded_checkpoint

sys.path.insert(0, str(Path(__file__).parent))
from adb_emulator import AdbEmulator, pixel7  # noqa: E402

pytestmark = pytest.mark.slow
VARIANT = "levit_128s"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_seeded_checkpoint(VARIANT, tmp_path_factory.mktemp("ckpt") / f"{VARIANT}.safetensors")


@pytest.mark.parametrize("target", sorted(FORMATS))
def test_every_format_converts_checks_packages_and_profiles(target, checkpoint, tmp_path, monkeypatch):
    fmt = FORMATS[target]
    if shutil.which("adb") is None:
        pytest.skip("adb client not installed (apt-get install adb)")
    art = tmp_path / f"m_fp32{fmt.suffix}"
    r = run("convert", checkpoint, "--target", target, "--quantize", "fp32", "-o", art, "--json")
    assert r.exit_code == 0, r.output
    assert art.exists() and json.loads(r.stdout)["target"] == target

    # The host runner, judged against the checkpoint (the MIL interpreter for Core ML off macOS).
    r = run("parity", art, "--checkpoint", checkpoint, "--n-images", "1", "--n-random", "0", "--json")
    assert r.exit_code == 0, r.output

    platform = "android" if "android" in fmt.platforms else fmt.platforms[0]
    r = run("package", art, "--platform", platform, "-o", tmp_path / "pkg", "--json")
    assert r.exit_code == 0, r.output
    assert any(p.name == art.name for p in (tmp_path / "pkg").rglob("*")), "the artifact is in the package"

    with AdbEmulator() as emu:
        emu.add(pixel7("EMUFMT", tmp_path / "dev"))
        monkeypatch.setenv("ADB_SERVER_SOCKET", emu.socket_spec)
        for device in ("pixel7", "EMUFMT"):  # by catalog name (refused offline) and by serial (after discovery)
            r = run("profile", art, "--device", device, "--runs", "2", "--warmup", "0", "--device-threads", "1",
                    "--json")
            if "android" in fmt.platforms:
                assert r.exit_code == 0, r.output
                out = json.loads(r.stdout)
                assert out["serial"] == "EMUFMT" and out["request"]["model"] == art.name
                ok = [p for p in out["parity"] if "cosine" in p]
                assert ok and all(p["cosine"] > 0.9999 and p["top1_match"] for p in ok), out["parity"]
            else:
                assert r.exit_code == 2, r.output
                lines = r.stderr.strip().splitlines()
                assert lines == [f"error: {art.name}: a {fmt.suffix} runs on {' and '.join(fmt.platforms)}, not on "
                                 f"{device} (android); convert to .tflite or .pte"], lines
                assert not any("sync:SEND" in s for s in emu.log)  # nothing was pushed to the phone
