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


def parity_preset(name: str) -> str:
    return PARITY_PRESET[canonical(name)]
