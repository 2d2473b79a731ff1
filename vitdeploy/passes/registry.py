"""The pass registry: every model rewrite under its name (a leaf, so passes can register themselves)."""

from __future__ import annotations

from typing import Callable

PASSES: dict[str, Callable] = {}


def register_pass(name: str):
    """Register ``fn(model) -> int`` (the number of rewrites) under ``name``."""

    def wrap(fn: Callable) -> Callable:
        PASSES[name] = fn
        return fn

    return wrap
