"""Model registry: variant name -> family, config and input size.

Configs are data (``levit.CONFIGS``, ``mobilevit.CONFIGS``); ``create_model`` builds the
inference-form PyTorch module whose state-dict names are timm's (the canonical layout).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import VitdeployError


@dataclass(frozen=True)
class VariantInfo:
    name: str
    family: str  # "levit" | "mobilevit"
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


def create_model(variant: str, num_classes: int = 1000):
    """Build an inference-form model (random weights, eval mode) for ``variant``."""
    from dataclasses import replace

    info = variant_info(variant)
    if info.family == "levit":
        from .levit import CONFIGS, Levit

        model = Levit(replace(CONFIGS[info.name], num_classes=num_classes))
    else:
        from .mobilevit import CONFIGS, MobileVit

        model = MobileVit(replace(CONFIGS[info.name], num_classes=num_classes))
    model.variant = info.name
    return model.eval()
