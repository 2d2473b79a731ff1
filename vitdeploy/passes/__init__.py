"""Graph passes on vitdeploy's PyTorch models, each small, named and registered; the only place that changes models.

``fold_batchnorm(model)`` runs the three BatchNorm folds and reports what changed;
:data:`PIPELINES` says, as data, which passes each target's model goes through, and
:func:`prepare_for` runs them once on a copy (``convert`` calls it for every target).
Rewrites of torch.export graphs (:mod:`.export_graph`) are registered too, with the graph kind they apply to;
:data:`GRAPH_PIPELINES` says where each runs (ExecuTorch's lowering, the PT2E quantizer's annotation).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from . import coreml, export_graph, fold_bn, hardswish, xnnpack  # noqa: F401  (register the rewrites and folds)
from .coreml import COREML_REWRITES
from .registry import (GRAPH_PASSES, PASSES, graph_passes, register_graph_pass,  # noqa: F401  (the registry is
                       register_pass, run_passes)  # part of this package's API)

BATCHNORM_FOLDS = ("fold_conv_bn", "fold_linear_bn", "fold_bn_linear")  # in this order: conv, then linear pairs
# What each target's model goes through before export (a target, target-delegate where the delegate
# changes it, target-precision where the precision does). BatchNorm first: the Core ML rewrites need it folded.
PIPELINES = {
    "tflite": BATCHNORM_FOLDS,
    # int8 only: XNNPACK has no int8 HARD_SWISH (trained LeViT-128S w8a8: 225 -> 195 float ops, 80 -> 52
    # QUANTIZE/DEQUANTIZE), but in float ADD+MUL cost one more pass than HARD_SWISH (fp32 ~4 % slower,
    # docs/int8-goals.md, "Hard-swish as int8 ops").
    "tflite-w8a8": BATCHNORM_FOLDS + ("hardswish_scale_forward",),
    "coreml": BATCHNORM_FOLDS + COREML_REWRITES,
    "executorch": BATCHNORM_FOLDS + ("layernorm_as_linear",),  # XNNPACK delegate (passes.xnnpack)
    "executorch-coreml": BATCHNORM_FOLDS,  # Core ML delegate: Core ML runs layer_norm itself
}


# Passes on torch.export graphs (passes.export_graph), per place they run: (the graph kind, the passes in order).
GRAPH_PIPELINES = {
    # to_edge_transform_and_lower's transform_passes: XNNPACK has no expand or split, each left a portable
    # kernel between two delegate calls.
    "executorch-edge": ("edge", ("drop_noop_expand", "split_as_slices")),
    # PT2E quantizer's transform_for_annotation: sigmoid and mul get quantized, silu would stay float.
    "pt2e-annotation": ("aten", ("split_silu",)),
}


def graph_pipeline(name: str) -> list:
    """The graph passes of :data:`GRAPH_PIPELINES` ``name``, in order (functions of a graph module)."""
    kind, names = GRAPH_PIPELINES[name]
    return graph_passes(names, kind)


def run_graph_pipeline(name: str, graph):
    """``graph`` through :data:`GRAPH_PIPELINES` ``name`` (passes that rewrite in place and return the graph)."""
    for fn in graph_pipeline(name):
        graph = fn(graph)
    return graph


def pipeline_name(target: str, delegate: str | None = None, precision: str | None = None) -> str:
    """The :data:`PIPELINES` key of a target (and, where it has one that changes the model, its delegate or
    its precision: a canonical name of :mod:`vitdeploy.precisions`)."""
    for key in (f"{target}-{delegate}", f"{target}-{precision}"):
        if key in PIPELINES:
            return key
    return target


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



@dataclass
class Prepared:
    """A model ready for one target's exporter, and what its pipeline did."""

    model: object  # torch.nn.Module
    bn_folding: dict  # FoldReport.to_dict()
    rewrites: dict[str, int]  # the pipeline's other passes -> rewrites made


def prepare_for(target: str, model, delegate: str | None = None, precision: str | None = None) -> Prepared:
    """A copy of ``model`` through its target's pipeline (eval mode; the caller's model is not touched)."""
    return prepare(model, PIPELINES[pipeline_name(target, delegate, precision)])


def prepare(model, pipeline: tuple[str, ...]) -> Prepared:
    """A copy of ``model`` BatchNorm-folded (always, reported), then through the other passes of ``pipeline``."""
    import copy

    prepared = copy.deepcopy(model).eval()
    folding = fold_batchnorm(prepared)
    rest = tuple(p for p in pipeline if p not in BATCHNORM_FOLDS)
    prepared, rewrites = run_passes(rest, prepared)
    return Prepared(prepared, folding.to_dict(), rewrites)
