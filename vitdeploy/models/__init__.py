"""Model registry: one :class:`Family` per model family, and every variant's family, size and input.

Like timm's per-family files with ``@register_model``: each family's module (:mod:`.levit`,
:mod:`.mobilevit`) holds its network, its configs as data (``CONFIGS``), the functions that read
its weights and blocks, and how each checkpoint source names its weights (``layout_of``,
``to_canonical``); the :class:`Family` row here names them without importing torch, so variant lookups
(recipes, ``--help``) stay instant, and declares what needs no torch: its variants, its checkpoint
layouts with the input each source expects, the Core ML ops its programs contain. Code outside
``models/`` asks the family (``family_of(variant)``, ``family(name)``, ``families()``) instead of testing
its name; adding a family is its module and one :func:`register_family` entry (CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

from ..errors import CheckpointError, VitdeployError
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing


@dataclass(frozen=True)
class Layout:
    """How one checkpoint source stores a family's weights, and the input convention it trains with."""

    name: str  # what `inspect` shows: timm, official, hf, ...
    preprocessing: Preprocessing


@dataclass(frozen=True)
class Family:
    """What vitdeploy knows of one model family; the network code lives in ``module``."""

    name: str
    title: str  # how messages name the family: "LeViT"
    module: str  # the family's module: CONFIGS, build(), state_dict_signature(), layout_of(), to_canonical(), ...
    classifier: str  # canonical (timm) state-dict key of the classifier weight: its rows are the classes
    architecture_keys: tuple[str, ...]  # the config fields that tell its variants apart (recipes, inspect)
    # Its checkpoint sources; the first is the family's own (official code): what a recipe records.
    layouts: tuple[Layout, ...]
    canonical_layout: str = "timm"  # the layout whose names the model itself uses (to_canonical maps to it)
    # MIL op types its Core ML programs contain: vitdeploy's artifacts in every mode and coremltools' default
    # conversion of the unmodified model (the MIL interpreter's family_ops; tests/test_coreml_target.py checks it).
    coreml_ops: frozenset[str] = frozenset()
    # Stand-in weights (vitdeploy.synthetic): LeViT's nearly uniform attention branches need a floor on their
    # BatchNorm variance, or the seeded network turns chaotic (1e-7 input changes move logits by percents).
    seeded_variance_floor: bool = False
    # Stand-in weights: the BatchNorms (name suffixes) that end a residual branch, scaled down as trained
    # networks have them (zero-init BN).
    residual_branch_ends: tuple[str, ...] = ()

    @property
    def impl(self):
        return importlib.import_module(self.module)

    def configs(self) -> dict:
        return self.impl.CONFIGS

    @property
    def preprocessing_default(self) -> Preprocessing:
        """The input convention of the family's own source (recipes record it)."""
        return self.layouts[0].preprocessing

    def layout_names(self) -> tuple[str, ...]:
        return tuple(layout.name for layout in self.layouts)

    def preprocessing(self, layout: str) -> Preprocessing:
        """The input convention of the source that writes ``layout`` (timm: timm's own evaluation transform)."""
        for known in self.layouts:
            if known.name == layout:
                return known.preprocessing
        raise CheckpointError(f"unknown {self.name} layout '{layout}'; known: {', '.join(self.layout_names())}")

    def layout_of(self, sd: dict) -> str | None:
        """The layout (one of :attr:`layouts`) a state dict's key names say it is in; None: not this family's."""
        return self.impl.layout_of(sd)

    def to_canonical(self, sd: dict, layout: str) -> dict:
        """The state dict renamed (and where needed reshaped, split, merged) into timm's names."""
        return self.impl.to_canonical(sd, layout)

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


@dataclass(frozen=True)
class VariantInfo:
    name: str
    family: str  # a key of FAMILIES
    img_size: int
    params: int  # with the 1000-class head

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, self.img_size, self.img_size)


FAMILIES: dict[str, Family] = {}
VARIANTS: dict[str, VariantInfo] = {}


