"""The phones on this machine as device backends: ``android`` (adb) and ``ios`` (xcodebuild/devicectl).

Thin wrappers over :func:`vitdeploy.devices.android.profile_android` and
:func:`vitdeploy.devices.ios.profile_ios`: ``run()`` returns exactly what those return (timings, outputs,
the harness request and result), so ``vitdeploy profile --device pixel7|SERIAL`` behaves as before; it
only finds the driver through the registry (``get_backend(platform)``) instead of an if/elif.
:func:`records_from_result` turns that result into :class:`~vitdeploy.devices.backend.LatencyRecord` rows,
the schema farm results share.

Per-run inputs travel in ``ProfileRequest.options``: ``input_array`` (numpy), ``timeout_s``,
``harness_apks`` (Android), ``team`` / ``bundle_id`` (iOS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from vitdeploy.devices.backend import DeviceRef, LatencyRecord, ProfileRequest, SOURCE_HARNESS, register_backend
from vitdeploy.devices.catalog import lookup, soc_of
from vitdeploy.errors import VitdeployError


def _ref(backend: str, d: dict) -> DeviceRef:
    """A DeviceRef for one discovered phone (a dict of list_connected_android / list_connected_ios)."""
    spec = lookup(d["catalog"]) if d.get("catalog") else None
    name = (spec.marketing_name if spec else None) or d.get("model") or d.get("name") or d.get("serial") or d.get("udid")
    soc, vendor = soc_of(name, soc=d.get("soc") or (spec.soc if spec else None))
    return DeviceRef(backend=backend, id=d.get("serial") or d.get("udid"), name=name, platform=backend,
                     os=d.get("android_version") or d.get("ios_version"), soc=soc, vendor=vendor,
                     available=d.get("state") == "device")


def _resolve(backend, names: Sequence[str], platform: str | None, max_devices: int | None) -> list[DeviceRef]:
    """Attached phones by serial/UDID, catalog name (pixel7) or marketing name; all usable ones for no names."""
    if platform not in (None, backend.name):
        return []
    attached = backend.list_devices()
    if not names:
        found = [d for d in attached if d.available]
    else:
        found = []
        for n in names:
            spec = lookup(n)
            hits = [d for d in attached if n == d.id or (spec is not None and lookup(d.name) == spec)]
            if not hits:
                raise VitdeployError(f"no connected {backend.name} phone matches {n!r}; attached: "
                                     f"{', '.join(f'{d.id} ({d.name})' for d in attached) or 'none'}")
            found += [d for d in hits if d not in found]
    return found[:max_devices] if max_devices else found


@register_backend("android")
class LocalAndroid:
    """Android phones attached over adb (``server_socket``: e.g. tcp:127.0.0.1:5037, another adb server)."""

    name = "android"
    remote = False

    def __init__(self, adb: str = "adb", server_socket: str | None = None) -> None:
        self.adb, self.server_socket = adb, server_socket

    def list_devices(self, platform: str | None = None) -> list[DeviceRef]:
        from vitdeploy.devices.android import list_connected_android

        if platform not in (None, self.name):
            return []
        return [_ref(self.name, d) for d in list_connected_android(self.adb, server_socket=self.server_socket)]

    def resolve(self, names: Sequence[str], *, platform: str | None = None,
                max_devices: int | None = None) -> list[DeviceRef]:
        return _resolve(self, names, platform, max_devices)

    def run(self, request: ProfileRequest, device: DeviceRef) -> dict:
        """``profile_android`` on ``device``: by serial when ``device.id`` is set, else by catalog name
        (``device.name``, e.g. pixel7: the one such phone attached)."""
        from vitdeploy.devices.android import profile_android

        o = request.options
        return profile_android(request.model, serial=device.id or None, device=None if device.id else device.name,
                               runs=request.runs, warmup=request.warmup, threads=request.threads,
                               delegates=list(request.compute_units) if request.compute_units else None,
                               input_array=o.get("input_array"), timeout_s=o.get("timeout_s", 600), adb=self.adb,
                               server_socket=self.server_socket, harness_apks=o.get("harness_apks", ()))


@register_backend("ios")
class LocalIOS:
    """iPhones attached to this Mac (Xcode). ``adb``/``server_socket`` are Android's and ignored here: every
    local backend is built with the same keywords."""

    name = "ios"
    remote = False

    def __init__(self, adb: str | None = None, server_socket: str | None = None) -> None:
        del adb, server_socket

    def list_devices(self, platform: str | None = None) -> list[DeviceRef]:
        from vitdeploy.devices.ios import list_connected_ios

        if platform not in (None, self.name):
            return []
        return [_ref(self.name, d) for d in list_connected_ios()]

    def resolve(self, names: Sequence[str], *, platform: str | None = None,
                max_devices: int | None = None) -> list[DeviceRef]:
        return _resolve(self, names, platform, max_devices)

    def run(self, request: ProfileRequest, device: DeviceRef) -> dict:
        from vitdeploy.devices.ios import profile_ios

        o = request.options
        return profile_ios(request.model, udid=device.id or None, device=None if device.id else device.name,
                           runs=request.runs, warmup=request.warmup,
                           compute_units=list(request.compute_units) if request.compute_units else None,
                           input_array=o.get("input_array"), timeout_s=max(o.get("timeout_s", 600), 1800),
                           team=o.get("team"), bundle_id=o.get("bundle_id"))


def runtime_of(model: str | Path) -> str:
    """What a record says ran ``model``: its format's name (``tflite``), else its suffix."""
    from vitdeploy.formats import format_of

    fmt = format_of(model)
    return fmt.name if fmt is not None else (Path(model).suffix.lstrip(".") or "?")


