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
    # "fp32" beside a compute precision: not quantized (the canonical word; the old internal key was "none")
    assert coreml["fp32"] == ("fp32", "fp32") and coreml["fp16"] == ("fp16", "fp32")
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
    assert set(summary["fastest"]) == {"criteria", "per_target", "overall", "noisy"}


def _row(target, label, ms, delta, cos, noisy=False, status="ok"):
    r = {"target": target, "label": label, "status": status, "median_ms": ms, "p90_ms": ms * (2 if noisy else 1.1),
         "delta_pt": delta, "worst_cosine": cos, "noisy": noisy, "speedup_vs_fp32": 1.0}
    if noisy:
        r["noise"] = "noisy timing: ..."
    return r


def test_the_fastest_accurate_artifact_is_named_per_target_and_overall():
    """The question a benchmark answers: the fastest file within 1 point and a worst cosine of 0.99."""
    from vitdeploy.benchmark import fastest_within

    head = _row("checkpoint", "fp32", 250.0, 0.0, 1.0)
    rows = [_row("tflite", "fp32", 30.0, 0.0, 1.0), _row("tflite", "dynamic", 9.2, +0.46, 0.9993),
            _row("tflite", "w8a8", 7.5, -0.91, 0.9858),  # faster, but its worst image is below 0.99
            _row("tflite", "fp16", 8.0, -1.5, 0.999),  # faster, but drops 1.5 points
            _row("executorch", "fp32", 19.0, 0.0, 1.0), _row("executorch", "w8a8", 8.7, -0.5, 0.995),
            _row("executorch", "w8a16", 1.0, 0.0, 1.0, status="below target")]
    pick = fastest_within(rows, head)
    assert pick["per_target"] == {"executorch": "executorch w8a8", "tflite": "tflite dynamic"}
    assert pick["overall"] == "executorch w8a8" and pick["noisy"] is False
    assert fastest_within([_row("tflite", "w8a8", 7.5, -2.0, 0.9)], head)["overall"] is None


def test_a_noisy_run_is_one_warning_not_one_per_model():
    from vitdeploy.benchmark import _footer

    rows = [_row("checkpoint", "fp32", 250.0, 0.0, 1.0, noisy=True)] + [
        _row("tflite", name, 10.0, 0.0, 1.0, noisy=True) for name in ("fp32", "fp16", "w8a8")]
    summary = {"images": {"labelled": True, "n": 4, "source": "x"}, "threads": 2, "runs": 3, "rows": rows}
    warnings = [line for line in _footer(summary) if line.startswith("warning:")]
    assert len(warnings) == 1 and "4 of 4 timed models" in warnings[0] and "tflite w8a8" in warnings[0]
