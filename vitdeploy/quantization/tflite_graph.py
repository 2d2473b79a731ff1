"""What a .tflite graph holds, as the int8 search sees it: op types, float/int16 op counts, tensor
producers and consumers, and the groups of ops that may be kept float together.

TFLite's public Python API has no op list: the interpreter's ``_get_ops_details`` is the only reader.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

# Op types in the order they are usually fragile under int8 in ViTs/MobileViTs: tried first on ties.
FRAGILE_FIRST = ("LOGISTIC", "SOFTMAX", "HARD_SWISH", "GELU", "MEAN", "RSQRT", "SQUARED_DIFFERENCE", "SUB",
                 "MUL", "ADD", "BATCH_MATMUL", "DIV", "SUM", "TANH", "CONCATENATION")
# Layout-only ops. Their int8 version only copies values, yet keeping them float next to float
# compute ops matters: trained LeViT-192 with XNNPACK's float set (HARD_SWISH, BATCH_MATMUL,
# SOFTMAX) reaches worst-image cosine 0.63 with int8 RESHAPE/TRANSPOSE/SLICE between them and
# 0.985 with those float too. So they are candidates, tried last, and go float with that set.
_LAYOUT_OPS = {"RESHAPE", "TRANSPOSE", "SLICE", "STRIDED_SLICE", "PAD", "PADV2", "SPLIT", "PACK", "UNPACK",
               "GATHER", "GATHER_ND", "BROADCAST_TO", "SPACE_TO_DEPTH", "MIRROR_PAD"}
# Ops that hold the weights: int8 exists for them (size, speed), so they are never fallback
# candidates; when they are what breaks accuracy, dynamic-range quantization is the right mode.
_WEIGHT_OPS = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D_TRANSPOSE", "EMBEDDING_LOOKUP"}
_SKIP_IN_REPORT = {"QUANTIZE", "DEQUANTIZE"}


def _tensor_ops(model: bytes) -> tuple[dict[str, str], dict[str, list[tuple[str, str]]]]:
    """(output tensor name -> producing op type, tensor name -> [(consumer op type, its output name)])."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model))
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    producers, consumers = {}, {}
    for op in interpreter._get_ops_details():
        if not len(op["outputs"]):
            continue
        out = names.get(int(op["outputs"][0]), "")
        producers[out] = op["op_name"]
        for i in op["inputs"]:
            if int(i) >= 0:
                consumers.setdefault(names.get(int(i), ""), []).append((op["op_name"], out))
    return producers, consumers


