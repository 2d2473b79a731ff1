"""The test spec vitdeploy generates for AWS Device Farm's custom test environment (version 0.1).

Android: install the harness APKs, fetch the payload Device Farm extracted onto the phone's external
storage (the EXTERNAL_DATA zip holds one inner zip, so its name is ours whatever folders the farm
keeps), check it, push model + inputs + request.json where devices/android.py pushes them, and per
repeat: cool down, record CPU frequencies and the thermal status, run the harness instrumentation with
the command line android.run_instrumentation sends, record the telemetry again, copy result.json into
$DEVICEFARM_LOG_DIR/vitdeploy (``run-as`` for a debuggable build, else ``adb pull``) and print it between
marker lines as a fallback for a customer artifact that does not come back.

Every command stands alone (version 0.1 runs each in its own shell): no variables carry over, and
nothing a command fails on stops the ones that collect results (``|| true``), because the host reads
success from the result file, not from the spec's exit status. Every path and argument is quoted with shlex.

iOS (farms/xctest.py): the payload rides in the test package, the spec copies it into the farm's re-signed
app before ``xcodebuild test-without-building``, and the harness prints its result between the same markers.

tests/test_farm_aws.py executes the Android spec's phases with bash against the emulated phone with the
real adb client, and the iOS spec's phases with bash and a stand-in ``xcodebuild`` (no Mac here: the real
xcodebuild, the phone and Device Farm's iOS host have not run it).
"""

from __future__ import annotations

import shlex
from typing import Sequence

from vitdeploy.devices.farms.payload import LOG_SUBDIR, MARK_BEGIN, MARK_END, Payload

PHASES = ("install", "pre_test", "test", "post_test")
DEFAULT_COOLDOWN_S = 30
ADB = 'adb -s "$DEVICEFARM_DEVICE_UDID"'
LOG = f'"$DEVICEFARM_LOG_DIR"/{LOG_SUBDIR}'
CPUFREQ = "cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq"


def _shell(argv: Sequence[str]) -> str:
    """``adb shell`` with one argument: the device command exactly as android.Adb.shell builds it."""
    return f"{ADB} shell {shlex.quote(shlex.join(argv))}"


def _telemetry(when: str, out: str) -> list[str]:
    return [
        f'echo "{when}.cpu_khz: $({ADB} shell {shlex.quote(CPUFREQ)} 2>/dev/null | tr -d \'\\r\' | tr \'\\n\' \' \')"'
        f" >> {out}",
        f'echo "{when}.thermal: $({ADB} shell dumpsys thermalservice 2>/dev/null | tr -d \'\\r\' '
        f"| grep -m1 'Thermal Status')\" >> {out}",
    ]


def android_spec(payload: Payload, *, cooldown_s: int = DEFAULT_COOLDOWN_S, timeout_s: int = 1800) -> str:
    from vitdeploy.devices.android import HARNESS_PACKAGE, REMOTE_ROOT, RUNNER

    work = shlex.quote(f"/tmp/vitdeploy-{payload.base_id}")
    on_phone = f"/sdcard/{payload.inner_name}"
    install = [f'{ADB} install -r -g "$DEVICEFARM_APP_PATH"',
               f'{ADB} install -r -g "$DEVICEFARM_TEST_PACKAGE_PATH"',
               _shell(["pm", "list", "packages", HARNESS_PACKAGE])]
    pre = [f"rm -rf {work} && mkdir -p {work} {LOG}",
           f"{ADB} pull {shlex.quote(on_phone)} {work}/payload.zip",
           f"cd {work} && unzip -o -q payload.zip -d payload && cd payload && sha256sum -c SHA256SUMS"]
    test, post = [], []
    for k, req in enumerate(payload.requests, start=1):
        remote = f"{REMOTE_ROOT}/{req.request_id}"
        for name in [payload.model.name, *payload.input_names]:
            pre.append(f"{ADB} push {work}/payload/{shlex.quote(name)} {shlex.quote(f'{remote}/{name}')}")
        pre.append(f"{ADB} push {work}/payload/request-r{k}.json {shlex.quote(f'{remote}/request.json')}")
        tele = f"{LOG}/telemetry-r{k}.txt"
        result = f"{LOG}/result-r{k}.json"
        remote_result = f"{req.output_dir}/result.json"
        instrument = ["am", "instrument", "-w", "-r", "-e", "request", f"{remote}/request.json", RUNNER]
        test += [f"echo 'vitdeploy: repeat {k}: cool-down {int(cooldown_s)} s'", f"sleep {int(cooldown_s)}",
                 *_telemetry("before", tele),
                 f"timeout {int(timeout_s)} {_shell(instrument)} 2>&1 | tee {LOG}/instrument-r{k}.txt || true",
                 *_telemetry("after", tele),
                 f"{_shell(['run-as', HARNESS_PACKAGE, 'cat', remote_result])} > {result} 2>/dev/null"
                 f" || {ADB} pull {shlex.quote(remote_result)} {result} || true",
                 f"echo '{MARK_BEGIN} r{k}@@'; cat {result} 2>/dev/null; echo; echo '{MARK_END} r{k}@@'"]
        post.append(f"{_shell(['rm', '-rf', remote, req.output_dir])} || true")
    post += [f"{_shell(['rm', '-f', on_phone])} || true", f"rm -rf {work}"]
    return _dump({"version": 0.1, "android_test_host": "amazon_linux_2",
                  "phases": {"install": install, "pre_test": pre, "test": test, "post_test": post}},
                 f"vitdeploy test spec for request {payload.base_id} ({len(payload.requests)} repeat(s), Android)")


