"""Building android_harness/ with Gradle: command contract and errors (no Android SDK here: a stand-in gradlew)."""

from __future__ import annotations

import shutil

import pytest

from vitdeploy.devices import harness_build
from vitdeploy.errors import VitdeployError

FAKE_GRADLEW = """#!/bin/sh
echo "$@" > "$(dirname "$0")/gradle-args.txt"
mkdir -p "$(dirname "$0")/app/build/outputs/apk/debug" "$(dirname "$0")/app/build/outputs/apk/androidTest/debug"
touch "$(dirname "$0")/app/build/outputs/apk/debug/app-debug.apk"
touch "$(dirname "$0")/app/build/outputs/apk/androidTest/debug/app-debug-androidTest.apk"
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    proj = tmp_path / "android harness"  # a space on purpose: argv lists, no shell
    shutil.copytree(harness_build.harness_dir(), proj, ignore=shutil.ignore_patterns("build"))
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no gradle on PATH
    return proj


def test_the_bundled_harness_is_found():
    assert (harness_build.harness_dir() / "settings.gradle.kts").is_file()


def test_no_sdk_is_a_clear_error(project):
    assert harness_build.gradle_command(project) is None
    with pytest.raises(VitdeployError, match="needs an Android SDK"):
        harness_build.build_harness(project)


def test_builds_both_apks_with_the_wrapper(project, tmp_path, monkeypatch):
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (project / "local.properties").write_text(f"sdk.dir={sdk}\n")
    gradlew = project / "gradlew"
    gradlew.write_text(FAKE_GRADLEW)
    gradlew.chmod(0o755)
    assert harness_build.prebuilt_apks(project) is None
    apks = harness_build.build_harness(project)
    assert [a.name for a in apks] == ["app-debug.apk", "app-debug-androidTest.apk"]
    args = (project / "gradle-args.txt").read_text().strip()
    assert args == f"-p {project} :app:assembleDebug :app:assembleDebugAndroidTest --quiet"
    assert harness_build.prebuilt_apks(project) == apks


def test_gradle_failure_is_one_line(project, tmp_path, monkeypatch):
    monkeypatch.setenv("ANDROID_HOME", str(tmp_path))
    gradlew = project / "gradlew"
    gradlew.write_text("#!/bin/sh\necho 'FAILURE: Build failed with an exception.' >&2\nexit 1\n")
    gradlew.chmod(0o755)
    with pytest.raises(VitdeployError, match="Gradle failed building the harness: FAILURE: Build failed"):
        harness_build.build_harness(project)
