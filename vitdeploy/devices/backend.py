"""One device interface: every place a latency comes from (a phone on this machine, a hosted farm) is a
``DeviceBackend``, chosen by name from a registry (like timm's models), never by an if/elif.

A local backend (adb, devicectl) runs one harness request and returns when it is done. A remote backend
(AWS Device Farm, Qualcomm AI Hub) submits without blocking and is polled; what it submitted is a
``Submission``, a JSON-able record that `vitdeploy farm status|collect|cancel` reads back from the state
folder after Ctrl-C, a crash or ``--no-wait``. Every backend's results become ``LatencyRecord`` rows: one per
(backend, device, OS, runtime, compute units, threads, repeat), with the raw latencies kept.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

from ..errors import VitdeployError

# The harness's own numbers vs a farm's own profiler (AI Hub): never presented as if from our harness.
SOURCE_HARNESS = "vitdeploy-harness"
SOURCE_QAI_HUB = "qai-hub-profiler"

# Submission states, farm-neutral (each backend maps its own statuses onto these).
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL_STATES = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class DeviceRef:
    """A device a backend can run on: ``id`` is what the backend needs (serial, UDID, farm ARN, AI Hub name)."""

    backend: str
    id: str
    name: str
    platform: str  # "android" | "ios"
    os: str | None = None
    soc: str | None = None  # from the device catalog where the name is known
    vendor: str | None = None  # SoC vendor: Qualcomm, Samsung, Google, MediaTek, Apple
    available: bool = True

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "DeviceRef":
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})

    @classmethod
    def named(cls, backend: str, id: str, name: str, platform: str, *, os: str | None = None,  # noqa: A002
              soc: str | None = None, model_id: str | None = None, available: bool = True) -> "DeviceRef":
        """A DeviceRef whose SoC and vendor come from the device catalog (``catalog.soc_of``): ``soc`` as the
        farm reports it wins, else the farm's name ("Google Pixel 7") or a Samsung model code in it or in
        ``model_id`` ("SM-S921U": the Snapdragon S24) picks the chip."""
        from .catalog import soc_of

        soc, vendor = soc_of(name, soc=soc, model_id=model_id)
        return cls(backend=backend, id=id, name=name, platform=platform, os=os, soc=soc, vendor=vendor,
                   available=available)


@dataclass(frozen=True)
class ProfileRequest:
    """What to measure, the same for every backend; ``options`` holds a backend's own inputs
    (e.g. ``harness_apk``, ``xctestrun`` for AWS; ``compute_unit`` for AI Hub)."""

    model: Path
    runs: int = 50
    warmup: int = 5
    threads: tuple[int, ...] = (1, 4)
    compute_units: tuple[str, ...] | None = None
    repeat: int = 1  # whole harness runs per device (repeats that disagree flag the result unstable)
    options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["model"] = str(self.model)
        d["threads"], d["compute_units"] = list(self.threads), (list(self.compute_units)
                                                                if self.compute_units is not None else None)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ProfileRequest":
        units = d.get("compute_units")
        return cls(model=Path(d["model"]), runs=int(d["runs"]), warmup=int(d["warmup"]),
                   threads=tuple(int(t) for t in d["threads"]), compute_units=tuple(units) if units else None,
                   repeat=int(d.get("repeat", 1)), options=dict(d.get("options") or {}))


@dataclass
class Submission:
    """A remote run in flight: enough to poll, collect or cancel it from another process."""

    id: str
    backend: str
    request: ProfileRequest
    devices: list[DeviceRef]
    status: str = QUEUED
    created_s: float = 0.0
    state: dict = field(default_factory=dict)  # the backend's own handles (ARNs, job ids), JSON-able
    per_device: dict = field(default_factory=dict)  # device id -> {"status", "queue_s", "error", "url"}

    def to_json(self) -> dict:
        return {"id": self.id, "backend": self.backend, "request": self.request.to_json(),
                "devices": [d.to_json() for d in self.devices], "status": self.status, "created_s": self.created_s,
                "state": self.state, "per_device": self.per_device}

    @classmethod
    def from_json(cls, d: dict) -> "Submission":
        return cls(id=str(d["id"]), backend=str(d["backend"]), request=ProfileRequest.from_json(d["request"]),
                   devices=[DeviceRef.from_json(x) for x in d["devices"]], status=str(d["status"]),
                   created_s=float(d.get("created_s", 0.0)), state=dict(d.get("state") or {}),
                   per_device=dict(d.get("per_device") or {}))


@dataclass
class LatencyRecord:
    """One measured configuration on one device; ``error`` set (and no latencies) where it did not report."""

    backend: str
    device: str
    platform: str
    model: str
    runtime: str  # "tflite", "executorch", "coreml"
    compute_units: str
    threads: int | None
    repeat: int
    source: str = SOURCE_HARNESS
    soc: str | None = None
    vendor: str | None = None
    os: str | None = None
    latencies_ms: list[float] = field(default_factory=list)
    load_ms: float | None = None
    peak_memory_mb: float | None = None
    thermal: dict | None = None  # e.g. {"before": "none", "after": "light", "cpu_khz_before": [...], ...}
    queue_s: float | None = None
    url: str | None = None  # the farm's job page
    error: str | None = None
    # AI Hub's per-layer detail summarized: layer count per compute unit, e.g. {"NPU": 212, "CPU": 3}.
    layers_by_unit: dict | None = None

    @property
    def median_ms(self) -> float | None:
        return _quantile(self.latencies_ms, 0.5)

    @property
    def p90_ms(self) -> float | None:
        return _quantile(self.latencies_ms, 0.9)

    @property
    def cv(self) -> float | None:
        """Coefficient of variation (std / mean) of the raw latencies."""
        xs = self.latencies_ms
        if len(xs) < 2:
            return None
        mean = sum(xs) / len(xs)
        return math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) / mean if mean > 0 else None

    def to_json(self) -> dict:
        return {**asdict(self), "median_ms": self.median_ms, "p90_ms": self.p90_ms, "cv": self.cv}


def _quantile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@runtime_checkable
class DeviceBackend(Protocol):
    """What every backend offers. Local backends implement ``run``; remote ones ``submit``/``poll``/
    ``collect``/``cancel`` (``remote`` says which)."""

    name: str
    remote: bool

    def list_devices(self, platform: str | None = None) -> list[DeviceRef]: ...

    def resolve(self, names: Sequence[str], *, platform: str | None = None,
                max_devices: int | None = None) -> list[DeviceRef]: ...


class LocalBackend(DeviceBackend, Protocol):
    def run(self, request: ProfileRequest, device: DeviceRef) -> dict: ...


class RemoteBackend(DeviceBackend, Protocol):
    """A farm. Optionally also ``dry_run(request, names, *, platform=None, max_devices=None) -> dict``: what
    would be uploaded and run (the generated test spec, the payload), with no credentials and no network;
    ``vitdeploy profile --farm NAME --dry-run`` prints it (without it, the request and the names)."""

    def submit(self, request: ProfileRequest, devices: Sequence[DeviceRef]) -> Submission: ...

    def poll(self, submission: Submission) -> Submission: ...

    def collect(self, submission: Submission) -> list[LatencyRecord]: ...

    def cancel(self, submission: Submission) -> None: ...


_BACKENDS: dict[str, Callable[..., DeviceBackend]] = {}


def register_backend(name: str):
    """Class or factory decorator: ``@register_backend("aws")``."""

    def deco(factory):
        _BACKENDS[name] = factory
        return factory

    return deco


def backend_names() -> list[str]:
    _import_builtin_backends()
    return sorted(_BACKENDS)


def get_backend(name: str, **kwargs) -> DeviceBackend:
    """The registered backend ``name``, built with ``kwargs`` (e.g. a client for tests)."""
    _import_builtin_backends()
    try:
        factory = _BACKENDS[name]
    except KeyError:
        raise VitdeployError(f"unknown device backend {name!r}; choose from {', '.join(sorted(_BACKENDS))}") from None
    return factory(**kwargs)


def _import_builtin_backends() -> None:
    """Registering modules are imported on first use (their heavy clients stay lazy inside them)."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


# Each module registers its backend(s) on import; new ones add a line here.
_BUILTIN_MODULES: list[str] = ["vitdeploy.devices.local", "vitdeploy.devices.farms.aws",
                               "vitdeploy.devices.farms.qaihub"]
