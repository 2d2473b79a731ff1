"""An ExecuTorch ``.pte`` as the harnesses and ``vitdeploy package`` see it: file, sidecar, delegates, I/O.

A stand-in, on branch et-devices, for what ``vitdeploy/formats/executorch.py`` (written with the
converter on another branch) will own after the merge: the sidecar's name lives in ONE constant,
:data:`SIDECAR_SUFFIX`, so the merge changes one line. ``PTE_SUFFIX`` repeats the suffix of the
``executorch`` row that ``formats.FORMATS`` gains then (not edited here, to keep the merge clean).

Delegates and I/O are read from the program flatbuffer with executorch's own deserializer (no
runtime needed): the harness checks which compute unit a .pte can honour from its delegate ids
(``XnnpackBackend``, ``CoreMLBackend``), exactly the names the phones' ``MethodMetadata.backends``
/ ``backendNames`` report.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import VitdeployError

PTE_SUFFIX = ".pte"
# The metadata written beside ``model.pte`` by ``vitdeploy convert --target executorch``: ``model.pte.json``.
SIDECAR_SUFFIX = ".json"
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


def sidecar_path(pte: Path) -> Path:
    """Where the metadata of ``pte`` lives: ``model.pte`` -> ``model.pte.json``."""
    pte = Path(pte)
    return pte.with_name(pte.name + SIDECAR_SUFFIX)


def read_sidecar(pte: Path) -> dict | None:
    """The sidecar's JSON object, None when there is none; a one-line error when it is unreadable."""
    path = sidecar_path(pte)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise VitdeployError(f"{path}: not valid JSON ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise VitdeployError(f"{path}: the metadata must be a JSON object")
    return data


def read_program(pte: Path) -> dict:
    """``{"methods": {name: {"inputs": [...], "outputs": [...], "delegates": [...]}}}`` of a .pte.

    Inputs/outputs are ``{"shape", "dtype"}`` for tensors (dtype None for a type the protocol lacks);
    a non-tensor argument is ``{"shape": None, "dtype": None}``. One-line error for a file that is
    not an ExecuTorch program.
    """
    pte = Path(pte)
    if not pte.is_file():
        raise VitdeployError(f"{pte}: no such file")
    data = pte.read_bytes()
    # Bytes 4..8 of a program flatbuffer are its file identifier "ET" + two digits (schema version).
    if len(data) < 8 or data[4:6] != b"ET":
        raise VitdeployError(f"{pte} is not an ExecuTorch program (no 'ET' file identifier)")
    try:
        from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError as e:
        raise VitdeployError(f"reading a .pte needs executorch: pip install 'vitdeploy[executorch]' ({e})") from None
    try:
        parsed = deserialize_pte_binary(data)
        program = getattr(parsed, "program", parsed)
        methods = {}
        # A damaged flatbuffer can deserialize into None fields: walking them fails here, not later.
        for plan in program.execution_plan:
            methods[plan.name] = {"inputs": [_value(plan, i) for i in plan.inputs],
                                  "outputs": [_value(plan, i) for i in plan.outputs],
                                  "delegates": sorted({d.id for d in plan.delegates or []})}
    except Exception as e:  # noqa: BLE001 - the flatbuffer reader raises many types for a broken file
        raise VitdeployError(f"{pte}: not a readable ExecuTorch program ({type(e).__name__}: "
                             f"{str(e).strip().splitlines()[0][:160] if str(e).strip() else 'no detail'})") from None
    if not methods:
        raise VitdeployError(f"{pte}: not a readable ExecuTorch program (no methods)")
    return {"methods": methods}


def _value(plan, index: int) -> dict:
    val = plan.values[index].val
    if type(val).__name__ != "Tensor":
        return {"shape": None, "dtype": None}
    return {"shape": [int(s) for s in val.sizes], "dtype": SCALAR_TYPES.get(int(val.scalar_type))}


def forward_of(pte: Path) -> dict:
    """The ``forward`` method of :func:`read_program` (what the harnesses and helpers run)."""
    methods = read_program(pte)["methods"]
    if "forward" not in methods:
        raise VitdeployError(f"{pte} has no 'forward' method (methods: {', '.join(sorted(methods)) or 'none'})")
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
