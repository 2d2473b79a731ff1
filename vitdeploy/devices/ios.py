"""Profile an .mlpackage or ExecuTorch .pte on an iPhone through Xcode: the command contract and its driver.

The plan (docs/harness.md#ios): build the harness for testing, install the
host app so its data container exists, copy request.json + input + the
.mlpackage files into Documents/vitdeploy/<id>/ with devicectl, run the
XCTest with the request path in TEST_RUNNER_VITDEPLOY_REQUEST (xcodebuild
passes TEST_RUNNER_-prefixed variables to the test process without the
prefix), then copy result.json and the output tensors back.
Discovery works anywhere libimobiledevice does; profiling needs macOS + Xcode.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from vitdeploy.errors import VitdeployError
from vitdeploy.files import scratch_dir
from vitdeploy.formats import format_of
from vitdeploy.formats.executorch import is_pte
from vitdeploy.formats.io import mlpackage_input
from vitdeploy.devices.protocol import (
    IOS_COMPUTE_UNITS, MODEL_SUFFIXES, PTE_COMPUTE_UNITS, HarnessRequest, HarnessResult, ProtocolError, new_request_id, read_tensor, write_tensor,
)

# The default app id. An explicit App ID belongs to one team, so a second user builds with their
# own: `VITDEPLOY_BUNDLE_ID` is the one build setting both targets derive their ids from
# (ios_harness/...project.pbxproj), and devicectl addresses the app's container by the same id.
BUNDLE_ID = "com.vitdeploy.harness"
BUNDLE_SETTING = "VITDEPLOY_BUNDLE_ID"
BUNDLE_ENV = "VITDEPLOY_IOS_BUNDLE_ID"
_BUNDLE_RE = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
SCHEME = "VitdeployHarness"
TEST_ID = "VitdeployHarnessTests/HarnessBenchmarkTests/testRunRequest"
PROJECT = Path(__file__).resolve().parents[2] / "ios_harness" / "VitdeployHarness.xcodeproj"
REMOTE_ROOT = "Documents/vitdeploy"
REQUEST_ENV = "VITDEPLOY_REQUEST"


# -- discovery ---------------------------------------------------------------------------

def _run_tool(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None


def list_connected_ios(*, notes: list | None = None, platform: str = sys.platform) -> list[dict]:
    """iPhones attached: devicectl on macOS, libimobiledevice elsewhere; [] and a note on failure."""
    notes = notes if notes is not None else []
    if platform == "darwin" and shutil.which("xcrun"):
        return _list_devicectl(notes)
    if not shutil.which("idevice_id"):
        notes.append("ios: idevice_id not found (Debian/Ubuntu: apt-get install libimobiledevice-utils usbmuxd)")
        return []
    p = _run_tool(["idevice_id", "-l"])
    if p is None or p.returncode != 0:
        why = (p.stderr or p.stdout).strip().splitlines()[-1] if p and (p.stderr or p.stdout).strip() else "timed out"
        notes.append(f"ios: idevice_id -l failed ({why}); is usbmuxd running?")
        return []
    devices = []
    for udid in [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]:
        info = {"udid": udid, "platform": "ios", "state": "device"}
        for key, field_name in (("ProductType", "product_type"), ("ProductVersion", "ios_version"),
                                ("DeviceName", "name")):
            q = _run_tool(["ideviceinfo", "-u", udid, "-k", key])
            info[field_name] = q.stdout.strip() if q is not None and q.returncode == 0 else None
        devices.append(_with_catalog(info))
    return devices


def _list_devicectl(notes: list) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="devicectl-", dir=scratch_dir()) as tmp:
        out = Path(tmp) / "devices.json"
        p = _run_tool(["xcrun", "devicectl", "list", "devices", "-j", str(out)], timeout=60)
        if p is None or p.returncode != 0 or not out.is_file():
            notes.append("ios: `xcrun devicectl list devices` failed (Xcode 15 or later is needed)")
            return []
        try:
            return parse_devicectl_devices(json.loads(out.read_text()))
        except (ValueError, KeyError, TypeError):
            notes.append("ios: could not read devicectl's device list")
            return []


def parse_devicectl_devices(doc: dict) -> list[dict]:
    """Turn `devicectl list devices -j` JSON into the same dicts libimobiledevice discovery gives."""
    devices = []
    for d in doc.get("result", {}).get("devices", []):
        hw = d.get("hardwareProperties", {})
        props = d.get("deviceProperties", {})
        conn = d.get("connectionProperties", {})
        if hw.get("platform") not in (None, "iOS"):
            continue
        # The tunnel opens on demand, so "disconnected" is normal for a usable phone;
        # "unavailable" means it is not reachable at all.
        pairing, tunnel = conn.get("pairingState"), conn.get("tunnelState")
        state = "device"
        if pairing not in (None, "paired"):
            state = pairing
        elif tunnel == "unavailable":
            state = "unavailable"
        devices.append(_with_catalog({
            "udid": hw.get("udid") or d.get("identifier"), "platform": "ios", "state": state,
            "product_type": hw.get("productType"), "ios_version": props.get("osVersionNumber"),
            "name": props.get("name"),
        }))
    return devices


def _with_catalog(info: dict) -> dict:
    from vitdeploy.devices.catalog import match_ios

    spec = match_ios(info.get("product_type"))
    info["catalog"] = spec.name if spec else None
    info["model"] = spec.marketing_name if spec else info.get("product_type")
    return info


# -- the command contract ----------------------------------------------------------------

@dataclass
class Step:
    """One command of the plan; `env` holds only the variables added to the environment."""

    what: str
    argv: list[str]
    env: dict = field(default_factory=dict)
    timeout: float = 600


def _mlpackage_files(model: Path) -> list[Path]:
    """The package's files, each copied on its own: checked first, so no link inside leads the copy out of it."""
    from vitdeploy.formats.coreml import check_package_tree

    check_package_tree(model)
    return sorted(p.relative_to(model) for p in model.rglob("*") if p.is_file())


