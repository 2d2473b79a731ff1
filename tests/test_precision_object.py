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


# ----------------------------------------------------------------------------- old spellings


def _recipe_with_old_words(tmp_path):
    from vitdeploy.recipes import BUILTIN_RECIPES

    text = (BUILTIN_RECIPES / "levit_128s.yaml").read_text()
    text = text.replace("[fp32, fp16, dynamic, w8a8]", "[none, fp16, dynamic, int8]").replace("[fp32, w8a8]",
                                                                                           "[none, int8]")
    path = tmp_path / "old.yaml"
    path.write_text(text)
    return path


def test_old_recipe_words_still_read_with_one_line_per_word_and_run(tmp_path, monkeypatch, capsys):
    from vitdeploy import recipes

    monkeypatch.setattr(recipes, "_NOTED", set())
    path = _recipe_with_old_words(tmp_path)
    first = recipes.load_recipe(path)
    recipes.load_recipe(path)  # a second read in the same run says nothing more
    lines = capsys.readouterr().err.splitlines()
    assert sorted(lines) == sorted([f"note: {path}: targets.tflite.quantize: 'none' is deprecated, write 'fp32'",
                                    f"note: {path}: targets.tflite.quantize: 'int8' is deprecated, write 'w8a8'"])
    assert ("tflite", "fp32", "int8") in first.cells()  # the cell still builds the same w8a8 artifact
    assert parse("tflite", "int8") == parse("tflite", "w8a8")


def test_shipped_recipes_say_the_canonical_names(monkeypatch, capsys):
    from vitdeploy import recipes

    monkeypatch.setattr(recipes, "_NOTED", set())
    for path in sorted(recipes.BUILTIN_RECIPES.glob("*.yaml")):
        for target, _, quantize in recipes.load_recipe(path).cells():
            assert quantize in PRECISIONS, (path.name, target, quantize)
    assert capsys.readouterr().err == ""


def test_parity_precision_takes_precisions_and_the_old_preset_name():
    from vitdeploy.precisions import preset_of

    assert [preset_of(w) for w in ("fp32", "fp16", "fp16-compute", "w8", "w8a8", "w8a16", "dynamic", None)] == \
        ["fp32", "fp16", "fp16-compute", "int8", "int8", "int8", "int8", None]
    said = []
    assert preset_of("int8", say=said.append) == "int8"
    assert said == ["note: parity --precision int8 is deprecated: it names a precision now; write "
                    "--precision w8a8 (the same int8 tolerance preset)"]
    assert preset_of("fp16", say=said.append) == "fp16" and len(said) == 1  # same word, same meaning: no note


def test_parity_cli_prints_the_deprecation_line_once(tmp_path):
    from click.testing import CliRunner

    from vitdeploy.cli import main

    result = CliRunner().invoke(main, ["parity", str(tmp_path / "missing.tflite"), "--checkpoint", str(tmp_path / "m.pth"),
                                       "--precision", "int8"])
    assert result.output.count("parity --precision int8 is deprecated") == 1, result.output
    result = CliRunner().invoke(main, ["parity", str(tmp_path / "missing.tflite"), "--checkpoint", str(tmp_path / "m.pth"),
                                       "--precision", "w8a8"])
    assert "deprecated" not in result.output and result.exit_code == 2, result.output
