"""Devices: catalog, discovery parsing, the harness protocol, the iOS command contract,
and the Android flow end to end with the real adb client against tests/adb_emulator.py."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vitdeploy.devices import catalog, host_info, list_devices, resolve_device
from vitdeploy.devices import android, ios
from vitdeploy.formats import io as fmt_io
from vitdeploy.devices.android import DeviceLost, parse_adb_devices, profile_android
from vitdeploy.devices.protocol import (
    HarnessRequest, HarnessResult, ProtocolError, TensorFile, expand_configs, read_tensor, write_tensor,
)
from vitdeploy.errors import VitdeployError

sys.path.insert(0, str(Path(__file__).parent))
from adb_emulator import AdbEmulator, EmulatedDevice, pixel7  # noqa: E402
from fuzz_seeds import minimal_mlpackage  # noqa: E402

ADB = shutil.which("adb")
needs_adb = pytest.mark.skipif(ADB is None, reason="adb client not installed (apt-get install adb)")


# -- catalog ---------------------------------------------------------------------------

def test_catalog_hardware_identifiers():
    iphone12 = catalog.get_device("iphone12")
    assert (iphone12.platform, iphone12.identifiers, iphone12.soc, iphone12.neural_engine_cores) == (
        "ios", ("iPhone13,2",), "A14 Bionic", 16)
    assert iphone12.compute_units == ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")
    pixel = catalog.get_device("pixel7")
    assert (pixel.platform, pixel.identifiers, pixel.soc) == ("android", ("panther",), "Google Tensor G2")
    assert {"xnnpack", "gpu", "nnapi"} <= set(pixel.compute_units)
    assert catalog.get_device("iphone14pro").identifiers == ("iPhone15,2",)
    assert catalog.get_device("iphone15pro").identifiers == ("iPhone16,1",)
    assert catalog.get_device("iphone16pro").identifiers == ("iPhone17,1",)
    assert catalog.get_device("host").platform == "host"


def test_w8a8_on_ane_only_from_a17_pro():
    assert not catalog.get_device("iphone12").w8a8_ane
    assert not catalog.get_device("iphone14pro").w8a8_ane  # A16
    assert not catalog.get_device("iphone15").w8a8_ane  # A16 too
    assert catalog.get_device("iphone15pro").w8a8_ane  # A17 Pro
    assert catalog.get_device("iphone16").w8a8_ane  # A18
    assert not catalog.get_device("pixel8").w8a8_ane


@pytest.mark.parametrize("typed,name", [("iPhone 12", "iphone12"), ("IPHONE_13", "iphone13"),
                                        ("Pixel-7", "pixel7"), ("galaxy s24", "galaxy-s24"),
                                        ("Samsung Galaxy S23", "galaxy-s23"), ("s23", "galaxy-s23")])
def test_lookup_normalizes_what_users_type(typed, name):
    assert catalog.lookup(typed).name == name


def test_unknown_device_suggests_the_closest_name():
    with pytest.raises(VitdeployError, match=r"unknown device 'pixle7' \(did you mean pixel7\?\)") as e:
        resolve_device("pixle7", connected=[])
    assert e.value.exit_code == 2
    assert "\n" not in str(e.value)
    with pytest.raises(VitdeployError, match="did you mean iphone12"):
        catalog.get_device("ipone 12")


def test_resolve_device_matches_a_connected_serial():
    connected = [{"platform": "android", "serial": "28151FDH2000AB", "catalog": "pixel7", "state": "device"},
                 {"platform": "ios", "udid": "00008101-000A1B2C3D4E001E", "catalog": "iphone12"}]
    r = resolve_device("28151FDH2000AB", connected=connected)
    assert (r.platform, r.serial, r.spec.name) == ("android", "28151FDH2000AB", "pixel7")
    r = resolve_device("00008101-000A1B2C3D4E001E", connected=connected)
    assert (r.platform, r.spec.soc) == ("ios", "A14 Bionic")
    assert resolve_device("pixel7", connected=connected).serial is None  # a name, not a phone
    with pytest.raises(VitdeployError, match="did you mean 28151FDH2000AB"):
        resolve_device("28151FDH2000A", connected=connected)


def test_match_connected_hardware_to_catalog():
    assert catalog.match_android("panther").name == "pixel7"
    assert catalog.match_android("e1q").name == catalog.match_android("e1s").name == "galaxy-s24"
    assert catalog.match_android("unknowncodename", "Pixel 8").name == "pixel8"
    assert catalog.match_android("unknowncodename", "Moto G") is None
    assert catalog.match_ios("iPhone13,2").name == "iphone12"


def test_host_info_and_list_devices_are_json(monkeypatch):
    info = host_info()
    assert info["logical_cores"] >= 1 and isinstance(info["isa_flags"], list)
    # An adb server address where nothing listens: discovery must note it, not crash or fork a server.
    monkeypatch.setenv("ADB_SERVER_SOCKET", "tcp:127.0.0.1:1")
    monkeypatch.setenv("PATH", "/nonexistent")
    out = list_devices(adb=ADB or "adb")
    json.dumps(out)
    assert out["android"] == [] and out["ios"] == []
    assert any(n.startswith("android:") for n in out["notes"]) and any(n.startswith("ios:") for n in out["notes"])
    assert {"iphone12", "pixel7", "host"} <= {c["name"] for c in out["catalog"]}


# -- adb devices -l parsing ------------------------------------------------------------

def test_parse_adb_devices_l():
    text = (
        "* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
        "List of devices attached\n"
        "28151FDH2000AB         device usb:1-1.2 product:panther model:Pixel_7 device:panther transport_id:3\n"
        "192.168.1.20:5555      device product:e1sxxx model:SM_S921B device:e1s transport_id:4\n"
        "R5CT1234567            unauthorized usb:1-1.3 transport_id:5\n"
        "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); see "
        "[http://developer.android.com/tools/device.html] usb:1-4 transport_id:6\n"
        "emulator-5554          offline transport_id:7\n\n"
    )
    devs = parse_adb_devices(text)
    assert [d["serial"] for d in devs] == ["28151FDH2000AB", "192.168.1.20:5555", "R5CT1234567",
                                           "0123456789ABCDEF", "emulator-5554"]
    assert devs[0] == {"serial": "28151FDH2000AB", "state": "device", "usb": "1-1.2", "product": "panther",
                       "model": "Pixel 7", "device": "panther", "transport_id": "3"}
    assert devs[1]["device"] == "e1s"
    assert devs[2]["state"] == "unauthorized"
    assert devs[3]["state"].startswith("no permissions") and devs[3]["usb"] == "1-4"
    assert devs[4]["state"] == "offline"
    assert parse_adb_devices("List of devices attached\nABC\tdevice\n") == [{"serial": "ABC", "state": "device"}]


def test_parse_getprop():
    text = "[ro.product.model]: [Pixel 7]\n[ro.soc.model]: [Tensor G2]\n[ro.empty]: []\n[ro.multi]: [a\n"
    assert android.parse_getprop(text) == {"ro.product.model": "Pixel 7", "ro.soc.model": "Tensor G2", "ro.empty": ""}


def test_choose_device_errors():
    with pytest.raises(VitdeployError, match="no Android device connected") as no_phone:
        android.choose_device([], device="pixel7")
    # what works without the phone: emulated numerics, and latency on a hosted farm's phones
    assert "parity MODEL --checkpoint CKPT --device pixel7" in str(no_phone.value)
    assert "--farm aws|qai-hub" in str(no_phone.value)
    two = [{"serial": "A", "state": "device", "model": "Pixel 7", "catalog": "pixel7"},
           {"serial": "B", "state": "device", "model": "Pixel 8", "catalog": "pixel8"}]
    with pytest.raises(VitdeployError, match=r"2 Android devices attached \(A \(Pixel 7\), B \(Pixel 8\)\)"):
        android.choose_device(two)
    assert android.choose_device(two, device="pixel8")["serial"] == "B"
    with pytest.raises(VitdeployError, match="unlock it"):
        android.choose_device([{"serial": "C", "state": "unauthorized"}], serial="C")


# -- protocol --------------------------------------------------------------------------

def _request(**kw) -> HarnessRequest:
    base = dict(platform="android", model="m.tflite", inputs=[TensorFile("input0.bin", [1, 3, 8, 8])],
                compute_units=["xnnpack", "gpu"], runs=3, warmup=1, threads=[1, 4], request_id="r1")
    base.update(kw)
    return HarnessRequest(**base)


def test_request_round_trip_and_configs():
    req = _request()
    again = HarnessRequest.loads(req.dumps())
    assert again == req
    assert [c["name"] for c in req.configs()] == ["xnnpack-1t", "xnnpack-4t", "gpu"]
    assert [c["name"] for c in expand_configs("ios", ["cpuOnly", "all"], [1, 4])] == ["cpuOnly", "all"]


@pytest.mark.parametrize("kw,msg", [
    (dict(compute_units=["tpu"]), "unknown android compute unit 'tpu'; choose from xnnpack, cpu, gpu, nnapi"),
    (dict(runs=0), "'runs' must be an integer >= 1"),
    (dict(model="../m.tflite"), "'model' must be a bare file name"),
    (dict(model="m.mlpackage"), "the android harness needs a .tflite or .pte model"),
    (dict(threads=[]), "'threads' must be a non-empty list"),
    (dict(request_id="a b"), "'request_id' must be 1-64 chars"),
    (dict(platform="ios", model="m.mlpackage", compute_units=["gpu"]), "unknown ios compute unit 'gpu'"),
])
def test_request_validation_is_one_line(kw, msg):
    with pytest.raises(ProtocolError) as e:
        _request(**kw)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_request_json_errors():
    with pytest.raises(ProtocolError, match="not valid JSON"):
        HarnessRequest.loads("{")
    d = _request().to_json()
    d["speed"] = "fast"
    with pytest.raises(ProtocolError, match="unknown field 'speed'"):
        HarnessRequest.from_json(d)
    d = _request().to_json()
    d["inputs"][0]["shape"] = [1, 0]
    with pytest.raises(ProtocolError, match=r"inputs\[0\]: 'shape' must be a list of positive integers"):
        HarnessRequest.from_json(d)


def _result(req, **cfg_over) -> dict:
    configs = []
    for c in req.configs():
        cfg = {**c, "status": "ok", "error": None, "load_ms": 1.0, "init_ms": 2.0, "first_inference_ms": 3.0,
               "latencies_ms": [1.0] * req.runs, "peak_memory_kb": 100,
               "outputs": [{"file": f"{c['name']}.output0.bin", "shape": [1, 10], "dtype": "float32"}],
               "op_placement": None}
        cfg.update(cfg_over)
        configs.append(cfg)
    return {"protocol": "vitdeploy-harness", "version": 1, "request_id": req.request_id, "status": "ok",
            "error": None, "device": {"platform": req.platform}, "configs": configs}


def test_result_validation():
    req = _request()
    res = HarnessResult.from_json(_result(req), req)
    assert [c.name for c in res.ok_configs] == ["xnnpack-1t", "xnnpack-4t", "gpu"]
    with pytest.raises(ProtocolError, match=r"configs\[0\] \(xnnpack-1t\): expected 3 latencies"):
        HarnessResult.from_json(_result(req, latencies_ms=[1.0]), req)
    with pytest.raises(ProtocolError, match="status 'error' must say why"):
        HarnessResult.from_json(_result(req, status="error"), req)
    bad = _result(req)
    bad["request_id"] = "other"
    with pytest.raises(ProtocolError, match="answers request 'other', expected 'r1'"):
        HarnessResult.from_json(bad, req)
    ops = [{"index": 0, "op": "ios17.conv", "device": "neuralEngine", "supported": ["cpu", "neuralEngine"],
            "cost": 0.4}]
    ios_req = _request(platform="ios", model="m.mlpackage", compute_units=["all"], threads=[1])
    assert HarnessResult.from_json(_result(ios_req, op_placement=ops), ios_req).configs[0].op_placement[0].cost == 0.4
    with pytest.raises(ProtocolError, match="'device' must be one of"):
        HarnessResult.from_json(_result(ios_req, op_placement=[{**ops[0], "device": "ane"}]), ios_req)


def test_tensor_files_are_raw_little_endian(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = write_tensor(tmp_path / "x.bin", a)
    assert (t.shape, t.dtype) == ([2, 3], "float32")
    assert (tmp_path / "x.bin").read_bytes() == a.astype("<f4").tobytes()
    np.testing.assert_array_equal(read_tensor(tmp_path, t), a)
    (tmp_path / "x.bin").write_bytes(b"\0" * 8)
    with pytest.raises(ProtocolError, match="has 8 bytes, shape \\[2, 3\\] float32 needs 24"):
        read_tensor(tmp_path, t)


# -- iOS command contract ----------------------------------------------------------------

def test_ios_plan_contract(tmp_path):
    pkg = minimal_mlpackage(tmp_path / "Le ViT.mlpackage")
    req = HarnessRequest(platform="ios", model=pkg.name, inputs=[TensorFile("input0.bin", [1, 3, 224, 224])],
                         compute_units=["cpuOnly", "all"], runs=10, warmup=2, threads=[1], request_id="r42")
    local, out, dd, proj = tmp_path / "req", tmp_path / "out", tmp_path / "DD", Path("/p/VitdeployHarness.xcodeproj")
    steps, fetch = ios.plan_ios(udid="UDID1", request=req, local_dir=local, model_path=pkg, out_dir=out,
                                derived_data=dd, team="ABCDE12345", project=proj)
    common = ["-project", str(proj), "-scheme", "VitdeployHarness", "-destination", "id=UDID1",
              "-derivedDataPath", str(dd)]
    copy = ["xcrun", "devicectl", "device", "copy", "to", "--device", "UDID1", "--domain-type", "appDataContainer",
            "--domain-identifier", "com.vitdeploy.harness"]
    remote = "Documents/vitdeploy/r42"
    assert [s.argv for s in steps] == [
        ["xcodebuild", "build-for-testing", *common, "-allowProvisioningUpdates", "-allowProvisioningDeviceRegistration",
         "VITDEPLOY_BUNDLE_ID=com.vitdeploy.harness", "DEVELOPMENT_TEAM=ABCDE12345"],
        ["xcrun", "devicectl", "device", "install", "app", "--device", "UDID1",
         str(dd / "Build/Products/Debug-iphoneos/VitdeployHarness.app")],
        [*copy, "--source", str(local / "request.json"), "--destination", f"{remote}/request.json"],
        [*copy, "--source", str(local / "input0.bin"), "--destination", f"{remote}/input0.bin"],
        [*copy, "--source", str(pkg / "Data/com.apple.CoreML/model.mlmodel"),
         "--destination", f"{remote}/Le ViT.mlpackage/Data/com.apple.CoreML/model.mlmodel"],
        [*copy, "--source", str(pkg / "Data/com.apple.CoreML/weights/weight.bin"),
         "--destination", f"{remote}/Le ViT.mlpackage/Data/com.apple.CoreML/weights/weight.bin"],
        [*copy, "--source", str(pkg / "Manifest.json"), "--destination", f"{remote}/Le ViT.mlpackage/Manifest.json"],
        ["xcodebuild", "test-without-building", *common,
         "-only-testing:VitdeployHarnessTests/HarnessBenchmarkTests/testRunRequest",
         "-resultBundlePath", str(out / "r42.xcresult")],
    ]
    assert steps[-1].env == {"TEST_RUNNER_VITDEPLOY_REQUEST": f"{remote}/request.json"}
    assert all(not s.env for s in steps[:-1])
    assert [s.argv for s in fetch] == [[
        "xcrun", "devicectl", "device", "copy", "from", "--device", "UDID1", "--domain-type", "appDataContainer",
        "--domain-identifier", "com.vitdeploy.harness", "--source", f"{remote}/result.json",
        "--destination", str(out / "result.json")]]


def test_profile_ios_needs_macos(tmp_path):
    with pytest.raises(VitdeployError, match="profiling on iPhone needs macOS with Xcode"):
        ios.profile_ios(tmp_path / "m.mlpackage", platform="linux")


def test_profile_ios_drives_the_plan_and_reads_the_result(tmp_path, monkeypatch):
    """Everything but the phone: the recorded commands run through a runner that plays the harness."""
    pkg = minimal_mlpackage(tmp_path / "m.mlpackage")
    monkeypatch.setattr(ios, "list_connected_ios", lambda **kw: [
        {"udid": "U1", "platform": "ios", "catalog": "iphone12", "model": "iPhone 12", "state": "device"}])
    ran, expected = [], np.linspace(0, 1, 10, dtype=np.float32).reshape(1, 10)

    def runner(step):
        ran.append(step.argv[:5])
        if step.argv[:5] == ["xcrun", "devicectl", "device", "copy", "from"]:
            dest = Path(step.argv[-1])
            if dest.name == "result.json":
                req = HarnessRequest.loads((tmp_path / "w" / "request" / "request.json").read_text())
                doc = _result(req)
                doc["configs"][1].update(status="error", error="ANE compile failed", outputs=[], latencies_ms=[])
                dest.write_text(json.dumps(doc))
            else:
                write_tensor(dest, expected)
        return __import__("subprocess").CompletedProcess(step.argv, 0, "", "")

    out = ios.profile_ios(pkg, input_array=np.zeros((1, 3, 4, 4), np.float32), runs=3, warmup=1,
                          compute_units=["cpuOnly", "cpuAndNeuralEngine"], work_dir=tmp_path / "w",
                          platform="darwin", runner=runner)
    np.testing.assert_array_equal(out["output"], expected)
    assert [c["status"] for c in out["configs"]] == ["ok", "error"]
    assert ran[0][:2] == ["xcodebuild", "build-for-testing"]
    assert ["xcodebuild", "test-without-building"] in [r[:2] for r in ran]


def test_parse_devicectl_devices():
    doc = {"result": {"devices": [{
        "identifier": "A1B2", "connectionProperties": {"tunnelState": "connected"},
        "deviceProperties": {"name": "Test iPhone", "osVersionNumber": "18.1"},
        "hardwareProperties": {"platform": "iOS", "productType": "iPhone16,1", "udid": "00008130-0011"}}]}}
    (d,) = ios.parse_devicectl_devices(doc)
    assert (d["udid"], d["catalog"], d["ios_version"], d["state"]) == ("00008130-0011", "iphone15pro", "18.1", "device")


# -- Android end to end: the real adb client against the emulator ------------------------

def _local_reference(model: Path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model), num_threads=1)
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


@pytest.fixture
def emu(tmp_path):
    if ADB is None:
        pytest.skip("adb client not installed (apt-get install adb)")
    with AdbEmulator() as e:
        yield e
    assert "host:kill" not in e.log  # the client must never try to replace the server


def _x() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)


def _profile(emu, model, **kw):
    kw = {"runs": 3, "warmup": 1, "threads": [1, 2], "delegates": ["xnnpack", "gpu"], "input_array": _x(),
          "timeout_s": 60, "adb": ADB, "server_socket": emu.socket_spec, **kw}
    return profile_android(model, **kw)


@needs_adb
def test_android_end_to_end(emu, tiny_tflite, tmp_path):
    dev = emu.add(pixel7("EMU7A", tmp_path / "dev"))
    out = _profile(emu, tiny_tflite, serial="EMU7A")
    np.testing.assert_allclose(out["output"], _local_reference(tiny_tflite, _x()), rtol=1e-5, atol=1e-6)
    assert out["serial"] == "EMU7A" and out["catalog"] == "pixel7"
    assert out["device"]["soc"] == "Tensor G2" and out["device"]["model"] == "Pixel 7"
    names = [(c["name"], c["status"]) for c in out["configs"]]
    assert names == [("xnnpack-1t", "ok"), ("xnnpack-2t", "ok"), ("gpu", "error")]
    ok = out["configs"][0]
    assert len(ok["latencies_ms"]) == 3 and ok["first_inference_ms"] > 0 and ok["peak_memory_kb"] > 0
    assert "gpu delegate is not available" in out["configs"][2]["error"] and out["configs"][2]["outputs"] == []
    np.testing.assert_allclose(out["configs"][1]["outputs"][0], out["output"], rtol=1e-5, atol=1e-6)
    # The real client pushed over sync:, ran the instrumentation over shell v2, and cleaned up.
    assert "sync:" in emu.log
    assert any(s.startswith("shell,v2") and "am instrument -w -r -e request" in s for s in emu.log)
    assert not any((dev.root / "data/local/tmp/vitdeploy").iterdir())
    assert not any((dev.root / f"sdcard/Android/data/{android.HARNESS_PACKAGE}/files/vitdeploy").iterdir())


@needs_adb
def test_android_model_path_with_spaces_and_quotes(emu, tiny_tflite, tmp_path):
    dev = emu.add(pixel7("EMU7B", tmp_path / "dev"))
    odd_dir = tmp_path / "my models" / "it's \"quoted\""
    odd_dir.mkdir(parents=True)
    model = odd_dir / "le vit's \"best\" $(reboot).tflite"
    shutil.copy(tiny_tflite, model)
    out = _profile(emu, model, remote_root="/data/local/tmp/vit deploy's", keep_remote=True, delegates=["xnnpack"])
    np.testing.assert_allclose(out["output"], _local_reference(tiny_tflite, _x()), rtol=1e-5, atol=1e-6)
    rid = out["request"]["request_id"]
    pushed = dev.root / "data/local/tmp/vit deploy's" / rid
    assert any(s.startswith(f"sync:SEND /data/local/tmp/vit deploy's/{rid}/{model.name},") for s in emu.log)
    assert (pushed / model.name).read_bytes() == model.read_bytes()


@needs_adb
def test_android_two_devices_need_a_serial(emu, tiny_tflite, tmp_path):
    emu.add(pixel7("EMU7C", tmp_path / "c"))
    emu.add(pixel7("EMU7D", tmp_path / "d"))
    with pytest.raises(VitdeployError, match=r"2 Android devices attached \(EMU7C \(Pixel 7\), EMU7D \(Pixel 7\)\)"):
        _profile(emu, tiny_tflite)
    with pytest.raises(VitdeployError, match="several pixel7 phones attached"):
        _profile(emu, tiny_tflite, device="pixel7")
    assert _profile(emu, tiny_tflite, serial="EMU7D", delegates=["xnnpack"])["serial"] == "EMU7D"


@needs_adb
def test_android_no_device(emu, tiny_tflite):
    with pytest.raises(VitdeployError, match="no Android device connected"):
        _profile(emu, tiny_tflite)


@needs_adb
def test_android_harness_missing_then_installed(emu, tiny_tflite, tmp_path):
    dev = emu.add(pixel7("EMU7E", tmp_path / "dev"))
    dev.packages.clear()
    with pytest.raises(VitdeployError, match="harness app not installed on EMU7E"):
        _profile(emu, tiny_tflite)
    apks = []
    for name in ("app-debug.apk", "app-debug-androidTest.apk"):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr("AndroidManifest.xml", b"\x03\x00\x08\x00")
        apks.append(tmp_path / name)
    out = _profile(emu, tiny_tflite, harness_apks=apks, delegates=["xnnpack"])
    assert out["configs"][0]["status"] == "ok"
    assert sum(s.startswith("exec:cmd package 'install' '-r' '-g'") for s in emu.log) == 2


@needs_adb
def test_android_instrumentation_not_found(emu, tiny_tflite, tmp_path):
    emu.add(pixel7("EMU7F", tmp_path / "dev")).faults["instrumentation_missing"] = True
    with pytest.raises(VitdeployError, match="harness instrumentation .*AndroidJUnitRunner not found on EMU7F"):
        _profile(emu, tiny_tflite)


@needs_adb
def test_android_device_lost_mid_run(emu, tiny_tflite, tmp_path):
    emu.add(pixel7("EMU7G", tmp_path / "dev")).faults["drop_during_instrument"] = True
    with pytest.raises(DeviceLost, match="device EMU7G disconnected during the harness run"):
        _profile(emu, tiny_tflite)


@needs_adb
def test_android_timeout_stops_the_harness(emu, tiny_tflite, tmp_path):
    emu.add(pixel7("EMU7H", tmp_path / "dev")).faults["instrument_delay_s"] = 30
    with pytest.raises(VitdeployError, match="the harness run on EMU7H timed out after 2 s"):
        _profile(emu, tiny_tflite, timeout_s=2)
    assert any("am force-stop com.vitdeploy.harness" in s for s in emu.log)


@needs_adb
def test_android_model_that_cannot_run(emu, tmp_path):
    emu.add(pixel7("EMU7I", tmp_path / "dev"))
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(VitdeployError, match=r"the harness could not run broken.tflite on EMU7I: xnnpack-1t: "):
        _profile(emu, bad, input_array=np.zeros((1, 3, 16, 16), np.float32))


@needs_adb
def test_android_bad_arguments_fail_before_touching_the_phone(emu, tiny_tflite, tmp_path):
    emu.add(pixel7("EMU7J", tmp_path / "dev"))
    with pytest.raises(VitdeployError, match="unknown Android delegate 'coreml'"):
        _profile(emu, tiny_tflite, delegates=["coreml"])
    with pytest.raises(VitdeployError, match="model not found"):
        _profile(emu, tmp_path / "nope.tflite")
    with pytest.raises(VitdeployError, match="'runs' must be an integer >= 1, got 0"):
        _profile(emu, tiny_tflite, runs=0)
    assert emu.log == []


def test_emulator_device_serial_listing(tmp_path):
    d = EmulatedDevice(serial="X", root=tmp_path, props={"ro.product.model": "Pixel 7"})
    assert parse_adb_devices(d.listing_l())[0]["model"] == "Pixel 7"


@needs_adb
def test_android_harness_rejecting_the_request(emu, tmp_path):
    emu.add(pixel7("EMU7K", tmp_path / "dev"))
    adb = android.Adb(ADB, server_socket=emu.socket_spec).for_serial("EMU7K")
    with pytest.raises(VitdeployError, match="the harness rejected the request on EMU7K: request file "
                                             "/data/local/tmp/vitdeploy/x y/request.json not found"):
        android.run_instrumentation(adb, "/data/local/tmp/vitdeploy/x y/request.json", timeout=30)


# -- the harness projects agree with the host code --------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _parse_openstep(text: str):
    """Parse an old-style (OpenStep) plist such as project.pbxproj."""
    import re

    tokens = re.findall(r'/\*.*?\*/|//[^\n]*|"(?:[^"\\]|\\.)*"|[{}()=;,]|[^\s{}()=;,"]+', text, re.S)
    tokens = [t for t in tokens if not t.startswith(("/*", "//"))]
    pos = 0

    def value():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "{":
            d = {}
            while tokens[pos] != "}":
                key = value()
                assert tokens[pos] == "=", f"expected = after {key!r}"
                pos += 1
                d[key] = value()
                assert tokens[pos] == ";", f"expected ; after {key!r}"
                pos += 1
            pos += 1
            return d
        if tok == "(":
            items = []
            while tokens[pos] != ")":
                items.append(value())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            return items
        return tok[1:-1].encode().decode("unicode_escape") if tok.startswith('"') else tok

    doc = value()
    assert pos == len(tokens), "trailing tokens after the root dictionary"
    return doc


def _ids_in(obj):
    import re

    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _ids_in(k)
            yield from _ids_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _ids_in(v)
    elif isinstance(obj, str) and re.fullmatch(r"[0-9A-F]{24}", obj):
        yield obj


def test_xcode_project_is_consistent():
    proj_dir = ROOT / "ios_harness" / "VitdeployHarness.xcodeproj"
    doc = _parse_openstep((proj_dir / "project.pbxproj").read_text())
    objects = doc["objects"]
    assert doc["rootObject"] in objects
    dangling = {i for i in _ids_in(objects) if i not in objects}
    assert not dangling, f"references to missing objects: {dangling}"
    assert all("isa" in o for o in objects.values())
    # Every file reference resolves to a file on disk through its group's path.
    parent = {}
    for oid, o in objects.items():
        for child in o.get("children", []):
            parent[child] = oid
    for oid, o in objects.items():
        if o["isa"] == "PBXFileReference" and o["sourceTree"] == "<group>":
            group = objects[parent[oid]]
            assert (ROOT / "ios_harness" / group.get("path", "") / o["path"]).is_file(), o["path"]
    # Every Swift file is compiled by exactly one target.
    compiled = [objects[objects[b]["fileRef"]]["path"] for o in objects.values() if o["isa"] == "PBXSourcesBuildPhase"
                for b in o["files"]]
    on_disk = sorted(p.name for p in (ROOT / "ios_harness").rglob("*.swift"))
    assert sorted(compiled) == on_disk
    targets = {o["name"]: (oid, o) for oid, o in objects.items() if o["isa"] == "PBXNativeTarget"}
    assert set(targets) == {"VitdeployHarness", "VitdeployHarnessTests"}
    settings = {}
    for name, (_, t) in targets.items():
        cfgs = [objects[c]["buildSettings"] for c in objects[t["buildConfigurationList"]]["buildConfigurations"]]
        settings[name] = cfgs[0]
    # One build setting names the app; both targets derive their ids from it (issue 20).
    assert settings["VitdeployHarness"]["PRODUCT_BUNDLE_IDENTIFIER"] == f"$({ios.BUNDLE_SETTING})"
    assert settings["VitdeployHarnessTests"]["PRODUCT_BUNDLE_IDENTIFIER"] == f"$({ios.BUNDLE_SETTING}).tests"
    project_cfgs = [objects[c]["buildSettings"]
                    for c in objects[objects[doc["rootObject"]]["buildConfigurationList"]]["buildConfigurations"]]
    assert [c[ios.BUNDLE_SETTING] for c in project_cfgs] == [ios.BUNDLE_ID] * len(project_cfgs) == [ios.BUNDLE_ID] * 2
    for name, (_, t) in targets.items():
        for c in objects[t["buildConfigurationList"]]["buildConfigurations"]:
            assert "com.vitdeploy" not in objects[c]["buildSettings"]["PRODUCT_BUNDLE_IDENTIFIER"], name
    assert "VitdeployHarness.app" in settings["VitdeployHarnessTests"]["TEST_HOST"]
    # The shared scheme ios.py names, pointing at these targets.
    scheme = (proj_dir / "xcshareddata" / "xcschemes" / f"{ios.SCHEME}.xcscheme").read_text()
    __import__("xml.etree.ElementTree").etree.ElementTree.fromstring(scheme)  # well-formed XML
    for name, (oid, _) in targets.items():
        assert f'BlueprintIdentifier = "{oid}"' in scheme and f'BlueprintName = "{name}"' in scheme
    # The test ios.py runs exists, and reads the variable ios.py sets.
    bundle, cls, method = ios.TEST_ID.split("/")
    swift = (ROOT / "ios_harness" / bundle / f"{cls}.swift").read_text()
    assert f"class {cls}: XCTestCase" in swift and f"func {method}()" in swift
    assert f'environment["{ios.REQUEST_ENV}"]' in swift


def test_gradle_project_matches_android_py():
    import re

    app = (ROOT / "android_harness" / "app" / "build.gradle.kts").read_text()
    assert re.search(rf'applicationId = "{re.escape(android.HARNESS_PACKAGE)}"', app)
    assert re.search(rf'testApplicationId = "{re.escape(android.TEST_PACKAGE)}"', app)
    assert android.RUNNER.endswith("/" + re.search(r'testInstrumentationRunner = "([^"]+)"', app).group(1))
    assert 'implementation("com.google.ai.edge.litert:litert:$litert")' in app
    kt = (ROOT / "android_harness/app/src/androidTest/java/com/vitdeploy/harness/HarnessBenchmark.kt").read_text()
    assert 'getString("request")' in kt and "class HarnessBenchmark" in kt
    # The harness writes where android.py pulls from: its own external files dir.
    assert android.OUTPUT_ROOT.startswith(f"/sdcard/Android/data/{android.HARNESS_PACKAGE}/files/")
    assert "getExternalFilesDir(null)" in kt
    import xml.etree.ElementTree as ET

    manifest = ET.parse(ROOT / "android_harness/app/src/main/AndroidManifest.xml").getroot()
    ns = "{http://schemas.android.com/apk/res/android}"
    assert [a.get(ns + "name") for a in manifest.iter("activity")] == [".MainActivity"]
    for f in ("settings.gradle.kts", "build.gradle.kts", "gradle/wrapper/gradle-wrapper.properties",
              "app/src/main/AndroidManifest.xml", "app/src/main/cpp/CMakeLists.txt"):
        assert (ROOT / "android_harness" / f).is_file(), f


@needs_adb
def test_list_devices_through_the_real_client(emu, tiny_tflite, tmp_path):
    emu.add(pixel7("EMU7L", tmp_path / "a"))
    locked = emu.add(pixel7("EMU7M", tmp_path / "b"))
    locked.state = "unauthorized"
    out = list_devices(adb=ADB, server_socket=emu.socket_spec)
    json.dumps(out)
    by_serial = {d["serial"]: d for d in out["android"]}
    assert by_serial["EMU7L"]["catalog"] == "pixel7" and by_serial["EMU7L"]["soc"] == "Tensor G2"
    assert by_serial["EMU7L"]["android_version"] == "14"
    assert by_serial["EMU7M"]["state"] == "unauthorized" and "soc" not in by_serial["EMU7M"]
    # An unauthorized phone is named, not silently skipped.
    with pytest.raises(VitdeployError, match="device EMU7M is unauthorized; unlock it"):
        _profile(emu, tiny_tflite, serial="EMU7M")
    assert _profile(emu, tiny_tflite, delegates=["xnnpack"])["serial"] == "EMU7L"  # the only usable one


@needs_adb
def test_profile_on_device_dispatches_names_and_serials(emu, tiny_tflite, tmp_path):
    from vitdeploy.devices import format_devices, profile_on_device

    emu.add(pixel7("EMU7N", tmp_path / "dev"))
    kw = dict(runs=2, warmup=0, threads=[1], compute_units=["xnnpack"], input_array=_x(), adb=ADB,
              server_socket=emu.socket_spec)
    assert profile_on_device(tiny_tflite, "pixel7", **kw)["serial"] == "EMU7N"
    assert profile_on_device(tiny_tflite, "EMU7N", **kw)["catalog"] == "pixel7"
    with pytest.raises(VitdeployError, match="no connected pixel8; attached: EMU7N"):
        profile_on_device(tiny_tflite, "pixel8", **kw)
    with pytest.raises(VitdeployError, match="--device host is this computer"):
        profile_on_device(tiny_tflite, "host", **kw)
    with pytest.raises(VitdeployError, match=r"unknown device 'EMU7X' \(did you mean EMU7N\?\)"):
        profile_on_device(tiny_tflite, "EMU7X", **kw)
    text = format_devices(list_devices(adb=ADB, server_socket=emu.socket_spec))
    assert "EMU7N" in text and "Pixel 7 (Tensor G2), OS 14  -> --device pixel7" in text
    assert "iphone15pro" in text and "W8A8 on ANE" in text


@needs_adb
def test_local_android_backend_through_the_registry(emu, tiny_tflite, tmp_path):
    """The adb driver is the registered "android" backend; its result becomes LatencyRecords (farm schema)."""
    from vitdeploy.devices.backend import ProfileRequest, backend_names, get_backend
    from vitdeploy.devices.local import records_from_result

    emu.add(pixel7("EMU7LB", tmp_path / "dev"))
    assert {"android", "ios"} <= set(backend_names())
    backend = get_backend("android", adb=ADB, server_socket=emu.socket_spec)
    assert not backend.remote
    (ref,) = backend.resolve(["pixel7"])
    assert (ref.id, ref.name, ref.soc, ref.vendor, ref.os) == ("EMU7LB", "Pixel 7", "Tensor G2", "Google", "14")
    assert backend.resolve(["EMU7LB"]) == [ref] and backend.resolve([], platform="ios") == []
    with pytest.raises(VitdeployError, match="no connected android phone matches 'pixel8'; attached: EMU7LB"):
        backend.resolve(["pixel8"])
    request = ProfileRequest(model=tiny_tflite, runs=3, warmup=0, threads=(1, 2), compute_units=("xnnpack", "gpu"),
                             repeat=1, options={"input_array": _x(), "timeout_s": 60})
    result = backend.run(request, ref)
    assert result["serial"] == "EMU7LB" and [c["name"] for c in result["configs"]] == ["xnnpack-1t", "xnnpack-2t", "gpu"]
    records = records_from_result(result, backend="android", repeat=0, device=ref)
    assert [(r.compute_units, r.threads, r.error is None) for r in records] == [
        ("xnnpack", 1, True), ("xnnpack", 2, True), ("gpu", None, False)]
    assert records[0].latencies_ms == result["configs"][0]["latencies_ms"] and len(records[0].latencies_ms) == 3
    assert records[0].runtime == "tflite" and records[0].soc == "Tensor G2" and records[0].vendor == "Google"
    assert records[0].source == "vitdeploy-harness" and records[0].median_ms > 0 and records[0].peak_memory_mb > 0
    assert "gpu delegate is not available" in records[2].error and records[2].latencies_ms == []


def test_devicectl_states():
    def doc(conn):
        return {"result": {"devices": [{"identifier": "X", "connectionProperties": conn, "deviceProperties": {},
                                        "hardwareProperties": {"platform": "iOS", "productType": "iPhone13,2",
                                                               "udid": "U"}}]}}

    assert ios.parse_devicectl_devices(doc({"pairingState": "paired", "tunnelState": "disconnected"}))[0]["state"] == "device"
    assert ios.parse_devicectl_devices(doc({"pairingState": "unpaired"}))[0]["state"] == "unpaired"
    assert ios.parse_devicectl_devices(doc({"pairingState": "paired", "tunnelState": "unavailable"}))[0]["state"] == "unavailable"
    with pytest.raises(VitdeployError, match="iPhone U is unpaired"):
        ios._choose_ios(ios.parse_devicectl_devices(doc({"pairingState": "unpaired"})), "U", None)


def test_mlpackage_input_shape(tmp_path):
    torch = pytest.importorskip("torch")
    ct = pytest.importorskip("coremltools")
    traced = torch.jit.trace(torch.nn.Conv2d(3, 4, 3).eval(), torch.randn(1, 3, 8, 8))
    model = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=(1, 3, 8, 8))], convert_to="mlprogram",
                       minimum_deployment_target=ct.target.iOS16)
    model.save(str(tmp_path / "m.mlpackage"))
    assert fmt_io.mlpackage_input_shape(tmp_path / "m.mlpackage") == [1, 3, 8, 8]


@needs_adb
def test_android_old_device_without_shell_v2(tiny_tflite, tmp_path):
    """Without shell_v2/stat_v2 the client falls back to shell: and STAT; the flow must not care."""
    with AdbEmulator(features="cmd") as emu:
        emu.add(pixel7("EMU7O", tmp_path / "dev"))
        out = _profile(emu, tiny_tflite, delegates=["xnnpack"])
        np.testing.assert_allclose(out["output"], _local_reference(tiny_tflite, _x()), rtol=1e-5, atol=1e-6)
        assert any(s.startswith("shell:am instrument") for s in emu.log)
        assert any(s.startswith("sync:STAT ") for s in emu.log) and not any("STA2" in s for s in emu.log)


# -- a strict emulated phone: owners, modes, the app's uid, scoped storage (issue 20) -----

from adb_emulator import (  # noqa: E402
    HARNESS_UID, SHELL_UID, adbd_send_mode, fastest_cpus, run_harness,
)


def test_adbd_widens_the_pushed_mode_like_aosp():
    """send_impl copies the user bits to group and other, so the host's 0600 never reaches the phone."""
    assert oct(adbd_send_mode(0o100600)) == oct(0o666)
    assert oct(adbd_send_mode(0o644)) == oct(0o666)
    assert oct(adbd_send_mode(0o755)) == oct(0o777)
    assert oct(adbd_send_mode(0o400)) == oct(0o444)


