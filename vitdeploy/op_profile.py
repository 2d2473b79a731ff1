"""``vitdeploy profile MODEL.tflite --ops``: where a .tflite's host time goes, per op type and arithmetic.

LiteRT 2.3's Python wheel reaches no op profiler: its ``Interpreter`` takes no profiler (the
``experimental_force_delegate_node_profiling`` flag only matters to one installed from C++), the
compiled-model API has none either, and the ``benchmark_model`` binary is not shipped. So this
measures instead, and says so in its output:

* every op of the main subgraph is cut out into a model of its own (its live inputs become the
  model's inputs, its constant tensors keep their buffers, every tensor keeps its shape, type and
  quantization parameters), fed the values it sees in the whole model (one run with every tensor
  kept, no delegate), and timed where the whole model runs it: under XNNPACK with the same thread
  count when XNNPACK takes it in the whole model
  (:func:`vitdeploy.runtimes.tflite.delegated_nodes`), on TFLite's built-in kernels otherwise;
* each op's time is the minimum of ``runs`` invocations (back to back within each of a few rounds that
  interleave every op and the whole model) minus the cost of invoking a one-element model the same way
  (Python call, delegate entry). The minimum, not the median: on a shared machine a 15 ms whole model is
  preempted in most runs and a 20 us op in almost none, so medians would charge the load to the whole
  model (measured here at load 6 on 2 cores: LeViT-128S fp32 median 22 ms, minimum 7.4 ms, its ops 8.1 ms);
* rows are classed by arithmetic (``int8``/``int16``: a live quantized tensor in or out; ``float``;
  ``q/dq``: QUANTIZE and DEQUANTIZE; ``other``: integer/bool bookkeeping) and kernel.

``whole - sum of ops`` is what the
op times do not hold: the crossings between XNNPACK partitions and built-in kernels, plus what a
single-op model cannot reproduce (XNNPACK fusing neighbours, a cold cache for the op's weights
inside the whole model, the op's weights warm in cache when timed alone). It can be negative.
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import numpy as np

from .errors import VitdeployError
from .untrusted import reading

QDQ = ("QUANTIZE", "DEQUANTIZE")
CLASSES = ("int8", "int16", "float", "q/dq", "other")
_INT = {"INT8": "int8", "UINT8": "int8", "INT16": "int16"}
_FLOAT = ("FLOAT32", "FLOAT16", "BFLOAT16", "FLOAT64")


def profile_ops(path: str | Path, *, runs: int = 50, warmup: int = 5, threads: int = 2) -> dict:
    """Per-op host times of a .tflite (see the module docstring for what is measured)."""
    from .runtimes.tflite import delegated_nodes

    if runs < 1 or warmup < 0 or threads < 1:
        raise VitdeployError("--runs and --threads must be >= 1, --warmup >= 0")
    path = Path(path)
    with reading(path):
        content = _read_checked(path)
        model = _unpack(content, path)
        graph = model.subgraphs[0]
        whole = _interpreter(content, threads, delegate=True, name=str(path))
        delegated = delegated_nodes(whole)
        values = _tensor_values(content)
    timed = {"whole": whole.invoke}
    for kernel in ("XNNPACK", "builtin"):
        timed[f"overhead {kernel}"] = _interpreter(_null_model(), threads, kernel == "XNNPACK").invoke
    rows = []
    for i in range(len(graph.operators)):
        row, invoke = _op_row(model, i, values, threads, i in delegated)
        rows.append(row)
        if invoke is not None:
            timed[i] = invoke
    samples = _time_rounds(timed, runs, warmup)
    overhead = {kernel: min(samples[f"overhead {kernel}"]) for kernel in ("XNNPACK", "builtin")}
    for row in rows:
        if row["index"] in samples:
            row["ms"] = round(max(0.0, min(samples[row["index"]]) - overhead[row["kernel"]]), 4)
    return _summary(path, rows, samples["whole"], overhead, threads, runs, warmup, whole)


# ----------------------------------------------------------------------------- single-op models


def single_op_model(model, index: int) -> tuple[bytes, list[int]]:
    """(.tflite bytes holding only op ``index`` of the main subgraph, its live input tensor indices in the
    whole model, in the small model's input order)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    op = graph.operators[index]
    small, sub = schema.ModelT(), schema.SubGraphT()
    small.version, small.description = model.version, b"vitdeploy single-op"
    small.operatorCodes = [model.operatorCodes[op.opcodeIndex]]
    small.buffers, sub.tensors, mapping, live = [schema.BufferT()], [], {}, []
    for t in [int(t) for t in (op.inputs if op.inputs is not None else [])] + [int(t) for t in op.outputs]:
        if t < 0 or t in mapping:
            continue
        tensor = copy.copy(graph.tensors[t])
        data = _buffer_data(model, tensor)
        if data is not None:
            small.buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(small.buffers) - 1
        else:
            tensor.buffer = 0
            if t not in [int(o) for o in op.outputs]:
                live.append(t)
        mapping[t] = len(sub.tensors)
        sub.tensors.append(tensor)
    one = copy.copy(op)
    one.opcodeIndex = 0
    one.inputs = [mapping[int(t)] if int(t) >= 0 else -1 for t in (op.inputs if op.inputs is not None else [])]
    one.outputs = [mapping[int(t)] for t in op.outputs]
    one.intermediates = None
    sub.operators, sub.inputs, sub.outputs = [one], [mapping[t] for t in live], list(one.outputs)
    small.subgraphs = [sub]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(small)), live


