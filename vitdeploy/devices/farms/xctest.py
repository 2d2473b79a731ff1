"""The iOS side of an AWS Device Farm run: the test package built from the user's ``.xctestrun``.

Device Farm has no devicectl guarantee on its macOS hosts, so nothing is copied into the app's data container.
Instead (the approach of pytorch/executorch's Device Farm iOS spec, which copies its models into the app before
``xcodebuild test-without-building``):

- the test package (uploaded as APPIUM_NODE_TEST_PACKAGE, as pytorch/test-infra uploads its xctestrun zip)
  holds one ``vitdeploy-rK.xctestrun`` per repeat and the payload under ``vitdeploy-payload/``;
- each ``vitdeploy-rK.xctestrun`` is the user's, rewritten here with plistlib: the harness test target gets
  ``VITDEPLOY_REQUEST=__TESTHOST__/vitdeploy/request-rK.json`` and ``VITDEPLOY_RESULT_TAG=rK`` in both its
  ``EnvironmentVariables`` and ``TestingEnvironmentVariables``;
- the spec (testspec.ios_spec) unzips the farm's (re-signed) ``.ipa``, copies ``vitdeploy-payload/`` into the
  app bundle as ``vitdeploy/``, and puts the app where the xctestrun's ``TestHostPath`` points
  (``__TESTROOT__`` = the folder of the .xctestrun); the harness XCTest resolves ``__TESTHOST__/`` against
  its host app bundle (ios_harness/.../HarnessBenchmarkTests.swift) and prints its result between the
  marker lines of payload.py, which the spec cuts out of xcodebuild's output into ``result-rK.json``.

None of this has run on a Mac or on Device Farm (docs/farms.md): what is checked here is the files' shapes.
"""

from __future__ import annotations

import copy
import io
import plistlib
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vitdeploy.devices.farms.payload import Payload, _write_zip
from vitdeploy.errors import VitdeployError

TEST_TARGET = "VitdeployHarnessTests"
PAYLOAD_DIR = "vitdeploy-payload"  # in the test package
BUNDLE_SUBDIR = "vitdeploy"  # in the host app bundle on the phone
REQUEST_ENV, TAG_ENV = "VITDEPLOY_REQUEST", "VITDEPLOY_RESULT_TAG"
ENV_KEYS = ("EnvironmentVariables", "TestingEnvironmentVariables")
DEFAULT_HOST = "Debug-iphoneos/VitdeployHarness.app"
_SAFE_REL = re.compile(r"^[A-Za-z0-9._+-]+(/[A-Za-z0-9._+-]+)*\.app$")
IPA_LABEL, XCTESTRUN_LABEL = "harness .ipa", ".xctestrun"  # how error lines name the two files


@dataclass
class XcTestRun:
    """A parsed .xctestrun: the plist and where its harness test target expects the host app."""

    source: str
    doc: dict
    host_rel: str  # TestHostPath without "__TESTROOT__/", e.g. Debug-iphoneos/VitdeployHarness.app

    @property
    def app_name(self) -> str:
        return PurePosixPath(self.host_rel).name


def _targets(doc: dict) -> list[dict]:
    """Every test target dict: FormatVersion 2 (TestConfigurations -> TestTargets) or 1 (top-level keys)."""
    if isinstance(doc.get("TestConfigurations"), list):
        return [t for c in doc["TestConfigurations"] if isinstance(c, dict)
                for t in c.get("TestTargets") or [] if isinstance(t, dict)]
    return [v for k, v in doc.items() if k != "__xctestrun_metadata__" and isinstance(v, dict)]


def _harness_target(doc: dict) -> dict | None:
    for t in _targets(doc):
        bundle = str(t.get("TestBundlePath") or "")
        if t.get("BlueprintName") == TEST_TARGET or bundle.rstrip("/").endswith(f"/{TEST_TARGET}.xctest"):
            return t
    return None


def _xctestrun_bytes(path: Path) -> tuple[str, bytes]:
    """The .xctestrun itself, or the one inside a zip of xcodebuild's Build/Products folder."""
    if path.suffix == ".xctestrun":
        return path.name, path.read_bytes()
    try:
        with zipfile.ZipFile(path) as z:
            names = sorted(n for n in z.namelist() if n.endswith(".xctestrun") and "__MACOSX" not in n)
            if len(names) != 1:
                raise VitdeployError(f"{XCTESTRUN_LABEL} {path.name}: the zip holds {len(names)} .xctestrun files "
                                     "(need exactly one)")
            info = z.getinfo(names[0])
            if info.file_size > 1 << 20:
                raise VitdeployError(f"{XCTESTRUN_LABEL} {path.name}: {names[0]} is over 1 MiB")
            return PurePosixPath(names[0]).name, z.read(names[0])
    except zipfile.BadZipFile:
        raise VitdeployError(f"{XCTESTRUN_LABEL}: pass the .xctestrun file or a zip holding one; "
                             f"{path.name} is neither") from None


