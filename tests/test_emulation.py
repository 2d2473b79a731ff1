"""A phone CPU's numerics on this box: the emulated aarch64 LiteRT (issue 17).

The fast tests cover the pieces (Debian index, .deb unpacking, CPU stand-ins, CLI contracts). The
``slow`` ones set the emulator up once (into the user's cache, ~15 s and ~90 MB of downloads the first
time, as ``vitdeploy setup arm`` does) and run real models on emulated Cortex CPUs: fp16 arithmetic must
differ from the host exactly where it should (a reduction that saturates in fp16) and fp32 must match.
"""

from __future__ import annotations

import io
import json
import lzma
import tarfile

import numpy as np
import pytest
from click.testing import CliRunner

from vitdeploy import references
from vitdeploy.cli import EMULATED_CPUS, main
from vitdeploy.devices.catalog import emulated_cpus, get_device
from vitdeploy.emulation import CPUS, debian
from vitdeploy.errors import VitdeployError

INDEX = """Package: python3.11
Version: 3.11.2-6
Depends: python3.11-minimal (= 3.11.2-6), libpython3.11-stdlib (= 3.11.2-6), media-types | mime-support
Filename: pool/main/p/python3.11/python3.11_3.11.2-6_arm64.deb
Size: 10
SHA256: 00

Package: python3.11-minimal
Pre-Depends: libc6 (>= 2.36)
Depends: libpython3.11-minimal (= 3.11.2-6), libexpat1 (>= 2.1~beta3), zlib1g:any
Filename: pool/m.deb
Size: 20
Description: a line
 with a continuation: Depends: not-a-field

Package: libc6
Filename: pool/libc6.deb
Size: 30
Provides: libc-any

Package: libpython3.11-stdlib
Depends: libc-any, debconf (>= 0.5) | debconf-2.0
Filename: pool/stdlib.deb
Size: 5

Package: libpython3.11-minimal
Filename: pool/lm.deb
Size: 1

Package: libexpat1
Filename: pool/e.deb
Size: 1

Package: zlib1g
Filename: pool/z.deb
Size: 1
"""


def test_dependency_closure_follows_first_alternatives_and_virtual_packages():
    index = debian.parse_index(INDEX)
    names = [p.name for p in debian.closure(index, ["python3.11"], skip=frozenset({"debconf", "media-types"}))]
    assert names == sorted(["python3.11", "python3.11-minimal", "libc6", "libpython3.11-stdlib",
                            "libpython3.11-minimal", "libexpat1", "zlib1g"])
    assert "not-a-field" not in names  # continuation lines are not fields
    with pytest.raises(VitdeployError, match="not in the index"):
        debian.closure(index, ["no-such-package"])


def _deb(files: dict[str, bytes], symlinks: dict[str, str] = {}) -> bytes:
    """A real .deb (ar archive: debian-binary, control.tar.xz, data.tar.xz)."""
    def tar_xz(entries, links=()):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as archive:
            for name, data in entries.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o755
                archive.addfile(info, io.BytesIO(data))
            for name, target in dict(links).items():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, target
                archive.addfile(info)
        return lzma.compress(raw.getvalue())

    members = {"debian-binary": b"2.0\n", "control.tar.xz": tar_xz({"./control": b"Package: x\n"}),
               "data.tar.xz": tar_xz(files, symlinks)}
    out = b"!<arch>\n"
    for name, data in members.items():
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def test_deb_unpacks_with_modes_and_relative_links(tmp_path):
    deb = _deb({"./usr/bin/tool": b"#!x", "./usr/lib/a.so.1": b"so"}, {"./usr/lib/a.so": "a.so.1"})
    written = debian.extract_deb(deb, tmp_path)
    assert sorted(written) == ["usr/bin/tool", "usr/lib/a.so", "usr/lib/a.so.1"]
    assert (tmp_path / "usr/bin/tool").stat().st_mode & 0o111
    assert (tmp_path / "usr/lib/a.so").read_bytes() == b"so"
    only = tmp_path / "only"
    assert debian.extract_deb(deb, only, only=("usr/bin/tool",)) == ["usr/bin/tool"]


def test_deb_with_a_path_outside_the_folder_is_refused(tmp_path):
    with pytest.raises(VitdeployError, match="unsafe path"):
        debian.extract_deb(_deb({"./../escape": b"x"}), tmp_path / "root")
    assert not (tmp_path / "escape").exists()
    with pytest.raises(VitdeployError, match="not a .deb"):
        debian.extract_deb(b"PK\x03\x04 a zip", tmp_path)


