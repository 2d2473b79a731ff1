"""Parity gate, tolerances, localization and accuracy evaluation.

Fast tests: metrics against hand computations, tolerance logic, the gate and eval on real
checkpoints (seeded stand-ins; a checkpoint is also a valid "artifact"). Slow tests convert real
.tflite files (litert-torch), shared per module: a good fp32 LeViT, one with its input channels
swapped (BGR/RGB), one with a corrupted weight in ``stages.2``, a corrupted MobileViT, and a
tiny fp16 model for preset detection.
"""

from __future__ import annotations

import copy
import importlib.util
import math

import numpy as np
import pytest

from vitdeploy.errors import CheckFailed, VitdeployError
from vitdeploy.parity import metrics as M
from vitdeploy.parity.tolerances import Failure, check, parse_overrides, resolve

# ----------------------------------------------------------------------------- metrics (hand computed)

REF = np.array([[1.0, 2.0, 3.0, 0.0, -1.0, 0.5],
                [0.0, 0.0, 1.0, 4.0, 2.0, 3.0]])
GOT = np.array([[1.0, 2.0, 2.0, 0.0, -1.0, 0.5],   # error -1 at index 2: top-1 moves from 2 to 1
                [0.0, 0.0, 1.0, 4.0, 2.0, 3.5]])   # error +0.5 at index 5


def test_abs_errors_by_hand():
    assert M.max_abs_error(REF, GOT) == 1.0
    assert M.mean_abs_error(REF, GOT) == pytest.approx(1.5 / 12)


def test_rel_l2_and_snr_by_hand():
    ref_norm = math.sqrt(1 + 4 + 9 + 0 + 1 + 0.25 + 0 + 0 + 1 + 16 + 4 + 9)
    err_norm = math.sqrt(1 + 0.25)
    assert M.rel_l2(REF, GOT) == pytest.approx(err_norm / ref_norm)
    assert M.snr_db(REF, GOT) == pytest.approx(10 * math.log10(ref_norm ** 2 / err_norm ** 2))
    assert M.snr_db(REF, REF) == math.inf
    per = M.rel_l2_per_sample(REF, GOT)
    assert per[0] == pytest.approx(1 / math.sqrt(15.25))
    assert per[1] == pytest.approx(0.5 / math.sqrt(30))


def test_cosine_by_hand():
    cos = M.cosine_per_sample(REF, GOT)
    dot0 = 1 + 4 + 6 + 0 + 1 + 0.25
    assert cos[0] == pytest.approx(dot0 / (math.sqrt(15.25) * math.sqrt(1 + 4 + 4 + 1 + 0.25)))
    dot1 = 1 + 16 + 4 + 10.5
    assert cos[1] == pytest.approx(dot1 / (math.sqrt(30) * math.sqrt(1 + 16 + 4 + 12.25)))
    summary = M.compare(REF, GOT)
    assert summary["cosine_min"] == pytest.approx(cos.min())
    assert summary["cosine_mean"] == pytest.approx(cos.mean())


def test_cosine_edge_cases():
    zeros = np.zeros((1, 4))
    assert M.cosine_per_sample(zeros, zeros)[0] == 1.0
    assert M.cosine_per_sample(zeros, np.ones((1, 4)))[0] == 0.0
    assert M.cosine_per_sample(np.ones((1, 4)), -np.ones((1, 4)))[0] == pytest.approx(-1.0)
    nan = np.array([[1.0, np.nan, 0.0, 0.0]])
    assert M.cosine_per_sample(np.ones((1, 4)), nan)[0] == -1.0  # NaN output is a total miss
    assert M.max_abs_error(np.ones((1, 4)), nan) == math.inf
    assert M.rel_l2(np.ones((1, 4)), nan) == math.inf


def test_topk_agreement_by_hand():
    assert M.top1_agreement(REF, GOT) == 0.5  # sample 0: argmax 2 -> 1; sample 1: 3 -> 3
    # top-5 of 6: sample 0 ref {2,1,0,5,3} got {1,2,0,5,3} -> 5/5; sample 1 ref {3,5,4,2,0} got {3,5,4,2,0}
    assert M.top5_agreement(REF, GOT) == 1.0
    ref = np.arange(10, dtype=float)[None]  # top-5 = 9,8,7,6,5
    got = ref.copy()
    got[0, 5] = -1  # class 5 leaves the top 5, class 4 enters
    assert M.top5_agreement(ref, got) == pytest.approx(0.8)
    assert M.top5_agreement(ref[:, :3], got[:, :3]) == 1.0  # fewer classes than k


