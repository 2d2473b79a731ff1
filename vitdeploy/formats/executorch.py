"""The .pte (ExecuTorch program) file as vitdeploy writes and reads it: the metadata it carries.

A leaf of the pipeline: :mod:`vitdeploy.targets.executorch` writes through it; runtimes, parity and
profile read through it, never through the converter.

Metadata stored in the file
---------------------------
An ExecuTorch program can hold *constant methods*: methods that take nothing and return constant
values (``to_edge_transform_and_lower(..., constant_methods=...)``; ExecuTorch's own exports use them
for configuration, e.g. ``get_max_seq_len``). vitdeploy stores one, ``vitdeploy_metadata``, returning a
JSON string: the input spec (name, shape, dtype, layout, channel order), the full
:class:`~vitdeploy.preprocessing.Preprocessing`, precision and quantization report, labels, source
checksum, variant, vitdeploy version. So the artifact stays one file, written atomically, with no
sidecar to lose or mismatch; on a phone, ``module.execute("vitdeploy_metadata")`` returns the string,
and :func:`read_pte_metadata` reads it here with ExecuTorch's pure-Python flatbuffer reader (no
runtime, so a damaged file is a Python exception, never a native crash).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..diagnostics import describe, quiet
from ..errors import VitdeployError
from . import LAYOUT_PIXELS, LAYOUT_RAW  # noqa: F401 (re-exported: the layouts a .pte input declares)

METADATA_METHOD = "vitdeploy_metadata"  # the constant method holding our JSON
FORMAT_VERSION = 1
_MAGIC = b"ET"  # bytes 4..5 of every .pte flatbuffer (file identifier "ET12" today)


def constant_methods(config: dict) -> dict[str, str]:
    """The ``constant_methods`` argument that stores ``config`` (JSON-able) in the program."""
    if not isinstance(config, dict):
        raise VitdeployError("ExecuTorch metadata must be a dict")
    return {METADATA_METHOD: json.dumps({"format": FORMAT_VERSION, **config}, sort_keys=True, default=str)}


def read_pte_metadata(path_or_bytes) -> dict:
    """``{"vitdeploy": dict | None, "labels": list | None, "methods": [names]}`` of a .pte file or its bytes.

    ``vitdeploy`` is None for a program vitdeploy did not write (no ``vitdeploy_metadata`` method).
    Anything unreadable is a one-line :class:`VitdeployError`.
    """
    if isinstance(path_or_bytes, (str, Path)):
        path = Path(path_or_bytes)
        if not path.is_file():
            raise VitdeployError(f"{path}: {'a directory, not' if path.is_dir() else 'no such'} .pte file")
        data = path.read_bytes()
        name = str(path)
    else:
        data, name = bytes(path_or_bytes), "model"
    if len(data) < 8 or data[4:6] != _MAGIC:
        raise VitdeployError(f"{name}: not an ExecuTorch program (no 'ET' file identifier)")
    program = _program(data, name)
    plans = {plan.name: plan for plan in program.execution_plan}
    config = None
    if METADATA_METHOD in plans:
        config = _decode_config(plans[METADATA_METHOD], name)
    labels = config.get("labels") if isinstance(config, dict) else None
    if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise VitdeployError(f"{name}: damaged vitdeploy metadata (labels are not a list of strings)")
    census = _census(plans["forward"]) if "forward" in plans else None
    return {"vitdeploy": config, "labels": labels, "methods": sorted(plans), "census": census}


def _census(plan) -> dict:
    """What ``forward`` runs: delegate calls by backend, and the kernels left to ExecuTorch's portable ops
    (each one splits the delegated graph, as TFLite's built-in kernels do)."""
    from collections import Counter

    delegate_calls: Counter = Counter()
    kernels: Counter = Counter()
    for chain in plan.chains:
        for instruction in chain.instructions:
            args = instruction.instr_args
            if hasattr(args, "delegate_index"):
                delegate_calls[plan.delegates[args.delegate_index].id] += 1
            elif hasattr(args, "op_index"):
                op = plan.operators[args.op_index]
                kernels[f"{op.name}.{op.overload}" if op.overload else op.name] += 1
    return {"delegate_calls": dict(delegate_calls.most_common()), "kernels": dict(kernels.most_common())}


def _program(data: bytes, name: str):
    """The deserialized flatbuffer Program (ExecuTorch's Python schema classes)."""
    with quiet():  # importing exir pulls in torchao, which logs about CUDA kernels it cannot load
        from executorch.exir._serialize._program import deserialize_pte_binary
    try:
        return deserialize_pte_binary(data).program
    except Exception as e:  # untrusted flatbuffer: any failure to parse it is the file's fault
        raise VitdeployError(f"{name}: not a readable ExecuTorch program ({describe(e)})") from None


def _decode_config(plan, name: str) -> dict:
    values = list(plan.values or [])
    text = getattr(getattr(values[0], "val", None), "string_val", None) if len(values) == 1 else None
    if not isinstance(text, str):
        raise VitdeployError(f"{name}: damaged vitdeploy metadata ({METADATA_METHOD} does not return one string)")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise VitdeployError(f"{name}: damaged vitdeploy metadata (not JSON: {describe(e)})") from None
    if not isinstance(config, dict):
        raise VitdeployError(f"{name}: damaged vitdeploy metadata (a JSON {type(config).__name__}, not an object)")
    return config
