"""Issue 28, finding 1: the result file a phone writes (and the request file) is untrusted input. Each
hostile document is one line of ProtocolError (exit 2 through VitdeployError) naming the file, never an
accepted timing and never an internal error. tests/test_devices.py covers the well-formed protocol."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from vitdeploy.devices import android, ios
from vitdeploy.devices import protocol
from vitdeploy.devices.protocol import HarnessRequest, HarnessResult, ProtocolError, TensorFile
from fuzz_seeds import minimal_mlpackage
from vitdeploy.errors import VitdeployError

OUT_DIR = "/sdcard/Android/data/com.vitdeploy.harness/files/vitdeploy/r1"


def _request(**kw) -> HarnessRequest:
    base = dict(platform="android", model="m.tflite", inputs=[TensorFile("input0.bin", [1, 3, 8, 8])],
                compute_units=["xnnpack", "gpu"], runs=3, warmup=1, threads=[1, 4], request_id="r1")
    return HarnessRequest(**{**base, **kw})


def _doc(req: HarnessRequest) -> dict:
    configs = [{**c, "status": "ok", "error": None, "load_ms": 1.0, "init_ms": 2.0, "first_inference_ms": 3.0,
                "latencies_ms": [1.0] * req.runs, "peak_memory_kb": 100,
                "outputs": [{"file": f"{c['name']}.output0.bin", "shape": [1, 10], "dtype": "float32"}],
                "op_placement": None} for c in req.configs()]
    return {"protocol": "vitdeploy-harness", "version": 1, "request_id": req.request_id, "status": "ok",
            "error": None, "device": {"platform": req.platform, "model": "Pixel 7", "sdk": 34}, "configs": configs}


def _text(doc: dict) -> str:
    return json.dumps(doc)


def _edit(path: str, value):
    """A document with ``value`` at ``path`` (dot-separated keys and list indices)."""
    def make(req):
        d = _doc(req)
        *parents, last = path.split(".")
        node = d
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
        return _text(d)
    return make


def _raw(old: str, new: str, count: int = 1):
    """A document whose JSON text has ``old`` replaced by ``new`` (for what json.dumps would never write)."""
    return lambda req: _text(_doc(req)).replace(old, new, count)


HOSTILE = {
    # numbers: not finite, out of range, not what they claim to be
    "Infinity latency": (_raw('"latencies_ms": [1.0', '"latencies_ms": [Infinity'), "Infinity is not a JSON number"),
    "NaN load time": (_raw('"load_ms": 1.0', '"load_ms": NaN'), "NaN is not a JSON number"),
    "1e400 latency": (_raw('"latencies_ms": [1.0', '"latencies_ms": [1e400'), "number 1e400 is out of range"),
    "a 5000-digit integer": (_raw('"peak_memory_kb": 100', '"peak_memory_kb": 1' + "0" * 5000), "integer 1000"),
    "zero latency": (_edit("configs.0.latencies_ms", [0.0, 1.0, 1.0]), "'latencies_ms' must be numbers"),
    "negative latency": (_edit("configs.0.latencies_ms", [-1.0, 1.0, 1.0]), "'latencies_ms' must be numbers"),
    "a two-hour latency": (_edit("configs.0.latencies_ms", [7.2e6, 1.0, 1.0]), "'latencies_ms' must be numbers"),
    "a week-long init": (_edit("configs.0.init_ms", 6.048e8), "'init_ms' must be a number of milliseconds"),
    "memory over 4 TiB": (_edit("configs.0.peak_memory_kb", 2 ** 50), "'peak_memory_kb' must be an integer"),
    "version true": (_edit("version", True), "unsupported 'version' True"),
    "version 1.0": (_edit("version", 1.0), "unsupported 'version' 1.0"),
    "threads 4.0": (_edit("configs.1.threads", 4.0), "'threads' must be an integer"),
    "pinned 1": (_edit("configs.0.cpu_affinity", {"requested": [7], "pinned": 1, "mask": [7], "error": None}),
                 "'pinned' must be true or false"),
    "cost Infinity": (None, None),  # iOS, below
    # consistency with the request that was sent
    "threads not requested": (_edit("configs.0.threads", 8), "ran with 8 threads, but the request asked 1"),
    "compute unit not requested": (_edit("configs.2.compute_unit", "nnapi"), "ran on 'nnapi', but the request asked 'gpu'"),
    "unknown compute unit": (_edit("configs.2.compute_unit", "tpu"), "'compute_unit' must be one of"),
    "a config nobody asked for": (lambda req: _text({**_doc(req), "status": "error", "error": "boom",
                                                     "configs": [{**_doc(req)["configs"][0], "name": "xnnpack-64t",
                                                                  "threads": 64}]}),
                                  "config 'xnnpack-64t' was not requested"),
    "a config answered twice": (lambda req: _text({**_doc(req), "status": "error", "error": "boom",
                                                   "configs": [_doc(req)["configs"][0]] * 2}),
                                "a config is answered twice"),
    "more latencies than runs": (_edit("configs.0.latencies_ms", [1.0] * 1000), "at most 3 numbers"),
    "another platform": (_edit("device.platform", "ios"), "'platform' 'ios' answers a request for android"),
    "two configs, one output file": (_edit("configs.1.outputs.0.file", "xnnpack-1t.output0.bin"),
                                     "two configs name the same output file"),
    "an output named result.json": (_edit("configs.0.outputs.0.file", "result.json"), "named like the request's own"),
    "an output named with an escape": (_edit("configs.0.outputs.0.file", "\x1b[2Jx.bin"), "'file' must be a bare"),
    "an output over 1 GiB": (_edit("configs.0.outputs.0.shape", [1 << 20, 1 << 20]), "tensor is over 1024 MiB"),
    "an output of 9 dims": (_edit("configs.0.outputs.0.shape", [1] * 9), "1 to 8 of them"),
    # structure: duplicate keys, arrays where objects belong, nesting, nested device info
    "duplicate status": (_raw('"status": "ok"', '"status": "error", "status": "ok"'), "key 'status' appears twice"),
    "duplicate latencies": (_raw('"latencies_ms"', '"latencies_ms": [], "latencies_ms"'), "appears twice"),
    "configs an object": (_edit("configs", {"0": {}}), "'configs' must be a list"),
    "a config a list": (_edit("configs.0", []), "must be an object"),
    "device a list": (_edit("device", ["Pixel"]), "'device' must be an object"),
    "device nested": (_edit("device.model", {"a": {"b": 1}}), "'model' must be text"),
    "device text of 1 MB": (_edit("device.model", "x" * 1_000_000), "'model' must be text"),
    "device key with escape": (_edit("device", {"\x1b]0;pwned\x07": 1}), "property name"),
    "deep nesting": (_raw('"device": {', '"device": {"x": ' + "[" * 100_000 + "]" * 100_000 + ', '),
                     "nested deeper than 16 levels"),
    "lone surrogate": (_raw('"error": null', '"error": "\\ud800"'), "lone UTF-16 surrogate"),
    "request id with control": (_edit("request_id", "r1\x1b[31m"), "'request_id' must be 1-64 chars"),
}
HOSTILE = {k: v for k, v in HOSTILE.items() if v[0] is not None}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_result_is_one_line_naming_the_file(case, tmp_path):
    make, expected = HOSTILE[case]
    req = _request()
    path = tmp_path / "result.json"
    path.write_text(make(req), encoding="utf-8", errors="surrogatepass")
    with pytest.raises(ProtocolError) as e:
        HarnessResult.read(path, req, name=f"{OUT_DIR}/result.json")
    msg = str(e.value)
    assert msg.startswith(f"{OUT_DIR}/result.json: harness result") and expected in msg, msg
    assert "\n" not in msg and len(msg) < 400
    assert "\x1b" not in msg or "'" in msg  # a control character is only ever quoted (repr), never raw


def test_the_size_cap_reads_at_most_cap_plus_one_bytes(tmp_path, monkeypatch):
    path = tmp_path / "result.json"
    path.write_bytes(b'{"error": "' + b"x" * protocol.RESULT_MAX_BYTES + b'"}')  # a multi-megabyte error message
    reads = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: Spy(real_open(p, mode, *a, **k)))
    with pytest.raises(ProtocolError, match=rf"result.json: harness result: larger than {protocol.RESULT_MAX_BYTES} bytes"):
        HarnessResult.read(path, _request())
    assert reads == [protocol.RESULT_MAX_BYTES + 1]


def test_a_long_error_message_is_cut_with_a_marker():
    req = _request()
    d = _doc(req)
    d["configs"][2].update(status="error", error="GPU: " + "x" * 100_000, outputs=[], latencies_ms=[])
    res = HarnessResult.loads(_text(d), req)
    err = res.configs[2].error
    assert len(err) < protocol.MAX_ERROR + 50 and err.endswith(f"... [{100_005 - protocol.MAX_ERROR} more characters]")


def test_not_utf8_is_one_line():
    req = _request()
    data = _text(_doc(req)).replace('"Pixel 7"', '"Pixel \\u0037"').encode().replace(b"Pixel", b"Pix\xffl")
    with pytest.raises(ProtocolError, match=r"harness result: not UTF-8 text \(byte 0xff at offset \d+\)"):
        HarnessResult.loads(data, req)


def test_unknown_fields_are_still_ignored_and_dropped():
    """docs/harness-protocol.md: adding an optional result field is not a version change."""
    req = _request()
    d = _doc(req)
    d["thermal_state"] = "nominal"
    d["configs"][0]["energy_mj"] = 1.5
    res = HarnessResult.loads(_text(d), req)
    assert "thermal_state" not in res.to_json() and "energy_mj" not in res.configs[0].__dict__


def test_ios_op_placement_numbers_are_finite():
    req = _request(platform="ios", model="m.mlpackage", compute_units=["all"], threads=[1])
    d = _doc(req)
    d["configs"][0]["op_placement"] = [{"index": 0, "op": "ios17.conv", "device": "cpu", "supported": ["cpu"],
                                        "cost": 1}]
    text = _text(d).replace('"cost": 1', '"cost": Infinity')
    with pytest.raises(ProtocolError, match="Infinity is not a JSON number"):
        HarnessResult.loads(text, req)
    d["configs"][0]["op_placement"][0]["op"] = "x" * 10_000
    with pytest.raises(ProtocolError, match="'op' must be a non-empty printable string"):
        HarnessResult.loads(_text(d), req)


@pytest.mark.parametrize("edit,expected", [
    (lambda d: d.update(version=True), "unsupported 'version' True"),
    (lambda d: d.update(runs=10 ** 9), "'runs' and 'warmup' are at most 100000"),
    (lambda d: d.update(threads=[4, 4]), "'threads' lists a count twice"),
    (lambda d: d.update(model="m\x1b[31m.tflite"), "'model' must be a bare file name"),
    (lambda d: d["inputs"][0].update(file="../../etc/passwd"), "'file' must be a bare file name"),
])
def test_a_hostile_request_is_one_line(edit, expected):
    d = _request().to_json()
    edit(d)
    with pytest.raises(ProtocolError) as e:
        HarnessRequest.loads(json.dumps(d))
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_a_request_file_has_a_budget_too(tmp_path):
    path = tmp_path / "request.json"
    path.write_bytes(b" " * (protocol.REQUEST_MAX_BYTES + 1))
    with pytest.raises(ProtocolError, match="request.json: harness request: larger than"):
        HarnessRequest.read(path)
    path.write_text(_request().dumps())
    assert HarnessRequest.read(path) == _request()


class _FakeAdb:
    """What _fetch_result needs of android.Adb: ``adb pull`` of result.json lands the phone's bytes."""

    serial = "EMU7A"

    def __init__(self, data: bytes):
        self.data = data

    def run(self, args, *, timeout, what):
        Path(args[-1]).write_bytes(self.data)
        return subprocess.CompletedProcess(args, 0, "", "")

    def check(self, args, *, timeout, what):
        return self.run(args, timeout=timeout, what=what)


