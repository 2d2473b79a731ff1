"""AWS Device Farm backend: the flow against botocore's Stubber (every request and response checked
against the real devicefarm service model) and `responses` for the presigned upload/download URLs;
the generated test spec executed with bash against the emulated phone with the real adb client."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vitdeploy.devices.backend import (
    CANCELLED, DONE, FAILED, FINAL_STATES, SOURCE_HARNESS, DeviceRef, ProfileRequest, get_backend,
)
from vitdeploy.devices.farms import payload as pl
from vitdeploy.devices.farms import testspec
from vitdeploy.devices.protocol import HarnessRequest
from vitdeploy.errors import VitdeployError

sys.path.insert(0, str(Path(__file__).parent))
from adb_emulator import HARNESS_PACKAGE, AdbEmulator, pixel7  # noqa: E402

botocore = pytest.importorskip("botocore")
responses = pytest.importorskip("responses")
from botocore.stub import ANY, Stubber  # noqa: E402

from vitdeploy.devices.farms.aws import AwsDeviceFarm, job_url, make_client  # noqa: E402

ADB = shutil.which("adb")
ACCT = "123456789012"
PROJ_ID = "5e01a8c7-c861-4c0a-b1d5-5b6b6f7d8e9f"
PROJECT = f"arn:aws:devicefarm:us-west-2:{ACCT}:project:{PROJ_ID}"
RUN = f"arn:aws:devicefarm:us-west-2:{ACCT}:run:{PROJ_ID}/0f4c2d9e-3a5b-4c6d-8e7f-9a0b1c2d3e4f"
DEV_A = "arn:aws:devicefarm:us-west-2::device:E86BDD6A40FB4235957517589B2DA368"  # Google Pixel 7
DEV_B = "arn:aws:devicefarm:us-west-2::device:A0E0AB9F5B7E4C4A9C0C1E7C2D4B6F70"  # Samsung Galaxy S24
T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)


def _job_arn(n: int) -> str:
    return f"arn:aws:devicefarm:us-west-2:{ACCT}:job:{PROJ_ID}/0f4c2d9e-3a5b-4c6d-8e7f-9a0b1c2d3e4f/0000{n}"


def _upload_arn(n: int) -> str:
    return f"arn:aws:devicefarm:us-west-2:{ACCT}:upload:{PROJ_ID}/aa0{n}c2d9-3a5b-4c6d-8e7f-9a0b1c2d3e4f"


@pytest.fixture
def apks(tmp_path) -> list[Path]:
    out = []
    for name in ("app-debug.apk", "app-debug-androidTest.apk"):
        p = tmp_path / name
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("AndroidManifest.xml", b"\x03\x00\x08\x00")
        out.append(p)
    return out


def _request(model: Path, apks, **kw) -> ProfileRequest:
    kw = {"runs": 3, "warmup": 1, "threads": (1,), "compute_units": ("xnnpack",), "repeat": 1,
          "options": {"harness_apk": [str(a) for a in apks]}, **kw}
    return ProfileRequest(model=model, **kw)


def _devices() -> list[DeviceRef]:
    return [DeviceRef("aws", DEV_A, "Google Pixel 7", "android", "14", "Google Tensor G2", "Google"),
            DeviceRef("aws", DEV_B, "Samsung Galaxy S24", "android", "14", None, None)]


def _client():
    import botocore.session

    return botocore.session.get_session().create_client(
        "devicefarm", region_name="us-west-2", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


def _backend(client, **kw) -> AwsDeviceFarm:
    return AwsDeviceFarm(client, sleep=lambda s: None, **kw)


def _stub_submit(stub: Stubber, *, fail_upload: str | None = None, existing_project: bool = True) -> None:
    if existing_project:
        stub.add_response("list_projects", {"projects": [{"arn": PROJECT, "name": "vitdeploy"}]}, {})
    else:
        stub.add_response("list_projects", {"projects": []}, {})
        stub.add_response("create_project", {"project": {"arn": PROJECT, "name": "vitdeploy"}},
                          {"name": "vitdeploy", "defaultJobTimeoutMinutes": 60})
    kinds = ["ANDROID_APP", "INSTRUMENTATION_TEST_PACKAGE", "INSTRUMENTATION_TEST_SPEC", "EXTERNAL_DATA"]
    for n, kind in enumerate(kinds):
        url = f"https://prod-us-west-2-uploads.s3-us-west-2.amazonaws.com/upload{n}?X-Amz-Signature=abc"
        responses.put(url, status=200)
        stub.add_response("create_upload", {"upload": {"arn": _upload_arn(n), "status": "INITIALIZED", "url": url,
                                                       "type": kind}},
                          {"projectArn": PROJECT, "name": ANY, "type": kind, "contentType": "application/octet-stream"})
        stub.add_response("get_upload", {"upload": {"arn": _upload_arn(n), "status": "PROCESSING"}}, {"arn": _upload_arn(n)})
        if kind == fail_upload:
            stub.add_response("get_upload", {"upload": {"arn": _upload_arn(n), "status": "FAILED",
                                                        "metadata": "{\"errorMessage\": \"invalid APK\"}"}},
                              {"arn": _upload_arn(n)})
            return
        stub.add_response("get_upload", {"upload": {"arn": _upload_arn(n), "status": "SUCCEEDED"}}, {"arn": _upload_arn(n)})
    stub.add_response("schedule_run", {"run": {"arn": RUN, "status": "SCHEDULING"}}, {
        "projectArn": PROJECT, "appArn": _upload_arn(0), "name": ANY,
        "deviceSelectionConfiguration": {"filters": [{"attribute": "ARN", "operator": "IN", "values": [DEV_A, DEV_B]}],
                                         "maxDevices": 2},
        "test": {"type": "INSTRUMENTATION", "testPackageArn": _upload_arn(1), "testSpecArn": _upload_arn(2)},
        "configuration": {"extraDataPackageArn": _upload_arn(3)},
        "executionConfiguration": {"jobTimeoutMinutes": 60}})


def _job(n: int, dev: str, status: str, result: str = "PENDING", message: str | None = None) -> dict:
    job = {"arn": _job_arn(n), "status": status, "result": result, "created": T0,
           "device": {"arn": dev, "name": "Google Pixel 7" if dev == DEV_A else "Samsung Galaxy S24"}}
    if status not in ("PENDING", "PENDING_DEVICE", "PENDING_CONCURRENCY"):
        job["started"] = T0 + timedelta(seconds=42 + n)
    if message:
        job["message"] = message
    return job


def fake_result(hreq: dict, *, latencies=(5.0, 5.5, 6.0)) -> str:
    req = HarnessRequest.from_json(hreq)
    configs = [{"name": c["name"], "compute_unit": c["compute_unit"], "threads": c["threads"], "status": "ok",
                "load_ms": 12.0, "init_ms": 3.0, "first_inference_ms": 9.0, "latencies_ms": list(latencies)[:req.runs],
                "peak_memory_kb": 20480, "outputs": [{"file": f"{c['name']}.output0.bin", "shape": [1, 10],
                                                      "dtype": "float32"}]} for c in req.configs()]
    return json.dumps({"protocol": "vitdeploy-harness", "version": 1, "request_id": req.request_id, "status": "ok",
                       "device": {"model": "Pixel 7"}, "configs": configs})


def _artifact_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _stub_artifacts(stub: Stubber, n: int, zip_bytes: bytes | None, log: str = "") -> None:
    file_url = f"https://prod-us-west-2-results.s3-us-west-2.amazonaws.com/job{n}/customer.zip?sig=1"
    arts = [{"arn": f"arn:aws:devicefarm:us-west-2:{ACCT}:artifact:{PROJ_ID}/x/job{n}/00000", "name": "Customer Artifacts",
             "type": "CUSTOMER_ARTIFACT", "extension": "zip", "url": file_url}] if zip_bytes is not None else []
    if zip_bytes is not None:
        responses.get(file_url, body=zip_bytes)
    stub.add_response("list_artifacts", {"artifacts": arts}, {"arn": _job_arn(n), "type": "FILE"})
    log_url = f"https://prod-us-west-2-results.s3-us-west-2.amazonaws.com/job{n}/spec.txt?sig=1"
    logs = [{"arn": f"arn:aws:devicefarm:us-west-2:{ACCT}:artifact:{PROJ_ID}/x/job{n}/00001", "name": "TestSpec Output",
             "type": "TESTSPEC_OUTPUT", "extension": "txt", "url": log_url}]
    responses.get(log_url, body=log)
    stub.add_response("list_artifacts", {"artifacts": logs}, {"arn": _job_arn(n), "type": "LOG"})


TELEMETRY = ("before.cpu_khz: 1803000 1803000 2348000 2850000 \nbefore.thermal: Thermal Status: 0\n"
             "after.cpu_khz: 1197000 1197000 1803000 2000000 \nafter.thermal: Thermal Status: 1\n")


# -- the whole flow ------------------------------------------------------------------------------

@responses.activate
def test_happy_path_two_devices_one_without_result(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        _stub_submit(stub, existing_project=False)
        b = _backend(client)
        sub = b.submit(_request(tiny_tflite, apks), _devices())
        assert sub.state["run_arn"] == RUN and len(sub.state["uploads"]) == 4
        assert json.loads(json.dumps(sub.to_json()))["state"]["project_arn"] == PROJECT  # JSON-able
        stub.add_response("get_run", {"run": {"arn": RUN, "status": "PENDING_DEVICE"}}, {"arn": RUN})
        stub.add_response("list_jobs", {"jobs": [_job(1, DEV_A, "PENDING_DEVICE"), _job(2, DEV_B, "PENDING")]},
                          {"arn": RUN})
        stub.add_response("get_run", {"run": {"arn": RUN, "status": "COMPLETED", "result": "PASSED"}}, {"arn": RUN})
        stub.add_response("list_jobs", {"jobs": [_job(1, DEV_A, "COMPLETED", "PASSED"),
                                                 _job(2, DEV_B, "COMPLETED", "PASSED")]}, {"arn": RUN})
        seen = []
        while sub.status not in FINAL_STATES:  # the plain loop the farm CLI runs
            sub = b.poll(sub)
            seen.append(sub.status)
        assert seen == ["queued", "done"]
        hreq = sub.state["requests"][0]
        _stub_artifacts(stub, 1, _artifact_zip({
            "Host_Machine_Files/$DEVICEFARM_LOG_DIR/vitdeploy/result-r1.json": fake_result(hreq),
            "Host_Machine_Files/$DEVICEFARM_LOG_DIR/vitdeploy/telemetry-r1.txt": TELEMETRY}))
        _stub_artifacts(stub, 2, _artifact_zip({"Host_Machine_Files/$DEVICEFARM_LOG_DIR/vitdeploy/instrument-r1.txt": "x"}))
        records = b.collect(sub)
        stub.assert_no_pending_responses()
    good, bad = records
    assert (good.device, good.error, good.source, good.runtime) == ("Google Pixel 7", None, SOURCE_HARNESS, "tflite")
    assert good.latencies_ms == [5.0, 5.5, 6.0] and good.median_ms == 5.5 and good.threads == 1
    assert good.queue_s == 43.0 and good.url == job_url(_job_arn(1)) and "devicefarm/home" in good.url
    assert good.thermal == {"cpu_khz_before": [1803000, 1803000, 2348000, 2850000], "before": "none",
                            "cpu_khz_after": [1197000, 1197000, 1803000, 2000000], "after": "light"}
    assert good.peak_memory_mb == 20.0 and good.soc == "Google Tensor G2"
    assert bad.device == "Samsung Galaxy S24" and not bad.latencies_ms
    assert "no harness result for repeat 1" in bad.error and "\n" not in bad.error
    # What was PUT to the presigned URLs: the app, the test APK, the spec, the payload.
    puts = [c.request for c in responses.calls if c.request.method == "PUT"]
    assert len(puts) == 4 and all(p.headers["content-type"] == "application/octet-stream" for p in puts)


@responses.activate
def test_result_only_in_the_spec_log_between_markers(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        _stub_submit(stub)
        b = _backend(client)
        sub = b.submit(_request(tiny_tflite, apks), _devices()[:1] + _devices()[1:])
        stub.add_response("get_run", {"run": {"arn": RUN, "status": "COMPLETED", "result": "PASSED"}}, {"arn": RUN})
        stub.add_response("list_jobs", {"jobs": [_job(1, DEV_A, "COMPLETED", "PASSED")]}, {"arn": RUN})
        sub = b.poll(sub)
        text = fake_result(sub.state["requests"][0])
        log = f"noise\n{pl.MARK_BEGIN} r1@@\n{text}\n{pl.MARK_END} r1@@\nmore\n"
        _stub_artifacts(stub, 1, None, log=log)
        good, missing = b.collect(sub)
    assert good.error is None and good.latencies_ms == [5.0, 5.5, 6.0]
    # Device B got no job at all: the farm did not schedule it.
    assert "ran no job on this device" in missing.error


@responses.activate
def test_upload_failed_gives_one_error_per_device(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        _stub_submit(stub, fail_upload="INSTRUMENTATION_TEST_PACKAGE")
        b = _backend(client)
        sub = b.submit(_request(tiny_tflite, apks), _devices())
        stub.assert_no_pending_responses()
    assert sub.status == FAILED and "run_arn" not in sub.state
    assert b.poll(sub) is sub  # nothing to poll
    records = b.collect(sub)
    assert [r.device for r in records] == ["Google Pixel 7", "Samsung Galaxy S24"]
    assert all("rejected app-debug-androidTest.apk (INSTRUMENTATION_TEST_PACKAGE)" in r.error and "invalid APK" in r.error
               for r in records)


@responses.activate
def test_presigned_put_refused(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("list_projects", {"projects": [{"arn": PROJECT, "name": "vitdeploy"}]}, {})
        url = "https://prod-us-west-2-uploads.s3-us-west-2.amazonaws.com/upload0?X-Amz-Signature=abc"
        responses.put(url, status=403)
        stub.add_response("create_upload", {"upload": {"arn": _upload_arn(0), "url": url}},
                          {"projectArn": PROJECT, "name": ANY, "type": "ANDROID_APP", "contentType": ANY})
        sub = _backend(client).submit(_request(tiny_tflite, apks), _devices())
    assert sub.status == FAILED and "uploading app-debug.apk to AWS Device Farm failed: HTTP 403" in sub.state["error"]


@responses.activate
def test_run_errored_and_timeout(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        _stub_submit(stub)
        clock = [1000.0]
        b = AwsDeviceFarm(client, sleep=lambda s: None, clock=lambda: clock[0])
        req = _request(tiny_tflite, apks, options={"harness_apk": [str(a) for a in apks], "timeout_s": 600})
        sub = b.submit(req, _devices())
        # Still running past the limit: the run is stopped and every device says so.
        clock[0] += 601
        stub.add_response("get_run", {"run": {"arn": RUN, "status": "RUNNING"}}, {"arn": RUN})
        stub.add_response("list_jobs", {"jobs": [_job(1, DEV_A, "RUNNING"), _job(2, DEV_B, "PENDING_DEVICE")]},
                          {"arn": RUN})
        stub.add_response("stop_run", {"run": {"arn": RUN, "status": "STOPPING"}}, {"arn": RUN})
        sub = b.poll(sub)
        assert sub.status == FAILED and "timed out after 600 s (running)" in sub.state["error"]
        records = b.collect(sub)  # no artifact calls: neither job finished
        stub.assert_no_pending_responses()
    assert [r.device for r in records] == ["Google Pixel 7", "Samsung Galaxy S24"]
    assert all(r.error == "timed out after 600 s (running); the run was stopped" for r in records)
    assert records[0].queue_s == 43.0 and records[1].queue_s > 0  # B: still queued, so far


@responses.activate
def test_job_errored_keeps_the_other_device(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        _stub_submit(stub)
        b = _backend(client)
        sub = b.submit(_request(tiny_tflite, apks), _devices())
        stub.add_response("get_run", {"run": {"arn": RUN, "status": "COMPLETED", "result": "ERRORED"}}, {"arn": RUN})
        stub.add_response("list_jobs", {"jobs": [_job(1, DEV_A, "COMPLETED", "PASSED"), _job(
            2, DEV_B, "COMPLETED", "ERRORED", "There was a problem setting up the device.")]}, {"arn": RUN})
        sub = b.poll(sub)
        assert sub.status == DONE
        _stub_artifacts(stub, 1, _artifact_zip({"a/vitdeploy/result-r1.json": fake_result(sub.state["requests"][0])}))
        _stub_artifacts(stub, 2, None)
        good, bad = b.collect(sub)
    assert good.error is None
    assert bad.error == "the farm's job ERRORED: There was a problem setting up the device."


@responses.activate
def test_malformed_result_and_hostile_zip(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        _stub_submit(stub)
        b = _backend(client)
        sub = b.submit(_request(tiny_tflite, apks), _devices())
        stub.add_response("get_run", {"run": {"arn": RUN, "status": "COMPLETED", "result": "PASSED"}}, {"arn": RUN})
        stub.add_response("list_jobs", {"jobs": [_job(1, DEV_A, "COMPLETED", "PASSED"),
                                                 _job(2, DEV_B, "COMPLETED", "PASSED")]}, {"arn": RUN})
        sub = b.poll(sub)
        _stub_artifacts(stub, 1, _artifact_zip({"x/vitdeploy/result-r1.json": '{"protocol": "vitdeploy-harness", "vers'}))
        _stub_artifacts(stub, 2, _artifact_zip({"../../evil/vitdeploy/result-r1.json": fake_result(sub.state["requests"][0])}))
        bad_json, escape = b.collect(sub)
    assert bad_json.error.startswith("bad result from the harness: harness result: not valid JSON")
    assert "escapes the extraction folder" in escape.error


def test_safe_extract_refuses_links_bombs_and_absolute_paths(tmp_path):
    link = io.BytesIO()
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("vitdeploy/result-r1.json")
        info.external_attr = (0o120777) << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(pl.ArtifactError, match="symbolic link"):
        pl.safe_extract(link.getvalue(), tmp_path / "a")
    with pytest.raises(pl.ArtifactError, match="escapes"):
        pl.safe_extract(_artifact_zip({"/abs/result.json": "x"}), tmp_path / "b")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.bin", b"\0" * (2 << 20))
    with pytest.raises(pl.ArtifactError, match="budget|limit"):
        pl.safe_extract(bomb.getvalue(), tmp_path / "c", max_member=1 << 20)
    with pytest.raises(pl.ArtifactError, match="entries"):
        pl.safe_extract(_artifact_zip({f"f{i}": "x" for i in range(5)}), tmp_path / "d", max_entries=4)
    with pytest.raises(pl.ArtifactError, match="not a zip"):
        pl.safe_extract(b"<html>AccessDenied</html>", tmp_path / "e")
    assert not (tmp_path / "abs").exists() and not any((tmp_path / "a").rglob("*.json"))


def test_list_and_resolve_devices():
    client = _client()
    page1 = [{"arn": DEV_A, "name": "Google Pixel 7", "platform": "ANDROID", "os": "13", "modelId": "Pixel 7",
              "availability": "AVAILABLE"},
             {"arn": DEV_A.replace("E86", "F86"), "name": "Google Pixel 7", "platform": "ANDROID", "os": "14",
              "modelId": "Pixel 7", "availability": "HIGHLY_AVAILABLE"}]
    page2 = [{"arn": DEV_B, "name": "Samsung Galaxy S24", "platform": "ANDROID", "os": "14", "modelId": "SM-S921U",
              "availability": "BUSY"},
             {"arn": "arn:aws:devicefarm:us-west-2::device:D1E0AB9F5B7E4C4A9C0C1E7C2D4B6F71", "name": "Apple iPhone 15",
              "platform": "IOS", "os": "17.4", "modelId": "A2846"}]
    with Stubber(client) as stub:
        stub.add_response("list_devices", {"devices": page1, "nextToken": "t" * 8}, {})
        stub.add_response("list_devices", {"devices": page2}, {"nextToken": "t" * 8})
        b = _backend(client)
        android = b.list_devices("android")
        assert [(d.name, d.os, d.available) for d in android] == [
            ("Google Pixel 7", "13", True), ("Google Pixel 7", "14", True), ("Samsung Galaxy S24", "14", False)]
        assert android[0].soc == "Google Tensor G2" and android[0].vendor == "Google"
        assert b.resolve(["google pixel 7"])[0].os == "14"  # newest OS of that name
        assert b.resolve(["SM-S921U", DEV_A])[1].id == DEV_A  # model id, then ARN
        assert b.resolve(["Pixel-7"], platform="android")[0].name == "Google Pixel 7"  # loose, vendor left out
        with pytest.raises(VitdeployError, match=r"no AWS Device Farm device 'Galaxy S42'.*close matches: Samsung Galaxy S24"):
            b.resolve(["Galaxy S42"])
        assert len(b.resolve([], platform="android", max_devices=1)) == 1


# -- credentials, dry run -------------------------------------------------------------------------

def test_no_credentials_one_line(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(VitdeployError) as e:
        make_client()
    msg = str(e.value)
    assert "\n" not in msg and "AWS_PROFILE" in msg and "AWS_ACCESS_KEY_ID" in msg and "~/.aws/credentials" in msg
    with pytest.raises(VitdeployError, match="no AWS credentials"):
        get_backend("aws").list_devices()


def test_boto3_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(VitdeployError, match=r"pip install 'vitdeploy\[aws\]'"):
        make_client()


def test_dry_run_needs_no_client(tiny_tflite, apks, monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # not even importable
    b = get_backend("aws")
    plan = b.dry_run(_request(tiny_tflite, apks, repeat=2), _devices())
    assert b._client is None
    assert [u["type"] for u in plan["uploads"]] == ["ANDROID_APP", "INSTRUMENTATION_TEST_PACKAGE",
                                                     "INSTRUMENTATION_TEST_SPEC", "EXTERNAL_DATA"]
    assert all(len(u["sha256"]) == 64 and u["bytes"] > 0 for u in plan["uploads"])
    assert {m["name"] for m in plan["payload"]} == {"tiny.tflite", "input0.bin", "request-r1.json", "request-r2.json",
                                                   "SHA256SUMS"}
    assert plan["test_spec"].startswith("# vitdeploy test spec") and "am instrument -w -r -e request" in plan["test_spec"]
    assert len(testspec.phases(plan["test_spec"])["test"]) == 2 * 9  # per repeat: cool-down, telemetry, run, copy
    no_apk = b.dry_run(_request(tiny_tflite, []), _devices())
    assert no_apk["uploads"][0]["path"] is None and "--harness-apk" in no_apk["uploads"][0]["note"]
    with pytest.raises(VitdeployError, match="--harness-apk"):
        b.submit(_request(tiny_tflite, []), _devices())


# -- the generated spec, executed against the emulated phone ---------------------------------------

def _run_phases(spec: str, env: dict, cwd: Path) -> dict[str, list[subprocess.CompletedProcess]]:
    """Each command in its own bash, as Device Farm's version 0.1 runs them; a failing command stops its phase."""
    out = {}
    for phase, commands in testspec.phases(spec).items():
        out[phase] = []
        for cmd in commands:
            p = subprocess.run(["bash", "-c", cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
            out[phase].append(p)
            assert p.returncode == 0, f"{phase}: {cmd}\n{p.stdout}\n{p.stderr}"
    return out


@pytest.mark.skipif(ADB is None, reason="adb client not installed (apt-get install adb)")
@pytest.mark.parametrize("debuggable", [True, False], ids=["run-as", "adb-pull"])
def test_spec_runs_on_the_emulated_phone(tiny_tflite, apks, tmp_path, debuggable):
    from vitdeploy.devices.android import RUNNER

    req = _request(tiny_tflite, apks, threads=(1, 2), repeat=2)
    payload = pl.build_android_payload(req, tmp_path / "work")
    spec = testspec.android_spec(payload, cooldown_s=0)
    with AdbEmulator() as emu:
        dev = emu.add(pixel7("FARM7", tmp_path / "dev"))
        dev.packages.clear()  # the spec installs the harness
        dev.thermal_status = 1 if debuggable else 0
        if debuggable:
            dev.debuggable.add(HARNESS_PACKAGE)
        # What Device Farm does with the EXTERNAL_DATA zip on Android: extract it onto external storage.
        with zipfile.ZipFile(payload.outer_zip) as z:
            z.extractall(dev.root / "sdcard")
        logs = tmp_path / "logs"
        logs.mkdir()
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "ADB_SERVER_SOCKET": emu.socket_spec,
               "DEVICEFARM_DEVICE_UDID": "FARM7", "DEVICEFARM_LOG_DIR": str(logs),
               "DEVICEFARM_APP_PATH": str(apks[0]), "DEVICEFARM_TEST_PACKAGE_PATH": str(apks[1])}
        ran = _run_phases(spec, env, tmp_path)
        assert "host:kill" not in emu.log
    # The same instrumentation command line as the local backend, for each repeat's request.
    for hreq in payload.requests:
        want = f"am instrument -w -r -e request /data/local/tmp/vitdeploy/{hreq.request_id}/request.json {RUNNER}"
        assert any(s.startswith("shell,v2") and s.endswith(want) for s in emu.log)
    assert any(("run-as com.vitdeploy.harness cat" in s) for s in emu.log)
    assert any(s.startswith("sync:RECV /sdcard/Android/data/") for s in emu.log) != debuggable  # pull fallback
    # Everything pushed was cleaned up afterwards.
    assert not any((dev.root / "data/local/tmp/vitdeploy").iterdir())
    assert not (dev.root / "sdcard" / payload.inner_name).exists()
    # The log dir, zipped as Device Farm returns it, parses into records with the collect-side code.
    art = io.BytesIO()
    with zipfile.ZipFile(art, "w") as z:
        for f in logs.rglob("*"):
            if f.is_file():
                z.write(f, "Host_Machine_Files/$DEVICEFARM_LOG_DIR/" + f.relative_to(logs).as_posix())
    files = pl.safe_extract(art.getvalue(), tmp_path / "collected")
    device = DeviceRef("aws", DEV_A, "Google Pixel 7", "android", "14", "Google Tensor G2", "Google")
    records = []
    for k, hreq in enumerate(payload.requests, start=1):
        text = pl.find_named(files, f"result-r{k}.json").read_text()
        thermal = pl.parse_telemetry(pl.find_named(files, f"telemetry-r{k}.txt").read_text())
        records += pl.records_from_result(text, hreq, backend="aws", device=device, repeat=k, thermal=thermal)
    assert [(r.compute_units, r.threads, r.repeat, r.error) for r in records] == [
        ("xnnpack", 1, 1, None), ("xnnpack", 2, 1, None), ("xnnpack", 1, 2, None), ("xnnpack", 2, 2, None)]
    assert all(len(r.latencies_ms) == 3 and r.median_ms > 0 for r in records)
    status = "light" if debuggable else "none"
    assert records[0].thermal == {"cpu_khz_before": [1803000] * 4 + [2348000] * 2 + [2850000] * 2, "before": status,
                                  "cpu_khz_after": [1803000] * 4 + [2348000] * 2 + [2850000] * 2, "after": status}
    # The fallback copy between marker lines in the spec's own output parses too.
    stdout = "".join(p.stdout for p in ran["test"])
    assert pl.records_from_result(pl.between_markers(stdout, "r2"), payload.requests[1], backend="aws", device=device,
                                  repeat=2)[0].error is None



@responses.activate
def test_cancel_stops_the_run(tiny_tflite, apks):
    client = _client()
    with Stubber(client) as stub:
        _stub_submit(stub)
        b = _backend(client)
        sub = b.submit(_request(tiny_tflite, apks), _devices())
        stub.add_response("stop_run", {"run": {"arn": RUN, "status": "STOPPING"}}, {"arn": RUN})
        b.cancel(sub)
        stub.assert_no_pending_responses()
    assert sub.status == CANCELLED and b.poll(sub) is sub


def test_cli_dry_run_shows_uploads_and_the_spec_without_credentials(tiny_tflite, apks, tmp_path, monkeypatch):
    """`vitdeploy profile M --farm aws --devices ... --dry-run`: no boto3 client, no credentials; the devices are
    taken by name, the uploads (with the user's harness APKs) and the generated spec are printed."""
    from click.testing import CliRunner

    from vitdeploy.cli import main

    monkeypatch.setitem(sys.modules, "boto3", None)
    for var in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    args = ["profile", str(tiny_tflite), "--farm", "aws", "--devices", "Google Pixel 7,Samsung Galaxy S24",
            "--dry-run", "--json", "--state-dir", str(tmp_path / "state"),
            *[x for a in apks for x in ("--harness-apk", str(a))]]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)["dry_run"][0]
    assert [d["name"] for d in plan["devices"]] == ["Google Pixel 7", "Samsung Galaxy S24"]
    # The S24 ships with Exynos or Snapdragon by region: without a model code its SoC vendor stays unknown.
    assert [d["vendor"] for d in plan["devices"]] == ["Google", None]
    assert [u["path"] for u in plan["uploads"][:2]] == [str(a) for a in apks]
    assert "am instrument" in plan["test_spec"]
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.json"))


