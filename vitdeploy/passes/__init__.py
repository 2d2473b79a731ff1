"""Graph passes on vitdeploy's PyTorch models, each small, named and registered.

``fold_batchnorm(model)`` runs the three BatchNorm folds and reports what changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import coreml, fold_bn, xnnpack  # noqa: F401  (register the Core ML / XNNPACK rewrites and the BatchNorm folds)
from .registry import PASSES, register_pass  # noqa: F401  (the registry is part of this package's API)

BATCHNORM_FOLDS = ("fold_conv_bn", "fold_linear_bn", "fold_bn_linear")  # in this order: conv, then linear pairs


@dataclass
class FoldReport:
    folded: dict[str, int] = field(default_factory=dict)  # pass name -> pairs folded
    batchnorm_before: int = 0
    batchnorm_after: int = 0
    params_before: int = 0
    params_after: int = 0

    @property
    def total_folded(self) -> int:
        return sum(self.folded.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "total_folded": self.total_folded}


def count_batchnorm(model) -> int:
    from torch import nn

    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def fold_batchnorm(model) -> FoldReport:
    """Fold every BatchNorm into its Conv/Linear neighbour, in place (eval mode). Returns what was folded."""
    model.eval()
    report = FoldReport(batchnorm_before=count_batchnorm(model), params_before=count_params(model))
    for name in BATCHNORM_FOLDS:
        report.folded[name] = PASSES[name](model)
    report.batchnorm_after = count_batchnorm(model)
    report.params_after = count_params(model)
    return report

