"""The emulated ARM environment as built by ``setup``: where it lives, what it holds, which CPUs it models.

A leaf of ``vitdeploy.emulation``: ``setup`` builds what this describes and ``run`` runs models in it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import VitdeployError

DEBIAN_SUITE = "bookworm"  # its python3.11 matches the cp311 wheels
# The emulated CPUs and what each stands for (XNNPACK picks kernels by these ISA features).
CPUS = {
    "cortex-a55": "ARMv8.2-A + FP16 + dot product; little cores of 2018-2022 phones",
    "cortex-a76": "ARMv8.2-A + FP16 + dot product; big cores A76/A77/A78/X1",
    "cortex-a710": "ARMv9-A + FP16 + dot product + i8mm + BF16 + SVE2; A710/A715/A720/X2-X4, A510/A520",
}
MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class ArmEnvironment:
    root: Path
    qemu: Path
    manifest: dict

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def python(self) -> Path:
        return self.rootfs / "usr" / "bin" / "python3.11"

    def describe(self) -> str:
        m = self.manifest
        return (f"{self.root}: qemu {m.get('qemu_version', '?')}, Debian {DEBIAN_SUITE} arm64 Python 3.11, "
                f"ai-edge-litert {m.get('litert', '?')}, numpy {m.get('numpy', '?')} "
                f"({m.get('size_mb', '?')} MB, built in {m.get('seconds', '?')} s)")


def cache_dir() -> Path:
    """``$VITDEPLOY_CACHE``, else ``$XDG_CACHE_HOME/vitdeploy``, else ``~/.cache/vitdeploy``."""
    if os.environ.get("VITDEPLOY_CACHE"):
        return Path(os.environ["VITDEPLOY_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vitdeploy"


def arm_dir(cache: Path | None = None) -> Path:
    return Path(cache or cache_dir()) / "arm"


def find_environment(cache: Path | None = None) -> ArmEnvironment | None:
    """The environment ``setup_arm`` built, or None when there is none (or an incomplete one)."""
    root = arm_dir(cache)
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != FORMAT:
        return None
    qemu = Path(manifest.get("qemu", ""))
    if not qemu.is_absolute():
        qemu = root / qemu
    env = ArmEnvironment(root, qemu, manifest)
    if not (env.python.exists() and env.site.is_dir() and qemu.exists()):
        return None
    return env


def require_environment(cache: Path | None = None) -> ArmEnvironment:
    env = find_environment(cache)
    if env is None:
        raise VitdeployError(f"the emulated ARM environment is not set up (looked in {arm_dir(cache)}); "
                             "run `vitdeploy setup arm` once (about 1 minute, ~300 MB)")
    return env


def check_cpu(cpu: str) -> str:
    if cpu not in CPUS:
        raise VitdeployError(f"unknown emulated CPU {cpu!r}; choose one of {', '.join(CPUS)}")
    return cpu
