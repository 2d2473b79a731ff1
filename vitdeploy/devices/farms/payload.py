"""What a farm run carries to the phone, and reading back what it left: shared by the AWS backend
and the test that executes the generated spec against the emulated phone.

The payload is built exactly like devices/android.py builds a local run (the same input tensor, the
same ``HarnessRequest`` with the same remote and output directories), once per repeat, so the spec
can push and run it with the same adb commands; an iOS payload (``build_ios_payload``) likewise follows
devices/ios.py and rides in the test package (farms/xctest.py). Artifacts that come back are untrusted: zips are
extracted with an entry and size budget, no absolute paths, no ``..``, no links.
"""

from __future__ import annotations

import io
import json
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vitdeploy.devices.backend import SOURCE_HARNESS, LatencyRecord, ProfileRequest
from vitdeploy.devices.protocol import (
    IOS_COMPUTE_UNITS, MODEL_SUFFIXES, HarnessRequest, HarnessResult, ProtocolError, TensorFile, new_request_id,
    write_tensor,
)
from vitdeploy.errors import VitdeployError
from vitdeploy.formats import format_of
from vitdeploy.formats.executorch import is_pte
from vitdeploy.files import sha256_file

# Deterministic zips: the same model and request give the same bytes (dry-run sha256 is stable).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
MARK_BEGIN, MARK_END = "@@VITDEPLOY-RESULT-BEGIN", "@@VITDEPLOY-RESULT-END"
LOG_SUBDIR = "vitdeploy"  # under $DEVICEFARM_LOG_DIR
THERMAL_STATUS = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}


class ArtifactError(VitdeployError):
    """An artifact from a farm that we refuse to read (too big, a path escape, a link, not a zip)."""


@dataclass
class Payload:
    """One farm submission's files: ``inner_zip`` holds model + inputs + one request per repeat."""

    base_id: str
    platform: str
    model: Path
    requests: list[HarnessRequest]
    files: dict[str, Path]  # name in the inner zip -> local file (an .mlpackage: one entry per file in it)
    inner_zip: Path | None  # Android only (iOS: the files go into the test package, farms/xctest.py)
    outer_zip: Path | None  # what is uploaded as EXTERNAL_DATA: the inner zip as its only member
    input_names: list[str] = field(default_factory=list)

    @property
    def inner_name(self) -> str:
        return f"vitdeploy-{self.base_id}.zip"

    def manifest(self) -> list[dict]:
        return [{"name": n, "bytes": p.stat().st_size, "sha256": sha256_file(p)} for n, p in sorted(self.files.items())]




def runtime_of(model: Path | str) -> str:
    """What a record says ran ``model``: its format's name (``tflite``), else its suffix."""
    fmt = format_of(model)
    return fmt.name if fmt is not None else Path(model).suffix.lstrip(".")


def _android_request_inputs(model: Path, units: list[str] | None):
    """(arrays, compute units) exactly as android.profile_android prepares them."""
    import numpy as np

    from vitdeploy.devices import android

    pte = is_pte(model)
    allowed = format_of(model).compute_units["android"]
    units = list(units) if units else list(allowed if pte else android.DEFAULT_DELEGATES)
    bad = [u for u in units if u not in allowed]
    if bad:
        raise VitdeployError(f"unknown Android compute unit {bad[0]!r} for {model.name}; choose from {', '.join(allowed)}")
    if pte:
        in_dets, _ = android.pte_model_io(model)
        raw = np.random.default_rng(0).standard_normal(tuple(in_dets[0]["shape"])).astype(np.float32)
    else:
        in_dets, out_dets = android.model_io(model)
        android.check_harness_dtypes(model, in_dets, out_dets)
        raw = android.default_input(model)
    return [android.model_input(in_dets[0], raw)], units


def build_android_payload(request: ProfileRequest, work: Path, base_id: str | None = None) -> Payload:
    """The payload of an Android farm run of ``request.model``: one HarnessRequest per repeat, each with
    the remote and output directories devices/android.py uses (REMOTE_ROOT/<id>, OUTPUT_ROOT/<id>)."""
    from vitdeploy.devices.android import OUTPUT_ROOT

    model = Path(request.model)
    if not model.is_file():
        raise VitdeployError(f"model not found: {model}")
    if model.suffix not in MODEL_SUFFIXES["android"]:
        raise VitdeployError(f"an Android farm run takes a {' or '.join(MODEL_SUFFIXES['android'])} model, "
                             f"got {model.name}")
    if not isinstance(request.repeat, int) or not 1 <= request.repeat <= 20:
        raise VitdeployError(f"--repeat must be 1..20, got {request.repeat!r}")
    arrays, units = _android_request_inputs(model, request.compute_units)
    base_id = base_id or new_request_id()
    work.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {model.name: model}
    inputs = [TensorFile(f"input{i}.bin", list(a.shape) or [1], a.dtype.name) for i, a in enumerate(arrays)]
    for t, a in zip(inputs, arrays):
        write_tensor(work / t.file, a)
        files[t.file] = work / t.file
    requests = _write_requests(request, work, files, base_id, platform="android", model=model, inputs=inputs,
                               units=units, threads=list(request.threads), output_root=OUTPUT_ROOT)
    payload = Payload(base_id=base_id, platform="android", model=model, requests=requests, files=files,
                      inner_zip=work / f"vitdeploy-{base_id}.zip", outer_zip=work / f"vitdeploy-{base_id}-extra-data.zip",
                      input_names=[t.file for t in inputs])
    _write_zip(payload.inner_zip, sorted(files.items()))
    _write_zip(payload.outer_zip, [(payload.inner_name, payload.inner_zip)])
    return payload