def test_phones_map_to_emulated_cpus_with_the_same_isa():
    assert emulated_cpus(get_device("pixel7")) == ["cortex-a76", "cortex-a55"]  # X1/A78 big, A55 little
    assert emulated_cpus(get_device("pixel8")) == ["cortex-a710"]  # ARMv9 everywhere (i8mm)
    with pytest.raises(VitdeployError, match="use --cpu"):
        emulated_cpus(get_device("iphone15pro"))
    assert tuple(CPUS) == EMULATED_CPUS  # the CLI's copy (kept there for a fast --help)


def test_emulation_options_need_an_emulated_cpu(tmp_path):
    result = CliRunner().invoke(main, ["parity", str(tmp_path / "m.tflite"), "--checkpoint",
                                       str(references.checkpoint("levit_128s")), "--fp16", "force"])
    assert result.exit_code == 2 and "add --cpu or --device" in result.output


def test_parity_on_an_emulated_cpu_without_setup_is_a_one_line_error(tmp_path, monkeypatch, tiny_tflite):
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "empty-cache"))
    result = CliRunner().invoke(main, ["parity", str(tiny_tflite), "--checkpoint",
                                       str(references.checkpoint("levit_128s")), "--cpu", "cortex-a76"])
    assert result.exit_code == 2, result.output
    assert "not set up" in result.output and "vitdeploy setup arm" in result.output
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """The LeViT-128S reference as an fp32 .tflite (what the parity tests run)."""
    from vitdeploy.convert import convert

    out = tmp_path_factory.mktemp("ref") / "levit_128s_fp32.tflite"
    convert(references.checkpoint("levit_128s"), "tflite", out=out, quantize="fp32")
    return out


# ----------------------------------------------------------------------------- on the emulator


@pytest.fixture(scope="module")
def arm():
    """The emulated environment, built on first use as `vitdeploy setup arm` does."""
    from vitdeploy.emulation import setup_arm

    return setup_arm()


@pytest.fixture(scope="module")
def saturating_model(tmp_path_factory):
    """Linear(65536 -> 2), all weights 1: on x = 0.0625 the exact sum is 4096, but fp16 accumulators stop
    growing once their spacing is twice the addend (128 each: XNNPACK's fp16 GEMM ends at 512, measured)."""
    import torch

    linear = torch.nn.Linear(65536, 2, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0)
    import litert_torch

    path = tmp_path_factory.mktemp("sat") / "sum.tflite"
    litert_torch.convert(linear.eval(), (torch.zeros(1, 65536),)).export(str(path))
    return path.read_bytes()


@pytest.mark.slow
def test_fp16_arithmetic_saturates_on_emulated_arm_and_fp32_matches(arm, saturating_model):
    from vitdeploy.emulation.run import run_model
    from vitdeploy.runtimes.tflite import run_tflite
    from vitdeploy.formats.tflite import FP16_COMPUTE, set_reduced_precision

    x = np.full((1, 65536), 0.0625, np.float32)
    asked = set_reduced_precision(saturating_model, FP16_COMPUTE)
    assert run_tflite(asked, x).ravel().tolist() == [4096.0, 4096.0]  # x86 ignores the request
    for cpu in ("cortex-a55", "cortex-a76", "cortex-a710"):
        fp32, report = run_model(arm, saturating_model, x, cpu=cpu)
        assert fp32.ravel().tolist() == [4096.0, 4096.0], cpu
        assert report["delegated"] and "asimdhp" in report["features"]  # XNNPACK, on a CPU with fp16 arithmetic
        fp16, _ = run_model(arm, asked, x, cpu=cpu)
        assert fp16.ravel().tolist() == [512.0, 512.0], cpu
    no_xnnpack, report = run_model(arm, asked, x, cpu="cortex-a76", xnnpack=False)
    assert no_xnnpack.ravel().tolist() == [4096.0, 4096.0] and not report["delegated"]


