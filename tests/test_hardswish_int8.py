"""Hard-swish as int8 ops: the TFLite pipeline's ``hardswish_scale_forward`` survives the converter (no
HARD_SWISH re-fused) and its ADD/MUL run in int8 inside XNNPACK. A small random-weight LeViT: the op
census, not accuracy, is under test (accuracy: docs/int8-goals.md, on the trained reference)."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeploy.models import LEVIT
from vitdeploy.sample_images import natural_images

SIZE = 64


@pytest.fixture(scope="module")
def small_levit_float(tmp_path_factory):
    """A 64 px LeViT (every Hardswish site: stem, attention, downsample, MLP) through the TFLite pipeline,
    exported as float .tflite; (the prepared model, the file's bytes)."""
    import torch

    from vitdeploy.models.levit import Levit, LevitConfig
    from vitdeploy.passes import prepare_for
    from vitdeploy.targets.tflite import convert_tflite

    torch.manual_seed(0)
    model = Levit(LevitConfig((32, 48, 64), 8, (2, 2, 2), (1, 1, 1), img_size=SIZE, num_classes=10))
    _normalize_on_images(model)
    prepared = prepare_for("tflite", model, precision="w8a8")
    out = tmp_path_factory.mktemp("hswish") / "float.tflite"
    conv = convert_tflite(prepared.model, input_size=(3, SIZE, SIZE), preprocessing=LEVIT, out=out)
    return prepared, conv.path.read_bytes()


def _normalize_on_images(model) -> None:
    """BatchNorm statistics measured on natural images: unit-scale activations everywhere, as trained nets have
    (a fresh init's last stage is ~1e-5 wide, and XNNPACK refuses an int8 ADD(x, 3) whose input/output scale
    ratio is below 1/1024)."""
    import torch
    from torch import nn

    for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over the pass
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(LEVIT.normalize(natural_images(16, SIZE, seed=100))))
    model.eval()


def test_the_converter_does_not_fuse_hardswish_back(small_levit_float):
    from vitdeploy.quantization.tflite_graph import op_types

    prepared, float_model = small_levit_float
    assert prepared.rewrites.get("hardswish_scale_forward") == 3 + 3 * 2 + 2 * 2  # stem, 3 blocks, 2 downsamples
    ops = op_types(float_model)
    assert "HARD_SWISH" not in ops and "RELU6" not in ops  # RELU6 fused into the ADD


@pytest.mark.needs_default_kernels
def test_hardswish_adds_and_muls_run_in_int8_in_xnnpack(small_levit_float):
    """Every ADD/MUL lowered from the pass's module is int8 in the w8a8 file and XNNPACK takes it."""
    from ai_edge_litert.interpreter import Interpreter

    from vitdeploy.quantization.tflite import quantize_int8
    from vitdeploy.runtimes.tflite import delegation_census

    prepared, float_model = small_levit_float
    images = natural_images(12, SIZE, seed=3).astype(np.float32)  # the file takes RGB pixels, NHWC
    model, report = quantize_int8(float_model, calib_inputs=images[:8], eval_inputs=images[8:], max_rounds=0,
                                  measure_alternatives=False, per_tensor_fallback=False,
                                  input_range=(0.0, 255.0))
    assert "HARD_SWISH" not in report["float_fallback_ops"]
    interpreter = Interpreter(model_content=model)
    ops = [(op["op_name"], interpreter._get_tensor_details(int(op["outputs"][0]), 0))
           for op in interpreter._get_ops_details() if len(op["outputs"])]
    ours = [(name, np.dtype(t["dtype"])) for name, t in ops if "SixHardswish" in t["name"] and name in ("ADD", "MUL")]
    count = prepared.rewrites.get("hardswish_scale_forward")
    assert sorted(name for name, _ in ours) == ["ADD"] * count + ["MUL"] * count, ours
    assert all(dtype == np.int8 for _, dtype in ours), ours
    census = delegation_census(model)
    assert "HARD_SWISH" not in census["ops"]
    assert not {"ADD", "MUL"} & set(census["not_delegated"]), census