def _write_requests(request: ProfileRequest, work: Path, files: dict[str, Path], base_id: str, *, platform: str,
                    model: Path, inputs: list[TensorFile], units: list[str], threads: list[int],
                    output_root: str) -> list[HarnessRequest]:
    """One ``request-rK.json`` per repeat (ids ``<base>-rK``, output in ``<output_root>/<id>``) and
    ``SHA256SUMS`` over every file, added to ``files``."""
    requests = []
    for k in range(1, request.repeat + 1):
        rid = f"{base_id}-r{k}"
        try:
            req = HarnessRequest(platform=platform, model=model.name, inputs=inputs, compute_units=units,
                                 runs=request.runs, warmup=request.warmup, threads=threads,
                                 request_id=rid, output_dir=f"{output_root}/{rid}")
        except ProtocolError as e:
            raise VitdeployError(str(e).replace("harness request: ", "")) from None
        name = f"request-r{k}.json"
        (work / name).write_text(req.dumps())
        files[name] = work / name
        requests.append(req)
    sums = "".join(f"{sha256_file(p)}  {n}\n" for n, p in sorted(files.items()))
    (work / "SHA256SUMS").write_text(sums)
    files["SHA256SUMS"] = work / "SHA256SUMS"
    return requests


def _ios_request_inputs(model: Path, units: list[str] | None):
    """(array, compute units) exactly as ios.profile_ios prepares them (no input array given)."""
    import numpy as np

    from vitdeploy.devices import ios

    if is_pte(model):
        units, shape = ios.pte_units(model, units)
        first = {"name": "input", "kind": "multiArray", "shape": shape}
    else:
        units = list(units) if units else list(IOS_COMPUTE_UNITS)
        bad = [u for u in units if u not in IOS_COMPUTE_UNITS]
        if bad:
            raise VitdeployError(f"unknown iOS compute unit {bad[0]!r} for {model.name}; "
                                 f"choose from {', '.join(IOS_COMPUTE_UNITS)}")
        first = ios._first_input(model, None, None)
    if first["kind"] == "image":
        return ios.image_pixels(None, first), units
    return np.random.default_rng(0).standard_normal(tuple(first["shape"])).astype(np.float32), units


def build_ios_payload(request: ProfileRequest, work: Path, base_id: str | None = None) -> Payload:
    """The payload of an iOS farm run of an ``.mlpackage`` or ``.pte``: the model (an .mlpackage file by file,
    checked for links first), ``input0.bin``, one HarnessRequest per repeat (platform ios, threads [1],
    output in the app's ``Documents/vitdeploy/<id>``, as devices/ios.py asks) and SHA256SUMS. farms/xctest.py
    puts these files into the test package; the spec copies them into the host app bundle."""
    from vitdeploy.devices import ios

    model = Path(request.model)
    fmt = format_of(model) if model.suffix in MODEL_SUFFIXES["ios"] else None  # as the harness spells it
    if fmt is None or not fmt.accepts(model):
        if fmt is not None and not fmt.folder:
            raise VitdeployError(f"model not found: {model}")
        raise VitdeployError(f"an iOS farm run takes an .mlpackage directory or a .pte file, got {model.name}")
    if not isinstance(request.repeat, int) or not 1 <= request.repeat <= 20:
        raise VitdeployError(f"--repeat must be 1..20, got {request.repeat!r}")
    array, units = _ios_request_inputs(model, list(request.compute_units) if request.compute_units else None)
    base_id = base_id or new_request_id()
    work.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if model.is_dir():
        files.update({f"{model.name}/{rel.as_posix()}": model / rel for rel in ios._mlpackage_files(model)})
    else:
        files[model.name] = model
    tensor = write_tensor(work / "input0.bin", array)
    files[tensor.file] = work / tensor.file
    requests = _write_requests(request, work, files, base_id, platform="ios", model=model, inputs=[tensor],
                               units=units, threads=[1], output_root=ios.REMOTE_ROOT)
    return Payload(base_id=base_id, platform="ios", model=model, requests=requests, files=files, inner_zip=None,
                   outer_zip=None, input_names=[tensor.file])


