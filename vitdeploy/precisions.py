"""One precision vocabulary for every target, the CLI, recipes, reports and metadata: the :class:`Precision`
object, parsed once where a precision enters (:func:`parse`: CLI options, recipe files, the Python API) and
carried as is into the target, the artifact's name and metadata, and the parity preset.

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

Which names a format holds, its compute precisions (Core ML: fp16/fp32 arithmetic, quantized or not) and its
default are data of its row (:data:`vitdeploy.formats.FORMATS`). Earlier spellings stay as aliases: ``none``
is fp32 (Core ML: no weight quantization, compute precision from ``--precision``), ``int8`` is w8a8,
``int16`` is w8a16.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import VitdeployError
from .formats import FORMATS

PRECISIONS = ("fp32", "fp16", "fp16-compute", "w8", "w8a8", "w8a16", "dynamic")
ALIASES = {"none": "fp32", "int8": "w8a8", "int16": "w8a16", "float32": "fp32", "float16": "fp16",
           "fp16c": "fp16-compute", "fp16_compute": "fp16-compute"}
PARITY_PRESET = {"fp32": "fp32", "fp16": "fp16", "fp16-compute": "fp16-compute", "w8": "int8", "w8a8": "int8",
                 "w8a16": "int8", "dynamic": "int8"}
# (weights, activations) of each name on a format without a compute precision of its own. "fp16" activations:
# float16 arithmetic; "dynamic": int8 activations quantized on the fly.
_SHAPES = {"fp32": ("fp32", "fp32"), "fp16": ("fp16", "fp32"), "fp16-compute": ("fp16", "fp16"),
           "w8": ("int8", "fp32"), "w8a8": ("int8", "int8"), "w8a16": ("int8", "int16"),
           "dynamic": ("int8", "dynamic")}
_INT8_WEIGHT_NAMES = {"int8": "w8a8", "int16": "w8a16", "dynamic": "dynamic"}  # by activations; float: w8
UNQUANTIZED = "fp32"  # what --quantize says for "no quantization" (the old ``none``)
OLD_SPELLINGS = ("none", "int8", "int16")  # recipes that still say them get a deprecation line (recipes.py)
# What `convert --target T` writes when neither --quantize nor --precision is given (the --help text reads it).
DEFAULT = {name: fmt.default_precision for name, fmt in FORMATS.items()}


@dataclass(frozen=True)
class Precision:
    """What an artifact computes in: its weights, its activations and, where the format has one apart from
    the file's (Core ML), its compute precision. Built by :func:`parse` (or :meth:`of`), never by hand."""

    weights: str  # fp32 | fp16 | int8
    activations: str  # fp32 | fp16 | int8 | int16 | dynamic
    compute: str | None = None  # fp16 | fp32 on a format with compute precisions; None elsewhere

    @classmethod
    def of(cls, name: str, compute: str | None = None) -> "Precision":
        """The precision a canonical ``name`` (or alias) means; ``compute`` on a format that has one."""
        weights, activations = _SHAPES[canonical(name)]
        if compute is not None:  # float arithmetic is the compute precision: the weights too unless quantized
            weights = weights if weights == "int8" else compute
            activations = compute if activations in ("fp32", "fp16") else activations
        return cls(weights, activations, compute)

    @property
    def name(self) -> str:
        """The canonical name (``fp32``, ``w8a8``...): the artifact's label, its metadata's ``precision``."""
        if self.quantized:
            return _INT8_WEIGHT_NAMES.get(self.activations, "w8")
        if self.compute is not None:
            return self.compute
        return "fp16-compute" if self.activations == "fp16" else self.weights

    @property
    def quantized(self) -> bool:
        """int8 weights (w8, w8a8, w8a16, dynamic)."""
        return self.weights == "int8"

    @property
    def calibrated(self) -> bool:
        """Activations quantized with calibration images (w8a8, w8a16)."""
        return self.activations in ("int8", "int16")

    @property
    def parity_preset(self) -> str:
        return PARITY_PRESET[self.name]

    def describe(self, sep: str = " ") -> str:
        """How tables name it: the name, and a quantized model's compute precision first (``fp16 w8``);
        ``sep="_"`` is how a file name says it (``*_fp16_w8``)."""
        return f"{self.compute}{sep}{self.name}" if self.compute and self.quantized else self.name

    def __str__(self) -> str:
        return self.name


# `parity --precision` words that were preset names and are no canonical precision (still read, one release).
PARITY_OLD_PRESETS = {"int8": "w8a8"}


