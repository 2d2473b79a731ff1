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


# -- the committed Gradle wrapper (issue 20) -----------------------------------------------

import hashlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import zipfile  # noqa: E402

HARNESS = harness_build.harness_dir()
# gradle-wrapper.jar as Gradle 9.4.1's `wrapper` task writes it (taken from the npm package
# @react-native-community/template 0.87.2; several public projects pin the same SHA-256 for the
# official 9.4.1 jar). The jar only downloads and starts the distribution the properties name.
WRAPPER_JAR_SHA256 = "55243ef57851f12b070ad14f7f5bb8302daceeebc5bce5ece5fa6edb23e1145c"
# Official SHA-256 of gradle-8.9-bin.zip (Gradle's release checksums; Docker's gradle:8.9 image pins it too).
GRADLE_89_SHA256 = "d725d707bfabd4dfdc958c624003b3c80accc03f7037b5122c4b1d0ef15cecab"
# Minimum Gradle per AGP minor version (developer.android.com, "Android Gradle plugin and Gradle compatibility").
AGP_MIN_GRADLE = {(8, 5): (8, 7), (8, 6): (8, 7), (8, 7): (8, 9), (8, 8): (8, 10), (8, 9): (8, 11)}


def _properties() -> dict:
    text = (HARNESS / "gradle/wrapper/gradle-wrapper.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_wrapper_is_committed_and_fits_agp():
    gradlew = HARNESS / "gradlew"
    assert gradlew.is_file() and os.access(gradlew, os.X_OK)
    assert gradlew.read_text().startswith("#!/bin/sh") and 'gradle/wrapper/gradle-wrapper.jar' in gradlew.read_text()
    jar = HARNESS / "gradle/wrapper/gradle-wrapper.jar"
    assert hashlib.sha256(jar.read_bytes()).hexdigest() == WRAPPER_JAR_SHA256
    with zipfile.ZipFile(jar) as z:
        assert "Main-Class: org.gradle.wrapper.GradleWrapperMain" in z.read("META-INF/MANIFEST.MF").decode()
    props = _properties()
    version = re.search(r"gradle-(\d+)\.(\d+)(?:\.\d+)?-bin\.zip$", props["distributionUrl"]).groups()
    assert props["distributionSha256Sum"] == GRADLE_89_SHA256 and version == ("8", "9")
    agp = re.search(r'id\("com.android.application"\) version "(\d+)\.(\d+)\.\d+"',
                    (HARNESS / "build.gradle.kts").read_text()).groups()
    assert tuple(map(int, version)) >= AGP_MIN_GRADLE[tuple(map(int, agp))]
    # harness_build picks the committed wrapper, not a gradle on PATH.
    assert "gradlew" in harness_build.gradle_command.__code__.co_consts


FAKE_GRADLE_MAIN = """
package org.gradle.launcher;
public class GradleMain {
    public static void main(String[] args) throws Exception {
        java.nio.file.Files.writeString(java.nio.file.Path.of(System.getenv("FAKE_GRADLE_OUT")),
            String.join(" ", args) + "\\n" + System.getProperty("org.gradle.appname") + "\\n");
    }
}
"""


@pytest.fixture(scope="module")
def fake_distribution(tmp_path_factory):
    """A stand-in gradle-8.9-bin.zip: lib/gradle-launcher-8.9.jar whose GradleMain records its arguments."""
    if shutil.which("java") is None or shutil.which("javac") is None:
        pytest.skip("java/javac not installed (apt-get install default-jdk-headless)")
    work = tmp_path_factory.mktemp("gradle-dist")
    src = work / "src/org/gradle/launcher/GradleMain.java"
    src.parent.mkdir(parents=True)
    src.write_text(FAKE_GRADLE_MAIN)
    subprocess.run(["javac", "--release", "17", "-d", str(work / "classes"), str(src)], check=True,
                   capture_output=True)
    dist = work / "gradle-8.9-bin.zip"
    with zipfile.ZipFile(dist, "w") as z:
        launcher = work / "launcher.jar"
        with zipfile.ZipFile(launcher, "w") as j:
            j.write(work / "classes/org/gradle/launcher/GradleMain.class", "org/gradle/launcher/GradleMain.class")
        for d in ("gradle-8.9/", "gradle-8.9/lib/"):  # the wrapper's unzip makes no parent directories
            z.writestr(d, b"")
        z.write(launcher, "gradle-8.9/lib/gradle-launcher-8.9.jar")
    return dist


def _wrapper_project(tmp_path, dist, sha) -> "Path":
    proj = tmp_path / "android harness"
    proj.mkdir(parents=True)
    shutil.copy2(HARNESS / "gradlew", proj / "gradlew")
    shutil.copytree(HARNESS / "gradle", proj / "gradle")
    props = (HARNESS / "gradle/wrapper/gradle-wrapper.properties").read_text()
    # Only the download location and its checksum change: a file URL, since nothing here reaches the network.
    props = re.sub(r"distributionUrl=.*", "distributionUrl=" + dist.as_uri().replace(":", "\\\\:"), props)
    props = re.sub(r"distributionSha256Sum=.*", f"distributionSha256Sum={sha}", props)
    (proj / "gradle/wrapper/gradle-wrapper.properties").write_text(props)
    return proj


def test_wrapper_runs_offline_with_a_local_distribution(fake_distribution, tmp_path):
    """The committed gradlew + jar: check the checksum, unpack, start the distribution's launcher."""
    proj = _wrapper_project(tmp_path, fake_distribution, hashlib.sha256(fake_distribution.read_bytes()).hexdigest())
    out = tmp_path / "args.txt"
    env = {**os.environ, "GRADLE_USER_HOME": str(tmp_path / "home"), "FAKE_GRADLE_OUT": str(out)}
    p = subprocess.run([str(proj / "gradlew"), ":app:assembleDebug", "--quiet"], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert out.read_text().splitlines() == [":app:assembleDebug --quiet", "gradlew"]
    # A distribution whose checksum differs is refused before it runs.
    bad = _wrapper_project(tmp_path / "bad", fake_distribution, GRADLE_89_SHA256)
    env["GRADLE_USER_HOME"] = str(tmp_path / "home2")
    p = subprocess.run([str(bad / "gradlew"), "help"], cwd=bad, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "Verification of Gradle distribution failed" in p.stderr
