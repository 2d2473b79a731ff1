"""Profile a .tflite or ExecuTorch .pte model on an Android phone through adb and the harness app.

Flow (docs/harness.md): pick the device, make sure the harness APKs are
installed, push model + input + request.json to /data/local/tmp/vitdeploy/<id>/,
run the HarnessBenchmark instrumentation, pull result.json and the output
tensors from the harness's external files dir, validate, return.

Every adb call is an argument list (no host shell). `adb shell` joins its
arguments with spaces and hands the string to the device shell, so each
remote command is built with shlex.join/quote: paths with spaces or quotes
reach the device intact.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from vitdeploy.errors import VitdeployError
from vitdeploy.files import scratch_dir
from vitdeploy.formats import format_of
from vitdeploy.formats.executorch import PTE_SUFFIX, is_pte
from vitdeploy.formats.io import check_harness_dtypes, default_input, dequantized, model_input, model_io, pte_model_io
from vitdeploy.devices.protocol import (
    ANDROID_COMPUTE_UNITS, MODEL_SUFFIXES, PTE_COMPUTE_UNITS, HarnessRequest, HarnessResult, ProtocolError, TensorFile, new_request_id, read_tensor,
    write_tensor,
)

HARNESS_PACKAGE = "com.vitdeploy.harness"
TEST_PACKAGE = "com.vitdeploy.harness.test"
RUNNER = f"{TEST_PACKAGE}/androidx.test.runner.AndroidJUnitRunner"
REMOTE_ROOT = "/data/local/tmp/vitdeploy"
# The harness writes into its own app-specific external dir: apps may read
# /data/local/tmp but not write there, and `adb pull` can read this dir.
OUTPUT_ROOT = f"/sdcard/Android/data/{HARNESS_PACKAGE}/files/vitdeploy"
_LOST = re.compile(r"device '[^']*' not found|device offline|no devices/emulators found|device still authorizing|"
                   r"error: closed|protocol fault|connection reset", re.I)


class DeviceLost(VitdeployError):
    """The phone disappeared from adb while we were using it."""


class AdbTimeout(VitdeployError):
    """An adb command did not finish in time."""


class AdbMissing(VitdeployError):
    """The adb client is not installed: said as such, with what works without a phone."""


def adb_missing_message(adb: str = "adb", device: str | None = None) -> str:
    tool = "adb" if adb == "adb" else f"adb ('{adb}')"
    return f"{tool} is not installed (apt install adb / Android platform-tools); {without_a_phone(device)}"


def without_a_phone(device: str | None = None) -> str:
    """What works when no phone is on the desk: emulated numerics here, latency on a hosted farm's phones."""
    return (f"without a phone, `vitdeploy parity MODEL --checkpoint CKPT --device {device or 'pixel7'}` checks its "
            "numerics under emulation, and `vitdeploy profile MODEL --farm aws|qai-hub --devices NAME` times it on "
            "a hosted phone (`vitdeploy farm devices --farm aws` lists them)")


class Adb:
    """Runs the adb client; `server_socket` (e.g. tcp:127.0.0.1:5037) selects the adb server."""

    def __init__(self, adb: str = "adb", serial: str | None = None, server_socket: str | None = None) -> None:
        self.adb = adb
        self.serial = serial
        self.env = None
        if server_socket:
            self.env = {**os.environ, "ADB_SERVER_SOCKET": server_socket}

    def for_serial(self, serial: str) -> "Adb":
        other = Adb(self.adb, serial)
        other.env = self.env
        return other

    def run(self, args: Sequence[str], *, timeout: float, what: str) -> subprocess.CompletedProcess:
        """Run `adb [-s SERIAL] ARGS`; raise one-line errors for a missing adb, timeouts, lost devices."""
        argv = [self.adb] + (["-s", self.serial] if self.serial else []) + list(args)
        try:
            # stdin is closed: `adb shell` would otherwise forward our stdin to the device.
            p = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                               stdin=subprocess.DEVNULL, env=self.env)
        except FileNotFoundError:
            raise AdbMissing(adb_missing_message(self.adb)) from None
        except subprocess.TimeoutExpired:
            raise AdbTimeout(f"{what} on {self.serial or 'the device'} timed out after {timeout:g} s") from None
        if p.returncode != 0 and self.serial and _LOST.search(p.stderr + p.stdout):
            raise DeviceLost(f"device {self.serial} disconnected during {what}")
        return p

    def check(self, args: Sequence[str], *, timeout: float, what: str) -> subprocess.CompletedProcess:
        p = self.run(args, timeout=timeout, what=what)
        if p.returncode != 0:
            raise VitdeployError(f"{what} failed on {self.serial or 'adb'}: {_error_line(p.stderr or p.stdout)}")
        return p

    def shell(self, argv: Sequence[str], *, timeout: float, what: str) -> subprocess.CompletedProcess:
        """Run one command on the device; each argument is quoted for the device shell."""
        return self.run(["shell", shlex.join(argv)], timeout=timeout, what=what)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def _error_line(text: str) -> str:
    """The client's own error line if it printed one: `adb push` ends with a summary
    ("0 files pushed ...") after "adb: error: ... Permission denied", which is the one that helps."""
    errors = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("adb: error:", "error:"))]
    return errors[-1] if errors else _last_line(text)


