"""Farm orchestration through the real CLI: the state folder, the wait loop, Ctrl-C, results at scale.

The farm is a tiny RemoteBackend registered here ("fakefarm"): it keeps everything it needs in the
Submission's own ``state`` (as a real farm keeps it on its servers), so a second CliRunner invocation with a
fresh backend object can poll and collect what the first one submitted. Botocore/AI Hub clients are the farm
backends' own tests (tests/test_farms_*.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from vitdeploy.cli import main
from vitdeploy.devices import farm as farm_mod
from vitdeploy.devices.backend import (
    DONE, FAILED, QUEUED, RUNNING, SOURCE_HARNESS, SOURCE_QAI_HUB, DeviceRef, LatencyRecord, Submission,
    get_backend, register_backend,
)
from vitdeploy.errors import VitdeployError
from vitdeploy.reports import farm as report

PHONES = [("Google Pixel 7", "android", None), ("Samsung Galaxy S24 (SM-S921U)", "android", None),
          ("Apple iPhone 15", "ios", None), ("Broken Phone", "android", "Tensor G2")]
CANCELLED_IDS: list[str] = []
LATENCY = {"Google Pixel 7": 10.0, "Samsung Galaxy S24 (SM-S921U)": 6.0, "Apple iPhone 15": 4.0}


@register_backend("fakefarm")
class FakeFarm:
    """Submissions advance one state per poll: queued (30 s in the queue) -> running -> done."""

    name = "fakefarm"
    remote = True

    def __init__(self, noisy: bool = False) -> None:
        self.noisy = noisy

    def list_devices(self, platform=None):
        return [DeviceRef.named("fakefarm", f"arn:dev/{i}", n, p, os="14" if p == "android" else "17.5", soc=soc)
                for i, (n, p, soc) in enumerate(PHONES) if platform in (None, p)]

    def resolve(self, names, *, platform=None, max_devices=None):
        devs = self.list_devices(platform)
        if names:
            devs = [d for d in devs if d.name.lower() in {n.lower() for n in names}]
        return devs[:max_devices] if max_devices else devs

    def submit(self, request, devices):
        sub = Submission(id=f"fake-{Path(request.model).stem}", backend=self.name, request=request,
                         devices=list(devices), status="uploading", state={"polls": 0})
        sub.per_device = {d.id: {"status": "uploading"} for d in devices}
        return sub

    def poll(self, sub):
        n = sub.state["polls"] = sub.state.get("polls", 0) + 1
        status = QUEUED if n == 1 else RUNNING if n == 2 else DONE
        for d in sub.devices:
            broken = d.name == "Broken Phone"
            st = FAILED if broken and status == DONE else status
            sub.per_device[d.id] = {"status": st, "queue_s": 30.0, "url": f"https://farm.example/{sub.id}/{d.id}",
                                    "error": "the harness app crashed (tombstone)" if st == FAILED else None}
        sub.status = status
        return sub

    def collect(self, sub):
        recs = []
        scale = 0.5 if "int8" in Path(sub.request.model).name else 1.0
        for d in sub.devices:
            info = sub.per_device[d.id]
            if info["status"] == FAILED:
                recs.append(LatencyRecord(backend=self.name, device=d.name, platform=d.platform,
                                          model=str(sub.request.model), runtime="tflite", compute_units="xnnpack",
                                          threads=4, repeat=0, soc=d.soc, vendor=d.vendor, error=info["error"]))
                continue
            for k in range(sub.request.repeat):
                base = LATENCY[d.name] * scale * (1.2 if (self.noisy and k == 1) else 1.0)
                lat = [base * (1 + 0.01 * (i % 3)) for i in range(sub.request.runs)]
                recs.append(LatencyRecord(backend=self.name, device=d.name, platform=d.platform,
                                          model=str(sub.request.model), runtime="tflite", compute_units="xnnpack",
                                          threads=4, repeat=k, soc=d.soc, vendor=d.vendor, os=d.os, latencies_ms=lat,
                                          thermal={"before": "none", "after": "light"}, queue_s=info["queue_s"],
                                          url=info["url"]))
        return recs

    def cancel(self, sub):
        CANCELLED_IDS.append(sub.id)


@pytest.fixture
def models(tmp_path):
    fp32, int8 = tmp_path / "m_fp32.tflite", tmp_path / "m_int8.tflite"
    fp32.write_bytes(b"TFL3 fp32")  # the fake farm never reads them; the names carry the precision
    int8.write_bytes(b"TFL3 int8")
    return fp32, int8


@pytest.fixture
def no_sleep(monkeypatch):
    """The wait loop's clock advances 10 s per read and sleeping is a no-op (sleeps are recorded)."""
    t, sleeps = [0.0], []

    def now():
        t[0] += 10.0
        return t[0]

    monkeypatch.setattr(farm_mod, "_now", now)
    monkeypatch.setattr(farm_mod, "_pause", sleeps.append)
    return sleeps


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_submit_no_wait_then_a_new_invocation_collects(models, tmp_path, no_sleep):
    state = tmp_path / "state"
    fp32, int8 = models
    r = run("profile", fp32, int8, "--farm", "fakefarm", "--devices", "Google Pixel 7,Samsung Galaxy S24 (SM-S921U)",
            "--runs", "5", "--no-wait", "--state-dir", state)
    assert r.exit_code == 0, r.output
    assert r.stdout.split() == ["fake-m_fp32", "fake-m_int8"]
    assert "vitdeploy farm collect fake-m_fp32" in r.stderr
    doc = json.loads((state / "fake-m_fp32.json").read_text())  # recorded before any waiting
    assert doc["status"] == "uploading" and doc["records"] is None and doc["request"]["runs"] == 5
    assert [d["name"] for d in doc["devices"]] == ["Google Pixel 7", "Samsung Galaxy S24 (SM-S921U)"]
    assert not list(state.glob("*.partial"))

    listed = run("farm", "list", "--state-dir", state, "--json")
    assert [s["id"] for s in json.loads(listed.stdout)] == ["fake-m_fp32", "fake-m_int8"]
    status = run("farm", "status", "fake-m_fp32", "--state-dir", state)
    assert "queued: 2 queued (queue 30 s)" in status.stdout
    assert json.loads((state / "fake-m_fp32.json").read_text())["state"]["polls"] == 1  # the poll is recorded

    r = run("farm", "collect", "fake-m_fp32", "fake-m_int8", "--state-dir", state, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {(Path(x["model"]).name, x["device"]) for x in out["rows"]} == {
        (m, d) for m in ("m_fp32.tflite", "m_int8.tflite") for d in ("Google Pixel 7", "Samsung Galaxy S24 (SM-S921U)")}
    s24 = next(x for x in out["rows"] if x["device"].startswith("Samsung") and "fp32" in x["model"])
    assert s24["soc"] == "Snapdragon 8 Gen 3 for Galaxy" and s24["vendor"] == "Qualcomm"
    assert s24["median_ms"] == pytest.approx(6.06) and s24["source_label"] == "harness"
    assert "running" in r.stderr and "collected fake-m_int8: 2 result(s)" in r.stderr
    # Collected once: the records live in the state file, a second collect needs no farm.
    assert json.loads((state / "fake-m_int8.json").read_text())["status"] == DONE
    again = run("farm", "collect", "fake-m_int8", "--state-dir", state, "--json")
    assert json.loads(again.stdout)["rows"] == [x for x in out["rows"] if "int8" in x["model"]]


def test_ctrl_c_while_waiting_leaves_a_resumable_record(models, tmp_path, monkeypatch, no_sleep):
    state = tmp_path / "state"

    def interrupted():
        raise KeyboardInterrupt

    calls = [0]

    def clock():  # the first reads pass, then the user presses Ctrl-C
        calls[0] += 1
        if calls[0] > 2:
            interrupted()
        return float(calls[0])

    monkeypatch.setattr(farm_mod, "_now", clock)
    r = run("profile", models[0], "--farm", "fakefarm", "--devices", "Google Pixel 7", "--state-dir", state)
    assert r.exit_code == 130, r.output
    assert "interrupted: fake-m_fp32 stays recorded" in r.stderr
    assert "resume with `vitdeploy farm collect fake-m_fp32`" in r.stderr and "Traceback" not in r.output
    doc = json.loads((state / "fake-m_fp32.json").read_text())
    assert doc["status"] == QUEUED and doc["state"]["polls"] == 1
    monkeypatch.setattr(farm_mod, "_now", lambda: 0.0)
    r = run("farm", "collect", "fake-m_fp32", "--state-dir", state)
    assert r.exit_code == 0, r.output
    assert "Google Pixel 7" in r.stdout and "Tensor G2" in r.stdout


def test_wait_backs_off_and_times_out_keeping_the_record(models, tmp_path):
    backend = get_backend("fakefarm")
    store = farm_mod.Store(tmp_path / "s")
    req = farm_mod._requests([models[0]], runs=3)[0]
    sub = backend.submit(req, backend.resolve(["Google Pixel 7"]))
    sleeps, lines = [], []
    backend.poll = lambda s: (setattr(s, "status", QUEUED), s)[1]  # never leaves the queue
    t = [0.0]

    def clock():
        t[0] += 1.0
        return t[0] + sum(sleeps)

    with pytest.raises(VitdeployError, match=r"fake-m_fp32 not finished after 300 s; .*`vitdeploy farm collect "
                                             r"fake-m_fp32` later"):
        farm_mod.wait(backend, [("fake-m_fp32", sub)], store, timeout_s=300, say=lines.append, clock=clock,
                      sleep=sleeps.append)
    assert sleeps[:4] == [5.0, 7.5, 11.25, 16.875] and max(sleeps) == 60.0
    assert store.load("fake-m_fp32")[0].status == QUEUED
    assert 1 <= len(lines) <= 4  # a line on each change of state and a heartbeat, not one per poll


@pytest.mark.parametrize("args,msg", [
    (["--farm", "nosuch"], "unknown device backend 'nosuch'; choose from "),
    (["--farm", "android"], "'android' is a phone on this machine, not a farm: use --device"),
    (["--farm", "fakefarm", "--devices", "Nokia 3310"], "no fakefarm device matched 'Nokia 3310'"),
    (["--devices", "Google Pixel 7"], "--devices is for farms: add --farm"),
    (["--farm", "fakefarm", "--device", "pixel7"], "--farm runs on the farm's phones: drop --device"),
])
def test_bad_farm_input_is_one_line_exit_2(models, tmp_path, args, msg):
    r = run("profile", models[0], *args, "--state-dir", tmp_path / "s")
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines() == [f"error: {r.stderr.strip()[7:]}"] and msg in r.stderr
    assert not (tmp_path / "s").exists()  # nothing submitted, nothing recorded


def test_a_format_no_matched_device_runs(tmp_path):
    pkg = tmp_path / "m.mlpackage"
    pkg.mkdir()
    r = run("profile", pkg, "--farm", "fakefarm", "--devices", "Google Pixel 7", "--state-dir", tmp_path / "s")
    assert r.exit_code == 2 and "m.mlpackage: none of the matched devices (Google Pixel 7) runs a .mlpackage (ios)" \
        in r.stderr


@pytest.mark.parametrize("sub_id", ["../../etc", "/etc/passwd", "..", ".hidden", "a/b", "", "abc\n"])
def test_submission_ids_cannot_leave_the_state_folder(tmp_path, sub_id):
    for cmd in ("status", "collect", "cancel"):
        r = run("farm", cmd, sub_id, "--state-dir", tmp_path)
        assert r.exit_code == 2 and "bad submission id" in r.stderr, (cmd, r.output)
    assert farm_mod.local_id(Submission(id="arn:aws:devicefarm:us-west-2:1:run:p/r", backend="aws",
                                        request=_req(tmp_path),
                                        devices=[])) == "aws-arn-aws-devicefarm-us-west-2-1-run-p-r"


def _req(tmp_path):
    from vitdeploy.devices.backend import ProfileRequest

    return ProfileRequest(model=tmp_path / "m.tflite")


def test_one_failing_device_is_one_line_the_others_kept(models, tmp_path, no_sleep):
    md, png = tmp_path / "t.md", tmp_path / "t.png"
    r = run("profile", models[0], models[1], "--farm", "fakefarm", "--runs", "4", "--state-dir", tmp_path / "s",
            "--devices", "Google Pixel 7,Broken Phone,Samsung Galaxy S24 (SM-S921U)", "--markdown", md, "--plot", png)
    assert r.exit_code == 0, r.output
    errors = [ln for ln in r.stdout.splitlines() if ln.startswith("error: ")]
    assert errors == [f"error: Broken Phone [fakefarm] m_{p}.tflite xnnpack 4t: the harness app crashed (tombstone)"
                      for p in ("fp32", "int8")]
    header = r.stdout.splitlines()[0].split()
    assert header[:4] == ["model", "device", "SoC", "OS"] and "source" in header
    assert sum("Google Pixel 7" in ln for ln in r.stdout.splitlines()) == 2
    text = md.read_text()
    assert "| m_int8.tflite | Samsung Galaxy S24 (SM-S921U) | Snapdragon 8 Gen 3 for Galaxy |" in text
    assert "## Devices that did not report" in text and "[job](https://farm.example/" in text
    pytest.importorskip("matplotlib")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_device_failing_is_a_failed_check(models, tmp_path, no_sleep):
    r = run("profile", models[0], "--farm", "fakefarm", "--devices", "Broken Phone", "--state-dir", tmp_path / "s")
    assert r.exit_code == 1 and "no device reported a latency (1 error(s))" in r.stderr


def test_cancel_and_dry_run(models, tmp_path, no_sleep):
    state = tmp_path / "s"
    run("profile", models[0], "--farm", "fakefarm", "--no-wait", "--state-dir", state)
    r = run("farm", "cancel", "fake-m_fp32", "--state-dir", state)
    assert r.stdout.strip() == "fake-m_fp32: cancelled" and CANCELLED_IDS[-1] == "fake-m_fp32"
    assert run("farm", "cancel", "fake-m_fp32", "--state-dir", state).stdout.strip() == "fake-m_fp32: already cancelled"
    assert "was cancelled" in run("farm", "collect", "fake-m_fp32", "--state-dir", state).stderr
    dry = run("profile", models[0], "--farm", "fakefarm", "--devices", "Google Pixel 7", "--dry-run", "--json",
              "--state-dir", tmp_path / "dry")
    plan = json.loads(dry.stdout)["dry_run"][0]
    assert [d["name"] for d in plan["devices"]] == ["Google Pixel 7"]
    assert plan["request"]["model"].endswith("m_fp32.tflite")
    assert not (tmp_path / "dry").exists()


def test_farm_devices_lists_socs(tmp_path):
    r = run("farm", "devices", "--farm", "fakefarm", "--platform", "ios", "--json")
    assert [(d["name"], d["soc"], d["vendor"]) for d in json.loads(r.stdout)] == [("Apple iPhone 15", "A16 Bionic",
                                                                                  "Apple")]
    text = run("farm", "devices", "--farm", "fakefarm").stdout
    assert "Samsung Galaxy S24 (SM-S921U)" in text and "Snapdragon 8 Gen 3 for Galaxy" in text


def _rec(device, lat, repeat=0, **kw):
    return LatencyRecord(backend=kw.pop("backend", "fakefarm"), device=device, platform="android", model="m.tflite",
                         runtime="tflite", compute_units="xnnpack", threads=4, repeat=repeat, latencies_ms=lat, **kw)


def test_unstable_flagging_and_sources():
    steady = [10.0, 10.1, 9.9, 10.0]
    noisy = [5.0, 10.0, 15.0, 7.0]  # CV about 47 %
    recs = [_rec("A", steady, 0), _rec("A", steady, 1),  # stable
            _rec("B", noisy),  # CV too high
            _rec("C", steady, 0), _rec("C", [x * 1.08 for x in steady], 1),  # repeats 8 % apart
            _rec("D", [3.0, 3.1, 3.0], backend="qai-hub", source=SOURCE_QAI_HUB)]
    rows, errors = report.rows(recs)
    by = {r.device: r for r in rows}
    assert not by["A"].unstable and by["A"].repeats == 2 and not errors
    assert by["B"].unstable and by["B"].why_unstable.startswith("CV 47% > 10%")
    assert by["C"].unstable and by["C"].why_unstable == "repeats differ by 8% > 5%"
    loose, _ = report.rows(recs, max_cv=0.5, max_repeat_spread=0.1)
    assert not any(r.unstable for r in loose)
    table = report.format_table(rows)
    assert "B [unstable]" in table and "unstable: C m.tflite xnnpack 4t: repeats differ by 8% > 5%" in table
    d_line = next(ln for ln in table.splitlines() if ln.startswith("m.tflite  D "))
    assert "qai-hub profiler" in d_line and "harness" not in d_line
    assert "not the vitdeploy harness" in table and "not the vitdeploy harness" in report.format_markdown(rows)
    assert SOURCE_HARNESS != SOURCE_QAI_HUB


def test_unstable_repeats_through_the_cli(models, tmp_path, monkeypatch, no_sleep):
    real = FakeFarm.__init__
    monkeypatch.setattr(FakeFarm, "__init__", lambda self, noisy=True: real(self, noisy=True))
    r = run("profile", models[0], "--farm", "fakefarm", "--devices", "Google Pixel 7", "--repeat", "2",
            "--state-dir", tmp_path / "s", "--json")
    (row,) = json.loads(r.stdout)["rows"]
    assert row["repeats"] == 2 and row["unstable"] and row["why_unstable"] == "repeats differ by 20% > 5%"
    r = run("farm", "collect", "fake-m_fp32", "--state-dir", tmp_path / "s", "--max-repeat-spread", "0.25", "--json")
    assert not json.loads(r.stdout)["rows"][0]["unstable"]


@pytest.mark.parametrize("name,soc,vendor", [
    ("Google Pixel 6", "Google Tensor", "Google"), ("Google Pixel 9 Pro XL", "Google Tensor G4", "Google"),
    ("Samsung Galaxy S21", "Exynos 2100 / Snapdragon 888", None),
    ("Samsung Galaxy S22 (SM-S901B)", "Exynos 2200", "Samsung"),
    ("Samsung Galaxy S24 (Snapdragon)", "Snapdragon 8 Gen 3 for Galaxy", "Qualcomm"),
    ("Samsung Galaxy S23 (Family)", "Snapdragon 8 Gen 2 for Galaxy", "Qualcomm"),
    ("Samsung Galaxy S24+", "Exynos 2400 / Snapdragon 8 Gen 3 for Galaxy", None),
    ("OnePlus 12", "Snapdragon 8 Gen 3", "Qualcomm"), ("Xiaomi 13T Pro", "Dimensity 9200+", "MediaTek"),
    ("Apple iPhone 12 mini", "A14 Bionic", "Apple"), ("Apple iPhone 16 Pro", "A18 Pro", "Apple"),
    ("Nokia 3310", None, None),
])
def test_catalog_maps_farm_names_to_socs(name, soc, vendor):
    from vitdeploy.devices.catalog import soc_of

    assert soc_of(name) == (soc, vendor)
    assert DeviceRef.named("aws", "x", name, "android").soc == soc
    assert soc_of(name, model_id="SM-S921U")[1] in (vendor, "Qualcomm")  # a model id can settle the variant
