"""Qualcomm AI Hub backend against a fake client fed recorded responses in the shapes qai-hub returns.

Where the qai-hub package is importable, the fake's statuses and devices are the package's own classes
and the profile dict is made by the package's own converter from its protobuf (``ProfileDetail``);
elsewhere (CI: qai-hub's protobuf pin conflicts with LiteRT's, docs/farms.md) plain stand-ins of the same
shape are used."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vitdeploy.devices.backend import DONE, FAILED, FINAL_STATES, QUEUED, SOURCE_QAI_HUB, ProfileRequest, get_backend
from vitdeploy.devices.farms.qaihub import QaiHub, apply_profile, make_client
from vitdeploy.errors import VitdeployError

try:
    import qai_hub as hub
except ImportError:
    hub = None


@dataclass
class _Status:  # the shape of qai_hub.JobStatus where the package is missing
    code: str
    message: str | None = None

    @property
    def success(self):
        return self.code == "SUCCESS"

    @property
    def failure(self):
        return self.code == "FAILED"


@dataclass
class _Device:  # the shape of qai_hub.Device
    name: str = ""
    os: str = ""
    attributes: list = field(default_factory=list)


def status(code: str, message: str | None = None):
    if hub is not None:
        return hub.JobStatus(getattr(hub.JobStatus.State, code), message)
    return _Status(code, message)


def device(name, os_, attributes):
    return (hub.Device if hub is not None else _Device)(name, os_, attributes)


# What download_profile() returned for a small .tflite (profile format 1.2), reduced to four layers.
PROFILE = {
    "execution_summary": {
        "estimated_inference_time": 1512, "estimated_inference_peak_memory": 12_582_912,
        "first_load_time": 183_000, "first_load_peak_memory": 30_000_000, "warm_load_time": 9000,
        "warm_load_peak_memory": 20_000_000, "compile_time": 0, "compile_peak_memory": 0,
        "all_inference_times": [1490, 1512, 1530, 1601, 1499], "all_first_load_times": [183000],
        "inference_memory_peak_range": (12_000_000, 12_582_912),
    },
    "execution_detail": [
        {"name": "conv2d", "type": "CONV_2D", "compute_unit": "NPU", "execution_time": 210},
        {"name": "gelu", "type": "GELU", "compute_unit": "NPU", "execution_time": 90},
        {"name": "softmax", "type": "SOFTMAX", "compute_unit": "NPU", "execution_time": 40},
        {"name": "argmax", "type": "ARG_MAX", "compute_unit": "CPU", "execution_time": 12},
    ],
}


class FakeJob:
    def __init__(self, job_id, statuses, profile):
        self.job_id, self._statuses, self._profile = job_id, list(statuses), profile
        self.url = f"https://app.aihub.qualcomm.com/jobs/{job_id}/"

    def get_status(self):
        return self._statuses.pop(0) if len(self._statuses) > 1 else self._statuses[0]

    def download_profile(self):
        if isinstance(self._profile, Exception):
            raise self._profile
        return self._profile


class FakeClient:
    """Recorded answers: devices, one uploaded model, one job per (device, repeat)."""

    def __init__(self, scripts: dict, *, legacy: bool = False):
        self.scripts = scripts  # device name -> (statuses, profile) or an Exception for the submit
        self.jobs: dict[str, FakeJob] = {}
        self.submitted: list[tuple] = []
        if legacy:  # an older client: submit_profile_job only
            self.submit_profile_job = self._submit
        else:
            self.submit_inference_job = self._submit

    def get_devices(self):
        return [device("Samsung Galaxy S23 (Family)", "13", ["chipset:qualcomm-snapdragon-8gen2", "os:android",
                                                            "framework:tflite", "vendor:samsung"]),
                device("Samsung Galaxy S23 (Family)", "14", ["chipset:qualcomm-snapdragon-8gen2", "os:android"]),
                device("Snapdragon 8 Elite QRD", "15", ["chipset:qualcomm-snapdragon-8-elite", "os:android"]),
                device("Samsung Galaxy S24 (Family)", "14", ["chipset:qualcomm-snapdragon-8gen3", "os:android"])]

    def upload_model(self, path):
        self.uploaded = path
        return type("Model", (), {"model_id": "mq2j8xyz"})()

    def _submit(self, model, dev, **kw):
        self.submitted.append((dev.name, dev.os, kw))
        script = self.scripts[dev.name]
        if isinstance(script, Exception):
            raise script
        job = FakeJob(f"j{len(self.jobs) + 1:08d}", *script)
        self.jobs[job.job_id] = job
        return job

    def get_job(self, job_id):
        return self.jobs[job_id]


@pytest.fixture
def model(tmp_path) -> Path:
    p = tmp_path / "levit_128s.tflite"
    p.write_bytes(b"TFL3" + b"\0" * 64)
    return p


def _backend(client):
    return QaiHub(client, device_factory=None if hub is not None else _Device)


def test_profile_two_devices_one_fails(model):
    ok = ([status("CREATED"), status("PROVISIONING_DEVICE"), status("MEASURING_PERFORMANCE"), status("SUCCESS")], PROFILE)
    bad = ([status("CREATED"), status("FAILED", "Model failed to load on device: unsupported op")], {})
    client = FakeClient({"Samsung Galaxy S23 (Family)": ok, "Samsung Galaxy S24 (Family)": bad})
    b = _backend(client)
    devs = b.resolve(["samsung galaxy s23", "Galaxy S24 (Family)"])
    assert [(d.name, d.soc, d.vendor) for d in devs] == [
        ("Samsung Galaxy S23 (Family)", "Snapdragon 8 Gen 2", "Qualcomm"),
        ("Samsung Galaxy S24 (Family)", "Snapdragon 8 Gen 3", "Qualcomm")]
    sub = b.submit(ProfileRequest(model=model, runs=5, compute_units=("npu",)), devs)
    assert client.submitted[0][2]["options"] == "--compute_unit npu --max_profiler_iterations 5"
    assert client.submitted[0][1] == ""  # several OS versions: the hub picks the newest
    seen = [sub.status]
    while sub.status not in FINAL_STATES:
        sub = b.poll(sub)
        seen.append(sub.status)
    assert seen[0] == QUEUED and seen[-1] == DONE
    good, failed = b.collect(sub)
    assert (good.source, good.runtime, good.compute_units, good.threads) == (SOURCE_QAI_HUB, "tflite (AI Hub)", "npu", None)
    assert good.latencies_ms == [1.49, 1.512, 1.53, 1.601, 1.499] and good.load_ms == 183.0
    assert good.peak_memory_mb == 12.0 and good.layers_by_unit == {"NPU": 3, "CPU": 1} and good.thermal is None
    assert good.url.endswith("/jobs/j00000001/") and good.queue_s is not None and good.error is None
    assert failed.error == "AI Hub job j00000002 failed: Model failed to load on device: unsupported op"
    assert failed.latencies_ms == [] and sub.per_device[devs[1].id]["status"] == FAILED


def test_legacy_submit_profile_job_and_repeats(model):
    client = FakeClient({"Snapdragon 8 Elite QRD": ([status("SUCCESS")], PROFILE)}, legacy=True)
    b = _backend(client)
    sub = b.poll(b.submit(ProfileRequest(model=model, repeat=2), b.resolve(["Snapdragon 8 Elite"])))
    records = b.collect(sub)
    assert [r.repeat for r in records] == [1, 2] and all(r.error is None for r in records)
    assert records[0].soc == "Snapdragon 8 Elite"


def test_submit_error_for_one_device_keeps_the_other(model):
    client = FakeClient({"Samsung Galaxy S23 (Family)": RuntimeError("Device is not available for profiling"),
                         "Samsung Galaxy S24 (Family)": ([status("SUCCESS")], PROFILE)})
    b = _backend(client)
    sub = b.poll(b.submit(ProfileRequest(model=model), b.resolve(["Samsung Galaxy S23 (Family)", "Samsung Galaxy S24 (Family)"])))
    unavailable, good = b.collect(sub)
    assert "Device is not available for profiling" in unavailable.error and good.error is None


def test_malformed_profile_is_an_error_record(model):
    client = FakeClient({"Samsung Galaxy S24 (Family)": ([status("SUCCESS")], {"execution_summary": {
        "all_inference_times": ["fast"]}})})
    b = _backend(client)
    (rec,) = b.collect(b.poll(b.submit(ProfileRequest(model=model), b.resolve(["Samsung Galaxy S24 (Family)"]))))
    assert "no usable inference times" in rec.error
    with pytest.raises(VitdeployError, match="without an execution summary"):
        apply_profile(rec, {})


def test_refusals(model, tmp_path):
    b = _backend(FakeClient({}))
    pte = tmp_path / "m.pte"
    pte.write_bytes(b"\0")
    with pytest.raises(VitdeployError, match=r"does not take ExecuTorch programs \(\.pte\)"):
        b.submit(ProfileRequest(model=pte), [])
    with pytest.raises(VitdeployError, match="unknown AI Hub compute unit 'xnnpack'"):
        b.submit(ProfileRequest(model=model, compute_units=("xnnpack",)), [])
    with pytest.raises(VitdeployError, match=r"no Qualcomm AI Hub device 'Galaxy S99 \(Family\)'; close matches: Samsung Galaxy S24"):
        b.resolve(["Galaxy S99 (Family)"])
    with pytest.raises(VitdeployError, match="ambiguous"):
        b.resolve(["Samsung Galaxy"])
    with pytest.raises(VitdeployError, match="no way to cancel"):
        b.cancel(b.submit(ProfileRequest(model=model), []))


def test_no_token_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("QAIHUB_API_TOKEN", raising=False)
    monkeypatch.delenv("QAIHUB_CLIENT_INI", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if hub is None:
        monkeypatch.setitem(sys.modules, "qai_hub", type(sys)("qai_hub"))
    with pytest.raises(VitdeployError) as e:
        make_client()
    assert "\n" not in str(e.value) and "qai-hub configure --api_token" in str(e.value) and "QAIHUB_API_TOKEN" in str(e.value)
    with pytest.raises(VitdeployError, match="no Qualcomm AI Hub token"):
        get_backend("qai-hub").list_devices()


def test_qai_hub_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "qai_hub", None)
    with pytest.raises(VitdeployError, match=r"pip install 'vitdeploy\[qaihub\]'"):
        make_client()


def test_profile_shape_from_the_real_converter():
    """The dict download_profile() builds from AI Hub's protobuf, mapped into a record."""
    qh = pytest.importorskip("qai_hub")
    from qai_hub import client as qc
    from qai_hub import public_api_pb2 as api_pb

    pb = api_pb.ProfileDetail(major_version=1, minor_version=2, execution_time=1512, cold_load_time=183_000,
                              after_execution_peak_memory=12_582_912, all_execution_times=[1490, 1512, 1530])
    pb.layer_details.add(name="conv", layer_type_name="CONV_2D", compute_unit=api_pb.COMPUTE_UNIT_NPU, execution_time=210)
    pb.layer_details.add(name="argmax", layer_type_name="ARG_MAX", compute_unit=api_pb.COMPUTE_UNIT_CPU)
    profile = qc._profile_pb_to_python_dict(pb)
    from vitdeploy.devices.backend import LatencyRecord

    rec = apply_profile(LatencyRecord("qai-hub", "d", "android", "m.tflite", "tflite (AI Hub)", "all", None, 1,
                                      source=SOURCE_QAI_HUB), profile)
    assert rec.latencies_ms == [1.49, 1.512, 1.53] and rec.load_ms == 183.0 and rec.peak_memory_mb == 12.0
    assert rec.layers_by_unit == {"NPU": 1, "CPU": 1}
    assert qh.JobStatus(qh.JobStatus.State.SUCCESS).success
