"""Every command, every file argument, every kind of bad file: exit 2, one line naming the file, no traceback.

The table below must cover every click.Path parameter of every command (a new command or option fails
test_every_path_parameter_is_walked until it is added here), so no command can leak a traceback unnoticed.
"""

from __future__ import annotations

import os

import click
import pytest
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.exits import INTERNAL_ERROR_EXIT, unexpected_error_line
from vitdeploy.untrusted import reading

BAD_KINDS = ("missing", "directory", "empty", "garbage", "symlink_loop")

# (command, parameter) -> the other arguments, with "{ckpt}", "{tflite}", ... filled in from the fixture;
# "{bad}" is where the bad path goes.
WALK = {
    ("inspect", "path"): ["inspect", "{bad}"],
    ("predict", "model"): ["predict", "{bad}", "{npy}"],
    ("predict", "inputs"): ["predict", "{tflite}", "{bad}"],
    ("predict", "labels_file"): ["predict", "{tflite}", "{npy}", "--labels", "{bad}"],
    ("convert", "checkpoint"): ["convert", "{bad}", "--target", "tflite", "-o", "{out}/x.tflite"],
    ("convert", "recipe"): ["convert", "{ckpt}", "--target", "tflite", "--recipe", "{bad}", "-o", "{out}/x.tflite"],
    ("convert", "calib_dir"): ["convert", "{ckpt}", "--target", "tflite", "--quantize", "w8a8", "--calib", "{bad}",
                              "-o", "{out}/x.tflite"],
    ("convert", "labels_file"): ["convert", "{ckpt}", "--target", "tflite", "--labels", "{bad}",
                                 "-o", "{out}/x.tflite"],
    ("profile", "models"): ["profile", "{bad}", "--runs", "1", "--warmup", "0"],
    ("build", "recipes_dir"): ["build", "--recipes", "{bad}", "--checkpoints", "{ckpt_dir}", "-o", "{out}"],
    ("build", "checkpoints_dir"): ["build", "--recipes", "{recipe_dir}", "--checkpoints", "{bad}", "-o", "{out}"],
    ("parity", "artifact"): ["parity", "{bad}", "--checkpoint", "{ckpt}", "--n-images", "1", "--n-random", "0"],
    ("parity", "checkpoint"): ["parity", "{tflite}", "--checkpoint", "{bad}", "--n-images", "1"],
    ("parity", "data_dir"): ["parity", "{ckpt}", "--checkpoint", "{ckpt}", "--data", "{bad}", "--n-random", "0"],
    ("eval", "models"): ["eval", "{bad}", "--data", "{data}"],
    ("eval", "data_dir"): ["eval", "{tflite}", "--data", "{bad}"],
    ("package", "artifact"): ["package", "{bad}", "-o", "{out}/pkg"],
    ("package", "into"): ["package", "{tflite_pixels}", "--into", "{bad}"],
    ("demo", "checkpoints"): ["demo", "{bad}", "-o", "{out}/demo", "--quick"],
    ("benchmark", "checkpoint"): ["benchmark", "{bad}", "--quick", "-o", "{out}/bench"],
    ("benchmark", "data_dir"): ["benchmark", "{ckpt}", "--quick", "--data", "{bad}", "-o", "{out}/bench"],
}

# Outputs (a missing path is created, not an error) and inputs that only matter in a mode the walk does not
# reach cheaply, with the reason.
NOT_WALKED = {
    ("predict", "save_logits"): "an output path",
    ("convert", "out"): "an output path",
    ("profile", "report_dir"): "an output path",
    ("profile", "plot_path"): "an output path (--farm)",
    ("profile", "markdown_path"): "an output path (--farm)",
    ("profile", "state_dir"): "the farm state folder, created when missing (tests/test_farm_cli.py)",
    ("build", "out_dir"): "an output path",
    ("parity", "report_dir"): "an output path",
    ("eval", "report_dir"): "an output path",
    ("package", "out"): "an output path",
    ("demo", "out_dir"): "an output path",
    ("profile", "harness_apks"): "read only with --device <phone> (tests/test_devices.py)",
    ("build", "data_dir"): "read per cell after its conversion (minutes); build reports it as a failed cell",
    ("build", "calib_dir"): "read per int8 cell after its conversion starts; reported as a failed cell",
    ("benchmark", "out_dir"): "an output path",
    ("benchmark", "markdown_path"): "an output path",
    ("benchmark", "plot_path"): "an output path",
    ("benchmark", "calib_dir"): "read per w8a8 cell by build_artifact (as build's --calib)",
}

