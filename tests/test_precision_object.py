"""The one Precision object (vitdeploy.precisions.parse): every (target, --quantize, --precision) the CLI
accepts names the same artifact, label and parity preset as before the object, and refuses the same pairs
word for word. The old rules are written out here from their tables (the MODES dicts that are gone)."""

from __future__ import annotations

import pytest

from vitdeploy.errors import VitdeployError
from vitdeploy.formats import TARGETS, artifact_name
from vitdeploy.precisions import ALIASES, PRECISIONS, Precision, canonical, parse

# The tables precisions.py held before the object: the converter's internal key per canonical name.
OLD_MODES = {"tflite": {"fp32": "none", "fp16": "fp16", "fp16-compute": "fp16-compute", "dynamic": "dynamic",
                        "w8a8": "int8", "w8a16": "w8a16"},
             "coreml": {"fp32": "none", "w8": "w8", "w8a8": "w8a8"},
             "executorch": {"fp32": "none", "w8a8": "int8"}}
OLD_COMPUTE = {"coreml": ("fp16", "fp32")}
OLD_DEFAULT = {"tflite": "fp32", "coreml": "fp16", "executorch": "fp32"}
OLD_SUFFIX = {"tflite": ".tflite", "coreml": ".mlpackage", "executorch": ".pte"}
OLD_PRESET = {"fp32": "fp32", "fp16": "fp16", "fp16-compute": "fp16-compute", "w8": "int8", "w8a8": "int8",
              "w8a16": "int8", "dynamic": "int8"}


def old_resolve(target, quantize=None, precision=None):
    """precisions.resolve and _check_mode as they were: (quantize, compute precision) or a refusal."""
    compute = OLD_COMPUTE.get(target, ())
    q = canonical(quantize) if quantize is not None else None
    p = canonical(precision) if precision is not None else None

    def check(key, option, given):
        if key not in OLD_MODES[target]:
            choices = ", ".join(dict.fromkeys([*OLD_MODES[target], *compute]))
            raise VitdeployError(f"{option} {given} is not available for {target}; choose one of {choices}")

    if not compute:
        if q and p and q != p:
            raise VitdeployError(f"--precision {precision} contradicts --quantize {quantize} for {target} "
                                 f"(a {target} file has one precision: give one of them)")
        chosen = q or p or OLD_DEFAULT[target]
        check(chosen, "--quantize" if q else "--precision", quantize if q else precision)
        return chosen, "fp32"
    if p is not None and p not in compute:
        raise VitdeployError(f"--precision {precision} is not a {target} compute precision; choose one of "
                             f"{', '.join(compute)}")
    if str(quantize).strip().lower() == "none":
        q = None
    if q in compute:
        if p and p != q:
            raise VitdeployError(f"--quantize {quantize} contradicts --precision {precision} ({target}'s "
                                 f"fp16/fp32 is its compute precision: give one of them)")
        return "fp32", q
    chosen = q or "fp32"
    check(chosen, "--quantize", quantize)
    return chosen, p or OLD_DEFAULT[target]


def old_label(target, quantize, precision):
    key = canonical(quantize)
    return (precision if key == "fp32" else key) if target in OLD_COMPUTE else key


def old_outcome(target, quantize, precision):
    try:
        q, p = old_resolve(target, quantize, precision)
    except VitdeployError as e:
        return ("refused", str(e))
    name = old_label(target, q, p)
    mode = f"{p}_{name}" if target in OLD_COMPUTE and name != p else name
    describe = f"{p} {name}" if target in OLD_COMPUTE and name not in OLD_COMPUTE[target] else name
    preset = OLD_PRESET[p if name == "fp32" and p in ("fp16", "fp32") and target in OLD_COMPUTE else name]
    return (f"m_{mode}{OLD_SUFFIX[target]}", name, describe, preset)


def new_outcome(target, quantize, precision):
    try:
        got = parse(target, quantize, precision)
    except VitdeployError as e:
        return ("refused", str(e))
    return (artifact_name("m", target, got), got.name, got.describe(), got.parity_preset)


QUANTIZE_WORDS = (None, *PRECISIONS, *ALIASES, "FP16", " int8 ")  # --quantize is free text
PRECISION_WORDS = (None, *PRECISIONS)  # --precision is a click.Choice of the canonical names
COMBINATIONS = [(t, q, p) for t in TARGETS for q in QUANTIZE_WORDS for p in PRECISION_WORDS]


def test_every_cli_combination_names_the_same_artifact_label_and_preset():
    differ = [(c, old_outcome(*c), new_outcome(*c)) for c in COMBINATIONS if old_outcome(*c) != new_outcome(*c)]
    assert not differ, differ[:5]
    assert sum(old_outcome(*c)[0] != "refused" for c in COMBINATIONS) > 50  # the table exercises both sides


def test_unknown_words_are_refused_as_before():
    for target in TARGETS:
        with pytest.raises(VitdeployError, match="unknown precision 'int4'"):
            parse(target, "int4")


def test_the_object_says_what_it_computes_in():
    assert parse("tflite", "int8") == Precision("int8", "int8")
    assert parse("tflite", "fp16-compute") == Precision("fp16", "fp16")
    assert parse("coreml", "w8a8", "fp32") == Precision("int8", "int8", "fp32")
    assert parse("coreml") == Precision("fp16", "fp16", "fp16") and parse("coreml").name == "fp16"
    assert parse("tflite", "w8a16").calibrated and not parse("tflite", "dynamic").calibrated
    with pytest.raises(AttributeError):
        parse("tflite").weights = "int8"  # frozen: it travels unchanged into the target