def check_bundle_id(bundle_id: str) -> str:
    """A reverse-DNS id Xcode accepts (letters, digits, hyphens; two parts at least)."""
    if not isinstance(bundle_id, str) or not _BUNDLE_RE.match(bundle_id):
        raise VitdeployError(f"bad iOS bundle id {bundle_id!r}: use reverse-DNS letters, digits, '-' and '.', "
                             "e.g. com.yourname.vitdeploy-harness")
    return bundle_id


def plan_ios(*, udid: str, request: HarnessRequest, local_dir: Path, model_path: Path, out_dir: Path,
             derived_data: Path, team: str | None = None, project: Path = PROJECT,
             timeout_s: float = 1800, bundle_id: str = BUNDLE_ID) -> tuple[list[Step], list[Step]]:
    """The exact commands before and after the harness writes its result.

    Returns (run_steps, fetch_steps_for_result_json); output tensors are fetched
    with `copy_from` once result.json names them.
    """
    remote = f"{REMOTE_ROOT}/{request.request_id}"
    common = ["-project", str(project), "-scheme", SCHEME, "-destination", f"id={udid}",
              "-derivedDataPath", str(derived_data)]
    # -allowProvisioningDeviceRegistration: a phone not yet in the team's device list is added
    # while signing, instead of failing with "no profiles for ... were found".
    signing = ["-allowProvisioningUpdates", "-allowProvisioningDeviceRegistration",
               f"{BUNDLE_SETTING}={check_bundle_id(bundle_id)}"] + ([f"DEVELOPMENT_TEAM={team}"] if team else [])
    app = derived_data / "Build" / "Products" / "Debug-iphoneos" / f"{SCHEME}.app"
    steps = [
        Step("build the harness", ["xcodebuild", "build-for-testing", *common, *signing], timeout=1800),
        Step("install the harness app", ["xcrun", "devicectl", "device", "install", "app", "--device", udid, str(app)]),
    ]
    uploads = [(local_dir / "request.json", "request.json")]
    uploads += [(local_dir / t.file, t.file) for t in request.inputs]
    if model_path.is_dir():  # an .mlpackage: devicectl copies files, so each one goes on its own
        uploads += [(model_path / rel, f"{request.model}/{rel.as_posix()}") for rel in _mlpackage_files(model_path)]
    else:  # a .pte is one file
        uploads.append((model_path, request.model))
    for src, rel in uploads:
        steps.append(Step(f"copy {rel} to the phone", copy_to(udid, src, f"{remote}/{rel}", bundle_id)))
    steps.append(Step("run the harness", [
        "xcodebuild", "test-without-building", *common, f"-only-testing:{TEST_ID}",
        "-resultBundlePath", str(out_dir / f"{request.request_id}.xcresult"),
    ], env={f"TEST_RUNNER_{REQUEST_ENV}": f"{remote}/request.json"}, timeout=timeout_s))
    fetch = [Step("copy result.json from the phone",
                  copy_from(udid, f"{remote}/result.json", out_dir / "result.json", bundle_id))]
    return steps, fetch


