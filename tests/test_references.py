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


@pytest.mark.slow
@pytest.mark.parametrize("variant", references.VARIANTS)
def test_w8a8_on_the_reference_keeps_int8_activations_and_its_accuracy(tmp_path, variant):
    from vitdeploy.convert import convert
    from vitdeploy.quantization.tflite import int16_op_counts

    ckpt = references.checkpoint(variant)
    report = convert(ckpt, "tflite", out=tmp_path / f"{variant}_w8a8.tflite", quantize="w8a8")
    q = report["quant_report"]
    path = tmp_path / f"{variant}_w8a8.tflite"
    assert report["accuracy_target_met"] and report["path"] == str(path), q["warnings"] if "warnings" in q else q
    assert q["activations"] == "int8" and not int16_op_counts(path.read_bytes())  # never int16 silently
    result = evaluate([ckpt, path], references.heldout_dir(), threads=2, batch_size=32)
    float_top1, int8_top1 = (m.top1 for m in result.models)
    assert 100 * (float_top1 - int8_top1) <= MAX_DROP_PTS, (float_top1, int8_top1)