@needs_adb
def test_android_0600_model_is_readable_by_the_app(emu, tiny_tflite, tmp_path):
    """Issue 20 finding 1, checked: a 0600 model (mkstemp's mode) arrives 0666 shell:shell and runs."""
    dev = emu.add(pixel7("EMU7P", tmp_path / "dev"))
    model = tmp_path / "private.tflite"
    shutil.copy(tiny_tflite, model)
    model.chmod(0o600)
    out = _profile(emu, model, keep_remote=True, delegates=["xnnpack"], threads=[1])
    np.testing.assert_allclose(out["output"], _local_reference(tiny_tflite, _x()), rtol=1e-5, atol=1e-6)
    remote = f"/data/local/tmp/vitdeploy/{out['request']['request_id']}"
    assert dev.stat_of(f"{remote}/{model.name}") == (SHELL_UID, SHELL_UID, 0o666)
    assert dev.stat_of(remote) == (SHELL_UID, SHELL_UID, 0o775)  # secure_mkdirs under adbd's umask 0
    # What the app wrote is the app's, in its own external dir.
    result = f"/sdcard/Android/data/{android.HARNESS_PACKAGE}/files/vitdeploy/{out['request']['request_id']}"
    assert dev.stat_of(f"{result}/result.json")[0] == HARNESS_UID


