"""`vitdeploy benchmark`: the plan read from the formats table and the precisions, options refused before any
work, and (slow) the whole run on seeded LeViT-128S weights with --quick."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vitdeploy.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_plan_is_every_target_x_precision_of_the_formats_table():
    from vitdeploy.benchmark import plan
    from vitdeploy.formats import FORMATS

    cells = plan()
    assert {(c["target"], c["label"].split()[-1]) for c in cells} == \
        {(t, p) for t, f in FORMATS.items() for p in f.precisions}
    coreml = {c["label"]: (c["precision"], c["quantize"]) for c in cells if c["target"] == "coreml"}
    assert coreml["fp32"] == ("fp32", "none") and coreml["fp16"] == ("fp16", "none")
    assert coreml["fp16 w8a8"] == ("fp16", "w8a8")
    assert [(c["target"], c["label"]) for c in plan(quick=True)] == [("tflite", "fp32"), ("tflite", "w8a8")]
    assert [c["label"] for c in plan(("executorch",), ("int8",))] == ["w8a8"]  # aliases read as canonical names


@pytest.mark.parametrize("args,words", [(["--targets", "onnx"], "--targets onnx"),
                                        (["--precisions", "int4"], "unknown precision"),
                                        (["--targets", "executorch", "--precisions", "fp16"], "no target x precision")])
def test_bad_options_refused_before_the_checkpoint_loads(args, words, tmp_path):
    result = run("benchmark", tmp_path / "missing.pth", *args)
    assert result.exit_code == 2 and words in result.output and len(result.output.strip().splitlines()) == 1


def test_reachable_from_the_api():
    import vitdeploy.api as api

    assert callable(api.benchmark)


@pytest.mark.slow
def test_benchmark_quick_end_to_end(tmp_path):
    from vitdeploy.synthetic import write_seeded_checkpoint

    ckpt = write_seeded_checkpoint("levit_128s", tmp_path / "levit_128s.safetensors")
    md, png = tmp_path / "b.md", tmp_path / "b.png"
    result = run("benchmark", ckpt, "--quick", "--n-images", "4", "--runs", "3", "-o", tmp_path / "out",
                 "--markdown", md, "--plot", png, "--json")
    assert result.exit_code in (0, 1), result.output
    summary = json.loads(result.stdout)
    rows = {f"{r['target']} {r['label']}": r for r in summary["rows"]}
    assert list(rows) == ["checkpoint fp32", "tflite fp32", "tflite w8a8"]
    for name, r in rows.items():
        assert r["size_mb"] > 0 and 0 <= r["accuracy"] <= 1 and r["median_ms"] > 0 and "noisy" in r, name
        assert "worst_cosine" in r, name
    assert rows["tflite fp32"]["speedup_vs_fp32"] == 1.0 and rows["tflite w8a8"]["speedup_vs_fp32"] > 0
    assert rows["tflite fp32"]["worst_cosine"] > 0.999 and summary["images"]["labelled"] is False
    assert "| tflite w8a8 |" in md.read_text() and png.read_bytes()[:4] == b"\x89PNG"
