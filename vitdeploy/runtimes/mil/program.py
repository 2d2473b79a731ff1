"""Loading the ML Program (MIL) of an .mlpackage, and what the interpreter reads off its values.

coremltools is imported inside the functions: importing this module stays light.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vitdeploy.errors import VitdeployError

NP_DTYPES = {
    "fp16": np.float16,
    "fp32": np.float32,
    "fp64": np.float64,
    "int4": np.int8,
    "uint1": np.uint8,
    "uint2": np.uint8,
    "uint3": np.uint8,
    "uint4": np.uint8,
    "uint6": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "bool": np.bool_,
}
FLOAT_TYPES = ("fp16", "fp32", "fp64")
OPAQUE_TYPES = ("str", "string", "dict", "list")  # classifier outputs: passed through unconverted


def load_program(path: str | os.PathLike):
    """Return (spec, pymil Program) of an .mlpackage without compiling it."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    from vitdeploy.formats.coreml import check_package_tree

    path = os.fspath(path)
    if not os.path.exists(path):
        raise VitdeployError(f"Core ML model not found: {path}")
    check_package_tree(path)
    mlmodel = ct.models.MLModel(path, skip_model_load=True)
    spec = mlmodel.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise VitdeployError(f"{path} is not an ML Program model (found {spec.WhichOneof('Type')})")
    prog = load_milproto(spec, spec.specificationVersion, file_weights_dir=mlmodel.weights_dir)
    return spec, prog


def main_function(prog):
    """The program's ``main`` function (its only one when it has no ``main``)."""
    if "main" in prog.functions:
        return prog.functions["main"]
    return next(iter(prog.functions.values()))


def dtype_name(var) -> str:
    """A MIL value's dtype as coremltools spells it (``fp16``, ``int32``, ...; ``list`` for a ListVar)."""
    from coremltools.converters.mil.mil import types

    try:
        dtype = var.dtype
    except ValueError:  # ListVar (e.g. classify's class labels) has no element dtype
        return "list"
    try:
        return types.builtin_to_string(dtype)
    except KeyError:
        return str(dtype)


def shape_of(var) -> list:
    """A MIL value's declared shape, -1 for each symbolic dim."""
    shape = getattr(var, "shape", ()) or ()
    return [int(d) if isinstance(d, (int, np.integer)) else -1 for d in shape]


def const_value(var) -> Any:
    """A const's value as float32 (for floats), its integer/bool dtype, or a str."""
    val = var.val
    if isinstance(val, str):
        return val
    if isinstance(val, (list, tuple)) and val and isinstance(val[0], str):
        return list(val)
    arr = np.asarray(val)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    return arr


def count_ops(function) -> dict[str, int]:
    """Op type -> number of ops in ``function``, const excluded."""
    counts: dict[str, int] = {}
    for op in function.operations:
        if op.op_type != "const":
            counts[op.op_type] = counts.get(op.op_type, 0) + 1
    return counts


def op_counts(path: str | os.PathLike) -> dict[str, int]:
    """Op type -> number of ops in the model's main function, const excluded."""
    _, prog = load_program(path)
    return count_ops(main_function(prog))