def records_from_result(result: dict, *, backend: str | None = None, model: str | Path | None = None,
                        repeat: int = 0, device: DeviceRef | None = None, queue_s: float | None = None,
                        url: str | None = None) -> list[LatencyRecord]:
    """One LatencyRecord per config of a harness run (what ``LocalBackend.run`` returns, or a farm's
    parsed result): the raw latencies from the harness, load time, peak memory, and the thermal state /
    CPU frequencies where the result's device info has them. A config that failed is a record with
    ``error`` set and no latencies."""
    info = dict(result.get("device") or {})
    harness_device = dict((result.get("result") or {}).get("device") or {})
    platform = result.get("platform") or info.get("platform") or (device.platform if device else "?")
    model = str(model if model is not None else result.get("model") or (result.get("request") or {}).get("model"))
    name = device.name if device else (info.get("model") or result.get("catalog") or result.get("serial") or "?")
    soc, vendor = soc_of(name, soc=(device.soc if device else None) or info.get("soc"))
    if device and device.vendor and not vendor:
        vendor = device.vendor
    thermal = {k: v for k, v in {**info, **harness_device}.items()
               if k.startswith(("thermal", "cpu_max_freq", "cpu_cur_freq", "cpu_khz", "battery_temp"))} or None
    os_version = (device.os if device else None) or info.get("android_version") or info.get("ios_version") \
        or info.get("os_version")
    records = []
    for c in result.get("configs", []):
        mem = c.get("peak_memory_kb")
        ok = c.get("status") == "ok"
        records.append(LatencyRecord(
            backend=backend or (device.backend if device else platform), device=name, platform=platform, model=model,
            runtime=runtime_of(model), compute_units=c.get("compute_unit") or "?", threads=c.get("threads"),
            repeat=repeat, source=SOURCE_HARNESS, soc=soc, vendor=vendor, os=os_version,
            latencies_ms=[float(x) for x in c.get("latencies_ms") or []] if ok else [],
            load_ms=c.get("load_ms"), peak_memory_mb=round(mem / 1024, 3) if mem is not None else None,
            thermal=thermal, queue_s=queue_s, url=url,
            error=None if ok else (c.get("error") or c.get("status") or "failed")))
    return records
