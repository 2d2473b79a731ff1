"""The formats table (vitdeploy.formats.FORMATS) is what every stage reads about a format: the harness protocol's
model suffixes and compute units, the runners, the options convert accepts, what `profile --device` takes.

The structural half (no suffix literal or target-name comparison outside formats/) is
tests/test_architecture.py::test_no_format_dispatch_outside_formats.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.errors import VitdeployError
from vitdeploy.formats import FORMATS, format_of, own_format, platform_units, suffixes_on


def test_every_row_names_a_runner_of_its_own_kind():
    from vitdeploy.runtimes.open import runner_class
    from vitdeploy.runtimes.base import Runner

    for fmt in FORMATS.values():
        module, _, name = fmt.runner.partition(":")
        assert module.startswith("vitdeploy.runtimes.") and name, fmt
        if fmt.name == "tflite":  # the one runtime every install has (the others are extras)
            cls = runner_class(fmt)
            assert issubclass(cls, Runner) and cls.kind == fmt.name


def test_rows_hold_what_the_harnesses_and_packaging_take():
    from vitdeploy.devices.protocol import COMPUTE_UNITS, MODEL_SUFFIXES, PTE_COMPUTE_UNITS

    # The harness apps' own lists are checked against these in tests/test_devices.py.
    assert MODEL_SUFFIXES == {"android": (".tflite", ".pte"), "ios": (".mlpackage", ".pte")}
    assert {p: suffixes_on(p) for p in ("android", "ios")} == MODEL_SUFFIXES
    assert PTE_COMPUTE_UNITS == {"android": ("cpu",), "ios": ("cpu", "coreml")}
    assert COMPUTE_UNITS == {"android": platform_units("android"), "ios": platform_units("ios")}
    assert own_format("android").name == "tflite" and own_format("ios").name == "coreml"
    for fmt in FORMATS.values():
        assert set(fmt.compute_units) == set(fmt.platforms), fmt.name
    assert format_of("m.MLMODEL") is None and format_of("m.mlmodel", old=True) is FORMATS["coreml"]


def test_the_options_table_is_the_rows():
    from vitdeploy.options import SCOPE, refuse_inapplicable

    assert SCOPE == {"--deployment-target": (("coreml",), None), "--compute-units": (("coreml",), None),
                     "--delegate": (("executorch",), None), "--int8-io": (("tflite",), ("w8a8",)),
                     "--int8-finetune": (("tflite",), ("w8a8",)),
                     "--calib": (("tflite", "coreml", "executorch"), ("w8a8", "w8a16"))}
    refuse_inapplicable("executorch", "fp32", ["--delegate", "--not-in-the-table"])
    with pytest.raises(VitdeployError, match="^--delegate is for --target executorch: it does nothing for --target "
                                             "tflite; drop it$"):
        refuse_inapplicable("tflite", "fp32", ["--delegate"])
    with pytest.raises(VitdeployError, match="^--calib is for w8a8/w8a16: it does nothing for coreml w8; drop it$"):
        refuse_inapplicable("coreml", "w8", ["--calib"])


# -- profile MODEL.pte --device: a .pte runs on both harnesses, with units of its own ---------------------


@pytest.fixture(scope="module")
def tiny_pte(tmp_path_factory) -> Path:
    pytest.importorskip("executorch")
    import fuzz_seeds
    from pte_fixtures import write_tiny_pte

    config = fuzz_seeds._tiny_config("NHWC-pixels", [1, 16, 16, 3], "pixels")
    return write_tiny_pte(tmp_path_factory.mktemp("pte") / "tiny.pte", size=16, metadata=config)


@pytest.mark.skipif(sys.platform == "darwin", reason="on a Mac the iPhone run itself starts")
@pytest.mark.parametrize("units", ["coreml", "cpu", "cpu,coreml"])
def test_profile_pte_on_an_iphone_takes_the_pte_units(tiny_pte, units):
    """`--compute-units cpu|coreml` are a .pte's units on iOS: taken as spelled (not refused as unknown Core ML
    units, nor renamed cpuOnly), so the run gets as far as this Linux host allows."""
    result = CliRunner().invoke(main, ["profile", str(tiny_pte), "--device", "iphone12", "--compute-units", units])
    assert result.exit_code == 2, result.output
    assert "compute unit" not in result.output and "cpuOnly" not in result.output, result.output
    assert "profiling on iPhone needs macOS with Xcode" in result.output


def test_profile_pte_refuses_a_unit_the_platform_does_not_give_a_pte(tmp_path):
    """One line before any device is looked for: on Android a .pte runs on the CPU only."""
    from vitdeploy.cli_compare import _compute_units

    with pytest.raises(VitdeployError, match=r"^--compute-units coreml: not a android compute unit for a \.pte; "
                                             r"choose from cpu$"):
        _compute_units("coreml", "pixel7", ["m.pte"])
    assert _compute_units("cpu,coreml", "iphone12", ["m.pte"]) == ("cpu", "coreml")
    assert _compute_units("cpu", "iphone12", ["m.mlpackage"]) == ("cpuOnly",)  # the old spelling, still taken


def test_a_pte_on_an_iphone_needs_no_android_harness():
    """Which harness `profile --device` prepares follows the device's platform, not every platform the
    format runs on (a .pte on an iPhone built the Android harness with Gradle first)."""
    from vitdeploy.profile import _device_platforms

    assert _device_platforms(Path("m.pte"), "iphone12") == ("ios",)
    assert _device_platforms(Path("m.pte"), "pixel7") == ("android",)
    assert _device_platforms(Path("m.pte"), "SERIAL123") == ("android", "ios")  # not in the catalog: either
    assert _device_platforms(Path("m.tflite"), "iphone12") == ()
