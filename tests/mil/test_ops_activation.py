"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/activation.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, ref_sigmoid, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)


def _np_gelu_tanh(x):
    return torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()


def _np_gelu_exact(x):
    return torch.nn.functional.gelu(torch.from_numpy(x)).numpy()


X_ACT = _rand(2, 6, 5, 5, low=-5.0, high=5.0)

ACTIVATION_CASES = [
    ("relu", lambda x: mb.relu(x=x), lambda x: np.maximum(x, 0)),
    ("relu6", lambda x: mb.relu6(x=x), lambda x: np.clip(x, 0, 6)),
    ("leaky_relu", lambda x: mb.leaky_relu(x=x, alpha=0.1), lambda x: np.where(x >= 0, x, 0.1 * x)),
    ("elu", lambda x: mb.elu(x=x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1))),
    ("sigmoid", lambda x: mb.sigmoid(x=x), ref_sigmoid),
    ("silu", lambda x: mb.silu(x=x), lambda x: x * ref_sigmoid(x)),
    ("sigmoid_hard", lambda x: mb.sigmoid_hard(x=x, alpha=1 / 6, beta=0.5), lambda x: np.clip(x / 6 + 0.5, 0, 1)),
    ("thresholded_relu", lambda x: mb.thresholded_relu(x=x, alpha=-3.0), lambda x: np.where(x > -3.0, x, 0.0)),
    ("softplus", lambda x: mb.softplus(x=x), lambda x: np.log1p(np.exp(x))),
    ("gelu", lambda x: mb.gelu(x=x, mode="EXACT"), _np_gelu_exact),
    ("gelu", lambda x: mb.gelu(x=x, mode="TANH_APPROXIMATION"), _np_gelu_tanh),
    ("gelu", lambda x: mb.gelu(x=x, mode="SIGMOID_APPROXIMATION"), lambda x: x * ref_sigmoid(1.702 * x)),
    ("softmax", lambda x: mb.softmax(x=x, axis=1), lambda x: torch.softmax(torch.from_numpy(x), 1).numpy()),
    ("softmax", lambda x: mb.softmax(x=x, axis=-1), lambda x: torch.softmax(torch.from_numpy(x), -1).numpy()),
]


@pytest.mark.parametrize(
    "case", ACTIVATION_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(ACTIVATION_CASES)]
)
def test_activation(tmp_path, case):
    op_type, fn, ref_fn = case
    # torch computes the gelu and softmax references: they take the float32 input.
    check_case(tmp_path, op_type, fn, [X_ACT], ref_fn, atol=1e-6, ref_in_float64=op_type not in ("gelu", "softmax"))


def test_hardswish_pattern(tmp_path):
    """LeViT's hardswish lowers to thresholded_relu * sigmoid_hard."""

    def prog(x):
        t = mb.thresholded_relu(x=x, alpha=-3.0)
        return mb.mul(x=t, y=mb.sigmoid_hard(x=t, alpha=1 / 6, beta=0.5))

    (out,), _ = run(tmp_path, prog, [X_ACT])
    ref = torch.nn.functional.hardswish(torch.from_numpy(X_ACT)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


ALPHA6, BETA6 = _rand(6, low=0.1, high=0.9), _rand(6, low=0.5, high=1.5)

MORE_ACTIVATION_CASES = [
    ("prelu", lambda x: mb.prelu(x=x, alpha=ALPHA6), lambda x: np.where(x >= 0, x, x * ALPHA6.reshape(1, 6, 1, 1))),
    (
        "softplus_parametric",
        lambda x: mb.softplus_parametric(x=x, alpha=ALPHA6, beta=BETA6),
        lambda x: ALPHA6.reshape(1, 6, 1, 1) * np.log1p(np.exp(BETA6.reshape(1, 6, 1, 1) * x)),
    ),
    ("softsign", lambda x: mb.softsign(x=x), lambda x: x / (1 + np.abs(x))),
    ("scaled_tanh", lambda x: mb.scaled_tanh(x=x, alpha=1.5, beta=0.7), lambda x: 1.5 * np.tanh(0.7 * x)),
    ("linear_activation", lambda x: mb.linear_activation(x=x, alpha=2.0, beta=-1.0), lambda x: 2 * x - 1),
    (
        "clamped_relu",
        lambda x: mb.clamped_relu(x=x, alpha=0.1, beta=2.0),
        lambda x: np.minimum(np.where(x >= 0, x, 0.1 * x), 2.0),
    ),
]


@pytest.mark.parametrize("case", MORE_ACTIVATION_CASES, ids=[c[0] for c in MORE_ACTIVATION_CASES])
def test_more_activation_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_ACT], ref_fn, atol=1e-5)
