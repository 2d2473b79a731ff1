"""The harness protocol: what the host asks a harness app to run, and what it answers.

Both harness apps (android_harness/, ios_harness/) and the test emulator read a
request JSON and write a result JSON; docs/harness-protocol.md is the schema.
Tensors travel as raw little-endian bytes in `.bin` files plus a shape and a dtype
in the JSON, because Kotlin (ByteBuffer) and Swift (Data) read those without a
parser, unlike .npy.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitdeploy.devices.budget import (MAX_DEPTH, MAX_INT_DIGITS, REQUEST_MAX_BYTES, RESULT_MAX_BYTES, ProtocolError,
                                     parse_json, read_capped)
from vitdeploy.formats import FORMATS, PLATFORMS, format_of, platform_units, suffixes_on
from vitdeploy.untrusted import reading

PROTOCOL = "vitdeploy-harness"
VERSION = 1

# The compute units and the models each harness takes, read from the formats table: its platform's own format
# and an ExecuTorch .pte on both ("cpu" is ExecuTorch's XNNPACK delegate and portable kernels; "coreml" on iOS
# runs a .pte lowered with the Core ML delegate on the compute units chosen when it was lowered: ExecuTorch has
# no per-run switch for them). The host and both harnesses also check the unit against the .pte's delegates
# (formats.executorch.unit_mismatch), so "coreml" on a .pte without CoreMLBackend is refused, not silently
# timed on the CPU.
ANDROID_COMPUTE_UNITS = platform_units("android")
IOS_COMPUTE_UNITS = platform_units("ios")
COMPUTE_UNITS = {p: platform_units(p) for p in PLATFORMS}
MODEL_SUFFIXES = {p: suffixes_on(p) for p in PLATFORMS}
PTE_COMPUTE_UNITS = FORMATS["executorch"].compute_units
# The tensor types a harness feeds a format that takes fewer than INPUT_DTYPES: a .pte takes float32 tensors
# (Tensor.fromBlob(FloatArray) / Tensor<Float>).
FORMAT_INPUT_DTYPES = {"executorch": ("float32",)}
PTE_INPUT_DTYPES = FORMAT_INPUT_DTYPES["executorch"]
# Android compute units whose speed depends on the CPU thread count; others run once.
THREADED_UNITS = ("xnnpack", "cpu")

TENSOR_DTYPES = {"float32": 4, "float16": 2, "int32": 4, "int64": 8, "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
# Inputs travel in the model's own input type: float32, or the integer type of a quantized-input
# model (the host quantizes with the model's scale and zero point); on iOS uint8 also carries the
# pixels of an image input ([H, W, C], the harness builds the CVPixelBuffer).
INPUT_DTYPES = ("float32", "int8", "uint8", "int16")
OP_DEVICES = ("cpu", "gpu", "neuralEngine", "unknown")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A model's file name: the user's (spaces and quotes allowed), but no separator, control or format character.
_FILE_NAME = re.compile(r"^[^/\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]{1,255}$")
# A tensor file the host or a harness names (input0.bin, xnnpack-4t.output0.bin): nothing else to trust.
_TENSOR_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DEVICE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

# The budget of what a request/result says (the file's own budget is in devices/budget.py).
MAX_MS = 3_600_000.0  # one hour: no single load, init or inference takes longer
MAX_RUNS = 100_000
MAX_MEMORY_KB = 1 << 32  # 4 TiB
MAX_TENSOR_BYTES = 1 << 30
MAX_TENSOR_DIMS = 8
MAX_OUTPUTS = 64
MAX_OPS = 1_000_000
MAX_CPUS = 1024
MAX_TEXT = 256  # a name, an op, a device property
MAX_ERROR = 500  # an error message is cut here, with a marker saying how much was cut


def new_request_id() -> str:
    """A sortable id that is safe as a single path component on every device."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ProtocolError(f"{where}: {msg}")