def test_shape_mismatch_and_empty_are_errors():
    with pytest.raises(VitdeployError, match="shape"):
        M.compare(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(VitdeployError):
        M.compare(np.zeros((0, 3)), np.zeros((0, 3)))


def test_error_histogram_counts_every_nonzero_error():
    h = M.error_histogram(REF, GOT, bins=5)
    assert h["zeros"] == 10 and sum(h["counts"]) == 2
    assert h["edges"][0] == pytest.approx(0.5) and h["edges"][-1] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- tolerances


def test_presets_are_ordered_strict_to_loose():
    fp32, fp16, int8 = resolve("fp32"), resolve("fp16"), resolve("int8")
    assert fp32["cosine_min"] > fp16["cosine_min"] > int8["cosine_min"]
    assert fp32["rel_l2_max"] < fp16["rel_l2_max"] < int8["rel_l2_max"]
    assert fp32["top1_min"] == 1.0 > fp16["top1_min"] > int8["top1_min"]
    assert fp32["random_cosine_min"] is None  # random tensors are reported, not gated


def test_overrides_and_validation():
    tol = resolve("fp16", {"cosine_min": 0.995, "top1_min": None})
    assert tol["cosine_min"] == 0.995 and tol["top1_min"] is None
    with pytest.raises(VitdeployError, match="unknown tolerance 'cosine'"):
        resolve("fp32", {"cosine": 0.9})
    with pytest.raises(VitdeployError, match="must be a number"):
        resolve("fp32", {"cosine_min": "high"})
    with pytest.raises(VitdeployError, match="unknown precision"):
        resolve("bf16")
    assert parse_overrides(["cosine_min=0.995", "top1-min=none"]) == {"cosine_min": 0.995, "top1_min": None}
    with pytest.raises(VitdeployError, match="KEY=VALUE"):
        parse_overrides(["cosine_min"])


def test_check_names_metric_threshold_and_miss():
    measured = {"natural": M.compare(REF, GOT), "random": None}
    failures = check(measured, resolve("int8"))
    by_key = {f.metric: f for f in failures}
    assert set(by_key) == {"cosine_min", "rel_l2_max", "top1_min"}  # top-5 agrees fully
    top1 = by_key["top1_min"]
    assert (top1.measured, top1.threshold, top1.direction) == (0.5, 0.9, "min")
    assert top1.miss == pytest.approx(0.4)
    assert "top1_min" in top1.describe() and "0.5" in top1.describe() and "0.9" in top1.describe()
    assert check(measured, resolve("int8", {"cosine_min": None, "rel_l2_max": 1, "top1_min": 0.5})) == []
    # A random_* tolerance gates the random set only when given.
    measured["random"] = M.compare(REF, GOT)
    assert [f.metric for f in check(measured, resolve("fp32", {k: None for k in resolve("fp32")} |
                                                            {"random_rel_l2_max": 0.01}))] == ["random_rel_l2_max"]
    assert Failure("rel_l2_max", "natural", math.inf, 1e-3, "max").miss == math.inf


# ----------------------------------------------------------------------------- gate and eval on checkpoints


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """A seeded (discriminative) LeViT, a perturbed copy of it, and an untrained MobileViT (shape checks)."""
    import torch
    from safetensors.torch import load_file, save_file

    from vitdeploy.models import create_model
    from vitdeploy.synthetic import write_seeded_checkpoint

    root = tmp_path_factory.mktemp("ckpts")
    a = write_seeded_checkpoint("levit_128s", root / "levit_a.safetensors", seed=0)
    g = torch.Generator().manual_seed(0)
    sd = {k: (v + 0.05 * v.std() * torch.randn(v.shape, generator=g) if v.is_floating_point() and v.numel() > 1
              else v).contiguous() for k, v in load_file(str(a)).items()}
    # A perturbed variance can go negative: NaN logits, which parity reports as a non-finite finding, not as
    # the metric misses this "another model" is for.
    sd = {k: v.abs() if k.endswith("running_var") else v for k, v in sd.items()}
    save_file(sd, str(root / "levit_b.safetensors"))
    mvit = {k: v.contiguous() for k, v in create_model("mobilevit_xxs").state_dict().items()}
    save_file(mvit, str(root / "mvit_untrained.safetensors"))
    return {"a": a, "b": root / "levit_b.safetensors", "m": root / "mvit_untrained.safetensors"}


@pytest.fixture(scope="module")
def mvit_seeded(tmp_path_factory):
    from vitdeploy.synthetic import write_seeded_checkpoint

    return write_seeded_checkpoint("mobilevit_xxs", tmp_path_factory.mktemp("mvit") / "mvit.safetensors", seed=0)


def test_gate_passes_a_checkpoint_against_itself(ckpts):
    from vitdeploy.parity import run_parity

    r = run_parity(ckpts["a"], ckpts["a"], n_images=4, n_random=1)
    assert r.passed and r.failures == [] and r.precision == "fp32"
    assert r.natural["max_abs"] == 0.0 and r.natural["top1"] == 1.0
    d = r.to_dict()
    assert d["passed"] and d["inputs"]["natural"]["count"] == 4 and d["inputs"]["random"]["count"] == 1
    # A cosine of identical float32 logits is 1 up to float64 rounding of dot / (|a| |b|) (0.9999999999999999
    # with ATen forced to AVX2, issue 31): a few ulps, never a real difference.
    assert d["metrics"]["random"]["cosine_min"] == pytest.approx(1.0, rel=0, abs=1e-12)
    assert r.inputs["natural"]["distinct_top1"] >= 3  # the stand-in discriminates between images
    r.raise_if_failed()


def test_gate_fails_another_model_naming_the_metrics(ckpts):
    from vitdeploy.parity import run_parity

    r = run_parity(ckpts["b"], ckpts["a"], n_images=3, n_random=0, tolerances={"top5_min": None})
    assert not r.passed
    names = {f.metric for f in r.failures}
    assert {"cosine_min", "rel_l2_max"} <= names and "top5_min" not in names
    cos = next(f for f in r.failures if f.metric == "cosine_min")
    assert cos.threshold == 0.99999 and cos.measured < 0.99999 and cos.miss > 0
    assert r.random is None
    with pytest.raises(CheckFailed, match="cosine_min"):
        r.raise_if_failed()
    assert "FAIL cosine_min" in r.summary()


def test_gate_uses_a_user_image_dir(ckpts, tmp_path):
    from vitdeploy.parity import run_parity
    from vitdeploy.sample_images import write_image_folder

    write_image_folder(tmp_path / "imgs", n=2, size=240)
    r = run_parity(ckpts["a"], ckpts["a"], images_dir=tmp_path / "imgs", n_random=0)
    assert r.inputs["natural"]["count"] == 2 and r.inputs["natural"]["source"] == str(tmp_path / "imgs")


def test_gate_bad_input(ckpts, tmp_path):
    from vitdeploy.parity import run_parity

    with pytest.raises(VitdeployError, match="no such file"):
        run_parity(tmp_path / "missing.tflite", ckpts["a"])
    with pytest.raises(VitdeployError, match="not converted from this checkpoint"):
        run_parity(ckpts["m"], ckpts["a"], n_images=2)  # 256x256 MobileViT vs 224x224 LeViT
    with pytest.raises(VitdeployError, match="not an artifact|reference must be"):
        (tmp_path / "x.tflite").write_bytes(b"")
        run_parity(ckpts["a"], tmp_path / "x.tflite")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VitdeployError, match="no images"):
        run_parity(ckpts["a"], ckpts["a"], images_dir=tmp_path / "empty")
    with pytest.raises(VitdeployError, match="unknown tolerance"):
        run_parity(ckpts["a"], ckpts["a"], tolerances={"cos": 1})