def copy_to(udid: str, local: Path, remote: str, bundle_id: str = BUNDLE_ID) -> list[str]:
    return ["xcrun", "devicectl", "device", "copy", "to", "--device", udid, "--domain-type", "appDataContainer",
            "--domain-identifier", bundle_id, "--source", str(local), "--destination", remote]


def copy_from(udid: str, remote: str, local: Path, bundle_id: str = BUNDLE_ID) -> list[str]:
    return ["xcrun", "devicectl", "device", "copy", "from", "--device", udid, "--domain-type", "appDataContainer",
            "--domain-identifier", bundle_id, "--source", remote, "--destination", str(local)]


# -- the driver --------------------------------------------------------------------------

Runner = Callable[[Step], subprocess.CompletedProcess]


def _run_step(step: Step) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(step.argv, capture_output=True, text=True, errors="replace", timeout=step.timeout,
                              stdin=subprocess.DEVNULL, env={**os.environ, **step.env})
    except FileNotFoundError:
        raise VitdeployError(f"{step.argv[0]} is not installed (xcode-select --install; iPhone profiling needs "
                             f"macOS with Xcode 15+); {without_a_phone()}") from None
    except subprocess.TimeoutExpired:
        raise VitdeployError(f"{step.what} timed out after {step.timeout:g} s") from None


def _check(step: Step, runner: Runner) -> None:
    p = runner(step)
    if p.returncode != 0:
        lines = [ln for ln in (p.stderr or p.stdout or "").strip().splitlines() if ln.strip()]
        hint = " (set a signing team with --team / VITDEPLOY_IOS_TEAM)" if "signing" in " ".join(lines).lower() else ""
        raise VitdeployError(f"{step.what} failed: {lines[-1].strip() if lines else 'exit ' + str(p.returncode)}{hint}")


def pte_units(model_path: Path, compute_units: Sequence[str] | None) -> tuple[list[str], list[int]]:
    """The compute units to time a .pte with, checked against its delegates, and its input shape.

    Default: coreml for a .pte lowered with the Core ML delegate, cpu (XNNPACK) otherwise; a unit the
    program cannot honour is a one-line error here, before Xcode is started.
    """
    from vitdeploy.formats.executorch import COREML_BACKEND, forward_of, unit_mismatch

    fwd = forward_of(model_path)
    units = list(compute_units) if compute_units is not None else (
        ["coreml"] if COREML_BACKEND in fwd["delegates"] else ["cpu"])
    allowed = PTE_COMPUTE_UNITS["ios"]
    bad = [u for u in units if u not in allowed]
    if bad:
        raise VitdeployError(f"unknown iOS compute unit for a .pte {bad[0]!r}; choose from {', '.join(allowed)}")
    for u in units:
        why = unit_mismatch("ios", u, fwd["delegates"])
        if why:
            raise VitdeployError(f"{model_path.name}: {why}")
    first = fwd["inputs"][0] if fwd["inputs"] else {"dtype": None}
    if first["dtype"] != "float32":
        raise VitdeployError(f"{model_path.name}: the harness feeds a .pte float32 tensors; forward's first input is "
                             f"{first['dtype'] or 'not a tensor'}")
    return units, first["shape"]


