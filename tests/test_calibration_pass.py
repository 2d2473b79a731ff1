"""One calibration pass serves every range statistic: the ranges equal those of one pass per statistic."""

from __future__ import annotations

import numpy as np


def _one_statistic(model: bytes, inputs: np.ndarray, statistic: str, mode: str = "CALIBRATION_PROFILER_BASED") -> dict:
    """The quantizer's own calibration with one update rule (what a pass per statistic computed); ``mode``: its
    calibration mode (profiler-based, what :func:`_calibrate_all` uses, or copying every tensor out to Python)."""
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    from vitdeploy.quantization.tflite_calibration import _signature

    key, name = _signature(model)
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    rule = qsv_utils.min_max_update if statistic == "min_max" else qsv_utils.moving_average_update
    calib = calibrator.Calibrator(bytearray(model), num_threads=1, mode=calibrator.CalibrationMode[mode],
                                  qsv_update_func=rule)
    calib.calibrate({key: [{name: x[None].astype(np.float32)} for x in inputs]}, manager)
    return calib.get_model_qsvs()


def test_one_pass_gives_each_statistic_exactly(attention_tflite):
    from vitdeploy.quantization.tflite_calibration import _calibrate_all

    rng = np.random.default_rng(0)
    # Scaled per image so min/max and the moving average really differ (a peak on one image).
    inputs = rng.standard_normal((6, 16, 32)).astype(np.float32) * np.array([1, 1, 9, 1, 1, 2])[:, None, None]
    both = _calibrate_all(attention_tflite, inputs, 1, ("moving_average", "min_max"))
    for statistic in ("moving_average", "min_max"):
        alone = _one_statistic(attention_tflite, inputs, statistic)
        assert set(both[statistic]) == set(alone)
        for tensor, qsv in alone.items():
            assert set(both[statistic][tensor]) == set(qsv), tensor
            np.testing.assert_array_equal(both[statistic][tensor]["min"], qsv["min"], err_msg=tensor)
            np.testing.assert_array_equal(both[statistic][tensor]["max"], qsv["max"], err_msg=tensor)
    differs = [t for t in both["min_max"]
               if not np.array_equal(both["min_max"][t]["max"], both["moving_average"][t]["max"])]
    assert differs, "the two statistics should differ on these inputs"


def test_profiler_ranges_are_the_ranges_of_every_tensor_copied_out(attention_tflite):
    """The runtime's own min/max (XNNPACK running the model) covers the tensors and ranges that copying every
    intermediate tensor out of an undelegated interpreter gives (float arithmetic of another kernel: ~1e-7)."""
    from vitdeploy.quantization.tflite_calibration import _calibrate_all

    inputs = np.random.default_rng(2).standard_normal((4, 16, 32)).astype(np.float32)
    ours = _calibrate_all(attention_tflite, inputs, 1, ("min_max",))["min_max"]
    copied = _one_statistic(attention_tflite, inputs, "min_max", mode="CALIBRATION_PRESERVE_ALL_TENSORS")
    assert set(ours) == set(copied) and len(ours) > 10
    for tensor, qsv in copied.items():
        for end in ("min", "max"):
            np.testing.assert_allclose(np.ravel(ours[tensor][end]), np.ravel(qsv[end]), rtol=1e-5, atol=1e-6,
                                       err_msg=tensor)


def test_activation_samples_do_not_depend_on_the_number_of_threads(attention_tflite, monkeypatch):
    """MSE ranges are chosen on sampled activations; images shared out among interpreters sample the same values."""
    from vitdeploy.quantization import ranges
    from vitdeploy.quantization.ranges import collect_activations
    from vitdeploy.quantization.tflite_calibration import _calibrate_all

    monkeypatch.setattr(ranges, "SAMPLES_PER_IMAGE", 64)  # the tiny model's tensors are sampled, not kept whole
    inputs = np.random.default_rng(3).standard_normal((5, 16, 32)).astype(np.float32) * 4
    names = list(_calibrate_all(attention_tflite, inputs[:1], 1, ("min_max",))["min_max"])
    one, three = (collect_activations(attention_tflite, inputs, names, threads) for threads in (1, 3))
    assert set(one) == set(three) == set(names)
    for name in names:
        np.testing.assert_array_equal(one[name], three[name], err_msg=name)
    assert any(v.size == 5 * (64 + 2) for v in one.values())  # sampled: 64 values and the extremes per image


def test_a_reused_quantizer_writes_the_bytes_a_fresh_one_writes(attention_tflite):
    """Attempts share one parsed Quantizer per float model: each result equals a fresh quantizer's,
    whatever was quantized with it before (``quantize()`` must not change the parsed model)."""
    from ai_edge_quantizer import quantizer

    from vitdeploy.quantization import tflite as q
    from vitdeploy.quantization.tflite_graph import fallback_candidates

    rng = np.random.default_rng(1)
    qsvs = q._calibrate(attention_tflite, rng.standard_normal((4, 16, 32)).astype(np.float32), 1, "min_max")
    groups = fallback_candidates(attention_tflite)
    softmax = [g for name, g in groups.items() if name == "SOFTMAX"]
    assert softmax
    sequence = [([], 8), (softmax, 8), ([], 16), ([], 8), (softmax, 8)]
    reused = [q._static_int8(attention_tflite, qsvs, float_groups, False, bits) for float_groups, bits in sequence]
    q._quantizer_for.cache_clear()
    original = q._quantizer_for
    try:
        q._quantizer_for = lambda model: quantizer.Quantizer(bytearray(model))
        fresh = [q._static_int8(attention_tflite, qsvs, float_groups, False, bits) for float_groups, bits in sequence]
    finally:
        q._quantizer_for = original
    assert reused == fresh
    assert reused[0] == reused[3] and reused[1] == reused[4] and reused[0] != reused[1]
