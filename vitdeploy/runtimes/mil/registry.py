"""The op registry: MIL op type -> the function that executes it.

Each module of :mod:`vitdeploy.runtimes.mil.ops` (named after the coremltools file that defines
its ops, ``coremltools/converters/mil/mil/ops/defs/iOS*/``) registers its ops with
:func:`register`. An op function takes the op's resolved inputs (:class:`Args`) and returns its
output, or a tuple of outputs; the interpreter casts each to the dtype the program declares.

Which ops a model family's Core ML programs contain is the family's own record (``coreml_ops`` of its
:class:`~vitdeploy.models.Family` row): vitdeploy's artifacts (every precision, quantization mode,
deployment target, with or without labels and image input) and coremltools' default conversion of the
unmodified model (what ``op_counts_before`` counts: LeViT's BatchNorm1d as ``batch_norm``, its hardswish
as ``thresholded_relu``). :func:`family_ops` reads it; ops no family records are kept for other programs
and tested like the rest; ``tests/test_coreml_target.py`` checks the record against its conversions.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from vitdeploy.errors import VitdeployError

class UnsupportedOpError(VitdeployError):
    """The model contains a MIL op the interpreter does not implement."""


def unsupported(op_type: str, op_name: str, what: str = "") -> UnsupportedOpError:
    """The error for an op type (or, with ``what``, one of its modes) the interpreter cannot run."""
    detail = f" {what}" if what else ""
    return UnsupportedOpError(
        f"Core ML op '{op_type}'{detail} (op name '{op_name}') is not supported by vitdeploy's MIL interpreter"
    )


class Args:
    """Resolved inputs of one op, plus what the program declares about its outputs.

    ``step`` is the interpreter's record of the op: ``op_type``, ``name``, ``out_dtypes``, ``out_shapes``.
    """

    def __init__(self, values: dict[str, Any], step):
        self._values = values
        self.step = step

    def __getitem__(self, key):
        return self._values[key]

    def __contains__(self, key):
        return self._values.get(key) is not None

    def get(self, key, default=None):
        val = self._values.get(key)
        return default if val is None else val

    def scalar(self, key, default=None):
        val = self.get(key, default)
        return val.item() if isinstance(val, np.ndarray) else val

    def ints(self, key, default=None) -> list[int] | None:
        val = self.get(key, default)
        return None if val is None else [int(v) for v in np.ravel(val)]

    def out_dtype(self, i: int = 0) -> str:
        return self.step.out_dtypes[i]

    def out_spatial(self, computed_h: int, computed_w: int) -> tuple[int, int]:
        """Output (H, W) as the program declares it when static, else as computed."""
        shape = self.step.out_shapes[0]
        if len(shape) >= 2 and shape[-2] > 0 and shape[-1] > 0:
            return shape[-2], shape[-1]
        return computed_h, computed_w

    def unsupported(self, what: str) -> UnsupportedOpError:
        """The error for a mode of this op the interpreter does not implement."""
        return unsupported(self.step.op_type, self.step.name, what)


OpFn = Callable[[Args], Any]


@dataclass(frozen=True)
class OpDef:
    """One registered op."""

    op_type: str
    fn: OpFn
    module: str  # the ops module (coremltools op-definition file name) that defines it


_REGISTRY: dict[str, OpDef] = {}
REGISTRY: Mapping[str, OpDef] = MappingProxyType(_REGISTRY)


def register(*op_types: str) -> Callable[[OpFn], OpFn]:
    """Decorator: ``fn`` executes the MIL ops ``op_types``."""

    def add(fn: OpFn) -> OpFn:
        module = fn.__module__.rpartition(".")[2]
        for op_type in op_types:
            if op_type in _REGISTRY:
                raise ValueError(f"MIL op '{op_type}' registered twice ({_REGISTRY[op_type].module}, {module})")
            _REGISTRY[op_type] = OpDef(op_type, fn, module)
        return fn

    return add


def lookup(op_type: str) -> OpDef | None:
    return _REGISTRY.get(op_type)


def supported_ops() -> list[str]:
    """MIL op types the interpreter executes (const is handled at load time)."""
    return sorted(_REGISTRY) + ["const"]


def family_ops(family: str | None = None) -> set[str]:
    """Op types the programs of ``family`` contain (of any registered family when None), as the family
    records them (``Family.coreml_ops``); const excluded."""
    from vitdeploy.models import families
    from vitdeploy.models import family as family_named

    chosen = families() if family is None else [family_named(family)]
    return {op for fam in chosen for op in fam.coreml_ops}


def unused_ops() -> set[str]:
    """Registered op types no family's programs contain (kept for other programs)."""
    return set(_REGISTRY) - family_ops()