def _short(v: Any, limit: int = 80) -> str:
    """``repr(v)`` for a message, cut at ``limit`` characters (a phone's value can be megabytes)."""
    text = repr(v)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(v: Any) -> bool:
    """A JSON integer: ``true`` is not 1, ``1.0`` is not 1."""
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    """A finite JSON number (``true`` is not a number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_text(v: Any, limit: int = MAX_TEXT) -> bool:
    return isinstance(v, str) and 0 < len(v) <= limit


def _opt_ms(d: dict, key: str, where: str) -> float | None:
    v = d.get(key)
    _require(v is None or (_is_num(v) and 0 <= v < MAX_MS), where,
             f"'{key}' must be a number of milliseconds in [0, {MAX_MS:.0f}) or null")
    return None if v is None else float(v)


def _error_text(v: Any, where: str, key: str = "error") -> str | None:
    """A harness's error message: a string or null, cut at MAX_ERROR characters with a marker."""
    _require(v is None or isinstance(v, str), where, f"'{key}' must be a string or null")
    if v is not None and len(v) > MAX_ERROR:
        return v[:MAX_ERROR] + f"... [{len(v) - MAX_ERROR} more characters]"
    return v


@dataclass
class TensorFile:
    """A tensor stored as raw little-endian bytes, row-major, in `file` (a bare name)."""

    file: str
    shape: list[int]
    dtype: str = "float32"

    @property
    def nbytes(self) -> int:
        n = TENSOR_DTYPES[self.dtype]
        for d in self.shape:
            n *= d
        return n

    @classmethod
    def from_json(cls, d: Any, where: str, dtypes=tuple(TENSOR_DTYPES)) -> "TensorFile":
        _require(isinstance(d, dict), where, "must be an object with file, shape, dtype")
        f = d.get("file")
        _require(isinstance(f, str) and bool(_TENSOR_FILE.match(f)) and f not in (".", ".."), where,
                 f"'file' must be a bare file name of [A-Za-z0-9._-] (at most 128), got {_short(f)}")
        shape = d.get("shape")
        _require(isinstance(shape, list) and 0 < len(shape) <= MAX_TENSOR_DIMS
                 and all(_is_int(s) and s > 0 for s in shape), where,
                 f"'shape' must be a list of positive integers (1 to {MAX_TENSOR_DIMS} of them), got {_short(shape)}")
        dtype = d.get("dtype", "float32")
        _require(isinstance(dtype, str) and dtype in dtypes, where,
                 f"'dtype' must be one of {', '.join(dtypes)}, got {_short(dtype)}")
        t = cls(file=f, shape=list(shape), dtype=dtype)
        _require(t.nbytes <= MAX_TENSOR_BYTES, where, f"a {shape} {dtype} tensor is over {MAX_TENSOR_BYTES >> 20} MiB")
        return t


class _Message:
    """A request or result file: JSON with ``protocol`` and ``version`` first."""

    def to_json(self) -> dict:
        d = asdict(self)
        return {"protocol": d.pop("protocol"), "version": d.pop("version"), **d}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"


