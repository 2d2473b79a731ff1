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

tests/test_farm_aws.py executes the Android spec's phases with bash against the emulated phone with the
real adb client; the iOS spec has not been run anywhere here.
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


def ios_spec(base_id: str, request_ids: Sequence[str], *, cooldown_s: int = DEFAULT_COOLDOWN_S,
             bundle_id: str = "com.vitdeploy.harness") -> str:
    """NOT RUN HERE (no macOS host, no iPhone): the xctestrun from `xcodebuild build-for-testing` is the test
    package; Device Farm extracts the EXTERNAL_DATA zip into the app's sandbox, where the request names it."""
    from vitdeploy.devices.ios import REMOTE_ROOT, REQUEST_ENV, TEST_ID

    test, post = [], []
    for k, rid in enumerate(request_ids, start=1):
        remote = f"{REMOTE_ROOT}/{rid}"
        result = f"{LOG}/result-r{k}.json"
        test += [f"sleep {int(cooldown_s)}",
                 f"TEST_RUNNER_{REQUEST_ENV}={shlex.quote(remote + '/request.json')} "
                 'xcodebuild test-without-building -xctestrun "$(ls "$DEVICEFARM_TEST_PACKAGE_PATH"/*.xctestrun | head -1)" '
                 f'-destination id="$DEVICEFARM_DEVICE_UDID" -only-testing:{TEST_ID} '
                 f'-resultBundlePath {LOG}/r{k}.xcresult || true',
                 'xcrun devicectl device copy from --device "$DEVICEFARM_DEVICE_UDID" --domain-type appDataContainer '
                 f"--domain-identifier {shlex.quote(bundle_id)} --source {shlex.quote(remote + '/result.json')} "
                 f"--destination {result} || true",
                 f"echo '{MARK_BEGIN} r{k}@@'; cat {result} 2>/dev/null; echo; echo '{MARK_END} r{k}@@'"]
    return _dump({"version": 0.1, "ios_test_host": "macos_sequoia",
                  "phases": {"install": [f"mkdir -p {LOG}"], "pre_test": ["xcrun devicectl list devices || true"],
                             "test": test, "post_test": post or ["true"]}},
                 f"vitdeploy test spec for request {base_id} (iOS; not run here)")


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