def _labelled_folder(root, ckpt_path, n=6):
    """An ImageFolder whose class of each image is checkpoint ``ckpt_path``'s own top-1 prediction."""
    from vitdeploy.preprocessing import load_images
    from vitdeploy.runtimes.open import open_runner
    from vitdeploy.sample_images import write_image_folder

    files = write_image_folder(root / "unsorted", n=n, size=256, seed=3)
    runner = open_runner(ckpt_path)
    pred = runner.predict_nchw(load_images(files, runner.preprocessing)).argmax(1)
    for f, c in zip(files, pred):
        (root / f"class_{c}").mkdir(exist_ok=True)
        f.rename(root / f"class_{c}" / f.name)
    (root / "unsorted").rmdir()
    (root / "labels.txt").write_text("\n".join(f"class_{i}" for i in range(1000)) + "\n")
    return pred


def test_eval_top1_on_checkpoints(ckpts, tmp_path):
    from vitdeploy.parity import evaluate

    pred = _labelled_folder(tmp_path / "data", ckpts["a"])
    assert len(set(pred.tolist())) >= 3  # several classes, so agreement is not trivial
    result = evaluate([ckpts["a"], ckpts["m"]], tmp_path / "data", batch_size=4)
    a, m = result.models
    assert a.top1 == 1.0 and a.top5 == 1.0 and a.n == 6 and a.correct1 == 6
    assert m.top1 < 1.0  # an untrained MobileViT (its own 256 px input) does not reproduce a's labels
    assert m.top5 >= m.top1
    table = result.table()
    assert "100.00%" in table and str(ckpts["m"]) in table
    d = result.to_dict()
    assert d["kind"] == "eval" and d["dataset"]["images"] == 6 and d["dataset"]["labels_file"]