# -- discovery ---------------------------------------------------------------------------

def parse_adb_devices(text: str) -> list[dict]:
    """Parse `adb devices -l` (or plain `adb devices`) output into one dict per device."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("List of devices", "*", "adb server", "adb W", "adb E")):
            continue
        parts = line.split()
        if len(parts) < 2:
            continue
        entry = {"serial": parts[0], "state": parts[1]}
        # States such as "no permissions (...)" take several words before the key:value pairs.
        rest = parts[2:]
        while rest and ":" not in rest[0] and entry["state"] == "no":
            entry["state"] += " " + rest.pop(0)
        for kv in rest:
            key, sep, value = kv.partition(":")
            if sep and key in ("usb", "product", "model", "device", "transport_id", "features"):
                entry[key] = value.replace("_", " ") if key == "model" else value
        out.append(entry)
    return out


def list_connected_android(adb: str = "adb", *, server_socket: str | None = None, notes: list | None = None,
                           timeout: float = 15) -> list[dict]:
    """Phones adb sees, with their getprop identity; [] and a note when adb is missing or fails."""
    client = Adb(adb, server_socket=server_socket)
    try:
        p = client.run(["devices", "-l"], timeout=timeout, what="adb devices")
    except VitdeployError as e:
        if isinstance(e, AdbMissing) and notes is None:  # a caller that needs a phone: say adb is missing
            raise
        if notes is not None:
            notes.append(f"android: {e}")
        return []
    if p.returncode != 0:
        if notes is not None:
            notes.append(f"android: adb devices failed: {_last_line(p.stderr)}")
        return []
    devices = parse_adb_devices(p.stdout)
    for d in devices:
        if d["state"] == "device":
            try:
                d.update(device_props(client.for_serial(d["serial"]), timeout=timeout))
            except VitdeployError as e:
                d["error"] = str(e)
        d["platform"] = "android"
        d["catalog"] = _catalog_name(d)
    return devices


def device_props(adb: Adb, timeout: float = 15) -> dict:
    """Model, codename, SoC and Android version from one `getprop` listing."""
    p = adb.shell(["getprop"], timeout=timeout, what="getprop")
    if p.returncode != 0:
        raise VitdeployError(f"getprop failed on {adb.serial}: {_last_line(p.stderr or p.stdout)}")
    props = parse_getprop(p.stdout)
    return {
        "model": props.get("ro.product.model") or None, "device": props.get("ro.product.device") or None,
        "manufacturer": props.get("ro.product.manufacturer") or None, "soc": props.get("ro.soc.model") or None,
        "android_version": props.get("ro.build.version.release") or None,
        "sdk": props.get("ro.build.version.sdk") or None,
    }


def parse_getprop(text: str) -> dict:
    """Parse `getprop` output lines like `[ro.product.model]: [Pixel 7]`."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M))


def _catalog_name(d: dict) -> str | None:
    from vitdeploy.devices.catalog import match_android

    entry = match_android(d.get("device"), d.get("model"))
    return entry.name if entry else None


