"""``vitdeploy profile MODEL.tflite --ops``: every op timed alone on its kernel and classed by arithmetic.

The model is written here with LiteRT's own flatbuffer schema, random weights: float input -> QUANTIZE -> int8
FULLY_CONNECTED -> DEQUANTIZE -> float SOFTMAX -> ARG_MAX (which XNNPACK does not take: built-in kernel).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vitdeploy.cli import main

IN, OUT = 16, 8


def _tensor(schema, name, shape, dtype, buffer=0, scale=None, zero_point=0):
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name.encode(), list(shape), dtype, buffer
    if scale is not None:
        t.quantization = schema.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [float(scale)], [int(zero_point)]
    return t


def _op(schema, code, inputs, outputs, options_type=0, options=None):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, list(inputs), list(outputs)
    op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def mixed_model() -> bytes:
    """QUANTIZE, int8 FULLY_CONNECTED (random int8 weights, int32 bias), DEQUANTIZE, SOFTMAX, ARG_MAX."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    rng = np.random.default_rng(0)
    T, B = schema.TensorType, schema.BuiltinOperator
    model, graph = schema.ModelT(), schema.SubGraphT()
    model.version = 3
    model.operatorCodes = []
    for builtin in (B.QUANTIZE, B.FULLY_CONNECTED, B.DEQUANTIZE, B.SOFTMAX, B.ARG_MAX):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        code.version = 1
        model.operatorCodes.append(code)
    model.buffers = [schema.BufferT() for _ in range(4)]
    model.buffers[1].data = rng.integers(-127, 128, (OUT, IN)).astype(np.int8).view(np.uint8).ravel()
    model.buffers[2].data = rng.integers(-500, 500, OUT).astype(np.int32).view(np.uint8).ravel()
    model.buffers[3].data = np.array([1], np.int32).view(np.uint8)
    s_in, s_w = 1 / 127, 0.01
    graph.tensors = [
        _tensor(schema, "x", (1, IN), T.FLOAT32),
        _tensor(schema, "xq", (1, IN), T.INT8, scale=s_in),
        _tensor(schema, "w", (OUT, IN), T.INT8, buffer=1, scale=s_w),
        _tensor(schema, "b", (OUT,), T.INT32, buffer=2, scale=s_in * s_w),
        _tensor(schema, "yq", (1, OUT), T.INT8, scale=0.05),
        _tensor(schema, "y", (1, OUT), T.FLOAT32),
        _tensor(schema, "p", (1, OUT), T.FLOAT32),
        _tensor(schema, "axis", (1,), T.INT32, buffer=3),
        _tensor(schema, "top", (1,), T.INT32),
    ]
    fc, softmax, argmax = schema.FullyConnectedOptionsT(), schema.SoftmaxOptionsT(), schema.ArgMaxOptionsT()
    softmax.beta, argmax.outputType = 1.0, T.INT32
    graph.operators = [
        _op(schema, 0, [0], [1]),
        _op(schema, 1, [1, 2, 3], [4], schema.BuiltinOptions.FullyConnectedOptions, fc),
        _op(schema, 2, [4], [5]),
        _op(schema, 3, [5], [6], schema.BuiltinOptions.SoftmaxOptions, softmax),
        _op(schema, 4, [6, 7], [8], schema.BuiltinOptions.ArgMaxOptions, argmax),
    ]
    graph.inputs, graph.outputs = [0], [8]
    model.subgraphs = [graph]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    path = tmp_path_factory.mktemp("ops") / "mixed.tflite"
    path.write_bytes(mixed_model())
    return path


def test_every_op_gets_a_row_classed_by_arithmetic_and_kernel(mixed):
    result = CliRunner().invoke(main, ["profile", str(mixed), "--ops", "--json", "--runs", "3", "--warmup", "1",
                                       "--threads", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    rows = {r["index"]: r for r in data["ops"]}
    assert sorted(rows) == [0, 1, 2, 3, 4] and not data["untimed"]
    got = {r["op"]: (r["class"], r["kernel"]) for r in rows.values()}
    assert got == {"QUANTIZE": ("q/dq", "XNNPACK"), "FULLY_CONNECTED": ("int8", "XNNPACK"),
                   "DEQUANTIZE": ("q/dq", "XNNPACK"), "SOFTMAX": ("float", "XNNPACK"), "ARG_MAX": ("float", "builtin")}
    assert all(r["ms"] >= 0 and "note" not in r for r in rows.values())  # each op ran on its whole-model kernel
    assert data["ops_sum_ms"] == pytest.approx(sum(data["classes_ms"].values()), abs=1e-3)
    assert data["unaccounted_ms"] == pytest.approx(data["whole_ms"] - data["ops_sum_ms"], abs=1e-3)
    assert data["partitions"] == 1 and sum(g["count"] for g in data["by_type"]) == 5


def test_a_single_op_model_keeps_the_ops_constants_and_quantization(mixed):
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    from vitdeploy.op_profile import single_op_model

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(mixed.read_bytes()))
    content, live = single_op_model(model, 1)  # the int8 FULLY_CONNECTED: weights and bias kept, xq its one input
    assert live == [1]
    interp = Interpreter(model_content=content)
    interp.allocate_tensors()
    (inp,), (out,) = interp.get_input_details(), interp.get_output_details()
    assert inp["dtype"] == np.int8 and inp["quantization"][0] == pytest.approx(1 / 127)
    assert out["dtype"] == np.int8 and out["quantization"] == pytest.approx((0.05, 0))
    x = np.arange(-8, 8, dtype=np.int8).reshape(1, IN)
    interp.set_tensor(inp["index"], x)
    interp.invoke()
    w = np.frombuffer(model.buffers[1].data.tobytes(), np.int8).reshape(OUT, IN).astype(np.int64)
    b = np.frombuffer(model.buffers[2].data.tobytes(), np.int32).astype(np.int64)
    want = np.clip(np.round((x.astype(np.int64) @ w.T + b) * (1 / 127 * 0.01) / 0.05), -128, 127)
    assert np.abs(interp.get_tensor(out["index"]).astype(np.int64) - want).max() <= 1


def test_the_table_names_each_arithmetic_and_the_whole_model(mixed):
    result = CliRunner().invoke(main, ["profile", str(mixed), "--ops", "--runs", "2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    for word in ("int8", "float", "q/dq", "FULLY_CONNECTED", "builtin", "whole model", "not in any op"):
        assert word in result.output


@pytest.mark.parametrize("content, args, message", [
    (b"not a model at all", [], "not a .tflite model"),
    (None, ["--device", "pixel7"], "--ops profiles one .tflite on this host: drop --device"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, mixed, content, args, message):
    path = mixed
    if content is not None:
        path = tmp_path / "bad.tflite"
        path.write_bytes(content)
    result = CliRunner().invoke(main, ["profile", str(path), "--ops", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1
