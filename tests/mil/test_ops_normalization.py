"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/normalization.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)


def test_layer_norm_last_axis(tmp_path):
    x, gamma, beta = _rand(2, 5, 8), _rand(8), _rand(8)
    (out,), _ = run(
        tmp_path, lambda x: mb.layer_norm(x=x, axes=[-1], gamma=gamma, beta=beta, epsilon=1e-3), [x], expect_op="layer_norm"
    )
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x), (8,), torch.from_numpy(gamma), torch.from_numpy(beta), 1e-3)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_layer_norm_middle_axes_without_affine(tmp_path):
    x = _rand(2, 3, 4, 5) * 3 + 1
    (out,), _ = run(tmp_path, lambda x: mb.layer_norm(x=x, axes=[1, 2], epsilon=1e-5), [x], expect_op="layer_norm")
    xd = x.astype(np.float64)
    mean, var = xd.mean(axis=(1, 2), keepdims=True), xd.var(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, (xd - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)


def test_batch_norm(tmp_path):
    x = _rand(2, 4, 3, 3)
    mean, var, gamma, beta = _rand(4), _rand(4, low=0.5, high=2), _rand(4), _rand(4)
    (out,), _ = run(
        tmp_path,
        lambda x: mb.batch_norm(x=x, mean=mean, variance=var, gamma=gamma, beta=beta, epsilon=1e-3),
        [x],
        expect_op="batch_norm",
    )
    ref = torch.nn.functional.batch_norm(
        torch.from_numpy(x), *(torch.from_numpy(v) for v in (mean, var, gamma, beta)), training=False, eps=1e-3
    )
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


def test_batch_norm_rank3(tmp_path):
    """LeViT's BatchNorm1d shows up as batch_norm on a rank-3 tensor."""
    x = _rand(1, 4, 6)
    mean, var = _rand(4), _rand(4, low=0.5, high=2)
    (out,), _ = run(tmp_path, lambda x: mb.batch_norm(x=x, mean=mean, variance=var), [x], expect_op="batch_norm")
    ref = (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_instance_norm(tmp_path):
    x, gamma, beta = _rand(2, 3, 4, 5), _rand(3), _rand(3)
    (out,), _ = run(tmp_path, lambda x: mb.instance_norm(x=x, gamma=gamma, beta=beta), [x], expect_op="instance_norm")
    ref = torch.nn.functional.instance_norm(torch.from_numpy(x), weight=torch.from_numpy(gamma), bias=torch.from_numpy(beta))
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-5)


X_T = _rand(2, 3, 4, 5)

MORE_TENSOR_CASES = [
    ("l2_norm", lambda x: mb.l2_norm(x=x, epsilon=1e-3), lambda x: x / np.sqrt((x * x).sum(axis=(1, 2, 3), keepdims=True) + 1e-3)),
]


@pytest.mark.parametrize("case", MORE_TENSOR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(MORE_TENSOR_CASES)])
def test_more_tensor_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_T], ref_fn, atol=1e-5)
