"""int8 attention matmuls: with ``SYMMETRIC_MATMUL_RHS`` every w8a8 BATCH_MATMUL gets a symmetric right-hand
input, so XNNPACK runs it in int8 (off by default: not faster on the trained references, docs/int8-goals.md)."""

from __future__ import annotations

import numpy as np
import pytest


def _matmul_inputs(model: bytes) -> list[tuple[dict, dict, dict]]:
    """(left input, right input, output) tensor details of each BATCH_MATMUL."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [tuple(tensors[int(i)] for i in (*op["inputs"][:2], op["outputs"][0]))
            for op in interpreter._get_ops_details() if op["op_name"] == "BATCH_MATMUL"]


@pytest.mark.needs_default_kernels
@pytest.mark.parametrize("symmetric", [True, False])
def test_w8a8_matmuls_have_a_zero_right_hand_zero_point_and_run_on_xnnpack(attention_tflite, symmetric, monkeypatch):
    """Without the symmetric right-hand input (``False``: the quantizer's asymmetric default) XNNPACK
    leaves int8 BATCH_MATMUL to TFLite's built-in kernels; with it, XNNPACK takes every one, the left
    input stays asymmetric (a softmax output in [0, 1] needs all 256 levels) and the outputs stay close."""
    from vitdeploy.quantization import tflite as q
    from vitdeploy.runtimes.tflite import delegation_census, run_tflite
    from vitdeploy.similarity import logits_agreement

    monkeypatch.setattr(q, "SYMMETRIC_MATMUL_RHS", symmetric)
    rng = np.random.default_rng(0)
    calib, held = rng.standard_normal((24, 16, 32)).astype(np.float32), rng.standard_normal((8, 16, 32))
    model = q._static_int8(attention_tflite, q._calibrate(attention_tflite, calib, 1, "min_max"), [], False)
    matmuls = _matmul_inputs(model)
    assert len(matmuls) == 2 and all(t["dtype"] == np.int8 for m in matmuls for t in m)
    right_zero_points = [int(rhs["quantization_parameters"]["zero_points"][0]) for _, rhs, _ in matmuls]
    not_delegated = delegation_census(model)["not_delegated"]
    if not symmetric:  # the "before": what this change fixes
        assert any(right_zero_points) and not_delegated.get("BATCH_MATMUL") == 2
        return
    assert right_zero_points == [0, 0]
    assert "BATCH_MATMUL" not in not_delegated, not_delegated
    softmax_side = [lhs for lhs, _, _ in matmuls if lhs["quantization_parameters"]["zero_points"][0] == -128]
    assert softmax_side, "the softmax output feeding attn @ v keeps its asymmetric [0, 1] range"
    reference = run_tflite(attention_tflite, held.astype(np.float32)).reshape(len(held), -1)
    assert logits_agreement(run_tflite(model, held.astype(np.float32)).reshape(len(held), -1),
                            reference)["cosine_min"] > 0.97


def test_the_quantizer_keeps_its_own_matmul_materializer_after_quantizing(attention_tflite, monkeypatch):
    """The right-hand-only materializer is swapped in for one quantize call and restored after."""
    from ai_edge_quantizer import algorithm_manager as am, qtyping

    from vitdeploy.quantization import tflite as q

    monkeypatch.setattr(q, "SYMMETRIC_MATMUL_RHS", True)
    def current():
        return am.get_quantization_func(am.AlgorithmName.MIN_MAX_UNIFORM_QUANT, qtyping.TFLOperationName.BATCH_MATMUL,
                                        qtyping.QuantizeMode.MATERIALIZE)

    before = current()
    calib = np.random.default_rng(1).standard_normal((4, 16, 32)).astype(np.float32)
    q._static_int8(attention_tflite, q._calibrate(attention_tflite, calib, 1, "min_max"), [], False)
    assert current() is before


def test_the_matmuls_fed_by_a_float_softmax_form_one_fallback_group(attention_tflite, monkeypatch):
    """probabilities @ V (fed by SOFTMAX through layout ops) is the search's float candidate; q @ k is not."""
    from vitdeploy.quantization import tflite as q
    from vitdeploy.quantization.tflite_graph import _matmuls_fed_by
    from vitdeploy.runtimes.tflite import delegation_census

    monkeypatch.setattr(q, "SYMMETRIC_MATMUL_RHS", True)
    group = _matmuls_fed_by(attention_tflite, ["SOFTMAX"])
    assert group.op_counts == (("BATCH_MATMUL", 1),)
    assert _matmuls_fed_by(attention_tflite, ["HARD_SWISH"]) is None  # hard-swish comes after both matmuls
    calib = np.random.default_rng(2).standard_normal((8, 16, 32)).astype(np.float32)
    softmax = q.FallbackGroup("SOFTMAX", "op_type", "SOFTMAX", (("SOFTMAX", 1),))
    model = q._static_int8(attention_tflite, q._calibrate(attention_tflite, calib, 1, "min_max"), [softmax, group], False)
    kinds = [(lhs["dtype"], rhs["dtype"]) for lhs, rhs, _ in _matmul_inputs(model)]
    assert sorted(kinds, key=str) == sorted([(np.int8, np.int8), (np.float32, np.float32)], key=str)
    assert "BATCH_MATMUL" not in delegation_census(model)["not_delegated"]
