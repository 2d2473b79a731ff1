"""An adb server on loopback that emulates Android devices, for tests with the real adb client.

It speaks the host side of adb's smart-socket protocol (AOSP adb SERVICES.TXT,
SYNC.TXT, shell v2 framing) so `ADB_SERVER_SOCKET=tcp:127.0.0.1:PORT adb ...`
talks to it instead of a real server. Because the socket spec names a
non-"localhost" host, the client treats the server as remote and never forks
or kills a real one.

Each emulated device has a file system rooted in a host temp directory, a
package list, getprop values, and an `am instrument` that runs the vitdeploy
harness protocol with the host LiteRT runtime (XNNPACK), writing result JSON
and output tensors exactly where the Android harness would.

Fault injection per device (`EmulatedDevice.faults`):
  drop_during_instrument  close the connection mid-run and detach the device
  instrumentation_missing packages listed, but `am instrument` cannot find the runner
  instrument_delay_s      sleep this long inside `am instrument` (timeouts)
"""

from __future__ import annotations

import json
import posixpath
import resource
import shlex
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ADB_SERVER_VERSION = 41  # adb 1.0.41; the client restarts servers that report another number
HARNESS_PACKAGE = "com.vitdeploy.harness"
TEST_PACKAGE = "com.vitdeploy.harness.test"
RUNNER = f"{TEST_PACKAGE}/androidx.test.runner.AndroidJUnitRunner"
# Features the server and device share: shell_v2 gives exit codes, cmd gives streamed installs.
FEATURES = "shell_v2,cmd,stat_v2"
SYNC_MAX_DATA = 64 * 1024


@dataclass
class EmulatedDevice:
    serial: str
    root: Path
    props: dict = field(default_factory=dict)
    packages: set = field(default_factory=set)
    faults: dict = field(default_factory=dict)
    online: bool = True
    state: str = "device"  # or "unauthorized" / "offline", as `adb devices` shows them
    transport_id: int = 1
    cancel: threading.Event = field(default_factory=threading.Event)

    def host_path(self, device_path: str) -> Path:
        """Map an absolute device path into the host root; '..' cannot escape it."""
        norm = posixpath.normpath("/" + device_path.lstrip("/"))
        return self.root / norm.lstrip("/")

    def listing_l(self) -> str:
        p = self.props
        if self.state != "device":
            return f"{self.serial:<22} {self.state} transport_id:{self.transport_id}"
        return (f"{self.serial:<22} device product:{p.get('ro.product.name', 'emu')} "
                f"model:{p.get('ro.product.model', 'Emulator').replace(' ', '_')} "
                f"device:{p.get('ro.product.device', 'emu')} transport_id:{self.transport_id}")


def pixel7(serial: str, root: Path) -> EmulatedDevice:
    """An emulated Pixel 7 (panther, Tensor G2, Android 14) with the harness installed."""
    return EmulatedDevice(serial=serial, root=root, props={
        "ro.product.model": "Pixel 7", "ro.product.device": "panther", "ro.product.name": "panther",
        "ro.product.manufacturer": "Google", "ro.soc.model": "Tensor G2", "ro.soc.manufacturer": "Google",
        "ro.build.version.release": "14", "ro.build.version.sdk": "34", "ro.product.cpu.abi": "arm64-v8a",
    }, packages={HARNESS_PACKAGE, TEST_PACKAGE})


class AdbEmulator:
    """Start with `with AdbEmulator() as emu:`; `emu.env` is the environment for the adb client."""

    def __init__(self, features: str = FEATURES) -> None:
        self.features = features  # drop shell_v2/stat_v2 to emulate an old device
        self.devices: dict[str, EmulatedDevice] = {}
        self.log: list[str] = []  # every smart-socket service requested, in order
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # -- lifecycle -------------------------------------------------------------------
    def add(self, device: EmulatedDevice) -> EmulatedDevice:
        device.transport_id = len(self.devices) + 1
        device.root.mkdir(parents=True, exist_ok=True)
        self.devices[device.serial] = device
        return device

    def start(self) -> "AdbEmulator":
        emu = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    _Connection(emu, self.request).serve()
                except (ConnectionError, OSError):
                    pass  # the client went away; nothing to answer

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for d in self.devices.values():
            d.cancel.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def socket_spec(self) -> str:
        return f"tcp:127.0.0.1:{self.port}"

    @property
    def env(self) -> dict:
        return {"ADB_SERVER_SOCKET": self.socket_spec}

    def record(self, service: str) -> None:
        with self._lock:
            self.log.append(service)

    def online(self) -> list[EmulatedDevice]:
        return [d for d in self.devices.values() if d.online]


