"""Model registry: one :class:`Family` per model family, and every variant's family, size and input.

Like timm's per-family files with ``@register_model``: each family's module (:mod:`.levit`,
:mod:`.mobilevit`) holds its network, its configs as data (``CONFIGS``) and the functions that read
its weights and blocks; the :class:`Family` row here names them without importing torch, so variant
lookups (recipes, ``--help``) stay instant. Code outside ``models/`` asks the family
(``family_of(variant)``, ``family(name)``) instead of testing its name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

from ..errors import VitdeployError
from ..preprocessing import LEVIT, LEVIT_TIMM, MOBILEVIT_BGR, MOBILEVIT_RGB, Preprocessing


@dataclass(frozen=True)
class Family:
    """What vitdeploy knows of one model family; the network code lives in ``module``."""

    name: str
    module: str  # the family's module: CONFIGS, build(), state_dict_signature(), config_signature(), ...
    classifier: str  # canonical (timm) state-dict key of the classifier weight: its rows are the classes
    preprocessing_default: Preprocessing  # what the family's sources expect (official code, HF, ml-cvnets)
    preprocessing_timm: Preprocessing  # timm checkpoints: timm's own evaluation transform
    architecture_keys: tuple[str, ...]  # the config fields that tell its variants apart (recipes, inspect)
    # Stand-in weights (vitdeploy.synthetic): LeViT's nearly uniform attention branches need a floor on their
    # BatchNorm variance, or the seeded network turns chaotic (1e-7 input changes move logits by percents).
    seeded_variance_floor: bool = False

    @property
    def impl(self):
        return importlib.import_module(self.module)

    def configs(self) -> dict:
        return self.impl.CONFIGS

    def preprocessing(self, layout: str) -> Preprocessing:
        return self.preprocessing_timm if layout in ("timm", "timm-conv") else self.preprocessing_default

    def architecture(self, variant: str) -> dict:
        """The variant's distinguishing config as plain data (lists, ints)."""
        cfg = self.configs()[variant]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in
                ((k, getattr(cfg, k)) for k in self.architecture_keys)}

    def state_dict_signature(self, sd: dict) -> dict:
        """The :meth:`architecture` a canonical state dict has, read from its key names and shapes."""
        return self.impl.state_dict_signature(sd)

    def block_names(self, model) -> list[str]:
        """The blocks whose outputs parity localization compares, in execution order."""
        return self.impl.block_names(model)

    def classifier_heads(self, model) -> list:
        """(BatchNorm or None, Linear) of every classifier head whose outputs are averaged into the logits."""
        return self.impl.classifier_heads(model)

    def pool(self, features):
        """Pooled features from ``model.forward_features``: what the classifier heads read."""
        return self.impl.pool(features)


FAMILIES: dict[str, Family] = {}


def register_family(f: Family) -> Family:
    FAMILIES[f.name] = f
    return f


register_family(Family("levit", f"{__name__}.levit", "head.linear.weight", LEVIT, LEVIT_TIMM,
                       ("embed_dim", "key_dim", "num_heads", "depth"), seeded_variance_floor=True))
register_family(Family("mobilevit", f"{__name__}.mobilevit", "head.fc.weight", MOBILEVIT_BGR, MOBILEVIT_RGB,
                       ("channels", "transformer_dims", "transformer_depths", "num_features")))


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise VitdeployError(f"unknown model family '{name}'; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


@dataclass(frozen=True)
class VariantInfo:
    name: str
    family: str  # a key of FAMILIES
    img_size: int
    params: int  # with the 1000-class head

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, self.img_size, self.img_size)


VARIANTS: dict[str, VariantInfo] = {
    v.name: v
    for v in (
        VariantInfo("levit_128s", "levit", 224, 7_777_058),
        VariantInfo("levit_128", "levit", 224, 9_213_936),
        VariantInfo("levit_192", "levit", 224, 10_947_069),
        VariantInfo("levit_256", "levit", 224, 18_893_876),
        VariantInfo("levit_384", "levit", 224, 39_128_836),
        VariantInfo("mobilevit_xxs", "mobilevit", 256, 1_272_024),
        VariantInfo("mobilevit_xs", "mobilevit", 256, 2_317_848),
        VariantInfo("mobilevit_s", "mobilevit", 256, 5_578_632),
    )
}


def variant_info(name: str) -> VariantInfo:
    """Look up a variant by name (``levit_128s``, ``mobilevit_xs``; dashes and case are forgiven)."""
    key = name.strip().lower().replace("-", "_")
    if key not in VARIANTS:
        raise VitdeployError(f"unknown variant '{name}'; known: {', '.join(VARIANTS)}")
    return VARIANTS[key]


def family_of(variant_or_model) -> Family:
    """The family of a variant name or of a model built here (its ``family`` attribute)."""
    name = getattr(variant_or_model, "family", None)
    if name is None:
        name = variant_info(str(variant_or_model)).family
    return family(name)


def create_model(variant: str, num_classes: int = 1000):
    """Build an inference-form model (random weights, eval mode) for ``variant``."""
    info = variant_info(variant)
    fam = family(info.family)
    model = fam.impl.build(replace(fam.configs()[info.name], num_classes=num_classes))
    model.variant = info.name
    return model.eval()
