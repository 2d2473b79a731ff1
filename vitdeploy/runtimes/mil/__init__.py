"""A numpy interpreter for the ML Program (MIL) inside a Core ML .mlpackage.

Core ML prediction only runs on Apple platforms. This package executes the MIL program of an ML
Program model with numpy (torch, imported lazily, computes convolutions, pooling, linear and
matmul) so Core ML numerics can be checked on Linux. Semantics follow the op definitions in
``coremltools/converters/mil/mil/ops/defs``; the layout mirrors them:

* :mod:`.program` -- loading the program (:func:`load_program`, :func:`main_function`), dtypes, :func:`op_counts`
* :mod:`.interpreter` -- :class:`MILInterpreter`: the run loop, fp16 emulation, observing values
* :mod:`.inputs` -- image and tensor inputs as Core ML feeds them
* :mod:`.registry` -- the op registry (:func:`register`, :data:`REGISTRY`), :class:`UnsupportedOpError`
* :mod:`.ops` -- the ops, one module per coremltools op-definition file (``activation``, ``conv``, ...)

coremltools and torch are imported inside functions: importing this package stays light.
"""

from .interpreter import MILInterpreter, Observer
from .program import load_program, main_function, op_counts
from .registry import REGISTRY, OpDef, UnsupportedOpError, family_ops, register, supported_ops, unused_ops

__all__ = [
    "MILInterpreter",
    "Observer",
    "OpDef",
    "REGISTRY",
    "UnsupportedOpError",
    "family_ops",
    "load_program",
    "main_function",
    "op_counts",
    "register",
    "supported_ops",
    "unused_ops",
]