def _push_request(emu, dev_serial, tiny_tflite, tmp_path, remote_dir, output_dir=android.OUTPUT_ROOT + "/r1"):
    """Push model + input + request.json by hand (what profile_android does), for tests that
    change something on the phone between the push and the run."""
    adb = android.Adb(ADB, server_socket=emu.socket_spec).for_serial(dev_serial)
    req = HarnessRequest(platform="android", model="tiny.tflite", inputs=[TensorFile("input0.bin", [1, 3, 16, 16])],
                         compute_units=["xnnpack"], runs=2, warmup=0, threads=[1], request_id="r1",
                         output_dir=output_dir)
    write_tensor(tmp_path / "input0.bin", _x())
    (tmp_path / "request.json").write_text(req.dumps())
    for local in (tiny_tflite, tmp_path / "input0.bin", tmp_path / "request.json"):
        android._push(adb, local, f"{remote_dir}/{local.name}", 30)
    return adb, req


@needs_adb
def test_android_app_cannot_read_a_file_it_may_not(emu, tiny_tflite, tmp_path):
    """A 0600 shell-owned model (chmod on the phone) fails as HarnessBenchmark.kt would: EACCES."""
    emu.add(pixel7("EMU7Q", tmp_path / "dev"))
    remote = "/data/local/tmp/vitdeploy/r1"
    adb, req = _push_request(emu, "EMU7Q", tiny_tflite, tmp_path, remote)
    assert adb.shell(["chmod", "600", f"{remote}/tiny.tflite"], timeout=10, what="chmod").returncode == 0
    android.run_instrumentation(adb, f"{remote}/request.json", 30)
    result = android._fetch_result(adb, req, req.output_dir, tmp_path / "out", 30)
    assert result.configs[0].status == "error"
    assert result.configs[0].error == (f"FileNotFoundException: {remote}/tiny.tflite: open failed: "
                                       "EACCES (Permission denied)")
    # An unreadable request.json fails the whole run with the exception's own line.
    adb.shell(["chmod", "600", f"{remote}/request.json"], timeout=10, what="chmod")
    with pytest.raises(VitdeployError, match=r"rejected the request on EMU7Q: .*request.json: open failed: EACCES"):
        android.run_instrumentation(adb, f"{remote}/request.json", 30)


