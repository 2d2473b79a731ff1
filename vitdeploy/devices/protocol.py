"""The harness protocol: what the host asks a harness app to run, and what it answers.

Both harness apps (android_harness/, ios_harness/) and the test emulator read a
request JSON and write a result JSON; docs/harness-protocol.md is the schema.
Tensors travel as raw little-endian bytes in `.bin` files plus a shape and a dtype
in the JSON, because Kotlin (ByteBuffer) and Swift (Data) read those without a
parser, unlike .npy.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitdeploy.errors import VitdeployError

PROTOCOL = "vitdeploy-harness"
VERSION = 1

ANDROID_COMPUTE_UNITS = ("xnnpack", "cpu", "gpu", "nnapi")
IOS_COMPUTE_UNITS = ("cpuOnly", "cpuAndGPU", "cpuAndNeuralEngine", "all")
COMPUTE_UNITS = {"android": ANDROID_COMPUTE_UNITS, "ios": IOS_COMPUTE_UNITS}
# Models each harness runs, by suffix: its native format, and an ExecuTorch .pte on both.
MODEL_SUFFIXES = {"android": (".tflite", ".pte"), "ios": (".mlpackage", ".pte")}
# Compute units of a .pte: "cpu" is ExecuTorch's XNNPACK delegate (and portable kernels) on both;
# "coreml" on iOS runs a .pte lowered with the Core ML delegate on the compute units chosen when it
# was lowered (ExecuTorch has no per-run switch for them). The host and both harnesses also check
# the unit against the .pte's delegates (formats.executorch.unit_mismatch), so "coreml" on a .pte without
# CoreMLBackend is refused, not silently timed on the CPU.
PTE_COMPUTE_UNITS = {"android": ("cpu",), "ios": ("cpu", "coreml")}
# A .pte takes float32 tensors in the harnesses (Tensor.fromBlob(FloatArray) / Tensor<Float>).
PTE_INPUT_DTYPES = ("float32",)
# Android compute units whose speed depends on the CPU thread count; others run once.
THREADED_UNITS = ("xnnpack", "cpu")

TENSOR_DTYPES = {"float32": 4, "float16": 2, "int32": 4, "int64": 8, "int16": 2, "int8": 1, "uint8": 1, "bool": 1}
# Inputs travel in the model's own input type: float32, or the integer type of a quantized-input
# model (the host quantizes with the model's scale and zero point); on iOS uint8 also carries the
# pixels of an image input ([H, W, C], the harness builds the CVPixelBuffer).
INPUT_DTYPES = ("float32", "int8", "uint8", "int16")
OP_DEVICES = ("cpu", "gpu", "neuralEngine", "unknown")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_FILE_NAME = re.compile(r"^[^/\\\x00]+$")


class ProtocolError(VitdeployError):
    """A request or result that does not follow docs/harness-protocol.md."""


def new_request_id() -> str:
    """A sortable id that is safe as a single path component on every device."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ProtocolError(f"{where}: {msg}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float))) and not isinstance(v, bool)


