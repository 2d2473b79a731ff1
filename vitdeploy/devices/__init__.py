"""Devices: the catalog, discovery of attached phones, the host, and on-device profiling.

Public API (the CLI wires these):
  list_devices()              -> JSON-able dict for `vitdeploy devices [--json]`
  resolve_device(name|serial) -> ResolvedDevice for `vitdeploy profile --device ...`
  profile_android(...)        -> timings + outputs from the Android harness (android.py)
  profile_ios(...)            -> timings + outputs from the iOS harness (ios.py, macOS only)
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from vitdeploy.devices.android import profile_android
from vitdeploy.errors import VitdeployError
from vitdeploy.devices import catalog
from vitdeploy.devices.catalog import CATALOG, DeviceSpec, ResolvedDevice, get_device, lookup
from vitdeploy.devices.ios import profile_ios

# ISA extensions that change which XNNPACK kernels the host runs.
_INTERESTING_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                      "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
                      "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2", "fphp", "asimdhp")


def host_info() -> dict:
    """CPU model, cores, ISA flags (avx512, vnni, ...) and memory of this machine."""
    info = {"platform": "host", "os": platform.system(), "os_version": platform.release(),
            "machine": platform.machine(), "cpu_model": platform.processor() or None,
            "logical_cores": os.cpu_count(), "physical_cores": None, "isa_flags": [], "memory_gb": None}
    if sys.platform.startswith("linux"):
        info.update(_linux_cpu())
    elif sys.platform == "darwin":
        info.update(_mac_cpu())
    return info


def _linux_cpu() -> dict:
    out: dict = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    model = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", text, re.M)
    if model:
        out["cpu_model"] = model.group(1).strip()
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
    if flags:
        have = set(flags.group(1).split())
        out["isa_flags"] = [f for f in _INTERESTING_FLAGS if f in have]
    cores = {(m.group(1), m.group(2)) for m in re.finditer(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, re.S)}
    if cores:
        out["physical_cores"] = len(cores)
    try:
        mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        if mem:
            out["memory_gb"] = round(int(mem.group(1)) / 1024 / 1024, 1)
    except OSError:
        pass
    return out


def _mac_cpu() -> dict:
    def sysctl(key: str) -> str | None:
        try:
            p = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    mem = sysctl("hw.memsize")
    cores = sysctl("hw.physicalcpu")
    flags = [k.split(".")[-1].lower() for k in ("hw.optional.arm.FEAT_DotProd", "hw.optional.arm.FEAT_I8MM",
                                                "hw.optional.arm.FEAT_BF16") if sysctl(k) == "1"]
    return {"cpu_model": sysctl("machdep.cpu.brand_string"), "physical_cores": int(cores) if cores else None,
            "memory_gb": round(int(mem) / 2**30, 1) if mem else None, "isa_flags": flags}


def discover_connected(adb: str = "adb", notes: list | None = None, server_socket: str | None = None) -> list[dict]:
    """Every attached Android phone and iPhone (each dict has platform, serial or udid, catalog)."""
    from vitdeploy.devices.android import list_connected_android
    from vitdeploy.devices.ios import list_connected_ios

    return (list_connected_android(adb, notes=notes, server_socket=server_socket)
            + list_connected_ios(notes=notes))


def resolve_device(name_or_serial: str, connected: list[dict] | None = None) -> ResolvedDevice:
    """A catalog name (pixel7, iphone12, host) or a connected serial/UDID; attached phones are listed
    only when the name is not in the catalog and ``connected`` is None."""
    return catalog.resolve_device(name_or_serial, discover_connected if connected is None else connected)


def list_devices(adb: str = "adb", server_socket: str | None = None) -> dict:
    """All of it as one JSON-able dict: host, attached phones, catalog, and notes about missing tools."""
    from vitdeploy.devices.android import list_connected_android
    from vitdeploy.devices.ios import list_connected_ios

    notes: list[str] = []
    return {
        "host": host_info(),
        "android": list_connected_android(adb, notes=notes, server_socket=server_socket),
        "ios": list_connected_ios(notes=notes),
        "catalog": [spec.to_json() for spec in CATALOG],
        "notes": notes,
    }


def format_devices(listing: dict) -> str:
    """The human-readable `vitdeploy devices` output for a list_devices() dict."""
    h = listing["host"]
    lines = [f"host: {h.get('cpu_model') or h.get('machine')}, {h.get('physical_cores') or '?'} cores "
             f"({h.get('logical_cores')} threads), {h.get('memory_gb') or '?'} GB"
             + (f", {' '.join(h['isa_flags'])}" if h.get("isa_flags") else "")]
    phones = listing["android"] + listing["ios"]
    lines.append("connected:" if phones else "connected: none")
    for d in phones:
        ident = d.get("serial") or d.get("udid")
        what = d.get("model") or "?"
        extra = d.get("soc") or d.get("product_type") or ""
        version = d.get("android_version") or d.get("ios_version")
        lines.append(f"  {ident:<26} {d['platform']:<8} {d['state']:<13} {what}"
                     + (f" ({extra})" if extra else "") + (f", OS {version}" if version else "")
                     + (f"  -> --device {d['catalog']}" if d.get("catalog") else ""))
    lines.append("catalog (--device NAME):")
    for c in listing["catalog"]:
        units = ",".join(c["compute_units"])
        flag = "  W8A8 on ANE" if c.get("w8a8_ane") else ""
        lines.append(f"  {c['name']:<18} {c['platform']:<8} {c['marketing_name']:<18} {c['soc']:<30} {units}{flag}")
    lines += [f"note: {n}" for n in listing.get("notes", [])]
    return "\n".join(lines)


def profile_on_device(model_path, device: str, *, runs: int = 50, warmup: int = 5, threads=(1, 4),
                      compute_units=None, input_array=None, timeout_s: float = 600, harness_apks=(),
                      team: str | None = None, adb: str = "adb", server_socket: str | None = None,
                      bundle_id: str | None = None) -> dict:
    """`vitdeploy profile --device NAME|SERIAL|UDID`: resolve the device, then run its harness.

    compute_units defaults to every unit the platform has for the model (Android .tflite: xnnpack,
    gpu, nnapi; iOS .mlpackage: all four Core ML units; a .pte: cpu, or coreml on iOS for a program
    lowered with the Core ML delegate). `host` is not a phone: the caller runs
    the host runtime itself. `team` / `bundle_id`: iOS signing (default $VITDEPLOY_IOS_TEAM,
    $VITDEPLOY_IOS_BUNDLE_ID).
    """
    from vitdeploy.devices.backend import DeviceRef, ProfileRequest, get_backend
    from vitdeploy.formats import refuse_on_platform

    connected = None
    if lookup(device) is None:
        connected = discover_connected(adb, server_socket=server_socket)
    resolved = resolve_device(device, connected=connected)
    if resolved.platform == "host":
        raise VitdeployError("--device host is this computer, not a phone: profile it with the host runtime")
    refuse_on_platform(model_path, resolved.platform, device)
    # The local backend of the phone's platform ("android": adb, "ios": devicectl), from the registry.
    backend = get_backend(resolved.platform, adb=adb, server_socket=server_socket)
    ref = DeviceRef(backend=resolved.platform, id=resolved.serial or "", name=resolved.name,
                    platform=resolved.platform, soc=resolved.spec.soc if resolved.spec else None)
    request = ProfileRequest(model=Path(model_path), runs=runs, warmup=warmup, threads=tuple(threads),
                             compute_units=tuple(compute_units) if compute_units else None,
                             options={"input_array": input_array, "timeout_s": timeout_s,
                                      "harness_apks": tuple(harness_apks), "team": team, "bundle_id": bundle_id})
    return backend.run(request, ref)


__all__ = ["CATALOG", "DeviceSpec", "ResolvedDevice", "discover_connected", "format_devices", "get_device",
           "host_info", "list_devices", "lookup", "profile_android", "profile_ios", "profile_on_device",
           "resolve_device"]