@dataclass
class HarnessRequest(_Message):
    """What to run: one model, its inputs, and the configurations to time."""

    platform: str
    model: str
    inputs: list[TensorFile]
    compute_units: list[str]
    runs: int = 50
    warmup: int = 5
    threads: list[int] = field(default_factory=lambda: [1, 4])
    request_id: str = field(default_factory=new_request_id)
    output_dir: str | None = None
    protocol: str = PROTOCOL
    version: int = VERSION

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        w = "harness request"
        _require(isinstance(self.protocol, str) and self.protocol == PROTOCOL, w,
                 f"'protocol' must be {PROTOCOL!r}, got {_short(self.protocol)}")
        _require(_is_int(self.version) and self.version == VERSION, w,
                 f"unsupported 'version' {_short(self.version)} (this host speaks {VERSION})")
        _require(isinstance(self.request_id, str) and bool(_REQUEST_ID.match(self.request_id)), w,
                 f"'request_id' must be 1-64 chars of [A-Za-z0-9._-], got {_short(self.request_id)}")
        _require(isinstance(self.platform, str) and self.platform in COMPUTE_UNITS, w,
                 f"'platform' must be android or ios, got {_short(self.platform)}")
        ok_model = isinstance(self.model, str) and bool(_FILE_NAME.match(self.model)) and self.model not in (".", "..")
        _require(ok_model, w, f"'model' must be a bare file name next to request.json, got {_short(self.model)}")
        suffixes = MODEL_SUFFIXES[self.platform]
        fmt = format_of(self.model)
        _require(self.model.endswith(suffixes) and fmt is not None, w,  # the harnesses match the case too
                 f"the {self.platform} harness needs a {' or '.join(suffixes)} model, got {self.model!r}")
        _require(_is_int(self.runs) and self.runs >= 1, w, f"'runs' must be an integer >= 1, got {_short(self.runs)}")
        _require(_is_int(self.warmup) and self.warmup >= 0, w,
                 f"'warmup' must be an integer >= 0, got {_short(self.warmup)}")
        _require(self.runs <= MAX_RUNS and self.warmup <= MAX_RUNS, w, f"'runs' and 'warmup' are at most {MAX_RUNS}")
        _require(isinstance(self.threads, list) and bool(self.threads) and all(_is_int(t) and 1 <= t <= 64 for t in self.threads),
                 w, f"'threads' must be a non-empty list of integers 1..64, got {_short(self.threads)}")
        _require(len(set(self.threads)) == len(self.threads), w, "'threads' lists a count twice")
        allowed = fmt.compute_units[self.platform]
        own = allowed == COMPUTE_UNITS[self.platform]  # the platform's own format; else named by its suffix
        units = self.compute_units
        _require(isinstance(units, list) and bool(units), w, "'compute_units' must be a non-empty list")
        bad = [u for u in units if not isinstance(u, str) or u not in allowed]
        if bad:
            kind = self.platform if own else f"{self.platform} {fmt.suffix}"
            raise ProtocolError(f"{w}: unknown {kind} compute unit {_short(bad[0])}; choose from {', '.join(allowed)}")
        _require(len(set(units)) == len(units), w, "'compute_units' lists a unit twice")
        _require(isinstance(self.inputs, list) and 0 < len(self.inputs) <= MAX_OUTPUTS, w,
                 "'inputs' must list at least one tensor")
        _require(len({t.file for t in self.inputs if isinstance(t, TensorFile)}) == len(self.inputs), w,
                 "'inputs' name a file twice")
        for i, t in enumerate(self.inputs):
            _require(isinstance(t, TensorFile) and t.dtype in INPUT_DTYPES, f"{w} inputs[{i}]",
                     f"inputs must be one of {', '.join(INPUT_DTYPES)}")
            dtypes = FORMAT_INPUT_DTYPES.get(fmt.name, INPUT_DTYPES)
            _require(t.dtype in dtypes, f"{w} inputs[{i}]",
                     f"a {fmt.suffix} model takes {', '.join(dtypes)} inputs, got {t.dtype}")
        _require(self.output_dir is None or (isinstance(self.output_dir, str) and self.output_dir != ""),
                 w, "'output_dir' must be a non-empty path or null")

    def configs(self) -> list[dict]:
        """The configurations a harness runs, in order (docs/harness-protocol.md#configurations)."""
        return expand_configs(self.platform, self.compute_units, self.threads)


    @classmethod
    def from_json(cls, d: Any) -> "HarnessRequest":
        w = "harness request"
        _require(isinstance(d, dict), w, "must be a JSON object")
        known = {"protocol", "version", "request_id", "platform", "model", "inputs", "runs", "warmup",
                 "threads", "compute_units", "output_dir"}
        extra = sorted(set(d) - known)
        if extra:
            raise ProtocolError(f"{w}: unknown field {_short(extra[0])}")
        for key in ("protocol", "version", "platform", "model", "inputs", "compute_units"):
            _require(key in d, w, f"missing field {key!r}")
        inputs = d["inputs"]
        _require(isinstance(inputs, list), w, "'inputs' must be a list")
        kw = {k: d[k] for k in known - {"inputs"} if k in d}
        return cls(inputs=[TensorFile.from_json(t, f"{w} inputs[{i}]", INPUT_DTYPES) for i, t in enumerate(inputs)], **kw)

    @classmethod
    def loads(cls, text: str | bytes) -> "HarnessRequest":
        return cls.from_json(parse_json(text, "harness request", REQUEST_MAX_BYTES))

    @classmethod
    def read(cls, path: str | Path, name: str | None = None) -> "HarnessRequest":
        """Read and check a request file (at most REQUEST_MAX_BYTES); errors name ``name`` (default: path)."""
        return _named_file(lambda: cls.loads(read_capped(path, REQUEST_MAX_BYTES, "harness request")), path, name)


