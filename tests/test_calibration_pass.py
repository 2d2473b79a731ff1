"""One calibration pass serves every range statistic: the ranges equal those of one pass per statistic."""

from __future__ import annotations

import numpy as np


def _one_statistic(model: bytes, inputs: np.ndarray, statistic: str) -> dict:
    """The quantizer's own calibration with one update rule (what a pass per statistic computed)."""
    from ai_edge_quantizer import calibrator, recipe, recipe_manager
    from ai_edge_quantizer.utils import qsv_utils

    from vitdeploy.quantization.tflite_calibration import _signature

    key, name = _signature(model)
    manager = recipe_manager.RecipeManager()
    manager.load_quantization_recipe(recipe.static_wi8_ai8())
    rule = qsv_utils.min_max_update if statistic == "min_max" else qsv_utils.moving_average_update
    calib = calibrator.Calibrator(bytearray(model), num_threads=1, qsv_update_func=rule)
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