@needs_adb
def test_android_paths_outside_the_apps_reach(emu, tiny_tflite, tmp_path):
    """Android 11+: shared storage outside the app's own dir is not the app's; /data is not shell's."""
    emu.add(pixel7("EMU7R", tmp_path / "dev"))
    with pytest.raises(VitdeployError, match=r"request file /sdcard/Download/vd/.*/request.json not found "
                                             r"\(is it readable by the app\?\)"):
        _profile(emu, tiny_tflite, remote_root="/sdcard/Download/vd", delegates=["xnnpack"], threads=[1])
    with pytest.raises(VitdeployError, match=r"adb push tiny.tflite failed on EMU7R: .*Permission denied"):
        _profile(emu, tiny_tflite, remote_root="/data/vitdeploy", delegates=["xnnpack"], threads=[1])
    # The documented fallback: the app's own external files dir is reachable by both sides.
    own = f"/sdcard/Android/data/{android.HARNESS_PACKAGE}/files/in"
    out = _profile(emu, tiny_tflite, remote_root=own, delegates=["xnnpack"], threads=[1])
    assert out["configs"][0]["status"] == "ok"


@needs_adb
def test_harness_cannot_write_next_to_a_request_in_data_local_tmp(emu, tiny_tflite, tmp_path):
    """Without output_dir the harness writes beside request.json, which the app may not do in /data/local/tmp."""
    dev = emu.add(pixel7("EMU7S", tmp_path / "dev"))
    remote = "/data/local/tmp/vitdeploy/r1"
    _push_request(emu, "EMU7S", tiny_tflite, tmp_path, remote, output_dir=None)
    assert run_harness(dev, f"{remote}/request.json") == (
        f"java.lang.IllegalStateException: cannot write {remote}/result.json")