class _Connection:
    """One client connection: host services, then possibly a device service."""

    def __init__(self, emu: AdbEmulator, sock: socket.socket) -> None:
        self.emu = emu
        self.sock = sock
        self.device: EmulatedDevice | None = None

    # -- framing -----------------------------------------------------------------------
    def recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("client closed")
            buf += chunk
        return buf

    def read_request(self) -> str:
        n = int(self.recv_exact(4), 16)
        return self.recv_exact(n).decode()

    def okay(self, payload: str | None = None) -> None:
        msg = b"OKAY"
        if payload is not None:
            data = payload.encode()
            msg += b"%04x" % len(data) + data
        self.sock.sendall(msg)

    def fail(self, reason: str) -> None:
        data = reason.encode()
        self.sock.sendall(b"FAIL" + b"%04x" % len(data) + data)

    # -- dispatch ----------------------------------------------------------------------
    def serve(self) -> None:
        while True:
            service = self.read_request()
            self.emu.record(service)
            if self.device is None:
                if not self.host_service(service):
                    return
            else:
                self.device_service(service)
                return

    def host_service(self, service: str) -> bool:
        """Answer a host: request; True when the connection continues (transport switch)."""
        emu = self.emu
        if service == "host:version":
            self.okay("%04x" % ADB_SERVER_VERSION)
        elif service in ("host:devices", "host:devices-l"):
            long = service.endswith("-l")
            lines = [d.listing_l() if long else f"{d.serial}\t{d.state}" for d in emu.online()]
            self.okay("".join(line + "\n" for line in lines))
        elif service in ("host:features", "host:host-features"):
            self.okay(emu.features)
        elif service.startswith(("host-serial:", "host:transport:", "host:tport:serial:", "host-transport-id:")):
            serial, rest = self.split_serial(service)
            device = emu.devices.get(serial)
            if device is None or not device.online:
                self.fail(f"device '{serial}' not found")
                return False
            if device.state == "unauthorized":
                self.fail("device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                          "Try 'adb kill-server' if that seems wrong.\n"
                          "Otherwise check for a confirmation dialog on your device.")
                return False
            if device.state != "device":
                self.fail("device offline")
                return False
            if rest is None:  # a transport switch
                self.device = device
                self.okay()
                if service.startswith("host:tport:"):
                    self.sock.sendall(struct.pack("<Q", device.transport_id))
                return True
            return self.device_host_service(device, rest)
        elif service in ("host:transport-any", "host:tport:any", "host-any:features", "host:get-serialno"):
            online = emu.online()
            if not online:
                self.fail("no devices/emulators found")
                return False
            if len(online) > 1:
                self.fail("more than one device/emulator")
                return False
            if service.endswith("features"):
                self.okay(emu.features)
                return False
            if service == "host:get-serialno":
                self.okay(online[0].serial)
                return False
            self.device = online[0]
            self.okay()
            if service.startswith("host:tport:"):
                self.sock.sendall(struct.pack("<Q", self.device.transport_id))
            return True
        elif service == "host:kill":
            self.fail("the vitdeploy adb emulator cannot be killed by a client")
        else:
            self.fail(f"unknown host service {service}")
        return False

    @staticmethod
    def split_serial(service: str) -> tuple[str, str | None]:
        if service.startswith("host:transport:"):
            return service[len("host:transport:"):], None
        if service.startswith("host:tport:serial:"):
            return service[len("host:tport:serial:"):], None
        # host-serial:SERIAL:request; serials like "host:port" contain colons, the request doesn't.
        body = service.split(":", 1)[1]
        serial, _, rest = body.rpartition(":")
        return serial, rest

    def device_host_service(self, device: EmulatedDevice, rest: str) -> bool:
        if rest == "features":
            self.okay(self.emu.features)
        elif rest == "get-state":
            self.okay("device")
        elif rest == "get-serialno":
            self.okay(device.serial)
        else:
            self.fail(f"unknown host-serial service {rest}")
        return False

    def device_service(self, service: str) -> None:
        dev = self.device
        if service.startswith("shell"):
            head, _, command = service.partition(":")
            args = head.split(",")[1:]
            v2 = "v2" in args
            self.okay()
            Shell(self, dev, v2).run(command)
        elif service.startswith("exec:"):
            self.okay()
            Shell(self, dev, v2=False, exec_mode=True).run(service[len("exec:"):])
        elif service == "sync:":
            self.okay()
            Sync(self, dev).serve()
        else:
            self.fail(f"unknown device service {service}")


