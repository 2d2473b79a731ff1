"""AWS Device Farm: our harness app on farm phones, driven by a generated test spec (backend "aws").

submit: project "vitdeploy" (found or created), uploads (Android: harness APK, test APK, the generated
test spec, the payload as EXTERNAL_DATA; iOS: harness .ipa, a test package holding the rewritten .xctestrun
and the payload (farms/xctest.py), the generated test spec), each PUT to its presigned URL
and polled until the farm has processed it, then ``schedule_run`` on the devices' ARNs; it returns at
once. poll: ``get_run`` + ``list_jobs`` (queue seconds = a job's ``started`` - ``created``). collect:
each job's customer artifact zip (extracted with a budget: it is untrusted), the result JSON in it (or
printed between marker lines in the spec's log), parsed with the harness protocol. A device that did
not report gets one error record; those that did are kept. No waiters exist for this service: the
caller loops ``poll`` (backend.FINAL_STATES), we back off only while waiting for uploads.

boto3 is imported lazily; a client can be injected (tests use botocore's Stubber on a real client).
"""

from __future__ import annotations

import difflib
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from vitdeploy.devices.backend import (
    CANCELLED, DONE, FAILED, FINAL_STATES, QUEUED, RUNNING, DeviceRef, LatencyRecord, ProfileRequest, Submission,
    register_backend,
)
from vitdeploy.devices.farms import payload as pl
from vitdeploy.devices.farms import testspec, xctest
from vitdeploy.devices.protocol import HarnessRequest, ProtocolError
from vitdeploy.errors import VitdeployError

REGION = "us-west-2"  # the only region Device Farm runs in
PROJECT_NAME = "vitdeploy"
RUN_QUEUED = ("PENDING", "PENDING_CONCURRENCY", "PENDING_DEVICE", "PROCESSING", "SCHEDULING")
RUN_RUNNING = ("PREPARING", "RUNNING", "STOPPING")
UPLOAD_TYPES = {
    "android": {"app": "ANDROID_APP", "tests": "INSTRUMENTATION_TEST_PACKAGE", "spec": "INSTRUMENTATION_TEST_SPEC",
                "test_type": "INSTRUMENTATION"},
    # pytorch/test-infra runs an .xctestrun zip this way: an Appium Node package + spec in custom mode. The
    # service model has no XCTEST_TEST_SPEC (only XCTEST_UI_TEST_SPEC), so XCTEST_TEST_PACKAGE cannot take a
    # spec that calls `xcodebuild test-without-building` (farms/xctest.py).
    "ios": {"app": "IOS_APP", "tests": "APPIUM_NODE_TEST_PACKAGE", "spec": "APPIUM_NODE_TEST_SPEC",
            "test_type": "APPIUM_NODE"},
}
MAX_ARTIFACT_BYTES = 256 << 20
# The devicefarm:* actions this module calls (docs/farms.md lists them as the least IAM policy).
IAM_ACTIONS = ("devicefarm:ListProjects", "devicefarm:CreateProject", "devicefarm:CreateUpload",
               "devicefarm:GetUpload", "devicefarm:ScheduleRun", "devicefarm:GetRun", "devicefarm:ListJobs",
               "devicefarm:ListArtifacts", "devicefarm:ListDevices", "devicefarm:StopRun")


def _credentials_message() -> str:
    return ("no AWS credentials found: set AWS_PROFILE (a profile in ~/.aws/config), or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or write ~/.aws/credentials (`aws configure`)")


def make_client(region: str = REGION):
    """A boto3 devicefarm client, or one line saying what is missing (boto3 or credentials)."""
    try:
        import boto3
    except ImportError:
        raise VitdeployError("AWS Device Farm needs boto3: pip install 'vitdeploy[aws]'") from None
    session = boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise VitdeployError(_credentials_message())
    return session.client("devicefarm", region_name=region)


