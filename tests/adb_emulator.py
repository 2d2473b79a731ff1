"""An adb server on loopback that emulates Android devices, for tests with the real adb client.

It speaks the host side of adb's smart-socket protocol (AOSP adb SERVICES.TXT,
SYNC.TXT, shell v2 framing) so `ADB_SERVER_SOCKET=tcp:127.0.0.1:PORT adb ...`
talks to it instead of a real server. Because the socket spec names a
non-"localhost" host, the client treats the server as remote and never forks
or kills a real one.

Each emulated device has a file system rooted in a host temp directory, a
package list, getprop values, and an `am instrument` that runs the vitdeploy
harness protocol with the host LiteRT runtime (XNNPACK) for a .tflite and the host
ExecuTorch runtime (executorch.runtime, XNNPACK) for a .pte, writing result JSON
and output tensors exactly where the Android harness would.

File ownership and modes follow a real phone (see `EmulatedDevice.access`): what adb
pushes is owned by shell (uid 2000) with adbd's mode rule, the harness runs as its own
app uid and can read only what the mode bits (or, on shared storage, Android 11+
scoped storage) let it, and a file it may not read fails the way HarnessBenchmark.kt
would (`FileNotFoundException ... EACCES`).

Fault injection per device (`EmulatedDevice.faults`):
  drop_during_instrument  close the connection mid-run and detach the device
  instrumentation_missing packages listed, but `am instrument` cannot find the runner
  instrument_delay_s      sleep this long inside `am instrument` (timeouts)
  pin_error               sched_setaffinity fails with this errno (22: EINVAL, a cpuset
                          that excludes the fastest cores); the result reports it

What AWS Device Farm's generated test spec also calls (tests/test_farm_aws.py): `run-as PKG cat PATH`
(the app's uid, only for a package in `debuggable`), `dumpsys thermalservice` (a "Thermal Status: N"
line from `thermal_status`), and the cpufreq files in sysfs (`cpu_khz`), which `cat` reaches through a
glob as the device shell would expand it.
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
# Android ids (system/core/libcutils/include/private/android_filesystem_config.h).
ROOT_UID, SYSTEM_UID, SHELL_UID = 0, 1000, 2000
SDCARD_RW_GID, EVERYBODY_GID = 1015, 9997
HARNESS_UID = 10234  # u0_a234: the harness app; its instrumentation runs in the same process and uid
# Supplementary groups: adbd's shell has sdcard_rw (drop_privileges in adbd's main.cpp); apps have none here.
GROUPS = {SHELL_UID: {SHELL_UID, SDCARD_RW_GID}, HARNESS_UID: {HARNESS_UID}}
SHARED_STORAGE = ("/sdcard", "/storage/emulated/0", "/storage/self/primary")


def adbd_send_mode(client_mode: int) -> int:
    """The mode adbd gives a pushed file: the client's mode with the user bits copied to group
    and other (send_impl in AOSP adb daemon/file_sync_service.cpp, unchanged since 2008), and
    adbd runs with umask 0. So a 0600 file from the host arrives 0666, a 0755 one 0777."""
    mode = client_mode & 0o777
    mode |= (mode >> 3) & 0o070
    mode |= (mode >> 3) & 0o007
    return mode


class AccessDenied(Exception):
    """EACCES on the device; str() is what Android's libcore puts in the exception message."""