@pytest.mark.slow
def test_parity_on_emulated_cpus_reports_the_host_difference(arm, tiny_tflite, tmp_path):
    ckpt = references.checkpoint("levit_128s")
    args = ["parity", str(tiny_tflite), "--checkpoint", str(ckpt), "--images", str(references.heldout_dir()),
            "--n-images", "3", "--n-random", "1", "--json"]
    result = CliRunner().invoke(main, [*args, "--device", "pixel7", "--report", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "Emulated phone CPU" in (tmp_path / "report" / "report.md").read_text()
    data = json.loads(result.output[result.output.index("{"):])
    cpus = [data["arm"]["cpu"]] + [r["arm"]["cpu"] for r in data["other_cpus"]]
    assert cpus == ["cortex-a76", "cortex-a55"]
    for r in [data, *data["other_cpus"]]:
        assert r["passed"] and r["precision"] == "fp32" and not r["arm"]["fp16_compute"]
        assert r["arm"]["host_vs_arm"]["cosine_min"] > 0.99999 and r["arm"]["host_vs_arm"]["top1"] == 1.0
    forced = CliRunner().invoke(main, [*args, "--cpu", "cortex-a76", "--fp16", "force", "--precision", "fp16"])
    assert forced.exit_code == 0, forced.output
    data = json.loads(forced.output[forced.output.index("{"):])
    assert data["arm"]["fp16_compute"]
    assert data["arm"]["host_vs_arm"]["max_abs"] > 1e-4  # fp16 arithmetic really ran: not the host's numbers


@pytest.mark.slow
def test_fp16_compute_artifact_is_judged_on_emulated_arm_by_default(arm, tmp_path, monkeypatch):
    from vitdeploy.formats.tflite import FP16_COMPUTE, reduced_precision

    ckpt = references.checkpoint("levit_128s")
    out = tmp_path / "m.tflite"
    converted = CliRunner().invoke(main, ["convert", str(ckpt), "--target", "tflite", "--precision", "fp16-compute",
                                          "-o", str(out)])
    assert converted.exit_code == 0, converted.output
    assert reduced_precision(out.read_bytes()) == FP16_COMPUTE
    args = ["parity", str(out), "--checkpoint", str(ckpt), "--images", str(references.heldout_dir()),
            "--n-images", "3", "--n-random", "0"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "on an emulated cortex-a76" in result.output and "fp16 arithmetic" in result.output
    assert "preset fp16-compute" in result.output
    monkeypatch.setenv("VITDEPLOY_CACHE", str(tmp_path / "no-emulator"))
    host_only = CliRunner().invoke(main, args)
    assert host_only.exit_code == 0 and "judged on x86: fp16 arithmetic not exercised" in host_only.output


@pytest.fixture(scope="module")
def loud_levit(tmp_path_factory):
    """The LeViT-128S reference with its heads scaled by 1e4: logits ~1e5, fine in fp32, past fp16's 65504."""
    from safetensors.numpy import load_file, save_file

    weights = {k: v.astype(np.float32) if v.dtype == np.float16 else v
               for k, v in load_file(references.checkpoint("levit_128s")).items()}
    for head in ("head", "head_dist"):
        for p in ("weight", "bias"):
            weights[f"{head}.linear.{p}"] = weights[f"{head}.linear.{p}"] * 1e4
    folder = tmp_path_factory.mktemp("loud")
    save_file(weights, folder / "levit_128s_loud.safetensors")
    ckpt = folder / "levit_128s_loud.safetensors"
    out = folder / "loud_fp16-compute.tflite"
    from vitdeploy.convert import convert

    convert(ckpt, "tflite", out=out, quantize="fp16-compute")
    return ckpt, out


@pytest.mark.slow
def test_fp16_overflow_on_arm_is_found_localized_and_the_fix_measured(arm, loud_levit):
    ckpt, artifact = loud_levit
    args = ["parity", str(artifact), "--checkpoint", str(ckpt), "--n-images", "1", "--n-random", "0"]
    host = CliRunner().invoke(main, [*args, "--cpu", "cortex-a76", "--fp16", "off", "--json"])
    assert host.exit_code == 0, host.output  # fp32 arithmetic on the same phone CPU: fine
    result = CliRunner().invoke(main, [*args, "--localize", "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.output[result.output.index("{"):result.output.rindex("}") + 1])
    assert data["arm"]["cpu"] == "cortex-a76" and data["arm"]["fp16_compute"]  # chosen for an fp16-compute file
    assert data["failures"][0]["metric"] == "outputs_finite"
    assert data["arm"]["fp32_arithmetic"]["passes"]  # the fix, measured
    assert any("--quantize fp16" in w for w in data["warnings"])
    loc = data["localization"]
    assert loc["arm"]["cpu"] == "cortex-a76" and loc["arm"]["fp16_compute"]
    assert all(b["finite"] for b in loc["blocks"] if b["rel_l2"] is not None)  # every block fine in fp16 ...
    assert loc["first_divergent"] == "head"  # ... the heads' logits overflow
