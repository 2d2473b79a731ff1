"""A family is its module and one registry entry: a toy family, registered here (this file is its module),
is found by layout detection, loaded with its source's preprocessing, and taken through the Core ML passes
with no edit outside ``models/``; an attention class that does not say how its scale folds is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from vitdeploy import checkpoints, models
from vitdeploy.errors import CheckpointError
from vitdeploy.models import Family, Layout, register_family
from vitdeploy.passes import PASSES, prepare_for
from vitdeploy.passes.coreml import UnfoldableAttention
from vitdeploy.preprocessing import Preprocessing

# Two sources with different input conventions, so a wrong pick shows.
TOY_HUB = Preprocessing("BGR", 1 / 255, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), 40, 32, "bilinear", "toy hub: BGR")
TOY_NATIVE = Preprocessing("RGB", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 36, 32, "bicubic", "toy native: RGB")


# ----------------------------------------------------------------------------- the toy family's module


@dataclass(frozen=True)
class ToyConfig:
    width: int
    img_size: int = 32
    num_classes: int = 1000


CONFIGS = {"toy_tiny": ToyConfig(8), "toy_wide": ToyConfig(16)}


class ToyAttention(nn.Module):
    """Single-head attention over tokens; says where its queries come from (the hook the fold pass asks)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.dim = dim

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return ((q * self.scale) @ k.transpose(1, 2)).softmax(-1) @ v

    def query_projection(self):
        return self.qkv, list(range(self.dim))


class HooklessAttention(ToyAttention):
    """An attention class that does not say how its scale folds."""

    query_projection = None


class KeptScaleAttention(ToyAttention):
    """An attention class that decides its scale stays a multiply."""

    def query_projection(self):
        return None


class ToyNet(nn.Module):
    """Patchify conv -> attention -> mean over tokens -> two classifier heads averaged (like LeViT's)."""

    family = "toy"

    def __init__(self, cfg: ToyConfig, attention=ToyAttention):
        super().__init__()
        self.stem = nn.Conv2d(3, cfg.width, 4, 4)
        self.attn = attention(cfg.width)
        self.head = nn.Module()
        self.head.fc = nn.Linear(cfg.width, cfg.num_classes)
        self.head_aux = nn.Linear(cfg.width, cfg.num_classes)

    def forward_features(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        return x + self.attn(x)

    def forward(self, x):
        x = pool(self.forward_features(x))
        return (self.head.fc(x) + self.head_aux(x)) / 2


def build(cfg: ToyConfig) -> ToyNet:
    return ToyNet(cfg)


def state_dict_signature(sd: dict) -> dict:
    return {"width": int(sd["stem.weight"].shape[0])}


def classifier_heads(model: ToyNet) -> list:
    return [(None, model.head.fc), (None, model.head_aux)]


def pool(features):
    return features.mean(1)


def block_names(model: ToyNet) -> list[str]:
    return ["stem", "attn"]


def layout_of(sd: dict) -> str | None:
    if any(k.startswith("toyhub.") for k in sd):
        return "toyhub"
    if "stem.weight" in sd and "head_aux.weight" in sd:
        return "native"
    return None


def to_canonical(sd: dict, layout: str) -> dict:
    return {k.removeprefix("toyhub."): v for k, v in sd.items()} if layout == "toyhub" else dict(sd)


def _params(width: int) -> int:
    return sum(p.numel() for p in ToyNet(ToyConfig(width)).parameters())


# ----------------------------------------------------------------------------- its registry entry


@pytest.fixture
def toy_family():
    saved = dict(models.FAMILIES), dict(models.VARIANTS)
    fam = register_family(
        Family("toy", "Toy", __name__, "head.fc.weight", ("width",),
               layouts=(Layout("toyhub", TOY_HUB), Layout("native", TOY_NATIVE)), canonical_layout="native",
               coreml_ops=frozenset({"conv", "linear", "matmul", "softmax"})),
        variants={"toy_tiny": (32, _params(8)), "toy_wide": (32, _params(16))})
    yield fam
    for registry, before in zip((models.FAMILIES, models.VARIANTS), saved):
        registry.clear()
        registry.update(before)


def _toy(variant="toy_wide", seed=0):
    torch.manual_seed(seed)
    return models.create_model(variant)


# ----------------------------------------------------------------------------- the tests


def test_layout_detection_and_preprocessing_pick_up_a_registered_family(toy_family, tmp_path):
    model = _toy()
    hub = tmp_path / "hub.pth"
    torch.save({f"toyhub.{k}": v for k, v in model.state_dict().items()}, hub)
    native = tmp_path / "native.pth"
    torch.save(model.state_dict(), native)

    ckpt = checkpoints.load(hub)
    assert (ckpt.family, ckpt.layout, ckpt.variant, ckpt.num_classes) == ("toy", "toyhub", "toy_wide", 1000)
    assert ckpt.preprocessing == TOY_HUB
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))
    assert checkpoints.load(native).preprocessing == TOY_NATIVE
    assert checkpoints.preprocessing_for("toy", "native") == TOY_NATIVE
    assert {"toyhub", "native"} <= set(checkpoints.layout_names()) and "toyhub" in checkpoints.LAYOUTS
    assert models.family_of("toy_tiny").preprocessing_default == TOY_HUB  # what a recipe records

    # The built-in families are still found, and the message for nothing known names the new family too.
    levit = tmp_path / "levit.pth"
    torch.save(models.create_model("levit_128s").state_dict(), levit)
    assert checkpoints.detect_layout(torch.load(levit, weights_only=True)) == ("timm", "levit")
    with pytest.raises(CheckpointError, match="not a LeViT, MobileViT or Toy checkpoint"):
        checkpoints.detect_layout({"something.weight": torch.zeros(1)})