@needs_adb
def test_android_reports_cpu_pinning(emu, tiny_tflite, tmp_path):
    dev = emu.add(pixel7("EMU7T", tmp_path / "dev"))
    out = _profile(emu, tiny_tflite, delegates=["xnnpack", "gpu"], threads=[1, 2])
    pins = {c["name"]: c["cpu_affinity"] for c in out["configs"]}
    assert pins["xnnpack-1t"] == {"requested": [7], "pinned": True, "mask": [7], "error": None}
    assert pins["xnnpack-2t"]["requested"] == fastest_cpus(2) == [7, 6]
    assert pins["gpu"] is None  # no thread count, nothing pinned
    dev.faults["pin_error"] = 22  # a cpuset without the big cores
    out = _profile(emu, tiny_tflite, delegates=["xnnpack"], threads=[1])
    pin = out["configs"][0]["cpu_affinity"]
    assert pin["pinned"] is False and "errno 22" in pin["error"] and pin["mask"] == list(range(8))
    assert out["result"]["configs"][0]["cpu_affinity"] == pin  # in the result JSON, not only in logcat


def test_cpu_affinity_validation():
    req = _request(compute_units=["xnnpack"], threads=[1])
    ok = {"requested": [7], "pinned": True, "mask": [7], "error": None}
    assert HarnessResult.from_json(_result(req, cpu_affinity=ok), req).configs[0].cpu_affinity == ok
    with pytest.raises(ProtocolError, match="an unpinned config must say why"):
        HarnessResult.from_json(_result(req, cpu_affinity={**ok, "pinned": False}), req)
    with pytest.raises(ProtocolError, match="'mask' must list CPU numbers"):
        HarnessResult.from_json(_result(req, cpu_affinity={**ok, "mask": "7"}), req)


