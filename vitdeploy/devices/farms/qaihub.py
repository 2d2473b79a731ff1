"""Qualcomm AI Hub (backend "qai-hub"): its hosted Snapdragon phones profile a .tflite (or .mlpackage) with
AI Hub's own profiler. Its numbers are its own (SOURCE_QAI_HUB, runtime "tflite (AI Hub)"), never our
harness's: no thread control, its own warm-up and iteration counts.

submit uploads the model once and submits one profiling job per device and repeat
(``submit_inference_job(..., profile=True)``, or ``submit_profile_job`` on an older client); poll reads
each job's status; collect maps ``download_profile()`` -- the execution summary (all inference times in
microseconds, load time, peak memory in bytes) and the per-layer detail (the compute unit of each
layer, summarized as a count per unit) -- into LatencyRecords. qai_hub is imported lazily; a client can
be injected (tests feed a fake with recorded responses).
"""

from __future__ import annotations

import difflib
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from vitdeploy.devices.backend import (
    DONE, FAILED, FINAL_STATES, QUEUED, RUNNING, SOURCE_QAI_HUB, DeviceRef, LatencyRecord, ProfileRequest,
    Submission, register_backend,
)
from vitdeploy.devices.protocol import new_request_id
from vitdeploy.errors import VitdeployError
from vitdeploy.formats import format_of
from vitdeploy.formats.executorch import is_pte

TOKEN_ENV = "QAIHUB_API_TOKEN"
ACCEPTED = {"tflite": "tflite (AI Hub)", "coreml": "coreml (AI Hub)"}  # the formats AI Hub profiles, by row name
COMPUTE_UNITS = ("all", "npu", "gpu", "cpu")
_QUEUED_STATES = ("CREATED", "PROVISIONING_DEVICE", "UNSPECIFIED")


def _accepted(model: Path) -> str | None:
    """How records name the runtime AI Hub profiles ``model`` with; None when it takes no such file."""
    fmt = format_of(model)
    return ACCEPTED.get(fmt.name) if fmt is not None and model.suffix == fmt.suffix else None


def _no_token() -> str:
    return (f"no Qualcomm AI Hub token: run `qai-hub configure --api_token YOUR_TOKEN` or set {TOKEN_ENV} "
            "(the token is on the Account page of https://app.aihub.qualcomm.com)")


def make_client():
    """A qai_hub.Client from QAIHUB_API_TOKEN or the client.ini `qai-hub configure` writes; one line when
    neither is there or qai_hub is not installed."""
    try:
        import qai_hub
    except ImportError:
        raise VitdeployError("Qualcomm AI Hub needs the qai-hub client: pip install 'vitdeploy[qaihub]'") from None
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return qai_hub.Client(config=qai_hub.ClientConfig(api_token=token))
    ini = Path(os.environ.get("QAIHUB_CLIENT_INI") or Path.home() / ".qai_hub" / "client.ini")
    if not ini.is_file():
        raise VitdeployError(_no_token())
    return qai_hub.Client()  # reads that client.ini on first use


def _soc(attributes) -> tuple[str | None, str | None]:
    """'chipset:qualcomm-snapdragon-8gen2' -> ('Snapdragon 8 Gen 2', 'Qualcomm')."""
    for a in attributes or ():
        m = re.match(r"^chipset:qualcomm-snapdragon-(.+)$", str(a))
        if m:
            gen = re.sub(r"^(\d+)gen(\d+)$", r"\1 Gen \2", m.group(1))
            return "Snapdragon " + " ".join(w if w[:1].isdigit() or w == "Gen" else w.title()
                                            for w in gen.replace("-", " ").split()), "Qualcomm"
        m = re.match(r"^chipset:qualcomm-(.+)$", str(a))
        if m:
            return m.group(1).replace("-", " ").title(), "Qualcomm"
    return None, None


def _platform(attributes) -> str:
    attrs = {str(a) for a in attributes or ()}
    return "ios" if "os:ios" in attrs else "android"


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _state(status) -> str:
    """The state name of a qai_hub JobStatus (``.code``), or of a fake's."""
    code = getattr(status, "code", None) or getattr(getattr(status, "state", None), "name", None)
    return str(code or "UNSPECIFIED")


