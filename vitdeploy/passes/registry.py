"""The pass registry: every model rewrite under its name (a leaf, so passes can register themselves)."""

from __future__ import annotations

from typing import Callable

PASSES: dict[str, Callable] = {}
WRAPPING: set[str] = set()  # passes that return (new model, count) instead of changing the model in place


def register_pass(name: str, *, wraps: bool = False):
    """Register ``fn(model) -> int`` (the number of rewrites, in place) under ``name``; ``wraps=True``:
    ``fn(model) -> (model, int)``, for a rewrite that puts a new module around the model."""

    def wrap(fn: Callable) -> Callable:
        PASSES[name] = fn
        if wraps:
            WRAPPING.add(name)
        return fn

    return wrap


def run_passes(names, model):
    """Run the named passes in order; returns (model, {name: rewrites})."""
    counts = {}
    for name in names:
        if name in WRAPPING:
            model, counts[name] = PASSES[name](model)
        else:
            counts[name] = PASSES[name](model)
    return model, counts


# Passes on a torch.export graph rather than on a model: name -> (the graph it rewrites, fn(graph_module)).
# "aten": an exported ATen graph (before PT2E annotation); "edge": ExecuTorch's edge dialect (before
# partitioning; fn returns executorch's PassResult, as to_edge_transform_and_lower's transform_passes take).
GRAPH_PASSES: dict[str, tuple[str, Callable]] = {}
GRAPH_KINDS = ("aten", "edge")


def register_graph_pass(name: str, *, applies_to: str):
    """Register ``fn(graph_module)`` under ``name``, for graphs of kind ``applies_to`` (:data:`GRAPH_KINDS`)."""
    if applies_to not in GRAPH_KINDS:
        raise ValueError(f"unknown graph kind {applies_to!r}; one of {', '.join(GRAPH_KINDS)}")

    def wrap(fn: Callable) -> Callable:
        GRAPH_PASSES[name] = (applies_to, fn)
        return fn

    return wrap


def graph_passes(names, applies_to: str) -> list[Callable]:
    """The named graph passes, in order; each must be registered for ``applies_to`` graphs."""
    found = []
    for name in names:
        kind, fn = GRAPH_PASSES[name]
        if kind != applies_to:
            raise ValueError(f"graph pass {name} rewrites {kind} graphs, not {applies_to}")
        found.append(fn)
    return found