def soc_of(name: str) -> tuple[str | None, str | None]:
    """(SoC, vendor) of a farm device name from the catalog, else (None, None)."""
    from vitdeploy.devices import catalog

    for fn_name in ("match_farm", "farm_device", "lookup_farm"):  # the catalog may learn farm names
        fn = getattr(catalog, fn_name, None)
        if callable(fn):
            spec = fn(name)
            break
    else:
        spec = catalog.lookup(name)
    return (spec.soc, vendor_of(spec.soc)) if spec else (None, None)


def vendor_of(soc: str | None) -> str | None:
    if not soc:
        return None
    for key, vendor in (("Snapdragon", "Qualcomm"), ("Exynos", "Samsung"), ("Tensor", "Google"),
                        ("Dimensity", "MediaTek"), ("Helio", "MediaTek")):
        if key in soc:
            return vendor
    return "Apple" if re.match(r"^[AM]\d", soc) else None


def job_url(job_arn: str, region: str = REGION) -> str | None:
    """The console page of a job (arn:aws:devicefarm:REGION:ACCOUNT:job:PROJECT/RUN/JOB)."""
    m = re.match(r"^arn:aws:devicefarm:[^:]*:\d*:job:([^/]+)/([^/]+)/([^/]+)$", job_arn or "")
    if not m:
        return None
    p, r, j = m.groups()
    return f"https://{region}.console.aws.amazon.com/devicefarm/home?region={region}#/mobile/projects/{p}/runs/{r}/jobs/{j}"


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _now(like) -> datetime | None:
    return datetime.now(tz=like.tzinfo) if isinstance(like, datetime) else None


def _secs(a, b) -> float | None:
    if isinstance(a, datetime) and isinstance(b, datetime):
        return max(0.0, (b - a).total_seconds())
    return None


