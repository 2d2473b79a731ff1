"""One precision vocabulary for every target, the CLI, recipes, reports and metadata.

=========  ==================================================  =================
name       what it is                                          parity preset
=========  ==================================================  =================
fp32       float32 weights and compute                         fp32
fp16       float16 weights (TFLite: dequantized at load;      fp16
           Core ML: fp16 compute)
fp16-      TFLite: float16 weights + the metadata that asks   fp16-compute
compute    XNNPACK for fp16 arithmetic on phones with it
           (ARMv8.2+ FP16; x86 and older cores run fp32)
w8         int8 weights, float compute (Core ML)              int8
w8a8       int8 weights and int8 activations (full integer)   int8
w8a16      int8 weights, int16 activations (TFLite "16x8";    int8
           no XNNPACK kernels: slow, only when asked)
dynamic    int8 weights, activations quantized on the fly     int8
=========  ==================================================  =================

Earlier spellings stay as aliases: ``none`` is fp32 (Core ML: no weight quantization, compute
precision from ``--precision``), ``int8`` is w8a8, ``int16`` is w8a16. A leaf module: it
imports nothing of vitdeploy's but errors.
"""

from __future__ import annotations

from .errors import VitdeployError

PRECISIONS = ("fp32", "fp16", "fp16-compute", "w8", "w8a8", "w8a16", "dynamic")
ALIASES = {"none": "fp32", "int8": "w8a8", "int16": "w8a16", "float32": "fp32", "float16": "fp16",
           "fp16c": "fp16-compute", "fp16_compute": "fp16-compute"}
PARITY_PRESET = {"fp32": "fp32", "fp16": "fp16", "fp16-compute": "fp16-compute", "w8": "int8", "w8a8": "int8", "w8a16": "int8", "dynamic": "int8"}
# The internal ``quantize`` key each target's converter takes, per canonical name.
TFLITE_MODES = {"fp32": "none", "fp16": "fp16", "fp16-compute": "fp16-compute", "dynamic": "dynamic", "w8a8": "int8", "w8a16": "w8a16"}
COREML_MODES = {"fp32": "none", "w8": "w8", "w8a8": "w8a8"}  # fp16/fp32 compute is --precision
EXECUTORCH_MODES = {"fp32": "none", "w8a8": "int8"}  # XNNPACK delegate: float32, or PT2E int8 (weights and activations)
MODES = {"tflite": TFLITE_MODES, "coreml": COREML_MODES, "executorch": EXECUTORCH_MODES}
# Targets whose model has a compute precision apart from its quantization (Core ML: fp16 or fp32 arithmetic,
# quantized or not); elsewhere the file's precision is all there is, and --precision names it like --quantize.
COMPUTE_PRECISIONS = {"coreml": ("fp16", "fp32")}
# What `convert --target T` writes when neither --quantize nor --precision is given (the --help text reads it).
DEFAULT = {"tflite": "fp32", "coreml": "fp16", "executorch": "fp32"}


def canonical(name: str) -> str:
    """``int8`` -> ``w8a8``, ``none`` -> ``fp32``; canonical names pass through; anything else is an error."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise VitdeployError(f"unknown precision '{name}'; choose one of {', '.join(PRECISIONS)} "
                             f"(aliases: {', '.join(f'{a}={c}' for a, c in ALIASES.items())})")
    return key


def target_mode(target: str, name: str) -> str:
    """The converter's ``quantize`` key for ``name`` on ``target`` (one-line error when the target has none)."""
    modes = MODES[target]
    if target == "coreml" and str(name).strip().lower() == "fp16":
        return "none"  # Core ML fp16 is its compute precision, no weight quantization
    key = canonical(name)
    if key not in modes:
        choices = ", ".join(modes) + (", fp16" if target == "coreml" else "")
        raise VitdeployError(f"--quantize {name} is not available for {target}; choose one of {choices}")
    return modes[key]


def label(target: str, quantize: str, precision: str = "fp16") -> str:
    """The canonical name of an artifact converted with (``quantize``, ``precision``) for ``target``."""
    if target == "coreml":
        key = canonical(quantize)
        return precision if key == "fp32" else key
    return canonical(quantize)


def resolve(target: str, quantize: str | None = None, precision: str | None = None) -> tuple[str, str]:
    """(``quantize``, compute ``precision``) :func:`vitdeploy.convert.convert` takes, from ``--quantize`` and
    ``--precision`` as given (None: not given). A pair that contradicts itself, or a precision the target
    cannot hold, is refused in one line: nothing is silently ignored or overridden.

    Core ML: ``--quantize fp16|fp32`` is its compute precision (unquantized), so is ``--precision``;
    elsewhere ``--precision P`` names the file's precision, the same as ``--quantize P``."""
    compute = COMPUTE_PRECISIONS.get(target, ())
    q = canonical(quantize) if quantize is not None else None
    p = canonical(precision) if precision is not None else None
    if not compute:
        if q and p and q != p:
            raise VitdeployError(f"--precision {precision} contradicts --quantize {quantize} for {target} "
                                 f"(a {target} file has one precision: give one of them)")
        chosen = q or p or DEFAULT[target]
        _check_mode(target, chosen, "--quantize" if q else "--precision", quantize if q else precision)
        return chosen, "fp32"
    if p is not None and p not in compute:
        raise VitdeployError(f"--precision {precision} is not a {target} compute precision; choose one of "
                             f"{', '.join(compute)}")
    if str(quantize).strip().lower() == "none":  # the old spelling of "no quantization": compute from --precision
        q = None
    if q in compute:  # Core ML --quantize fp16|fp32: the compute precision of an unquantized model
        if p and p != q:
            raise VitdeployError(f"--quantize {quantize} contradicts --precision {precision} ({target}'s "
                                 f"fp16/fp32 is its compute precision: give one of them)")
        return "fp32", q
    chosen = q or "fp32"
    _check_mode(target, chosen, "--quantize", quantize)
    return chosen, p or DEFAULT[target]


def _check_mode(target: str, key: str, option: str, given) -> None:
    if key not in MODES[target]:
        choices = ", ".join(dict.fromkeys([*MODES[target], *COMPUTE_PRECISIONS.get(target, ())]))
        raise VitdeployError(f"{option} {given} is not available for {target}; choose one of {choices}")


def describe(target: str, quantize: str, precision: str = "fp16") -> str:
    """How tables name a cell, in the canonical words: the label (``fp32``, ``w8a8``); Core ML's quantized
    models say their compute precision too (``fp16 w8``, as their file name ``*_fp16_w8`` does)."""
    name = label(target, quantize, precision)
    return f"{precision} {name}" if target in COMPUTE_PRECISIONS and name not in COMPUTE_PRECISIONS[target] else name


def parity_preset(name: str) -> str:
    return PARITY_PRESET[canonical(name)]
