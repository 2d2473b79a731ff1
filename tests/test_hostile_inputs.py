"""Hostile inputs from the security review (issue 28): unbounded work from small files, silently wrong numbers,
and bad input that used to exit 3. Each is refused in one line (exit 2) before any conversion starts, or, for
16-bit/float images, read by value instead of truncated."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fuzz_seeds import deadline
import torch
from click.testing import CliRunner
from PIL import Image

from vitdeploy.cli import main
from vitdeploy.errors import CheckpointError, VitdeployError
from vitdeploy.models import LEVIT
from vitdeploy.preprocessing import Preprocessing, PreprocessingError, load_image_rgb


def cli(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stderr


def assert_refused(code: int, stderr: str, *needles: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("INFO: ")]
    assert code == 2 and "Traceback" not in stderr, (code, stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], lines[0]





@pytest.fixture(scope="module")
def state_dict():
    from vitdeploy.synthetic import seeded_model

    return seeded_model("mobilevit_xxs", seed=0).state_dict()


def saved(tmp_path: Path, sd: dict, **changes) -> Path:
    path = tmp_path / "ckpt.pth"
    torch.save({**sd, **changes}, path)
    return path


# ----------------------------------------------------------------------------- checkpoints: numeric sanity


def test_negative_batchnorm_variance_is_refused_by_name(state_dict, tmp_path):
    var = state_dict["final_conv.bn.running_var"].clone()
    var[3] = -0.5
    code, err = cli("inspect", saved(tmp_path, state_dict, **{"final_conv.bn.running_var": var}))
    assert_refused(code, err, "final_conv.bn.running_var", "negative variance")


def test_absurd_weight_magnitude_is_refused_by_name(state_dict, tmp_path):
    w = state_dict["stem.conv.weight"]
    code, err = cli("inspect", saved(tmp_path, state_dict, **{"stem.conv.weight": w * 1e8}))
    assert_refused(code, err, "stem.conv.weight", "above 1e+06")


def test_absurd_running_var_is_refused(state_dict, tmp_path):
    var = state_dict["stem.bn.running_var"] * 0 + 1e14
    code, err = cli("inspect", saved(tmp_path, state_dict, **{"stem.bn.running_var": var}))
    assert_refused(code, err, "stem.bn.running_var")


def test_zero_class_checkpoint_is_refused(state_dict, tmp_path):
    path = saved(tmp_path, state_dict, **{"head.fc.weight": state_dict["head.fc.weight"][:0],
                                          "head.fc.bias": state_dict["head.fc.bias"][:0]})
    code, err = cli("inspect", path)
    assert_refused(code, err, "zero classes")


def test_negative_num_batches_tracked_is_refused(state_dict, tmp_path):
    code, err = cli("inspect", saved(tmp_path, state_dict, **{"stem.bn.num_batches_tracked": torch.tensor(-3)}))
    assert_refused(code, err, "stem.bn.num_batches_tracked", "negative")


@pytest.mark.parametrize("kind", ["sparse", "meta", "nested"])
def test_sparse_meta_and_nested_tensors_are_refused(state_dict, tmp_path, kind):
    w = state_dict["head.fc.weight"]
    bad = {"sparse": lambda: w.to_sparse(), "meta": lambda: torch.empty_like(w, device="meta"),
           "nested": lambda: torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])}[kind]()
    code, err = cli("inspect", saved(tmp_path, state_dict, **{"head.fc.weight": bad}))
    assert_refused(code, err, "head.fc.weight", kind)


def test_fold_refuses_negative_variance_built_in_memory():
    from vitdeploy.passes.fold_bn import fold_conv_bn
    from vitdeploy.synthetic import seeded_model

    model = seeded_model("mobilevit_xxs", seed=0)
    model.final_conv.bn.running_var[0] = -1.0
    with pytest.raises(VitdeployError, match="running_var"):
        fold_conv_bn(model)


# ----------------------------------------------------------------------------- side files: bounded, regular only


def _hf_dir(tmp_path: Path, state_dict) -> Path:
    hf = tmp_path / "hf"
    hf.mkdir()
    torch.save(state_dict, hf / "pytorch_model.bin")
    return hf


def test_hf_config_json_fifo_does_not_hang(state_dict, tmp_path):
    hf = _hf_dir(tmp_path, state_dict)
    os.mkfifo(hf / "config.json")
    with deadline(20):
        code, err = cli("inspect", hf)
    assert_refused(code, err, "config.json", "not a regular file")


def test_hf_config_json_linked_to_dev_zero_is_refused(state_dict, tmp_path):
    hf = _hf_dir(tmp_path, state_dict)
    os.symlink("/dev/zero", hf / "config.json")
    with deadline(20):
        code, err = cli("inspect", hf)
    assert_refused(code, err, "config.json", "not a regular file")


def test_hf_config_json_over_the_size_cap_is_refused(state_dict, tmp_path):
    from vitdeploy.untrusted import CONFIG_LIMIT

    hf = _hf_dir(tmp_path, state_dict)
    with open(hf / "config.json", "wb") as f:
        f.write(b'{"pad": "')
        f.truncate(CONFIG_LIMIT + 10)  # sparse: no disk used
    code, err = cli("inspect", hf)
    assert_refused(code, err, "config.json", "MiB")


def test_labels_file_over_the_cap_or_a_fifo_is_refused(tmp_path):
    from vitdeploy.convert import read_labels
    from vitdeploy.untrusted import LABELS_LIMIT

    big = tmp_path / "labels.txt"
    line = "x" * 4999 + "\n"
    big.write_text(line * (LABELS_LIMIT // len(line) + 2))
    with pytest.raises(VitdeployError, match="labels file: .*MiB"):
        read_labels(big, LABELS_LIMIT // len(line) + 2)
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    with deadline(10), pytest.raises(VitdeployError, match="not a regular file"):
        read_labels(fifo, 3)


def test_labels_count_mismatch_says_fewer_or_more(tmp_path):
    from vitdeploy.convert import read_labels

    path = tmp_path / "labels.txt"
    path.write_text("a\nb\n")
    with pytest.raises(VitdeployError, match="2 labels, fewer than the model's 3 classes"):
        read_labels(path, 3)
    with pytest.raises(VitdeployError, match="2 labels, more than the model's 1 classes"):
        read_labels(path, 1)


# ----------------------------------------------------------------------------- images

PRE = replace(LEVIT, resize=64, crop=64)


def test_extreme_aspect_ratio_is_refused_before_decoding(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(np.zeros((1, 4000, 3), np.uint8)).save(path)
    with pytest.raises(VitdeployError, match="4000x1 pixels: aspect ratio beyond 1:16"):
        load_image_rgb(path, LEVIT)


def test_too_many_pixels_is_refused_before_decoding(tmp_path):
    import fuzz_seeds as F

    path = tmp_path / "big.png"
    path.write_bytes(F.png_with_size(8000, 8000))  # 64 MP declared: under PIL's bomb limit, over ours
    with pytest.raises(VitdeployError, match="64 MP"):
        load_image_rgb(path, LEVIT)


def test_sixteen_bit_png_is_scaled_not_truncated(tmp_path):
    values = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    path = tmp_path / "gray16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    got = load_image_rgb(path, PRE)
    expected = np.rint(values / 257).astype(np.uint8)
    assert got.shape == (64, 64, 3)
    assert np.abs(got[..., 0].astype(int) - expected).max() <= 1  # was 255 (white) almost everywhere


@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_float_tiff_is_read_by_value_range(tmp_path, scale):
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64) * scale
    path = tmp_path / "float.tiff"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "F"
    got = load_image_rgb(path, PRE)
    expected = np.rint(values * (255 / scale)).astype(np.uint8)
    assert np.abs(got[..., 1].astype(int) - expected).max() <= 1  # 0..1 was black


@pytest.mark.parametrize("values", [np.full((16, 16), 1e6, np.float32), np.full((16, 16), -1.0, np.float32),
                                    np.full((16, 16), np.nan, np.float32)])
def test_float_tiff_outside_known_ranges_is_refused(tmp_path, values):
    path = tmp_path / "hdr.tiff"
    Image.fromarray(values).save(path)
    with pytest.raises(VitdeployError, match="float image"):
        load_image_rgb(path, PRE)


@pytest.mark.parametrize("mode", ["P", "LA", "CMYK", "RGBA", "L"])
def test_ordinary_modes_still_work(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path = tmp_path / f"img_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.fromarray(rgb).convert(mode).save(path)
    assert load_image_rgb(path, replace(LEVIT, resize=32, crop=32)).shape == (32, 32, 3)


# ----------------------------------------------------------------------------- artifact metadata


def _good() -> dict:
    return replace(LEVIT, source="x").to_dict()


@pytest.mark.parametrize("field,value", [("mean", "abc"), ("mean", [0.1, 0.2]), ("std", [0, 0, 0]),
                                         ("std", [1, float("nan"), 1]), ("scale", "x"), ("scale", 0),
                                         ("resize", -5), ("crop", 0), ("crop", 100000), ("resize", 2.5),
                                         ("channel_order", "XYZ"), ("interpolation", "nearest"), ("resize", True)])
def test_preprocessing_metadata_is_validated(field, value):
    with pytest.raises(PreprocessingError, match=f"preprocessing {field}"):
        Preprocessing.from_dict({**_good(), field: value})
    assert issubclass(PreprocessingError, VitdeployError) and issubclass(PreprocessingError, ValueError)


def test_preprocessing_metadata_round_trips():
    assert Preprocessing.from_dict(LEVIT.to_dict()) == LEVIT


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    from fuzz_seeds import tflite_seed

    return tflite_seed(tmp_path_factory.mktemp("tfl"), pixels=True)


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory):
    import fuzz_seeds
    from pte_fixtures import write_tiny_pte

    config = fuzz_seeds._tiny_config("NHWC-pixels", [1, 16, 16, 3], "pixels")
    return write_tiny_pte(tmp_path_factory.mktemp("pte") / "tiny.pte", size=16, metadata=config)


def _with_preprocessing(tflite: Path, out: Path, **changes) -> Path:
    import fuzz_seeds
    from vitdeploy.formats.tflite import VITDEPLOY_METADATA, _with_metadata_entries

    config = fuzz_seeds._tiny_config("NHWC-pixels", [1, 16, 16, 3], "pixels")
    config["preprocessing"].update(changes)
    out.write_bytes(_with_metadata_entries(tflite.read_bytes(), {VITDEPLOY_METADATA: json.dumps(config).encode()},
                                           None))
    return out


@pytest.mark.parametrize("changes", [{"mean": "abc"}, {"std": [0, 0, 0]}, {"scale": "x"}, {"crop": 100000}])
def test_tflite_with_bad_preprocessing_metadata_exits_2(tiny_tflite, tmp_path, changes):
    """mean "abc" and scale "x" were exit 3, std 0 and a 100000-pixel crop exit 0 (NaN, or GBs of memory)."""
    art = _with_preprocessing(tiny_tflite, tmp_path / "bad.tflite", **changes)
    image = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    for args in (("predict", art, image), ("inspect", art)):
        code, err = cli(*args)
        assert_refused(code, err, "bad.tflite", "preprocessing")


def test_pte_renamed_tflite_and_back_are_named(tiny_tflite, tiny_pte, tmp_path):
    pte_as_tflite, tflite_as_pte = tmp_path / "model.tflite", tmp_path / "model.pte"
    shutil.copy(tiny_pte, pte_as_tflite)
    shutil.copy(tiny_tflite, tflite_as_pte)
    image = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    for args in (("inspect", pte_as_tflite), ("predict", pte_as_tflite, image)):
        assert_refused(*cli(*args), "model.tflite", "ExecuTorch program (.pte), not a .tflite model")
    for args in (("inspect", tflite_as_pte), ("predict", tflite_as_pte, image)):
        assert_refused(*cli(*args), "model.pte", "TFLite model (.tflite), not an ExecuTorch program")


def test_tflite_labels_not_matching_its_classes_exit_2(tiny_tflite, tmp_path):
    """A labels.txt shorter than the output: predict indexed past it (exit 3)."""
    from vitdeploy.formats.tflite import _append_labels_zip

    art = tmp_path / "short_labels.tflite"
    art.write_bytes(_append_labels_zip(tiny_tflite.read_bytes(), ["a", "b"]))
    image = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    assert_refused(*cli("predict", art, image), "short_labels.tflite", "2 labels")


def test_pte_labels_not_matching_its_classes_exit_2(tmp_path):
    import fuzz_seeds
    from pte_fixtures import write_tiny_pte

    config = fuzz_seeds._tiny_config("NHWC-pixels", [1, 16, 16, 3], "pixels")
    config["labels"] = ["a", "b"]
    art = write_tiny_pte(tmp_path / "short_labels.pte", size=16, metadata=config)
    image = tmp_path / "p.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    assert_refused(*cli("predict", art, image), "short_labels.pte", "2 labels")


def test_read_side_file_reads_at_most_limit_plus_one(tmp_path):
    from vitdeploy.untrusted import read_side_file

    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_side_file(path, 100) == b"x" * 100
    with pytest.raises(VitdeployError, match="more than"):
        read_side_file(path, 99)
    with pytest.raises(CheckpointError):
        read_side_file(tmp_path / "missing", 10, error=CheckpointError)
