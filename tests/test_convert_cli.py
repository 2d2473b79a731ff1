"""convert / predict / profile / inspect through the CLI on a real TFLite conversion."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.synthetic import write_seeded_checkpoint

pytestmark = pytest.mark.slow


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("conv")
    ckpt = write_seeded_checkpoint("mobilevit_xxs", d / "mvit xxs.safetensors")  # space in the name on purpose
    labels = d / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(1000)))
    out = d / "out" / "m.tflite"
    result = run("convert", ckpt, "--target", "tflite", "-o", out, "--labels", labels, "--json")
    assert result.exit_code == 0, result.output
    return ckpt, out, json.loads(result.output)


def test_convert_report(converted):
    _, out, report = converted
    assert out.is_file() and report["path"] == str(out)
    assert report["variant"] == "mobilevit_xxs" and report["target"] == "tflite"
    assert report["bn_folding"]["batchnorm_after"] == 0
    assert report["input"]["layout"] == "NHWC-pixels"


def test_artifact_predicts_like_checkpoint(converted, tmp_path):
    ckpt, out, _ = converted
    from vitdeploy.models import MOBILEVIT_RGB
    from vitdeploy.sample_images import natural_images

    x = MOBILEVIT_RGB.normalize(natural_images(4, 256))
    np.save(tmp_path / "x.npy", x)
    for model, name in ((ckpt, "ref.npy"), (out, "tfl.npy")):
        assert run("predict", model, tmp_path / "x.npy", "--save-logits", tmp_path / name).exit_code == 0
    ref, got = np.load(tmp_path / "ref.npy"), np.load(tmp_path / "tfl.npy")
    cos = (ref * got).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() > 0.99999 and (ref.argmax(1) == got.argmax(1)).all()


def test_predict_prints_labels_from_metadata(converted, tmp_path):
    _, out, _ = converted
    from PIL import Image

    from vitdeploy.sample_images import natural_images

    Image.fromarray(natural_images(1, 256)[0]).save(tmp_path / "a.png")
    result = run("predict", out, tmp_path / "a.png", "--top", "1", "--json")
    assert result.exit_code == 0, result.output
    top = json.loads(result.output)["predictions"][0]["top"][0]
    assert top["label"] == f"class {top['class']}"


def test_profile_host_json(converted):
    ckpt, out, _ = converted
    for model in (out, ckpt):
        result = run("profile", model, "--runs", "5", "--warmup", "1", "--json")
        assert result.exit_code == 0, result.output
        r = json.loads(result.output)
        assert r["device"] == "host" and len(r["runs_ms"]) == 5
        assert r["min_ms"] <= r["median_ms"] <= r["p90_ms"]


def test_convert_bad_options(converted, tmp_path):
    ckpt, _, _ = converted
    cases = [
        (["--target", "tflite", "--quantize", "w8"], "not available for tflite"),
        (["--target", "tflite", "--labels", tmp_path / "none.txt"], "labels file not found"),
        (["--target", "tflite", "--quantize", "w8a8", "--calib", tmp_path], "no images"),
        (["--target", "tflite", "--calib", tmp_path], "--calib is for w8a8/w8a16"),  # fp32 calibrates nothing
        (["--target", "tflite", "--quantize", "dynamic", "--int8-finetune", "5"], "--int8-finetune is for w8a8"),
        (["--target", "coreml", "--quantize", "w8a8", "--int8-finetune", "5"], "--int8-finetune is for --target tflite"),
        (["--target", "tflite", "--quantize", "int8", "--no-int16"], "int16 activations are only used when asked"),
        (["--target", "tflite", "--quantize", "w8"], "--quantize w8 is not available for tflite"),
        (["--target", "coreml", "--quantize", "w8a16"], "--quantize w8a16 is not available for coreml"),
        (["--target", "tflite", "--quantize", "int4"], "unknown precision 'int4'"),
    ]
    for extra, message in cases:
        out = tmp_path / "x.tflite"
        result = CliRunner().invoke(main, ["convert", str(ckpt), *map(str, extra), "-o", str(out)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()


def test_profile_on_emulated_pixel7_through_the_cli(converted, tmp_path, monkeypatch):
    """`vitdeploy profile M.tflite --device pixel7`: real adb client, emulated phone, on-device parity, report."""
    import shutil

    from adb_emulator import AdbEmulator, pixel7

    if shutil.which("adb") is None:
        pytest.skip("adb client not installed (apt-get install adb)")
    _, out, _ = converted
    with AdbEmulator() as emu:
        emu.add(pixel7("EMU7CLI", tmp_path / "dev"))
        monkeypatch.setenv("ADB_SERVER_SOCKET", emu.socket_spec)
        result = run("profile", out, "--device", "pixel7", "--runs", "3", "--warmup", "1", "--device-threads", "1",
                     "--compute-units", "xnnpack,gpu", "--report", tmp_path / "report", "--json")
        assert result.exit_code == 0, result.output
        r = json.loads(result.output)
        assert r["serial"] == "EMU7CLI"
        (cpu,) = [p for p in r["parity"] if "cosine" in p]
        assert cpu["cosine"] > 0.99999 and cpu["top1_match"]  # the phone's output equals the host's
        assert any(p.get("error") for p in r["parity"])  # no GPU on the emulated phone: reported, not fatal
        assert (tmp_path / "report" / "report.html").is_file()
        text = run("profile", out, "--device", "EMU7CLI", "--runs", "2", "--warmup", "0", "--device-threads", "1",
                   "--compute-units", "xnnpack")
        assert text.exit_code == 0 and "xnnpack-1t" in text.output
