"""Float groups made of single ops match exactly those ops' scopes, never an op whose fused name starts alike
(the real case, MobileViT-XXS's Linear layers after its LayerNorms: tests/test_references.py)."""

from __future__ import annotations

import re


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
