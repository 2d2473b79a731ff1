"""NaN/inf outputs are a finding, not a number: parity, eval, profile and reports say so in words."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.errors import VitdeployError
from vitdeploy.parity import metrics as M


@pytest.fixture(scope="module")
def overflowing(tmp_path_factory):
    """A seeded MobileViT-XXS and a copy whose classifier weights are finite but overflow float32 logits."""
    from vitdeploy.synthetic import seeded_model

    root = tmp_path_factory.mktemp("overflow")
    sd = seeded_model("mobilevit_xxs", seed=1).state_dict()
    torch.save(sd, root / "good.pth")
    # Every weight within checkpoints.MAX_ABS_WEIGHT (a single 3e38 tensor is refused at load): the last
    # conv layers (after the transformer's LayerNorm, nothing renormalizes) scaled to 9e5 compound past float32.
    big = dict(sd)
    for k in ("stages.4.1.conv_proj", "stages.4.1.conv_fusion", "final_conv"):
        for t in (f"{k}.conv.weight", f"{k}.bn.weight"):
            big[t] = sd[t] * (9e5 / sd[t].abs().max())
    torch.save(big, root / "overflow.pth")
    return root / "good.pth", root / "overflow.pth"


def test_compare_finite_measures_only_finite_rows():
    ref = np.arange(12, dtype=np.float64).reshape(3, 4) + 1
    got = ref.copy()
    got[1, 2] = np.inf
    metrics, count = M.compare_finite(ref, got)
    assert count == {"count": 1, "of": 3, "nan": 0}
    assert metrics["n"] == 2 and metrics["cosine_min"] == 1.0 and metrics["max_abs"] == 0.0
    got[:] = np.nan
    metrics, count = M.compare_finite(ref, got)
    assert count == {"count": 3, "of": 3, "nan": 3} and metrics["n"] == 0 and metrics["cosine_min"] is None


def test_parity_names_non_finite_outputs_not_cosine_minus_one(overflowing, tmp_path):
    good, bad = overflowing
    code, out, err = _cli("parity", bad, "--checkpoint", good, "--n-images", 1, "--n-random", 1,
                          "--report", tmp_path / "r")
    assert code == 1, err
    assert "outputs not finite on 1 of 1 natural inputs" in err and "measured -1" not in err + out
    assert "no metric measured" in out and "Traceback" not in err
    report = json.loads((tmp_path / "r" / "report.json").read_text())["data"]
    assert report["nonfinite"]["natural"] == {"count": 1, "of": 1, "nan": report["nonfinite"]["natural"]["nan"]}
    assert report["failures"][0]["metric"] == "outputs_finite"
    assert "outputs not finite on 1 of 1 natural inputs" in (tmp_path / "r" / "report.md").read_text()
    assert "Outputs not finite" in (tmp_path / "r" / "report.html").read_text()


def test_reference_with_non_finite_outputs_is_bad_input(overflowing):
    from vitdeploy.parity import run_parity

    good, bad = overflowing
    with pytest.raises(VitdeployError, match=r"overflow.pth: the checkpoint's own outputs are not finite on 2 of 2"):
        run_parity(good, bad, n_images=2, n_random=0)


def test_nan_weights_are_refused_at_load(overflowing, tmp_path):
    sd = torch.load(overflowing[0])
    sd["stem.conv.weight"] = sd["stem.conv.weight"].clone()
    sd["stem.conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pth")
    code, _, err = _cli("inspect", tmp_path / "nan.pth")
    assert code == 2 and err.strip().count("\n") == 0
    assert "nan.pth: weights not finite (NaN or inf) in 1 tensor(s): stem.conv.weight" in err


def test_eval_counts_non_finite_outputs_as_misses(overflowing, tmp_path):
    from vitdeploy.parity import evaluate
    from vitdeploy.sample_images import write_image_folder

    write_image_folder(tmp_path / "data" / "a", n=2, size=256)
    result = evaluate([str(overflowing[1])], tmp_path / "data")
    (m,) = result.models
    assert m.nonfinite == 2 and m.top1 == 0.0 and m.top5 == 0.0
    assert "outputs not finite on 2 of 2 inputs" in result.table()
    from vitdeploy.reports import render_markdown

    assert "outputs not finite" in render_markdown("eval", result.to_dict(), "t", "now")


def test_profile_reports_non_finite_outputs(overflowing):
    from vitdeploy.profile import profile

    r = profile(overflowing[1], runs=1, warmup=0, threads=1)
    assert r["outputs_finite"] is False and "outputs not finite on 1 of 1" in r["warnings"][0]


def test_reports_render_non_finite_values_everywhere(tmp_path):
    from vitdeploy.reports import write_report

    inf, nan = float("inf"), float("nan")
    metrics = {k: v for k, v in zip(("n", "max_abs", "mean_abs", "rel_l2", "cosine_min", "cosine_mean", "snr_db",
                                     "top1", "top5"), (4, inf, nan, inf, -1.0, nan, -inf, 0.0, 0.0))}
    data = {"passed": False, "precision": "fp16", "metrics": {"natural": metrics, "random": M.unmeasured()},
            "failures": [{"metric": "cosine_min", "inputs": "natural", "measured": nan, "threshold": 0.999,
                          "direction": "min", "miss": inf}],
            "per_image": {"names": ["a", "b"], "cosine": [-1.0, nan], "rel_l2": [inf, nan], "max_abs": [inf, 1.0],
                          "top1_ref": [1, 2], "top1_got": [0, 2], "finite": [False, True]},
            "histogram": {"edges": [], "counts": [], "zeros": 0},
            "nonfinite": {"natural": {"count": 1, "of": 2, "nan": 0}}, "first_nonfinite": "block stages.4.1",
            "localization": {"blocks": [{"block": "stem", "rel_l2": inf, "cosine": nan, "finite": False},
                                        {"block": "head", "rel_l2": None}], "threshold": 0.03,
                             "first_divergent": "stem", "logits": {"rel_l2": inf, "cosine": nan}}}
    paths = write_report(tmp_path, kind="parity", data=data)
    md = paths["md"].read_text()
    assert "outputs not finite on 1 of 2 natural inputs" in md and "block stages.4.1" in md
    assert json.loads(paths["json"].read_text())["data"]["metrics"]["natural"]["max_abs"] == "inf"
    assert "<img" in paths["html"].read_text()
    profile = {"model": "m.tflite", "runs_ms": [1.0, nan, 2.0], "median_ms": nan,
               "parity": [{"config": "gpu", "outputs_finite": False, "error": "outputs not finite on 1 of 1"}]}
    write_report(tmp_path / "p", kind="profile", data=profile)
    write_report(tmp_path / "e", kind="eval", data={"models": [{"model": "m", "top1": nan, "top5": inf, "n": 1}]})


def test_first_nonfinite_names_the_overflowing_layer_of_an_fp16_mlpackage(tmp_path):
    """fp16 compute: a conv whose outputs pass 65504 is the first value that is not finite."""
    ct = pytest.importorskip("coremltools")
    from vitdeploy.parity.localize import first_nonfinite
    from vitdeploy.models import LEVIT

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.big = torch.nn.Conv2d(4, 4, 1)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.big(torch.relu(self.stem(x))).mean(dim=(2, 3)))

    net = Net().eval()
    with torch.no_grad():
        net.big.weight.fill_(6e4)  # representable in fp16 (max 65504); the sums of its products are not
    x = np.random.default_rng(0).standard_normal((3, 8, 8)).astype(np.float32) * 3
    traced = torch.jit.trace(net, torch.from_numpy(x[None]))
    model = ct.convert(traced, inputs=[ct.TensorType(name="pixel_values", shape=(1, 3, 8, 8))],
                       convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)
    model.save(str(tmp_path / "m.mlpackage"))
    where = first_nonfinite(tmp_path / "m.mlpackage", x, LEVIT)
    assert where is not None and "conv" in where, where


def _cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_nonfinite_failure_text():
    from vitdeploy.parity.tolerances import NonFinite

    f = NonFinite.of({"count": 16, "of": 16, "nan": 0}, "natural", "block stages.3.1 (x)")
    assert f.describe().startswith("outputs not finite on 16 of 16 natural inputs (inf; first non-finite value "
                                   "at block stages.3.1 (x)")
    assert f.to_dict()["miss"] == 16 and f.to_dict()["total"] == 16