def register_family(f: Family, variants: dict[str, tuple[int, int]]) -> Family:
    """Add a family and its variants (name -> (input side, parameters with the 1000-class head))."""
    if f.canonical_layout not in f.layout_names():
        raise ValueError(f"family {f.name}: canonical layout '{f.canonical_layout}' is not one of its layouts "
                         f"({', '.join(f.layout_names())})")
    FAMILIES[f.name] = f
    for name, (img_size, params) in variants.items():
        VARIANTS[name] = VariantInfo(name, f.name, img_size, params)
    return f


# --- the families ------------------------------------------------------------------------------------------

# Ops both families' Core ML programs contain.
_COMMON_COREML_OPS = frozenset({
    "add", "cast", "classify", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "conv", "dequantize",
    "linear", "matmul", "mul", "quantize", "reduce_mean", "reshape", "softmax", "split", "transpose",
})

# LeViT: official code, HF and timm all evaluate RGB with ImageNet mean/std; timm resizes by its crop_pct 0.9.
LEVIT = Preprocessing("RGB", 1 / 255, IMAGENET_MEAN, IMAGENET_STD, 256, 224, "bicubic",
                      "LeViT (official/timm/HF): RGB, ImageNet mean/std")
LEVIT_TIMM = Preprocessing("RGB", 1 / 255, IMAGENET_MEAN, IMAGENET_STD, 248, 224, "bicubic",
                           "LeViT timm: RGB, ImageNet mean/std, timm eval resize (crop_pct 0.9)")

register_family(
    Family("levit", "LeViT", f"{__name__}.levit", "head.linear.weight", ("embed_dim", "key_dim", "num_heads", "depth"),
           layouts=(Layout("official", LEVIT),  # facebookresearch/LeViT
                    Layout("hf", LEVIT),  # HF transformers Levit*
                    Layout("timm", LEVIT_TIMM),  # timm levit_*
                    Layout("timm-conv", LEVIT_TIMM)),  # timm levit_conv_* (1x1 conv weights)
           coreml_ops=_COMMON_COREML_OPS | {"batch_norm", "expand_dims", "sigmoid_hard", "slice_by_index", "squeeze",
                                            "thresholded_relu"},
           seeded_variance_floor=True, residual_branch_ends=("attn.proj.ln.bn", "mlp.ln2.bn")),
    variants={"levit_128s": (224, 7_777_058), "levit_128": (224, 9_213_936), "levit_192": (224, 10_947_069),
              "levit_256": (224, 18_893_876), "levit_384": (224, 39_128_836)})

# MobileViT: ml-cvnets (and HF, converted from it) feed BGR in 0..1; timm RGB in 0..1, resized by crop_pct 0.9.
MOBILEVIT_BGR = Preprocessing("BGR", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 288, 256, "bilinear",
                              "MobileViT ml-cvnets / HF weights: BGR in 0..1")
MOBILEVIT_RGB = Preprocessing("RGB", 1 / 255, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 284, 256, "bicubic",
                              "MobileViT timm: RGB in 0..1, timm eval resize (crop_pct 0.9)")

register_family(
    Family("mobilevit", "MobileViT", f"{__name__}.mobilevit", "head.fc.weight",
           ("channels", "transformer_dims", "transformer_depths", "num_features"),
           layouts=(Layout("cvnets", MOBILEVIT_BGR),  # apple/ml-cvnets
                    Layout("hf", MOBILEVIT_BGR),  # HF transformers MobileViT*
                    Layout("timm", MOBILEVIT_RGB)),  # timm mobilevit_*
           coreml_ops=_COMMON_COREML_OPS | {"concat", "layer_norm", "silu"},
           residual_branch_ends=("conv3_1x1.bn",)),
    variants={"mobilevit_xxs": (256, 1_272_024), "mobilevit_xs": (256, 2_317_848), "mobilevit_s": (256, 5_578_632)})


# --- lookups -----------------------------------------------------------------------------------------------

def families() -> list[Family]:
    """Every registered family, in registration order."""
    return list(FAMILIES.values())


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise VitdeployError(f"unknown model family '{name}'; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


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
