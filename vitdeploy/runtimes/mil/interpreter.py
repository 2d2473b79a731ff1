"""MILInterpreter: runs the main function of an ML Program .mlpackage with numpy.

Ops run in program order, each looked up in the op registry (:mod:`vitdeploy.runtimes.mil.registry`);
consts and constexpr_* (compressed weights) are materialized once at load time. With
``fp16_emulation`` every value the program types as fp16 is rounded to float16 after the op that
produces it; arithmetic itself runs in float32.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from vitdeploy.errors import VitdeployError

from . import ops  # noqa: F401 -- registers every op
from .inputs import check_tensor_shape, describe_inputs, image_to_tensor
from .program import NP_DTYPES, OPAQUE_TYPES, const_value, count_ops, dtype_name, load_program, main_function, shape_of
from .registry import Args, OpFn, lookup, unsupported

Observer = Callable[[str, Any], None]
"""``observe(name, value)``: called with each op output, in program order, during one prediction."""


@dataclass
class _Arg:
    """One op input: a constant baked in at load time, or the name of a runtime value."""

    const: Any = None
    ref: str | None = None
    items: list | None = None  # tuple inputs such as concat's `values`


@dataclass
class _Step:
    op_type: str
    name: str
    fn: OpFn
    args: dict[str, _Arg]
    out_names: list[str]
    out_dtypes: list[str]
    out_shapes: list[list[int]]
    frees: list[str] = field(default_factory=list)


def _finalize(value, dtype: str, emulate_fp16: bool):
    """Cast an op result to the dtype the program declares, rounding fp16 when emulating."""
    if dtype in OPAQUE_TYPES:
        return value
    if dtype == "fp16":
        arr = np.asarray(value, dtype=np.float32)
        if not emulate_fp16:
            return arr
        with np.errstate(over="ignore"):  # beyond 65504 is inf, as on the device: parity reports it by name
            return arr.astype(np.float16).astype(np.float32)
    if dtype in ("fp32", "fp64"):
        return np.asarray(value, dtype=np.float32)
    np_dtype = NP_DTYPES.get(dtype)
    return np.asarray(value) if np_dtype is None else np.asarray(value).astype(np_dtype)


def _export(value, dtype: str, emulate_fp16: bool):
    """A value as handed to callers (a copy): fp16 values as float16 only when emulating."""
    if isinstance(value, dict):
        return dict(value)
    if dtype == "fp16" and emulate_fp16:
        with np.errstate(over="ignore"):
            return np.asarray(value).astype(np.float16)
    return np.array(value, copy=True)  # may alias a const; callers must not be able to change it


def _name_filter(names: Callable[[str], bool] | Collection[str] | None) -> Callable[[str], bool]:
    if names is None:
        return lambda _name: True
    if callable(names):
        return names
    wanted = frozenset(names)
    return wanted.__contains__


def _check_result_shape(step: _Step, out_name: str, declared: list[int], value: np.ndarray) -> None:
    # A mismatch with the program's own type inference means the interpreter got an op wrong.
    if not isinstance(value, np.ndarray):
        return
    if len(declared) != value.ndim or any(d not in (-1, v) for d, v in zip(declared, value.shape)):
        raise VitdeployError(
            f"MIL interpreter bug: op '{step.op_type}' (op name '{step.name}') produced {out_name} with shape "
            f"{list(value.shape)}, but the program declares {declared}"
        )


class MILInterpreter:
    """Executes the main function of an ML Program .mlpackage with numpy."""

    def __init__(self, spec, prog, path: str = ""):
        self.path = path
        self._function = main_function(prog)
        self._input_dtypes = {name: dtype_name(var) for name, var in self._function.inputs.items()}
        self.input_names: list[str] = list(self._function.inputs)
        self.output_names: list[str] = [var.name for var in self._function.outputs]
        self.input_specs: dict[str, dict] = describe_inputs(spec, self._function)
        self._value_dtypes: dict[str, str] = dict(self._input_dtypes)
        self._consts: dict[str, Any] = {}
        # Results of compile-time (constexpr_*) ops, exact and as the fp16 device would hold them.
        self._folded: dict[bool, dict[str, np.ndarray]] = {False: {}, True: {}}
        self._steps: list[_Step] = []
        self._compile()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MILInterpreter":
        """Load an .mlpackage (ML Program); raises UnsupportedOpError for ops it cannot run."""
        spec, prog = load_program(path)
        return cls(spec, prog, os.fspath(path))

    def op_counts(self) -> dict[str, int]:
        """Op type -> count in the main function, const excluded."""
        return count_ops(self._function)

    def producers(self) -> dict[str, str]:
        """Value name -> type of the op that computes it, for every value :meth:`predict` can observe."""
        return {out: step.op_type for step in self._steps for out in step.out_names}

    # -- compilation ------------------------------------------------------------------

    def _compile(self) -> None:
        for op in self._function.operations:
            if op.op_type == "const":
                self._consts[op.outputs[0].name] = const_value(op.outputs[0])
                self._value_dtypes[op.outputs[0].name] = dtype_name(op.outputs[0])
                continue
            op_def = lookup(op.op_type)
            if op_def is None:
                raise unsupported(op.op_type, op.name)
            step = _Step(
                op_type=op.op_type,
                name=op.name,
                fn=op_def.fn,
                args={key: self._arg(var) for key, var in op.inputs.items()},
                out_names=[v.name for v in op.outputs],
                out_dtypes=[dtype_name(v) for v in op.outputs],
                out_shapes=[shape_of(v) for v in op.outputs],
            )
            for out_name, dtype in zip(step.out_names, step.out_dtypes):
                self._value_dtypes[out_name] = dtype
            if op.op_type.startswith("constexpr_"):
                self._fold_constexpr(step)
            else:
                self._steps.append(step)
        self._plan_frees()

    def _arg(self, var) -> _Arg:
        if isinstance(var, (list, tuple)):
            return _Arg(items=[self._arg(v) for v in var])
        producer = getattr(var, "op", None)
        if producer is None and var.name not in self._function.inputs and var.val is not None:
            return _Arg(const=const_value(var))
        if producer is not None and producer.op_type == "const":
            return _Arg(const=self._consts.get(var.name, const_value(var)))
        return _Arg(ref=var.name)

    def _fold_constexpr(self, step: _Step) -> None:
        # Compile-time ops only read consts; their result stays fixed across predictions.
        values = {key: self._resolve(arg, self._consts) for key, arg in step.args.items()}
        result = step.fn(Args(values, step))
        results = result if isinstance(result, tuple) else (result,)
        for out_name, dtype, value in zip(step.out_names, step.out_dtypes, results):
            self._consts[out_name] = _finalize(value, dtype, emulate_fp16=False)
            for emulate in (False, True):
                self._folded[emulate][out_name] = _finalize(value, dtype, emulate)

    def _plan_frees(self) -> None:
        last_use: dict[str, int] = {}
        for index, step in enumerate(self._steps):
            for name in self._refs(step.args.values()):
                last_use[name] = index
        keep = set(self.output_names)
        for name, index in last_use.items():
            if name not in keep:
                self._steps[index].frees.append(name)

    def _refs(self, args) -> list[str]:
        names = []
        for arg in args:
            if arg.items is not None:
                names += self._refs(arg.items)
            elif arg.ref is not None:
                names.append(arg.ref)
        return names

    # -- execution --------------------------------------------------------------------

    def _resolve(self, arg: _Arg, env: dict[str, Any]):
        if arg.items is not None:
            return [self._resolve(item, env) for item in arg.items]
        if arg.ref is not None:
            return env[arg.ref] if arg.ref in env else self._consts[arg.ref]
        return arg.const

    def _run_step(self, step: _Step, env: dict[str, Any]) -> tuple:
        values = {key: self._resolve(arg, env) for key, arg in step.args.items()}
        try:
            result = step.fn(Args(values, step))
        except VitdeployError:
            raise
        except Exception as exc:  # name the op: a bare numpy/torch error says nothing about where
            raise VitdeployError(
                f"MIL interpreter failed at op '{step.op_type}' (op name '{step.name}'): {exc}".replace("\n", " ")
            ) from exc
        return result if isinstance(result, tuple) else (result,)

    def _prepare_inputs(self, inputs: dict[str, np.ndarray], emulate: bool) -> dict[str, np.ndarray]:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise VitdeployError(f"missing model input(s): {', '.join(missing)} (expected {self.input_names})")
        unknown = [name for name in inputs if name not in self.input_names]
        if unknown:
            raise VitdeployError(f"unknown model input(s): {', '.join(unknown)} (expected {self.input_names})")
        env = dict(self._folded[emulate])
        for name in self.input_names:
            spec = self.input_specs[name]
            if spec["kind"] == "image":
                value = image_to_tensor(inputs[name], spec, name)
            else:
                value = np.asarray(inputs[name])
                check_tensor_shape(value, spec, name)
            env[name] = _finalize(value, self._input_dtypes[name], emulate)
        return env

    def predict(
        self,
        inputs: dict[str, np.ndarray],
        *,
        fp16_emulation: bool = True,
        observe: Observer | None = None,
        observe_names: Callable[[str], bool] | Collection[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the program.

        Image inputs take RGB pixels 0..255 (HxWx3 or NxHxWx3, uint8 or float); the model's
        color layout, scale and bias are applied as Core ML would. Tensor inputs take arrays
        of the declared shape. Classifier models return their label as a 0-d array and their
        probabilities as a ``{label: probability}`` dict.

        ``observe(name, value)`` is called with the output of every op as it is computed, in
        program order (consts, constexpr_* results and the inputs are not observed); the value
        is the caller's own copy, fp16 values as float16 when emulating. ``observe_names``
        (a predicate on MIL value names, or a collection of names) restricts it to those values.
        """
        env = self._prepare_inputs(inputs, fp16_emulation)
        wanted = None if observe is None else _name_filter(observe_names)
        for step in self._steps:
            results = self._run_step(step, env)
            for out_name, dtype, shape, value in zip(step.out_names, step.out_dtypes, step.out_shapes, results):
                env[out_name] = _finalize(value, dtype, fp16_emulation)
                _check_result_shape(step, out_name, shape, env[out_name])
                if wanted is not None and wanted(out_name):
                    observe(out_name, _export(env[out_name], dtype, fp16_emulation))
            for name in step.frees:
                env.pop(name, None)
        return {
            name: _export(self._resolve(_Arg(ref=name), env), self._value_dtypes[name], fp16_emulation)
            for name in self.output_names
        }