def read_xctestrun(path: Path | str) -> XcTestRun:
    """Parse the user's .xctestrun (from ``xcodebuild build-for-testing``); one line if it is not the harness's."""
    path = Path(path)
    if not path.is_file():
        raise VitdeployError(f"{XCTESTRUN_LABEL} not found: {path}")
    name, data = _xctestrun_bytes(path)
    try:
        doc = plistlib.loads(data)
    except Exception:  # plistlib raises InvalidFileException, ExpatError, ValueError ...
        raise VitdeployError(f"{XCTESTRUN_LABEL} {name}: not a property list") from None
    if not isinstance(doc, dict):
        raise VitdeployError(f"{XCTESTRUN_LABEL} {name}: not an .xctestrun (no dictionary at the top)")
    target = _harness_target(doc)
    if target is None:
        raise VitdeployError(f"{XCTESTRUN_LABEL} {name}: no {TEST_TARGET} test target; build ios_harness/ with "
                             "`xcodebuild build-for-testing` (docs/farms.md)")
    host = str(target.get("TestHostPath") or "")
    rel = host[len("__TESTROOT__/"):] if host.startswith("__TESTROOT__/") else ""
    if not _SAFE_REL.match(rel) or ".." in rel.split("/"):
        raise VitdeployError(f"{XCTESTRUN_LABEL} {name}: TestHostPath {host!r} is not an app under __TESTROOT__/")
    return XcTestRun(source=name, doc=doc, host_rel=rel)


def request_path(k: int) -> str:
    return f"__TESTHOST__/{BUNDLE_SUBDIR}/request-r{k}.json"


def for_repeat(run: XcTestRun, k: int) -> bytes:
    """The user's .xctestrun with repeat ``k``'s request and result tag in the harness target's environment."""
    doc = copy.deepcopy(run.doc)
    target = _harness_target(doc)
    for key in ENV_KEYS:
        env = target.get(key)
        env = dict(env) if isinstance(env, dict) else {}
        env.update({REQUEST_ENV: request_path(k), TAG_ENV: f"r{k}"})
        target[key] = env
    return plistlib.dumps(doc, fmt=plistlib.FMT_XML, sort_keys=True)


def xctestrun_name(k: int) -> str:
    return f"vitdeploy-r{k}.xctestrun"


def build_test_package(payload: Payload, run: XcTestRun, out: Path) -> Path:
    """The zip uploaded as the test package: ``vitdeploy-rK.xctestrun`` per repeat (at the top, so
    ``__TESTROOT__`` is the package folder) and the payload under ``vitdeploy-payload/``."""
    work = out.parent / f"{out.stem}-xctestrun"
    work.mkdir(parents=True, exist_ok=True)
    members = []
    for k in range(1, len(payload.requests) + 1):
        (work / xctestrun_name(k)).write_bytes(for_repeat(run, k))
        members.append((xctestrun_name(k), work / xctestrun_name(k)))
    members += [(f"{PAYLOAD_DIR}/{name}", src) for name, src in sorted(payload.files.items())]
    _write_zip(out, members)
    return out


def ipa_bundle_id(ipa: Path | str, app_name: str) -> str | None:
    """The CFBundleIdentifier of ``Payload/<app_name>`` in the .ipa; one line if the app is not in it."""
    ipa = Path(ipa)
    try:
        with zipfile.ZipFile(ipa) as z:
            names = z.namelist()
            if not any(n.startswith(f"Payload/{app_name}/") for n in names):
                apps = sorted({n.split("/")[1] for n in names if n.startswith("Payload/") and n.count("/") >= 2})
                raise VitdeployError(f"{IPA_LABEL} {ipa.name}: no Payload/{app_name} in it (has: "
                                     f"{', '.join(apps) or 'no app'}); the .xctestrun's test host is {app_name}")
            info = f"Payload/{app_name}/Info.plist"
            if info not in names or z.getinfo(info).file_size > 1 << 20:
                return None
            data = z.read(info)
    except zipfile.BadZipFile:
        raise VitdeployError(f"{IPA_LABEL} {ipa.name}: not an .ipa (zip) file") from None
    try:
        doc = plistlib.load(io.BytesIO(data))
    except Exception:  # a damaged Info.plist: the spec falls back to the default bundle id
        return None
    bundle_id = doc.get("CFBundleIdentifier") if isinstance(doc, dict) else None
    return bundle_id if isinstance(bundle_id, str) and re.match(r"^[A-Za-z0-9.-]+$", bundle_id) else None
