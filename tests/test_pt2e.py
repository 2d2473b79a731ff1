"""int8 fine-tuning through PT2E: the ranges trained in PyTorch are the ones the .tflite carries."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")
from torch import nn  # noqa: E402

from vitdeploy.models import LEVIT  # noqa: E402
from vitdeploy.sample_images import natural_images  # noqa: E402


def silu_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5)).eval()


def test_split_silu_keeps_the_function_and_lets_sigmoid_and_mul_be_quantized():
    from vitdeploy.quantization.pt2e import export_dynamic, quantizer

    model = silu_net()
    x = torch.randn(4, 3, 16, 16)
    graph = export_dynamic(model, x)
    with torch.no_grad():
        expected = model(x)
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    prepared = prepare_pt2e(graph, quantizer(qat=False))
    targets = [n.target for n in prepared.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.silu.default not in targets
    assert torch.ops.aten.sigmoid.default in targets and torch.ops.aten.mul.Tensor in targets
    with torch.no_grad():
        assert torch.allclose(prepared(x), expected, atol=1e-6)  # observers only watch
    sigmoid = next(n for n in prepared.graph.nodes if n.target == torch.ops.aten.sigmoid.default)
    assert all(u.op == "call_module" for u in sigmoid.users)  # its output is observed: quantized in the file


def test_int8_finetune_writes_the_scales_of_the_trained_graph(tmp_path):
    """The file's activation scales are the PyTorch graph's: the old route (fine-tune float weights, then
    TFLite's calibration) recomputed every range, so none of the graph's reached the file."""
    from ai_edge_litert.interpreter import Interpreter

    from vitdeploy.targets.tflite import convert_tflite

    calib = natural_images(20, 32, seed=5)  # every fourth held out to judge
    conv = convert_tflite(silu_net(), input_size=(3, 32, 32), preprocessing=LEVIT, out=tmp_path / "ft.tflite",
                          quantize="int8", calib=calib, int8_finetune=2)
    report = conv.quant_report
    learned = report["finetune"]["activation_scales"]
    assert report["finetune"]["steps"] == 2 and report["finetune"]["ranges"]["histogram"] >= 3
    assert 1 / 256 in learned and len(learned) >= 4  # sigmoid's fixed scale, and the trained ones
    details = Interpreter(model_path=str(conv.path)).get_tensor_details()
    in_file = {float(d["quantization_parameters"]["scales"][0]) for d in details
               if d["dtype"] == np.int8 and len(d["quantization_parameters"]["scales"]) == 1}  # activations
    # Every activation scale in the file is one the graph trained with (the converter may drop a requantize).
    assert len(in_file) >= 4 and all(np.isclose(learned, s, rtol=1e-5).any() for s in in_file), (in_file, learned)
    assert report["cosine_min_after"] > 0.9 and not report["float_op_counts"].get("LOGISTIC")
    assert conv.input["dtype"] == "int8"  # the PT2E file takes and returns int8 tensors (scales in the file)
    # Pixels keep their true range (0..255: scale 1, zero point -128) rather than the one calibration saw.
    assert report["finetune"]["ranges"]["input"] == 1
    scale, zero_point = Interpreter(model_path=str(conv.path)).get_input_details()[0]["quantization"]
    assert scale == pytest.approx(1.0, rel=1e-3) and zero_point == -128
