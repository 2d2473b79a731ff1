"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/transformers.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float"])
def test_scaled_dot_product_attention(tmp_path, mask_kind):
    q, k, v = _rand(1, 2, 4, 8), _rand(1, 2, 6, 8), _rand(1, 2, 6, 3)
    bool_mask = RNG.random((4, 6)) > 0.3
    bool_mask[:, 0] = True  # every query attends to something
    float_mask = _rand(4, 6)

    def prog(q, k, v):
        kwargs = {}
        if mask_kind == "bool":
            kwargs["attn_mask"] = bool_mask
        elif mask_kind == "float":
            kwargs["attn_mask"] = float_mask
        return mb.scaled_dot_product_attention(query=q, key=k, value=v, **kwargs)

    (out,), _ = run(tmp_path, prog, [q, k, v], target=ct.target.iOS18, expect_op="scaled_dot_product_attention")
    mask = {"none": None, "bool": torch.from_numpy(bool_mask), "float": torch.from_numpy(float_mask)}[mask_kind]
    ref = torch.nn.functional.scaled_dot_product_attention(*(torch.from_numpy(t) for t in (q, k, v)), attn_mask=mask)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)