@register_backend("aws")
class AwsDeviceFarm:
    name = "aws"
    remote = True

    def __init__(self, client=None, *, region: str = REGION, http=None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, upload_timeout_s: float = 900, job_timeout_min: int = 60,
                 cooldown_s: int = testspec.DEFAULT_COOLDOWN_S, project_name: str = PROJECT_NAME) -> None:
        self._client = client
        self.region = region
        self._http = http
        self.sleep, self.clock = sleep, clock
        self.upload_timeout_s = upload_timeout_s
        self.job_timeout_min = job_timeout_min
        self.cooldown_s = cooldown_s
        self.project_name = project_name
        self._devices: list[dict] | None = None

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.region)
        return self._client

    @property
    def http(self):
        if self._http is None:
            import requests

            self._http = requests
        return self._http

    def _call(self, op: str, **kw) -> dict:
        """One API call; credential and service errors become one line."""
        try:
            return getattr(self.client, op)(**kw)
        except VitdeployError:
            raise
        except Exception as e:  # botocore's exceptions, without importing botocore at module level
            kind = type(e).__name__
            if kind in ("NoCredentialsError", "PartialCredentialsError"):
                raise VitdeployError(_credentials_message()) from None
            msg = getattr(e, "response", {}).get("Error", {}).get("Message") if hasattr(e, "response") else None
            raise VitdeployError(f"AWS Device Farm {op} failed: {msg or str(e).splitlines()[0]}") from None

    def _pages(self, op: str, key: str, **kw) -> list[dict]:
        out, token = [], None
        while True:
            resp = self._call(op, **kw, **({"nextToken": token} if token else {}))
            out += resp.get(key, [])
            token = resp.get("nextToken")
            if not token:
                return out

    # -- devices -----------------------------------------------------------------------------
    def _raw_devices(self, platform: str | None) -> list[dict]:
        if self._devices is None:
            self._devices = self._pages("list_devices", "devices")
        return [d for d in self._devices if platform is None or d.get("platform", "").lower() == platform]

    def _ref(self, d: dict) -> DeviceRef:
        soc, vendor = soc_of(d.get("name", ""))
        return DeviceRef(backend=self.name, id=d["arn"], name=d.get("name", d["arn"]),
                         platform=d.get("platform", "").lower(), os=d.get("os"), soc=soc, vendor=vendor,
                         available=d.get("availability") in (None, "AVAILABLE", "HIGHLY_AVAILABLE"))

    def list_devices(self, platform: str | None = None) -> list[DeviceRef]:
        return [self._ref(d) for d in self._raw_devices(platform)]

    def resolve(self, names: Sequence[str], *, platform: str | None = None,
                max_devices: int | None = None) -> list[DeviceRef]:
        """Devices by ARN, exact name, model id or loose name (case/spaces/punctuation ignored); a name that
        several OS versions share picks the available one with the newest OS."""
        devices = self._raw_devices(platform)
        chosen: list[dict] = []
        for name in [n.strip() for n in names if n and n.strip()]:
            hits = ([d for d in devices if d["arn"] == name] if name.startswith("arn:")
                    else [d for d in devices if d.get("name", "").lower() == name.lower()]
                    or [d for d in devices if d.get("modelId", "").lower() == name.lower()]
                    or [d for d in devices if _norm(d.get("name", "")) == _norm(name)]
                    or [d for d in devices if _norm(name) and _norm(d.get("name", "")).endswith(_norm(name))])
            if not hits:
                known = sorted({d.get("name", "") for d in devices})
                close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
                hint = f"; close matches: {', '.join(close)}" if close else ""
                raise VitdeployError(f"no AWS Device Farm device {name!r}{hint} (`vitdeploy farm devices --farm aws`)")
            if len({d.get("name") for d in hits}) > 1:
                raise VitdeployError(f"device name {name!r} is ambiguous on AWS Device Farm: "
                                     f"{', '.join(sorted({d.get('name', '') for d in hits}))}")
            hits.sort(key=lambda d: (self._ref(d).available, _version(d.get("os"))), reverse=True)
            if hits[0] not in chosen:
                chosen.append(hits[0])
        if not names:
            chosen = [d for d in devices if self._ref(d).available]
        refs = [self._ref(d) for d in chosen]
        return refs[:max_devices] if max_devices else refs

    # -- what is uploaded ---------------------------------------------------------------------
    def _prepare(self, request: ProfileRequest, devices: Sequence[DeviceRef], work: Path) -> dict:
        platforms = {d.platform for d in devices}
        if len(platforms) != 1:
            raise VitdeployError("one AWS Device Farm run takes one platform: "
                                 f"got {', '.join(sorted(platforms)) or 'no devices'}; submit Android and iOS separately")
        platform = platforms.pop()
        model = Path(request.model)
        if platform == "android":
            payload = pl.build_android_payload(request, work)
            spec = testspec.android_spec(payload, cooldown_s=self.cooldown_s)
            apks = _harness_apks(request.options.get("harness_apk"))
            app, tests = (apks + [None, None])[:2]
            requests_ = payload.requests
        elif platform == "ios":  # NOT RUN on a farm (docs/farms.md): the payload rides in the test package
            from vitdeploy.devices.ios import BUNDLE_ID

            payload = pl.build_ios_payload(request, work)
            app, xctestrun = _ios_inputs(request.options)
            run = xctest.read_xctestrun(xctestrun) if xctestrun else None
            host_rel = run.host_rel if run else xctest.DEFAULT_HOST
            bundle_id = (xctest.ipa_bundle_id(app, PurePosixPath(host_rel).name) if app and app.is_file() else None)
            spec = testspec.ios_spec(payload, host_rel=host_rel, bundle_id=bundle_id or BUNDLE_ID,
                                     cooldown_s=self.cooldown_s)
            tests = xctest.build_test_package(payload, run, work / f"vitdeploy-{payload.base_id}-tests.zip") if run else None
            requests_ = payload.requests
        else:
            raise VitdeployError(f"AWS Device Farm runs Android and iOS devices, got platform {platform!r} ({model.name})")
        spec_path = work / f"vitdeploy-{payload.base_id}.yml"
        spec_path.write_text(spec)
        types = UPLOAD_TYPES[platform]
        uploads = [("app", types["app"], app), ("tests", types["tests"], tests), ("spec", types["spec"], spec_path)]
        if payload.outer_zip is not None:  # Android; iOS carries its payload in the test package
            uploads.append(("extra_data", "EXTERNAL_DATA", payload.outer_zip))
        return {"platform": platform, "payload": payload, "spec": spec, "uploads": uploads, "requests": requests_}

    def dry_run(self, request: ProfileRequest, devices: Sequence[DeviceRef]) -> dict:
        """What submit would upload (files, sizes, sha256) and the generated test spec; no client, no credentials."""
        with tempfile.TemporaryDirectory(prefix="vitdeploy-aws-") as tmp:
            prep = self._prepare(request, devices, Path(tmp))
            files = []
            for role, kind, path in prep["uploads"]:
                entry = {"role": role, "type": kind, "path": str(path) if path else None}
                if path is not None and Path(path).is_file():
                    entry.update(bytes=Path(path).stat().st_size, sha256=pl.sha256_file(Path(path)))
                else:
                    entry["note"] = f"missing: {_missing_message(prep['platform'])}"
                files.append(entry)
            return {"backend": self.name, "region": self.region, "project": self.project_name,
                    "platform": prep["platform"], "devices": [d.to_json() for d in devices], "uploads": files,
                    "payload": prep["payload"].manifest(), "test_spec": prep["spec"],
                    "requests": [pl.request_json(r) for r in prep["requests"]],
                    "job_timeout_minutes": self.job_timeout_min}

    # -- submit / poll / collect / cancel -----------------------------------------------------
    def _project_arn(self) -> str:
        for p in self._pages("list_projects", "projects"):
            if p.get("name") == self.project_name:
                return p["arn"]
        return self._call("create_project", name=self.project_name,
                          defaultJobTimeoutMinutes=self.job_timeout_min)["project"]["arn"]

    def _upload(self, project_arn: str, kind: str, path: Path) -> str:
        up = self._call("create_upload", projectArn=project_arn, name=path.name, type=kind,
                        contentType="application/octet-stream")["upload"]
        with open(path, "rb") as f:
            try:
                r = self.http.put(up["url"], data=f, headers={"content-type": "application/octet-stream"}, timeout=600)
            except Exception as e:
                raise VitdeployError(f"uploading {path.name} to AWS Device Farm failed: {type(e).__name__}") from None
        if not 200 <= r.status_code < 300:
            raise VitdeployError(f"uploading {path.name} to AWS Device Farm failed: HTTP {r.status_code}")
        delay, deadline = 1.0, self.clock() + self.upload_timeout_s
        while True:
            got = self._call("get_upload", arn=up["arn"])["upload"]
            if got.get("status") == "SUCCEEDED":
                return up["arn"]
            if got.get("status") == "FAILED":
                raise VitdeployError(f"AWS Device Farm rejected {path.name} ({kind}): "
                                     f"{(got.get('metadata') or got.get('message') or 'no reason given').strip()}")
            if self.clock() > deadline:
                raise VitdeployError(f"AWS Device Farm did not process {path.name} in {self.upload_timeout_s:g} s")
            self.sleep(delay)
            delay = min(delay * 2, 30.0)

    def submit(self, request: ProfileRequest, devices: Sequence[DeviceRef]) -> Submission:
        devices = list(devices)
        with tempfile.TemporaryDirectory(prefix="vitdeploy-aws-") as tmp:
            prep = self._prepare(request, devices, Path(tmp))
            payload = prep["payload"]
            missing = [role for role, _, path in prep["uploads"] if path is None or not Path(path).is_file()]
            if missing:
                raise VitdeployError(_missing_message(prep["platform"]))
            sub = Submission(id=f"aws-{payload.base_id}", backend=self.name, request=request, devices=devices,
                             status=QUEUED, created_s=self.clock(),
                             state={"region": self.region, "platform": prep["platform"], "base_id": payload.base_id,
                                    "requests": [pl.request_json(r) for r in prep["requests"]], "uploads": {}})
            sub.state["project_arn"] = project_arn = self._project_arn()
            try:
                for role, kind, path in prep["uploads"]:
                    sub.state["uploads"][role] = self._upload(project_arn, kind, Path(path))
            except VitdeployError as e:
                return _failed(sub, str(e))
        ups, types = sub.state["uploads"], UPLOAD_TYPES[prep["platform"]]
        run = self._call(
            "schedule_run", projectArn=project_arn, appArn=ups["app"], name=f"vitdeploy {payload.base_id}",
            deviceSelectionConfiguration={"filters": [{"attribute": "ARN", "operator": "IN",
                                                       "values": [d.id for d in devices]}],
                                          "maxDevices": len(devices)},
            test={"type": types["test_type"], "testPackageArn": ups["tests"], "testSpecArn": ups["spec"]},
            **({"configuration": {"extraDataPackageArn": ups["extra_data"]}} if "extra_data" in ups else {}),
            executionConfiguration={"jobTimeoutMinutes": self.job_timeout_min})["run"]
        sub.state["run_arn"] = run["arn"]
        sub.per_device = {d.id: {"status": QUEUED, "queue_s": None, "error": None, "url": None} for d in devices}
        return sub

    def poll(self, submission: Submission) -> Submission:
        sub = submission
        if sub.status in FINAL_STATES or "run_arn" not in sub.state:
            return sub
        run = self._call("get_run", arn=sub.state["run_arn"])["run"]
        jobs = self._pages("list_jobs", "jobs", arn=sub.state["run_arn"])
        for job in jobs:
            dev_arn = (job.get("device") or {}).get("arn")
            if dev_arn not in sub.per_device:
                continue
            status, result = job.get("status"), job.get("result")
            entry = sub.per_device[dev_arn]
            entry.update(job_arn=job["arn"], url=job_url(job["arn"], self.region), farm_status=status, result=result,
                         status=DONE if status == "COMPLETED" else QUEUED if status in RUN_QUEUED else RUNNING,
                         queue_s=_secs(job.get("created"), job.get("started") or (
                             _now(job.get("created")) if status in RUN_QUEUED else None)))
            if status == "COMPLETED" and result in ("ERRORED", "STOPPED", "SKIPPED"):
                entry["error"] = f"the farm's job {result}: {job.get('message') or 'no message'}"
        status, result = run.get("status"), run.get("result")
        if status == "COMPLETED":
            sub.status = CANCELLED if result == "STOPPED" and sub.state.get("cancelled") else DONE
            for dev_id, entry in sub.per_device.items():
                if "job_arn" not in entry:
                    entry.update(status=FAILED, error="the farm ran no job on this device (unavailable or not selected)")
        else:
            sub.status = QUEUED if status in RUN_QUEUED else RUNNING
            limit = sub.request.options.get("timeout_s")
            if limit and self.clock() - sub.created_s > float(limit):
                self._call("stop_run", arn=sub.state["run_arn"])
                sub.status = FAILED
                sub.state["error"] = f"timed out after {float(limit):g} s ({status.lower()}); the run was stopped"
                for entry in sub.per_device.values():
                    if entry["status"] != DONE:
                        entry.update(status=FAILED, error=sub.state["error"])
        return sub

    def cancel(self, submission: Submission) -> None:
        if "run_arn" in submission.state:
            self._call("stop_run", arn=submission.state["run_arn"])
        submission.state["cancelled"] = True
        submission.status = CANCELLED

    def collect(self, submission: Submission) -> list[LatencyRecord]:
        sub = submission
        hreqs = [HarnessRequest.from_json(r) for r in sub.state.get("requests", [])]
        model = Path(sub.request.model).name
        units = ",".join(hreqs[0].compute_units) if hreqs else ",".join(sub.request.compute_units or ())
        records: list[LatencyRecord] = []
        for dev in sub.devices:
            entry = sub.per_device.get(dev.id, {})
            common = dict(backend=self.name, device=dev, model=model, units=units, queue_s=entry.get("queue_s"),
                          url=entry.get("url"))
            if not entry.get("job_arn") or entry.get("status") == FAILED:
                why = entry.get("error") or sub.state.get("error") or f"no job ran on this device ({sub.status})"
                records.append(pl.error_record(repeat=1, error=why, **common))
                continue
            records += self._collect_job(entry, hreqs, dev, common)
        return records

    def _collect_job(self, entry: dict, hreqs: list[HarnessRequest], dev: DeviceRef, common: dict) -> list[LatencyRecord]:
        files, log_text, problem = [], "", None
        with tempfile.TemporaryDirectory(prefix="vitdeploy-artifacts-") as tmp:
            try:
                for art in self._pages("list_artifacts", "artifacts", arn=entry["job_arn"], type="FILE"):
                    if art.get("type") == "CUSTOMER_ARTIFACT":
                        files += pl.safe_extract(self._download(art["url"]), Path(tmp) / f"a{len(files)}")
                for art in self._pages("list_artifacts", "artifacts", arn=entry["job_arn"], type="LOG"):
                    if art.get("type") == "TESTSPEC_OUTPUT":
                        log_text += self._download(art["url"]).decode("utf-8", "replace")
            except VitdeployError as e:
                problem = str(e)
            out = []
            for k, hreq in enumerate(hreqs, start=1):
                tele_path = pl.find_named(files, f"telemetry-r{k}.txt")
                thermal = pl.parse_telemetry(tele_path.read_text(errors="replace") if tele_path else None)
                res_path = pl.find_named(files, f"result-r{k}.json")
                text = res_path.read_text(errors="replace") if res_path else ""
                if not text.strip():
                    text = pl.between_markers(log_text, f"r{k}") or ""
                if not text.strip():
                    why = problem or entry.get("error") or (f"no harness result for repeat {k} in the job's artifacts "
                                                            f"(job {entry.get('result') or entry.get('farm_status')})")
                    out.append(pl.error_record(repeat=k, error=why, **common))
                    continue
                try:
                    out += pl.records_from_result(text, hreq, backend=self.name, device=dev, repeat=k, thermal=thermal,
                                                  queue_s=common["queue_s"], url=common["url"])
                except ProtocolError as e:
                    out.append(pl.error_record(repeat=k, error=f"bad result from the harness: {e}", **common))
            return out

    def _download(self, url: str) -> bytes:
        try:
            r = self.http.get(url, stream=True, timeout=300)
        except Exception as e:
            raise VitdeployError(f"downloading an artifact failed: {type(e).__name__}") from None
        if r.status_code != 200:
            raise VitdeployError(f"downloading an artifact failed: HTTP {r.status_code}")
        data = bytearray()
        for chunk in r.iter_content(1 << 16):
            data += chunk
            if len(data) > MAX_ARTIFACT_BYTES:
                raise pl.ArtifactError(f"artifact larger than {MAX_ARTIFACT_BYTES >> 20} MiB: refused")
        return bytes(data)