def test_eval_class_index_from_sorted_folders(tmp_path):
    from PIL import Image

    from vitdeploy.parity.evaluate import read_image_folder

    for name in ("zebra", "ant", "moth"):
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "a.jpg")
    data = read_image_folder(tmp_path)
    assert data.class_index == {"ant": 0, "moth": 1, "zebra": 2}
    assert list(data.targets) == [0, 1, 2]
    (tmp_path / "labels.txt").write_text("moth\nzebra\n")
    with pytest.raises(VitdeployError, match="not listed: ant"):
        read_image_folder(tmp_path)
    (tmp_path / "labels.txt").write_text("bee\nmoth\nzebra\nant\n")
    assert read_image_folder(tmp_path).class_index == {"ant": 3, "moth": 1, "zebra": 2}
    with pytest.raises(VitdeployError, match="no class subfolders"):
        read_image_folder(tmp_path / "ant")


# ----------------------------------------------------------------------------- localization helpers


def test_scope_names_map_to_blocks():
    from vitdeploy.models import create_model
    from vitdeploy.parity.localize import _name_blocks, block_names

    model = create_model("levit_128s")
    blocks = block_names(model)
    assert blocks[:3] == ["stem", "stages.0.blocks.0", "stages.0.blocks.1"] and "stages.0.downsample" not in blocks
    assert "stages.2.downsample" in blocks and blocks[-1] == "stages.2.blocks.3"
    known = {n for n, _ in model.named_modules() if n}
    wrapper = ("vitdeploy.targets.image_input.pixel_input_module.<locals>.PixelInput/vitdeploy.targets.image_input."
               "logits_module.<locals>.Logits_model/vitdeploy.models.levit.Levit_inner/")
    names = [
        wrapper + "vitdeploy.models.levit.Stem16_stem/vitdeploy.models.layers.ConvNorm_conv4/"
                  "torch.nn.modules.conv.Conv2d_linear;3",
        wrapper + "torch.nn.modules.container.Sequential_stages/vitdeploy.models.levit.LevitStage_2/"
                  "torch.nn.modules.container.Sequential_blocks/vitdeploy.models.levit.LevitBlock_1;;" + wrapper
                  + "torch.nn.modules.container.Sequential_stages/vitdeploy.models.levit.LevitStage_2/x",
        wrapper + "torch.nn.modules.container.Sequential_stages/vitdeploy.models.levit.LevitStage_1/"
                  "vitdeploy.models.levit.LevitDownsample_downsample/vitdeploy.models.levit."
                  "AttentionDownsample_attn_downsample",
        "stages_2_blocks_1_attn_qkv",  # flat MIL-style name
        "var_123",
    ]
    assert _name_blocks(names, blocks, known) == ["stem", "stages.2.blocks.1", "stages.1.downsample",
                                                  "stages.2.blocks.1", None]
    mvit = create_model("mobilevit_xxs")
    mb = block_names(mvit)
    assert mb[0] == "stem" and "stages.2.1" in mb and mb[-1] == "final_conv"