def choose_device(devices: list[dict], serial: str | None = None, device: str | None = None) -> dict:
    """Pick one device: by serial, by catalog name (pixel7), or the only one attached."""
    ready = [d for d in devices if d["state"] == "device"]
    listing = ", ".join(f"{d['serial']} ({d.get('model') or d['state']})" for d in devices)
    if serial:
        for d in devices:
            if d["serial"] == serial:
                if d["state"] != "device":
                    raise VitdeployError(f"device {serial} is {d['state']}; unlock it and accept the USB debugging prompt")
                return d
        raise VitdeployError(f"no Android device with serial {serial}; attached: {listing or 'none'}")
    if not devices:
        raise VitdeployError("no Android device connected: plug one in with USB debugging on (check `adb devices`); "
                             + without_a_phone(device))
    if device:
        matches = [d for d in ready if d.get("catalog") == device]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise VitdeployError(f"no connected {device}; attached: {listing}")
        raise VitdeployError(f"several {device} phones attached ({', '.join(d['serial'] for d in matches)}): "
                             "pick one with --serial")
    if not ready:
        raise VitdeployError(f"no usable Android device: {listing}")
    if len(ready) > 1:
        raise VitdeployError(f"{len(ready)} Android devices attached ({listing}): pick one with --serial")
    return ready[0]


# -- profiling ---------------------------------------------------------------------------

def installed_harness(adb: Adb, timeout: float = 30) -> set[str]:
    p = adb.shell(["pm", "list", "packages", HARNESS_PACKAGE], timeout=timeout, what="pm list packages")
    return {ln.split(":", 1)[1].strip() for ln in p.stdout.splitlines() if ln.startswith("package:")}


def ensure_harness(adb: Adb, apks: Iterable[str | os.PathLike], timeout: float = 300) -> None:
    """Install the given APKs (app first, then the test APK), or check the harness is there."""
    apks = [Path(a) for a in apks]
    for apk in apks:
        if not apk.is_file():
            raise VitdeployError(f"harness APK not found: {apk}")
        p = adb.run(["install", "-r", "-g", str(apk)], timeout=timeout, what=f"adb install {apk.name}")
        if p.returncode != 0 or "Success" not in p.stdout:
            raise VitdeployError(f"installing {apk.name} failed: {_last_line(p.stderr + p.stdout)}")
    missing = {HARNESS_PACKAGE, TEST_PACKAGE} - installed_harness(adb)
    if missing:
        raise VitdeployError(f"harness app not installed on {adb.serial} (missing {', '.join(sorted(missing))}): "
                             "build it (docs/harness.md) and pass both APKs with --harness-apk")


DEFAULT_DELEGATES = ("xnnpack", "gpu", "nnapi")
DEFAULT_PTE_UNITS = PTE_COMPUTE_UNITS["android"]  # a .pte: ExecuTorch's XNNPACK at each thread count


