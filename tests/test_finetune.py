"""Quantization-aware fine-tuning for int8 (vitdeploy.quantization.finetune)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from vitdeploy.quantization.finetune import (  # noqa: E402
    Int8Simulation, fake_quant_tensor, fake_quant_weight, finetune_for_int8)


def outlier_net(seed: int = 0):
    """Conv -> SiLU -> conv -> SiLU -> linear with one pre-activation channel 100x the others:
    the MobileViT situation in miniature, where per-tensor int8 starves the small channels."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                          nn.SiLU(), nn.Flatten(), nn.Linear(128, 6)).eval()
    with torch.no_grad():
        model[0].weight[0] *= 100.0
        model[0].bias[0] *= 100.0
        model[2].weight[:, 0] /= 100.0  # the big channel contributes like the others downstream
    return model


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 8, 8)).astype(np.float32)


def test_fake_quant_tensor_is_a_256_level_grid_with_exact_zero_and_clipping():
    x = torch.linspace(-3.0, 9.0, 2001, requires_grad=True)
    lo, hi = torch.tensor(-2.0), torch.tensor(8.0)
    q = fake_quant_tensor(x, lo, hi)
    values = torch.unique(q.detach())
    assert len(values) <= 256 and 0.0 in values.tolist()
    assert float(values.min()) >= -2.0 - 1e-6 and float(values.max()) <= 8.0 + 1e-6
    steps = torch.diff(values)
    assert torch.allclose(steps, torch.full_like(steps, 10.0 / 255.0), atol=1e-5)
    q.sum().backward()  # straight through inside the range, nothing outside it
    inside = (x.detach() >= -2.0) & (x.detach() <= 8.0)
    assert torch.all(x.grad[inside] == 1.0) and torch.all(x.grad[~inside] == 0.0)


def test_fake_quant_weight_is_symmetric_per_output_channel():
    w = torch.randn(4, 3, 3, 3) * torch.tensor([1.0, 10.0, 100.0, 0.01])[:, None, None, None]
    q = fake_quant_weight(w)
    for c in range(4):
        scale = w[c].abs().max() / 127.0
        levels = q[c] / scale
        assert torch.allclose(levels, levels.round(), atol=1e-3)
        assert float(levels.abs().max()) == pytest.approx(127.0, abs=1e-3)
        assert float((q[c] - w[c]).abs().max()) <= float(scale) / 2 + 1e-6


def test_simulation_changes_outputs_and_detach_restores_the_plain_model():
    model = outlier_net()
    x = torch.from_numpy(images(8, seed=1))
    with torch.no_grad():
        before = model(x)
        sim = Int8Simulation(model)
        simulated = model(x)
        restored = sim.detach()
        after = restored(x)
    assert restored is model
    assert not torch.allclose(simulated, before, atol=1e-4)  # int8 noise is really simulated
    assert torch.equal(after, before)  # no hook or parametrization left behind
    assert all(type(p) is nn.Parameter for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_finetuning_reduces_the_simulated_int8_error_and_leaves_the_input_model_alone():
    model = outlier_net()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    threads, rng_state = torch.get_num_threads(), torch.get_rng_state()
    tuned, report = finetune_for_int8(model, images(64, seed=2), eval_images=images(32, seed=3), steps=80, lr=1e-3,
                                      threads=1)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in original.items())
    assert tuned is not model
    # No global torch state leaks to the caller (a thread count changed here once broke a later test).
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng_state)
    assert report["loss_last10"] < 0.7 * report["loss_first10"]
    before, after = report["sim_before"], report["sim_after"]
    assert before["cosine_mean"] < 0.9  # the starved channels really cost accuracy
    assert after["cosine_mean"] > before["cosine_mean"] + 0.04, report
    with torch.no_grad():  # the tuned float model moved, but stays near the original
        x = torch.from_numpy(images(16, seed=4))
        cos = torch.nn.functional.cosine_similarity(tuned(x), model(x), dim=1)
    assert 0.9 < float(cos.mean()) < 1.0 - 1e-6


def test_finetune_rejects_zero_steps():
    with pytest.raises(ValueError, match="steps"):
        finetune_for_int8(outlier_net(), images(4, seed=0), steps=0)


def test_missed_int8_target_warning_suggests_finetuning_only_when_not_done():
    from vitdeploy.quantization.tflite import missed_target_warning

    plain = missed_target_warning(0.8123, 0.99, ["SOFTMAX"], finetuned=False)
    tuned = missed_target_warning(0.8123, 0.99, [], finetuned=True)
    assert "0.8123 is below 0.99" in plain and "SOFTMAX" in plain and "--int8-finetune" in plain
    assert "--int8-finetune" not in tuned and "none helped" in tuned and "dynamic or fp16" in tuned
    assert "\n" not in plain


def test_int8_search_scores_non_finite_logits_as_the_worst_and_counts_them():
    import numpy as np

    from vitdeploy.similarity import logits_agreement

    ref = np.random.default_rng(0).normal(size=(4, 10))
    bad = ref.copy()
    bad[2, 3] = np.inf
    bad[3, :] = np.nan
    score = logits_agreement(bad, ref)
    assert score["nonfinite_images"] == 2 and score["cosine_min"] == -1.0 and score["top1_agreement"] == 0.5
    assert "nonfinite_images" not in logits_agreement(ref, ref)


def test_learned_ranges_move_and_are_reported():
    """LSQ-style range learning: the ranges get gradients (they leave the observed ones) and the
    report says by how much; without it they stay tracked, not learned."""
    x = images(12, seed=1)
    _, learned = finetune_for_int8(outlier_net(), x[:8], steps=6, eval_images=x[8:], learn_ranges=True)
    factors = learned["range_factors"]
    assert learned["learn_ranges"] and (factors["min"] < 1.0 or factors["max"] > 1.0), factors
    _, tracked = finetune_for_int8(outlier_net(), x[:8], steps=2, eval_images=x[8:])
    assert not tracked["learn_ranges"] and "range_factors" not in tracked
