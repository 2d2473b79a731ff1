"""The ExecuTorch target: .pte files, their metadata, the host runner, and (slow) the trained references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vitdeploy import references
from vitdeploy.cli import main
from vitdeploy.errors import VitdeployError

pytest.importorskip("executorch")

# Held-out top-1 points w8a8 may lose against the checkpoint: tests/test_references.py's criterion for TFLite.
MAX_DROP_PTS = 1.0


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _preprocessing(channel_order="RGB"):
    from vitdeploy.preprocessing import Preprocessing

    return Preprocessing(channel_order=channel_order, scale=1 / 255, mean=(0.485, 0.456, 0.406),
                         std=(0.229, 0.224, 0.225), resize=32, crop=32, interpolation="bilinear")


def _tiny_classifier(seed=0):
    """conv -> pool -> linear, 5 classes: small enough to lower in a few seconds, numerics still real."""
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, preprocessing, {"pixels": path, "raw": path}) of the tiny classifier converted both ways (BGR
    source, so the in-graph channel flip is exercised)."""
    from vitdeploy.targets.executorch import convert_executorch

    d = tmp_path_factory.mktemp("tiny")
    model, pre = _tiny_classifier(), _preprocessing("BGR")
    paths = {}
    for name, raw in (("pixels", False), ("raw", True)):
        conv = convert_executorch(model, input_size=(3, 32, 32), preprocessing=pre, out=d / f"{name}.pte",
                                  labels=[f"c{i}" for i in range(5)], raw_input=raw,
                                  metadata={"variant": "tiny", "source_sha256": "ab" * 32})
        paths[name] = conv.path
    return model, pre, paths


def test_default_output_is_stem_precision_pte():
    from vitdeploy.convert import default_output

    assert default_output("x/levit_128s_photos.safetensors", "executorch", "none") == Path("levit_128s_photos_fp32.pte")
    assert default_output("m.pth", "executorch", "int8") == Path("m_w8a8.pte")


def test_format_row_and_precisions():
    from vitdeploy.formats import FORMATS, TARGETS
    from vitdeploy.precisions import parse

    assert "executorch" in TARGETS and FORMATS["executorch"].suffix == ".pte"
    assert parse("executorch", "fp32").name == "fp32" and parse("executorch", "int8").activations == "int8"
    with pytest.raises(VitdeployError, match="not available for executorch"):
        parse("executorch", "fp16")


def test_metadata_round_trip_and_runner_matches_pytorch(tiny):
    import torch

    from vitdeploy.formats.executorch import read_pte_metadata
    from vitdeploy.preprocessing import Preprocessing
    from vitdeploy.runtimes.open import open_runner
    from vitdeploy.sample_images import natural_images

    model, pre, paths = tiny
    rgb = natural_images(3, 32, seed=1)
    x = pre.normalize(rgb)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    for name, path in paths.items():
        stored = read_pte_metadata(path)
        config = stored["vitdeploy"]
        assert stored["labels"] == [f"c{i}" for i in range(5)]
        assert config["variant"] == "tiny" and config["source_sha256"] == "ab" * 32
        assert config["precision"] == "fp32" and config["delegate"] == "xnnpack"
        assert config["input"]["layout"] == ("NCHW-raw" if name == "raw" else "NHWC-pixels")
        assert Preprocessing.from_dict(config["preprocessing"]) == pre
        runner = open_runner(path)
        assert runner.kind == "executorch" and runner.input_size == (3, 32, 32) and runner.variant == "tiny"
        got = runner.predict_nchw(x)  # a batch of 3 through a batch-1 program
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(runner.predict_pixels(rgb), expected, rtol=1e-4, atol=1e-4)


def test_damaged_pte_is_a_one_line_error(tiny, tmp_path):
    _, _, paths = tiny
    data = paths["pixels"].read_bytes()
    cases = {"garbage.pte": b"not a program at all" * 10, "empty.pte": b"",
             "truncated.pte": data[:len(data) // 3], "header.pte": data[:64]}
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (10, 200, 30)).save(image)
    for name, blob in cases.items():
        bad = tmp_path / name
        bad.write_bytes(blob)
        result = run("predict", bad, image)
        assert result.exit_code == 2, (name, result.output)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], (name, result.output)


