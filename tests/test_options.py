"""Issue 30, options: nothing silently ignored or contradicted, one vocabulary, --help defaults the real ones.

Fast: the converter is replaced by a recorder where the test is about which options reach it.
"""

from __future__ import annotations

import inspect
import json

import click
import pytest
from click.testing import CliRunner

from vitdeploy.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """`vitdeploy convert` with the conversion replaced: the keyword arguments it was called with."""
    calls = []

    def fake_convert(checkpoint, target, **kw):
        chosen = kw.pop("quantize")  # the Precision the CLI parsed: its name and compute precision recorded
        calls.append({"target": target, **kw, "quantize": chosen.name, "precision": chosen.compute})
        return {"path": str(tmp_path / "m"), "variant": "levit_128s", "target": target, "quantize": chosen.name,
                "precision": chosen.name, "size_bytes": 1, "total_seconds": 0.0,
                "bn_folding": {"total_folded": 0}}

    monkeypatch.setattr("vitdeploy.convert.convert", fake_convert)
    return calls


def test_tflite_precision_fp16_writes_fp16(recorded):
    result = run("convert", "ck.pth", "--target", "tflite", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    assert recorded[-1]["quantize"] == "fp16"


@pytest.mark.parametrize("target,q,want", [("coreml", None, ("fp16", "fp16")), ("coreml", "fp32", ("fp32", "fp32")),
                                           ("coreml", "fp16", ("fp16", "fp16")), ("tflite", None, ("fp32", None)),
                                           ("executorch", None, ("fp32", None))])
def test_defaults_reach_the_converter(recorded, target, q, want):
    result = run("convert", "ck.pth", "--target", target, *(["--quantize", q] if q else []))
    assert result.exit_code == 0, result.output
    assert (recorded[-1]["quantize"], recorded[-1]["precision"]) == want


@pytest.mark.parametrize("args,words", [
    (["--target", "coreml", "--quantize", "fp16", "--precision", "fp32"], "contradicts"),
    (["--target", "tflite", "--quantize", "w8a8", "--precision", "fp16"], "contradicts"),
    (["--target", "executorch", "--precision", "fp16"], "not available for executorch"),
    (["--target", "tflite", "--compute-units", "cpu_ne"], "--compute-units is for --target coreml"),
    (["--target", "tflite", "--deployment-target", "iOS17"], "--deployment-target is for --target coreml"),
    (["--target", "coreml", "--delegate", "coreml"], "--delegate is for --target executorch"),
    (["--target", "tflite", "--quantize", "fp16", "--int8-io"], "--int8-io is for w8a8"),
    (["--target", "tflite", "--calib", "."], "--calib is for w8a8/w8a16"),
    (["--target", "coreml", "--quantize", "w8", "--calib", "."], "--calib is for w8a8/w8a16"),
])
def test_conflicting_or_idle_options_refused_before_work(recorded, args, words):
    result = run("convert", "ck.pth", *args)
    assert result.exit_code == 2 and words in result.output and not recorded
    assert len(result.output.strip().splitlines()) == 1


def test_coreml_compute_units_one_spelling_old_ones_noted(recorded):
    result = run("convert", "ck.pth", "--target", "coreml", "--compute-units", "cpu_ne")
    assert result.exit_code == 0, result.output
    assert recorded[-1]["compute_units"] == "cpu_ne"  # the converter's key for cpuAndNeuralEngine
    assert "note: --compute-units cpu_ne is spelled cpuAndNeuralEngine now" in result.output
    result = run("convert", "ck.pth", "--target", "coreml", "--compute-units", "cpuAndNeuralEngine")
    assert result.exit_code == 0 and "note:" not in result.output
    assert recorded[-1]["compute_units"] == "cpu_ne"
    assert run("convert", "ck.pth", "--target", "coreml", "--compute-units", "npu").exit_code == 2


def test_profile_compute_units_use_the_same_ios_spelling():
    from vitdeploy.options import compute_units

    assert compute_units("ios", ["cpu_gpu", "cpuOnly"]) == ("cpuAndGPU", "cpuOnly")
    assert compute_units("android", ["xnnpack", "gpu"]) == ("xnnpack", "gpu")
    with pytest.raises(Exception, match="not a android compute unit"):
        compute_units("android", ["cpuAndGPU"])


def test_convert_json_precision_in_one_vocabulary():
    from vitdeploy.convert import _precision_words
    from vitdeploy.precisions import parse

    assert _precision_words(parse("tflite", "int8")) == {"precision": "w8a8", "quantize": "w8a8"}
    assert _precision_words(parse("tflite", "none")) == {"precision": "fp32", "quantize": "fp32"}
    assert _precision_words(parse("coreml", "w8", "fp16")) == \
        {"precision": "w8", "quantize": "w8", "compute_precision": "fp16"}
    assert _precision_words(parse("coreml", "none", "fp16"))["precision"] == "fp16"


def test_build_table_uses_canonical_labels():
    from vitdeploy.build import format_build_table

    cells = [{"variant": "levit_128s", "target": "tflite", "precision": "fp16", "quantize": q, "status": "ok"}
             for q in ("none", "int8")]
    cells.append({"variant": "levit_128s", "target": "coreml", "precision": "fp32", "quantize": "none",
                  "status": "ok"})
    table = format_build_table({"cells": cells, "failed": 0})
    assert "none" not in table and "int8" not in table and "fp32/none" not in table
    assert " w8a8 " in table and " fp32 " in table


def test_old_option_spellings_are_hidden_aliases():
    for command, canonical_, old in (("predict", "--top-k", "--top"), ("parity", "--data", "--images"),
                                     ("build", "--data", "--images"), ("eval", "--data", "--images"),
                                     ("package", "--top-k", None)):
        text = run(command, "--help").output
        assert canonical_ in text, command
        if old:
            assert f"{old} " not in text and f"{old}," not in text, command
    cmd = main.commands["predict"]
    assert cmd.make_context("predict", ["m.pth", "a.png", "--top", "3"]).params["top_k"] == 3
    assert main.commands["eval"].make_context("eval", ["m", "--images", "d"]).params["data_dir"] == "d"
    assert main.commands["parity"].make_context(
        "parity", ["a.tflite", "--checkpoint", "c", "--images", "d"]).params["data_dir"] == "d"


def _all_commands():
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                yield f"{name} {sub_name}", sub
        else:
            yield name, command


def _functions():
    """The code each command runs with its options' defaults (where the names match)."""
    import vitdeploy.api as api
    from vitdeploy import profile
    from vitdeploy.convert import convert
    from vitdeploy.parity import run_parity
    from vitdeploy.parity.evaluate import evaluate

    return {"predict": [api.predict], "convert": [convert], "profile": [profile.profile, profile.profile_many],
            "parity": [run_parity], "eval": [evaluate], "benchmark": [getattr(api, "benchmark", None)]}


def test_help_defaults_are_the_defaults_the_code_uses():
    """For each command, the default --help shows equals the default of the function it calls, parameter by
    parameter; and the defaults spelled out in help text (convert's per-target precision) are the resolved ones."""
    functions = _functions()
    mismatched = []
    for name, command in _all_commands():
        for function in functions.get(name, []):
            if function is None:
                continue
            signature = inspect.signature(function).parameters
            for param in command.params:
                if not isinstance(param, click.Option) or not param.show_default or param.name not in signature:
                    continue
                code_default = signature[param.name].default
                shown = param.default
                if isinstance(code_default, tuple) and isinstance(shown, str):  # a comma list the command splits
                    shown = tuple(type(code_default[0])(v) for v in shown.split(","))
                if code_default is not inspect.Parameter.empty and code_default != shown:
                    mismatched.append(f"{name} --{param.name}: help {param.default!r}, code {code_default!r}")
    assert not mismatched, mismatched
    from vitdeploy.precisions import DEFAULT, parse

    quantize_help = next(p for p in main.commands["convert"].params if p.name == "quantize").help
    for target, default in DEFAULT.items():
        assert parse(target).name == default and f"{target} {default}" in quantize_help


def test_parity_precision_help_says_tolerance_preset():
    text = next(p for p in main.commands["parity"].params if p.name == "precision").help
    assert "tolerance preset" in text.lower() and "not a conversion precision" in text


def test_convert_prints_canonical_label(recorded):
    result = run("convert", "ck.pth", "--target", "tflite", "--quantize", "int8", "--json")
    assert result.exit_code == 0
    assert recorded[-1]["quantize"] == "w8a8"
    json.loads(result.output)


def test_coreml_default_is_fp16_through_the_real_converter(tmp_path, monkeypatch):
    """No recorder: the real convert() picks the output name from the compute precision it will use. Reading the
    CLI's canonical quantize "fp32" (not quantized) as the fp32 compute precision made every default Core ML
    conversion fp32 while --help said fp16. Both names exist, so the refusal names the one it chose, at once."""
    from vitdeploy.synthetic import write_seeded_checkpoint

    monkeypatch.chdir(tmp_path)
    ckpt = write_seeded_checkpoint("levit_128s", tmp_path / "levit_128s.safetensors")
    for name in ("levit_128s_fp16.mlpackage", "levit_128s_fp32.mlpackage"):
        (tmp_path / name).mkdir()
    result = run("convert", ckpt, "--target", "coreml")
    assert result.exit_code == 2 and "levit_128s_fp16.mlpackage" in result.output, result.output
    result = run("convert", ckpt, "--target", "coreml", "--precision", "fp32")
    assert result.exit_code == 2 and "levit_128s_fp32.mlpackage" in result.output, result.output


def test_coreml_w8a8_with_fp32_compute_is_refused_in_one_line(tmp_path, monkeypatch):
    """coremltools' activation passes fail deep inside on an fp32 program ("scale has dtype fp16 whereas input
    has dtype fp32", seen converting the LeViT-128S reference): refused up front, nothing written."""
    from vitdeploy.synthetic import write_seeded_checkpoint

    monkeypatch.chdir(tmp_path)
    ckpt = write_seeded_checkpoint("levit_128s", tmp_path / "levit_128s.safetensors")
    result = run("convert", ckpt, "--target", "coreml", "--quantize", "w8a8", "--precision", "fp32", "-o", "m.mlpackage")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "error: Core ML w8a8 needs fp16 compute (--precision fp16, the default); for fp32 compute use --quantize w8"]
    assert not (tmp_path / "m.mlpackage").exists()


@pytest.mark.parametrize("quantize,precision,want", [
    ("fp32", "fp16", ("fp16", "fp16")), ("fp32", None, ("fp32", "fp32")), ("fp16", None, ("fp16", "fp16")),
    ("none", None, ("fp16", "fp16")), ("w8", "fp32", ("w8", "fp32")), ("fp32", "fp32", ("fp32", "fp32"))])
def test_convert_reads_core_ml_compute_words(quantize, precision, want):
    """The Python API's words (convert(quantize=, precision=)): fp32 beside a compute precision is "not
    quantized"; elsewhere ``precision`` is not read (the file has one precision, ``quantize``'s)."""
    from vitdeploy.precisions import canonical, parse_call

    got = parse_call("coreml", quantize, precision)
    assert (got.name, got.compute) == want
    if canonical(quantize) != "w8":  # (TFLite holds no w8)
        assert parse_call("tflite", quantize, precision).name == canonical(quantize)  # no compute words
