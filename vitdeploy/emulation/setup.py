"""``vitdeploy setup arm``: build the emulated-phone userland once, into a cache folder.

What lands in ``<cache>/arm`` (nothing outside it; the system is never changed):

* ``rootfs/`` -- Debian bookworm arm64 Python 3.11 and the libraries it loads (unpacked .debs);
* ``site/``   -- the aarch64 wheels of ai-edge-litert and numpy, at the host's versions, so the phone
  kernels are the same LiteRT release the host runs;
* ``bin/qemu-aarch64`` -- only when the host's qemu cannot model every CPU in :data:`CPUS` (bookworm's
  QEMU 7.2 has no Cortex-A55 or A710): Debian trixie's static ``qemu-user`` build;
* ``manifest.json`` -- versions, sizes, seconds, checked by :func:`find_environment`.

The folder is built beside its final place and renamed into it, so an interrupted setup never leaves
a half-built environment that later runs would trust.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..diagnostics import raise_if_interrupted
from ..errors import VitdeployError
from . import debian
from .environment import CPUS, DEBIAN_SUITE, FORMAT, MANIFEST, ArmEnvironment, arm_dir, find_environment
from .run import smoke_test

QEMU_SUITE = "trixie"  # QEMU 10: cortex-a55/a710/neoverse models, emulated /proc/cpuinfo
ROOT_PACKAGES = ["python3.11", "libstdc++6", "libgcc-s1", "libc6"]
# Never followed: debconf pulls perl; the rest is docs, timezones and terminals no model run touches.
SKIP_PACKAGES = frozenset({"debconf", "perl-base", "tzdata", "media-types", "readline-common", "dpkg",
                           "install-info", "mime-support", "libreadline8", "libncursesw6", "libtinfo6"})
# ----------------------------------------------------------------------------- building


def setup_arm(cache: Path | None = None, *, force: bool = False, say=lambda line: None, progress=None) -> ArmEnvironment:
    """Build (or reuse) the emulated ARM environment; ``say`` gets one line per step.

    ``progress(label, total_bytes)`` returns a callable taking byte counts (a progress bar), or None.
    """
    _check_host()
    final = arm_dir(cache)
    existing = find_environment(cache)
    if existing is not None and not force:
        say(f"already set up: {existing.describe()}")
        return existing
    final.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix=".arm-building-", dir=final.parent))
    try:
        qemu_rel, qemu_version = _qemu(work, say, progress)
        _userland(work / "rootfs", say, progress)
        litert, numpy_version = _wheels(work, say)
        manifest = {"format": FORMAT, "qemu": qemu_rel, "qemu_version": qemu_version, "suite": DEBIAN_SUITE,
                    "litert": litert, "numpy": numpy_version, "cpus": list(CPUS)}
        env = ArmEnvironment(work, work / qemu_rel if not Path(qemu_rel).is_absolute() else Path(qemu_rel), manifest)
        say("checking that LiteRT loads on an emulated Cortex-A76")
        smoke_test(env, cpu="cortex-a76")
        manifest.update(seconds=round(time.perf_counter() - started, 1), size_mb=round(_size(work) / 1e6))
        (work / MANIFEST).write_text(json.dumps(manifest, indent=1))
        raise_if_interrupted()  # a half-built environment is never published
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    env = find_environment(cache)
    if env is None:  # pragma: no cover - the rename just happened
        raise VitdeployError(f"{final}: setup finished but the environment is incomplete")
    say(f"ready: {env.describe()}")
    return env


def _check_host() -> None:
    if sys.platform != "linux":
        raise VitdeployError("the emulated ARM environment needs Linux (qemu user-mode emulation)")
    if platform.machine() not in ("x86_64", "AMD64"):
        raise VitdeployError(f"the emulated ARM environment is built for x86_64 hosts, not {platform.machine()}")


def _qemu(work: Path, say, progress) -> tuple[str, str]:
    """The host's qemu-aarch64 when it models every CPU we use, else trixie's static build in ``bin/``."""
    system = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
    if system and set(CPUS) <= _qemu_cpus(system):
        say(f"using the system's {system}")
        return system, _qemu_version(system)
    why = "not installed" if not system else f"{system} cannot model {', '.join(sorted(set(CPUS) - _qemu_cpus(system)))}"
    say(f"qemu-aarch64: {why}; fetching Debian {QEMU_SUITE}'s static qemu-user")
    index = debian.read_index(QEMU_SUITE, "amd64")
    pkg = index["qemu-user"]
    data = debian.download(pkg, progress=progress("qemu-user", pkg.size) if progress else None)
    debian.extract_deb(data, work / "pkg-qemu", only=("usr/bin/qemu-aarch64",))
    (work / "bin").mkdir()
    target = work / "bin" / "qemu-aarch64"
    (work / "pkg-qemu" / "usr" / "bin" / "qemu-aarch64").rename(target)
    shutil.rmtree(work / "pkg-qemu")
    target.chmod(0o755)
    return "bin/qemu-aarch64", _qemu_version(str(target))


def _qemu_cpus(qemu: str) -> set[str]:
    try:
        out = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {word for line in out.splitlines()[1:] for word in line.split()[:1]}


def _qemu_version(qemu: str) -> str:
    try:
        out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    words = out.split()
    return words[2] if len(words) > 2 else "?"


def _userland(rootfs: Path, say, progress) -> None:
    say(f"resolving Debian {DEBIAN_SUITE} arm64 packages for Python 3.11")
    index = debian.read_index(DEBIAN_SUITE, "arm64")
    packages = debian.closure(index, ROOT_PACKAGES, skip=SKIP_PACKAGES)
    total = sum(p.size for p in packages)
    say(f"downloading {len(packages)} packages ({total / 1e6:.0f} MB) and unpacking them into {rootfs}")
    bar = progress("arm64 packages", total) if progress else None
    rootfs.mkdir(parents=True)
    for pkg in packages:
        debian.extract_deb(debian.download(pkg, progress=bar), rootfs)


def _wheels(work: Path, say) -> tuple[str, str]:
    """aarch64 wheels of the host's ai-edge-litert and numpy, installed into ``site/`` without running pip under qemu."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        litert = version("ai-edge-litert")
    except PackageNotFoundError:
        raise VitdeployError("ai-edge-litert is not installed on the host: pip install 'vitdeploy[tflite]'") from None
    import numpy

    wanted = [f"ai-edge-litert=={litert}", f"numpy=={numpy.__version__}"]
    # Without the manylinux_2_27 tag pip silently falls back to ai-edge-litert 1.4.0 (measured).
    tags = ["--platform", "manylinux_2_27_aarch64", "--platform", "manylinux_2_28_aarch64",
            "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_17_aarch64",
            "--python-version", "311", "--implementation", "cp", "--only-binary=:all:"]
    say(f"downloading aarch64 wheels: {', '.join(wanted)}")
    wheels = work / "wheels"
    _pip(["download", *tags, "-d", str(wheels), *wanted])
    say("installing them into the emulated site-packages")
    _pip(["install", *tags, "--no-deps", "--no-compile", "--target", str(work / "site"),
          *sorted(str(p) for p in wheels.glob("*.whl"))])
    shutil.rmtree(wheels)
    return litert, numpy.__version__


def _pip(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise VitdeployError(f"pip {args[0]} of the aarch64 wheels failed: {last}")


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