def classify(model, index: int) -> str:
    """The arithmetic op ``index`` runs in: ``q/dq`` (QUANTIZE, DEQUANTIZE), ``int8``/``int16`` (a live
    quantized tensor in or out), ``float`` (live float tensors, int8 weights or not), else ``other``."""
    graph = model.subgraphs[0]
    op = graph.operators[index]
    if op_name(model, op) in QDQ:
        return "q/dq"
    types = {_type_name(graph.tensors[int(t)].type)
             for t in list(op.inputs if op.inputs is not None else []) + list(op.outputs)
             if int(t) >= 0 and _buffer_data(model, graph.tensors[int(t)]) is None}
    for name in ("INT16", "INT8", "UINT8"):
        if name in types:
            return _INT[name]
    return "float" if types & set(_FLOAT) else "other"


def op_name(model, op) -> str:
    """The op's builtin name (``FULLY_CONNECTED``) or its custom code."""
    from ai_edge_litert import schema_py_generated as schema

    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (code.customCode or b"CUSTOM").decode(errors="replace")
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(builtin, f"op{builtin}")


def _op_row(model, index, values, threads, delegated) -> tuple[dict, object]:
    """(the op's row, untimed yet; the invoke of its single-op model on the whole model's kernel, or None
    with the reason in the row)."""
    name = op_name(model, model.subgraphs[0].operators[index])
    row = {"index": index, "op": name, "class": classify(model, index), "kernel": "XNNPACK" if delegated else "builtin",
           "ms": None}
    try:
        content, live = single_op_model(model, index)
        interp = _interpreter(content, threads, delegate=delegated, name=f"op {index} ({name})")
        for detail, t in zip(interp.get_input_details(), live):
            interp.set_tensor(detail["index"], values.get(t, np.zeros(detail["shape"], detail["dtype"])))
    except VitdeployError as e:
        row["error"] = str(e)
        return row, None
    alone = any(op["op_name"] == "DELEGATE" for op in interp._get_ops_details())
    if alone != delegated:  # XNNPACK decides per node; a difference here would make that op's row suspect
        row["note"] = "XNNPACK takes it alone" if alone else "XNNPACK does not take it alone"
    return row, interp.invoke


