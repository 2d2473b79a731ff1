"""Profiling on hosted farms (AWS Device Farm, Qualcomm AI Hub): submit, wait, collect, resume.

The farms themselves are :class:`~vitdeploy.devices.backend.RemoteBackend` s found by name in the registry
(``get_backend``); this module is what every farm shares:

* the **state folder** (``~/.cache/vitdeploy/farm/``, ``--state-dir`` or ``$VITDEPLOY_STATE_DIR``): one JSON
  file per submission, written atomically as soon as the farm accepted it (before any waiting) and again
  after every poll, so ``vitdeploy farm collect ID`` works after Ctrl-C, a crash or ``--no-wait``;
* the **wait loop**: polls with back-off (the clock and sleep are injectable), one progress line on stderr
  whenever a submission's state changes (uploading / queued, with the queue seconds / running / done), an
  overall timeout, and on Ctrl-C a line saying how to resume;
* **collecting** into :class:`~vitdeploy.devices.backend.LatencyRecord` rows (kept in the state file, so a
  second ``collect`` needs no farm); a device that failed is a record with ``error``, the others are kept.

The CLI's ``vitdeploy farm ...`` and ``vitdeploy profile --farm`` are thin wrappers over these functions
(also in :mod:`vitdeploy.api`).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Callable, Sequence

from vitdeploy.devices.backend import (
    FINAL_STATES, CANCELLED, DeviceRef, LatencyRecord, ProfileRequest, Submission, backend_names, get_backend,
)
from vitdeploy.errors import VitdeployError
from vitdeploy.files import write_atomically

STATE_ENV = "VITDEPLOY_STATE_DIR"
STATE_FORMAT = 1
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # whole id: fullmatch (a trailing newline is not an id)
DEFAULT_TIMEOUT_S = 4 * 3600.0  # farm queues can be long; the submission stays recorded past it
POLL_FIRST_S, POLL_MAX_S, POLL_FACTOR = 5.0, 60.0, 1.5
HEARTBEAT_S = 120.0  # a progress line at least this often while nothing changes

Say = Callable[[str], None]


def _now() -> float:
    """The wait loop's clock (a test replaces it, or passes ``clock=``)."""
    return time.monotonic()


def _pause(seconds: float) -> None:
    """The wait loop's sleep (a test replaces it, or passes ``sleep=``)."""
    time.sleep(seconds)


def _stderr(line: str) -> None:
    import sys

    print(line, file=sys.stderr, flush=True)


# -- the state folder -------------------------------------------------------------------------------------