def expand_configs(platform: str, compute_units: list[str], threads: list[int]) -> list[dict]:
    """One config per (threaded unit, thread count) and one per other unit."""
    out = []
    for unit in compute_units:
        if platform == "android" and unit in THREADED_UNITS:
            out += [{"name": f"{unit}-{t}t", "compute_unit": unit, "threads": t} for t in threads]
        else:
            out.append({"name": unit, "compute_unit": unit, "threads": None})
    return out


@dataclass
class OpPlacement:
    """Where one op runs and what it costs (iOS MLComputePlan; null elsewhere)."""

    index: int
    op: str
    device: str
    supported: list[str]
    cost: float | None = None

    @classmethod
    def from_json(cls, d: Any, where: str) -> "OpPlacement":
        _require(isinstance(d, dict), where, "must be an object")
        _require(_is_int(d.get("index")) and 0 <= d["index"] < MAX_OPS, where,
                 f"'index' must be an integer in [0, {MAX_OPS})")
        _require(_is_text(d.get("op")) and d["op"].isprintable(), where,
                 f"'op' must be a non-empty printable string of at most {MAX_TEXT} characters")
        _require(isinstance(d.get("device"), str) and d["device"] in OP_DEVICES, where,
                 f"'device' must be one of {', '.join(OP_DEVICES)}")
        sup = d.get("supported", [])
        _require(isinstance(sup, list) and all(isinstance(s, str) and s in OP_DEVICES for s in sup)
                 and len(set(sup)) == len(sup), where, "'supported' must list devices, each once")
        cost = d.get("cost")
        _require(cost is None or (_is_num(cost) and cost >= 0), where, "'cost' must be a finite number >= 0 or null")
        return cls(index=d["index"], op=d["op"], device=d["device"], supported=list(sup),
                   cost=None if cost is None else float(cost))


