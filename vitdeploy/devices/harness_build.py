"""Build the bundled Android harness with Gradle when an Android SDK is present."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import VitdeployError

APP_APK = Path("app/build/outputs/apk/debug/app-debug.apk")
TEST_APK = Path("app/build/outputs/apk/androidTest/debug/app-debug-androidTest.apk")


def harness_dir() -> Path:
    """``android_harness/`` of this checkout (the package lives beside it in the repository)."""
    return Path(__file__).resolve().parents[2] / "android_harness"


def android_sdk(project: Path) -> Path | None:
    """The SDK from ANDROID_HOME / ANDROID_SDK_ROOT or the project's local.properties ``sdk.dir``."""
    for var in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        if os.environ.get(var) and Path(os.environ[var]).is_dir():
            return Path(os.environ[var])
    props = project / "local.properties"
    if props.is_file():
        for line in props.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "sdk.dir" and Path(value.strip()).is_dir():
                return Path(value.strip())
    return None


def gradle_command(project: Path) -> list[str] | None:
    """argv that builds both harness APKs, or None without an SDK or a Gradle to run."""
    if android_sdk(project) is None:
        return None
    wrapper = project / "gradlew"
    gradle = str(wrapper) if wrapper.is_file() and os.access(wrapper, os.X_OK) else shutil.which("gradle")
    if gradle is None:
        return None
    return [gradle, "-p", str(project), ":app:assembleDebug", ":app:assembleDebugAndroidTest", "--quiet"]


def prebuilt_apks(project: Path | None = None) -> list[Path] | None:
    """Both APKs if an earlier Gradle build left them in place."""
    project = project or harness_dir()
    apks = [project / APP_APK, project / TEST_APK]
    return apks if all(a.is_file() for a in apks) else None


def build_harness(project: Path | None = None, timeout_s: float = 1800) -> list[Path]:
    """Build the harness APKs with Gradle (app, then test APK); a clear error when that is not possible."""
    project = project or harness_dir()
    if not (project / "settings.gradle.kts").is_file():
        raise VitdeployError(f"{project}: not the Android harness project (no settings.gradle.kts)")
    cmd = gradle_command(project)
    if cmd is None:
        raise VitdeployError("building the Android harness needs an Android SDK (ANDROID_HOME or local.properties "
                             "sdk.dir) and Gradle (gradlew or gradle on PATH); see docs/harness.md, or pass "
                             "prebuilt APKs with --harness-apk")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise VitdeployError(f"Gradle did not finish building the harness within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise VitdeployError(f"Gradle failed building the harness: {lines[-1] if lines else proc.returncode}")
    apks = prebuilt_apks(project)
    if apks is None:
        raise VitdeployError(f"Gradle succeeded but the APKs are not at {APP_APK} and {TEST_APK}")
    return apks