def _null_model() -> bytes:
    """A one-element float ADD: what invoking any model costs (Python call, delegate entry) and nothing else."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model, graph, code = schema.ModelT(), schema.SubGraphT(), schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    model.version, model.operatorCodes, model.buffers = 3, [code], [schema.BufferT()]
    graph.tensors = []
    for name in (b"x", b"y"):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.FLOAT32, 0, name
        graph.tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    graph.operators, graph.inputs, graph.outputs = [op], [0], [1]
    model.subgraphs = [graph]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ----------------------------------------------------------------------------- running


def _read_checked(path: Path) -> bytes:
    from .formats import FORMATS, format_of
    from .formats.tflite import require_tflite
    from .runtimes.tflite import check_loadable

    if format_of(path) is not FORMATS["tflite"]:
        raise VitdeployError(f"{path}: --ops profiles a .tflite model (LiteRT), not '{path.suffix or path.name}'")
    if not path.is_file():
        raise VitdeployError(f"{path}: no such file")
    content = path.read_bytes()
    require_tflite(content, str(path))
    check_loadable(path, content)  # a damaged flatbuffer can crash LiteRT: probed in a child first
    return content


def _unpack(content: bytes, path: Path):
    from ai_edge_litert.tools import flatbuffer_utils

    from .diagnostics import first_line

    try:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    except Exception as e:  # untrusted flatbuffer: any parse failure is the file's
        raise VitdeployError(f"{path}: not a readable .tflite model ({first_line(e)})") from None
    if not model.subgraphs or not model.subgraphs[0].operators:
        raise VitdeployError(f"{path}: no ops in its main subgraph")
    return model


def _interpreter(content: bytes, threads: int, delegate: bool, name: str = "model"):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from .diagnostics import first_line, native_quiet

    resolver = OpResolverType.AUTO if delegate else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        with native_quiet():
            interp = Interpreter(model_content=content, num_threads=int(threads),
                                 experimental_op_resolver_type=resolver)
            interp.allocate_tensors()
    except Exception as e:  # LiteRT's verifier/allocator: ValueError, RuntimeError
        raise VitdeployError(f"{name}: LiteRT cannot load it ({first_line(e)})") from None
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    return interp


def _tensor_values(content: bytes) -> dict[int, np.ndarray]:
    """Every tensor's value in one run of the whole model on a seeded random input (built-in kernels, all kept)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from .diagnostics import native_quiet

    with native_quiet():
        interp = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            x = rng.uniform(0, 1, d["shape"])
        else:
            info = np.iinfo(dtype)
            x = rng.integers(max(info.min, -128), min(info.max, 127) + 1, d["shape"])
        interp.set_tensor(d["index"], x.astype(dtype))
    interp.invoke()
    values = {}
    for d in interp.get_tensor_details():
        try:
            values[d["index"]] = interp.get_tensor(d["index"])
        except ValueError:  # a tensor with no data (optional input, freed scratch)
            pass
    return values


def _time_rounds(timed: dict, runs: int, warmup: int, rounds: int = 5) -> dict[object, list[float]]:
    """Milliseconds of ``runs`` calls of each of ``timed``'s invokes, in ``rounds`` interleaved rounds (a change in
    load hits all alike); within a round an invoke runs back to back after a warm call, its thread pool kept warm
    as a whole model keeps it between its ops. The whole model gets three times the runs: its minimum is what a
    shared machine blurs most."""
    for invoke in timed.values():
        for _ in range(warmup):
            invoke()
    rounds = max(1, min(rounds, runs))
    samples: dict[object, list[float]] = {key: [] for key in timed}
    for r in range(rounds):
        for key, invoke in timed.items():
            n = (runs * (3 if key == "whole" else 1)) // rounds + (r < runs % rounds)
            invoke()
            for _ in range(n):
                start = time.perf_counter_ns()
                invoke()
                samples[key].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def _buffer_data(model, tensor):
    """The constant data of ``tensor`` (numpy uint8) or None when it is a live tensor."""
    buffer = model.buffers[tensor.buffer] if 0 < tensor.buffer < len(model.buffers) else None
    data = None if buffer is None else buffer.data
    return data if data is not None and len(data) else None