# -- iOS (issue 26): NOT run on a Mac or a farm; the request shapes, the generated files and the parser --------

IOS_DEV = "arn:aws:devicefarm:us-west-2::device:352FDCFAA36C43AD8ABBF3DD2F5B8E6E"  # Apple iPhone 15
IOS_BUNDLE = "com.example.vitdeploy-harness"


def _ios_devices() -> list[DeviceRef]:
    return [DeviceRef("aws", IOS_DEV, "Apple iPhone 15", "ios", "17.4", "A16 Bionic", "Apple")]


@pytest.fixture
def fake_mlpackage(tmp_path, monkeypatch) -> Path:
    """An .mlpackage tree (no coremltools here: its first input is given as a 1x3x8x8 multi-array)."""
    from vitdeploy.devices import ios

    pkg = tmp_path / "tiny.mlpackage"
    (pkg / "Data" / "com.apple.CoreML" / "weights").mkdir(parents=True)
    (pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08\x07fake-spec")
    (pkg / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(b"\0" * 64)
    (pkg / "Manifest.json").write_text(json.dumps({
        "fileFormatVersion": "1.0.0", "rootModelIdentifier": "A1",
        "itemInfoEntries": {"A1": {"author": "com.apple.CoreML", "name": "model.mlmodel",
                                   "path": "com.apple.CoreML/model.mlmodel"},
                            "A2": {"author": "com.apple.CoreML", "name": "weights",
                                   "path": "com.apple.CoreML/weights"}}}))
    monkeypatch.setattr(ios, "_first_input", lambda model, a, s: {"name": "x", "kind": "multiArray", "shape": [1, 3, 8, 8]})
    return pkg


@pytest.fixture
def fake_pte(tmp_path, monkeypatch) -> Path:
    """A .pte file whose delegates and input shape are given (no executorch export here)."""
    from vitdeploy.devices import ios

    pte = tmp_path / "tiny.pte"
    pte.write_bytes(b"\0" * 32)
    monkeypatch.setattr(ios, "pte_units", lambda model, units: (list(units or ["cpu"]), [1, 8, 8, 3]))
    return pte


def _xctestrun_doc(host: str = "__TESTROOT__/Debug-iphoneos/VitdeployHarness.app") -> dict:
    """What `xcodebuild build-for-testing` writes (FormatVersion 2), trimmed to the keys that matter here."""
    return {"__xctestrun_metadata__": {"FormatVersion": 2, "ContainerInfo": {"ContainerName": "VitdeployHarness"}},
            "CodeCoverageBuildableInfos": [],
            "TestConfigurations": [{"Name": "Test Scheme Action", "TestTargets": [{
                "BlueprintName": "VitdeployHarnessTests", "TestHostPath": host,
                "TestBundlePath": "__TESTHOST__/PlugIns/VitdeployHarnessTests.xctest",
                "EnvironmentVariables": {"OS_ACTIVITY_DT_MODE": "YES"},
                "TestingEnvironmentVariables": {"DYLD_INSERT_LIBRARIES": "__TESTHOST__/Frameworks/libXCTestBundleInject.dylib",
                                                "XCInjectBundleInto": "unused"},
                "IsAppHostedTestBundle": True, "ProductModuleName": "VitdeployHarnessTests"}]}],
            "TestPlan": {"IsDefault": True, "Name": "VitdeployHarness"}}


@pytest.fixture
def ios_build(tmp_path) -> dict:
    """The two files the user builds once (docs/farms.md): the harness .ipa and the .xctestrun."""
    import plistlib

    ipa = tmp_path / "VitdeployHarness.ipa"
    with zipfile.ZipFile(ipa, "w") as z:
        app = "Payload/VitdeployHarness.app"
        z.writestr(f"{app}/Info.plist", plistlib.dumps({"CFBundleIdentifier": IOS_BUNDLE,
                                                        "CFBundleExecutable": "VitdeployHarness"}, fmt=plistlib.FMT_BINARY))
        z.writestr(f"{app}/VitdeployHarness", b"\xcf\xfa\xed\xfe")
        z.writestr(f"{app}/PlugIns/VitdeployHarnessTests.xctest/Info.plist", plistlib.dumps({"CFBundleIdentifier": "t"}))
    run = tmp_path / "VitdeployHarness_VitdeployHarness_iphoneos17.4-arm64.xctestrun"
    run.write_bytes(plistlib.dumps(_xctestrun_doc()))
    return {"harness_ipa": str(ipa), "xctestrun": str(run)}


def _ios_request(model: Path, options: dict, **kw) -> ProfileRequest:
    kw = {"runs": 3, "warmup": 1, "threads": (1,), "repeat": 1, "options": options, **kw}
    return ProfileRequest(model=model, **kw)


IOS_KINDS = ["IOS_APP", "APPIUM_NODE_TEST_PACKAGE", "APPIUM_NODE_TEST_SPEC"]


def _stub_submit_ios(stub: Stubber) -> None:
    import gzip

    model = json.loads(gzip.open(next(Path(botocore.__file__).parent.glob("data/devicefarm/*/service-2.json.gz"))).read())
    assert set(IOS_KINDS) <= set(model["shapes"]["UploadType"]["enum"])  # the types exist in the service model
    assert "XCTEST_TEST_SPEC" not in model["shapes"]["UploadType"]["enum"]  # why not XCTEST: no spec type for it
    stub.add_response("list_projects", {"projects": [{"arn": PROJECT, "name": "vitdeploy"}]}, {})
    for n, kind in enumerate(IOS_KINDS):
        url = f"https://prod-us-west-2-uploads.s3-us-west-2.amazonaws.com/upload{n}?X-Amz-Signature=abc"
        responses.put(url, status=200)
        stub.add_response("create_upload", {"upload": {"arn": _upload_arn(n), "status": "INITIALIZED", "url": url,
                                                       "type": kind}},
                          {"projectArn": PROJECT, "name": ANY, "type": kind, "contentType": "application/octet-stream"})
        stub.add_response("get_upload", {"upload": {"arn": _upload_arn(n), "status": "SUCCEEDED"}}, {"arn": _upload_arn(n)})
    stub.add_response("schedule_run", {"run": {"arn": RUN, "status": "SCHEDULING"}}, {
        "projectArn": PROJECT, "appArn": _upload_arn(0), "name": ANY,
        "deviceSelectionConfiguration": {"filters": [{"attribute": "ARN", "operator": "IN", "values": [IOS_DEV]}],
                                         "maxDevices": 1},
        "test": {"type": "APPIUM_NODE", "testPackageArn": _upload_arn(1), "testSpecArn": _upload_arn(2)},
        "executionConfiguration": {"jobTimeoutMinutes": 60}})  # no extraDataPackageArn: the payload is in the test package


def _recording(b: AwsDeviceFarm) -> dict:
    """What each upload carried, by upload type."""
    sent, upload = {}, b._upload

    def record(project_arn, kind, path):
        sent[kind] = (Path(path).name, Path(path).read_bytes())
        return upload(project_arn, kind, path)

    b._upload = record
    return sent


def fake_ios_result(hreq: dict, latencies=(4.0, 4.5, 5.0)) -> str:
    req = HarnessRequest.from_json(hreq)
    configs = [{"name": c["name"], "compute_unit": c["compute_unit"], "threads": c["threads"], "status": "ok",
                "error": None, "load_ms": 30.0, "init_ms": 8.0, "first_inference_ms": 9.0,
                "latencies_ms": list(latencies)[:req.runs], "peak_memory_kb": 40960,
                "outputs": [{"file": f"{c['name']}.output0.bin", "shape": [1, 10], "dtype": "float32"}]}
               for c in req.configs()]
    return json.dumps({"protocol": "vitdeploy-harness", "version": 1, "request_id": req.request_id, "status": "ok",
                       "error": None, "device": {"platform": "ios", "model": "iPhone15,4"}, "configs": configs},
                      sort_keys=True)


@responses.activate
@pytest.mark.parametrize("kind", ["mlpackage", "pte"])
def test_ios_happy_path(kind, fake_mlpackage, fake_pte, ios_build):
    """Submit (IOS_APP + the test package + the spec, checked against the service model), poll, collect the
    result the harness printed between the markers in xcodebuild's output (only in the spec's log)."""
    import plistlib

    import yaml

    model = fake_mlpackage if kind == "mlpackage" else fake_pte
    units = ("cpuAndNeuralEngine", "all") if kind == "mlpackage" else ("cpu",)
    client = _client()
    with Stubber(client) as stub:
        _stub_submit_ios(stub)
        b = _backend(client, cooldown_s=0)
        sent = _recording(b)
        sub = b.submit(_ios_request(model, ios_build, compute_units=units, repeat=2), _ios_devices())
        assert sorted(sent) == sorted(IOS_KINDS) and sub.state["platform"] == "ios"
        assert sent["IOS_APP"][1] == Path(ios_build["harness_ipa"]).read_bytes()
        hreqs = sub.state["requests"]
        assert [r["request_id"] for r in hreqs] == [f"{sub.state['base_id']}-r1", f"{sub.state['base_id']}-r2"]
        assert {r["platform"] for r in hreqs} == {"ios"} and hreqs[0]["compute_units"] == list(units)
        assert hreqs[0]["output_dir"] == f"Documents/vitdeploy/{hreqs[0]['request_id']}" and hreqs[0]["threads"] == [1]

        # The test package: one rewritten .xctestrun per repeat, the payload beside them, checked by sums.
        pkg = zipfile.ZipFile(io.BytesIO(sent["APPIUM_NODE_TEST_PACKAGE"][1]))
        names = pkg.namelist()
        assert "vitdeploy-r1.xctestrun" in names and "vitdeploy-r2.xctestrun" in names
        for k in (1, 2):
            doc = plistlib.loads(pkg.read(f"vitdeploy-r{k}.xctestrun"))
            target = doc["TestConfigurations"][0]["TestTargets"][0]
            for key in ("EnvironmentVariables", "TestingEnvironmentVariables"):
                assert target[key]["VITDEPLOY_REQUEST"] == f"__TESTHOST__/vitdeploy/request-r{k}.json"
                assert target[key]["VITDEPLOY_RESULT_TAG"] == f"r{k}"
            assert target["TestingEnvironmentVariables"]["DYLD_INSERT_LIBRARIES"].endswith("libXCTestBundleInject.dylib")
            assert target["TestHostPath"] == "__TESTROOT__/Debug-iphoneos/VitdeployHarness.app"  # the rest untouched
            assert json.loads(pkg.read(f"vitdeploy-payload/request-r{k}.json")) == hreqs[k - 1]
        model_files = ({"vitdeploy-payload/tiny.mlpackage/Manifest.json",
                        "vitdeploy-payload/tiny.mlpackage/Data/com.apple.CoreML/model.mlmodel",
                        "vitdeploy-payload/tiny.mlpackage/Data/com.apple.CoreML/weights/weight.bin"}
                       if kind == "mlpackage" else {"vitdeploy-payload/tiny.pte"})
        assert model_files <= set(names) and "vitdeploy-payload/input0.bin" in names
        sums = pkg.read("vitdeploy-payload/SHA256SUMS").decode().splitlines()
        assert sorted(line.split("  ", 1)[1] for line in sums) == sorted(
            n[len("vitdeploy-payload/"):] for n in names if n.startswith("vitdeploy-payload/") and not n.endswith("SHA256SUMS"))

        # The spec: copy the payload into the farm's app, then xcodebuild test-without-building per repeat.
        spec = sent["APPIUM_NODE_TEST_SPEC"][1].decode()
        doc = yaml.safe_load(spec)
        assert doc["version"] == 0.1 and "ios_test_host" in doc and doc["artifacts"] == ["$DEVICEFARM_LOG_DIR"]
        ph = testspec.phases(spec)
        pre = "\n".join(ph["pre_test"])
        assert 'unzip -o -q "$DEVICEFARM_APP_PATH"' in pre and "shasum -a 256 -c SHA256SUMS" in pre
        assert "Payload/VitdeployHarness.app/vitdeploy/" in pre
        assert '"$DEVICEFARM_TEST_PACKAGE_PATH"/Debug-iphoneos/VitdeployHarness.app' in pre
        runs = [c for c in ph["test"] if c.startswith("xcodebuild ")]
        assert len(runs) == 2
        for k, cmd in enumerate(runs, start=1):
            assert cmd.startswith(f'xcodebuild test-without-building -xctestrun "$DEVICEFARM_TEST_PACKAGE_PATH"/vitdeploy-r{k}.xctestrun '
                                  '-destination id="$DEVICEFARM_DEVICE_UDID" '
                                  "-only-testing:VitdeployHarnessTests/HarnessBenchmarkTests/testRunRequest")
        assert any(f"--domain-identifier {IOS_BUNDLE}" in c for c in ph["test"])  # read from the .ipa's Info.plist

        stub.add_response("get_run", {"run": {"arn": RUN, "status": "COMPLETED", "result": "PASSED"}}, {"arn": RUN})
        stub.add_response("list_jobs", {"jobs": [{**_job(1, IOS_DEV, "COMPLETED", "PASSED"),
                                                  "device": {"arn": IOS_DEV, "name": "Apple iPhone 15"}}]}, {"arn": RUN})
        sub = b.poll(sub)
        assert sub.status == DONE
        # Repeat 1: the customer artifact's result file; repeat 2: only what xcodebuild echoed into the spec log.
        log = ("Test Case '-[VitdeployHarnessTests.HarnessBenchmarkTests testRunRequest]' started.\n"
               f"@@VITDEPLOY-RESULT-BEGIN r2@@\n{fake_ios_result(hreqs[1], (6.0, 6.5, 7.0))}\n@@VITDEPLOY-RESULT-END r2@@\n"
               "Test Case '-[VitdeployHarnessTests.HarnessBenchmarkTests testRunRequest]' passed (2.1 seconds).\n")
        _stub_artifacts(stub, 1, _artifact_zip({
            "Host_Machine_Files/$DEVICEFARM_LOG_DIR/vitdeploy/result-r1.json": fake_ios_result(hreqs[0])}), log=log)
        records = b.collect(sub)
    runtime = "coreml" if kind == "mlpackage" else "executorch"
    assert [(r.repeat, r.compute_units) for r in records] == [(k, u) for k in (1, 2) for u in units]
    for r in records:
        assert (r.platform, r.runtime, r.model, r.source, r.error) == ("ios", runtime, model.name, SOURCE_HARNESS, None)
        assert r.device == "Apple iPhone 15" and r.vendor == "Apple" and r.queue_s == 43
        assert r.latencies_ms == ([4.0, 4.5, 5.0] if r.repeat == 1 else [6.0, 6.5, 7.0])
        assert r.peak_memory_mb == 40 and r.thermal is None


# A stand-in for `xcodebuild test-without-building` on the farm's Mac: it does what the harness XCTest does
# with the files (ios_harness/VitdeployHarnessTests/HarnessBenchmarkTests.swift), no phone: reads the
# .xctestrun, finds the host app where TestHostPath puts it (__TESTROOT__ = the .xctestrun's folder), resolves
# VITDEPLOY_REQUEST's __TESTHOST__/ against that app, opens the request and its model and input, and prints
# the result between the markers tagged VITDEPLOY_RESULT_TAG, among xcodebuild-like lines.
FAKE_XCODEBUILD = r'''
import json, os, plistlib, sys
sys.path.insert(0, os.environ["FAKE_TESTS_DIR"])
from test_farm_aws import fake_ios_result
args = sys.argv[1:]
assert args[0] == "test-without-building", args
run = args[args.index("-xctestrun") + 1]
assert args[args.index("-destination") + 1] == "id=" + os.environ["DEVICEFARM_DEVICE_UDID"], args
doc = plistlib.load(open(run, "rb"))
target = doc["TestConfigurations"][0]["TestTargets"][0]
host = target["TestHostPath"].replace("__TESTROOT__", os.path.dirname(run))
env = target["EnvironmentVariables"]
request = env["VITDEPLOY_REQUEST"].replace("__TESTHOST__", host)
req = json.load(open(request))
folder = os.path.dirname(request)
assert os.path.exists(os.path.join(folder, req["model"])), os.listdir(folder)
for t in req["inputs"]:
    assert os.path.getsize(os.path.join(folder, t["file"])) > 0
assert os.path.isfile(os.path.join(host, "Info.plist"))  # the farm's app, not one of ours
tag = env["VITDEPLOY_RESULT_TAG"]
print("Testing started")
print("Test Case '-[VitdeployHarnessTests.HarnessBenchmarkTests testRunRequest]' started.")
print(f"@@VITDEPLOY-RESULT-BEGIN {tag}@@\n{fake_ios_result(req)}\n@@VITDEPLOY-RESULT-END {tag}@@")
print("** TEST EXECUTE SUCCEEDED **")
'''


@pytest.mark.skipif(not (shutil.which("unzip") and shutil.which("shasum") and shutil.which("awk")),
                    reason="unzip, shasum and awk are needed to run the iOS spec's commands")
def test_ios_spec_phases_run_with_a_stand_in_xcodebuild(fake_mlpackage, fake_pte, ios_build, tmp_path):
    """The generated iOS spec, phase by phase with bash, as Device Farm's host would run it: the test package
    extracted at $DEVICEFARM_TEST_PACKAGE_PATH, the farm's .ipa at $DEVICEFARM_APP_PATH; the payload must land in
    the app where the rewritten .xctestrun sends the harness, and the log folder must parse into records."""
    b = AwsDeviceFarm(client=None, cooldown_s=0)
    req = _ios_request(fake_mlpackage, ios_build, compute_units=("all",), repeat=2)
    prep = b._prepare(req, _ios_devices(), tmp_path / "work")
    uploads = {kind: Path(path) for _, kind, path in prep["uploads"]}
    pkg_dir, log_dir, bin_dir = tmp_path / "farm" / "test-package", tmp_path / "farm" / "logs", tmp_path / "bin"
    with zipfile.ZipFile(uploads["APPIUM_NODE_TEST_PACKAGE"]) as z:
        z.extractall(pkg_dir)
    bin_dir.mkdir()
    (bin_dir / "xcodebuild").write_text(f"#!{sys.executable}\n{FAKE_XCODEBUILD}")
    (bin_dir / "xcrun").write_text("#!/bin/sh\necho \"xcrun: $*: not here\" >&2\nexit 1\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_TESTS_DIR": str(Path(__file__).parent),
           "DEVICEFARM_DEVICE_UDID": "00008120-001A2B3C4D5E6F70", "DEVICEFARM_LOG_DIR": str(log_dir),
           "DEVICEFARM_APP_PATH": str(uploads["IOS_APP"]), "DEVICEFARM_TEST_PACKAGE_PATH": str(pkg_dir)}
    done = _run_phases(prep["spec"], env, tmp_path)
    for phase in ("install", "pre_test"):
        for p in done[phase]:
            assert p.returncode == 0, (phase, p.args, p.stdout, p.stderr)
    assert (pkg_dir / "Debug-iphoneos" / "VitdeployHarness.app" / "vitdeploy" / "tiny.mlpackage" / "Manifest.json").is_file()
    assert (pkg_dir / "Debug-iphoneos" / "VitdeployHarness.app" / "PlugIns" / "VitdeployHarnessTests.xctest").is_dir()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # the customer artifact: the log folder, zipped
        for f in sorted(log_dir.rglob("*")):
            if f.is_file():
                z.write(f, f"Host_Machine_Files/$DEVICEFARM_LOG_DIR/{f.relative_to(log_dir)}")
    files = pl.safe_extract(buf.getvalue(), tmp_path / "collected")
    log_text = "".join(p.stdout for p in done["test"])
    for k, hreq in enumerate(prep["requests"], start=1):
        res = pl.find_named(files, f"result-r{k}.json")
        assert res is not None and json.loads(res.read_text())["request_id"] == hreq.request_id
        for text in (res.read_text(), pl.between_markers(log_text, f"r{k}")):
            recs = pl.records_from_result(text, hreq, backend="aws", device=_ios_devices()[0], repeat=k)
            assert [(r.platform, r.runtime, r.compute_units, r.error) for r in recs] == [("ios", "coreml", "all", None)]
    assert not Path(f"/tmp/vitdeploy-{prep['payload'].base_id}").exists()  # post_test cleaned up


def test_ios_needs_the_ipa_and_the_xctestrun(fake_mlpackage, ios_build, tmp_path):
    client = _client()
    with Stubber(client):  # nothing may be called: the check comes before any request
        b = _backend(client)
        for options in ({}, {"harness_ipa": ios_build["harness_ipa"]}, {"xctestrun": ios_build["xctestrun"]}):
            with pytest.raises(VitdeployError) as e:
                b.submit(_ios_request(fake_mlpackage, options), _ios_devices())
            msg = str(e.value)
            assert "\n" not in msg and ".ipa" in msg and ".xctestrun" in msg and "--harness-apk" in msg
    plan = AwsDeviceFarm(client=None).dry_run(_ios_request(fake_mlpackage, {}), _ios_devices())
    assert [u["type"] for u in plan["uploads"]] == IOS_KINDS
    assert all("xctestrun" in u["note"] for u in plan["uploads"][:2]) and "sha256" in plan["uploads"][2]
    assert "xcodebuild test-without-building" in plan["test_spec"]


def test_ios_bad_xctestrun_or_ipa_is_one_line(fake_mlpackage, ios_build, tmp_path):
    import plistlib

    b = AwsDeviceFarm(client=None)

    def plan(**options):
        return b.dry_run(_ios_request(fake_mlpackage, {**ios_build, **options}), _ios_devices())

    cases = []
    (tmp_path / "junk.xctestrun").write_text("not a plist")
    cases.append(({"xctestrun": str(tmp_path / "junk.xctestrun")}, r"\.xctestrun junk\.xctestrun: not a property list"))
    doc = _xctestrun_doc()
    doc["TestConfigurations"][0]["TestTargets"][0]["BlueprintName"] = "OtherTests"
    doc["TestConfigurations"][0]["TestTargets"][0]["TestBundlePath"] = "__TESTHOST__/PlugIns/OtherTests.xctest"
    (tmp_path / "other.xctestrun").write_bytes(plistlib.dumps(doc))
    cases.append(({"xctestrun": str(tmp_path / "other.xctestrun")}, "no VitdeployHarnessTests test target"))
    (tmp_path / "escape.xctestrun").write_bytes(plistlib.dumps(_xctestrun_doc("__TESTROOT__/../../x.app")))
    cases.append(({"xctestrun": str(tmp_path / "escape.xctestrun")}, "is not an app under __TESTROOT__/"))
    cases.append(({"xctestrun": str(tmp_path / "gone.xctestrun")}, r"\.xctestrun not found"))
    with zipfile.ZipFile(tmp_path / "two.zip", "w") as z:
        z.writestr("a.xctestrun", b"")
        z.writestr("b.xctestrun", b"")
    cases.append(({"xctestrun": str(tmp_path / "two.zip")}, "holds 2 .xctestrun files"))
    with zipfile.ZipFile(tmp_path / "other.ipa", "w") as z:
        z.writestr("Payload/Other.app/Info.plist", b"")
    cases.append(({"harness_ipa": str(tmp_path / "other.ipa")}, r"no Payload/VitdeployHarness\.app in it \(has: Other\.app\)"))
    (tmp_path / "flat.ipa").write_text("not a zip")
    cases.append(({"harness_ipa": str(tmp_path / "flat.ipa")}, r"not an \.ipa"))
    for options, pattern in cases:
        with pytest.raises(VitdeployError, match=pattern) as e:
            plan(**options)
        assert "\n" not in str(e.value)
    # A zip of Build/Products is taken as well as the bare .xctestrun.
    with zipfile.ZipFile(tmp_path / "products.zip", "w") as z:
        z.write(ios_build["xctestrun"], "Build/Products/VitdeployHarness_iphoneos17.4-arm64.xctestrun")
    assert "vitdeploy-r1.xctestrun" in plan(xctestrun=str(tmp_path / "products.zip"))["test_spec"]


def test_ios_refuses_a_tflite_and_unknown_units(fake_mlpackage, ios_build, tmp_path):
    b = AwsDeviceFarm(client=None)
    tfl = tmp_path / "m.tflite"
    tfl.write_bytes(b"\0")
    with pytest.raises(VitdeployError, match=r"an iOS farm run takes an \.mlpackage directory or a \.pte file"):
        b.dry_run(_ios_request(tfl, ios_build), _ios_devices())
    with pytest.raises(VitdeployError, match="unknown iOS compute unit 'xnnpack'"):
        b.dry_run(_ios_request(fake_mlpackage, ios_build, compute_units=("xnnpack",)), _ios_devices())
    with pytest.raises(VitdeployError, match="one AWS Device Farm run takes one platform"):
        b.dry_run(_ios_request(fake_mlpackage, ios_build), _ios_devices() + _devices()[:1])


def test_cli_ios_dry_run_and_a_bad_xctestrun(fake_mlpackage, ios_build, tmp_path, monkeypatch):
    """`vitdeploy profile M.mlpackage --farm aws --harness-apk H.ipa --harness-apk H.xctestrun --dry-run`: the CLI
    sorts the files into options harness_ipa / xctestrun; a damaged .xctestrun is one line and exit 2."""
    from click.testing import CliRunner

    from vitdeploy.cli import main

    monkeypatch.setitem(sys.modules, "boto3", None)
    base = ["profile", str(fake_mlpackage), "--farm", "aws", "--devices", "Apple iPhone 15", "--dry-run", "--json",
            "--state-dir", str(tmp_path / "state"), "--compute-units", "cpuAndNeuralEngine"]
    result = CliRunner().invoke(main, [*base, "--harness-apk", ios_build["harness_ipa"],
                                       "--harness-apk", ios_build["xctestrun"]], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)["dry_run"][0]
    assert plan["platform"] == "ios" and [u["type"] for u in plan["uploads"]] == IOS_KINDS
    assert plan["uploads"][0]["path"] == ios_build["harness_ipa"] and all("sha256" in u for u in plan["uploads"])
    assert plan["requests"][0]["compute_units"] == ["cpuAndNeuralEngine"]
    bad = tmp_path / "bad.xctestrun"
    bad.write_text("<plist><dict><key>x</key>")
    result = CliRunner().invoke(main, [*base, "--harness-apk", f"{ios_build['harness_ipa']},{bad}"])
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0
    assert "bad.xctestrun: not a property list" in result.stderr