# An empty directory is a well-formed (if useless) folder argument for these: the command runs and reports.
EMPTY_DIR_IS_VALID: dict = {}  # (build's empty --checkpoints folder is refused: nothing to build)


@pytest.fixture(scope="module")
def valid(seeds, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("valid")
    (root / "ckpts").mkdir()
    (root / "ckpts" / "mobilevit_xxs.pth").symlink_to(seeds["pth"])
    out = {"ckpt": seeds["pth"], "ckpt_dir": root / "ckpts", "recipe_dir": seeds["recipe"].parent,
           "tflite": seeds["tflite"], "tflite_pixels": seeds["tflite_pixels"], "npy": seeds["npy"],
           "data": seeds["data"]}
    return {k: str(v) for k, v in out.items()}


def make_bad(kind: str, where) -> str:
    path = where / f"bad_{kind}.pth"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00\x01garbage\xff" * 50)
    elif kind == "symlink_loop":
        os.symlink(path.name, path)
    return str(path)


def test_every_path_parameter_is_walked():
    params = {(name, p.name) for name, cmd in main.commands.items() for p in cmd.params
              if isinstance(p.type, click.Path)}
    assert params - set(WALK) - set(NOT_WALKED) == set(), "add the new file parameter to WALK (or NOT_WALKED)"
    assert set(WALK) | set(NOT_WALKED) <= params | set(), "WALK names a parameter that no longer exists"


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("case", list(WALK), ids=[f"{c}-{p}" for c, p in WALK])
def test_bad_file_argument(case, kind, valid, tmp_path):
    if kind == "directory" and case in EMPTY_DIR_IS_VALID:
        pytest.skip(EMPTY_DIR_IS_VALID[case])
    bad = make_bad(kind, tmp_path)
    fill = dict(valid, bad=bad, out=str(tmp_path / "out"))
    args = [a.format(**fill) for a in WALK[case]]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("INFO: ")]
    assert "Traceback" not in result.output
    assert result.exit_code == 2, (args, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert os.path.basename(bad) in lines[0], lines[0]
    assert not (tmp_path / "out" / "x.tflite").exists()  # nothing half-written


class _Boom(Exception):
    pass


def test_an_unexpected_exception_is_one_line_not_a_traceback(monkeypatch, tmp_path):
    """A bug anywhere in a command: one line naming the file being read, exit 3, no traceback."""
    import vitdeploy.api as api

    def inspect(path, variant=None):
        with reading(path):  # a reader says which file it reads: the CLI names it from there
            raise _Boom("something nobody anticipated\nsecond line")

    monkeypatch.setattr(api, "inspect", inspect)
    monkeypatch.delenv("VITDEPLOY_DEBUG", raising=False)
    result = CliRunner().invoke(main, ["inspect", str(tmp_path / "m.pth")], catch_exceptions=False)
    assert result.exit_code == INTERNAL_ERROR_EXIT
    assert result.stderr.strip() == (f"internal error while reading {tmp_path / 'm.pth'}: _Boom: something nobody "
                                     "anticipated (a bug in vitdeploy; VITDEPLOY_DEBUG=1 shows the traceback)")
    monkeypatch.setenv("VITDEPLOY_DEBUG", "1")
    with pytest.raises(_Boom):
        CliRunner().invoke(main, ["inspect", str(tmp_path / "m.pth")], catch_exceptions=False)


@pytest.mark.parametrize("exc,expected", [
    (IsADirectoryError(21, "Is a directory", "/x/model.pth"), ("error: /x/model.pth: Is a directory", 2)),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ("error: a.pth: not UTF-8 text", 2)),
    (EOFError("Ran out of input"), ("error: a.pth: truncated file (EOFError: Ran out of input)", 2)),
    (MemoryError(), ("error: a.pth: declares sizes too large to load", 2)),
])
def test_input_error_types_exit_2_naming_the_file(exc, expected):
    ctx = click.Context(main.commands["inspect"])
    ctx.params = {"path": "a.pth"}
    line, code = unexpected_error_line(exc, ctx)
    assert code == expected[1] and line.startswith(expected[0]), line


def test_a_data_error_inside_a_reader_is_the_files_fault(seeds, tmp_path):
    """A recipe whose targets are null trips the reader itself (TypeError): still exit 2 naming the recipe."""
    text = seeds["recipe"].read_text().replace("targets:\n", "targets: null\nunused:\n")
    assert "targets: null" in text
    recipe, empty = tmp_path / "r.yaml", tmp_path / "empty.pth"
    recipe.write_text(text)
    empty.write_bytes(b"")
    result = CliRunner().invoke(main, ["convert", str(empty), "--target", "tflite", "--recipe", str(recipe)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith(f"error: {recipe}: "), result.stderr