def ios_spec(payload: Payload, *, host_rel: str = "Debug-iphoneos/VitdeployHarness.app",
             bundle_id: str = "com.vitdeploy.harness", cooldown_s: int = DEFAULT_COOLDOWN_S) -> str:
    """NOT RUN on a Mac or on Device Farm (none here): the request rides in the app bundle (farms/xctest.py).

    pre_test: check the payload in the test package, unzip the farm's re-signed .ipa, copy the payload into the
    app as ``vitdeploy/``, put the app where the xctestrun's TestHostPath (``host_rel`` under __TESTROOT__)
    points. Per repeat: cool down, ``xcodebuild test-without-building -xctestrun vitdeploy-rK.xctestrun``
    (its environment names request-rK.json and the tag rK), cut the result the harness printed between the
    marker lines out of xcodebuild's output into result-rK.json (else ``devicectl`` copies result.json from the
    app's container, where a host has it), and print it between the markers again for the spec's log.
    """
    from pathlib import PurePosixPath

    from vitdeploy.devices.farms.xctest import BUNDLE_SUBDIR, PAYLOAD_DIR, xctestrun_name
    from vitdeploy.devices.ios import TEST_ID

    pkg = '"$DEVICEFARM_TEST_PACKAGE_PATH"'
    work = shlex.quote(f"/tmp/vitdeploy-{payload.base_id}")
    host = PurePosixPath(host_rel)
    app = f"{work}/Payload/{shlex.quote(host.name)}"
    host_dir = f"{pkg}/{shlex.quote(str(host.parent))}"
    install = [f"mkdir -p {LOG}", "xcodebuild -version || true"]
    pre = [f"rm -rf {work} && mkdir -p {work} {LOG}",
           f"cd {pkg}/{PAYLOAD_DIR} && shasum -a 256 -c SHA256SUMS",
           f'unzip -o -q "$DEVICEFARM_APP_PATH" -d {work}',
           f"mkdir -p {app}/{BUNDLE_SUBDIR} && cp -R {pkg}/{PAYLOAD_DIR}/. {app}/{BUNDLE_SUBDIR}/",
           f"rm -rf {pkg}/{shlex.quote(host_rel)} && mkdir -p {host_dir} && cp -R {app} {host_dir}/"]
    test = []
    for k, req in enumerate(payload.requests, start=1):
        result, out = f"{LOG}/result-r{k}.json", f"{LOG}/xcodebuild-r{k}.txt"
        cut = f"/{MARK_END} r{k}@@/{{exit}} f{{print}} /{MARK_BEGIN} r{k}@@/{{f=1}}"
        test += [f"echo 'vitdeploy: repeat {k}: cool-down {int(cooldown_s)} s'", f"sleep {int(cooldown_s)}",
                 f"xcodebuild test-without-building -xctestrun {pkg}/{xctestrun_name(k)} "
                 f'-destination id="$DEVICEFARM_DEVICE_UDID" -only-testing:{TEST_ID} '
                 f"-resultBundlePath {LOG}/r{k}.xcresult 2>&1 | tee {out} || true",
                 f"awk {shlex.quote(cut)} {out} > {result} || true",
                 f"[ -s {result} ] || xcrun devicectl device copy from --device \"$DEVICEFARM_DEVICE_UDID\" "
                 f"--domain-type appDataContainer --domain-identifier {shlex.quote(bundle_id)} "
                 f"--source {shlex.quote(req.output_dir + '/result.json')} --destination {result} || true",
                 f"echo '{MARK_BEGIN} r{k}@@'; cat {result} 2>/dev/null; echo; echo '{MARK_END} r{k}@@'"]
    return _dump({"version": 0.1, "ios_test_host": "macos_sequoia",
                  "phases": {"install": install, "pre_test": pre, "test": test, "post_test": [f"rm -rf {work}"]}},
                 f"vitdeploy test spec for request {payload.base_id} ({len(payload.requests)} repeat(s), iOS; "
                 "not run on a farm yet)")


def _dump(spec: dict, title: str) -> str:
    import yaml

    doc = {"version": spec["version"]}
    for key in ("android_test_host", "ios_test_host"):
        if key in spec:
            doc[key] = spec[key]
    doc["phases"] = {p: {"commands": list(spec["phases"][p])} for p in PHASES}
    doc["artifacts"] = ["$DEVICEFARM_LOG_DIR"]
    body = yaml.safe_dump(doc, sort_keys=False, width=10_000, default_flow_style=False)
    return f"# {title}\n# generated by vitdeploy (vitdeploy/devices/farms/testspec.py); docs/farms.md\n{body}"


def phases(text: str) -> dict[str, list[str]]:
    """The commands of each phase of a spec (what the test executor runs)."""
    import yaml

    doc = yaml.safe_load(text)
    return {p: list((doc.get("phases", {}).get(p) or {}).get("commands") or []) for p in PHASES}