def profile_ios(model_path, *, udid: str | None = None, device: str | None = None, runs: int = 50,
                warmup: int = 5, compute_units: Sequence[str] | None = None, input_array=None,
                input_shape: Sequence[int] | None = None, timeout_s: float = 1800, team: str | None = None,
                project: Path = PROJECT, work_dir: Path | None = None, platform: str = sys.platform,
                runner: Runner = _run_step, bundle_id: str | None = None) -> dict:
    """Time an .mlpackage (each Core ML compute unit) or a .pte (cpu / coreml) on an iPhone.

    ``compute_units`` default: all four Core ML units for an .mlpackage; see :func:`pte_units` for a .pte.

    ``bundle_id`` (default: $VITDEPLOY_IOS_BUNDLE_ID, else com.vitdeploy.harness): the harness app's
    id, which must be unique to your signing team.
    """
    import numpy as np

    if platform != "darwin":
        raise VitdeployError("profiling on iPhone needs macOS with Xcode (this is "
                             f"{'Linux' if platform.startswith('linux') else platform}): run it on a Mac; "
                             + without_a_phone(model_path))
    if runner is _run_step and not shutil.which("xcrun"):
        raise VitdeployError("xcrun is not installed (xcode-select --install; iPhone profiling needs Xcode 15+ for "
                             "devicectl); " + without_a_phone(model_path))
    model_path = Path(model_path)
    fmt = format_of(model_path) if model_path.suffix in MODEL_SUFFIXES["ios"] else None  # as the harness spells it
    if fmt is None or not fmt.accepts(model_path):
        if fmt is not None and not fmt.folder:
            raise VitdeployError(f"model not found: {model_path}")
        raise VitdeployError(f"iPhone profiling needs an .mlpackage directory or a .pte file, got {model_path}")
    pte = is_pte(model_path)
    bundle_id = check_bundle_id(bundle_id or os.environ.get(BUNDLE_ENV) or BUNDLE_ID)
    if pte:
        compute_units, shape = pte_units(model_path, compute_units)
        first = {"name": "input", "kind": "multiArray", "shape": shape}
    else:
        compute_units = list(compute_units) if compute_units is not None else list(IOS_COMPUTE_UNITS)
        first = _first_input(model_path, input_array, input_shape)
    if first["kind"] == "image":
        tensor = image_pixels(input_array, first)
    else:
        if input_array is None:
            input_array = np.random.default_rng(0).standard_normal(tuple(first["shape"])).astype(np.float32)
        tensor = np.ascontiguousarray(input_array, dtype=np.float32)
    chosen = _choose_ios(list_connected_ios(platform=platform), udid, device)
    team = team or os.environ.get("VITDEPLOY_IOS_TEAM")
    work = Path(work_dir or tempfile.mkdtemp(prefix="ios-", dir=scratch_dir()))  # removed with the scratch folder
    local_dir, out_dir = work / "request", work / "out"
    local_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = [write_tensor(local_dir / "input0.bin", tensor)]
    try:
        request = HarnessRequest(platform="ios", model=model_path.name, inputs=inputs, compute_units=list(compute_units),
                                 runs=runs, warmup=warmup, threads=[1], request_id=new_request_id())
    except ProtocolError as e:
        raise VitdeployError(str(e).replace("harness request: ", "")) from None
    (local_dir / "request.json").write_text(request.dumps())
    steps, fetch = plan_ios(udid=chosen["udid"], request=request, local_dir=local_dir, model_path=model_path,
                            out_dir=out_dir, derived_data=work / "DerivedData", team=team, project=project,
                            timeout_s=timeout_s, bundle_id=bundle_id)
    for step in steps + fetch:
        _check(step, runner)
    try:
        result = HarnessResult.read(out_dir / "result.json", request,
                                    name=f"{REMOTE_ROOT}/{request.request_id}/result.json")
    except (OSError, ProtocolError) as e:
        raise VitdeployError(f"bad result from the iOS harness: {e}") from None
    remote = f"{REMOTE_ROOT}/{request.request_id}"
    configs = []
    for c in result.configs:
        outs = []
        if c.ok:
            for t in c.outputs:
                _check(Step(f"copy {t.file} from the phone", copy_from(chosen["udid"], f"{remote}/{t.file}",
                                                                         out_dir / t.file, bundle_id)), runner)
                outs.append(read_tensor(out_dir, t))
        configs.append({"name": c.name, "compute_unit": c.compute_unit, "status": c.status, "error": c.error,
                        "load_ms": c.load_ms, "init_ms": c.init_ms, "first_inference_ms": c.first_inference_ms,
                        "latencies_ms": c.latencies_ms,
                        "median_ms": float(np.median(c.latencies_ms)) if c.latencies_ms else None,
                        "peak_memory_kb": c.peak_memory_kb, "outputs": outs,
                        "op_placement": [vars(o) for o in c.op_placement] if c.op_placement else None})
    ok = [c for c in configs if c["status"] == "ok"]
    if not ok:
        why = result.error or "; ".join(f"{c['name']}: {c['error']}" for c in configs)
        raise VitdeployError(f"the harness could not run {model_path.name} on {chosen['udid']}: {why}")
    return {"platform": "ios", "serial": chosen["udid"], "catalog": chosen.get("catalog"),
            "device": {**chosen, **result.device}, "request": request.to_json(), "result": result.to_json(),
            "configs": configs, "output": ok[0]["outputs"][0]}


