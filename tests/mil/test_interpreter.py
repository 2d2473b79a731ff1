"""MILInterpreter (vitdeploy/runtimes/mil/interpreter.py): fp16 emulation, observing values, errors, inputs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
ct = pytest.importorskip("coremltools")

from coremltools.converters.mil import Builder as mb  # noqa: E402
from mil_helpers import run, save_program, uniform  # noqa: E402

from vitdeploy.errors import VitdeployError  # noqa: E402
from vitdeploy.runtimes.mil import MILInterpreter, UnsupportedOpError, op_counts  # noqa: E402

RNG = np.random.default_rng(0)
_rand = uniform(RNG)


def test_fp16_emulation_rounds_every_fp16_value(tmp_path):
    x = _rand(1, 64, low=1.0, high=2.0)

    def prog(x):
        return mb.add(x=mb.mul(x=x, y=np.float32(3.0001), name="scaled"), y=np.float32(1e-3), name="shifted")

    # The default pipeline is what inserts the fp16 casts (fp32 in, fp16 compute, fp32 out).
    path = save_program(tmp_path, prog, [x.shape], precision=ct.precision.FLOAT16, passes=ct.PassPipeline.DEFAULT)
    interp = MILInterpreter.load(path)
    assert interp.op_counts().get("cast") == 2
    name = interp.output_names[0]

    f16 = np.float16
    product = (x.astype(f16).astype(np.float32) * np.float32(f16(3.0001))).astype(f16)
    expected = (product.astype(np.float32) + np.float32(f16(1e-3))).astype(f16)
    seen: dict[str, np.ndarray] = {}
    emulated = interp.predict({"x": x}, observe=seen.__setitem__)[name]
    np.testing.assert_array_equal(emulated, expected.astype(np.float32))
    fp16_values = [v for v in seen.values() if v.dtype == np.float16]
    assert len(fp16_values) >= 3  # cast in, mul, add

    exact = interp.predict({"x": x}, fp16_emulation=False)[name]
    np.testing.assert_allclose(exact, x * np.float32(f16(3.0001)) + np.float32(f16(1e-3)), rtol=1e-6)
    assert not np.array_equal(exact, emulated)


def test_fp16_constexpr_weights_are_rounded_when_emulating(tmp_path):
    data = RNG.integers(-128, 127, size=(4, 6), dtype=np.int8)
    scale = _rand(4, 1, low=0.001, high=0.01).astype(np.float16)
    x = _rand(4, 6)

    def prog(x):
        weight = mb.constexpr_blockwise_shift_scale(data=data, scale=scale)  # an fp16 tensor
        return mb.cast(x=mb.add(x=mb.cast(x=x, dtype="fp16"), y=weight), dtype="fp32")

    path = save_program(tmp_path, prog, [x.shape], target=ct.target.iOS18)
    interp = MILInterpreter.load(path)
    name = interp.output_names[0]
    weight32 = data.astype(np.float32) * scale.astype(np.float32)
    weight16 = weight32.astype(np.float16).astype(np.float32)
    assert not np.array_equal(weight16, weight32)
    expected = (x.astype(np.float16).astype(np.float32) + weight16).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(interp.predict({"x": x})[name], expected)
    np.testing.assert_allclose(interp.predict({"x": x}, fp16_emulation=False)[name], x + weight32, rtol=1e-6)


def test_observe_reports_intermediates(tmp_path):
    def prog(x):
        h = mb.relu(x=x, name="hidden")
        return mb.mul(x=h, y=2.0, name="out")

    x = _rand(2, 3)
    seen: dict[str, np.ndarray] = {}
    _, interp = run(tmp_path, prog, [x], observe=seen.__setitem__)
    assert set(seen) >= {"hidden", "out"}
    np.testing.assert_allclose(seen["hidden"], np.maximum(x, 0))
    assert list(seen).index("hidden") < list(seen).index("out")  # program order
    assert interp.producers() == {"hidden": "relu", "out": "mul"}

    seen.clear()
    interp.predict({"x": x}, observe=seen.__setitem__, observe_names=lambda name: name == "hidden")
    assert list(seen) == ["hidden"]
    seen.clear()
    interp.predict({"x": x}, observe=seen.__setitem__, observe_names={"out"})
    assert list(seen) == ["out"]
    seen.clear()
    interp.predict({"x": x})
    assert seen == {}


def test_observed_values_are_the_callers_copies(tmp_path):
    def prog(x):
        return mb.mul(x=mb.relu(x=x, name="hidden"), y=2.0, name="out")

    x = _rand(2, 3)
    path = save_program(tmp_path, prog, [x.shape])
    interp = MILInterpreter.load(path)

    def scribble(name, value):
        value[...] = 99.0

    out = interp.predict({"x": x}, observe=scribble)["out"]
    np.testing.assert_allclose(out, 2 * np.maximum(x, 0))


def test_unsupported_op_names_type_and_op(tmp_path):
    def prog(x):
        values, _ = mb.topk(x=x, k=2, axis=-1, name="my_topk")
        return values

    path = save_program(tmp_path, prog, [(2, 5)])
    with pytest.raises(UnsupportedOpError) as info:
        MILInterpreter.load(path)
    message = str(info.value)
    assert "'topk'" in message and "'my_topk'" in message and "\n" not in message
    assert isinstance(info.value, VitdeployError)


def test_op_counts_exclude_const(tmp_path):
    def prog(x):
        return mb.add(x=mb.relu(x=x), y=mb.relu(x=mb.mul(x=x, y=2.0)))

    path = save_program(tmp_path, prog, [(2, 3)])
    assert op_counts(path) == {"relu": 2, "mul": 1, "add": 1}
    assert MILInterpreter.load(path).op_counts() == {"relu": 2, "mul": 1, "add": 1}


def test_tensor_input_shape_is_checked(tmp_path):
    path = save_program(tmp_path, lambda x: mb.relu(x=x), [(1, 3, 4)])
    interp = MILInterpreter.load(path)
    assert interp.input_specs["x"] == {"kind": "tensor", "shape": [1, 3, 4], "dtype": "float32"}
    with pytest.raises(VitdeployError, match="expects shape"):
        interp.predict({"x": np.zeros((1, 4, 3), np.float32)})
    with pytest.raises(VitdeployError, match="missing"):
        interp.predict({})
    with pytest.raises(VitdeployError, match="unknown"):
        interp.predict({"x": np.zeros((1, 3, 4), np.float32), "y": np.zeros(1)})