@pytest.mark.parametrize("data,expected", [
    (b"\xff\xfe{}", "not UTF-8 text"),
    (b"[" * 200_000, "nested deeper than 16 levels"),
    (b'{"version": 1' + b"0" * 5000 + b"}", "is out of range"),
])
def test_android_reports_a_hostile_result_as_one_line_naming_the_phone(tmp_path, data, expected):
    req = _request()
    with pytest.raises(VitdeployError) as e:
        android._fetch_result(_FakeAdb(data), req, OUT_DIR, tmp_path / "out", 10)
    assert type(e.value) is VitdeployError  # the flow's own wrapper, not an escaped internal error
    msg = str(e.value)
    assert msg.startswith(f"bad result from the harness on EMU7A: {OUT_DIR}/result.json: harness result: ")
    assert expected in msg and "\n" not in msg


def test_ios_reports_a_non_utf8_result_as_one_line(tmp_path, monkeypatch):
    pkg = minimal_mlpackage(tmp_path / "m.mlpackage")
    monkeypatch.setattr(ios, "list_connected_ios", lambda **kw: [
        {"udid": "U1", "platform": "ios", "catalog": "iphone12", "model": "iPhone 12", "state": "device"}])

    def runner(step):
        if step.argv[:5] == ["xcrun", "devicectl", "device", "copy", "from"] and step.argv[-1].endswith("result.json"):
            Path(step.argv[-1]).write_bytes(b'{"error": "\xc3\x28"}')
        return subprocess.CompletedProcess(step.argv, 0, "", "")

    import numpy as np

    with pytest.raises(VitdeployError, match=r"bad result from the iOS harness: Documents/vitdeploy/.*/result.json: "
                                             r"harness result: not UTF-8 text"):
        ios.profile_ios(pkg, input_array=np.zeros((1, 3, 4, 4), np.float32), runs=3, warmup=1,
                        compute_units=["cpuOnly"], work_dir=tmp_path / "w", platform="darwin", runner=runner)


def test_read_tensor_checks_the_size_before_reading(tmp_path, monkeypatch):
    t = TensorFile("out.bin", [1, 10], "float32")
    (tmp_path / "out.bin").write_bytes(b"\0" * (1 << 20))
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read a file of the wrong size"))
    with pytest.raises(ProtocolError, match="has 1048576 bytes, shape \\[1, 10\\] float32 needs 40"):
        protocol.read_tensor(tmp_path, t)