def _opt_ms(d: dict, key: str, where: str) -> float | None:
    v = d.get(key)
    _require(v is None or (_is_num(v) and v >= 0), where, f"'{key}' must be a number >= 0 or null")
    return None if v is None else float(v)


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
        _require(isinstance(f, str) and bool(_FILE_NAME.match(f)) and f not in (".", ".."),
                 where, f"'file' must be a bare file name, got {f!r}")
        shape = d.get("shape")
        _require(isinstance(shape, list) and all(_is_int(s) and s > 0 for s in shape),
                 where, f"'shape' must be a list of positive integers, got {shape!r}")
        dtype = d.get("dtype", "float32")
        _require(dtype in dtypes, where, f"'dtype' must be one of {', '.join(dtypes)}, got {dtype!r}")
        return cls(file=f, shape=list(shape), dtype=dtype)


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
        _require(self.protocol == PROTOCOL, w, f"'protocol' must be {PROTOCOL!r}, got {self.protocol!r}")
        _require(self.version == VERSION, w, f"unsupported 'version' {self.version!r} (this host speaks {VERSION})")
        _require(isinstance(self.request_id, str) and bool(_REQUEST_ID.match(self.request_id)), w,
                 f"'request_id' must be 1-64 chars of [A-Za-z0-9._-], got {self.request_id!r}")
        _require(self.platform in COMPUTE_UNITS, w, f"'platform' must be android or ios, got {self.platform!r}")
        ok_model = isinstance(self.model, str) and bool(_FILE_NAME.match(self.model)) and self.model not in (".", "..")
        _require(ok_model, w, f"'model' must be a bare file name next to request.json, got {self.model!r}")
        suffixes = MODEL_SUFFIXES[self.platform]
        _require(self.model.endswith(suffixes), w,
                 f"the {self.platform} harness needs a {' or '.join(suffixes)} model, got {self.model!r}")
        pte = self.model.endswith(".pte")
        _require(_is_int(self.runs) and self.runs >= 1, w, f"'runs' must be an integer >= 1, got {self.runs!r}")
        _require(_is_int(self.warmup) and self.warmup >= 0, w, f"'warmup' must be an integer >= 0, got {self.warmup!r}")
        _require(isinstance(self.threads, list) and bool(self.threads) and all(_is_int(t) and 1 <= t <= 64 for t in self.threads),
                 w, f"'threads' must be a non-empty list of integers 1..64, got {self.threads!r}")
        allowed = PTE_COMPUTE_UNITS[self.platform] if pte else COMPUTE_UNITS[self.platform]
        units = self.compute_units
        _require(isinstance(units, list) and bool(units), w, "'compute_units' must be a non-empty list")
        bad = [u for u in units if u not in allowed]
        if bad:
            kind = f"{self.platform} .pte" if pte else self.platform
            raise ProtocolError(f"{w}: unknown {kind} compute unit {bad[0]!r}; choose from {', '.join(allowed)}")
        _require(len(set(units)) == len(units), w, "'compute_units' lists a unit twice")
        _require(isinstance(self.inputs, list) and bool(self.inputs), w, "'inputs' must list at least one tensor")
        for i, t in enumerate(self.inputs):
            _require(isinstance(t, TensorFile) and t.dtype in INPUT_DTYPES, f"{w} inputs[{i}]",
                     f"inputs must be one of {', '.join(INPUT_DTYPES)}")
            _require(not pte or t.dtype in PTE_INPUT_DTYPES, f"{w} inputs[{i}]",
                     f"a .pte model takes {', '.join(PTE_INPUT_DTYPES)} inputs, got {t.dtype}")
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
            raise ProtocolError(f"{w}: unknown field {extra[0]!r}")
        for key in ("protocol", "version", "platform", "model", "inputs", "compute_units"):
            _require(key in d, w, f"missing field {key!r}")
        inputs = d["inputs"]
        _require(isinstance(inputs, list), w, "'inputs' must be a list")
        kw = {k: d[k] for k in known - {"inputs"} if k in d}
        return cls(inputs=[TensorFile.from_json(t, f"{w} inputs[{i}]", INPUT_DTYPES) for i, t in enumerate(inputs)], **kw)

    @classmethod
    def loads(cls, text: str) -> "HarnessRequest":
        return cls.from_json(_parse_json(text, "harness request"))


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
        _require(_is_int(d.get("index")) and d["index"] >= 0, where, "'index' must be an integer >= 0")
        _require(isinstance(d.get("op"), str) and d["op"] != "", where, "'op' must be a non-empty string")
        _require(d.get("device") in OP_DEVICES, where, f"'device' must be one of {', '.join(OP_DEVICES)}")
        sup = d.get("supported", [])
        _require(isinstance(sup, list) and all(s in OP_DEVICES for s in sup), where, "'supported' must list devices")
        cost = d.get("cost")
        _require(cost is None or (_is_num(cost) and cost >= 0), where, "'cost' must be a number >= 0 or null")
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
    def from_json(cls, d: Any, where: str, runs: int | None = None) -> "ConfigResult":
        _require(isinstance(d, dict), where, "must be an object")
        name = d.get("name")
        _require(isinstance(name, str) and name != "", where, "'name' must be a non-empty string")
        where = f"{where} ({name})"
        _require(isinstance(d.get("compute_unit"), str), where, "'compute_unit' must be a string")
        threads = d.get("threads")
        _require(threads is None or (_is_int(threads) and threads >= 1), where, "'threads' must be an integer >= 1 or null")
        status = d.get("status")
        _require(status in ("ok", "error"), where, f"'status' must be 'ok' or 'error', got {status!r}")
        err = d.get("error")
        _require(err is None or isinstance(err, str), where, "'error' must be a string or null")
        _require(status == "ok" or bool(err), where, "a config with status 'error' must say why in 'error'")
        lat = d.get("latencies_ms", [])
        _require(isinstance(lat, list) and all(_is_num(x) and x >= 0 for x in lat), where,
                 "'latencies_ms' must be a list of numbers >= 0")
        mem = d.get("peak_memory_kb")
        _require(mem is None or (_is_int(mem) and mem >= 0), where, "'peak_memory_kb' must be an integer >= 0 or null")
        outs = d.get("outputs", [])
        _require(isinstance(outs, list), where, "'outputs' must be a list")
        ops = d.get("op_placement")
        _require(ops is None or isinstance(ops, list), where, "'op_placement' must be a list or null")
        pin = _cpu_affinity(d.get("cpu_affinity"), where)
        r = cls(
            name=name, compute_unit=d["compute_unit"], threads=threads, status=status, error=err,
            load_ms=_opt_ms(d, "load_ms", where), init_ms=_opt_ms(d, "init_ms", where),
            first_inference_ms=_opt_ms(d, "first_inference_ms", where),
            latencies_ms=[float(x) for x in lat], peak_memory_kb=mem,
            outputs=[TensorFile.from_json(t, f"{where} outputs[{i}]") for i, t in enumerate(outs)],
            op_placement=None if ops is None else [OpPlacement.from_json(o, f"{where} op_placement[{i}]")
                                                   for i, o in enumerate(ops)],
            cpu_affinity=pin,
        )
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
        _require(isinstance(v, list) and all(_is_int(c) and c >= 0 for c in v), w, f"'{key}' must list CPU numbers")
    _require(isinstance(d.get("pinned"), bool), w, "'pinned' must be true or false")
    err = d.get("error")
    _require(err is None or isinstance(err, str), w, "'error' must be a string or null")
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
        _require(d.get("protocol") == PROTOCOL, w, f"'protocol' must be {PROTOCOL!r}, got {d.get('protocol')!r}")
        _require(d.get("version") == VERSION, w, f"unsupported 'version' {d.get('version')!r} (this host speaks {VERSION})")
        rid = d.get("request_id")
        _require(isinstance(rid, str), w, "'request_id' must be a string")
        if request is not None:
            _require(rid == request.request_id, w, f"answers request {rid!r}, expected {request.request_id!r}")
        status = d.get("status")
        _require(status in ("ok", "error"), w, f"'status' must be 'ok' or 'error', got {status!r}")
        err = d.get("error")
        _require(status == "ok" or (isinstance(err, str) and err != ""), w, "status 'error' needs an 'error' message")
        dev = d.get("device", {})
        _require(isinstance(dev, dict), w, "'device' must be an object")
        cfgs = d.get("configs", [])
        _require(isinstance(cfgs, list), w, "'configs' must be a list")
        runs = request.runs if request is not None else None
        configs = [ConfigResult.from_json(c, f"{w} configs[{i}]", runs) for i, c in enumerate(cfgs)]
        if request is not None and status == "ok":
            want = [c["name"] for c in request.configs()]
            got = [c.name for c in configs]
            _require(got == want, w, f"configs {got} do not match the request's {want}")
        return cls(request_id=rid, status=status, device=dev, configs=configs, error=err)

    @classmethod
    def loads(cls, text: str, request: HarnessRequest | None = None) -> "HarnessResult":
        return cls.from_json(_parse_json(text, "harness result"), request)


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(f"{what}: not valid JSON ({e.msg} at line {e.lineno})" if hasattr(e, "msg")
                            else f"{what}: not valid JSON") from None


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
    data = path.read_bytes()
    if len(data) != t.nbytes:
        raise ProtocolError(f"tensor file {t.file} has {len(data)} bytes, shape {t.shape} {t.dtype} needs {t.nbytes}")
    return np.frombuffer(data, dtype=np.dtype(t.dtype).newbyteorder("<")).reshape(t.shape).astype(t.dtype)
