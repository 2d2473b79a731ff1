"""Float groups made of single ops match exactly those ops' scopes, never an op whose fused name starts alike
(the real case, MobileViT-XXS's Linear layers after its LayerNorms: tests/test_references.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest


def test_scope_pattern_is_anchored_at_both_ends():
    from vitdeploy.quantization.tflite_graph import scope_pattern

    # litert-torch names a LayerNorm's first RESHAPE "A;" (scope "A;;") and may fuse it into the name of the
    # Linear after it: "A;;B/Linear_qkv;1" (scope "A;;B/Linear_qkv;1;")
    pattern = scope_pattern(["a/LayerNorm_norm1;;", "b;c;"])
    assert re.search(pattern, "a/LayerNorm_norm1;;")
    assert re.search(pattern, "b;c;")
    assert not re.search(pattern, "a/LayerNorm_norm1;;<P>/a/Linear_qkv;1;")
    assert not re.search(pattern, "a/LayerNorm_norm1;;2;")
    assert not re.search(pattern, "b;")


# What XNNPACK leaves to built-in kernels in a MobileViT transformer block's full int8 (the search's "slow" set).
SLOW = ["ADD", "SQUARED_DIFFERENCE", "RSQRT", "SUB", "BATCH_MATMUL", "SOFTMAX"]


def test_float_islands_make_whole_layernorms_float(transformer_tflite):
    """A LayerNorm's MEANs and MULs sat int8 between its float pieces, a QUANTIZE/DEQUANTIZE pair around each; the
    islands group makes them float too, and no weight layer."""
    from vitdeploy.quantization import tflite as q
    from vitdeploy.quantization.tflite_graph import (_WEIGHT_OPS, _float_islands, _op_scopes, fallback_candidates,
                                                     op_types)

    model = transformer_tflite
    islands = _float_islands(model, SLOW)
    assert islands is not None
    covered = dict(islands.op_counts)
    assert covered.get("MEAN", 0) >= 4 and covered.get("MUL", 0) >= 4, covered  # 2 of each per LayerNorm
    assert not _WEIGHT_OPS & set(covered)
    layernorm_means = [s for s in _op_scopes(model).values() if "LayerNorm" in s and re.search(islands.pattern, s)]
    assert layernorm_means

    groups = fallback_candidates(model)
    inputs = np.random.default_rng(0).standard_normal((4, 4, 16, 32)).astype(np.float32)
    qsvs = q._calibrate(model, inputs, 1, "min_max")
    slow = [groups[name] for name in SLOW if name in groups]

    def boundaries(data: bytes) -> int:
        ops = op_types(data)
        return ops.get("QUANTIZE", 0) + ops.get("DEQUANTIZE", 0)

    assert boundaries(q._static_int8(model, qsvs, slow + [islands], False)) < \
        boundaries(q._static_int8(model, qsvs, slow, False))


def test_float_islands_leave_ops_with_large_constants_int8(tmp_path, monkeypatch):
    """An op kept float stores its constant inputs float32: LeViT's attention-bias ADD takes a [1, 4, 196, 196]
    table (LeViT-128S w8a8 8.3 -> 9.7 MB with it float), so islands leave ops with large constants int8."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from vitdeploy.quantization import tflite_graph

    class BiasedAttention(torch.nn.Module):  # matmul, softmax, then a bias table: one module instance
        def __init__(self):
            super().__init__()
            self.register_buffer("bias", torch.randn(1, 16, 16))

        def forward(self, x):
            return (torch.softmax(x @ (x * 2).transpose(1, 2), dim=-1) + self.bias).relu() * 3

    path = tmp_path / "biased.tflite"
    litert_torch.convert(BiasedAttention().eval(), (torch.randn(2, 16, 8),)).export(str(path))
    model = path.read_bytes()
    islands = tflite_graph._float_islands(model, ["BATCH_MATMUL", "SOFTMAX"])
    assert dict(islands.op_counts) == {"ADD": 1, "MUL": 1}  # the bias table's 256 values: under the threshold
    monkeypatch.setattr(tflite_graph, "LARGE_CONSTANT", 255)
    islands = tflite_graph._float_islands(model, ["BATCH_MATMUL", "SOFTMAX"])
    assert dict(islands.op_counts) == {"MUL": 1}  # the scalar x * 2 still goes float, the bias ADD stays int8
