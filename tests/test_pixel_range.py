"""The pixel-normalizing first op gets its exact int8 range, not the calibration statistic's trimmed one."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeploy.preprocessing import Preprocessing

BGR_0_1 = Preprocessing("BGR", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 16, 16, "bilinear")  # MobileViT's convention
IMAGENET = Preprocessing("RGB", 1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 16, 16, "bicubic")


@pytest.fixture(scope="module", params=[BGR_0_1, IMAGENET], ids=["bgr-0-1", "imagenet"])
def pixel_model(request, tmp_path_factory):
    """(float .tflite bytes of a pixel-input model: 1x1 normalizing conv, PAD, stride-2 conv..., its preprocessing)."""
    torch = pytest.importorskip("torch")
    litert_torch = pytest.importorskip("litert_torch")
    from fuzz_seeds import tiny_torch_model

    from vitdeploy.targets.image_input import pixel_input_module

    path = tmp_path_factory.mktemp("pixels") / "pixels.tflite"
    wrapper = pixel_input_module(tiny_torch_model(), request.param)
    with torch.no_grad():
        litert_torch.convert(wrapper, (torch.rand(1, 16, 16, 3) * 255,)).export(str(path))
    return path.read_bytes(), request.param


def _pixels(n: int = 6) -> np.ndarray:
    """Mid-grey images; one of them has white and black pixels (rare extremes the moving average trims)."""
    rng = np.random.default_rng(0)
    images = rng.integers(60, 200, (n, 16, 16, 3)).astype(np.float32)
    images[-1, :4] = 255.0
    images[-1, -4:] = 0.0
    return images


def test_normalized_pixels_get_their_exact_range(pixel_model):
    from ai_edge_litert.interpreter import Interpreter

    from vitdeploy.quantization.tflite_calibration import _calibrate_all, _exact_ranges_after_input, _set_input_range

    model, pre = pixel_model
    a, b = pre.pixel_affine()
    want = (float(min(b.min(), (255 * a + b).min())), float(max(b.max(), (255 * a + b).max())))
    exact = _exact_ranges_after_input(Interpreter(model_content=model), 0.0, 255.0)
    assert len(exact) == 2, exact  # the normalizing conv's output and the stem's PAD after it
    for lo, hi in exact.values():
        assert (lo, hi) == pytest.approx((min(want[0], 0.0), want[1]), abs=1e-5)

    ranges = _calibrate_all(model, _pixels(), 1, ("moving_average",))["moving_average"]
    trimmed = {t: (float(np.min(ranges[t]["min"])), float(np.max(ranges[t]["max"]))) for t in exact}
    assert all(hi < want[1] - 0.05 * (want[1] - want[0]) for _, hi in trimmed.values()), trimmed  # what was wrong
    _set_input_range(ranges, model, 0.0, 255.0)
    for tensor, (lo, hi) in exact.items():
        assert float(np.min(ranges[tensor]["min"])) == pytest.approx(lo, abs=1e-6)
        assert float(np.max(ranges[tensor]["max"])) == pytest.approx(hi, abs=1e-6)


def test_no_normalizing_conv_no_change(attention_tflite):
    from ai_edge_litert.interpreter import Interpreter

    from vitdeploy.quantization.tflite_calibration import _exact_ranges_after_input

    assert _exact_ranges_after_input(Interpreter(model_content=attention_tflite), -1.0, 1.0) == {}