@register_backend("qai-hub")
class QaiHub:
    name = "qai-hub"
    remote = True

    def __init__(self, client=None, *, device_factory: Callable | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._device_factory = device_factory
        self.clock = clock

    @property
    def client(self):
        if self._client is None:
            self._client = make_client()
        return self._client

    def _device(self, ref: DeviceRef):
        if self._device_factory is None:
            import qai_hub

            self._device_factory = qai_hub.Device
        return self._device_factory(ref.name, ref.os or "")

    def _call(self, what: str, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except VitdeployError:
            raise
        except Exception as e:  # qai_hub.UserError / InternalError / APIException, one line
            text = " ".join(str(e).split()) or type(e).__name__
            if "configuration file" in text or "authenticate" in text.lower():
                raise VitdeployError(f"{_no_token()} ({text[:120]})") from None
            raise VitdeployError(f"Qualcomm AI Hub {what} failed: {text[:300]}") from None

    # -- devices ------------------------------------------------------------------------------
    def list_devices(self, platform: str | None = None) -> list[DeviceRef]:
        out, seen = [], set()
        for d in self._call("get_devices", self.client.get_devices):
            attrs = list(getattr(d, "attributes", []) or [])
            soc, vendor = _soc(attrs)
            ref = DeviceRef(backend=self.name, id=d.name, name=d.name, platform=_platform(attrs), os=d.os or None,
                            soc=soc, vendor=vendor)
            if (platform is None or ref.platform == platform) and (ref.name, ref.os) not in seen:
                seen.add((ref.name, ref.os))
                out.append(ref)
        return out

    def resolve(self, names: Sequence[str], *, platform: str | None = None,
                max_devices: int | None = None) -> list[DeviceRef]:
        devices = self.list_devices(platform)
        chosen: list[DeviceRef] = []
        for name in [n.strip() for n in names if n and n.strip()]:
            hits = ([d for d in devices if d.name.lower() == name.lower()]
                    or [d for d in devices if _norm(d.name) == _norm(name)]
                    or [d for d in devices if _norm(name) and _norm(name) in _norm(d.name)])
            if len({d.name for d in hits}) > 1:
                raise VitdeployError(f"device name {name!r} is ambiguous on Qualcomm AI Hub: "
                                     f"{', '.join(sorted({d.name for d in hits}))}")
            if not hits:
                close = difflib.get_close_matches(name, sorted({d.name for d in devices}), n=3, cutoff=0.5)
                hint = f"; close matches: {', '.join(close)}" if close else ""
                raise VitdeployError(f"no Qualcomm AI Hub device {name!r}{hint} (`vitdeploy farm devices --farm qai-hub`)")
            # An AI Hub name without an OS means "the newest OS": keep os empty so the hub picks.
            ref = hits[0] if len(hits) == 1 else DeviceRef(**{**hits[0].to_json(), "os": None})
            if ref not in chosen:
                chosen.append(ref)
        if not names:
            chosen = devices
        return chosen[:max_devices] if max_devices else chosen

    # -- submit / poll / collect / cancel ------------------------------------------------------
    def _options(self, request: ProfileRequest) -> tuple[str, str]:
        unit = request.options.get("compute_unit") or (request.compute_units[0] if request.compute_units else "all")
        if unit not in COMPUTE_UNITS:
            raise VitdeployError(f"unknown AI Hub compute unit {unit!r}; choose from {', '.join(COMPUTE_UNITS)}")
        return unit, f"--compute_unit {unit}" + (f" --max_profiler_iterations {int(request.runs)}"
                                                if request.runs else "")

    def submit(self, request: ProfileRequest, devices: Sequence[DeviceRef]) -> Submission:
        model = Path(request.model)
        if is_pte(model):
            raise VitdeployError(f"Qualcomm AI Hub does not take ExecuTorch programs (.pte): profile the .tflite "
                                 f"instead ({model.name})")
        if _accepted(model) is None:
            raise VitdeployError(f"Qualcomm AI Hub profiles a .tflite or .mlpackage here, got {model.name}")
        if not model.exists():
            raise VitdeployError(f"model not found: {model}")
        unit, options = self._options(request)
        uploaded = self._call("upload_model", self.client.upload_model, str(model))
        submit = getattr(self.client, "submit_inference_job", None)
        base = new_request_id()
        sub = Submission(id=f"qai-hub-{base}", backend=self.name, request=request, devices=list(devices),
                         status=QUEUED, created_s=self.clock(),
                         state={"model_id": getattr(uploaded, "model_id", None), "compute_unit": unit,
                                "options": options, "jobs": []})
        for dev in devices:
            for k in range(1, request.repeat + 1):
                entry = {"device": dev.id, "repeat": k, "job_id": None, "status": QUEUED, "error": None, "url": None,
                         "submitted_s": self.clock(), "running_s": None}
                try:
                    kw = dict(name=f"vitdeploy {model.stem} r{k}", options=options)
                    job = (self._call("submit_inference_job", submit, uploaded, self._device(dev), profile=True, **kw)
                           if submit is not None else
                           self._call("submit_profile_job", self.client.submit_profile_job, uploaded,
                                      self._device(dev), **kw))
                    entry.update(job_id=job.job_id, url=getattr(job, "url", None))
                except VitdeployError as e:
                    entry.update(status=FAILED, error=str(e))
                sub.state["jobs"].append(entry)
        return self._summarize(sub)

    def poll(self, submission: Submission) -> Submission:
        sub = submission
        if sub.status in FINAL_STATES:
            return sub
        for entry in sub.state["jobs"]:
            if entry["status"] in FINAL_STATES or not entry["job_id"]:
                continue
            job = self._call("get_job", self.client.get_job, entry["job_id"])
            status = job.get_status()
            state = _state(status)
            if getattr(status, "success", state == "SUCCESS"):
                entry["status"] = DONE
            elif getattr(status, "failure", state == "FAILED"):
                entry.update(status=FAILED, error=f"AI Hub job {entry['job_id']} failed: "
                                                  f"{getattr(status, 'message', None) or 'no message'}")
            elif state in _QUEUED_STATES:
                entry["status"] = QUEUED
            else:
                entry["status"] = RUNNING
            if entry["status"] != QUEUED and entry["running_s"] is None:
                entry["running_s"] = self.clock()  # queue seconds: first poll that saw it past the queue
        return self._summarize(sub)

    def _summarize(self, sub: Submission) -> Submission:
        jobs = sub.state["jobs"]
        for dev in sub.devices:
            mine = [j for j in jobs if j["device"] == dev.id]
            statuses = {j["status"] for j in mine}
            first = mine[0] if mine else {}
            queue = (first.get("running_s") - first["submitted_s"]) if first.get("running_s") else None
            sub.per_device[dev.id] = {
                "status": (RUNNING if RUNNING in statuses else QUEUED if QUEUED in statuses
                           else DONE if DONE in statuses else FAILED),
                "queue_s": queue, "error": next((j["error"] for j in mine if j["error"]), None),
                "url": first.get("url")}
        statuses = {j["status"] for j in jobs}
        if statuses <= set(FINAL_STATES):
            sub.status = DONE if DONE in statuses else FAILED
        else:
            sub.status = RUNNING if RUNNING in statuses or DONE in statuses else QUEUED
        return sub

    def cancel(self, submission: Submission) -> None:
        raise VitdeployError("the qai-hub client has no way to cancel a job: AI Hub runs it to the end "
                             f"({', '.join(j['url'] for j in submission.state.get('jobs', []) if j.get('url')) or 'no jobs'})")

    def collect(self, submission: Submission) -> list[LatencyRecord]:
        sub = submission
        model = Path(sub.request.model)
        unit = sub.state.get("compute_unit", "all")
        by_id = {d.id: d for d in sub.devices}
        out = []
        for entry in sub.state["jobs"]:
            dev = by_id[entry["device"]]
            queue = (entry["running_s"] - entry["submitted_s"]) if entry.get("running_s") else None
            rec = LatencyRecord(backend=self.name, device=dev.name, platform=dev.platform, model=model.name,
                                runtime=_accepted(model) or "AI Hub", compute_units=unit, threads=None,
                                repeat=entry["repeat"], source=SOURCE_QAI_HUB, soc=dev.soc, vendor=dev.vendor,
                                os=dev.os, queue_s=queue, url=entry.get("url"))
            if entry["status"] != DONE:
                rec.error = entry.get("error") or f"AI Hub job not finished ({entry['status']}); collect it later"
            else:
                try:
                    job = self._call("get_job", self.client.get_job, entry["job_id"])
                    profile = self._call("download_profile", job.download_profile)
                    apply_profile(rec, profile)
                except VitdeployError as e:
                    rec.error = str(e)
            out.append(rec)
        return out


def apply_profile(rec: LatencyRecord, profile) -> LatencyRecord:
    """Fill ``rec`` from a ``download_profile()`` dict (times in microseconds, memory in bytes)."""
    summary = profile.get("execution_summary") if isinstance(profile, dict) else None
    if not isinstance(summary, dict):
        raise VitdeployError("AI Hub returned a profile without an execution summary")
    times = summary.get("all_inference_times")
    if not times:
        est = summary.get("estimated_inference_time")
        times = [est] if est is not None else []
    if not times or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and t >= 0 for t in times):
        raise VitdeployError(f"AI Hub's profile has no usable inference times: {str(times)[:80]}")
    rec.latencies_ms = [t / 1000.0 for t in times]
    load = summary.get("first_load_time")
    rec.load_ms = load / 1000.0 if isinstance(load, (int, float)) and load >= 0 else None
    peak = summary.get("estimated_inference_peak_memory")
    rec.peak_memory_mb = peak / (1 << 20) if isinstance(peak, (int, float)) and peak >= 0 else None
    layers = profile.get("execution_detail") or []
    if isinstance(layers, list) and layers:
        rec.layers_by_unit = dict(Counter(str(layer.get("compute_unit", "UNKNOWN")) for layer in layers
                                          if isinstance(layer, dict)))
    return rec