def _failed(sub: Submission, why: str) -> Submission:
    sub.status = FAILED
    sub.state["error"] = why
    sub.per_device = {d.id: {"status": FAILED, "queue_s": None, "error": why, "url": None} for d in sub.devices}
    return sub


def _missing_message(platform: str) -> str:
    if platform == "ios":
        return ("AWS Device Farm on iOS needs the harness app .ipa and the .xctestrun from `xcodebuild "
                "build-for-testing`: pass both, --harness-apk VitdeployHarness.ipa --harness-apk "
                "VitdeployHarness_iphoneos.xctestrun (options harness_ipa, xctestrun; docs/farms.md)")
    return ("AWS Device Farm needs the harness app and its test APK: pass both with "
            "--harness-apk app.apk,app-androidTest.apk (docs/farms.md)")


def _ios_inputs(options: dict) -> tuple[Path | None, Path | None]:
    """(the harness .ipa, the .xctestrun or a zip holding it) from ``options``."""
    def one(key):
        value = options.get(key)
        if isinstance(value, (list, tuple)):
            value = value[0] if len(value) == 1 else None if not value else _too_many(key)
        return Path(str(value).strip()) if value and str(value).strip() else None

    return one("harness_ipa"), one("xctestrun")


def _too_many(key: str):
    raise VitdeployError(f"one {key} per AWS Device Farm run (got several)")


def _harness_apks(value) -> list[Path]:
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [Path(str(v).strip()) for v in items if str(v).strip()]


def _version(os_version: str | None) -> tuple:
    return tuple(int(x) for x in re.findall(r"\d+", os_version or ""))
