"""The .pte (ExecuTorch program) file as vitdeploy writes and reads it: the metadata it carries, its methods.

A leaf of the pipeline: :mod:`vitdeploy.targets.executorch` writes through it; runtimes, parity, profile,
the device harnesses and ``vitdeploy package`` read through it, never through the converter.

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

Methods, delegates, I/O
-----------------------
:func:`read_program` / :func:`forward_of` read each method's inputs, outputs and delegate ids from the
same flatbuffer: the harnesses check which compute unit a .pte can honour from its delegates
(:data:`XNNPACK_BACKEND`, :data:`COREML_BACKEND`, the names the phones' ``MethodMetadata.backends`` /
``backendNames`` report), with :func:`unit_mismatch`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..diagnostics import describe, quiet
from ..errors import VitdeployError
from ..untrusted import file_of, reading
from . import FORMATS, LAYOUT_PIXELS, LAYOUT_RAW  # noqa: F401 (layouts re-exported: those a .pte input declares)

PTE_SUFFIX = FORMATS["executorch"].suffix
METADATA_METHOD = "vitdeploy_metadata"  # the constant method holding our JSON
FORMAT_VERSION = 1
_MAGIC = b"ET"  # bytes 4..5 of every .pte flatbuffer (file identifier "ET12" today)
# The ExecuTorch runtime the harness apps and generated helpers pin (Maven org.pytorch:executorch-android,
# Swift package branch swiftpm-<version>): the exporter's version, since a .pte needs a runtime at least
# as new as what wrote it (tests/test_devices.py checks both apps against the installed executorch).
RUNTIME_VERSION = "1.5.1"
XNNPACK_BACKEND = "XnnpackBackend"
COREML_BACKEND = "CoreMLBackend"
# executorch's ScalarType codes (runtime/core/portable_type/scalar_type.h) -> the protocol's dtype names.
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool"}


def is_pte(path) -> bool:
    return Path(path).suffix.lower() == PTE_SUFFIX


def constant_methods(config: dict) -> dict[str, str]:
    """The ``constant_methods`` argument that stores ``config`` (JSON-able) in the program."""
    if not isinstance(config, dict):
        raise VitdeployError("ExecuTorch metadata must be a dict")
    return {METADATA_METHOD: json.dumps({"format": FORMAT_VERSION, **config}, sort_keys=True, default=str)}


def with_metadata_in_place(program: bytes, config: dict, updated: dict) -> bytes | None:
    """``program`` (written with ``constant_methods(config)``) with its metadata string replaced by ``updated``'s,
    in place: the new JSON padded with spaces to the old length (the flatbuffer's string length is unchanged,
    and JSON allows trailing blanks). None when the new text is longer or the old one is not found exactly once:
    the caller lowers again. Lets a converter store a verdict measured on the lowered program itself."""
    old = constant_methods(config)[METADATA_METHOD].encode()
    new = constant_methods(updated)[METADATA_METHOD].encode()
    if len(new) > len(old) or program.count(old) != 1:
        return None
    return program.replace(old, new + b" " * (len(old) - len(new)))


def read_pte_metadata(path_or_bytes) -> dict:
    """``{"vitdeploy": dict | None, "labels": list | None, "methods": [names], "census": dict | None,
    "forward": its inputs/outputs/delegates (as :func:`read_program`) | None}`` of a .pte file or its bytes,
    from one parse.

    ``vitdeploy`` is None for a program vitdeploy did not write (no ``vitdeploy_metadata`` method).
    Anything unreadable is a one-line :class:`VitdeployError`.
    """
    with reading(file_of(path_or_bytes)):
        plans, name = _plans(path_or_bytes)
        config = None
        if METADATA_METHOD in plans:
            config = _decode_config(plans[METADATA_METHOD], name)
        labels = config.get("labels") if isinstance(config, dict) else None
        if labels is not None and not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise VitdeployError(f"{name}: damaged vitdeploy metadata (labels are not a list of strings)")
        census = _census(plans["forward"]) if "forward" in plans else None
        forward = _methods(plans, name).get("forward")
        outputs = (forward or {}).get("outputs") or []
        shape = outputs[0].get("shape") if len(outputs) == 1 else None
        if labels is not None and shape and len(labels) != shape[-1]:
            raise VitdeployError(f"{name}: damaged vitdeploy metadata ({len(labels)} labels for {shape[-1]} classes)")
        return {"vitdeploy": config, "labels": labels, "methods": sorted(plans), "census": census,
                "forward": forward}


def read_program(path_or_bytes) -> dict:
    """``{"methods": {name: {"inputs": [...], "outputs": [...], "delegates": [...]}}}`` of a .pte.

    Inputs/outputs are ``{"shape", "dtype"}`` for tensors (dtype None for a type the protocol lacks);
    a non-tensor argument (or a constant method's value) is ``{"shape": None, "dtype": None}``.
    One-line error for a file that is not an ExecuTorch program.
    """
    with reading(file_of(path_or_bytes)):
        return {"methods": _methods(*_plans(path_or_bytes))}


def _methods(plans: dict, name: str) -> dict:
    """{method: {"inputs", "outputs", "delegates"}} of parsed execution plans."""
    try:  # a damaged flatbuffer can deserialize into None fields: walking them fails here, not later
        return {plan.name: {"inputs": [_value(plan, i) for i in plan.inputs],
                            "outputs": [_value(plan, i) for i in plan.outputs],
                            "delegates": sorted({d.id for d in plan.delegates or []})}
                for plan in plans.values()}
    except Exception as e:  # noqa: BLE001 - untrusted flatbuffer: any failure to walk it is the file's fault
        raise _unreadable(name, e) from None


def forward_of(path_or_bytes) -> dict:
    """The ``forward`` method of :func:`read_program` (what the harnesses and helpers run)."""
    methods = read_program(path_or_bytes)["methods"]
    if "forward" not in methods:
        raise VitdeployError(f"{_name(path_or_bytes)}: no 'forward' method (methods: {', '.join(sorted(methods))})")
    return methods["forward"]


def unit_mismatch(platform: str, unit: str, delegates: list[str]) -> str | None:
    """Why compute unit ``unit`` cannot run a .pte with these delegates on ``platform`` (None: it can).

    The same rule the harnesses apply to ``MethodMetadata.backends`` / ``backendNames`` on the phone:
    ``coreml`` needs a Core ML-delegated program; ``cpu`` needs one without Core ML parts (those run
    only through Core ML, so timing them would not be the CPU's figure, and Android has no Core ML).
    """
    coreml = COREML_BACKEND in delegates
    if unit == "coreml" and not coreml:
        return (f"compute unit coreml needs a .pte lowered with the Core ML delegate; this one has "
                f"{', '.join(delegates) or 'no delegate'} (use cpu)")
    if unit == "cpu" and coreml:
        where = "only iOS runs it" if platform == "android" else "use coreml"
        return f"this .pte was lowered with the Core ML delegate ({COREML_BACKEND}); {where}"
    return None


def _name(path_or_bytes) -> str:
    return str(path_or_bytes) if isinstance(path_or_bytes, (str, Path)) else "model"


def _plans(path_or_bytes) -> tuple[dict, str]:
    """``({method name: ExecutionPlan}, name for errors)``: the one place a .pte is opened, checked and parsed."""
    name = _name(path_or_bytes)
    if isinstance(path_or_bytes, (str, Path)):
        from ..untrusted import ARTIFACT_LIMIT, read_side_file

        path = Path(path_or_bytes)
        if not path.is_file():
            raise VitdeployError(f"{path}: {'a directory, not' if path.is_dir() else 'no such'} .pte file")
        data = read_side_file(path, ARTIFACT_LIMIT, ".pte program")
    else:
        data = bytes(path_or_bytes)
    if len(data) >= 8 and data[4:8] == b"TFL3":
        raise VitdeployError(f"{name}: a TFLite model (.tflite), not an ExecuTorch program (renamed?)")
    if len(data) < 8 or data[4:6] != _MAGIC:
        raise VitdeployError(f"{name}: not an ExecuTorch program (no 'ET' file identifier)")
    try:
        with quiet():  # importing exir pulls in torchao, which logs about CUDA kernels it cannot load
            from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError as e:
        raise VitdeployError(f"reading a .pte needs executorch: pip install 'vitdeploy[executorch]' ({e})") from None
    try:
        plans = {plan.name: plan for plan in deserialize_pte_binary(data).program.execution_plan}
    except Exception as e:  # noqa: BLE001 - untrusted flatbuffer: any failure to parse it is the file's fault
        raise _unreadable(name, e) from None
    if not plans:
        raise VitdeployError(f"{name}: not a readable ExecuTorch program (no methods)")
    return plans, name


def _unreadable(name: str, e: Exception) -> VitdeployError:
    return VitdeployError(f"{name}: not a readable ExecuTorch program ({describe(e)})")


def _value(plan, index: int) -> dict:
    val = plan.values[index].val
    if type(val).__name__ != "Tensor":
        return {"shape": None, "dtype": None}
    return {"shape": [int(s) for s in val.sizes], "dtype": SCALAR_TYPES.get(int(val.scalar_type))}


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