def profile_android(model_path, *, serial: str | None = None, device: str | None = None, runs: int = 50,
                    warmup: int = 5, threads: Sequence[int] = (1, 4),
                    delegates: Sequence[str] | None = None, input_array=None,
                    timeout_s: float = 600, adb: str = "adb", server_socket: str | None = None,
                    harness_apks: Sequence[str | os.PathLike] = (), remote_root: str = REMOTE_ROOT,
                    keep_remote: bool = False) -> dict:
    """Time `model_path` (.tflite or .pte) on an Android phone; returns timings per config and the output arrays.

    ``delegates``: compute units (default: xnnpack, gpu, nnapi for a .tflite; cpu for a .pte, which
    is ExecuTorch's XNNPACK delegate at each thread count).

    The returned dict has "serial", "device" (props + what the harness reports),
    "request" and "result" (protocol JSON), "configs" (one dict per config with
    its "outputs" arrays) and "output" (first output of the first config that ran).
    """
    import numpy as np

    model_path = Path(model_path)
    if not model_path.is_file():
        raise VitdeployError(f"model not found: {model_path}")
    if model_path.suffix not in MODEL_SUFFIXES["android"]:
        raise VitdeployError(f"Android profiling needs a {' or '.join(MODEL_SUFFIXES['android'])} model, "
                             f"got {model_path.name}")
    pte = is_pte(model_path)
    allowed = format_of(model_path).compute_units["android"]
    delegates = list(delegates if delegates is not None else (allowed if pte else DEFAULT_DELEGATES))
    bad = [d for d in delegates if d not in allowed]
    if bad:
        what = f"compute unit for a {PTE_SUFFIX}" if pte else "delegate"
        raise VitdeployError(f"unknown Android {what} {bad[0]!r}; choose from {', '.join(allowed)}")

    if pte:
        # Read from the flatbuffer, not a runtime: a broken .pte or a Core ML one fails here, offline.
        in_dets, out_dets = pte_model_io(model_path)
    else:
        try:
            in_dets, out_dets = model_io(model_path)
        except VitdeployError:
            if input_array is None:
                raise
            # The host runtime can't read it; the phone's may (or says why): send the input as given.
            in_dets, out_dets = [{"dtype": np.float32}], []
        check_harness_dtypes(model_path, in_dets, out_dets)
    if input_array is not None:
        raw = input_array
    elif pte:
        raw = np.random.default_rng(0).standard_normal(tuple(in_dets[0]["shape"])).astype(np.float32)
    else:
        raw = default_input(model_path)
    arrays = [model_input(in_dets[0], raw)]
    request_id = new_request_id()
    remote_dir = str(PurePosixPath(remote_root) / request_id)
    output_dir = f"{OUTPUT_ROOT}/{request_id}"
    try:  # a bad runs/threads value fails here, before any adb call
        request = HarnessRequest(platform="android", model=model_path.name,
                                 inputs=[TensorFile(f"input{i}.bin", list(a.shape) or [1], a.dtype.name)
                                         for i, a in enumerate(arrays)],
                                 compute_units=list(delegates), runs=runs, warmup=warmup, threads=list(threads),
                                 request_id=request_id, output_dir=output_dir)
    except ProtocolError as e:
        raise VitdeployError(str(e).replace("harness request: ", "")) from None

    client = Adb(adb, server_socket=server_socket)
    try:
        connected = list_connected_android(adb, server_socket=server_socket)
    except AdbMissing:
        raise AdbMissing(adb_missing_message(adb, device)) from None
    chosen = choose_device(connected, serial, device)
    dev = client.for_serial(chosen["serial"])
    ensure_harness(dev, harness_apks)
    with tempfile.TemporaryDirectory(prefix="android-", dir=scratch_dir()) as tmp:
        tmp = Path(tmp)
        inputs = [write_tensor(tmp / t.file, a) for t, a in zip(request.inputs, arrays)]
        (tmp / "request.json").write_text(request.dumps())
        try:
            _push(dev, model_path, f"{remote_dir}/{model_path.name}", timeout_s)
            for t in inputs:
                _push(dev, tmp / t.file, f"{remote_dir}/{t.file}", timeout_s)
            _push(dev, tmp / "request.json", f"{remote_dir}/request.json", timeout_s)
            run_instrumentation(dev, f"{remote_dir}/request.json", timeout_s)
            result = _fetch_result(dev, request, output_dir, tmp / "out", timeout_s)
        finally:
            if not keep_remote:
                _cleanup(dev, [remote_dir, output_dir])
        configs = _config_dicts(result, tmp / "out", out_dets)
    ok = [c for c in configs if c["status"] == "ok"]
    if not ok:
        why = result.error or "; ".join(f"{c['name']}: {c['error']}" for c in configs)
        raise VitdeployError(f"the harness could not run {model_path.name} on {dev.serial}: {why}")
    return {
        "platform": "android", "serial": dev.serial, "catalog": chosen.get("catalog"),
        "device": {**{k: chosen.get(k) for k in ("model", "device", "manufacturer", "soc", "android_version")},
                   **result.device},
        "request": request.to_json(), "result": result.to_json(), "configs": configs, "output": ok[0]["outputs"][0],
    }


def _push(adb: Adb, local: Path, remote: str, timeout: float) -> None:
    # adbd creates missing parent directories for SEND, so no mkdir round trip is needed.
    adb.check(["push", str(local), remote], timeout=timeout, what=f"adb push {local.name}")