@dataclass
class ConfigResult:
    """Timings and outputs of one configuration (or why it could not run)."""

    name: str
    compute_unit: str
    threads: int | None
    status: str
    error: str | None = None
    load_ms: float | None = None
    init_ms: float | None = None
    first_inference_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    peak_memory_kb: int | None = None
    outputs: list[TensorFile] = field(default_factory=list)
    op_placement: list[OpPlacement] | None = None
    # Android, threaded configs: {"requested": [cpu...], "pinned": bool, "mask": [cpu...], "error": str|null};
    # "mask" is what sched_getaffinity says afterwards, so an unpinned "1 thread, big core" figure shows.
    cpu_affinity: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_json(cls, d: Any, where: str, runs: int | None = None, expected: dict | None = None) -> "ConfigResult":
        """One config entry; ``runs`` and ``expected`` (the request's config of that name: compute unit,
        threads) hold it to what was asked, so a config nobody requested cannot pass as a timing."""
        _require(isinstance(d, dict), where, "must be an object")
        name = d.get("name")
        _require(_is_text(name, 64) and name.isprintable(), where,
                 "'name' must be a non-empty printable string of at most 64 characters")
        where = f"{where} ({name})"
        unit = d.get("compute_unit")
        _require(isinstance(unit, str) and unit in _ALL_UNITS, where,
                 f"'compute_unit' must be one of {', '.join(_ALL_UNITS)}, got {_short(unit)}")
        threads = d.get("threads")
        _require(threads is None or (_is_int(threads) and 1 <= threads <= 64), where,
                 "'threads' must be an integer 1..64 or null")
        if expected is not None:
            _require(unit == expected["compute_unit"], where,
                     f"ran on {unit!r}, but the request asked {expected['compute_unit']!r} for this config")
            _require(threads == expected["threads"], where,
                     f"ran with {threads} threads, but the request asked {expected['threads']} for this config")
        status = d.get("status")
        _require(isinstance(status, str) and status in ("ok", "error"), where,
                 f"'status' must be 'ok' or 'error', got {_short(status)}")
        err = _error_text(d.get("error"), where)
        _require(status == "ok" or bool(err), where, "a config with status 'error' must say why in 'error'")
        lat = d.get("latencies_ms", [])
        most = runs if runs is not None else MAX_RUNS
        _require(isinstance(lat, list) and len(lat) <= most, where,
                 f"'latencies_ms' must be a list of at most {most} numbers (one per run)")
        _require(all(_is_num(x) and 0 < x < MAX_MS for x in lat), where,
                 f"'latencies_ms' must be numbers of milliseconds in (0, {MAX_MS:.0f})")
        mem = d.get("peak_memory_kb")
        _require(mem is None or (_is_int(mem) and 0 <= mem <= MAX_MEMORY_KB), where,
                 f"'peak_memory_kb' must be an integer in [0, {MAX_MEMORY_KB}] or null")
        outs = d.get("outputs", [])
        _require(isinstance(outs, list) and len(outs) <= MAX_OUTPUTS, where,
                 f"'outputs' must be a list of at most {MAX_OUTPUTS} tensors")
        ops = d.get("op_placement")
        _require(ops is None or (isinstance(ops, list) and len(ops) <= MAX_OPS), where,
                 f"'op_placement' must be a list (at most {MAX_OPS}) or null")
        pin = _cpu_affinity(d.get("cpu_affinity"), where)
        r = cls(
            name=name, compute_unit=unit, threads=threads, status=status, error=err,
            load_ms=_opt_ms(d, "load_ms", where), init_ms=_opt_ms(d, "init_ms", where),
            first_inference_ms=_opt_ms(d, "first_inference_ms", where),
            latencies_ms=[float(x) for x in lat], peak_memory_kb=mem,
            outputs=[TensorFile.from_json(t, f"{where} outputs[{i}]") for i, t in enumerate(outs)],
            op_placement=None if ops is None else [OpPlacement.from_json(o, f"{where} op_placement[{i}]")
                                                   for i, o in enumerate(ops)],
            cpu_affinity=pin,
        )
        _require(len({t.file for t in r.outputs}) == len(r.outputs), where, "'outputs' name a file twice")
        if status == "ok":
            _require(r.first_inference_ms is not None, where, "an ok config needs 'first_inference_ms'")
            _require(bool(r.outputs), where, "an ok config needs at least one output tensor")
            _require(runs is None or len(r.latencies_ms) == runs, where,
                     f"expected {runs} latencies (one per run), got {len(r.latencies_ms)}")
        return r


