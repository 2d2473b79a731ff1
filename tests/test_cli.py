"""The CLI as a user runs it: output, exit codes, one-line errors, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from layout_writers import randomize_batchnorm, to_cvnets, to_official
from test_checkpoints import BAD_INPUTS, make_bad_checkpoint
from vitdeploy.cli import main
from vitdeploy.models import create_model
from vitdeploy.sample_images import natural_images
from vitdeploy.synthetic import seeded_model

VITDEPLOY = [sys.executable, "-m", "vitdeploy"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def levit_official(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_batchnorm(create_model("levit_128s"))
    path = tmp_path_factory.mktemp("ck") / "levit official.pth"  # a space in the name on purpose
    torch.save({"model": to_official(model)}, path)
    return path, model


@pytest.fixture(scope="module")
def mobilevit_cvnets(tmp_path_factory):
    model = seeded_model("mobilevit_xxs", seed=1)  # discriminative: channel order visibly matters
    path = tmp_path_factory.mktemp("ck") / "mobilevit_xxs.pt"
    torch.save(to_cvnets(model), path)
    return path, model


def test_help_does_not_import_torch():
    code = ("import sys\nfrom vitdeploy.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'coremltools', 'ai_edge_litert', 'litert_torch', 'numpy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


@pytest.mark.parametrize("fixture,expected", [
    ("levit_official", {"family": "levit", "variant": "levit_128s", "layout": "official", "input_size": [3, 224, 224]}),
    ("mobilevit_cvnets", {"family": "mobilevit", "variant": "mobilevit_xxs", "layout": "cvnets",
                          "input_size": [3, 256, 256]}),
])
def test_inspect_json(fixture, expected, request):
    path, model = request.getfixturevalue(fixture)
    result = run("inspect", path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert {k: info[k] for k in expected} == expected
    assert info["params"] == sum(p.numel() for p in model.parameters())
    assert info["bn_folding"]["batchnorm_after"] == 0 and info["bn_folding"]["total_folded"] > 0
    order = "BGR" if expected["family"] == "mobilevit" else "RGB"
    assert info["preprocessing"]["channel_order"] == order


def test_inspect_text(levit_official):
    result = run("inspect", levit_official[0])
    assert result.exit_code == 0
    assert "levit_128s" in result.output and "52 BatchNorm folded" in result.output


def test_predict_npy_save_logits(levit_official, tmp_path):
    path, model = levit_official
    x = np.random.default_rng(0).standard_normal((3, 3, 224, 224)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "sub" / "logits.npy"
    result = run("predict", path, tmp_path / "x.npy", "--save-logits", out, "--json", "--top", "3")
    assert result.exit_code == 0, result.output
    logits = np.load(out)
    assert logits.dtype == np.float32 and logits.shape == (3, 1000)
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    report = json.loads(result.output)
    assert [p["top"][0]["class"] for p in report["predictions"]] == logits.argmax(1).tolist()
    assert len(report["predictions"][0]["top"]) == 3


def test_predict_images_uses_source_preprocessing(mobilevit_cvnets, tmp_path):
    path, model = mobilevit_cvnets
    img = natural_images(1, 288)[0]  # already at the resize size: preprocessing is a centre crop
    Image.fromarray(img).save(tmp_path / "photo.png")
    result = run("predict", path, tmp_path / "photo.png", "--save-logits", tmp_path / "l.npy")
    assert result.exit_code == 0, result.output
    # cvnets weights expect BGR in 0..1, centre crop 256
    expected = img[16:272, 16:272, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
    bgr = torch.from_numpy(np.ascontiguousarray(expected))
    with torch.no_grad():
        np.testing.assert_allclose(np.load(tmp_path / "l.npy"), model(bgr).numpy(), rtol=1e-4, atol=1e-4)
        rgb = model(bgr.flip(1)).numpy()
    assert np.abs(np.load(tmp_path / "l.npy") - rgb).max() > 0.1  # channel order matters


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_checkpoint_exit_2_one_line(kind, tmp_path):
    path = make_bad_checkpoint(kind, tmp_path)
    proc = subprocess.run([*VITDEPLOY, "inspect", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert BAD_INPUTS[kind][1] in lines[0]
    assert "Traceback" not in proc.stderr and "pwned" not in proc.stdout


def test_predict_bad_inputs(levit_official, tmp_path):
    path, _ = levit_official
    np.save(tmp_path / "wrong.npy", np.zeros((1, 3, 256, 256), np.float32))
    (tmp_path / "notimage.png").write_text("hello")
    cases = [
        ([tmp_path / "wrong.npy"], "expected a float NCHW batch of shape (N, 3, 224, 224)"),
        ([tmp_path / "notimage.png"], "not a readable image"),
        ([tmp_path / "missing.png"], "no such file"),
    ]
    for inputs, message in cases:
        out = tmp_path / "never.npy"
        result = CliRunner().invoke(main, ["predict", str(path), *map(str, inputs), "--save-logits", str(out)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not out.exists()


def test_usage_error_is_exit_2():
    assert run("predict").exit_code == 2
    assert run("no-such-command").exit_code == 2


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, mobilevit_cvnets):
    result = run("demo", mobilevit_cvnets[0], "-o", tmp_path, "--quick", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{"):])
    (model,) = summary["models"]
    assert model["variant"] == "mobilevit_xxs" and model["layout"] == "cvnets"
    assert model["bn_folding"]["batchnorm_after"] == 0 and model["folded_max_rel_diff"] < 1e-4
    assert len(set(model["top1_classes"])) > 3  # the stand-in model tells images apart
    tflite = next(a for a in model["artifacts"] if a["target"] == "tflite")
    assert tflite["status"] == "ok" and tflite["parity"] == "pass"
    assert (tmp_path / "mobilevit_xxs").is_dir() and (tmp_path / "summary.json").is_file()
    assert Path(tflite["report"]).is_file()
    assert model["latency"]["tflite fp32"]["median_ms"] > 0


def test_demo_defaults_are_the_trained_references(tmp_path):
    from vitdeploy import references
    from vitdeploy.demo import run_demo

    summary = run_demo([], tmp_path, echo=None, convert=False)
    assert summary["references"] is True
    assert [m["variant"] for m in summary["models"]] == ["mobilevit_xxs", "levit_128s"]
    assert [m["checkpoint"] for m in summary["models"]] == [str(references.checkpoint(v))
                                                           for v in ("mobilevit_xxs", "levit_128s")]
    assert all(m["bn_folding"]["batchnorm_after"] == 0 for m in summary["models"])
    assert all(len(set(m["top1_classes"])) > 3 for m in summary["models"])  # trained: tells images apart


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS coremltools' native-runtime messages are real")
def test_cli_mutes_known_third_party_noise_but_not_real_warnings(caplog):
    import logging

    import vitdeploy.cli  # noqa: F401 -- installs the filters

    with caplog.at_level(logging.WARNING):
        logging.getLogger("coremltools").warning("Failed to load _MLModelProxy: No module named 'x'")
        logging.getLogger("coremltools").warning("Torch version 2.13.0+cpu has not been tested with coremltools.")
        logging.getLogger("torchao").warning("Failed to load /x/_C_cutlass_90a.abi3.so")
        logging.getLogger("coremltools").warning("Tuple detected at graph output")
    assert [r.getMessage() for r in caplog.records] == ["Tuple detected at graph output"]