def _first_input(model_path: Path, input_array, input_shape) -> dict:
    """The model's first input; without coremltools, an explicit array or shape is taken as a multi-array."""
    if input_shape is not None and input_array is None:
        return {"name": "input", "kind": "multiArray", "shape": list(input_shape)}
    try:
        return mlpackage_input(model_path)
    except VitdeployError:
        if input_array is None:
            raise
        return {"name": "input", "kind": "multiArray", "shape": list(getattr(input_array, "shape", []))}


def image_pixels(array, spec: dict):
    """uint8 [H, W, C] pixels for an image input: RGB order (grayscale: one channel), 0..255.

    Accepts [H, W, C], [1, H, W, C] or NCHW [1, C, H, W] arrays (uint8 or float 0..255); no array
    gives a fixed random image. The harness reorders to the pixel buffer's BGRA itself.
    """
    import numpy as np

    h, w, c = spec["shape"]
    if array is None:
        return np.random.default_rng(0).integers(0, 256, size=(h, w, c), dtype=np.uint8)
    a = np.asarray(array)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.shape == (c, h, w) and a.shape != (h, w, c):
        a = a.transpose(1, 2, 0)
    if a.shape != (h, w, c):
        raise VitdeployError(f"image input {spec['name']} takes {w}x{h} {spec['color']} pixels ([{h}, {w}, {c}]); "
                             f"got an array of shape {list(np.asarray(array).shape)}")
    if a.dtype != np.uint8:
        if a.size and (np.nanmin(a) < 0 or np.nanmax(a) > 255):
            raise VitdeployError(f"image input {spec['name']} takes pixels 0..255; got values "
                                 f"{float(np.nanmin(a)):.3g}..{float(np.nanmax(a)):.3g} (pass the image, not a "
                                 "normalized tensor)")
        a = np.round(a).astype(np.uint8)
    return np.ascontiguousarray(a)


def without_a_phone(model_path=None) -> str:
    """What checks an iOS model here when no iPhone can be driven."""
    name = Path(model_path).name if model_path else "MODEL"
    return (f"without one, `vitdeploy parity {name} --checkpoint CKPT` checks its numerics on this host, and "
            f"`vitdeploy profile {name} --farm aws --devices NAME` times it on a hosted iPhone")


def _choose_ios(devices: list[dict], udid: str | None, device: str | None) -> dict:
    listing = ", ".join(f"{d['udid']} ({d.get('model')})" for d in devices)
    if udid:
        for d in devices:
            if d["udid"] == udid:
                if d.get("state") != "device":
                    raise VitdeployError(f"iPhone {udid} is {d.get('state')}: unlock it and trust this Mac")
                return d
        raise VitdeployError(f"no iPhone with UDID {udid}; attached: {listing or 'none'}")
    if not devices:
        raise VitdeployError("no iPhone connected: plug it in, unlock it and trust this Mac (check `xcrun devicectl list devices`)")
    matches = [d for d in devices if (device is None or d.get("catalog") == device) and d.get("state") == "device"]
    if not matches:
        raise VitdeployError(f"no connected {device}; attached: {listing}")
    if len(matches) > 1:
        raise VitdeployError(f"{len(matches)} iPhones attached ({listing}): pick one by UDID")
    return matches[0]
