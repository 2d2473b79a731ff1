"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/pool.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import ref_pool2d, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)

X_IMG = _rand(2, 4, 7, 8)

POOL_CASES = [
    # kind, pad_type, pad, kernel, strides, exclude_padding, expected pads
    ("avg", "valid", None, [2, 2], [2, 2], False, [(0, 0), (0, 0)]),
    ("avg", "custom", [1, 1, 1, 0], [3, 3], [2, 2], True, [(1, 1), (1, 0)]),
    ("avg", "custom", [1, 1, 1, 0], [3, 3], [2, 2], False, [(1, 1), (1, 0)]),
    ("avg", "same", None, [3, 3], [2, 2], True, [(1, 1), (0, 1)]),
    ("max", "same", None, [3, 3], [2, 2], False, [(1, 1), (0, 1)]),
    ("max", "custom", [0, 1, 1, 1], [2, 3], [1, 2], False, [(0, 1), (1, 1)]),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=[f"{c[0]}_{c[1]}_{i}" for i, c in enumerate(POOL_CASES)])
def test_pool(tmp_path, case):
    kind, pad_type, pad, kernel, strides, exclude, expected_pads = case

    def prog(x):
        kwargs = dict(x=x, kernel_sizes=kernel, strides=strides, pad_type=pad_type)
        if pad is not None:
            kwargs["pad"] = pad
        if kind == "avg":
            return mb.avg_pool(exclude_padding_from_average=exclude, **kwargs)
        return mb.max_pool(**kwargs)

    (out,), _ = run(tmp_path, prog, [X_IMG], expect_op=f"{kind}_pool")
    ref = ref_pool2d(X_IMG, kernel, strides, expected_pads, kind, exclude)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
