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
