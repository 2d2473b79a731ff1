"""``vitdeploy farm ...`` and the ``--farm`` side of ``vitdeploy profile``: thin wrappers over
:func:`vitdeploy.api.profile_farm` and ``api.farm_*`` (logic: :mod:`vitdeploy.devices.farm`) and
:mod:`vitdeploy.reports.farm` (table, Markdown, JSON, plot).

Kept apart from ``cli.py`` (which adds the group) so neither passes 600 lines; nothing heavy is imported at
module level, so ``vitdeploy --help`` stays instant.
"""

from __future__ import annotations

import json

import click

from .errors import CheckFailed, VitdeployError
from .cli_group import _Group


def state_option():
    return click.option("--state-dir", "state_dir", type=click.Path(file_okay=False, path_type=str),
                        help="Where submissions are recorded (default: $VITDEPLOY_STATE_DIR, else "
                             "~/.cache/vitdeploy/farm).")


def report_options(f):
    """--json / --plot / --markdown / --max-cv / --max-repeat-spread: how results are shown."""
    for opt in reversed([
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output (farm results: rows, errors and raw records)."),
        click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=str),
                     help="Write a PNG: median per device, coloured by SoC vendor, models side by side."),
        click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=str),
                     help="Write the comparison table as Markdown."),
        click.option("--max-cv", default=0.10, show_default=True, type=click.FloatRange(0, None),
                     help="Flag a result unstable above this coefficient of variation."),
        click.option("--max-repeat-spread", default=0.05, show_default=True, type=click.FloatRange(0, None),
                     help="Flag a result unstable when its repeats' medians differ by more than this."),
    ]):
        f = opt(f)
    return f


def show_records(records, *, as_json: bool, plot_path: str | None, markdown_path: str | None, max_cv: float,
                 max_repeat_spread: float) -> None:
    """Print the comparison (table or JSON), write the plot / Markdown; exit 1 when no device reported."""
    from .files import write_atomically
    from .reports import farm as report

    rows, errors = report.rows(records, max_cv=max_cv, max_repeat_spread=max_repeat_spread)
    if markdown_path:
        write_atomically(markdown_path, report.format_markdown(rows, errors, max_cv=max_cv,
                                                               max_repeat_spread=max_repeat_spread))
    if plot_path and rows:
        report.plot(rows, plot_path)
    if as_json:
        click.echo(json.dumps(report.to_json(rows, errors, records, max_cv=max_cv,
                                             max_repeat_spread=max_repeat_spread), indent=2, default=str))
    else:
        click.echo(report.format_table(rows, errors))
    if records and not rows:
        raise CheckFailed(f"no device reported a latency ({len(errors)} error(s))")


def profile_farm(ctx: click.Context, models: tuple[str, ...], *, farm: str, devices: str | None,
                 max_devices: int | None, runs: int, warmup: int, threads: int, device_threads: tuple[int, ...],
                 compute_units: tuple[str, ...] | None, repeat: int, no_wait: bool, dry_run: bool,
                 harness_apks: tuple[str, ...], timeout_s: float | None, state_dir: str | None, as_json: bool,
                 plot_path: str | None, markdown_path: str | None, max_cv: float, max_repeat_spread: float) -> None:
    """``vitdeploy profile MODEL... --farm NAME``."""
    from . import api

    explicit = ctx.get_parameter_source("threads") not in (click.core.ParameterSource.DEFAULT, None)
    names = [n.strip() for n in (devices or "").split(",") if n.strip()]
    out = api.profile_farm(farm, list(models), devices=names, max_devices=max_devices, runs=runs, warmup=warmup,
                           threads=(threads,) if explicit else device_threads, compute_units=compute_units,
                           repeat=repeat, options=_harness_options(harness_apks),
                           wait=not no_wait, dry_run=dry_run, state=state_dir, timeout_s=timeout_s)
    if dry_run:
        if as_json:
            click.echo(json.dumps(out, indent=2, default=str))
        else:
            for plan in out["dry_run"]:
                for key, value in plan.items():
                    text = value if isinstance(value, str) else json.dumps(value, default=str)
                    click.echo(f"{key}:" + (f"\n{text}" if "\n" in text else f" {text}"))
        return
    if not out["done"]:
        if as_json:
            click.echo(json.dumps({"submissions": out["submissions"], "done": False}, indent=2))
        else:
            click.echo("\n".join(out["submissions"]))
        return
    show_records(out["records"], as_json=as_json, plot_path=plot_path, markdown_path=markdown_path, max_cv=max_cv,
                 max_repeat_spread=max_repeat_spread)