def _op_scopes(model: bytes) -> dict[str, str]:
    """First output tensor name -> the op's scope as ai-edge-quantizer matches recipe regexes against it
    (``get_op_scope``: every output name followed by ";")."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model))
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    scopes = {}
    for op in interpreter._get_ops_details():
        outputs = [names.get(int(i), "") for i in op["outputs"] if int(i) >= 0]
        if outputs and outputs[0]:
            scopes[outputs[0]] = "".join(f"{name};" for name in outputs if name)
    return scopes


def scope_pattern(scopes) -> str:
    """A recipe regex matching exactly these op scopes. Anchored at both ends: litert-torch's fused tensor names
    contain ";", so the scope of a LayerNorm's first RESHAPE ("A;") is a prefix of the FULLY_CONNECTED's after
    it ("A;;B;1;"), and a pattern anchored at the start only kept those 18 FULLY_CONNECTED of MobileViT-XXS float."""
    return "^(?:" + "|".join(re.escape(scope) for scope in sorted(scopes)) + ")$"


@dataclass(frozen=True)
class FallbackGroup:
    """Ops that can be kept float together: one op type, or every op lowered from one module class."""

    name: str
    kind: str  # "op_type" | "module" | "tensor" (one op, by its output tensor)
    pattern: str  # op type name, or a regex over op output tensor names (the quantizer's op scope)
    op_counts: tuple  # ((op type, count), ...) the group covers in the float model

    def describe(self) -> dict:
        return {"kind": self.kind, "pattern": self.pattern, "ops": dict(self.op_counts)}


def fallback_candidates(float_model: bytes) -> dict[str, FallbackGroup]:
    """Op types and module classes (from litert-torch's tensor names) whose float fallback may help.

    Weight layers (conv, fully connected) are left out, and so is any module group containing
    them; layout-only ops come last (see ``_LAYOUT_OPS``).
    """
    from ai_edge_quantizer import qtyping

    supported = {name.value for name in qtyping.TFLOperationName} - {"*", "INPUT", "OUTPUT"}
    by_type: Counter = Counter()
    by_module: dict[str, Counter] = {}
    for op_type, tensor_name in _ops_with_output_names(float_model):
        if op_type not in supported:
            continue
        if op_type not in _WEIGHT_OPS:
            by_type[op_type] += 1
        for module in _leaf_module_classes(tensor_name):
            by_module.setdefault(module, Counter())[op_type] += 1
    groups = {op: FallbackGroup(op, "op_type", op, ((op, n),))
              for op, n in sorted(by_type.items(), key=lambda kv: _try_order(kv[0]))}
    for module, counts in sorted(by_module.items()):
        same_as_op_type = len(counts) == 1 and by_type.get(next(iter(counts))) == sum(counts.values())
        if module in groups or not counts or _WEIGHT_OPS & set(counts) or same_as_op_type \
                or set(counts) <= _LAYOUT_OPS:
            continue
        groups[module] = FallbackGroup(module, "module", rf"\.{re.escape(module)}_[^/;]*;",
                                       tuple(sorted(counts.items())))
    return groups


LAYOUT_NEXT_TO_FLOAT = "layout ops next to float ops"


def _layout_next_to(float_model: bytes, op_types: list[str]) -> FallbackGroup | None:
    """One group: the layout ops (``_LAYOUT_OPS``) connected to an op of ``op_types`` through layout
    ops only -- the reshapes/transposes around attention that int8 would quantize between float ops."""
    producers, consumers = _tensor_ops(float_model)
    inputs_of: dict[str, list[str]] = {}
    for tensor, users in consumers.items():
        for _, out in users:
            inputs_of.setdefault(out, []).append(tensor)
    found: set[str] = set()
    stack = [out for out, op in producers.items() if op in op_types]
    while stack:
        current = stack.pop()
        neighbours = [t for t in inputs_of.get(current, []) if t in producers] + \
            [out for _, out in consumers.get(current, [])]
        for n in neighbours:
            if producers.get(n) in _LAYOUT_OPS and n not in found:
                found.add(n)
                stack.append(n)
    if not found:
        return None
    counts = Counter(producers[n] for n in found)
    scopes = _op_scopes(float_model)
    return FallbackGroup(LAYOUT_NEXT_TO_FLOAT, "tensor", scope_pattern(scopes[n] for n in found if n in scopes),
                         tuple(sorted(counts.items())))


FLOAT_ISLANDS = "the rest of modules mostly float"


def _float_islands(float_model: bytes, op_types: list[str]) -> FallbackGroup | None:
    """One group: the other compute ops of each module instance at least half of whose compute ops (weight and
    layout ops aside) are of ``op_types``, so the module runs float from its input to its output with one
    QUANTIZE/DEQUANTIZE at each edge instead of a pair around every float piece. A MobileViT LayerNorm is MEAN,
    SQUARED_DIFFERENCE, MEAN, ADD, RSQRT, MUL, SUB, MUL, ADD; with the op types XNNPACK cannot run in int8 float,
    its MEANs and MULs stayed int8 between them. Trained MobileViT-XXS w8a8: 338 -> 71 QUANTIZE/DEQUANTIZE ops,
    1.06x faster (500 rounds interleaved), worst-image cosine 0.9849 -> 0.9827 (docs/int8-goals.md, "Second pass").
    Ops with a large float constant stay out (:data:`LARGE_CONSTANT`)."""
    producers, _ = _tensor_ops(float_model)
    weighty = _ops_with_large_constants(float_model)
    by_instance: dict[str, list[tuple[str, str]]] = {}
    for out, op in producers.items():
        if op in _WEIGHT_OPS or op in _LAYOUT_OPS or op in _SKIP_IN_REPORT or not out or out in weighty:
            continue
        by_instance.setdefault(out.split(";", 1)[0], []).append((out, op))  # "<path>/LayerNorm_norm1;7"
    found = []
    for ops in by_instance.values():
        floated = sum(op in op_types for _, op in ops)
        if 2 * floated >= len(ops) and floated < len(ops):
            found += [out for out, op in ops if op not in op_types]
    if not found:
        return None
    scopes = _op_scopes(float_model)
    counts = Counter(producers[n] for n in found)
    return FallbackGroup(FLOAT_ISLANDS, "tensor", scope_pattern(scopes[n] for n in found if n in scopes),
                         tuple(sorted(counts.items())))


# A constant input this large is stored float32 when its op is kept float: LeViT's attention-bias ADD takes a
# [1, 4, 196, 196] table (LeViT-128S w8a8: 8.3 -> 9.7 MB with those ADDs float), so such ops stay int8.
LARGE_CONSTANT = 4096


def _ops_with_large_constants(model: bytes) -> set[str]:
    """First output names of the ops taking a float constant input of more than ``LARGE_CONSTANT`` values."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model))
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    produced = {int(i) for op in ops for i in op["outputs"]} | {d["index"] for d in interpreter.get_input_details()}

    def large_constant(i: int) -> bool:
        d = details[i]
        return i not in produced and np.dtype(d["dtype"]).kind == "f" and int(np.prod(d["shape"])) > LARGE_CONSTANT

    return {details[int(op["outputs"][0])]["name"] for op in ops
            if len(op["outputs"]) and any(int(i) >= 0 and large_constant(int(i)) for i in op["inputs"])}


MATMULS_FED_BY_FLOAT = "matmuls fed by float ops"


def _matmuls_fed_by(float_model: bytes, op_types: list[str]) -> FallbackGroup | None:
    """One group: the BATCH_MATMULs taking an output of an op of ``op_types`` through layout ops only --
    attention's probabilities @ V after a float SOFTMAX. In int8 the probabilities get 256 levels in [0, 1]
    and most of them round to a few steps: trained LeViT-128S with HARD_SWISH/SOFTMAX float, worst-image
    cosine 0.989 with those matmuls int8, 0.9987 with them float (q @ k stays int8)."""
    producers, consumers = _tensor_ops(float_model)
    found, seen = set(), set()
    stack = [out for out, op in producers.items() if op in op_types]
    while stack:
        current = stack.pop()
        for op_type, out in consumers.get(current, []):
            if op_type == "BATCH_MATMUL":
                found.add(out)
            elif op_type in _LAYOUT_OPS and out not in seen:
                seen.add(out)
                stack.append(out)
    if not found:
        return None
    scopes = _op_scopes(float_model)
    return FallbackGroup(MATMULS_FED_BY_FLOAT, "tensor", scope_pattern(scopes[n] for n in found if n in scopes),
                         (("BATCH_MATMUL", len(found)),))


def _try_order(op_type: str) -> tuple:
    """Sort key: compute op types before layout ops, the usually fragile ones first."""
    order = FRAGILE_FIRST.index(op_type) if op_type in FRAGILE_FIRST else len(FRAGILE_FIRST)
    return op_type in _LAYOUT_OPS, order, op_type


def _leaf_module_classes(tensor_name: str) -> set[str]:
    """``.../torch.nn.modules.normalization.LayerNorm_norm2;3`` -> {"LayerNorm"} (fused names: several)."""
    classes = set()
    for part in tensor_name.split(";"):
        last = part.rsplit("/", 1)[-1].rsplit(".", 1)[-1]  # "LayerNorm_norm2" = class + "_" + attribute
        if "_" in last:
            classes.add(last.split("_", 1)[0])
    return {c for c in classes if c.isidentifier() and c[0].isupper()}  # class names, not "serving_default"


def _ops_with_output_names(model: bytes) -> list[tuple[str, str]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model))
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return [(op["op_name"], names.get(int(op["outputs"][0]), "")) for op in interpreter._get_ops_details()
            if len(op["outputs"])]


def op_types(model: bytes) -> Counter:
    """How many ops of each TFLite type the model has."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model))
    return Counter(op["op_name"] for op in interpreter._get_ops_details())  # the public API has no op list


def float_op_counts(model: bytes) -> dict[str, int]:
    """Op types that compute in float in ``model`` (float32/16 output), QUANTIZE/DEQUANTIZE excluded."""
    return _op_counts_by_output(model, lambda dtype: dtype.kind == "f")


def int16_op_counts(model: bytes) -> dict[str, int]:
    """Op types with int16 outputs (int16 activations) in ``model``, QUANTIZE/DEQUANTIZE excluded."""
    return _op_counts_by_output(model, lambda dtype: dtype == np.int16)


def _op_counts_by_output(model: bytes, keep: Callable[[np.dtype], bool]) -> dict[str, int]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=bytes(model))
    counts: Counter = Counter()
    for op in interpreter._get_ops_details():
        if op["op_name"] in _SKIP_IN_REPORT or not len(op["outputs"]):
            continue
        if keep(np.dtype(interpreter._get_tensor_details(int(op["outputs"][0]), 0)["dtype"])):
            counts[op["op_name"]] += 1
    return dict(sorted(counts.items()))