def test_layout_search_undoes_nhwc_and_token_transpose():
    from vitdeploy.parity.localize import _best_layout

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2, 4, 3, 5)).astype(np.float32)  # (N, C, H, W)
    nhwc = ref.transpose(0, 2, 3, 1).reshape(2, -1)
    layout, value, cos = _best_layout(nhwc, ref)
    assert layout == "NHWC" and cos == pytest.approx(1.0) and np.array_equal(value, ref.reshape(2, -1))
    tokens = rng.normal(size=(2, 6, 4)).astype(np.float32)  # (N, tokens, C)
    layout, value, cos = _best_layout(tokens.transpose(0, 2, 1).reshape(2, -1), tokens)
    assert layout == "transposed" and cos == pytest.approx(1.0)


# ----------------------------------------------------------------------------- converted artifacts (slow)


def _convert(ckpt_path, out, edit=None, quantize="none"):
    """Convert a checkpoint to .tflite the way `vitdeploy convert` does, after ``edit(model)``."""
    from vitdeploy import checkpoints
    from vitdeploy.passes import fold_batchnorm
    from vitdeploy.targets.tflite import convert_tflite

    ckpt = checkpoints.load(ckpt_path)
    model = copy.deepcopy(ckpt.model)
    fold_batchnorm(model)
    if edit is not None:
        model = edit(model)
    convert_tflite(model.eval(), input_size=ckpt.input_size, preprocessing=ckpt.preprocessing, out=out,
                   quantize=quantize)
    return out


def _scale(param_name, factor):
    def edit(model):
        import torch

        with torch.no_grad():
            dict(model.named_parameters())[param_name].mul_(factor)
        return model
    return edit


def _swap_channels(model):
    import torch

    class Swapped(torch.nn.Module):  # what a converter that forgot the BGR<->RGB flip produces
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner(x.flip(1))

    return Swapped().eval()


LEVIT_CORRUPT = "stages.2.blocks.1"
MVIT_CORRUPT = "stages.2.1"


@pytest.fixture(scope="module")
def tfl(ckpts, tmp_path_factory, request):
    pytest.importorskip("litert_torch", reason="TFLite conversion needs litert-torch")
    root = tmp_path_factory.mktemp("tflite")
    return {
        "good": _convert(ckpts["a"], root / "levit_fp32.tflite"),
        "swapped": _convert(ckpts["a"], root / "levit_bgr.tflite", _swap_channels),
        "corrupt": _convert(ckpts["a"], root / "levit_bad.tflite",
                            _scale(f"{LEVIT_CORRUPT}.attn.qkv.linear.weight", 1.5)),
        "mvit_corrupt": _convert(request.getfixturevalue("mvit_seeded"), root / "mvit_bad.tflite",
                                 _scale(f"{MVIT_CORRUPT}.conv_kxk.conv.weight", 1.5)),
    }


@pytest.mark.slow
def test_parity_passes_a_good_fp32_tflite(tfl, ckpts):
    from vitdeploy.parity import run_parity

    r = run_parity(tfl["good"], ckpts["a"], n_images=12)
    assert r.precision == "fp32" and "quantize=none" in r.precision_source
    assert r.passed, r.summary()
    assert r.natural["cosine_min"] > 0.99999 and r.natural["rel_l2"] < 1e-3
    assert r.random is not None and r.random["cosine_min"] > 0.9999


@pytest.mark.slow
def test_parity_fails_a_bgr_rgb_swap_naming_the_metric(tfl, ckpts):
    from vitdeploy.parity import run_parity

    r = run_parity(tfl["swapped"], ckpts["a"], n_images=12)
    assert not r.passed
    failed = {f.metric: f for f in r.failures}
    assert "cosine_min" in failed and "rel_l2_max" in failed
    assert failed["rel_l2_max"].measured > 10 * failed["rel_l2_max"].threshold
    assert "cosine_min" in r.summary()


