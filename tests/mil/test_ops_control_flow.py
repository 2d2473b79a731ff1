"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/control_flow.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_A = _rand(2, 3, 4)
X_POS = _rand(2, 3, 4, low=0.1, high=3.0)

ELEMENTWISE_CASES = [
    ("select", lambda x, y: mb.select(cond=mb.greater(x=x, y=0.0), a=x, b=y), [X_A, X_POS], lambda x, y: np.where(x > 0, x, y)),
]


@pytest.mark.parametrize("case", ELEMENTWISE_CASES, ids=[c[0] for c in ELEMENTWISE_CASES])
def test_elementwise(tmp_path, case):
    op_type, fn, inputs, ref_fn = case
    check_case(tmp_path, op_type, fn, inputs, ref_fn, atol=1e-6)