def state_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit`` (--state-dir), else $VITDEPLOY_STATE_DIR, else ~/.cache/vitdeploy/farm."""
    if explicit:
        return Path(explicit)
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vitdeploy" / "farm"


def check_id(submission_id: str) -> str:
    """A submission id as the state folder names it: 1-128 of [A-Za-z0-9._-], starting alphanumeric
    (so ``../../etc`` or an absolute path never leaves the folder)."""
    if not isinstance(submission_id, str) or not _ID.fullmatch(submission_id) or ".." in submission_id:
        raise VitdeployError(f"bad submission id {submission_id!r}: ids are letters, digits, '.', '_' and '-' "
                             "(see `vitdeploy farm list`)")
    return submission_id


def local_id(submission: Submission) -> str:
    """The name a submission is filed under: its id, or (an id with ':' or '/', an ARN) a safe form of it."""
    if _ID.fullmatch(submission.id) and ".." not in submission.id:
        return submission.id
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", submission.id).replace("..", "-").strip("-.")
    return check_id(f"{submission.backend}-{safe[-100:]}".strip("-"))


def record_from_json(d: dict) -> LatencyRecord:
    return LatencyRecord(**{k: d[k] for k in LatencyRecord.__dataclass_fields__ if k in d})


class Store:
    """The state folder: ``<dir>/<id>.json`` per submission (the submission, its records once collected)."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.dir = state_dir(directory)

    def path(self, key: str) -> Path:
        return self.dir / f"{check_id(key)}.json"

    def save(self, submission: Submission, records: Sequence[LatencyRecord] | None = None, *,
             key: str | None = None) -> Path:
        key = key or local_id(submission)
        path = self.path(key)
        old_records = None
        if records is None and path.is_file():
            try:
                old_records = json.loads(path.read_text()).get("records")
            except (OSError, ValueError):
                old_records = None
        doc = {"format": STATE_FORMAT, "key": key, **submission.to_json(), "updated_s": time.time(),
               "records": [r.to_json() for r in records] if records is not None else old_records}
        write_atomically(path, json.dumps(doc, indent=2, default=str) + "\n")
        return path

    def load(self, key: str) -> tuple[Submission, list[LatencyRecord] | None]:
        path = self.path(key)
        if not path.is_file():
            known = ", ".join(self.keys()[-5:]) or "none"
            raise VitdeployError(f"no submission {key!r} in {self.dir} (recent: {known}; `vitdeploy farm list`)")
        try:
            doc = json.loads(path.read_text())
            sub = Submission.from_json(doc)
            records = [record_from_json(r) for r in doc["records"]] if doc.get("records") is not None else None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise VitdeployError(f"{path}: damaged submission record ({type(e).__name__}: {e})") from None
        return sub, records

    def keys(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        files = [p for p in self.dir.glob("*.json") if _ID.fullmatch(p.stem)]
        return [p.stem for p in sorted(files, key=lambda p: p.stat().st_mtime)]


# -- backends ---------------------------------------------------------------------------------------------

def remote_backend(farm: str, **kwargs):
    """The registered farm ``farm``; a local backend (android, ios) or an unknown name is one line."""
    backend = get_backend(farm, **kwargs)
    if not getattr(backend, "remote", False):
        farms = [n for n in backend_names() if n not in ("android", "ios")]
        raise VitdeployError(f"{farm!r} is a phone on this machine, not a farm: use --device "
                             f"(farms: {', '.join(farms) or 'none installed'})")
    return backend


def farm_devices(farm: str, platform: str | None = None, **backend_kwargs) -> list[DeviceRef]:
    """``vitdeploy farm devices``: what ``farm`` offers (SoC and vendor from the device catalog)."""
    if platform not in (None, "android", "ios"):
        raise VitdeployError(f"--platform is android or ios, got {platform!r}")
    return list(remote_backend(farm, **backend_kwargs).list_devices(platform))


# -- submit -----------------------------------------------------------------------------------------------

def _requests(models: Sequence[str | os.PathLike], **kw) -> list[ProfileRequest]:
    from vitdeploy.formats import ARTIFACT_SUFFIXES, format_of

    if not models:
        raise VitdeployError("name at least one model to profile")
    out = []
    for m in models:
        path = Path(m)
        if format_of(path) is None:
            raise VitdeployError(f"{path}: a farm profiles an artifact ({', '.join(ARTIFACT_SUFFIXES)})")
        if not path.exists():
            raise VitdeployError(f"{path}: no such file or directory")
        out.append(ProfileRequest(model=path.resolve(), **kw))
    return out


def _devices_for(request: ProfileRequest, devices: Sequence[DeviceRef]) -> list[DeviceRef]:
    from vitdeploy.formats import format_of

    return [d for d in devices if d.platform in format_of(request.model).platforms]


def _dry_run_plan(backend, farm: str, req: ProfileRequest, names: list[str], max_devices: int | None) -> dict:
    """What would be sent for ``req``, without credentials: the devices are taken by name as given (no farm to
    look them up in), on the first platform that runs the model's format."""
    from vitdeploy.formats import format_of

    fmt = format_of(req.model)
    platform = fmt.platforms[0] if fmt and fmt.platforms else "android"
    refs = [DeviceRef.named(farm, name, name, platform) for name in names][:max_devices or None]
    planner = getattr(backend, "dry_run", None)
    plan = planner(req, refs) if planner else None
    return plan or {"backend": farm, "request": req.to_json(), "devices": [r.to_json() for r in refs],
                    "max_devices": max_devices}


def profile_on_farm(farm: str, models: Sequence[str | os.PathLike], *, devices: Sequence[str] = (),
                    max_devices: int | None = None, runs: int = 50, warmup: int = 5, threads: Sequence[int] = (1, 4),
                    compute_units: Sequence[str] | None = None, repeat: int = 1, options: dict | None = None,
                    wait: bool = True, dry_run: bool = False, state: str | os.PathLike | None = None,
                    timeout_s: float = DEFAULT_TIMEOUT_S, say: Say = _stderr, clock: Callable[[], float] | None = None,
                    sleep: Callable[[float], None] | None = None, backend_kwargs: dict | None = None) -> dict:
    """``vitdeploy profile MODEL... --farm NAME``: one submission per model, each on the matched devices that
    run its format; recorded before waiting. Returns ``{"submissions": [ids], "records": [LatencyRecord],
    "done": bool}`` (``{"dry_run": [...]}`` with ``dry_run``: no credentials, nothing sent)."""
    if runs < 1 or warmup < 0 or repeat < 1 or (max_devices is not None and max_devices < 1):
        raise VitdeployError("--runs, --repeat and --max-devices must be >= 1, --warmup >= 0")
    names = [n.strip() for n in devices if n and n.strip()]
    requests = _requests(models, runs=runs, warmup=warmup, threads=tuple(threads),
                         compute_units=tuple(compute_units) if compute_units else None, repeat=repeat,
                         options=dict(options or {}))
    backend = remote_backend(farm, **(backend_kwargs or {}))
    if dry_run:
        return {"dry_run": [_dry_run_plan(backend, farm, req, names, max_devices) for req in requests]}
    matched = list(backend.resolve(names, max_devices=max_devices))
    if not matched:
        raise VitdeployError(f"no {farm} device matched {', '.join(map(repr, names)) if names else 'the filters'} "
                             f"(list them: `vitdeploy farm devices --farm {farm}`)")
    plan = []
    for req in requests:
        devs = _devices_for(req, matched)
        if not devs:
            from vitdeploy.formats import format_of

            raise VitdeployError(f"{req.model.name}: none of the matched devices ({', '.join(d.name for d in matched)}) "
                                 f"runs a {req.model.suffix} ({' or '.join(format_of(req.model).platforms)})")
        plan.append((req, devs))
    store = Store(state)
    subs: list[tuple[str, Submission]] = []
    for req, devs in plan:
        say(f"uploading {req.model.name} to {farm} for {len(devs)} device(s): {', '.join(d.name for d in devs)}")
        sub = backend.submit(req, devs)
        if not sub.created_s:
            sub.created_s = time.time()
        key = local_id(sub)
        store.save(sub, key=key)  # recorded before any waiting: Ctrl-C or a crash from here on loses nothing
        say(f"submitted {key} ({sub.status}); recorded in {store.path(key)}")
        subs.append((key, sub))
    keys = [k for k, _ in subs]
    if not wait:
        for k in keys:
            say(f"not waiting: `vitdeploy farm status {k}`, then `vitdeploy farm collect {k}`")
        return {"submissions": keys, "records": [], "done": False}
    records = _wait_and_collect(backend, subs, store, timeout_s=timeout_s, say=say, clock=clock, sleep=sleep)
    return {"submissions": keys, "records": records, "done": True}


# -- wait, collect ----------------------------------------------------------------------------------------

def summary(sub: Submission, clock_s: float | None = None) -> str:
    """One line: device counts per state, the longest queue time, errors counted."""
    counts: dict[str, int] = {}
    queue = []
    for d in sub.devices:
        info = sub.per_device.get(d.id) or {}
        st = info.get("status") or sub.status
        counts[st] = counts.get(st, 0) + 1
        if info.get("queue_s") is not None:
            queue.append(float(info["queue_s"]))
    order = ["uploading", "queued", "running", "done", "failed", "cancelled"]
    parts = []
    for st in sorted(counts, key=lambda s: order.index(s) if s in order else len(order)):
        text = f"{counts[st]} {st}"
        if st == "queued":
            q = max(queue) if queue else clock_s
            if q is not None:
                text += f" (queue {q:.0f} s)"
        parts.append(text)
    return f"{sub.status}: " + ", ".join(parts) if parts else sub.status


def _wait_and_collect(backend, subs: list[tuple[str, Submission]], store: Store, *, timeout_s: float, say: Say,
                      clock, sleep) -> list[LatencyRecord]:
    subs = wait(backend, subs, store, timeout_s=timeout_s, say=say, clock=clock, sleep=sleep)
    records: list[LatencyRecord] = []
    for key, sub in subs:
        records += _collect_one(backend, key, sub, store, say)
    return records


def wait(backend, subs: list[tuple[str, Submission]], store: Store, *, timeout_s: float = DEFAULT_TIMEOUT_S,
         say: Say = _stderr, clock: Callable[[], float] | None = None,
         sleep: Callable[[float], None] | None = None) -> list[tuple[str, Submission]]:
    """Poll every submission until each is done, failed or cancelled; the state file follows each poll.
    Back-off: POLL_FIRST_S, times POLL_FACTOR per round, at most POLL_MAX_S. Ctrl-C leaves them recorded and
    says how to resume; past ``timeout_s`` the same, as an error."""
    clock, sleep = clock or _now, sleep or _pause
    subs = list(subs)
    start = clock()
    delay = POLL_FIRST_S
    last_line: dict[str, tuple[str, float]] = {}
    try:
        while True:
            for i, (key, sub) in enumerate(subs):
                if sub.status in FINAL_STATES:
                    continue
                sub = backend.poll(sub)
                subs[i] = (key, sub)
                store.save(sub, key=key)
                now = clock()
                line = summary(sub, now - start)
                prev = last_line.get(key)
                if prev is None or _changed(prev[0], line) or now - prev[1] >= HEARTBEAT_S:
                    say(f"[{now - start:6.0f} s] {key} {line}")
                    last_line[key] = (line, now)
            pending = [k for k, s in subs if s.status not in FINAL_STATES]
            if not pending:
                return subs
            if clock() - start > timeout_s:
                raise VitdeployError(f"{', '.join(pending)} not finished after {timeout_s:g} s; it keeps running on "
                                     f"the farm and stays recorded: `vitdeploy farm collect {pending[0]}` later "
                                     f"(or `vitdeploy farm cancel {pending[0]}`)")
            sleep(delay)
            delay = min(delay * POLL_FACTOR, POLL_MAX_S)
    except KeyboardInterrupt:
        for key, sub in subs:
            if sub.status not in FINAL_STATES:
                store.save(sub, key=key)
                say(f"interrupted: {key} stays recorded in {store.path(key)}; resume with "
                    f"`vitdeploy farm collect {key}` (or stop it: `vitdeploy farm cancel {key}`)")
        raise


def _changed(old: str, new: str) -> bool:
    """A state change, not only a longer queue time."""
    strip = re.compile(r" \(queue \d+ s\)")
    return strip.sub("", old) != strip.sub("", new)


def _collect_one(backend, key: str, sub: Submission, store: Store, say: Say) -> list[LatencyRecord]:
    records = list(backend.collect(sub))
    reported = {r.device for r in records}
    for d in sub.devices:  # a device the backend said nothing about is named, never silently dropped
        info = sub.per_device.get(d.id) or {}
        if d.name not in reported:
            records.append(LatencyRecord(backend=sub.backend, device=d.name, platform=d.platform,
                                         model=str(sub.request.model), runtime=_runtime(sub.request.model),
                                         compute_units="-", threads=None, repeat=0, soc=d.soc, vendor=d.vendor,
                                         os=d.os, queue_s=info.get("queue_s"), url=info.get("url"),
                                         error=info.get("error") or f"no result ({info.get('status') or sub.status})"))
    store.save(sub, records, key=key)
    bad = sum(1 for r in records if r.error)
    say(f"collected {key}: {len(records) - bad} result(s)" + (f", {bad} error(s)" if bad else ""))
    return records


def _runtime(model) -> str:
    from vitdeploy.devices.local import runtime_of

    return runtime_of(model)


def _open(keys: Sequence[str], state) -> tuple[Store, list[tuple[str, Submission, list | None]]]:
    store = Store(state)
    if not keys:
        raise VitdeployError("name a submission (`vitdeploy farm list` shows them)")
    return store, [(check_id(k), *store.load(check_id(k))) for k in keys]


def farm_status(keys: Sequence[str], *, state=None, backend_kwargs: dict | None = None) -> list[dict]:
    """``vitdeploy farm status ID...``: poll each unfinished submission once (and record it)."""
    store, loaded = _open(keys, state)
    out = []
    for key, sub, records in loaded:
        if sub.status not in FINAL_STATES:
            sub = remote_backend(sub.backend, **(backend_kwargs or {})).poll(sub)
            store.save(sub, key=key)
        out.append({"id": key, "backend": sub.backend, "model": str(sub.request.model), "status": sub.status,
                    "summary": summary(sub), "devices": [d.name for d in sub.devices], "per_device": sub.per_device,
                    "collected": records is not None})
    return out


def farm_collect(keys: Sequence[str], *, state=None, wait_s: float = DEFAULT_TIMEOUT_S, say: Say = _stderr,
                 clock=None, sleep=None, backend_kwargs: dict | None = None) -> list[LatencyRecord]:
    """``vitdeploy farm collect ID...``: records already collected come from the state file; otherwise wait
    for the submission (resuming after Ctrl-C or ``--no-wait``) and collect it."""
    store, loaded = _open(keys, state)
    records: list[LatencyRecord] = []
    for key, sub, saved in loaded:
        if saved is not None:
            records += saved
            continue
        backend = remote_backend(sub.backend, **(backend_kwargs or {}))
        if sub.status == CANCELLED:
            raise VitdeployError(f"{key} was cancelled: nothing to collect")
        [(key, sub)] = wait(backend, [(key, sub)], store, timeout_s=wait_s, say=say, clock=clock, sleep=sleep)
        records += _collect_one(backend, key, sub, store, say)
    return records


def farm_cancel(keys: Sequence[str], *, state=None, backend_kwargs: dict | None = None) -> list[dict]:
    """``vitdeploy farm cancel ID...``: stop unfinished submissions on the farm and record that."""
    store, loaded = _open(keys, state)
    out = []
    for key, sub, _ in loaded:
        if sub.status in FINAL_STATES:
            out.append({"id": key, "status": sub.status, "cancelled": False})
            continue
        remote_backend(sub.backend, **(backend_kwargs or {})).cancel(sub)
        sub.status = CANCELLED
        store.save(sub, key=key)
        out.append({"id": key, "status": sub.status, "cancelled": True})
    return out


def farm_list(*, state=None) -> list[dict]:
    """``vitdeploy farm list``: every recorded submission, oldest first."""
    store = Store(state)
    out = []
    for key in store.keys():
        try:
            sub, records = store.load(key)
        except VitdeployError as e:
            out.append({"id": key, "error": str(e)})
            continue
        out.append({"id": key, "backend": sub.backend, "model": Path(sub.request.model).name, "status": sub.status,
                    "devices": len(sub.devices), "created_s": sub.created_s, "collected": records is not None})
    return out