def preset_of(word: str | None, say=None) -> str | None:
    """The tolerance preset ``parity --precision WORD`` judges with: a canonical precision's
    (:attr:`vitdeploy.precisions.Precision.parity_preset`: w8a8 -> int8), or an old preset name, with one
    deprecation line to ``say`` naming the word to write instead. None stays None (the artifact's)."""
    if word is None:
        return None
    if word in PARITY_OLD_PRESETS:
        if say is not None:
            say(f"note: parity --precision {word} is deprecated: it names a precision now; write "
                f"--precision {PARITY_OLD_PRESETS[word]} (the same {word} tolerance preset)")
        return word
    return PARITY_PRESET[word]


def canonical(name: str) -> str:
    """``int8`` -> ``w8a8``, ``none`` -> ``fp32``; canonical names pass through; anything else is an error."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise VitdeployError(f"unknown precision '{name}'; choose one of {', '.join(PRECISIONS)} "
                             f"(aliases: {', '.join(f'{a}={c}' for a, c in ALIASES.items())})")
    return key


def quantize_choices(target: str) -> tuple[str, ...]:
    """What ``--quantize`` takes for ``target``: not quantized (fp32), the quantized names its row holds, then
    its compute precisions (Core ML's fp16/fp32 of an unquantized model)."""
    fmt = FORMATS[target]
    held = [n for n in fmt.precisions if n not in fmt.compute_precisions]
    return tuple(dict.fromkeys([UNQUANTIZED, *held, *fmt.compute_precisions]))


def parse(target: str, quantize: str | None = None, precision: str | None = None) -> Precision:
    """The one parser: the :class:`Precision` of ``--quantize`` and ``--precision`` as given (None: not given)
    for ``target``. A pair that contradicts itself, or a precision the target cannot hold, is refused in one
    line: nothing is silently ignored or overridden.

    On a format with compute precisions (Core ML), ``--quantize fp16|fp32`` is that compute precision
    (unquantized), so is ``--precision``; elsewhere ``--precision P`` names the file's precision, the same
    as ``--quantize P``."""
    fmt = FORMATS[target]
    compute = fmt.compute_precisions
    q = canonical(quantize) if quantize is not None else None
    p = canonical(precision) if precision is not None else None
    if not compute:
        if q and p and q != p:
            raise VitdeployError(f"--precision {precision} contradicts --quantize {quantize} for {target} "
                                 f"(a {target} file has one precision: give one of them)")
        chosen = q or p or fmt.default_precision
        _check_held(target, chosen, "--quantize" if q else "--precision", quantize if q else precision)
        return Precision.of(chosen)
    if p is not None and p not in compute:
        raise VitdeployError(f"--precision {precision} is not a {target} compute precision; choose one of "
                             f"{', '.join(compute)}")
    if str(quantize).strip().lower() == "none":  # the old spelling of "no quantization": compute from --precision
        q = None
    if q in compute:  # --quantize fp16|fp32 on Core ML: the compute precision of an unquantized model
        if p and p != q:
            raise VitdeployError(f"--quantize {quantize} contradicts --precision {precision} ({target}'s "
                                 f"fp16/fp32 is its compute precision: give one of them)")
        return Precision.of(q, compute=q)
    chosen = q or UNQUANTIZED
    _check_held(target, chosen, "--quantize", quantize)
    compute_word = p or fmt.default_precision
    return Precision.of(compute_word if chosen == UNQUANTIZED else chosen, compute=compute_word)


def parse_call(target: str, quantize=None, precision=None) -> Precision:
    """:func:`parse` for the Python API's keywords (``convert(..., quantize=, precision=)``), which spelled a
    few things differently before the object: a :class:`Precision` passes through; ``precision`` is only
    read where the format has compute precisions; there ``quantize="fp32"`` beside a ``precision`` means
    "not quantized" (``none``), as the build and benchmark cells said it."""
    if isinstance(quantize, Precision):
        return quantize
    if not FORMATS[target].compute_precisions:
        return parse(target, quantize, None)
    if precision is not None and quantize is not None and canonical(quantize) == UNQUANTIZED:
        quantize = None
    return parse(target, quantize, precision)


def _check_held(target: str, name: str, option: str, given) -> None:
    """One line when ``target``'s row cannot hold ``name`` as a quantization."""
    fmt = FORMATS[target]
    if name not in fmt.precisions or (name in fmt.compute_precisions and name != UNQUANTIZED):
        raise VitdeployError(f"{option} {given} is not available for {target}; "
                             f"choose one of {', '.join(quantize_choices(target))}")


def format_cells(target: str) -> tuple[Precision, ...]:
    """Every precision ``target``'s row holds, in row order; a quantized one at the format's default compute
    precision (Core ML: fp32 and fp16 unquantized, then fp16 w8, fp16 w8a8)."""
    fmt = FORMATS[target]
    default = fmt.default_precision if fmt.compute_precisions else None
    return tuple(Precision.of(n, compute=n if n in fmt.compute_precisions else default) for n in fmt.precisions)