def test_bad_convert_options_are_one_line_errors(tmp_path):
    ckpt = references.checkpoint("levit_128s")
    out = tmp_path / "never.pte"
    cases = [(["--quantize", "fp16"], "not available for executorch"),
             (["--quantize", "w8"], "not available for executorch"),
             (["--delegate", "coreml", "--quantize", "w8a8"], "fp32 only"),
             (["--delegate", "vulkan"], "Invalid value"),
             (["--int8-io", "--quantize", "w8a8"], "--int8-io is for --target tflite")]
    for extra, message in cases:
        result = run("convert", ckpt, "--target", "executorch", "-o", out, *extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)
        assert not out.exists() and not list(tmp_path.iterdir())
    result = run("convert", ckpt, "--target", "tflite", "-o", tmp_path / "x.tflite", "--delegate", "coreml")
    assert result.exit_code == 2 and "--delegate is for --target executorch" in result.output, result.output


def test_wrong_suffix_and_labels_are_rejected_before_writing(tmp_path):
    from vitdeploy.targets.executorch import convert_executorch

    model, pre = _tiny_classifier(), _preprocessing()
    with pytest.raises(VitdeployError, match=r"\.pte file"):
        convert_executorch(model, input_size=(3, 32, 32), preprocessing=pre, out=tmp_path / "m.tflite")
    with pytest.raises(VitdeployError, match="3 labels given but the model has 5 classes"):
        convert_executorch(model, input_size=(3, 32, 32), preprocessing=pre, out=tmp_path / "m.pte",
                           labels=["a", "b", "c"])
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- trained references (slow)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(variant, precision) -> convert report, converted once each as a user would (default calibration)."""
    from vitdeploy.convert import convert

    cache = {}

    def get(variant: str, precision: str):
        if (variant, precision) not in cache:
            out = tmp_path_factory.mktemp(variant) / f"{variant}_{precision}.pte"
            cache[variant, precision] = convert(references.checkpoint(variant), "executorch", out=out,
                                                quantize=precision)
        return cache[variant, precision]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("variant", references.VARIANTS)
def test_fp32_pte_matches_pytorch_on_natural_images(converted, variant):
    from vitdeploy import checkpoints
    from vitdeploy.runtimes.open import TorchRunner, open_runner
    from vitdeploy.sample_images import natural_images

    report = converted(variant, "fp32")
    assert report["accuracy_target_met"] and report["precision"] == "fp32"
    assert report["bn_folding"]["batchnorm_after"] == 0
    runner = open_runner(report["path"])
    ckpt = checkpoints.load(references.checkpoint(variant))
    x = ckpt.preprocessing.normalize(natural_images(16, ckpt.input_size[1], seed=3))
    got, expected = runner.predict_nchw(x), TorchRunner(ckpt).predict_nchw(x)
    cos = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.99999, cos.min()
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.slow
@pytest.mark.parametrize("variant", references.VARIANTS)
def test_w8a8_pte_is_judged_on_itself_and_a_miss_is_written_aside(converted, variant):
    from vitdeploy.formats.executorch import read_pte_metadata

    report = converted(variant, "w8a8")
    q = report["quant_report"]
    assert q["activations"] == "int8" and report["precision"] == "w8a8" and q["min_cosine"] == 0.99
    assert report["accuracy_target_met"] == q["target_met"] == (q["cosine_min_after"] >= 0.99)
    assert read_pte_metadata(report["path"])["vitdeploy"]["precision"] == "w8a8"
    if report["accuracy_target_met"]:
        assert not report["path"].endswith(".below-target.pte") and not report["warnings"]
    else:  # kept aside, saying what was tried
        assert report["path"].endswith(".below-target.pte") and "tried: full int8" in report["warnings"][-1]
        assert len(q["search"]) > 1


# MobileViT-XXS misses the goal, as its TFLite w8a8 does (tests/test_references.py): worst held-out image
# cosine of the .pte 0.9856 < 0.99, and no module kept in float gains 0.002 (the search in the report).
# Not strict: 0.0012 below the bar, and calibration runs on the host CPU's float kernels; with ATen/oneDNN forced
# to AVX2 (VITDEPLOY_TEST_KERNELS=alternate, issue 31) it passed, so a strict xfail fails on some CPUs.
MISSES_TODAY = {"mobilevit_xxs": "w8a8 MobileViT-XXS .pte: worst cosine 0.9888 < 0.99 (docs/executorch.md)"}


@pytest.mark.slow
@pytest.mark.parametrize("variant", [pytest.param(v, marks=pytest.mark.xfail(strict=False, reason=MISSES_TODAY[v]))
                                     if v in MISSES_TODAY else v for v in references.VARIANTS])
def test_w8a8_pte_on_the_reference_meets_the_accuracy_target(converted, variant):
    from vitdeploy.parity import evaluate

    report = converted(variant, "w8a8")
    assert report["accuracy_target_met"], report["warnings"]
    result = evaluate([references.checkpoint(variant), report["path"]], references.heldout_dir(), threads=2,
                      batch_size=32)
    float_top1, int8_top1 = (m.top1 for m in result.models)
    assert 100 * (float_top1 - int8_top1) <= MAX_DROP_PTS, (float_top1, int8_top1)


def test_coreml_delegate_lowers_and_says_it_cannot_run_here(tmp_path):
    """coremltools is installed, so the Core ML delegate lowers; the host runtime has no CoreMLBackend (Linux)."""
    pytest.importorskip("coremltools")
    from vitdeploy.formats.executorch import read_pte_metadata
    from vitdeploy.runtimes.open import open_runner
    from vitdeploy.runtimes.executorch import backend_available
    from vitdeploy.targets.executorch import convert_executorch

    conv = convert_executorch(_tiny_classifier(), input_size=(3, 32, 32), preprocessing=_preprocessing(),
                              out=tmp_path / "m.pte", delegate="coreml")
    assert read_pte_metadata(conv.path)["vitdeploy"]["delegate"] == "coreml"
    if backend_available("CoreMLBackend"):  # pragma: no cover - macOS
        assert open_runner(conv.path).predict_nchw(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 5)
        return
    assert "not run" in conv.warnings[0]
    with pytest.raises(VitdeployError, match="Core ML delegate"):
        open_runner(conv.path)


def _tiny_attention():
    """patchify conv -> LayerNorm -> qkv linear, split, 4-D matmuls, softmax -> pooled linear head."""
    import torch
    from torch import nn

    class TinyAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, 16, 8, stride=8)
            self.norm = nn.LayerNorm(16)
            self.qkv = nn.Linear(16, 48)
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            t = self.norm(self.patch(x).flatten(2).transpose(1, 2))  # (N, 16 tokens, 16)
            q, k, v = self.qkv(t).reshape(t.shape[0], 16, 2, 24).permute(0, 2, 1, 3).split(8, dim=-1)
            attn = (q @ k.transpose(-2, -1) * 8 ** -0.5).softmax(-1)
            y = (attn @ v).permute(0, 2, 1, 3).reshape(t.shape[0], 16, 16)
            return self.head(y.mean(1))

    torch.manual_seed(0)
    model = TinyAttention().eval()
    with torch.no_grad():  # a LayerNorm that is not the identity
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.uniform_(-0.2, 0.2)
    return model


def test_layernorm_as_linear_is_the_same_function():
    import torch

    from vitdeploy.passes import PASSES

    model = _tiny_attention()
    x = torch.randn(4, 3, 32, 32) * 3
    with torch.no_grad():
        before = model(x)
        assert PASSES["layernorm_as_linear"](model) == 1
        after = model(x)
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_xnnpack_rewrites_leave_no_split_expand_or_layernorm_outside_the_delegate(tmp_path):
    """Without the rewrites this model's .pte runs native_layer_norm, split_with_sizes_copy and expand_copy as
    portable kernels between XNNPACK calls; with them, the same logits from fewer delegate calls."""
    import torch

    from vitdeploy.runtimes.open import open_runner

    model = _tiny_attention()
    from vitdeploy.targets.executorch import convert_executorch

    conv = convert_executorch(model, input_size=(3, 32, 32), preprocessing=_preprocessing(), out=tmp_path / "a.pte",
                              raw_input=True)
    assert conv.rewrites == {"layernorm_as_linear": 1}
    assert isinstance(model.norm, torch.nn.LayerNorm)  # the caller's model is left as it was
    runner = open_runner(conv.path)
    kernels = " ".join(runner.census["kernels"])
    assert not any(op in kernels for op in ("layer_norm", "split", "expand")), runner.census
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(runner.predict_nchw(x), expected, rtol=1e-4, atol=1e-4)
