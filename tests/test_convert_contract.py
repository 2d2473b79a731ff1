"""The converter contract: every target is one registered ``convert(model, request) -> Conversion``, and
``convert()`` does the shared work once -- the passes, and the below-target rule (a w8a8 artifact that missed
its accuracy target is written aside as ``<stem>.below-target<suffix>``; the CLI exits 1) -- for any target.

A fake converter registered in place of TFLite's knows nothing of that rule; convert() applies it. Fast: no
real conversion runs (a seeded LeViT-128S checkpoint is loaded and BatchNorm-folded).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from vitdeploy import targets
from vitdeploy.errors import ConversionError, VitdeployError
from vitdeploy.targets.contract import Conversion, ConvertRequest, below_target_path, publish

PACKAGE = Path(__file__).resolve().parents[1] / "vitdeploy"


@dataclass
class FakeConversion(Conversion):
    path: Path
    size_bytes: int
    seconds: float
    quantize: str
    precision: str
    accuracy_target_met: bool
    warnings: list[str] = field(default_factory=list)
    batchnorm_seen: int = -1


def fake_converter(met: bool, seen: list):
    """A converter that measured its artifact ``met`` (or not) and says nothing of where it goes."""
    def convert(model, request: ConvertRequest) -> FakeConversion:
        from vitdeploy.passes import count_batchnorm

        seen.append(request)
        warnings = [] if met else ["w8a8 misses the accuracy target: fake"]
        return FakeConversion(path=request.out, size_bytes=0, seconds=0.0, quantize=request.precision.name,
                              precision="fp16", accuracy_target_met=met, warnings=warnings,
                              batchnorm_seen=count_batchnorm(model), artifact=b"fake model bytes")
    return convert


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from vitdeploy.synthetic import write_seeded_checkpoint

    return write_seeded_checkpoint("levit_128s", tmp_path_factory.mktemp("ckpt") / "net.safetensors")


@pytest.fixture
def fake_tflite(monkeypatch):
    def install(met: bool) -> list:
        seen = []
        monkeypatch.setitem(targets.CONVERTERS, "tflite", targets.Target(fake_converter(met, seen)))
        return seen
    return install


def test_a_missed_target_from_any_converter_is_written_aside_by_convert(checkpoint, fake_tflite, tmp_path):
    from vitdeploy.convert import convert

    seen = fake_tflite(met=False)
    out = tmp_path / "net_w8a8.tflite"
    out.write_bytes(b"previous model")
    report = convert(checkpoint, "tflite", out=out, quantize="w8a8", force=True)
    aside = tmp_path / "net_w8a8.below-target.tflite"
    assert report["path"] == str(aside) and report["accuracy_target_met"] is False
    assert aside.read_bytes() == b"fake model bytes" and report["size_bytes"] == len(b"fake model bytes")
    assert out.read_bytes() == b"previous model"  # what was at -o is not replaced by a model below target
    # convert ran the passes once, before the converter, and asked it with the checkpoint's facts
    assert report["batchnorm_seen"] == 0 and report["bn_folding"]["batchnorm_after"] == 0
    (request,) = seen
    assert request.precision.activations == "int8" and request.variant == "levit_128s" and request.out == out
    assert request.metadata["variant"] == "levit_128s" and request.source_model is not None
    assert report["precision"] == report["quantize"] == "w8a8"  # the report's words, for every target


def test_a_met_target_is_written_where_asked(checkpoint, fake_tflite, tmp_path):
    from vitdeploy.convert import convert

    fake_tflite(met=True)
    report = convert(checkpoint, "tflite", out=tmp_path / "net.tflite", quantize="w8a8")
    assert report["path"] == str(tmp_path / "net.tflite") and report["accuracy_target_met"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.tflite"]


def test_the_cli_fails_a_missed_target_with_the_converters_line(checkpoint, fake_tflite, tmp_path):
    from vitdeploy.cli import main

    fake_tflite(met=False)
    result = CliRunner().invoke(main, ["convert", str(checkpoint), "--target", "tflite", "--quantize", "w8a8",
                                       "-o", str(tmp_path / "m.tflite")])
    assert result.exit_code == 1, result.output
    assert "w8a8 misses the accuracy target: fake" in result.output
    assert (tmp_path / "m.below-target.tflite").is_file() and not (tmp_path / "m.tflite").exists()


def test_publish_writes_packages_aside_too_and_keeps_nothing_half_written(tmp_path):
    """A folder artifact (an .mlpackage, saved by its library) goes through the same rule; a failed save
    leaves the previous package and no temporaries."""
    def save(path):
        Path(path).mkdir()
        (Path(path) / "weights.bin").write_bytes(b"12345")

    conv = FakeConversion(path=tmp_path / "m.mlpackage", size_bytes=0, seconds=1.0, quantize="w8a8",
                          precision="fp16", accuracy_target_met=False, artifact=save)
    publish(conv, tmp_path / "m.mlpackage")
    assert conv.path == tmp_path / "m.below-target.mlpackage" and conv.size_bytes == 5 and conv.artifact is None
    assert "artifact" not in conv.to_dict() and conv.to_dict()["path"] == str(conv.path)

    old = tmp_path / "old.mlpackage"
    old.mkdir()
    (old / "marker").write_text("old")

    def broken(path):
        Path(path).mkdir()
        raise ConversionError("saving the .mlpackage failed: OSError: disk full")

    with pytest.raises(ConversionError):
        publish(FakeConversion(path=old, size_bytes=0, seconds=0.0, quantize="none", precision="fp16",
                               accuracy_target_met=True, artifact=broken), old)
    assert (old / "marker").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.below-target.mlpackage", "old.mlpackage"]


def test_below_target_path():
    assert below_target_path(Path("a/net_w8a8.pte")) == Path("a/net_w8a8.below-target.pte")


@pytest.mark.parametrize("target,options,line", [
    ("coreml", {"delegate": "coreml"}, "--delegate is for --target executorch"),
    ("tflite", {"delegate": "coreml"}, "--delegate is for --target executorch"),
    ("executorch", {"int8_io": True, "quantize": "w8a8"},
     "--int8-io is for --target tflite (an ExecuTorch program keeps float input/output)"),
    ("coreml", {"int8_finetune": 3, "quantize": "w8a8"}, "--int8-finetune needs --target tflite --quantize w8a8"),
    ("tflite", {"int8_finetune": 3}, "--int8-finetune needs --target tflite --quantize w8a8"),
])
def test_options_a_target_does_not_take_are_refused_before_the_checkpoint_loads(tmp_path, target, options, line):
    from vitdeploy.convert import convert

    with pytest.raises(VitdeployError) as e:
        convert(tmp_path / "missing.pth", target, **options)
    assert str(e.value) == line


def test_the_below_target_rule_and_the_dispatch_live_in_one_place():
    """One BELOW_TARGET_SUFFIX (targets.contract); no target module renames its own output; convert.py
    dispatches through the registry, comparing no target names."""
    defining = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                if '".below-target"' in p.read_text() or "'.below-target'" in p.read_text()]
    assert defining == ["targets/contract.py"]
    for name in ("tflite", "executorch", "coreml"):
        text = (PACKAGE / "targets" / f"{name}.py").read_text()
        assert "with_name(" not in text and "BELOW_TARGET" not in text, name
        assert "def convert(model, request" in text, name
    compared = [node.value for node in ast.walk(ast.parse((PACKAGE / "convert.py").read_text()))
                if isinstance(node, ast.Compare) for node in [node.left, *node.comparators]
                if isinstance(node, ast.Constant) and node.value in targets.CONVERTERS]
    assert compared == []
    from vitdeploy.formats import TARGETS

    assert set(targets.CONVERTERS) == set(TARGETS)


def test_graph_rewrites_are_registered_passes_not_target_code():
    """passes/ is the only place that changes models or graphs: the edge-dialect rewrites ExecuTorch lowers
    with and the SiLU split PT2E annotates are registered there, with the graph kind they apply to."""
    from vitdeploy.passes import GRAPH_PASSES, graph_pipeline

    assert {name: kind for name, (kind, _) in GRAPH_PASSES.items()} == {
        "split_silu": "aten", "drop_noop_expand": "edge", "split_as_slices": "edge"}
    assert [f.__name__ for f in graph_pipeline("executorch-edge")] == ["drop_noop_expand", "split_as_slices"]
    with pytest.raises(ValueError, match="rewrites edge graphs"):
        from vitdeploy.passes import graph_passes

        graph_passes(["drop_noop_expand"], "aten")
    defined = {node.name: path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.FunctionDef) and node.name in GRAPH_PASSES}
    assert set(defined.values()) == {"passes/export_graph.py"}


def test_converter_failures_are_one_line_with_their_stage():
    from vitdeploy.diagnostics import converter_errors

    with pytest.raises(ConversionError) as e, converter_errors("TFLite conversion", at="torch.export/lowering"):
        raise RuntimeError("unsupported layer\nlong traceback")
    assert str(e.value) == "TFLite conversion failed at torch.export/lowering: RuntimeError: unsupported layer long traceback"
    for name in ("tflite", "executorch"):
        text = (PACKAGE / "targets" / f"{name}.py").read_text()
        assert "failed at {" not in text and "failed: {describe" not in text and "converter_errors(" in text, name