@dataclass
class EmulatedDevice:
    serial: str
    root: Path
    props: dict = field(default_factory=dict)
    packages: set = field(default_factory=set)
    faults: dict = field(default_factory=dict)
    online: bool = True
    debuggable: set = field(default_factory=set)  # packages `run-as` may enter (a debug build)
    thermal_status: int = 0  # PowerManager THERMAL_STATUS_* (0 none .. 6 shutdown)
    cpu_khz: list = field(default_factory=list)  # /sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq
    state: str = "device"  # or "unauthorized" / "offline", as `adb devices` shows them
    transport_id: int = 1
    cancel: threading.Event = field(default_factory=threading.Event)
    # (uid, gid, mode) of each path outside shared storage; what is not listed is root-owned 0755
    # (so shell and apps can read the system but write nowhere outside /data/local/tmp).
    owners: dict = field(default_factory=lambda: {
        "/": (ROOT_UID, ROOT_UID, 0o755), "/data": (SYSTEM_UID, SYSTEM_UID, 0o771),
        "/data/local": (ROOT_UID, ROOT_UID, 0o751), "/data/local/tmp": (SHELL_UID, SHELL_UID, 0o771),
    })

    def host_path(self, device_path: str) -> Path:
        """Map an absolute device path into the host root; '..' cannot escape it."""
        return self.root / self.norm(device_path).lstrip("/")

    @staticmethod
    def norm(device_path: str) -> str:
        norm = posixpath.normpath("/" + device_path.lstrip("/"))
        for alias in SHARED_STORAGE[1:]:  # one name for shared storage, as the FUSE mount is one
            if norm == alias or norm.startswith(alias + "/"):
                norm = "/sdcard" + norm[len(alias):]
        return norm

    @property
    def sdk(self) -> int:
        return int(self.props.get("ro.build.version.sdk", "0") or 0)

    # -- permissions -------------------------------------------------------------------
    def stat_of(self, path: str) -> tuple[int, int, int]:
        """(uid, gid, mode) of an existing path; shared storage modes are synthesized, as FUSE does."""
        path = self.norm(path)
        is_dir = self.host_path(path).is_dir()
        own = self._shared_owner(path)
        if own is not None:
            return own, EVERYBODY_GID, 0o771 if is_dir else 0o660
        return self.owners.get(path, (ROOT_UID, ROOT_UID, 0o755 if is_dir else 0o644))

    def _shared_owner(self, path: str) -> int | None:
        """Owner uid of a shared-storage path (an app owns its Android/data/<pkg>); None outside it."""
        if not (path == "/sdcard" or path.startswith("/sdcard/")):
            return None
        parts = path.split("/")
        if parts[2:4] == ["Android", "data"] and len(parts) > 4 and parts[4] == HARNESS_PACKAGE:
            return HARNESS_UID
        return ROOT_UID

    def access(self, uid: int, path: str, want: str) -> None:
        """Raise AccessDenied unless `uid` may `want` ('r', 'w' or 'x') `path` (and search its parents)."""
        path = self.norm(path)
        if uid == ROOT_UID:
            return
        parts = path.strip("/").split("/") if path != "/" else []
        for i in range(len(parts)):  # search permission on every directory on the way
            d = "/" + "/".join(parts[:i])
            if not self.host_path(d).is_dir():
                return  # ENOENT/ENOTDIR, which the caller's own existence check reports
            self._check(uid, d, "x", path)
        if self.host_path(path).exists():
            self._check(uid, path, want, path)

    def _check(self, uid: int, path: str, want: str, whole: str) -> None:
        path = self.norm(path)
        if path == "/sdcard" or path.startswith("/sdcard/"):
            return self._check_shared(uid, path, want, whole)
        owner, group, mode = self.stat_of(path)
        shift = 6 if uid == owner else 3 if group in GROUPS.get(uid, {uid}) else 0
        if not (mode >> shift) & {"r": 4, "w": 2, "x": 1}[want]:
            raise AccessDenied(f"{whole}: open failed: EACCES (Permission denied)")

    def _check_shared(self, uid: int, path: str, want: str, whole: str) -> None:
        """Shared storage: shell (sdcard_rw) may do anything; an app reaches its own Android/data/<pkg>
        and the directories above it. From Android 11 (scoped storage) nothing else is the app's,
        and the harness asks for no storage permission, so before 11 nothing else either."""
        if SDCARD_RW_GID in GROUPS.get(uid, set()):
            return
        own = f"/sdcard/Android/data/{HARNESS_PACKAGE}"
        if uid == HARNESS_UID and (path == own or path.startswith(own + "/")):
            return
        if want == "x" and own.startswith(path + "/"):
            return  # the app may pass through /sdcard/Android/data to its own dir
        raise AccessDenied(f"{whole}: open failed: EACCES (Permission denied)")

    def make_dirs(self, uid: int, path: str, mode: int) -> None:
        """mkdir -p as `uid`: each missing directory needs write+search on its parent; new ones are uid's."""
        path = self.norm(path)
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            hp = self.host_path(d)
            if hp.is_dir():
                continue
            if hp.exists():
                raise AccessDenied(f"{d}: mkdir failed: ENOTDIR (Not a directory)")
            parent = posixpath.dirname(d)
            self.access(uid, parent, "w")
            self.access(uid, parent, "x")
            hp.mkdir()
            if self._shared_owner(d) is None:
                self.owners[d] = (uid, uid, mode)

    def create_file(self, uid: int, path: str, data: bytes, mode: int) -> None:
        """Create or replace a file as `uid` (write+search on the parent, as unlink + open(O_CREAT))."""
        path = self.norm(path)
        parent = posixpath.dirname(path)
        self.access(uid, parent, "w")
        self.access(uid, parent, "x")
        self.host_path(path).write_bytes(data)
        if self._shared_owner(path) is None:
            self.owners[path] = (uid, uid, mode)

    def read_file(self, uid: int, path: str) -> bytes:
        self.access(uid, path, "r")
        return self.host_path(path).read_bytes()

    def forget(self, path: str) -> None:
        """Drop ownership records at and below a removed path."""
        path = self.norm(path)
        for p in [p for p in self.owners if p == path or p.startswith(path.rstrip("/") + "/")]:
            del self.owners[p]

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
    }, packages={HARNESS_PACKAGE, TEST_PACKAGE},
        # Tensor G2 at idle-ish clocks: 4x A55, 2x A78, 2x X1.
        cpu_khz=[1803000] * 4 + [2348000] * 2 + [2850000] * 2)


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
        # What the system image and vold create before anyone logs in.
        for path in [*device.owners, "/sdcard/Android/data"]:
            device.host_path(path).mkdir(parents=True, exist_ok=True)
        for i, khz in enumerate(device.cpu_khz):  # sysfs: world-readable, root-owned
            f = device.host_path(f"/sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"{khz}\n")
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
        self.uid = SHELL_UID  # `run-as` runs its command as the app

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
            "cmd": self.cmd_cmd, "am": self.cmd_am, "chmod": self.cmd_chmod,
            "run-as": self.cmd_run_as, "dumpsys": self.cmd_dumpsys,
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
            try:
                self.dev.make_dirs(SHELL_UID, p, 0o775)
            except AccessDenied:
                self.err(f"mkdir: '{p}': Permission denied\n")
                return 1
        return 0

    def cmd_rm(self, args: list[str]) -> int:
        import shutil

        flags = "".join(a[1:] for a in args if a.startswith("-"))
        for p in [a for a in args if not a.startswith("-")]:
            hp = self.dev.host_path(p)
            if not hp.exists():
                if "f" not in flags:
                    self.err(f"rm: {p}: No such file or directory\n")
                    return 1
                continue
            try:
                self.dev.access(SHELL_UID, posixpath.dirname(self.dev.norm(p)), "w")
            except AccessDenied:
                self.err(f"rm: {p}: Permission denied\n")
                return 1
            if hp.is_dir() and "r" in flags:
                shutil.rmtree(hp)
            elif hp.is_file():
                hp.unlink()
            else:
                self.err(f"rm: {p}: Is a directory\n")
                return 1
            self.dev.forget(p)
        return 0

    def cmd_ls(self, args: list[str]) -> int:
        paths = [a for a in args if not a.startswith("-")] or ["/"]
        for p in paths:
            hp = self.dev.host_path(p)
            if hp.is_dir():
                try:
                    self.dev.access(SHELL_UID, p, "r")
                except AccessDenied:
                    self.err(f"ls: {p}: Permission denied\n")
                    return 1
                self.out("".join(n + "\n" for n in sorted(x.name for x in hp.iterdir())))
            elif hp.exists():
                self.out(p + "\n")
            else:
                self.err(f"ls: {p}: No such file or directory\n")
                return 1
        return 0

    def _glob(self, pattern: str) -> list[str]:
        """What the device shell makes of an unmatched-looking path with * ? [ in it: the sorted matches,
        or the word itself when nothing matches (POSIX sh)."""
        import fnmatch

        if not any(c in pattern for c in "*?[") or self.dev.host_path(pattern).exists():
            return [pattern]
        matches = [""]
        for part in self.dev.norm(pattern).strip("/").split("/"):
            nxt = []
            for m in matches:
                hp = self.dev.host_path(m or "/")
                if any(c in part for c in "*?["):
                    if hp.is_dir():
                        nxt += [f"{m}/{x.name}" for x in sorted(hp.iterdir()) if fnmatch.fnmatchcase(x.name, part)]
                elif (hp / part).exists():
                    nxt.append(f"{m}/{part}")
            matches = nxt
        return matches or [pattern]

    def cmd_cat(self, args: list[str]) -> int:
        for p in [g for a in args for g in self._glob(a)]:
            hp = self.dev.host_path(p)
            if not hp.is_file():
                self.err(f"cat: {p}: No such file or directory\n")
                return 1
            try:
                self.send(1, self.dev.read_file(self.uid, p))
            except AccessDenied:
                self.err(f"cat: {p}: Permission denied\n")
                return 1
        return 0

    def cmd_chmod(self, args: list[str]) -> int:
        """`chmod OCTAL PATH...`: only the owner (or root) may; shared storage ignores it (FUSE)."""
        if len(args) < 2 or not all(c in "01234567" for c in args[0]):
            self.err("chmod: the vitdeploy emulator takes an octal mode and paths\n")
            return 1
        for p in args[1:]:
            if not self.dev.host_path(p).exists():
                self.err(f"chmod: {p}: No such file or directory\n")
                return 1
            uid, gid, _ = self.dev.stat_of(p)
            if self.dev._shared_owner(self.dev.norm(p)) is not None:
                continue
            if uid != SHELL_UID:
                self.err(f"chmod: {p}: Operation not permitted\n")
                return 1
            self.dev.owners[self.dev.norm(p)] = (uid, gid, int(args[0], 8))
        return 0

    def cmd_run_as(self, args: list[str]) -> int:
        """`run-as PKG CMD...`: CMD as the app's uid, for an installed debuggable package (cat only here)."""
        if len(args) < 2:
            self.err("run-as: usage: run-as <package-name> [--user <uid>] <command> [<args>]\n")
            return 1
        pkg, cmd = args[0], args[1:]
        if pkg not in self.dev.packages:
            self.err(f"run-as: unknown package: {pkg}\n")
            return 1
        if pkg not in self.dev.debuggable:
            self.err(f"run-as: package not debuggable: {pkg}\n")
            return 1
        if cmd[0] != "cat":
            self.err(f"run-as: exec failed for {cmd[0]}: the vitdeploy emulator runs only cat as the app\n")
            return 1
        self.uid = HARNESS_UID
        try:
            return self.cmd_cat(cmd[1:])
        finally:
            self.uid = SHELL_UID

    def cmd_dumpsys(self, args: list[str]) -> int:
        if args[:1] == ["thermalservice"]:
            self.out("IsStatusOverride: false\nThermalEventListeners:\n\tcallbacks: 1\n"
                     f"\tkilled: false\n\tbroadcasts count: -1\nThermalStatusListeners:\n\tcallbacks: 1\n"
                     f"\tkilled: false\n\tbroadcasts count: -1\nThermal Status: {self.dev.thermal_status}\n"
                     "Cached temperatures:\n\tTemperature{mValue=36.2, mType=3, mName=SKIN, mStatus=0}\n"
                     "HAL Ready: true\n")
            return 0
        self.err(f"Can't find service: {args[0] if args else ''}\n")
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
            outcome = "java.lang.AssertionError: missing instrumentation argument 'request' (-e request PATH)"
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
                     f"INSTRUMENTATION_STATUS: stack={outcome}\n"
                     "INSTRUMENTATION_STATUS_CODE: -2\n"
                     f"INSTRUMENTATION_RESULT: stream=\nTime: {secs:.3f}\nThere was 1 failure:\n"
                     f"1) run({cls})\n{outcome}\n\nFAILURES!!!\n"
                     "Tests run: 1,  Failures: 1\n\n\nINSTRUMENTATION_CODE: -1\n")
        return 0  # am instrument exits 0 even when the test fails


