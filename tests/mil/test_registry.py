"""The MIL op registry and the package layout (vitdeploy/runtimes/mil): needs neither coremltools nor torch."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vitdeploy.runtimes import mil
from vitdeploy.runtimes.mil import ops
from vitdeploy.models import FAMILIES
from vitdeploy.runtimes.mil.registry import REGISTRY, family_ops, register, supported_ops, unused_ops

PACKAGE = Path(mil.__file__).parent

# What coremltools' conversions of the two families contain (vitdeploy's artifacts in every mode, and the
# unmodified model's default conversion), as each family's row records it (Family.coreml_ops);
# tests/test_coreml_target.py checks the record against its conversions.
LEVIT_OPS = {
    "add", "batch_norm", "cast", "classify", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "conv",
    "dequantize", "expand_dims", "linear", "matmul", "mul", "quantize", "reduce_mean", "reshape", "sigmoid_hard",
    "slice_by_index", "softmax", "split", "squeeze", "thresholded_relu", "transpose",
}
MOBILEVIT_OPS = {
    "add", "cast", "classify", "concat", "constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "conv",
    "dequantize", "layer_norm", "linear", "matmul", "mul", "quantize", "reduce_mean", "reshape", "silu", "softmax",
    "split", "transpose",
}


def test_family_ops_list_what_levit_and_mobilevit_use():
    assert family_ops("levit") == LEVIT_OPS
    assert family_ops("mobilevit") == MOBILEVIT_OPS
    assert family_ops() == LEVIT_OPS | MOBILEVIT_OPS
    assert unused_ops() == set(REGISTRY) - LEVIT_OPS - MOBILEVIT_OPS
    assert sorted(FAMILIES) == ["levit", "mobilevit"]  # the MIL registry has no family list of its own


def test_every_op_a_family_records_is_one_the_interpreter_runs():
    for fam in FAMILIES.values():
        assert fam.coreml_ops <= set(REGISTRY), (fam.name, fam.coreml_ops - set(REGISTRY))


def test_no_op_is_dropped():
    # Ops no family emits stay (other programs run too); each has its per-op test in tests/mil.
    assert len(REGISTRY) == 124
    assert supported_ops() == sorted(REGISTRY) + ["const"]
    assert {"topk", "const"}.isdisjoint(REGISTRY)


def test_every_op_module_mirrors_a_coremltools_file():
    registered = {op.module for op in REGISTRY.values()}
    names = {module.__name__.rpartition(".")[2] for module in ops.MODULES}
    assert registered == names  # each module registers something; every op comes from a listed module
    for module in ops.MODULES:
        doc = module.__doc__ or ""
        assert "\n" not in doc.strip() and "mirrors coremltools mil/ops/defs/" in doc, module.__name__
    on_disk = {p.stem for p in (PACKAGE / "ops").glob("*.py")} - {"__init__", "_utils"}
    assert on_disk == names


def test_modules_stay_small():
    for path in PACKAGE.rglob("*.py"):
        assert len(path.read_text().splitlines()) <= 600, path


def test_register_rejects_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        register("relu")(lambda a: a["x"])
    assert "relu" in REGISTRY and REGISTRY["relu"].module == "activation"


def test_module_imports_without_coremltools():
    code = (
        "import sys; import vitdeploy.runtimes.mil as m; "
        "assert 'coremltools' not in sys.modules, 'coremltools imported at module level'; "
        "assert 'torch' not in sys.modules, 'torch imported at module level'; "
        "layers = [n for n in sys.modules if n.startswith(('vitdeploy.targets', 'vitdeploy.runtimes.open'))]; "
        "assert not layers, layers"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_imports_no_higher_layer():
    """The interpreter is a runtime: it must not reach into the converters or the runners, even lazily."""
    higher = re.compile(r"(vitdeploy|from \.{3,})\.?(targets|runners|quantization|parity|convert|api)\b|(vitdeploy\.runtimes|from \.\.)\.?open\b")
    for path in PACKAGE.rglob("*.py"):
        assert not higher.search(path.read_text()), path