def test_without_the_family_its_checkpoint_is_unknown(tmp_path):
    path = tmp_path / "hub.pth"
    torch.save({f"toyhub.{k}": v for k, v in ToyNet(ToyConfig(8)).state_dict().items()}, path)
    with pytest.raises(CheckpointError, match="not a LeViT or MobileViT checkpoint: unrecognised keys"):
        checkpoints.load(path)


def test_keys_two_families_claim_are_refused_not_guessed(toy_family, monkeypatch):
    # A toy source that names its weights like timm's LeViT: which family it is cannot be told from keys.
    monkeypatch.setattr(sys.modules[__name__], "layout_of", lambda sd: "native")
    sd = models.create_model("levit_128s").state_dict()
    with pytest.raises(CheckpointError, match=r"ambiguous checkpoint.*levit \(timm\), toy \(native\)"):
        checkpoints.detect_layout(sd)


def test_a_layout_the_row_does_not_declare_is_a_bug_in_the_family(toy_family, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "layout_of", lambda sd: "toyhub-v2")
    with pytest.raises(TypeError, match="layout_of returned 'toyhub-v2'.*does not declare"):
        checkpoints.detect_layout({"x": torch.zeros(1)})


def test_the_mil_registry_reads_a_familys_ops_from_its_row(toy_family):
    from vitdeploy.runtimes.mil import family_ops, unused_ops

    assert family_ops("toy") == {"conv", "linear", "matmul", "softmax"}
    assert family_ops() >= family_ops("toy") | family_ops("levit")
    assert "softmax" not in unused_ops()


def test_coreml_passes_ask_the_family_and_its_attention(toy_family):
    from vitdeploy.synthetic import seeded_model

    model = seeded_model("toy_tiny")  # stand-in weights need nothing beyond the registry entry either
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        prepared = prepare_for("coreml", model)
        got = prepared.model(x)
    assert prepared.rewrites == {"two_op_hardswish": 0, "attention_scale_into_query": 1, "merged_heads": 1}
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5  # float rounding only
    assert prepare_for("coreml", prepared.model).rewrites == {"two_op_hardswish": 0, "attention_scale_into_query": 0,
                                                             "merged_heads": 0}


def test_an_attention_without_the_hook_is_refused_loudly():
    model = ToyNet(ToyConfig(8), attention=HooklessAttention)
    with pytest.raises(UnfoldableAttention, match=r"HooklessAttention has an attention scale \(0.354\) but no "
                                                  r"query_projection\(\)"):
        PASSES["attention_scale_into_query"](model)
    assert model.attn.scale == 8 ** -0.5  # nothing half-done
    assert issubclass(UnfoldableAttention, TypeError)  # a family's bug: not an exit-2 input error


def test_an_attention_may_keep_its_scale_by_saying_so():
    model = ToyNet(ToyConfig(8), attention=KeptScaleAttention)
    assert PASSES["attention_scale_into_query"](model) == 0
    assert model.attn.scale == 8 ** -0.5


def test_every_builtin_attention_declares_its_query_rows():
    """Each family's attention classes fold exactly (the rows they name are the ones the scale multiplies)."""
    from vitdeploy.synthetic import seeded_model

    for variant in ("levit_128s", "mobilevit_xxs"):
        model = seeded_model(variant)
        attentions = [m for m in model.modules() if isinstance(getattr(m, "scale", None), float)]
        assert attentions and all(callable(getattr(m, "query_projection", None)) for m in attentions), variant
