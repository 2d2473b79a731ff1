"""The committed trained references: they are trained, and low precision is judged on them.

These are the tests that fail if w8a8 silently falls back to int16 activations or loses more
than the accuracy target on the references (issue 15's guard).
"""

from __future__ import annotations

import pytest

from vitdeploy import references
from vitdeploy.parity import evaluate

# Held-out top-1 points w8a8 may lose against the checkpoint (the goal), on the committed
# sample of the reference task's held-out crops (220 images: one image is 0.45 points).
MAX_DROP_PTS = 1.0


@pytest.mark.parametrize("variant", references.VARIANTS)
def test_reference_is_a_trained_classifier(variant):
    """Well above chance (1/22 = 4.5 %) on crops from image regions it never saw."""
    ckpt = references.checkpoint(variant)
    assert ckpt.stat().st_size < 20e6  # fp16 safetensors: the two stay well under 25 MB
    result = evaluate([ckpt], references.heldout_dir(), threads=2, batch_size=32)
    (model,) = result.models
    assert model.n == 220 and model.top1 >= 0.75, model.top1


@pytest.fixture(scope="module")
def w8a8(tmp_path_factory):
    """variant -> (convert report, written path), converted once per variant as a user would (default calibration)."""
    from vitdeploy.convert import convert

    cache = {}

    def get(variant: str):
        if variant not in cache:
            out = tmp_path_factory.mktemp(variant) / f"{variant}_w8a8.tflite"
            report = convert(references.checkpoint(variant), "tflite", out=out, quantize="w8a8")
            cache[variant] = (report, report["path"])
        return cache[variant]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("variant", references.VARIANTS)
def test_w8a8_on_the_reference_never_uses_int16_activations(w8a8, variant):
    from pathlib import Path

    from vitdeploy.quantization.tflite_graph import int16_op_counts

    report, path = w8a8(variant)
    q = report["quant_report"]
    assert q["activations"] == "int8" and q["recipe"] == "static_wi8_ai8"
    assert not int16_op_counts(Path(path).read_bytes())  # never int16 silently, met or not
    assert report["accuracy_target_met"] == (q["cosine_min_after"] >= q["min_cosine"])
    if not report["accuracy_target_met"]:  # kept aside, with the measured options
        assert path.endswith(".below-target.tflite")
        assert {"fp16", "dynamic", "w8a16"} <= set(q["alternatives"])


@pytest.mark.slow
@pytest.mark.parametrize("variant", references.VARIANTS)
def test_w8a8_on_the_reference_runs_every_weight_layer_in_int8(w8a8, variant):
    """Weight layers are never float-fallback candidates; a group of other ops must not catch one through a
    fused tensor name (MobileViT-XXS kept the 18 Linear layers after its LayerNorms float that way, ~0.9 ms)."""
    from pathlib import Path

    from vitdeploy.quantization.tflite_graph import _WEIGHT_OPS, float_op_counts

    _, path = w8a8(variant)
    counts = float_op_counts(Path(path).read_bytes())
    assert not _WEIGHT_OPS & set(counts), counts


@pytest.mark.slow
def test_w8a8_levit_computes_its_hardswish_in_int8_ops(w8a8):
    """convert's w8a8 pipeline moves every Hardswish's 1/6 forward (passes.hardswish): no HARD_SWISH left to
    run in float between QUANTIZE/DEQUANTIZE (docs/int8-goals.md, "Hard-swish as int8 ops")."""
    from pathlib import Path

    from vitdeploy.quantization.tflite_graph import float_op_counts, op_types

    report, path = w8a8("levit_128s")
    assert report["rewrites"].get("hardswish_scale_forward") == 25
    data = Path(path).read_bytes()
    assert "HARD_SWISH" not in op_types(data)
    # the 25 Hardswish ops' ADD (+RELU6) and MUL run int8; attention's own scale MUL (11 attention modules) may go
    # float with its matmuls and softmax (tflite_graph._float_islands), so count the int8 ones
    ops, floats = op_types(data), float_op_counts(data)
    int8 = {op: ops.get(op, 0) - floats.get(op, 0) for op in ("ADD", "MUL")}
    assert int8["ADD"] >= 25 and int8["MUL"] >= 25, (int8, floats)


# MobileViT-XXS misses the goal today (issue 27 stays open): worst-image cosine 0.974 < 0.99 on the built-in
# judging images (0.983 when calibrated on photo-region crops), top-1 -1.1 points on 440 held-out crops
# (docs/int8-goals.md, 2026-12-08). Not strict: calibration runs on the host CPU's float kernels, so the figure
# moves with the CPU (issue 31: the .pte twin passed with ATen/oneDNN forced to AVX2); the doc tracks it.
MISSES_TODAY = {"mobilevit_xxs": "w8a8 MobileViT-XXS: worst cosine 0.974 < 0.99 (docs/int8-goals.md)"}


@pytest.mark.slow
@pytest.mark.parametrize("variant", [pytest.param(v, marks=pytest.mark.xfail(strict=False, reason=MISSES_TODAY[v]))
                                     if v in MISSES_TODAY else v for v in references.VARIANTS])
def test_w8a8_on_the_reference_meets_the_accuracy_target(w8a8, variant):
    report, path = w8a8(variant)
    assert report["accuracy_target_met"], report["warnings"]
    result = evaluate([references.checkpoint(variant), path], references.heldout_dir(), threads=2, batch_size=32)
    float_top1, int8_top1 = (m.top1 for m in result.models)
    assert 100 * (float_top1 - int8_top1) <= MAX_DROP_PTS, (float_top1, int8_top1)