class _Dropped(Exception):
    pass


EXTERNAL_FILES = f"/sdcard/Android/data/{HARNESS_PACKAGE}/files"


def run_harness(dev: EmulatedDevice, request_path: str) -> str | None:
    """What HarnessBenchmark.kt does, as the app's uid, with the host LiteRT runtime.

    Returns None, or the exception line the failed test prints ("java.io.FileNotFoundException: ...").
    """
    from vitdeploy.devices.protocol import HarnessRequest, HarnessResult, ProtocolError

    app = HARNESS_UID
    req_host = dev.host_path(request_path)
    try:  # File.isFile(): a stat, so only search permission on the directories matters
        dev.access(app, posixpath.dirname(dev.norm(request_path)), "x")
        visible = req_host.is_file()
    except AccessDenied:
        visible = False
    if not visible:
        return (f"java.lang.IllegalStateException: request file {request_path} not found "
                "(is it readable by the app?)")
    try:
        request = HarnessRequest.loads(dev.read_file(app, request_path).decode())
    except AccessDenied as e:
        return f"java.io.FileNotFoundException: {e}"
    except ProtocolError as e:
        return f"java.lang.IllegalStateException: {e}"
    # getExternalFilesDir(null): the system creates the app's external files dir for it.
    dev.host_path(EXTERNAL_FILES).mkdir(parents=True, exist_ok=True)
    in_dev = posixpath.dirname(dev.norm(request_path))
    out_dev = request.output_dir or in_dev  # HarnessBenchmark writes next to the request without output_dir
    try:
        dev.make_dirs(app, out_dev, 0o700)
    except AccessDenied:
        return f"java.lang.IllegalStateException: cannot create output dir {out_dev}"
    device_info = {
        "platform": "android", "manufacturer": dev.props.get("ro.product.manufacturer"),
        "model": dev.props.get("ro.product.model"), "device": dev.props.get("ro.product.device"),
        "soc": dev.props.get("ro.soc.model"), "os_version": dev.props.get("ro.build.version.release"),
        "sdk": dev.sdk, "abi": dev.props.get("ro.product.cpu.abi"),
        "runtime": ("ExecuTorch (host executorch.runtime, vitdeploy adb emulator)" if request.model.endswith(".pte")
                    else "LiteRT (host ai_edge_litert, vitdeploy adb emulator)"),
    }
    configs = [_run_config(request, cfg, in_dev, out_dev, dev) for cfg in request.configs()]
    result = HarnessResult(request_id=request.request_id, status="ok", device=device_info, configs=configs)
    try:
        dev.create_file(app, f"{out_dev}/result.json", json.dumps(result.to_json(), indent=2).encode(), 0o600)
    except AccessDenied:
        return f"java.lang.IllegalStateException: cannot write {out_dev}/result.json"
    return None