def _type_name(value: int) -> str:
    from ai_edge_litert import schema_py_generated as schema

    return {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}.get(int(value), str(value))


# ----------------------------------------------------------------------------- summary and table


def _summary(path, rows, whole_samples, overhead, threads, runs, warmup, whole) -> dict:
    from .devices import host_info
    from .runtimes.tflite import delegation_census_of

    timed = [r for r in rows if r["ms"] is not None]
    ops_sum = sum(r["ms"] for r in timed)
    whole_ms = min(whole_samples) - overhead["XNNPACK"]
    groups: dict[tuple, dict] = {}
    for r in timed:
        g = groups.setdefault((r["class"], r["op"], r["kernel"]), {"class": r["class"], "op": r["op"],
                                                                    "kernel": r["kernel"], "count": 0, "ms": 0.0})
        g["count"] += 1
        g["ms"] += r["ms"]
    by_type = sorted(groups.values(), key=lambda g: -g["ms"])
    for g in by_type:
        g["ms"] = round(g["ms"], 4)
        g["share_of_whole"] = round(g["ms"] / whole_ms, 4) if whole_ms > 0 else None
    classes = {c: round(sum(r["ms"] for r in timed if r["class"] == c), 4) for c in CLASSES}
    return {"kind": "op-profile", "model": str(path), "device": "host", "host": host_info(), "threads": threads,
            "runs": runs, "warmup": warmup, "partitions": delegation_census_of(whole)["partitions"],
            "whole_ms": round(whole_ms, 4), "whole_median_ms": round(statistics.median(whole_samples), 4),
            "ops_sum_ms": round(ops_sum, 4),
            "unaccounted_ms": round(whole_ms - ops_sum, 4),
            "invoke_overhead_ms": {k: round(v, 4) for k, v in overhead.items()},
            "classes_ms": classes, "by_type": by_type, "ops": rows,
            "untimed": [r for r in rows if r["ms"] is None],
            "method": "each op cut into a single-op model (same tensors, constants, quantization), fed its values "
                      "from the whole model, timed on the kernel the whole model runs it on (XNNPACK or built-in); "
                      "every time is the minimum over the runs (the uncontended time on a shared machine), "
                      "less the invoke overhead of a one-element model; ops and whole model timed interleaved"}


def format_ops(result: dict) -> str:
    """The table of :func:`profile_ops`: one row per (arithmetic, op type, kernel), then the totals."""
    whole = result["whole_ms"]

    def pct(ms):
        return f"{100 * ms / whole:.1f}%" if whole > 0 else "-"

    table = [("arithmetic", "op", "kernel", "count", "ms", "of whole")]
    table += [(g["class"], g["op"], g["kernel"], str(g["count"]), f"{g['ms']:.3f}", pct(g["ms"]))
              for g in result["by_type"]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(widths[i]) if i < 3 else c.rjust(widths[i]) for i, c in enumerate(row))
             for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines += [f"{c:<6} {ms:8.3f} ms  {pct(ms):>6}" for c, ms in result["classes_ms"].items() if ms]
    lines.append(f"sum of ops {result['ops_sum_ms']:.3f} ms; whole model {whole:.3f} ms (median "
                 f"{result['whole_median_ms']:.3f}); not in any op: {result['unaccounted_ms']:.3f} ms "
                 f"({pct(result['unaccounted_ms'])}: {result['partitions']} XNNPACK partition(s) and their crossings, "
                 "fusion, cache)")
    over = result["invoke_overhead_ms"]
    lines.append(f"host, {result['threads']} threads, minimum of {result['runs']} runs per op; invoke overhead "
                 f"subtracted: {1000 * over['XNNPACK']:.1f} us (XNNPACK), {1000 * over['builtin']:.1f} us (built-in)")
    lines.append("measured: " + result["method"])
    lines += [f"warning: op {r['index']} ({r['op']}) not timed: {r['error']}" for r in result["untimed"]]
    return "\n".join(lines)