def _cpu_affinity(d: Any, where: str) -> dict | None:
    if d is None:
        return None
    w = f"{where} cpu_affinity"
    _require(isinstance(d, dict), w, "must be an object or null")
    for key in ("requested", "mask"):
        v = d.get(key)
        _require(isinstance(v, list) and len(v) <= MAX_CPUS and all(_is_int(c) and 0 <= c < MAX_CPUS for c in v), w,
                 f"'{key}' must list CPU numbers (0..{MAX_CPUS - 1})")
    _require(isinstance(d.get("pinned"), bool), w, "'pinned' must be true or false")
    err = _error_text(d.get("error"), w)
    _require(d["pinned"] or bool(err), w, "an unpinned config must say why in 'error'")
    return {"requested": list(d["requested"]), "pinned": d["pinned"], "mask": list(d["mask"]), "error": err}


@dataclass
class HarnessResult(_Message):
    """Everything a harness reports for one request."""

    request_id: str
    status: str
    device: dict
    configs: list[ConfigResult]
    error: str | None = None
    protocol: str = PROTOCOL
    version: int = VERSION

    @property
    def ok_configs(self) -> list[ConfigResult]:
        return [c for c in self.configs if c.ok]


    @classmethod
    def from_json(cls, d: Any, request: HarnessRequest | None = None) -> "HarnessResult":
        w = "harness result"
        _require(isinstance(d, dict), w, "must be a JSON object")
        _require(isinstance(d.get("protocol"), str) and d["protocol"] == PROTOCOL, w,
                 f"'protocol' must be {PROTOCOL!r}, got {_short(d.get('protocol'))}")
        _require(_is_int(d.get("version")) and d["version"] == VERSION, w,
                 f"unsupported 'version' {_short(d.get('version'))} (this host speaks {VERSION})")
        rid = d.get("request_id")
        _require(isinstance(rid, str) and bool(_REQUEST_ID.match(rid)), w,
                 f"'request_id' must be 1-64 chars of [A-Za-z0-9._-], got {_short(rid)}")
        if request is not None:
            _require(rid == request.request_id, w, f"answers request {rid!r}, expected {request.request_id!r}")
        status = d.get("status")
        _require(isinstance(status, str) and status in ("ok", "error"), w,
                 f"'status' must be 'ok' or 'error', got {_short(status)}")
        err = _error_text(d.get("error"), w)
        _require(status == "ok" or bool(err), w, "status 'error' needs an 'error' message")
        dev = _device_info(d.get("device", {}), w, request)
        cfgs = d.get("configs", [])
        _require(isinstance(cfgs, list), w, "'configs' must be a list")
        runs = request.runs if request is not None else None
        asked = {c["name"]: c for c in request.configs()} if request is not None else None
        _require(asked is None or len(cfgs) <= len(asked), w,
                 f"{len(cfgs)} configs answer a request for {len(asked or ())}")
        configs = []
        for i, c in enumerate(cfgs):
            name = c.get("name") if isinstance(c, dict) else None
            expected = None
            if asked is not None and isinstance(name, str):  # (a malformed entry is ConfigResult's to describe)
                _require(name in asked, f"{w} configs[{i}]",
                         f"config {_short(name)} was not requested (asked: {', '.join(asked)})")
                expected = asked[name]
            configs.append(ConfigResult.from_json(c, f"{w} configs[{i}]", runs, expected))
        names = [c.name for c in configs]
        _require(len(set(names)) == len(names), w, "a config is answered twice")
        files = [t.file for c in configs for t in c.outputs]
        _require(len(set(files)) == len(files), w, "two configs name the same output file")
        if request is not None:
            reserved = {"request.json", "result.json", request.model} | {t.file for t in request.inputs}
            clash = sorted(set(files) & reserved)
            _require(not clash, w, f"an output is named like the request's own file {clash[0]!r}" if clash else "")
        if request is not None and status == "ok":
            want = list(asked)
            _require(names == want, w, f"configs {names} do not match the request's {want}")
        return cls(request_id=rid, status=status, device=dev, configs=configs, error=err)

    @classmethod
    def loads(cls, text: str | bytes, request: HarnessRequest | None = None) -> "HarnessResult":
        return cls.from_json(parse_json(text, "harness result", RESULT_MAX_BYTES), request)

    @classmethod
    def read(cls, path: str | Path, request: HarnessRequest | None = None, name: str | None = None) -> "HarnessResult":
        """Read and check a result file a harness wrote (at most RESULT_MAX_BYTES are read): every error is
        a one-line ProtocolError naming ``name`` (what the user knows the file as, e.g. its path on the phone)."""
        return _named_file(lambda: cls.loads(read_capped(path, RESULT_MAX_BYTES, "harness result"), request),
                           path, name)


