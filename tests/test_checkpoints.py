"""Checkpoint loading: every layout x every variant against its reference, detection, bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from layout_writers import randomize_batchnorm, to_cvnets, to_official, to_timm_conv
from vitdeploy import checkpoints, models
from vitdeploy.errors import CheckpointError
from vitdeploy.models import VARIANTS, create_model, levit, mobilevit

LEVITS = [v for v in VARIANTS if v.startswith("levit")]
MOBILEVITS = [v for v in VARIANTS if v.startswith("mobilevit")]
SMALL = {"levit_128s", "mobilevit_xxs"}


def _maybe_slow(variants):
    return [v if v in SMALL else pytest.param(v, marks=pytest.mark.slow) for v in variants]


def hf_model(variant: str):
    """HF transformers' own implementation of ``variant`` with seeded random weights and BN statistics."""
    import transformers

    torch.manual_seed(0)
    if variant.startswith("levit"):
        c = levit.CONFIGS[variant]
        cfg = transformers.LevitConfig(hidden_sizes=list(c.embed_dim), num_attention_heads=list(c.num_heads),
                                       depths=list(c.depth), key_dim=[c.key_dim] * 3, num_labels=1000)
        model = transformers.LevitForImageClassificationWithTeacher(cfg)
    else:
        c = mobilevit.CONFIGS[variant]
        cfg = transformers.MobileViTConfig(hidden_sizes=list(c.transformer_dims),
                                           neck_hidden_sizes=[16, *c.channels, c.num_features],
                                           expand_ratio=c.expansion, num_labels=1000)
        model = transformers.MobileViTForImageClassification(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # HF's init leaves logits near zero; scale up so differences are visible.
            p.normal_(0, 0.05, generator=g) if p.ndim > 1 else p.uniform_(0.5, 1.5, generator=g)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _inputs(variant: str, n: int = 2) -> torch.Tensor:
    size = VARIANTS[variant].img_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


@pytest.mark.parametrize("variant", _maybe_slow(list(VARIANTS)))
def test_hf_directory_matches_transformers(variant, tmp_path):
    ref_model = hf_model(variant)
    ref_model.save_pretrained(tmp_path / "hf")
    ckpt = checkpoints.load(tmp_path / "hf")
    assert (ckpt.layout, ckpt.variant, ckpt.family) == ("hf", variant, VARIANTS[variant].family)
    x = _inputs(variant)
    with torch.no_grad():
        ref = ref_model(pixel_values=x).logits.numpy()
        got = ckpt.model(x).numpy()
    assert _rel(got, ref) < 1e-5, _rel(got, ref)
    expected = models.MOBILEVIT_BGR if variant.startswith("mobilevit") else models.LEVIT
    assert ckpt.preprocessing == expected


def _write(sd: dict, path, wrapper: str | None = None):
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({wrapper: sd} if wrapper else sd, path)
    return path


LAYOUT_CASES = (
    [("timm", v, "x.safetensors", None) for v in VARIANTS]
    + [("timm-conv", v, "x.pth", None) for v in LEVITS]
    + [("official", v, "x.pth", "model") for v in LEVITS]
    + [("cvnets", v, "x.pt", None) for v in MOBILEVITS]
)
WRITERS = {"timm": lambda m: m.state_dict(), "timm-conv": to_timm_conv, "official": to_official, "cvnets": to_cvnets}


@pytest.mark.parametrize("layout,variant,filename,wrapper", LAYOUT_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in LAYOUT_CASES])
def test_layout_round_trip(layout, variant, filename, wrapper, tmp_path):
    torch.manual_seed(3)
    ref_model = randomize_batchnorm(create_model(variant))
    path = _write(WRITERS[layout](ref_model), tmp_path / filename, wrapper)
    ckpt = checkpoints.load(path)
    assert (ckpt.layout, ckpt.variant) == (layout, variant)
    x = _inputs(variant, 1)
    with torch.no_grad():
        assert _rel(ckpt.model(x).numpy(), ref_model(x).numpy()) < 1e-6


def test_official_training_checkpoint_with_optimizer_and_ema(tmp_path):
    import argparse

    torch.manual_seed(4)
    model = randomize_batchnorm(create_model("levit_128s"))
    ema = randomize_batchnorm(create_model("levit_128s"), seed=9)
    sd = {f"module.{k}": v for k, v in to_official(model).items()}  # saved from DistributedDataParallel
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": sd, "model_ema": to_official(ema), "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
                "lr_scheduler": {"last_epoch": 3}, "epoch": 3, "scaler": {"scale": 65536.0},
                "args": argparse.Namespace(model="LeViT_128S", lr=1e-3)}, path)
    ckpt = checkpoints.load(path)
    assert (ckpt.layout, ckpt.variant, ckpt.wrapper) == ("official", "levit_128s", "model")
    assert {"optimizer", "model_ema", "args"} <= set(ckpt.other_entries)
    x = _inputs("levit_128s", 1)
    with torch.no_grad():
        assert _rel(ckpt.model(x).numpy(), model(x).numpy()) < 1e-6
        ema_ckpt = checkpoints.load(path, prefer_ema=True)
        assert ema_ckpt.wrapper == "model_ema"
        assert _rel(ema_ckpt.model(x).numpy(), ema(x).numpy()) < 1e-6