def run_instrumentation(adb: Adb, remote_request: str, timeout: float) -> str:
    """Run HarnessBenchmark; raise for a missing harness, a crash, a lost device or a timeout."""
    cmd = ["am", "instrument", "-w", "-r", "-e", "request", remote_request, RUNNER]
    try:
        p = adb.shell(cmd, timeout=timeout, what="the harness run")
    except AdbTimeout:
        # The client was killed; stop the harness too so the phone is free for the next run.
        try:
            adb.shell(["am", "force-stop", HARNESS_PACKAGE], timeout=15, what="am force-stop")
        except VitdeployError:
            pass
        raise
    text = p.stdout + p.stderr
    if "INSTRUMENTATION_FAILED" in text or "Unable to find instrumentation" in text:
        raise VitdeployError(f"harness instrumentation {RUNNER} not found on {adb.serial}: "
                             "install the harness test APK (docs/harness.md)")
    if "INSTRUMENTATION_CODE" not in text:
        # No final status line: the connection died. Tell a lost phone from a broken adb.
        if not _still_attached(adb):
            raise DeviceLost(f"device {adb.serial} disconnected during the harness run")
        raise VitdeployError(f"the harness run ended without a status on {adb.serial}: {_last_line(text)}")
    if "FAILURES!!!" in text:
        cause = re.search(r"^(?:java|kotlin|org\.json)\.[\w.$]+(?:Exception|Error): (.*)$", text, re.M)
        raise VitdeployError(f"the harness rejected the request on {adb.serial}: "
                             f"{cause.group(1).strip() if cause else _last_line(text)}")
    if "shortMsg=" in text:
        msg = re.search(r"shortMsg=(.*)", text).group(1).strip()
        raise VitdeployError(f"the harness crashed on {adb.serial}: {msg} (see `adb logcat`)")
    return p.stdout


def _still_attached(adb: Adb) -> bool:
    probe = Adb(adb.adb)
    probe.env = adb.env
    try:
        p = probe.run(["devices"], timeout=15, what="adb devices")
    except VitdeployError:
        return False
    return any(d["serial"] == adb.serial and d["state"] == "device" for d in parse_adb_devices(p.stdout))


def _fetch_result(adb: Adb, request: HarnessRequest, output_dir: str, local: Path, timeout: float) -> HarnessResult:
    local.mkdir(parents=True, exist_ok=True)
    p = adb.run(["pull", f"{output_dir}/result.json", str(local / "result.json")], timeout=timeout,
                what="adb pull result.json")
    if p.returncode != 0:
        raise VitdeployError(f"the harness wrote no result on {adb.serial} ({output_dir}/result.json): "
                             "check `adb logcat -s VitdeployHarness`")
    try:
        result = HarnessResult.read(local / "result.json", request, name=f"{output_dir}/result.json")
    except ProtocolError as e:
        raise VitdeployError(f"bad result from the harness on {adb.serial}: {e}") from None
    for cfg in result.ok_configs:
        for t in cfg.outputs:
            adb.check(["pull", f"{output_dir}/{t.file}", str(local / t.file)], timeout=timeout,
                      what=f"adb pull {t.file}")
    return result


def _config_dicts(result: HarnessResult, local: Path, out_dets: list[dict] | None = None) -> list[dict]:
    """One dict per config; integer outputs of a quantized model come back dequantized to float32."""
    import numpy as np

    out_dets = out_dets or []
    out = []
    for c in result.configs:
        d = {
            "name": c.name, "compute_unit": c.compute_unit, "threads": c.threads, "status": c.status,
            "error": c.error, "load_ms": c.load_ms, "init_ms": c.init_ms, "first_inference_ms": c.first_inference_ms,
            "latencies_ms": c.latencies_ms, "median_ms": float(np.median(c.latencies_ms)) if c.latencies_ms else None,
            "peak_memory_kb": c.peak_memory_kb, "cpu_affinity": c.cpu_affinity, "outputs": [],
        }
        if c.ok:
            try:
                d["outputs"] = [dequantized(read_tensor(local, t), out_dets[i] if i < len(out_dets) else None)
                                for i, t in enumerate(c.outputs)]
            except ProtocolError as e:
                raise VitdeployError(f"bad output from the harness: {e}") from None
        out.append(d)
    return out


def _cleanup(adb: Adb, remote_dirs: list[str]) -> None:
    """Best effort: a phone that just went away must not hide the real error."""
    for d in remote_dirs:
        try:
            adb.shell(["rm", "-rf", d], timeout=30, what="cleanup")
        except VitdeployError:
            pass