class Shell:
    """A tiny Android shell: the commands vitdeploy and `adb install` send."""

    def __init__(self, conn: _Connection, dev: EmulatedDevice, v2: bool, exec_mode: bool = False) -> None:
        self.conn = conn
        self.dev = dev
        self.v2 = v2
        self.exec_mode = exec_mode

    def send(self, stream: int, data: bytes) -> None:
        if not data:
            return
        if self.v2:
            self.conn.sock.sendall(struct.pack("<BI", stream, len(data)) + data)
        else:
            self.conn.sock.sendall(data)  # v1 and exec: one raw stream, stderr folded in

    def out(self, text: str) -> None:
        self.send(1, text.encode())

    def err(self, text: str) -> None:
        self.send(2, text.encode())

    def run(self, command: str) -> None:
        try:
            code = self.execute(command)
        except _Dropped:
            self.conn.sock.close()  # mid-run: no exit packet, like a cable pulled out
            return
        if self.v2:
            self.conn.sock.sendall(struct.pack("<BI", 3, 1) + bytes([code & 0xFF]))
        self.conn.sock.shutdown(socket.SHUT_WR)
        self.drain()

    def drain(self) -> None:
        """Read what the client still sends (stdin, close-stdin) until it hangs up."""
        self.conn.sock.settimeout(5)
        try:
            while self.conn.sock.recv(65536):
                pass
        except OSError:
            pass

    def execute(self, command: str) -> int:
        try:
            argv = shlex.split(command)
        except ValueError as e:
            self.err(f"/system/bin/sh: syntax error: {e}\n")
            return 2
        if any(tok in (";", "&&", "||", "|", ">", "<") for tok in argv):
            self.err("/system/bin/sh: the vitdeploy emulator runs one simple command per shell call\n")
            return 2
        if not argv:
            return 0
        name = argv[0]
        handler = {
            "getprop": self.cmd_getprop, "mkdir": self.cmd_mkdir, "rm": self.cmd_rm, "ls": self.cmd_ls,
            "cat": self.cmd_cat, "echo": self.cmd_echo, "true": lambda a: 0, "pm": self.cmd_pm,
            "cmd": self.cmd_cmd, "am": self.cmd_am, "chmod": lambda a: 0,
        }.get(name)
        if handler is None:
            self.err(f"/system/bin/sh: {name}: inaccessible or not found\n")
            return 127
        return handler(argv[1:])

    # -- simple commands ---------------------------------------------------------------
    def cmd_getprop(self, args: list[str]) -> int:
        if args:
            self.out(self.dev.props.get(args[0], "") + "\n")
        else:
            self.out("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.dev.props.items())))
        return 0

    def cmd_mkdir(self, args: list[str]) -> int:
        parents = "-p" in args
        for p in [a for a in args if not a.startswith("-")]:
            hp = self.dev.host_path(p)
            if hp.exists() and not parents:
                self.err(f"mkdir: '{p}': File exists\n")
                return 1
            if not parents and not hp.parent.is_dir():
                self.err(f"mkdir: '{p}': No such file or directory\n")
                return 1
            hp.mkdir(parents=True, exist_ok=True)
        return 0

    def cmd_rm(self, args: list[str]) -> int:
        import shutil

        flags = "".join(a[1:] for a in args if a.startswith("-"))
        for p in [a for a in args if not a.startswith("-")]:
            hp = self.dev.host_path(p)
            if hp.is_dir() and "r" in flags:
                shutil.rmtree(hp)
            elif hp.is_file():
                hp.unlink()
            elif "f" not in flags:
                self.err(f"rm: {p}: No such file or directory\n")
                return 1
        return 0

    def cmd_ls(self, args: list[str]) -> int:
        paths = [a for a in args if not a.startswith("-")] or ["/"]
        for p in paths:
            hp = self.dev.host_path(p)
            if hp.is_dir():
                self.out("".join(n + "\n" for n in sorted(x.name for x in hp.iterdir())))
            elif hp.exists():
                self.out(p + "\n")
            else:
                self.err(f"ls: {p}: No such file or directory\n")
                return 1
        return 0

    def cmd_cat(self, args: list[str]) -> int:
        for p in args:
            hp = self.dev.host_path(p)
            if not hp.is_file():
                self.err(f"cat: {p}: No such file or directory\n")
                return 1
            self.send(1, hp.read_bytes())
        return 0

    def cmd_echo(self, args: list[str]) -> int:
        self.out(" ".join(args) + "\n")
        return 0

    # -- package manager ---------------------------------------------------------------
    def cmd_pm(self, args: list[str]) -> int:
        if args[:2] == ["list", "packages"]:
            filt = args[2] if len(args) > 2 else ""
            self.out("".join(f"package:{p}\n" for p in sorted(self.dev.packages) if filt in p))
            return 0
        if args[:2] == ["list", "instrumentation"]:
            if TEST_PACKAGE in self.dev.packages and not self.dev.faults.get("instrumentation_missing"):
                self.out(f"instrumentation:{RUNNER} (target={HARNESS_PACKAGE})\n")
            return 0
        if args[:1] == ["path"] and len(args) == 2:
            if args[1] not in self.dev.packages:
                return 1
            self.out(f"package:/data/app/{args[1]}-1/base.apk\n")
            return 0
        if args[:1] == ["install"]:
            return self.install(args[1:])
        if args[:1] == ["uninstall"] and len(args) == 2:
            if args[1] in self.dev.packages:
                self.dev.packages.discard(args[1])
                self.out("Success\n")
                return 0
            self.out("Failure [DELETE_FAILED_INTERNAL_ERROR]\n")
            return 1
        self.err(f"pm: unknown command {' '.join(args)}\n")
        return 1

    def cmd_cmd(self, args: list[str]) -> int:
        if args[:1] == ["package"]:
            return self.cmd_pm(args[1:])
        self.err(f"cmd: unknown service {args[:1]}\n")
        return 1

    def install(self, args: list[str]) -> int:
        """`pm install [-r] [-g] (-S SIZE | PATH)`: streamed bytes or a pushed file."""
        size = None
        path = None
        it = iter(args)
        for a in it:
            if a == "-S":
                size = int(next(it))
            elif not a.startswith("-"):
                path = a
        if size is not None:
            apk = self.conn.recv_exact(size)
        elif path is not None:
            hp = self.dev.host_path(path)
            if not hp.is_file():
                self.out(f"Failure [INSTALL_FAILED_INVALID_URI: {path}]\n")
                return 1
            apk = hp.read_bytes()
        else:
            self.out("Failure [INSTALL_FAILED_INVALID_APK: no apk given]\n")
            return 1
        if not apk.startswith(b"PK"):
            self.out("Failure [INSTALL_PARSE_FAILED_NOT_APK: not a zip archive]\n")
            return 1
        # The emulator can't parse binary manifests: any APK installs the harness pair.
        self.dev.packages.update({HARNESS_PACKAGE, TEST_PACKAGE})
        self.out("Success\n")
        return 0

    # -- activity manager --------------------------------------------------------------
    def cmd_am(self, args: list[str]) -> int:
        if args[:1] == ["force-stop"]:
            self.dev.cancel.set()
            return 0
        if args[:1] != ["instrument"]:
            self.err(f"am: unknown command {' '.join(args[:1])}\n")
            return 1
        extras, component, flags = {}, None, set()
        it = iter(args[1:])
        for a in it:
            if a == "-e":
                k = next(it)
                extras[k] = next(it)
            elif a.startswith("-"):
                flags.add(a)
            else:
                component = a
        if component != RUNNER or TEST_PACKAGE not in self.dev.packages or self.dev.faults.get("instrumentation_missing"):
            self.out("INSTRUMENTATION_STATUS: id=ActivityManagerService\n"
                     f"INSTRUMENTATION_STATUS: Error=Unable to find instrumentation info for: ComponentInfo{{{component}}}\n"
                     "INSTRUMENTATION_STATUS_CODE: -1\n")
            self.err(f"android.util.AndroidException: INSTRUMENTATION_FAILED: {component}\n")
            return 1
        self.dev.cancel.clear()
        delay = float(self.dev.faults.get("instrument_delay_s", 0))
        if delay and self.dev.cancel.wait(delay):
            self.out("INSTRUMENTATION_RESULT: shortMsg=Process crashed.\nINSTRUMENTATION_CODE: 0\n")
            return 0
        if self.dev.faults.get("drop_during_instrument"):
            self.dev.online = False
            raise _Dropped()
        request_path = extras.get("request")
        t0 = time.monotonic()
        if request_path is None:
            outcome = "missing instrumentation argument 'request'"
        else:
            outcome = run_harness(self.dev, request_path)
        secs = time.monotonic() - t0
        cls = "com.vitdeploy.harness.HarnessBenchmark"
        if outcome is None:
            self.out(f"INSTRUMENTATION_STATUS: class={cls}\nINSTRUMENTATION_STATUS: test=run\n"
                     "INSTRUMENTATION_STATUS_CODE: 0\n"
                     f"INSTRUMENTATION_RESULT: stream=\nTime: {secs:.3f}\n\nOK (1 test)\n\n\n"
                     "INSTRUMENTATION_CODE: -1\n")
        else:
            self.out(f"INSTRUMENTATION_STATUS: class={cls}\nINSTRUMENTATION_STATUS: test=run\n"
                     f"INSTRUMENTATION_STATUS: stack=java.lang.IllegalStateException: {outcome}\n"
                     "INSTRUMENTATION_STATUS_CODE: -2\n"
                     f"INSTRUMENTATION_RESULT: stream=\nTime: {secs:.3f}\nThere was 1 failure:\n"
                     f"1) run({cls})\njava.lang.IllegalStateException: {outcome}\n\nFAILURES!!!\n"
                     "Tests run: 1,  Failures: 1\n\n\nINSTRUMENTATION_CODE: -1\n")
        return 0  # am instrument exits 0 even when the test fails


class _Dropped(Exception):
    pass


def default_output_dir() -> str:
    return f"/sdcard/Android/data/{HARNESS_PACKAGE}/files/vitdeploy"


def run_harness(dev: EmulatedDevice, request_path: str) -> str | None:
    """What HarnessBenchmark.kt does, with the host LiteRT runtime; returns a failure or None."""
    from vitdeploy.devices.protocol import HarnessRequest, HarnessResult, ProtocolError

    req_host = dev.host_path(request_path)
    if not req_host.is_file():
        return f"request file {request_path} not found"
    try:
        request = HarnessRequest.loads(req_host.read_text())
    except ProtocolError as e:
        return str(e)
    req_dir = req_host.parent
    out_dev = request.output_dir or f"{default_output_dir()}/{request.request_id}"
    out_dir = dev.host_path(out_dev)
    out_dir.mkdir(parents=True, exist_ok=True)
    device_info = {
        "platform": "android", "manufacturer": dev.props.get("ro.product.manufacturer"),
        "model": dev.props.get("ro.product.model"), "device": dev.props.get("ro.product.device"),
        "soc": dev.props.get("ro.soc.model"), "os_version": dev.props.get("ro.build.version.release"),
        "sdk": int(dev.props.get("ro.build.version.sdk", "0") or 0), "abi": dev.props.get("ro.product.cpu.abi"),
        "runtime": "LiteRT (host ai_edge_litert, vitdeploy adb emulator)",
    }
    configs = [_run_config(request, cfg, req_dir, out_dir, dev) for cfg in request.configs()]
    result = HarnessResult(request_id=request.request_id, status="ok", device=device_info, configs=configs)
    (out_dir / "result.json").write_text(json.dumps(result.to_json(), indent=2))
    return None


def _run_config(request, cfg: dict, req_dir: Path, out_dir: Path, dev: EmulatedDevice):
    from vitdeploy.devices.protocol import ConfigResult, ProtocolError, read_tensor, write_tensor

    base = dict(name=cfg["name"], compute_unit=cfg["compute_unit"], threads=cfg["threads"])
    unit = cfg["compute_unit"]
    if unit in ("gpu", "nnapi"):
        return ConfigResult(status="error", error=f"{unit} delegate is not available on this device", **base)
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        t0 = time.perf_counter_ns()
        model_bytes = (req_dir / request.model).read_bytes()
        t1 = time.perf_counter_ns()
        resolver = OpResolverType.AUTO if unit == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interp = Interpreter(model_content=model_bytes, num_threads=cfg["threads"], experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
        t2 = time.perf_counter_ns()
        ins = interp.get_input_details()
        if len(ins) != len(request.inputs):
            raise ValueError(f"model has {len(ins)} inputs, the request gives {len(request.inputs)}")
        arrays = [read_tensor(req_dir, t) for t in request.inputs]
        for det, arr in zip(ins, arrays):
            if list(det["shape"]) != list(arr.shape):
                raise ValueError(f"input {det['name']} has shape {list(det['shape'])}, the request gives {list(arr.shape)}")
            interp.set_tensor(det["index"], arr.astype(det["dtype"]))

        def invoke() -> float:
            if dev.cancel.is_set():
                raise RuntimeError("instrumentation was stopped")
            s = time.perf_counter_ns()
            interp.invoke()
            return (time.perf_counter_ns() - s) / 1e6

        first = invoke()
        for _ in range(request.warmup):
            invoke()
        lat = [invoke() for _ in range(request.runs)]
        outputs = []
        for i, det in enumerate(interp.get_output_details()):
            outputs.append(write_tensor(out_dir / f"{cfg['name']}.output{i}.bin", interp.get_tensor(det["index"])))
        return ConfigResult(status="ok", load_ms=(t1 - t0) / 1e6, init_ms=(t2 - t1) / 1e6, first_inference_ms=first,
                            latencies_ms=lat, peak_memory_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                            outputs=outputs, **base)
    except (ValueError, RuntimeError, OSError, ProtocolError) as e:
        return ConfigResult(status="error", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", **base)


class Sync:
    """The sync: service (SYNC.TXT): STAT/STA2/LST2, SEND, RECV, LIST, QUIT."""

    def __init__(self, conn: _Connection, dev: EmulatedDevice) -> None:
        self.conn = conn
        self.dev = dev

    def reply(self, ident: bytes, payload: bytes = b"", length: int | None = None) -> None:
        self.conn.sock.sendall(ident + struct.pack("<I", len(payload) if length is None else length) + payload)

    def fail(self, msg: str) -> None:
        self.reply(b"FAIL", msg.encode())

    def serve(self) -> None:
        while True:
            ident = self.conn.recv_exact(4)
            (n,) = struct.unpack("<I", self.conn.recv_exact(4))
            if ident == b"QUIT":
                return
            path = self.conn.recv_exact(n).decode()
            self.conn.emu.record(f"sync:{ident.decode(errors='replace')} {path}")
            if ident == b"STAT":
                self.stat_v1(path)
            elif ident in (b"STA2", b"LST2"):
                self.stat_v2(ident, path)
            elif ident == b"SEND":
                self.send(path)
            elif ident == b"RECV":
                self.recv(path)
            elif ident == b"LIST":
                self.list(path)
            else:
                self.fail(f"unknown sync request {ident!r}")
                return

    def stat_v1(self, path: str) -> None:
        hp = self.dev.host_path(path)
        if not hp.exists():
            self.conn.sock.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            return
        st = hp.stat()
        self.conn.sock.sendall(b"STAT" + struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))

    def stat_v2(self, ident: bytes, path: str) -> None:
        hp = self.dev.host_path(path)
        if not hp.exists():
            self.conn.sock.sendall(ident + struct.pack("<IQQIIIIQqqq", 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))  # ENOENT
            return
        st = hp.stat()
        self.conn.sock.sendall(ident + struct.pack("<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink,
                                                   2000, 2000, st.st_size, int(st.st_atime), int(st.st_mtime),
                                                   int(st.st_ctime)))

    def send(self, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        hp = self.dev.host_path(path)
        chunks = []
        while True:
            ident = self.conn.recv_exact(4)
            (n,) = struct.unpack("<I", self.conn.recv_exact(4))
            if ident == b"DATA":
                chunks.append(self.conn.recv_exact(n))
            elif ident == b"DONE":
                break
            else:
                self.fail(f"unexpected {ident!r} during SEND")
                return
        if hp.is_dir():
            self.fail("couldn't create file: Is a directory")
            return
        hp.parent.mkdir(parents=True, exist_ok=True)  # adbd creates missing parents too
        hp.write_bytes(b"".join(chunks))
        self.reply(b"OKAY", length=0)

    def recv(self, path: str) -> None:
        hp = self.dev.host_path(path)
        if not hp.is_file():
            self.fail("No such file or directory")
            return
        data = hp.read_bytes()
        for i in range(0, len(data), SYNC_MAX_DATA):
            self.reply(b"DATA", data[i:i + SYNC_MAX_DATA])
        self.reply(b"DONE", length=0)

    def list(self, path: str) -> None:
        hp = self.dev.host_path(path)
        if hp.is_dir():
            for child in sorted(hp.iterdir()):
                st = child.stat()
                name = child.name.encode()
                self.conn.sock.sendall(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF,
                                                             int(st.st_mtime), len(name)) + name)
        self.conn.sock.sendall(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