def _harness_options(files: tuple[str, ...]) -> dict:
    """--harness-apk files by kind: Android APKs, or the iOS harness .ipa and its .xctestrun (or a zip of it)."""
    items = [f.strip() for v in files for f in v.split(",") if f.strip()]
    ipa = [f for f in items if f.lower().endswith(".ipa")]
    run = [f for f in items if f.lower().endswith((".xctestrun", ".zip"))]
    apks = [f for f in items if f not in ipa and f not in run]
    return {**({"harness_apk": apks} if apks else {}), **({"harness_ipa": ipa} if ipa else {}),
            **({"xctestrun": run} if run else {})}


@click.group(cls=_Group)
def farm() -> None:
    """Hosted device farms (AWS Device Farm, Qualcomm AI Hub): devices, and submissions to resume.

    Submit with `vitdeploy profile MODEL... --farm NAME --devices "..."`; every submission is recorded in
    the state folder, so `farm status|collect|cancel ID` work after Ctrl-C, a crash or --no-wait.
    """


@farm.command("devices")
@click.option("--farm", "farm_name", required=True, help="The farm: aws or qai-hub (see docs/farms.md).")
@click.option("--platform", type=click.Choice(["android", "ios"]), help="Only this platform's devices.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def devices_cmd(farm_name: str, platform: str | None, as_json: bool) -> None:
    """The devices a farm offers, with their SoC (from the device catalog) and availability."""
    from . import api

    refs = api.farm_devices(farm_name, platform)
    if as_json:
        click.echo(json.dumps([d.to_json() for d in refs], indent=2))
        return
    if not refs:
        click.echo(f"{farm_name}: no devices" + (f" for {platform}" if platform else ""))
    for d in refs:
        click.echo(f"{d.name:<34} {d.platform:<8} {d.os or '-':<8} {d.soc or '?':<36} "
                   f"{'' if d.available else 'unavailable'}".rstrip())


@farm.command("status")
@click.argument("ids", nargs=-1, required=True)
@state_option()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status_cmd(ids: tuple[str, ...], state_dir: str | None, as_json: bool) -> None:
    """Where submissions stand (polls the farm once for unfinished ones)."""
    from . import api

    out = api.farm_status(ids, state=state_dir)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    for s in out:
        click.echo(f"{s['id']}  {s['backend']}  {s['summary']}" + ("  (collected)" if s["collected"] else ""))


@farm.command("collect")
@click.argument("ids", nargs=-1, required=True)
@state_option()
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, None),
              help="Seconds to wait for unfinished submissions (default 4 h).")
@report_options
def collect_cmd(ids: tuple[str, ...], state_dir: str | None, timeout_s: float | None, as_json: bool,
                plot_path: str | None, markdown_path: str | None, max_cv: float, max_repeat_spread: float) -> None:
    """Wait for submissions (resuming after Ctrl-C or --no-wait), then one comparison table of their results."""
    from . import api

    records = api.farm_collect(ids, state=state_dir, wait_s=timeout_s)
    show_records(records, as_json=as_json, plot_path=plot_path, markdown_path=markdown_path, max_cv=max_cv,
                 max_repeat_spread=max_repeat_spread)


@farm.command("cancel")
@click.argument("ids", nargs=-1, required=True)
@state_option()
def cancel_cmd(ids: tuple[str, ...], state_dir: str | None) -> None:
    """Stop unfinished submissions on the farm (the record stays, marked cancelled)."""
    from . import api

    for s in api.farm_cancel(ids, state=state_dir):
        click.echo(f"{s['id']}: " + ("cancelled" if s["cancelled"] else f"already {s['status']}"))


@farm.command("list")
@state_option()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(state_dir: str | None, as_json: bool) -> None:
    """Every recorded submission, oldest first."""
    from . import api

    out = api.farm_list(state=state_dir)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
        return
    if not out:
        click.echo("no submissions recorded")
    for s in out:
        if "error" in s:
            click.echo(f"{s['id']}  {s['error']}")
            continue
        click.echo(f"{s['id']}  {s['backend']}  {s['model']}  {s['devices']} device(s)  {s['status']}"
                   + ("  collected" if s["collected"] else ""))


__all__ = ["farm", "profile_farm", "report_options", "show_records", "state_option", "VitdeployError"]
