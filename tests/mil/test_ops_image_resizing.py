"""MIL interpreter ops of vitdeploy/runtimes/mil/ops/image_resizing.py."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import check_case, ref_bilinear, run, uniform  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)


def _grid_align(n_in, n_out):
    return np.arange(n_out) * (n_in - 1) / (n_out - 1)


def _grid_half_pixel(n_in, n_out):
    return np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)


def _grid_asymmetric(n_in, n_out):
    return np.clip(np.arange(n_out) * n_in / n_out, 0, n_in - 1)


@pytest.mark.parametrize(
    "align_corners,half_pixel,grid_fn",
    [(True, False, _grid_align), (False, True, _grid_half_pixel), (False, False, _grid_asymmetric)],
)
def test_upsample_bilinear(tmp_path, align_corners, half_pixel, grid_fn):
    x = _rand(1, 2, 3, 4)

    def prog(x):
        return mb.upsample_bilinear(
            x=x, scale_factor_height=2.0, scale_factor_width=3.0, align_corners=align_corners, half_pixel_centers=half_pixel
        )

    (out,), _ = run(tmp_path, prog, [x], expect_op="upsample_bilinear")
    np.testing.assert_allclose(out, ref_bilinear(x.astype(np.float64), 6, 12, grid_fn), rtol=1e-5, atol=1e-6)
    if align_corners or half_pixel:  # both also exist in torch
        torch_ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=(6, 12), mode="bilinear", align_corners=align_corners)
        np.testing.assert_allclose(out, torch_ref.numpy(), rtol=1e-5, atol=1e-6)


# Grid points for Xin=2, Xout=5 as printed in the MIL resize_bilinear documentation.
RESIZE_GRIDS = {
    "UNALIGN_CORNERS": [0.0, 0.1, 0.5, 0.9, 1.0],
    "STRICT_ALIGN_CORNERS": [0.0, 0.25, 0.5, 0.75, 1.0],
    "ALIGN_CORNERS": [0.0, 0.25, 0.5, 0.75, 1.0],
    "DEFAULT": [0.0, 0.4, 0.8, 1.0, 1.0],
    "OFFSET_CORNERS": [0.1, 0.3, 0.5, 0.7, 0.9],
}


@pytest.mark.parametrize("mode", sorted(RESIZE_GRIDS))
def test_resize_bilinear_sampling_modes(tmp_path, mode):
    x = np.array([[[[1.0, 3.0], [5.0, 11.0]]]], dtype=np.float32)

    def prog(x):
        return mb.resize_bilinear(x=x, target_size_height=5, target_size_width=5, sampling_mode=mode)

    (out,), _ = run(tmp_path, prog, [x], expect_op="resize_bilinear")
    grid = np.array(RESIZE_GRIDS[mode])
    ref = ref_bilinear(x.astype(np.float64), 5, 5, lambda n_in, n_out: grid)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_upsample_nearest_neighbor(tmp_path):
    x = _rand(1, 2, 3, 4)
    (out,), _ = run(
        tmp_path,
        lambda x: mb.upsample_nearest_neighbor(x=x, scale_factor_height=2, scale_factor_width=3),
        [x],
        expect_op="upsample_nearest_neighbor",
    )
    np.testing.assert_array_equal(out, x.repeat(2, axis=2).repeat(3, axis=3))


X_ACT = _rand(2, 6, 5, 5, low=-5.0, high=5.0)

MORE_ACTIVATION_CASES = [
    (
        "resize_nearest_neighbor",
        lambda x: mb.resize_nearest_neighbor(x=x, target_size_height=10, target_size_width=15),
        lambda x: x.repeat(2, axis=2).repeat(3, axis=3),
    ),
]


@pytest.mark.parametrize("case", MORE_ACTIVATION_CASES, ids=[c[0] for c in MORE_ACTIVATION_CASES])
def test_more_activation_ops(tmp_path, case):
    op_type, fn, ref_fn = case
    check_case(tmp_path, op_type, fn, [X_ACT], ref_fn, atol=1e-5)