# Tensor types HarnessBenchmark.kt can feed and read: org.tensorflow.lite.DataType has no FLOAT16,
# so the Java Interpreter API cannot touch a float16 tensor at all.
JAVA_DTYPES = {"float32", "int32", "int64", "int8", "uint8", "int16", "bool"}
# A Tensor G2's cores by max frequency (kHz): 4 little, 2 mid, 2 big, as cpuinfo_max_freq reports them.
CPU_MAX_FREQ_KHZ = [1803000] * 4 + [2348000] * 2 + [2850000] * 2


def fastest_cpus(count: int) -> list[int]:
    """CpuAffinity.fastestCpus: highest max frequency first, ties broken by the higher index."""
    order = sorted(range(len(CPU_MAX_FREQ_KHZ)), key=lambda c: (-CPU_MAX_FREQ_KHZ[c], -c))
    return order[:max(1, min(count, len(order)))]


def cpu_affinity(dev: EmulatedDevice, threads: int | None) -> dict | None:
    """What the harness reports about pinning: the CPUs asked for, whether sched_setaffinity
    succeeded, and the mask the thread really has afterwards (sched_getaffinity)."""
    if threads is None:
        return None
    want = fastest_cpus(threads)
    errno = dev.faults.get("pin_error")
    if errno:
        return {"requested": want, "pinned": False, "mask": list(range(len(CPU_MAX_FREQ_KHZ))),
                "error": f"sched_setaffinity({', '.join(map(str, want))}) failed: errno {errno}"}
    return {"requested": want, "pinned": True, "mask": sorted(want), "error": None}


