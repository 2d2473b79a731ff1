"""Issue 30: `build` takes every checkpoint in the folder and says what it skips; `convert` does not replace an
artifact silently; long steps show a ticking line on a terminal (never under --json); a --json failure is a
JSON object on stdout.

The conversions are stood in for (``cell.build_artifact`` writes a file and returns a row): what is tested
is which cells are planned, how they are named and reported, not the converters (tests/test_recipes.py's slow
test builds a real cell).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from vitdeploy.cli import main


@pytest.fixture(scope="module")
def two_levits(tmp_path_factory) -> Path:
    """Two LeViT-128S checkpoints (different weights, different formats), a note and a stray folder."""
    from vitdeploy.synthetic import write_seeded_checkpoint

    d = tmp_path_factory.mktemp("ckpts")
    write_seeded_checkpoint("levit_128s", d / "a.safetensors", seed=1)
    write_seeded_checkpoint("levit_128s", d / "b.pth", seed=2)
    (d / "notes.txt").write_text("not a checkpoint")
    (d / "old").mkdir()
    return d


@pytest.fixture
def fake_cells(monkeypatch):
    """build_artifact writes a small file and returns an ok row; host latency is a constant."""
    import vitdeploy.build as build
    import vitdeploy.cell as cell

    calls = []

    def fake(checkpoint, target, precision, quantize, path, *, force=False, **_kw):
        assert force is True  # build rebuilds its own folder
        calls.append((Path(checkpoint).name, target, quantize, Path(path)))
        time.sleep(fake.delay)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"artifact")
        return {"target": target, "precision": precision, "quantize": quantize, "label": quantize, "path": str(path),
                "status": "ok", "parity": "pass", "seconds": 0.0}

    fake.delay = 0.0
    monkeypatch.setattr(cell, "build_artifact", fake)
    monkeypatch.setattr(build, "_host_latency", lambda *_a: 1.0)
    fake.calls = calls
    return fake


def _build(args, **kw):
    return CliRunner().invoke(main, ["build", *map(str, args)], catch_exceptions=False, **kw)


def test_build_takes_every_checkpoint_and_names_its_source(two_levits, fake_cells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: the shipped recipes are found from the package
    out = tmp_path / "out"
    result = _build(["--checkpoints", two_levits, "-o", out, "--target", "tflite", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # stdout is the JSON and nothing else
    cells = summary["cells"]
    sources = {Path(c["checkpoint"]).name for c in cells}
    assert sources == {"a.safetensors", "b.pth"}
    assert len(cells) == 2 * len({c["quantize"] for c in cells}) > 2  # both checkpoints get every tflite cell
    paths = [Path(c["path"]).name for c in cells]
    assert len(set(paths)) == len(paths)  # nothing overwritten by the other checkpoint
    assert all(p.startswith(("a_levit_128s_", "b_levit_128s_")) for p in paths), paths
    skipped = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert set(skipped) == {"notes.txt", "old"}
    assert "not a checkpoint file" in skipped["notes.txt"] and "config.json" in skipped["old"]
    assert [Path(c["path"]).name for c in summary["checkpoints"]] == ["a.safetensors", "b.pth"]
    assert Path(summary["recipes"]).parent.name == "vitdeploy"
    report = json.loads((out / "build_report.json").read_text())
    assert {Path(c["checkpoint"]).name for c in report["cells"]} == sources
    md = (out / "build_report.md").read_text()
    assert "a.safetensors" in md and "b.pth" in md and "notes.txt" in md


def test_build_prints_the_plan_and_the_source_in_the_table(two_levits, fake_cells, tmp_path):
    result = _build(["--checkpoints", two_levits, "-o", tmp_path / "out", "--target", "tflite"])
    assert result.exit_code == 0, result.output
    err = result.stderr
    plan_at = err.index("plan: 2 checkpoint(s)")
    assert plan_at < err.index("[    ok]")  # the plan comes before the first cell
    assert "a.safetensors (levit_128s)" in err and "b.pth (levit_128s)" in err
    assert "skipped notes.txt: not a checkpoint file" in err and "skipped old: " in err
    table = result.stdout
    assert "checkpoint" in table.splitlines()[0]
    assert any(line.startswith("a.safetensors") for line in table.splitlines())
    assert any(line.startswith("b.pth") for line in table.splitlines())
    assert "2 checkpoint(s)" in table and "2 skipped" in table


def test_two_checkpoints_with_one_stem_get_distinct_artifacts(tmp_path, fake_cells):
    from vitdeploy.synthetic import write_seeded_checkpoint

    ckpts = tmp_path / "ckpts"
    write_seeded_checkpoint("levit_128s", ckpts / "mine.safetensors", seed=1)
    write_seeded_checkpoint("levit_128s", ckpts / "mine.pth", seed=2)
    result = _build(["--checkpoints", ckpts, "-o", tmp_path / "out", "--target", "executorch", "--json"])
    assert result.exit_code == 0, result.output
    paths = [Path(c["path"]).name for c in json.loads(result.stdout)["cells"]]
    assert len(set(paths)) == len(paths) == 4, paths


def test_build_refuses_a_folder_with_nothing_to_build(tmp_path, two_levits, fake_cells):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.md").write_text("x")
    for folder, expected in ((tmp_path / "empty", "no checkpoint to build (the folder is empty)"),
                             (tmp_path / "notes", "readme.md: not a checkpoint file")):
        result = _build(["--checkpoints", folder, "-o", tmp_path / "out"])
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and expected in lines[0], result.stderr
    result = _build(["--checkpoints", two_levits, "-o", tmp_path / "out", "--variant", "mobilevit_xxs"])
    assert result.exit_code == 2 and "no checkpoint of --variant mobilevit_xxs" in result.stderr
    assert fake_cells.calls == []


def test_shipped_recipes_are_package_data():
    import tomllib

    from vitdeploy.recipes import BUILTIN_RECIPES, load_recipes

    root = Path(__file__).resolve().parents[1]
    assert BUILTIN_RECIPES.parent == root / "vitdeploy"
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vitdeploy"]
    shipped = {p for pattern in data for p in (root / "vitdeploy").glob(pattern)}
    recipes = load_recipes(BUILTIN_RECIPES)
    assert recipes and {r.path for r in recipes} <= shipped


# --- convert does not replace an artifact without --force -----------------------------------------------------


@pytest.mark.parametrize("name", ["o.tflite", "o.mlpackage", "o.pte"])
def test_convert_refuses_to_replace_an_artifact_before_any_work(tmp_path, monkeypatch, name):
    import vitdeploy.checkpoints as checkpoints
    from vitdeploy.errors import VitdeployError

    def load(*_a, **_k):
        raise VitdeployError("reached the checkpoint")

    monkeypatch.setattr(checkpoints, "load", load)
    out = tmp_path / name
    target = {".tflite": "tflite", ".mlpackage": "coreml", ".pte": "executorch"}[out.suffix]
    if out.suffix == ".mlpackage":
        out.mkdir()
        (out / "Manifest.json").write_text("{}")
    else:
        out.write_bytes(b"labelled model")
    args = ["convert", str(tmp_path / "m.pth"), "--target", target, "-o", str(out)]
    result = CliRunner().invoke(main, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, result.stderr
    assert str(out) in lines[0] and "--force" in lines[0] and "reached" not in lines[0]
    assert (out / "Manifest.json").exists() if out.is_dir() else out.read_bytes() == b"labelled model"
    result = CliRunner().invoke(main, [*args, "--force"])
    assert result.exit_code == 2 and "reached the checkpoint" in result.stderr  # --force goes on to the work


# --- progress ------------------------------------------------------------------------------------------------


def test_build_ticks_on_a_terminal_and_is_quiet_under_json(two_levits, fake_cells, tmp_path, monkeypatch):
    import vitdeploy.progress as progress

    monkeypatch.setattr(progress, "_isatty", lambda _stream: True)
    monkeypatch.setattr(progress, "_TICK_S", 0.02)
    fake_cells.delay = 0.1
    result = _build(["--checkpoints", two_levits, "-o", tmp_path / "out", "--target", "tflite", "--variant",
                     "levit_128s"])
    assert result.exit_code == 0, result.output
    assert "\r[0:00] build 1/" in result.stderr and ": a.safetensors (levit_128s) -> tflite" in result.stderr
    assert "\r\x1b[K" in result.stderr  # the line is wiped when the step ends
    assert "\r" not in result.stdout
    result = _build(["--checkpoints", two_levits, "-o", tmp_path / "out2", "--target", "tflite", "--json"])
    assert result.exit_code == 0
    json.loads(result.stdout)  # nothing but the JSON on stdout
    assert "\r" not in result.stderr and "build 1/" not in result.stderr


def test_progress_without_a_terminal(monkeypatch):
    """Quiet in a log; one plain line per step with VITDEPLOY_VERBOSE=1; quiet outside the CLI."""
    import click

    import vitdeploy.progress as progress

    @click.command()
    def cmd():
        with progress.step("converting x -> tflite w8a8"):
            progress.note("attempt 1")
            progress.note("attempt 2")

    assert CliRunner().invoke(cmd).stderr == ""
    monkeypatch.setenv("VITDEPLOY_VERBOSE", "1")
    assert CliRunner().invoke(cmd).stderr == "[0:00] converting x -> tflite w8a8\n"
    with progress.step("not in a command"):  # a library caller gets nothing on stderr
        pass


def test_progress_escapes_control_characters(monkeypatch):
    import click

    import vitdeploy.progress as progress

    monkeypatch.setattr(progress, "_isatty", lambda _stream: True)

    @click.command()
    def cmd():
        with progress.step("converting evil\x1b[31m.pth"):
            pass

    err = CliRunner().invoke(cmd).stderr
    assert "\x1b[31m" not in err and "\\x1b" in err


# --- --json failures --------------------------------------------------------------------------------------------


def test_json_failure_is_an_error_object_on_stdout(tmp_path):
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "missing.pth"), "--target", "tflite",
                                       "-o", str(tmp_path / "x.tflite"), "--json"])
    assert result.exit_code == 2
    obj = json.loads(result.stdout)
    assert obj["exit_code"] == 2 and "missing.pth" in obj["error"] and not obj["error"].startswith("error:")
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "missing.pth"), "--target", "tflite",
                                       "-o", str(tmp_path / "x.tflite")])
    assert result.exit_code == 2 and result.stdout == ""  # without --json: the stderr line only


def test_json_check_failure_after_the_document_adds_nothing(two_levits, fake_cells, tmp_path, monkeypatch):
    import vitdeploy.cell as cell

    def failing(checkpoint, target, precision, quantize, path, **_kw):
        return {"target": target, "precision": precision, "quantize": quantize, "path": str(path),
                "status": "failed", "error": "boom", "seconds": 0.0}

    monkeypatch.setattr(cell, "build_artifact", failing)
    result = _build(["--checkpoints", two_levits, "-o", tmp_path / "out", "--target", "executorch", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failed"] == 4  # one document: the summary, not an error object after it


def test_a_below_target_cell_says_below_target_like_every_other_command(two_levits, fake_cells, tmp_path):
    """build turned a w8a8 file written `.below-target` into a "failed" cell while convert, inspect, parity and eval
    say "below target": one verdict; still exit 1, counted apart from real failures."""
    import vitdeploy.cell as cell

    def below(checkpoint, target, precision, quantize, path, **_kw):
        return {"target": target, "precision": precision, "quantize": quantize, "path": str(path),
                "status": "below target", "verdict": "w8a8 logits cosine (worst image) 0.9742 is below 0.99",
                "parity": "below target", "seconds": 0.0}

    pipeline_fake, cell.build_artifact = cell.build_artifact, below
    try:
        result = _build(["--checkpoints", two_levits, "-o", tmp_path / "out", "--target", "executorch"])
    finally:
        cell.build_artifact = pipeline_fake
    assert result.exit_code == 1, result.output
    assert "0 of 4 cells failed, 4 below target" in result.stderr
    table = result.stdout.splitlines()
    header = next(line for line in table if line.startswith("checkpoint"))
    row = next(line for line in table if line.startswith("a.safetensors"))
    assert row[header.index("status"):].startswith("below target")  # in its column, not shifted
    assert "    below target: w8a8 logits cosine (worst image) 0.9742 is below 0.99" in table


def test_a_timm_training_checkpoint_name_is_a_checkpoint(tmp_path):
    """timm's train.py writes model_best.pth.tar / checkpoint-N.pth.tar: build skipped them as "not a checkpoint
    file" while inspect and convert read them; their artifacts are named without the .pth.tar."""
    import argparse

    import torch

    from vitdeploy.build import _entry
    from vitdeploy.convert import default_output
    from vitdeploy.synthetic import write_seeded_checkpoint

    from safetensors.torch import load_file

    weights = load_file(write_seeded_checkpoint("levit_128s", tmp_path / "w.safetensors"))
    ckpt = tmp_path / "model_best.pth.tar"  # what timm's CheckpointSaver writes: args is an argparse.Namespace
    torch.save({"epoch": 3, "arch": "levit_128s", "state_dict": weights, "version": 2,
                "args": argparse.Namespace(model="levit_128s", lr=5e-4)}, ckpt)
    entry = _entry(ckpt)
    assert entry.variant == "levit_128s" and not entry.reason, entry
    assert _entry(tmp_path / "w.safetensors").variant == "levit_128s"
    (tmp_path / "images.tar").write_bytes(b"x" * 10)
    assert "not a checkpoint file" in _entry(tmp_path / "images.tar").reason
    assert default_output(ckpt, "tflite", "none").name == "model_best_fp32.tflite"
