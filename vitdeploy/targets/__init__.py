"""Export targets: each module turns a prepared PyTorch model into a deployable artifact, one contract for all.

:data:`CONVERTERS` names, per target, the module whose ``convert(model, request) -> Conversion`` does it
(:mod:`vitdeploy.targets.contract`), what it needs installed and which options it takes; ``vitdeploy.convert``
looks a target up here and nowhere else, then writes the result with :func:`contract.publish`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..errors import VitdeployError
from .contract import (BELOW_TARGET_SUFFIX, MIN_COSINE, Conversion, ConvertRequest,  # noqa: F401  (the contract)
                       check_image_arguments, publish)


@dataclass(frozen=True)
class Target:
    """One converter: ``convert`` is a module path (its ``convert(model, request)``, imported when used, so
    heavy libraries load only for the target asked) or the function itself (one registered in-process)."""

    convert: str | Callable
    needs: str = ""  # the line when its module cannot be imported
    takes: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)  # option -> the precisions it needs
    why_not: Mapping[str, str] = field(default_factory=dict)  # option -> why this target refuses it

    def load(self) -> Callable:
        if callable(self.convert):
            return self.convert
        try:
            return importlib.import_module(self.convert).convert
        except ImportError as e:
            raise VitdeployError(f"{self.needs} ({e})") from None


CONVERTERS: dict[str, Target] = {
    "coreml": Target("vitdeploy.targets.coreml", "Core ML conversion needs coremltools: pip install 'vitdeploy[coreml]'",
                     takes={"deployment_target": None, "compute_units": None}),
    "tflite": Target("vitdeploy.targets.tflite", "the TFLite target needs litert-torch: pip install 'vitdeploy[tflite]'",
                     takes={"int8_io": None, "int8_finetune": ("w8a8",)}),
    "executorch": Target("vitdeploy.targets.executorch",
                         "the ExecuTorch target needs executorch: pip install 'vitdeploy[executorch]'",
                         takes={"delegate": None},
                         why_not={"int8_io": "an ExecuTorch program keeps float input/output"}),
}
# The options convert() refuses, before the checkpoint loads, for a target that does not take them
# (Target.takes), with their defaults (the value that is not "given").
REFUSALS = {"int8_finetune": (0, "--int8-finetune needs --target tflite --quantize w8a8"),
            "delegate": ("xnnpack", "--delegate is for --target executorch"),
            "int8_io": (False, "--int8-io is for --target tflite")}


def converter(target: str) -> Callable:
    """``target``'s ``convert(model, request) -> Conversion``."""
    if target not in CONVERTERS:
        raise VitdeployError(f"unknown target '{target}'; choose one of {', '.join(CONVERTERS)}")
    return CONVERTERS[target].load()


def refuse_untaken(target: str, precision, given: Mapping[str, object]) -> None:
    """One line for the first option in ``given`` (name -> value) that ``target`` at ``precision`` (a
    :class:`~vitdeploy.precisions.Precision`) does not take."""
    entry = CONVERTERS[target]
    for option, (default, line) in REFUSALS.items():
        if given.get(option, default) == default:
            continue
        modes = entry.takes.get(option)
        if option not in entry.takes or (modes is not None and precision.name not in modes):
            reason = entry.why_not.get(option)
            raise VitdeployError(line + (f" ({reason})" if reason else ""))
