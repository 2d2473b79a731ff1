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
    from vitdeploy.preprocessing import MOBILEVIT_RGB
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
        (["--target", "tflite", "--calib", tmp_path], "no images"),
    ]
    for extra, message in cases:
        out = tmp_path / "x.tflite"
        result = CliRunner().invoke(main, ["convert", str(ckpt), *map(str, extra), "-o", str(out)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()