def _write_zip(path: Path, members) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, src in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open(src, "rb") as f, z.open(info, "w") as out:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    out.write(chunk)


# -- reading artifacts back (untrusted) ---------------------------------------------------------

def safe_extract(data: bytes, dest: Path, *, max_entries: int = 500, max_total: int = 256 << 20,
                 max_member: int = 64 << 20) -> list[Path]:
    """Extract a farm's artifact zip into ``dest``; refuse links, absolute or escaping paths, and
    anything over the budget (counted on the bytes actually inflated, not the headers' claims)."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ArtifactError("artifact is not a zip archive") from None
    infos = z.infolist()
    if len(infos) > max_entries:
        raise ArtifactError(f"artifact zip has {len(infos)} entries (limit {max_entries})")
    dest = dest.resolve()
    out, total = [], 0
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        if (not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts
                or "\x00" in name):
            raise ArtifactError(f"artifact zip member {name!r} escapes the extraction folder")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ArtifactError(f"artifact zip member {name!r} is a symbolic link")
        target = (dest / Path(*parts)).resolve()
        if dest not in target.parents and target != dest:
            raise ArtifactError(f"artifact zip member {name!r} escapes the extraction folder")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if info.file_size > max_member:
            raise ArtifactError(f"artifact zip member {name!r} is {info.file_size} bytes (limit {max_member})")
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with z.open(info) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 16):
                written += len(chunk)
                total += len(chunk)
                if written > max_member or total > max_total:
                    raise ArtifactError(f"artifact zip inflates past its budget at {name!r}")
                dst.write(chunk)
        out.append(target)
    return out


def find_named(files: list[Path], name: str) -> Path | None:
    """The file called ``name`` under a LOG_SUBDIR folder (the farm nests the log dir in its own folders)."""
    hits = [p for p in files if p.name == name and p.parent.name == LOG_SUBDIR]
    return sorted(hits)[0] if hits else None


def between_markers(text: str, tag: str) -> str | None:
    """The fallback copy of a result printed between marker lines in the spec's log."""
    m = re.search(rf"^{re.escape(MARK_BEGIN)} {re.escape(tag)}@@\r?\n(.*?)^{re.escape(MARK_END)} {re.escape(tag)}@@",
                  text, re.S | re.M)
    if not m or not m.group(1).strip():
        return None
    return m.group(1)


def parse_telemetry(text: str | None) -> dict | None:
    """``before.cpu_khz: 1803000 ...`` / ``before.thermal: Thermal Status: 0`` lines -> the record's thermal dict."""
    if not text:
        return None
    out: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or key not in ("before.cpu_khz", "after.cpu_khz", "before.thermal", "after.thermal"):
            continue
        when, what = key.split(".")
        if what == "cpu_khz":
            out[f"cpu_khz_{when}"] = [int(x) for x in value.split() if x.isdigit()]
        else:
            m = re.search(r"Thermal Status:\s*(\d+)", value)
            out[when] = THERMAL_STATUS.get(int(m.group(1)), m.group(1)) if m else None
    return out or None


def records_from_result(text: str, hreq: HarnessRequest, *, backend: str, device, repeat: int, thermal=None,
                        queue_s=None, url=None) -> list[LatencyRecord]:
    """LatencyRecords of one harness result; raises ProtocolError for a malformed one."""
    result = HarnessResult.loads(text, hreq)
    base = dict(backend=backend, device=device.name, platform=device.platform, model=hreq.model,
                runtime=runtime_of(hreq.model), repeat=repeat, source=SOURCE_HARNESS, soc=device.soc,
                vendor=device.vendor, os=device.os, thermal=thermal, queue_s=queue_s, url=url)
    if result.status != "ok" and not result.configs:
        return [LatencyRecord(compute_units=",".join(hreq.compute_units), threads=None,
                              error=f"the harness failed: {result.error}", **base)]
    return [LatencyRecord(compute_units=c.compute_unit, threads=c.threads, latencies_ms=list(c.latencies_ms),
                          load_ms=c.load_ms,
                          peak_memory_mb=None if c.peak_memory_kb is None else c.peak_memory_kb / 1024,
                          error=None if c.ok else (c.error or "failed"), **base)
            for c in result.configs]


def error_record(*, backend: str, device, model: str, units: str, repeat: int, error: str, queue_s=None,
                 url=None, source: str = SOURCE_HARNESS, runtime: str | None = None) -> LatencyRecord:
    return LatencyRecord(backend=backend, device=device.name, platform=device.platform, model=model,
                         runtime=runtime or runtime_of(model), compute_units=units, threads=None, repeat=repeat,
                         source=source, soc=device.soc, vendor=device.vendor, os=device.os, queue_s=queue_s, url=url,
                         error=error)


def request_json(hreq: HarnessRequest) -> dict:
    return json.loads(hreq.dumps())