@pytest.fixture(scope="session")
def quantized_io(tiny_tflite, tmp_path_factory) -> dict:
    """tiny.tflite quantized with ai-edge-quantizer's own recipes: int8 and int16 inputs and outputs."""
    from ai_edge_litert.interpreter import Interpreter
    quantizer = pytest.importorskip("ai_edge_quantizer.quantizer")
    recipe = pytest.importorskip("ai_edge_quantizer.recipe")

    float_model = tiny_tflite.read_bytes()
    sig = Interpreter(model_content=float_model).get_signature_list()
    key = next(iter(sig))
    rng = np.random.default_rng(0)
    calib = {key: [{sig[key]["inputs"][0]: rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                   for _ in range(4)]}
    out = {}
    for name, rec in (("int8", recipe.static_wi8_ai8()), ("int16", recipe.static_wi8_ai16())):
        q = quantizer.Quantizer(bytearray(float_model))
        q.load_quantization_recipe(rec)
        path = tmp_path_factory.mktemp("q") / f"tiny_{name}.tflite"
        path.write_bytes(bytes(q.quantize(q.calibrate(calib)).quantized_model))
        out[name] = path
    return out


@needs_adb
@pytest.mark.parametrize("dtype", ["int8", "int16"])
def test_android_quantized_io_models(emu, tiny_tflite, quantized_io, tmp_path, dtype):
    """The host quantizes the float input with the model's scale/zero point; the harness feeds it
    as is and returns int8/int16 outputs, which come back dequantized for parity."""
    emu.add(pixel7("EMU7U", tmp_path / "dev"))
    out = _profile(emu, quantized_io[dtype], delegates=["xnnpack"], threads=[1])
    assert out["request"]["inputs"][0]["dtype"] == dtype
    assert out["result"]["configs"][0]["outputs"][0]["dtype"] == dtype
    reference = _local_reference(tiny_tflite, _x())
    got = out["output"]
    assert got.dtype == np.float32
    cos = float((got * reference).sum() / (np.linalg.norm(got) * np.linalg.norm(reference)))
    assert cos > 0.98, cos


def test_model_input_quantizes_and_float16_is_refused():
    det = {"name": "x", "dtype": np.int8, "quantization": (0.5, 3)}
    np.testing.assert_array_equal(fmt_io.model_input(det, np.array([0.0, 1.0, 100.0, -100.0])),
                                  np.array([3, 5, 127, -128], np.int8))
    assert fmt_io.model_input(det, np.array([1, 2], np.int8)).tolist() == [1, 2]  # already quantized
    with pytest.raises(VitdeployError, match="input x is int8 without quantization parameters"):
        fmt_io.model_input({**det, "quantization": (0.0, 0)}, np.zeros(2))
    np.testing.assert_allclose(fmt_io.dequantized(np.array([3, 5], np.int8), det), [0.0, 1.0])
    with pytest.raises(VitdeployError, match="m.tflite: output 0 is float16, which the Android harness"):
        fmt_io.check_harness_dtypes(Path("m.tflite"), [{"dtype": np.float32}], [{"dtype": np.float16}])


def test_request_accepts_the_model_input_types():
    assert _request(inputs=[TensorFile("input0.bin", [1, 16], "int8")]).inputs[0].dtype == "int8"
    with pytest.raises(ProtocolError, match="inputs must be one of float32, int8, uint8, int16"):
        _request(inputs=[TensorFile("input0.bin", [1, 16], "int64")])


# -- iOS: bundle id, image inputs, classifier outputs (issue 20) -------------------------

def _tiny_package(tmp_path) -> Path:
    pkg = minimal_mlpackage(tmp_path / "m.mlpackage")
    return pkg


def test_ios_bundle_id_is_one_setting_used_everywhere(tmp_path, monkeypatch):
    req = HarnessRequest(platform="ios", model="m.mlpackage", inputs=[TensorFile("input0.bin", [1, 4])],
                         compute_units=["all"], runs=1, warmup=0, threads=[1], request_id="r7")
    steps, fetch = ios.plan_ios(udid="U", request=req, local_dir=tmp_path, model_path=_tiny_package(tmp_path),
                                out_dir=tmp_path / "out", derived_data=tmp_path / "DD", bundle_id="org.me.vd-harness")
    assert "VITDEPLOY_BUNDLE_ID=org.me.vd-harness" in steps[0].argv
    copies = [s.argv for s in steps + fetch if s.argv[:3] == ["xcrun", "devicectl", "device"] and "copy" in s.argv]
    assert copies and all(a[a.index("--domain-identifier") + 1] == "org.me.vd-harness" for a in copies)
    for bad in ("harness", "com..x", "com.me/x", "com.me x"):
        with pytest.raises(VitdeployError, match=r"bad iOS bundle id") as e:
            ios.check_bundle_id(bad)
        assert e.value.exit_code == 2 and "\n" not in str(e.value)


def test_profile_ios_takes_the_bundle_id_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VITDEPLOY_IOS_BUNDLE_ID", "bad id")
    with pytest.raises(VitdeployError, match="bad iOS bundle id 'bad id'"):
        ios.profile_ios(_tiny_package(tmp_path), input_array=np.zeros((1, 4), np.float32), platform="darwin",
                        runner=lambda step: pytest.fail("nothing may run with a bad bundle id"))


@pytest.fixture(scope="module")
def image_classifier(tmp_path_factory) -> Path:
    """An .mlpackage like vitdeploy's default Core ML export: ImageType input `image`, classifier outputs."""
    torch = pytest.importorskip("torch")
    ct = pytest.importorskip("coremltools")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    traced = torch.jit.trace(net, torch.randn(1, 3, 8, 6))
    model = ct.convert(traced, inputs=[ct.ImageType(name="image", shape=(1, 3, 8, 6), color_layout=ct.colorlayout.BGR)],
                       classifier_config=ct.ClassifierConfig(["a", "b", "c", "d"]), convert_to="mlprogram",
                       minimum_deployment_target=ct.target.iOS16)
    path = tmp_path_factory.mktemp("coreml") / "image.mlpackage"
    model.save(str(path))
    return path


def test_mlpackage_image_input_is_described(image_classifier):
    assert fmt_io.mlpackage_input(image_classifier) == {"name": "image", "kind": "image", "shape": [8, 6, 3],
                                                      "color": "BGR"}


def test_profile_ios_sends_pixels_for_an_image_input(image_classifier, tmp_path, monkeypatch):
    """Issue 20 finding 2: the default export's ImageType input used to be refused on the host."""
    monkeypatch.setattr(ios, "list_connected_ios", lambda **kw: [
        {"udid": "U1", "platform": "ios", "catalog": "iphone12", "model": "iPhone 12", "state": "device"}])
    rgb = np.random.default_rng(3).integers(0, 256, (1, 8, 6, 3)).astype(np.float32)  # what profile.py passes
    sent = {}

    def runner(step):
        if step.argv[:5] == ["xcrun", "devicectl", "device", "copy", "to"] and step.argv[-1].endswith("input0.bin"):
            sent["pixels"] = Path(step.argv[step.argv.index("--source") + 1]).read_bytes()
        if step.argv[:5] == ["xcrun", "devicectl", "device", "copy", "from"]:
            dest = Path(step.argv[-1])
            if dest.name == "result.json":
                req = HarnessRequest.loads((tmp_path / "w" / "request" / "request.json").read_text())
                sent["input"] = req.inputs[0]
                dest.write_text(json.dumps(_result(req)))
            else:
                write_tensor(dest, np.zeros((1, 10), np.float32))
        return __import__("subprocess").CompletedProcess(step.argv, 0, "", "")

    ios.profile_ios(image_classifier, input_array=rgb, runs=3, warmup=0, compute_units=["all"],
                    work_dir=tmp_path / "w", platform="darwin", runner=runner)
    assert (sent["input"].shape, sent["input"].dtype) == ([8, 6, 3], "uint8")
    assert sent["pixels"] == rgb[0].astype(np.uint8).tobytes()  # RGB, row-major: the harness makes BGRA
    with pytest.raises(VitdeployError, match=r"image input image takes 6x8 BGR pixels \(\[8, 6, 3\]\); got an array "
                                             r"of shape \[1, 3, 4, 4\]"):
        ios.image_pixels(np.zeros((1, 3, 4, 4)), fmt_io.mlpackage_input(image_classifier))
    with pytest.raises(VitdeployError, match="takes pixels 0..255; got values -2.*pass the image"):
        ios.image_pixels(np.full((8, 6, 3), -2.0), fmt_io.mlpackage_input(image_classifier))


SWIFT_DIR = Path(__file__).resolve().parents[1] / "ios_harness"


def _swift_errors(path: Path) -> list:
    tree_sitter = pytest.importorskip("tree_sitter")
    tree_sitter_swift = pytest.importorskip("tree_sitter_swift")
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))
    source = path.read_bytes()
    found, stack = [], [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            found.append((node.start_point, source[node.start_byte:node.end_byte][:60]))
        stack.extend(node.children)
    return found


@pytest.mark.parametrize("rel", ["VitdeployHarness/VitdeployHarnessApp.swift",
                                 "VitdeployHarnessTests/HarnessBenchmarkTests.swift",
                                 "VitdeployHarnessTests/HarnessProtocol.swift"])
def test_ios_harness_swift_parses(rel):
    """No Swift compiler here (none in Debian 12, PyPI or npm): the tree-sitter grammar checks syntax."""
    assert _swift_errors(SWIFT_DIR / rel) == []


def test_ios_harness_handles_images_and_classifier_outputs():
    """What the Swift must contain for issue 20's findings 2 and 3 (it cannot run here; docs/harness.md)."""
    import re

    from vitdeploy.devices.protocol import INPUT_DTYPES

    bench = (SWIFT_DIR / "VitdeployHarnessTests/HarnessBenchmarkTests.swift").read_text()
    proto = (SWIFT_DIR / "VitdeployHarnessTests/HarnessProtocol.swift").read_text()
    # Image inputs: a pixel buffer built from the model's own constraint, in the formats Core ML uses.
    assert "MLFeatureValue(pixelBuffer:" in bench and "description.imageConstraint" in bench
    assert "CVPixelBufferCreate(" in bench and "CVPixelBufferGetBytesPerRow(buffer)" in bench
    for fmt in ("kCVPixelFormatType_32BGRA", "kCVPixelFormatType_OneComponent8"):
        assert f"case {fmt}:" in bench
    dtypes = re.search(r"static let inputDtypes = \[(.*?)\]", proto).group(1)
    assert [d.strip(' "') for d in dtypes.split(",")] == ["float32", "uint8"]
    assert set(["float32", "uint8"]) <= set(INPUT_DTYPES)
    # Outputs: non-tensors (classLabel, probabilities) skipped, output files numbered densely, one required.
    body = bench[bench.index("private func writeOutputs("):]
    body = body[:body.index("\n    }\n") + 6]
    assert "multiArrayValue else { continue }" in body
    assert 'output\\(files.count).bin' in body
    assert "guard !files.isEmpty else" in body
    assert "not a multi-array" not in body


# -- the harness's native and Kotlin code, checked as far as this machine allows ----------

CPU_AFFINITY_STUB = """
package com.vitdeploy.harness;
// Same JNI names as CpuAffinity.kt's external funs, so affinity.c links unchanged.
public class CpuAffinity {
    private static native int nativeSetAffinity(int[] cpus);
    private static native int[] nativeGetAffinity();
    public static void main(String[] args) {
        System.loadLibrary("vitdeploy_affinity");
        int cpu = Integer.parseInt(args[0]);
        System.out.println(nativeSetAffinity(new int[] {cpu}) + " " + java.util.Arrays.toString(nativeGetAffinity()));
        System.out.println(nativeSetAffinity(new int[] {4000}) + " " + java.util.Arrays.toString(nativeGetAffinity()));
    }
}
"""


def test_affinity_jni_pins_and_reads_the_mask_back(tmp_path):
    """affinity.c compiled for this host and called through JNI: pinning works, the mask reads back,
    and a CPU outside the set fails with EINVAL instead of pinning nothing silently."""
    import os
    import subprocess

    for tool in ("gcc", "javac", "java"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    javac = Path(os.path.realpath(shutil.which("javac")))
    include = javac.parents[1] / "include"
    if not (include / "jni.h").is_file():
        pytest.skip("jni.h not found next to javac")
    lib = tmp_path / "libvitdeploy_affinity.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wall", "-Werror", f"-I{include}", f"-I{include / 'linux'}",
                    "-o", str(lib), str(ROOT / "android_harness/app/src/main/cpp/affinity.c")], check=True)
    src = tmp_path / "com/vitdeploy/harness/CpuAffinity.java"
    src.parent.mkdir(parents=True)
    src.write_text(CPU_AFFINITY_STUB)
    subprocess.run(["javac", "-d", str(tmp_path), str(src)], check=True)
    cpu = min(os.sched_getaffinity(0))
    p = subprocess.run(["java", f"-Djava.library.path={tmp_path}", "-cp", str(tmp_path),
                        "com.vitdeploy.harness.CpuAffinity", str(cpu)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"0 [{cpu}]", f"22 [{cpu}]"]  # EINVAL leaves the mask as it was


def test_kotlin_harness_agrees_with_the_protocol():
    """No Kotlin compiler here (the Android SDK is needed anyway): the parts the host relies on."""
    import re

    from vitdeploy.devices.protocol import INPUT_DTYPES, TENSOR_DTYPES

    kt = (ROOT / "android_harness/app/src/androidTest/java/com/vitdeploy/harness/HarnessBenchmark.kt").read_text()
    inputs = re.search(r"INPUT_DTYPES = setOf\((.*?)\)", kt).group(1)
    assert [d.strip(' "') for d in inputs.split(",")] == list(INPUT_DTYPES)
    when = kt[kt.index("private fun dtypeName(t: DataType)"):]
    named = re.findall(r'DataType\.(\w+) -> "(\w+)"', when[:when.index("else ->")])
    # Every type Java's DataType has but STRING maps to the protocol name of the same type.
    assert dict(named) == {"FLOAT32": "float32", "INT32": "int32", "INT64": "int64", "INT16": "int16",
                           "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}
    assert set(dict(named).values()) <= set(TENSOR_DTYPES)
    # Output types are settled before the timed runs, so a bad type never costs a whole benchmark.
    body = kt[kt.index("private fun runConfig("):kt.index("private fun pinAndReport(")]
    assert body.index("val outputTypes =") < body.index("timedRun(")
    assert 'json.put("cpu_affinity", pinAndReport(' in body
    pin = kt[kt.index("private fun pinAndReport("):]
    assert all(f'.put("{k}"' in pin for k in ("requested", "pinned", "mask", "error"))
    assert "CpuAffinity.currentMask()" in pin


# -- ExecuTorch .pte on both harnesses ----------------------------------------------------

import re  # noqa: E402

from pte_fixtures import reference_logits, write_tiny_pte  # noqa: E402

from vitdeploy.formats import executorch as pte_format  # noqa: E402
from vitdeploy.devices.protocol import MODEL_SUFFIXES, PTE_COMPUTE_UNITS  # noqa: E402


@pytest.fixture(scope="session")
def tiny_pte(tmp_path_factory) -> Path:
    pytest.importorskip("executorch")
    return write_tiny_pte(tmp_path_factory.mktemp("pte") / "tiny.pte")


@pytest.fixture(scope="session")
def coreml_pte(tmp_path_factory) -> Path:
    pytest.importorskip("executorch")
    pytest.importorskip("coremltools")
    return write_tiny_pte(tmp_path_factory.mktemp("pte") / "tiny_coreml.pte", backend="coreml")


def _pixels(size: int = 8) -> np.ndarray:
    return np.random.default_rng(3).uniform(0, 255, (1, size, size, 3)).astype(np.float32)


@pytest.mark.parametrize("kw,msg", [
    (dict(model="m.pte", compute_units=["xnnpack"]), "unknown android .pte compute unit 'xnnpack'; choose from cpu"),
    (dict(model="m.pte", compute_units=["gpu"]), "unknown android .pte compute unit 'gpu'"),
    (dict(platform="ios", model="m.pte", compute_units=["all"], threads=[1]),
     "unknown ios .pte compute unit 'all'; choose from cpu, coreml"),
    (dict(platform="ios", model="m.pte", compute_units=["cpuOnly"], threads=[1]), "unknown ios .pte compute unit"),
    (dict(platform="ios", model="m.tflite", compute_units=["cpuOnly"]), "needs a .mlpackage or .pte model"),
    (dict(model="m.mlpackage"), "the android harness needs a .tflite or .pte model"),
    (dict(model="m.pte", compute_units=["cpu"], inputs=[TensorFile("input0.bin", [1, 8, 8, 3], "int8")]),
     "a .pte model takes float32 inputs, got int8"),
])
def test_pte_request_validation_is_one_line(kw, msg):
    with pytest.raises(ProtocolError) as e:
        _request(**kw)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_pte_request_configs():
    req = _request(model="m.pte", compute_units=["cpu"], threads=[1, 4])
    assert [c["name"] for c in req.configs()] == ["cpu-1t", "cpu-4t"]  # XNNPACK thread counts, like a .tflite
    ios_req = _request(platform="ios", model="m.pte", compute_units=["cpu", "coreml"], threads=[1])
    assert [c["name"] for c in ios_req.configs()] == ["cpu", "coreml"]
    assert HarnessRequest.loads(ios_req.dumps()) == ios_req


def test_pte_program_is_read_without_a_runtime(tiny_pte, coreml_pte, tmp_path):
    fwd = pte_format.forward_of(tiny_pte)
    assert fwd["inputs"] == [{"shape": [1, 8, 8, 3], "dtype": "float32"}]
    assert fwd["outputs"] == [{"shape": [1, 5], "dtype": "float32"}]
    assert fwd["delegates"] == [pte_format.XNNPACK_BACKEND]
    assert pte_format.forward_of(coreml_pte)["delegates"] == [pte_format.COREML_BACKEND]
    bad = tmp_path / "bad.pte"
    bad.write_bytes(b"\0\0\0\0ET12" + b"\xff" * 40)
    with pytest.raises(VitdeployError, match=r"bad.pte: not a readable ExecuTorch program \(") as e:
        pte_format.read_program(bad)
    assert "\n" not in str(e.value)
    bad.write_bytes(b"not a program at all")
    with pytest.raises(VitdeployError, match="bad.pte: not an ExecuTorch program"):
        pte_format.read_program(bad)


def test_pte_units_follow_the_delegates():
    x, c = [pte_format.XNNPACK_BACKEND], [pte_format.COREML_BACKEND, pte_format.XNNPACK_BACKEND]
    assert pte_format.unit_mismatch("android", "cpu", x) is None
    assert pte_format.unit_mismatch("ios", "cpu", []) is None  # portable kernels only
    assert pte_format.unit_mismatch("ios", "coreml", c) is None
    assert "only iOS runs it" in pte_format.unit_mismatch("android", "cpu", c)
    assert "use coreml" in pte_format.unit_mismatch("ios", "cpu", c)
    assert "needs a .pte lowered with the Core ML delegate" in pte_format.unit_mismatch("ios", "coreml", x)


@needs_adb
def test_android_pte_end_to_end(emu, tiny_pte, tmp_path):
    dev = emu.add(pixel7("EMU7P", tmp_path / "dev"))
    out = profile_android(tiny_pte, runs=3, warmup=1, threads=[1, 2], input_array=_pixels(), timeout_s=60, adb=ADB,
                          server_socket=emu.socket_spec)
    np.testing.assert_allclose(out["output"], reference_logits(tiny_pte, _pixels()), rtol=1e-5, atol=1e-5)
    assert [(c["name"], c["status"]) for c in out["configs"]] == [("cpu-1t", "ok"), ("cpu-2t", "ok")]
    assert out["request"]["compute_units"] == ["cpu"] and out["request"]["model"] == "tiny.pte"
    assert out["configs"][0]["cpu_affinity"]["pinned"] and len(out["configs"][1]["latencies_ms"]) == 3
    assert out["device"]["runtime"].startswith("ExecuTorch")
    assert any(s.startswith("sync:SEND /data/local/tmp/vitdeploy/") and "/tiny.pte," in s for s in emu.log)
    assert not any((dev.root / "data/local/tmp/vitdeploy").iterdir())


@needs_adb
def test_android_pte_bad_input_is_the_configs_error(emu, tiny_pte, tmp_path):
    emu.add(pixel7("EMU7Q", tmp_path / "dev"))
    with pytest.raises(VitdeployError, match=r"could not run tiny.pte on EMU7Q: cpu-1t: ExecutorchRuntimeException: "
                                             r"Execution of method forward failed"):
        profile_android(tiny_pte, runs=2, warmup=0, threads=[1], input_array=np.zeros((1, 4, 4, 3), np.float32),
                        timeout_s=60, adb=ADB, server_socket=emu.socket_spec)


@needs_adb
def test_android_pte_refusals_before_touching_the_phone(emu, tiny_pte, coreml_pte, tmp_path):
    emu.add(pixel7("EMU7R", tmp_path / "dev"))
    kw = dict(runs=2, warmup=0, threads=[1], timeout_s=60, adb=ADB, server_socket=emu.socket_spec)
    with pytest.raises(VitdeployError, match=r"unknown Android compute unit for a .pte 'xnnpack'; choose from cpu"):
        profile_android(tiny_pte, delegates=["xnnpack"], **kw)
    with pytest.raises(VitdeployError, match=r"tiny_coreml.pte: this .pte was lowered with the Core ML delegate "
                                             r"\(CoreMLBackend\); only iOS runs it"):
        profile_android(coreml_pte, **kw)
    broken = tmp_path / "broken.pte"
    broken.write_bytes(b"garbage")
    with pytest.raises(VitdeployError, match="broken.pte: not an ExecuTorch program"):
        profile_android(broken, **kw)
    assert emu.log == []


@needs_adb
def test_android_harness_refuses_a_coreml_pte_like_the_app(emu, coreml_pte, tmp_path):
    """The emulated harness applies the app's own backends check (a request that bypasses the host)."""
    dev = emu.add(pixel7("EMU7S", tmp_path / "dev"))
    adb = android.Adb(ADB, server_socket=emu.socket_spec).for_serial("EMU7S")
    req = HarnessRequest(platform="android", model=coreml_pte.name, inputs=[TensorFile("input0.bin", [1, 8, 8, 3])],
                         compute_units=["cpu"], runs=1, warmup=0, threads=[1], request_id="r1",
                         output_dir=android.OUTPUT_ROOT + "/r1")
    local = tmp_path / "req"
    local.mkdir()
    write_tensor(local / "input0.bin", _pixels())
    (local / "request.json").write_text(req.dumps())
    for f in (coreml_pte, local / "input0.bin", local / "request.json"):
        adb.check(["push", str(f), f"/data/local/tmp/vitdeploy/r1/{f.name}"], timeout=30, what="push")
    android.run_instrumentation(adb, "/data/local/tmp/vitdeploy/r1/request.json", timeout=60)
    result = json.loads((dev.root / (android.OUTPUT_ROOT + "/r1/result.json").lstrip("/")).read_text())
    assert result["configs"][0]["status"] == "error"
    assert "lowered with the Core ML delegate (CoreMLBackend); only iOS runs it" in result["configs"][0]["error"]


def test_ios_pte_plan_and_units(tiny_pte, coreml_pte, tmp_path, monkeypatch):
    """The .pte goes to the phone as one file; the units default from, and are checked against, its delegates."""
    assert ios.pte_units(tiny_pte, None) == (["cpu"], [1, 8, 8, 3])
    assert ios.pte_units(coreml_pte, None)[0] == ["coreml"]
    with pytest.raises(VitdeployError, match="needs a .pte lowered with the Core ML delegate"):
        ios.pte_units(tiny_pte, ["coreml"])
    with pytest.raises(VitdeployError, match="unknown iOS compute unit for a .pte 'all'"):
        ios.pte_units(tiny_pte, ["all"])
    monkeypatch.setattr(ios, "list_connected_ios", lambda **kw: [{"udid": "U1", "state": "device", "platform": "ios"}])
    steps_seen = []

    def runner(step):
        steps_seen.append(step)
        if step.what == "copy result.json from the phone":
            req = HarnessRequest.loads((tmp_path / "w/request/request.json").read_text())
            res = _result(req)
            (tmp_path / "w/out/result.json").write_text(json.dumps(res))
        if step.what.startswith("copy cpu.output0.bin"):
            write_tensor(tmp_path / "w/out/cpu.output0.bin", np.zeros((1, 10), np.float32))
        return __import__("subprocess").CompletedProcess(step.argv, 0, "", "")

    out = ios.profile_ios(tiny_pte, runs=3, warmup=0, work_dir=tmp_path / "w", platform="darwin", runner=runner)
    assert out["request"]["compute_units"] == ["cpu"] and out["request"]["model"] == "tiny.pte"
    model_copies = [s for s in steps_seen if s.what == "copy tiny.pte to the phone"]
    assert len(model_copies) == 1 and model_copies[0].argv[-1].endswith("/tiny.pte")
    assert model_copies[0].argv[model_copies[0].argv.index("--source") + 1] == str(tiny_pte)
    sent = HarnessRequest.loads((tmp_path / "w/request/request.json").read_text())
    assert (sent.inputs[0].shape, sent.inputs[0].dtype) == ([1, 8, 8, 3], "float32")


def test_harness_runtime_versions_match_the_exporter():
    """Both apps pin the ExecuTorch runtime the converter exports with: a .pte needs a runtime at least as new."""
    import importlib.metadata
    import re

    exporter = importlib.metadata.version("executorch")
    assert pte_format.RUNTIME_VERSION == exporter  # what the generated helpers and package docs name
    gradle = (ROOT / "android_harness/app/build.gradle.kts").read_text()
    assert re.search(r'^val executorch = "([^"]+)"$', gradle, re.M).group(1) == exporter
    assert 'implementation("org.pytorch:executorch-android:$executorch")' in gradle
    kt = (ROOT / "android_harness/app/src/androidTest/java/com/vitdeploy/harness/HarnessBenchmark.kt").read_text()
    assert f'private const val EXECUTORCH_VERSION = "{exporter}"' in kt
    doc = _parse_openstep((ROOT / "ios_harness/VitdeployHarness.xcodeproj/project.pbxproj").read_text())
    refs = [o for o in doc["objects"].values() if o["isa"] == "XCRemoteSwiftPackageReference"]
    assert [r["requirement"] for r in refs] == [{"branch": f"swiftpm-{exporter}", "kind": "branch"}]


def test_xcode_project_links_the_executorch_package():
    doc = _parse_openstep((ROOT / "ios_harness/VitdeployHarness.xcodeproj/project.pbxproj").read_text())
    objects = doc["objects"]
    root = objects[doc["rootObject"]]
    (pkg_id,) = root["packageReferences"]
    assert objects[pkg_id]["isa"] == "XCRemoteSwiftPackageReference"
    assert objects[pkg_id]["repositoryURL"] == "https://github.com/pytorch/executorch"
    targets = {o["name"]: o for o in objects.values() if o["isa"] == "PBXNativeTarget"}
    tests = targets["VitdeployHarnessTests"]
    deps = [objects[d] for d in tests["packageProductDependencies"]]
    assert all(d["isa"] == "XCSwiftPackageProductDependency" and d["package"] == pkg_id for d in deps)
    products = {d["productName"] for d in deps}
    assert {"executorch", "backend_xnnpack", "backend_coreml"} <= products
    # Each product is linked (a build file in the target's Frameworks phase), and only by the tests target:
    # linking the static runtime into the host app too would register its backends twice.
    frameworks = [objects[p] for p in tests["buildPhases"] if objects[p]["isa"] == "PBXFrameworksBuildPhase"]
    linked = {objects[b]["productRef"] for ph in frameworks for b in ph["files"]}
    assert linked == set(tests["packageProductDependencies"])
    assert "packageProductDependencies" not in targets["VitdeployHarness"]
    # Backends and kernels register from static initializers: -all_load keeps them (ExecuTorch's iOS docs).
    for cfg in objects[tests["buildConfigurationList"]]["buildConfigurations"]:
        assert "-all_load" in objects[cfg]["buildSettings"]["OTHER_LDFLAGS"]
    # The package's minimum iOS (Package.swift: .iOS(.v17)) is the project's deployment target.
    for cfg in objects[root["buildConfigurationList"]]["buildConfigurations"]:
        assert float(objects[cfg]["buildSettings"]["IPHONEOS_DEPLOYMENT_TARGET"]) >= 17.0
    # The pbxproj library (what `vitdeploy package --into` edits projects with) reads it too.
    from vitdeploy.packaging.ios import dangling_references, load_pbxproj, parse_pbxproj

    text = (ROOT / "ios_harness/VitdeployHarness.xcodeproj/project.pbxproj").read_text()
    assert dangling_references(parse_pbxproj(text)) == []
    assert load_pbxproj(text).objects[pkg_id].isa == "XCRemoteSwiftPackageReference"


def test_ios_pte_swift_calls_the_executorch_api():
    """What PteBenchmark.swift must call, as ExecuTorch's Swift API spells it (extension/apple/ExecuTorch/Exported,
    v1.4.1 and main): it cannot be compiled here."""
    from vitdeploy.devices.protocol import PTE_INPUT_DTYPES

    pte = (SWIFT_DIR / "VitdeployHarnessTests/PteBenchmark.swift").read_text()
    proto = (SWIFT_DIR / "VitdeployHarnessTests/HarnessProtocol.swift").read_text()
    bench = (SWIFT_DIR / "VitdeployHarnessTests/HarnessBenchmarkTests.swift").read_text()
    assert pte.startswith("import ExecuTorch\n")
    for call in ("Module(filePath: modelURL.path)", "try module.load()", 'try module.load("forward")',
                 'try module.methodMetadata("forward")', "metadata.backendNames", "metadata.inputTensorMetadata",
                 "Tensor<Float>(scalars, shape: spec.shape)", "try module.forward(inputs)",
                 "let tensor: Tensor<Float> = value.tensor()", "tensor.scalars()"):
        assert call in pte, call
    assert f'static let coreMLBackend = "{pte_format.COREML_BACKEND}"' in pte
    units = re.search(r"static let pteComputeUnits = \[(.*?)\]", proto).group(1)
    assert [u.strip(' "') for u in units.split(",")] == list(PTE_COMPUTE_UNITS["ios"])
    suffixes = re.search(r"static let modelSuffixes = \[(.*?)\]", proto).group(1)
    assert [u.strip(' "') for u in suffixes.split(",")] == list(MODEL_SUFFIXES["ios"])
    assert PTE_INPUT_DTYPES == ("float32",) and 'dtype == "float32"' in proto
    assert "if request.isPte {" in bench and "PteBenchmark.runConfig(" in bench
    assert _swift_errors(SWIFT_DIR / "VitdeployHarnessTests/PteBenchmark.swift") == []


def test_kotlin_harness_runs_pte_like_the_protocol():
    """HarnessBenchmark.kt's .pte path against ExecuTorch's Android API (Module.kt/Tensor.kt/EValue.kt,
    release/1.4 and main): Kotlin reads Tensor.dataAsFloatArray as a property. It cannot be compiled here."""
    kt = (ROOT / "android_harness/app/src/androidTest/java/com/vitdeploy/harness/HarnessBenchmark.kt").read_text()
    for imp in ("DType", "EValue", "Module", "Tensor"):
        assert f"import org.pytorch.executorch.{imp}\n" in kt
    body = kt[kt.index("private fun runPteConfig("):kt.index("private fun pinAndReport(")]
    for call in ("Module.load(File(inDir, request.model).path, Module.LOAD_MODE_MMAP, config.threads ?: 0)",
                 'mod.loadMethod("forward")', 'mod.getMethodMetadata("forward").backends',
                 "EValue.from(pteInput(", "Tensor.fromBlob(floats, ", "module.forward(*inputs)",
                 "value.toTensor()", "tensor.dataAsFloatArray", "module?.destroy()",
                 'json.put("cpu_affinity", pinAndReport('):
        assert call in body, call
    assert "getDataAsFloatArray()" not in kt  # the Java spelling does not compile in Kotlin's property syntax
    assert f'private const val COREML_BACKEND = "{pte_format.COREML_BACKEND}"' in kt
    units = re.search(r"PTE_UNITS = setOf\((.*?)\)", kt).group(1)
    assert [u.strip(' "') for u in units.split(",")] == list(PTE_COMPUTE_UNITS["android"])
    suffixes = re.search(r"MODEL_SUFFIXES = listOf\((.*?)\)", kt).group(1)
    assert [u.strip(' "') for u in suffixes.split(",")] == list(MODEL_SUFFIXES["android"])
    assert "if (request.isPte) runPteConfig(" in kt
    # The emulator's output types are the ones pteOutputBytes writes.
    from adb_emulator import PTE_OUTPUT_DTYPES

    named = re.findall(r'DType\.(\w+) -> (?:tensor\.\w+\.let \{ a ->\s*Pair|Pair)\("(\w+)"', body)
    assert sorted(n for _, n in named) == sorted(PTE_OUTPUT_DTYPES.values())