def test_timm_mobilevit_is_rgb_and_cvnets_is_bgr(tmp_path):
    model = randomize_batchnorm(create_model("mobilevit_xxs"))
    timm = checkpoints.load(_write(model.state_dict(), tmp_path / "t.safetensors"))
    cvnets = checkpoints.load(_write(to_cvnets(model), tmp_path / "c.pt"))
    assert timm.preprocessing.channel_order == "RGB" and cvnets.preprocessing.channel_order == "BGR"
    assert (timm.preprocessing.crop, cvnets.preprocessing.resize) == (256, 288)
    assert (timm.preprocessing.resize, timm.preprocessing.interpolation) == (284, "bicubic")  # timm crop_pct 0.9


def test_levit_resize_follows_source(tmp_path):
    model = create_model("levit_128s")
    timm = checkpoints.load(_write(model.state_dict(), tmp_path / "t.safetensors"))
    official = checkpoints.load(_write(to_official(model), tmp_path / "o.pth", "model"))
    assert (timm.preprocessing.resize, official.preprocessing.resize) == (248, 256)
    assert timm.preprocessing.mean == official.preprocessing.mean


def test_variant_override_and_mismatch(tmp_path):
    path = _write(create_model("levit_128").state_dict(), tmp_path / "a.safetensors")
    assert checkpoints.load(path, variant="levit_128").variant_detected is False
    with pytest.raises(CheckpointError, match="does not fit levit_128s"):
        checkpoints.load(path, variant="levit-128s")
    with pytest.raises(CheckpointError, match="mobilevit_xs is a mobilevit model"):
        checkpoints.load(path, variant="mobilevit_xs")
    with pytest.raises(Exception, match="unknown variant"):
        checkpoints.load(path, variant="levit_999")


def test_detects_nonstandard_class_count(tmp_path):
    path = _write(create_model("mobilevit_xs", num_classes=10).state_dict(), tmp_path / "ten.pth")
    ckpt = checkpoints.load(path)
    assert (ckpt.variant, ckpt.num_classes) == ("mobilevit_xs", 10)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


BAD_INPUTS = {
    "missing": (None, "no such file"),
    "empty": (b"", "empty file"),
    "truncated": ("truncate", "truncated or corrupt"),
    "not_a_vit": ({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)},
                  "not a LeViT or MobileViT checkpoint"),
    "missing_keys": ("drop", "missing 1 key"),
    "misshaped": ("reshape", "has shape"),
    "arbitrary_object": ("evil", "refusing to unpickle"),
    "not_a_dict": (torch.zeros(3), "expected a state dict"),
    "bad_safetensors": (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", "not a valid safetensors"),
}


def make_bad_checkpoint(kind: str, tmp_path):
    """A file exercising one bad-input case (used here and by the CLI tests)."""
    payload, _ = BAD_INPUTS[kind]
    path = tmp_path / ("bad.safetensors" if kind == "bad_safetensors" else f"{kind}.pth")
    good = create_model("levit_128s").state_dict()
    if payload is None:
        return tmp_path / "does-not-exist.pth"
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    elif payload == "truncate":
        torch.save(good, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif payload == "drop":
        good.pop("stages.1.blocks.0.mlp.ln2.bn.running_var")
        torch.save(good, path)
    elif payload == "reshape":
        good["head.linear.bias"] = torch.zeros(999)
        torch.save(good, path)
    elif payload == "evil":
        with open(path, "wb") as f:
            pickle.dump({"model": _Evil()}, f)
    else:
        torch.save(payload, path)
    return path


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_a_clear_error(kind, tmp_path, capsys):
    path = make_bad_checkpoint(kind, tmp_path)
    with pytest.raises(CheckpointError, match=BAD_INPUTS[kind][1]) as e:
        checkpoints.load(path)
    assert "\n" not in str(e.value)
    assert "pwned" not in capsys.readouterr().out


def test_hf_labels_are_read_from_config(tmp_path):
    model = hf_model("mobilevit_xxs")
    model.config.id2label = {i: f"thing{i}" for i in range(1000)}
    model.save_pretrained(tmp_path / "hf")
    ckpt = checkpoints.load(tmp_path / "hf")
    assert ckpt.labels[:2] == ["thing0", "thing1"]


def test_hf_levit_without_distillation_head(tmp_path):
    import transformers

    teacher = hf_model("levit_128s")
    plain = transformers.LevitForImageClassification(teacher.config).eval()
    missing = plain.load_state_dict(teacher.state_dict(), strict=False)
    assert not missing.missing_keys
    plain.save_pretrained(tmp_path / "hf")
    ckpt = checkpoints.load(tmp_path / "hf")
    assert ckpt.labels is None  # HF's placeholder LABEL_i names are dropped
    x = _inputs("levit_128s", 1)
    with torch.no_grad():
        assert _rel(ckpt.model(x).numpy(), plain(pixel_values=x).logits.numpy()) < 1e-5
