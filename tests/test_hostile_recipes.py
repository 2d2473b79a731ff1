"""Hostile and mistaken recipes, and output paths that cannot be written (issue 28).

Every case: exit 2, one line on stderr naming the user's file, no traceback, and nothing converted first
(the converter is replaced by one that fails the test). Bounded: a recipe is refused in well under a second.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.errors import VitdeployError
from vitdeploy.recipes import BUILTIN_RECIPES as RECIPES
from vitdeploy.recipes import MAX_BYTES, load_recipe
BASE = (RECIPES / "levit_128s.yaml").read_text()

BILLION_LAUGHS = "variant: levit_128s\n" + "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + \
    "targets: *i\nparity: *i\n"


@pytest.fixture(autouse=True)
def no_conversion(monkeypatch):
    """Nothing here may get as far as loading a checkpoint or converting one."""
    import vitdeploy.build as build
    import vitdeploy.checkpoints as checkpoints
    import vitdeploy.cell as cell

    def boom(*_a, **_k):
        pytest.fail("reached the checkpoint/converter: the refusal came too late")

    monkeypatch.setattr(checkpoints, "load", boom)
    monkeypatch.setattr(cell, "build_artifact", boom)
    monkeypatch.setattr(build, "find_checkpoints", boom)


def cli(*args, timeout: float = 10.0):
    """Run the CLI in a thread (a hang fails the test instead of blocking it): (exit code, stderr, seconds)."""
    box = {}

    def run():
        t0 = time.perf_counter()
        try:
            box["result"] = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = e
        box["seconds"] = time.perf_counter() - t0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"vitdeploy {' '.join(map(str, args))} still running after {timeout} s"
    if "error" in box:
        raise box["error"]
    result = box["result"]
    return result.exit_code, result.stderr, box["seconds"]


def refused(args, names: Path | str, *expected: str) -> str:
    code, err, _ = cli(*args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    assert "Traceback" not in err
    assert str(names) in lines[0], lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def convert_with(recipe: Path, tmp: Path):
    return ["convert", tmp / "model.pth", "--target", "tflite", "--recipe", recipe, "-o", tmp / "o.tflite"]


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- the YAML budget


def test_billion_laughs_is_refused_at_once_in_bounded_memory(tmp_path):
    path = write(tmp_path, BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 800  # 10^9 leaves once expanded
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(VitdeployError, match="anchors and aliases"):
        load_recipe(path)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 0.5 and peak < 5e6, (seconds, peak)
    code, err, seconds = cli(*convert_with(path, tmp_path))
    assert code == 2 and err.strip() == (f"error: {path}: line 2: YAML anchors and aliases (&name, *name) are "
                                         "not accepted in a recipe; write the values out"), err
    assert seconds < 1.0


def test_an_alias_alone_and_an_anchor_alone_are_refused(tmp_path):
    refused(convert_with(write(tmp_path, BASE + "extra: *nowhere\n"), tmp_path), tmp_path / "r.yaml", "aliases")
    refused(convert_with(write(tmp_path, BASE.replace("parity:", "parity: &p")), tmp_path), "r.yaml", "anchors")


@pytest.mark.parametrize("text", [
    "variant: " + "[" * 20000 + "]" * 20000 + "\n",
    "variant: levit_128s\nparity: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
    "variant: levit_128s\ntargets:\n" + "".join("  " * i + "- \n" for i in range(1, 200)),
], ids=["flow-seq", "flow-map", "block"])
def test_deep_nesting_is_refused(tmp_path, text):
    path = write(tmp_path, text)
    line = refused(convert_with(path, tmp_path), path, "nested more than 16 levels deep")
    assert line.startswith(f"error: {path}: line ")


def test_too_many_nodes_and_too_many_bytes(tmp_path):
    path = write(tmp_path, BASE + "extra: [" + ", ".join(["1"] * 6000) + "]\n")
    assert path.stat().st_size < MAX_BYTES
    refused(convert_with(path, tmp_path), path, "more than 5000 YAML nodes")
    path = write(tmp_path, BASE + "# " + "x" * MAX_BYTES + "\n", "big.yaml")
    refused(convert_with(path, tmp_path), path, "larger than 64 KiB")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_or_a_link_to_dev_zero_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    refused(convert_with(fifo, tmp_path), fifo, "not a regular file")
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    refused(convert_with(zero, tmp_path), zero, "not a regular file")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    os.mkfifo(recipes / "levit_128s.yaml")
    refused(["build", "--recipes", recipes, "--checkpoints", tmp_path, "-o", tmp_path / "out"],
            recipes / "levit_128s.yaml", "not a regular file")


@pytest.mark.parametrize("text,expected", [
    (BASE + "levit_128s: {}\nlevit_128s: {}\n", "key 'levit_128s' given twice"),
    (BASE + "variant: levit_128\n", "key 'variant' given twice"),
    (BASE + "x: !!python/object/apply:os.system [echo]\n", "not valid YAML"),
    (BASE.replace("top1_min: 1.0", "top1_min: " + "9" * 6000), "not valid YAML"),
    (BASE + "---\nvariant: levit_128s\n", "not valid YAML"),
], ids=["duplicate-target", "duplicate-variant", "python-tag", "huge-int", "two-documents"])
def test_other_hostile_yaml(tmp_path, text, expected):
    path = write(tmp_path, text)
    refused(convert_with(path, tmp_path), path, expected)


# ----------------------------------------------------------------------------- keys and values


@pytest.mark.parametrize("old,new,expected", [
    ("targets:", "targest:", "unknown key 'targest'; did you mean 'targets'?"),
    ("parity:", "parit:", "unknown key 'parit'; did you mean 'parity'?"),
    ("    quantize: [fp32, fp16, dynamic, w8a8]", "    quantise: [fp32, fp16, dynamic, w8a8]",
     "unknown key 'quantise' in targets.tflite; did you mean 'quantize'?"),
    ("fp32: {cosine_min", "fp32: {cosine_mn", "unknown key 'cosine_mn' in parity.fp32; did you mean 'cosine_min'?"),
    ("  fp16: {cosine", "  fp61: {cosine", "unknown parity preset 'fp61'; did you mean 'fp16'?"),
    ("  tflite:", "  tflit:", "unknown target 'tflit'; did you mean 'tflite'?"),
    ("{precision: fp16, quantize: fp32}", "{precison: fp16, quantize: none}",
     "unknown key 'precison' in targets.coreml.default; did you mean 'precision'?"),
    ("variant: levit_128s", "variant: levit_128z", "unknown variant 'levit_128z'; did you mean"),
], ids=["targest", "parit", "quantise", "cosine_mn", "preset", "target", "default-key", "variant"])
def test_typo_keys_are_refused_with_a_suggestion(tmp_path, old, new, expected):
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    refused(convert_with(path, tmp_path), path, expected)


@pytest.mark.parametrize("old,new,expected", [
    ("[fp32, fp16, dynamic, w8a8]", "[none, w8]",
     "targets.tflite.quantize: 'w8' is not a tflite mode; did you mean 'w8a8'?"),
    ("[fp32, fp16, dynamic, w8a8]", "[none, dynamc]", "did you mean 'dynamic'?"),
    ("quantize: [fp32, w8a8]", "quantize: [none, dynamic]", "'dynamic' is not a executorch mode"),
    ("[fp32, fp16, dynamic, w8a8]", "[no]", "must be names, got False (quote it"),
    ("[fp32, fp16, dynamic, w8a8]", "[]", "must be a non-empty list"),
    ("[fp32, fp16, dynamic, w8a8]", "[none, fp32]", "lists the same mode twice"),
    ("quantize: [fp32, w8]", "quantize: [none, fp16]", "'fp16' is Core ML's compute precision"),
    ("precision: [fp32, fp16]", "precision: [fp32, fp61]", "unknown Core ML precision 'fp61'; did you mean 'fp16'?"),
    ("    default: fp32\n  coreml", "    precision: [fp16]\n    default: none\n  coreml",
     "targets.tflite.precision: only Core ML has a compute precision"),
    ("    default: fp32\n  coreml", "    default: int4\n  coreml",
     "targets.tflite.default: 'int4' is not a tflite mode"),
    ("{precision: fp16, quantize: fp32}", "{precision: bf16, quantize: none}", "unknown Core ML precision 'bf16'"),
    ("{precision: fp16, quantize: fp32}", "[fp16]", "targets.coreml.default must be"),
    ("cosine_min: 0.999,", "cosine_min: high,", "parity.fp16.cosine_min must be a number, got 'high'"),
    ("cosine_min: 0.999,", "cosine_min: .nan,", "parity.fp16.cosine_min must be a number, got nan"),
    ("cosine_min: 0.999,", "cosine_min: .inf,", "must be a number, got inf"),
    ("cosine_min: 0.999,", "cosine_min: true,", "must be a number, got True"),
    ("cosine_min: 0.999,", "cosine_min: -0.5,", "parity.fp16.cosine_min must not be negative"),
    ("cosine_min: 0.999,", "cosine_min: 1.5,", "at most 1"),
    ("  fp16: {cosine_min: 0.999, top1_min: 0.95}", "  fp16: [0.999]", "parity.fp16 must map tolerance names"),
    ("  tflite:\n", "  tflite: [none]\n  unused:\n", "targets.tflite must be a mapping"),
], ids=["q-w8-tflite", "q-typo", "q-executorch", "q-yaml-bool", "q-empty", "q-duplicate", "q-coreml-fp16",
        "precision", "precision-tflite", "default", "default-precision", "default-type", "tol-text", "tol-nan",
        "tol-inf", "tol-bool", "tol-negative", "tol-above-1", "tol-type", "spec-type"])
def test_bad_values_are_refused_at_load(tmp_path, old, new, expected):
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(VitdeployError, match=f"^{path}: "):
        load_recipe(path)
    refused(convert_with(path, tmp_path), path, expected)


def test_build_refuses_a_bad_recipe_before_any_cell(tmp_path):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "levit_128s.yaml").write_text(BASE)
    (recipes / "mobilevit_xxs.yaml").write_text((RECIPES / "mobilevit_xxs.yaml").read_text().replace(
        "int8: {cosine_min", "int8: {cosine_mn"))
    refused(["build", "--recipes", recipes, "--checkpoints", tmp_path, "-o", tmp_path / "out"],
            recipes / "mobilevit_xxs.yaml", "did you mean 'cosine_min'?")
    refused(["build", "--recipes", RECIPES, "--checkpoints", tmp_path, "-o", tmp_path / "out", "--variant",
             "levit_128z"], "--variant levit_128z", "did you mean")
    assert not (tmp_path / "out").exists()


def test_what_recipes_may_still_say(tmp_path):
    """The checks refuse mistakes, not spellings YAML forces or the shipped recipes use."""
    text = (BASE.replace("cosine_min: 0.999,", "cosine_min: 0.999, rel_l2_max: 1e-3, max_abs_max: null,")
            .replace("[fp32, fp16, dynamic, w8a8]", "int8").replace("  int8: {cosine_min: 0.99, top1_min: 0.9}",
                                                                     "  int8:"))
    r = load_recipe(write(tmp_path, text))
    assert r.parity["fp16"]["rel_l2_max"] == 1e-3 and r.parity["fp16"]["max_abs_max"] is None
    assert r.parity["int8"] == {} and [c for c in r.cells() if c[0] == "tflite"] == [("tflite", "fp32", "int8")]
    for f in RECIPES.glob("*.yaml"):
        assert load_recipe(f).cells()


# ----------------------------------------------------------------------------- output paths, before the work


def test_convert_refuses_an_unwritable_output_before_loading_the_checkpoint(tmp_path):
    ckpt = tmp_path / "model.pth"
    (tmp_path / "dir.tflite").mkdir()
    (tmp_path / "file.txt").write_text("")
    (tmp_path / "file.mlpackage").write_text("")
    cases = [
        ("tflite", tmp_path / "dir.tflite", "is a folder; -o names the file to write"),
        ("tflite", tmp_path / "o.onnx", "-o for --target tflite must end in .tflite"),
        ("executorch", tmp_path / "o.tflite", "must end in .pte"),
        ("coreml", tmp_path / "o.tflite", "must end in .mlpackage"),
        ("tflite", tmp_path / "file.txt" / "sub" / "o.tflite", f"{tmp_path / 'file.txt'} is not a folder"),
        ("coreml", tmp_path / "file.mlpackage", "a .mlpackage is a folder"),
    ]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.tflite")
        cases.append(("tflite", tmp_path / "fifo.tflite", "not a regular file"))
    for target, out, expected in cases:
        line = refused(["convert", ckpt, "--target", target, "-o", out], out, expected)
        assert ".partial" not in line and ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["dir.tflite", "file.txt", "file.mlpackage"] + (["fifo.tflite"] if hasattr(os, "mkfifo") else []))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_convert_refuses_a_folder_it_cannot_write(tmp_path):
    if os.geteuid() == 0:  # root writes anywhere a permission bit says no: a pseudo-filesystem refuses it
        out = Path("/proc/vitdeploy-h28/o.tflite")
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "sub" / "o.tflite"
    refused(["convert", tmp_path / "model.pth", "--target", "tflite", "-o", out], out, "cannot write there")


def test_convert_still_creates_missing_folders(tmp_path, monkeypatch):
    """A folder that does not exist yet is fine (created when the artifact is written); the check makes nothing."""
    import vitdeploy.checkpoints as checkpoints

    def load(*_a, **_k):
        raise VitdeployError("reached the checkpoint")

    monkeypatch.setattr(checkpoints, "load", load)
    code, err, _ = cli("convert", tmp_path / "model.pth", "--target", "tflite", "-o", tmp_path / "a" / "b" / "o.tflite")
    assert code == 2 and "reached the checkpoint" in err
    assert list(tmp_path.iterdir()) == []  # no probe file left, no folder made


def test_build_checks_every_artifact_path_before_any_conversion(tmp_path, monkeypatch):
    import vitdeploy.build as build

    # The checkpoints are found (their variants detected) first: the artifact names come from them.
    monkeypatch.setattr(build, "find_checkpoints",
                        lambda d: [build.FolderEntry(Path(d) / "levit_128s.pth", variant="levit_128s")])
    out = tmp_path / "out"
    out.mkdir()
    (out / "levit_128s").write_text("")  # where the variant's artifacts go
    refused(["build", "--recipes", RECIPES, "--checkpoints", tmp_path, "-o", out, "--variant", "levit_128s"],
            out / "levit_128s", "is not a folder")
    (out / "levit_128s").unlink()
    (out / "levit_128s").mkdir()
    (out / "levit_128s" / "levit_128s_fp32.pte").mkdir()
    refused(["build", "--recipes", RECIPES, "--checkpoints", tmp_path, "-o", out, "--variant", "levit_128s"],
            out / "levit_128s" / "levit_128s_fp32.pte", "is a folder")
    (tmp_path / "file.txt").write_text("")
    refused(["build", "--recipes", RECIPES, "--checkpoints", tmp_path, "-o", tmp_path / "file.txt"],
            tmp_path / "file.txt", "-o names a folder")


def test_report_and_logits_paths_are_checked_before_the_run(tmp_path, monkeypatch):
    import vitdeploy.api as api
    import vitdeploy.demo as demo
    import vitdeploy.parity as parity
    import vitdeploy.profile as profile

    def boom(*_a, **_k):
        pytest.fail("ran before checking the output path")

    monkeypatch.setattr(api, "predict", boom)
    monkeypatch.setattr(parity, "run_parity", boom)
    monkeypatch.setattr(parity, "evaluate", boom)
    monkeypatch.setattr(profile, "profile", boom)
    monkeypatch.setattr(demo, "run_demo", boom)
    afile = tmp_path / "file.txt"
    afile.write_text("")
    model = tmp_path / "m.tflite"
    refused(["predict", model, tmp_path / "a.png", "--save-logits", afile / "x.npy"], afile / "x.npy",
            "is not a folder")
    refused(["parity", model, "--checkpoint", tmp_path / "c.pth", "--report", afile], afile, "--report names a folder")
    refused(["eval", model, "--data", tmp_path, "--report", afile / "r"], afile / "r", "is not a folder")
    refused(["profile", model, "--report", afile], afile, "--report names a folder")
    refused(["demo", "-o", afile, "--quick"], afile, "-o names a folder")


def test_a_long_multiline_key_is_shown_short_on_one_line(tmp_path):
    path = write(tmp_path, BASE + '? "very\\nlong' + "x" * 5000 + '"\n: 1\n')
    line = refused(convert_with(path, tmp_path), path, "unknown key 'very long")
    assert len(line) < 300, line