def _run_config(request, cfg: dict, in_dev: str, out_dev: str, dev: EmulatedDevice):
    """One configuration, as HarnessBenchmark.runConfig does it, reading and writing as the app."""
    import numpy as np

    from vitdeploy.devices.protocol import ConfigResult, ProtocolError, TensorFile

    base = dict(name=cfg["name"], compute_unit=cfg["compute_unit"], threads=cfg["threads"])
    unit = cfg["compute_unit"]
    if unit in ("gpu", "nnapi"):
        return ConfigResult(status="error", error=f"{unit} delegate is not available on this device", **base)
    if request.model.endswith(".pte"):
        return _run_pte_config(request, cfg, in_dev, out_dev, dev, base)
    app = HARNESS_UID
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        pin = cpu_affinity(dev, cfg["threads"])
        t0 = time.perf_counter_ns()
        model_bytes = dev.read_file(app, f"{in_dev}/{request.model}")
        t1 = time.perf_counter_ns()
        resolver = OpResolverType.AUTO if unit == "xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        interp = Interpreter(model_content=model_bytes, num_threads=cfg["threads"], experimental_op_resolver_type=resolver)
        interp.allocate_tensors()
        t2 = time.perf_counter_ns()
        ins, outs = interp.get_input_details(), interp.get_output_details()
        for kind, dets in (("input", ins), ("output", outs)):
            for i, det in enumerate(dets):
                if np.dtype(det["dtype"]).name not in JAVA_DTYPES:
                    raise IllegalArgument(f"DataType error: {kind} {i} is {np.dtype(det['dtype']).name}, "
                                          "which the LiteRT Java API does not recognize")
        if len(ins) != len(request.inputs):
            raise IllegalState(f"model has {len(ins)} inputs, the request gives {len(request.inputs)}")
        for i, (det, spec) in enumerate(zip(ins, request.inputs)):
            name = np.dtype(det["dtype"]).name
            if spec.dtype != name:
                raise IllegalState(f"input {i} is {name.upper()}; the request gives {spec.dtype}")
            if list(det["shape"]) != list(spec.shape):
                raise IllegalState(f"input {i} has shape {list(det['shape'])}, the request gives {spec.shape}")
            data = dev.read_file(app, f"{in_dev}/{spec.file}")
            if len(data) != spec.nbytes:
                raise IllegalState(f"{spec.file} has {len(data)} bytes, expected {spec.nbytes}")
            interp.set_tensor(det["index"], np.frombuffer(data, np.dtype(name).newbyteorder("<")).reshape(spec.shape))

        def invoke() -> float:
            if dev.cancel.is_set():
                raise IllegalState("instrumentation was stopped")
            s = time.perf_counter_ns()
            interp.invoke()
            return (time.perf_counter_ns() - s) / 1e6

        first = invoke()
        for _ in range(request.warmup):
            invoke()
        lat = [invoke() for _ in range(request.runs)]
        outputs = []
        for i, det in enumerate(outs):
            arr = np.ascontiguousarray(interp.get_tensor(det["index"]))
            name = f"{cfg['name']}.output{i}.bin"
            dev.create_file(app, f"{out_dev}/{name}", arr.astype(arr.dtype.newbyteorder("<")).tobytes(), 0o600)
            outputs.append(TensorFile(file=name, shape=[int(d) for d in arr.shape] or [1], dtype=arr.dtype.name))
        return ConfigResult(status="ok", load_ms=(t1 - t0) / 1e6, init_ms=(t2 - t1) / 1e6, first_inference_ms=first,
                            latencies_ms=lat, peak_memory_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                            outputs=outputs, cpu_affinity=pin, **base)
    except AccessDenied as e:  # what libcore throws for open(2) failing with EACCES
        return ConfigResult(status="error", error=f"FileNotFoundException: {e}", **base)
    except (IllegalState, IllegalArgument) as e:
        return ConfigResult(status="error", error=f"{type(e).__name__}Exception: {e}", **base)
    except (ValueError, RuntimeError, OSError, ProtocolError) as e:
        return ConfigResult(status="error", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", **base)


# ExecuTorch's ScalarType names -> the protocol's; HarnessBenchmark.kt writes these output types
# (Tensor.dataAs*Array) and refuses others, as ptePutOutputs does.
PTE_OUTPUT_DTYPES = {"torch.float32": "float32", "torch.int32": "int32", "torch.int64": "int64",
                     "torch.int8": "int8", "torch.uint8": "uint8"}


def _run_pte_config(request, cfg: dict, in_dev: str, out_dev: str, dev: EmulatedDevice, base: dict):
    """HarnessBenchmark.runPteConfig: Module.load(path, LOAD_MODE_MMAP, threads), the backends check,
    float32 inputs through Tensor.fromBlob, forward, outputs as raw little-endian bytes."""
    import numpy as np

    from vitdeploy.devices.protocol import ConfigResult, TensorFile

    app = HARNESS_UID
    try:
        pin = cpu_affinity(dev, cfg["threads"])
        import torch
        from executorch.runtime import Runtime

        t0 = time.perf_counter_ns()
        # Module.load checks the path is a readable file (ExecuTorchRuntime.validateFilePath) before mapping it.
        model_bytes = dev.read_file(app, f"{in_dev}/{request.model}")
        try:
            program = Runtime.get().load_program(model_bytes)
        except Exception as e:  # noqa: BLE001 - Module's constructor failing to load the program
            raise ExecutorchRuntime(f"Failed to load program ({type(e).__name__})") from None
        t1 = time.perf_counter_ns()
        # getMethodMetadata("forward").backends, checked before loadMethod as the app does.
        if "CoreMLBackend" in _pte_backends(model_bytes):
            raise IllegalState("this .pte was lowered with the Core ML delegate (CoreMLBackend); only iOS runs it")
        try:
            method = program.load_method("forward")
        except Exception as e:  # noqa: BLE001 - what Module.loadMethod's error code becomes on the phone
            raise ExecutorchRuntime(f"Failed to load method: forward ({type(e).__name__})") from None
        t2 = time.perf_counter_ns()
        inputs = []
        for i, spec in enumerate(request.inputs):
            if spec.dtype != "float32":
                raise IllegalState(f"input {i} is {spec.dtype}; a .pte takes float32")
            data = dev.read_file(app, f"{in_dev}/{spec.file}")
            if len(data) != spec.nbytes:
                raise IllegalState(f"{spec.file} has {len(data)} bytes, expected {spec.nbytes}")
            inputs.append(torch.from_numpy(np.frombuffer(data, "<f4").reshape(spec.shape).copy()))

        def invoke():
            if dev.cancel.is_set():
                raise IllegalState("instrumentation was stopped")
            s = time.perf_counter_ns()
            try:
                out = method.execute(inputs)
            except Exception as e:  # noqa: BLE001 - Module.execute throws ExecutorchRuntimeException
                raise ExecutorchRuntime(f"Execution of method forward failed ({type(e).__name__})") from None
            return (time.perf_counter_ns() - s) / 1e6, out

        first, out = invoke()
        for _ in range(request.warmup):
            invoke()
        lat = []
        for _ in range(request.runs):
            ms, out = invoke()
            lat.append(ms)
        outputs = []
        for i, t in enumerate(out):
            if not isinstance(t, torch.Tensor):
                raise IllegalState(f"output {i} is not a tensor")
            name = PTE_OUTPUT_DTYPES.get(str(t.dtype))
            if name is None:
                raise IllegalState(f"output {i} is {t.dtype}, which the harness does not write")
            arr = np.ascontiguousarray(t.detach().numpy())
            file = f"{cfg['name']}.output{i}.bin"
            dev.create_file(app, f"{out_dev}/{file}", arr.astype(arr.dtype.newbyteorder("<")).tobytes(), 0o600)
            outputs.append(TensorFile(file=file, shape=[int(d) for d in arr.shape] or [1], dtype=name))
        return ConfigResult(status="ok", load_ms=(t1 - t0) / 1e6, init_ms=(t2 - t1) / 1e6, first_inference_ms=first,
                            latencies_ms=lat, peak_memory_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                            outputs=outputs, cpu_affinity=pin, **base)
    except AccessDenied as e:
        return ConfigResult(status="error", error=f"FileNotFoundException: {e}", **base)
    except (IllegalState, IllegalArgument) as e:
        return ConfigResult(status="error", error=f"{type(e).__name__}Exception: {e}", **base)
    except ExecutorchRuntime as e:
        return ConfigResult(status="error", error=f"ExecutorchRuntimeException: {e}", **base)


def _pte_backends(data: bytes) -> list[str]:
    """Module.getMethodMetadata("forward").backends: the delegate ids of the forward plan."""
    from executorch.exir._serialize._program import deserialize_pte_binary

    program = deserialize_pte_binary(data)
    program = getattr(program, "program", program)
    return sorted({d.id for plan in program.execution_plan if plan.name == "forward" for d in plan.delegates})


class ExecutorchRuntime(Exception):
    """org.pytorch.executorch.ExecutorchRuntimeException in the harness."""


class IllegalState(Exception):
    """Kotlin's check() failing: IllegalStateException in the harness."""


class IllegalArgument(Exception):
    """IllegalArgumentException, e.g. from DataType.fromC for a type Java does not know."""


def _c_ulong(text: str) -> int:
    """strtoul(text, NULL, 0), as adbd parses SEND's mode: 0x.. hex, 0.. octal, else decimal."""
    text = text.strip()
    if text.lower().startswith("0x"):
        return int(text, 16)
    if text.startswith("0") and len(text) > 1:
        return int(text, 8)
    return int(text or "0")


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

    def _stat(self, path: str):
        """(st_mode, uid, gid, stat) as shell sees the path, or an errno."""
        hp = self.dev.host_path(path)
        try:
            self.dev.access(SHELL_UID, posixpath.dirname(self.dev.norm(path)), "x")
        except AccessDenied:
            return 13  # EACCES
        if not hp.exists():
            return 2  # ENOENT
        uid, gid, mode = self.dev.stat_of(path)
        st = hp.stat()
        kind = 0o040000 if hp.is_dir() else 0o100000
        return kind | mode, uid, gid, st

    def stat_v1(self, path: str) -> None:
        got = self._stat(path)
        if isinstance(got, int):
            self.conn.sock.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            return
        mode, _, _, st = got
        self.conn.sock.sendall(b"STAT" + struct.pack("<III", mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))

    def stat_v2(self, ident: bytes, path: str) -> None:
        got = self._stat(path)
        if isinstance(got, int):
            self.conn.sock.sendall(ident + struct.pack("<IQQIIIIQqqq", got, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
            return
        mode, uid, gid, st = got
        self.conn.sock.sendall(ident + struct.pack("<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, mode, st.st_nlink,
                                                   uid, gid, st.st_size, int(st.st_atime), int(st.st_mtime),
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
        parent = posixpath.dirname(self.dev.norm(path))
        try:  # adbd runs as shell: missing parents are created 0775 shell:shell (secure_mkdirs, umask 0)
            self.dev.make_dirs(SHELL_UID, parent, 0o775)
        except AccessDenied:
            self.fail("secure_mkdirs() failed: Permission denied")
            return
        try:
            self.dev.create_file(SHELL_UID, path, b"".join(chunks), adbd_send_mode(_c_ulong(mode)))
        except AccessDenied:
            self.fail("couldn't create file: Permission denied")
            return
        self.reply(b"OKAY", length=0)

    def recv(self, path: str) -> None:
        hp = self.dev.host_path(path)
        if not hp.is_file():
            self.fail("open failed: No such file or directory")
            return
        try:
            data = self.dev.read_file(SHELL_UID, path)
        except AccessDenied:
            self.fail("open failed: Permission denied")
            return
        for i in range(0, len(data), SYNC_MAX_DATA):
            self.reply(b"DATA", data[i:i + SYNC_MAX_DATA])
        self.reply(b"DONE", length=0)

    def list(self, path: str) -> None:
        hp = self.dev.host_path(path)
        try:
            self.dev.access(SHELL_UID, path, "r")
        except AccessDenied:
            hp = None  # adbd's opendir fails: an empty listing
        if hp is not None and hp.is_dir():
            for child in sorted(hp.iterdir()):
                st = child.stat()
                name = child.name.encode()
                self.conn.sock.sendall(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF,
                                                             int(st.st_mtime), len(name)) + name)
        self.conn.sock.sendall(b"DONE" + struct.pack("<IIII", 0, 0, 0, 0))