_ALL_UNITS = tuple(dict.fromkeys([*ANDROID_COMPUTE_UNITS, *IOS_COMPUTE_UNITS,
                                  *(u for units in PTE_COMPUTE_UNITS.values() for u in units)]))
_DEVICE_KEYS = 64


def _device_info(d: Any, where: str, request: HarnessRequest | None) -> dict:
    """What a harness says about the phone: flat properties (text, finite numbers, booleans, null, or short
    lists of those), which end up in reports and on the terminal. It cannot claim another platform."""
    w = f"{where} device"
    _require(isinstance(d, dict), where, "'device' must be an object")
    _require(len(d) <= _DEVICE_KEYS, w, f"more than {_DEVICE_KEYS} properties")

    def scalar(v: Any) -> bool:
        return v is None or isinstance(v, bool) or _is_num(v) or (isinstance(v, str) and len(v) <= MAX_TEXT)

    for k, v in d.items():
        _require(bool(_DEVICE_KEY.match(k)), w, f"property name {_short(k)} is not [A-Za-z][A-Za-z0-9_]{{0,63}}")
        ok = scalar(v) or (isinstance(v, list) and len(v) <= MAX_CPUS and all(scalar(x) for x in v))
        _require(ok, w, f"'{k}' must be text (at most {MAX_TEXT} characters), a finite number, a boolean, "
                        "null or a list of those")
    if request is not None and "platform" in d:
        _require(d["platform"] == request.platform, w,
                 f"'platform' {_short(d['platform'])} answers a request for {request.platform}")
    return dict(d)


def _named_file(parse, path, name: str | None):
    try:
        with reading(name or path):  # a phone's file: what its parsing trips on names it too
            return parse()
    except ProtocolError as e:
        raise ProtocolError(f"{name or path}: {e}") from None


def write_tensor(path: Path, array) -> TensorFile:
    """Write an array as raw little-endian bytes and return its descriptor."""
    import numpy as np

    a = np.ascontiguousarray(array)
    dtype = str(a.dtype)
    if dtype not in TENSOR_DTYPES:
        raise ProtocolError(f"cannot store a {dtype} tensor; supported: {', '.join(TENSOR_DTYPES)}")
    path = Path(path)
    path.write_bytes(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return TensorFile(file=path.name, shape=[int(s) for s in a.shape] or [1], dtype=dtype)


def read_tensor(directory: Path, t: TensorFile):
    """Read a TensorFile that lives in `directory`, checking its size against the shape."""
    import numpy as np

    path = Path(directory) / t.file
    if not path.is_file():
        raise ProtocolError(f"tensor file {t.file} is missing")
    size = path.stat().st_size  # checked before reading: a phone's file can be any size
    if size != t.nbytes:
        raise ProtocolError(f"tensor file {t.file} has {size} bytes, shape {t.shape} {t.dtype} needs {t.nbytes}")
    data = path.read_bytes()
    if len(data) != t.nbytes:
        raise ProtocolError(f"tensor file {t.file} has {len(data)} bytes, shape {t.shape} {t.dtype} needs {t.nbytes}")
    return np.frombuffer(data, dtype=np.dtype(t.dtype).newbyteorder("<")).reshape(t.shape).astype(t.dtype)