@pytest.mark.slow
def test_parity_fails_a_corrupted_weight(tfl, ckpts):
    from vitdeploy.parity import run_parity

    r = run_parity(tfl["corrupt"], ckpts["a"], n_images=12)
    assert not r.passed and "cosine_min" in {f.metric for f in r.failures}
    # The same artifact passes once the gate is told to accept that much error: the thresholds decide.
    loose = {"cosine_min": 0.0, "rel_l2_max": 10.0, "top1_min": 0.0, "top5_min": 0.0}
    assert run_parity(tfl["corrupt"], ckpts["a"], n_images=4, n_random=0, tolerances=loose).passed


@pytest.mark.slow
def test_localize_a_good_artifact_finds_nothing(tfl, ckpts):
    from vitdeploy.parity import localize

    r = localize(tfl["good"], ckpts["a"], n_images=2)
    assert r.first_divergent is None
    assert r.mapping == {"by_name": 12, "by_shape": 0, "unmatched": 0}  # litert-torch keeps module paths
    assert max(b["rel_l2"] for b in r.blocks) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("by", ["auto", "shapes"])
def test_localize_points_at_the_corrupted_levit_block(tfl, ckpts, by):
    from vitdeploy.parity import localize

    r = localize(tfl["corrupt"], ckpts["a"], n_images=3, by=by)
    assert r.first_divergent == LEVIT_CORRUPT, r.table()
    assert r.jumps[0]["block"] == LEVIT_CORRUPT
    rows = {b["block"]: b for b in r.blocks}
    assert rows["stages.2.blocks.0"]["rel_l2"] < 1e-5 < rows[LEVIT_CORRUPT]["rel_l2"]
    assert "diverges here" in r.table()


@pytest.mark.slow
def test_localize_points_at_the_corrupted_mobilevit_block(tfl, mvit_seeded):
    from vitdeploy.parity import localize

    r = localize(tfl["mvit_corrupt"], mvit_seeded, n_images=2)
    assert r.mapping["by_name"] == len(r.blocks)
    assert r.first_divergent == MVIT_CORRUPT, r.table()
    assert r.jumps[0]["block"] == MVIT_CORRUPT
    # The first conv of the block is the corrupted one; the NHWC layout of TFLite was undone.
    assert {b["layout"] for b in r.blocks} <= {"same", "NHWC"}


@pytest.mark.slow
def test_fp16_artifact_gets_the_fp16_preset(tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite conversion needs litert-torch")
    import torch

    from vitdeploy.parity import artifact_precision
    from vitdeploy.models import LEVIT
    from vitdeploy.targets.tflite import convert_tflite

    torch.manual_seed(0)
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
    out = convert_tflite(tiny, input_size=(3, 32, 32), preprocessing=LEVIT, out=tmp_path / "t.tflite",
                         quantize="fp16").path
    assert artifact_precision(out) == ("fp16", "vitdeploy metadata (quantize=fp16)")


@pytest.mark.slow
def test_coreml_localization(ckpts, tmp_path):
    if importlib.util.find_spec("vitdeploy.targets.coreml") is None:
        pytest.skip("vitdeploy.targets.coreml (Core ML conversion) does not exist yet")
    pytest.importorskip("coremltools", reason="Core ML conversion needs coremltools")
    from vitdeploy import checkpoints
    from vitdeploy.parity import artifact_precision, localize, run_parity
    from vitdeploy.targets.coreml import convert_coreml

    ckpt = checkpoints.load(ckpts["a"])
    model = _scale(f"{LEVIT_CORRUPT}.attn.qkv.linear.weight", 1.5)(fold_batchnorm_copy(ckpt.model))
    out = tmp_path / "bad.mlpackage"
    convert_coreml(model, variant=ckpt.variant, input_size=ckpt.input_size, preprocessing=ckpt.preprocessing,
                   out=out, precision="fp32", count_before=False)
    assert artifact_precision(out)[0] == "fp32"
    r = localize(out, ckpts["a"], n_images=2)
    assert r.first_divergent == LEVIT_CORRUPT, r.table()
    if importlib.util.find_spec("vitdeploy.runtimes.coreml") is not None:  # the Core ML runner (in progress)
        assert not run_parity(out, ckpts["a"], n_images=4, n_random=0).passed


def fold_batchnorm_copy(model):
    from vitdeploy.passes import fold_batchnorm

    model = copy.deepcopy(model)
    fold_batchnorm(model)
    return model
