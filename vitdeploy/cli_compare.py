"""``vitdeploy profile``, ``eval`` and ``benchmark``: the commands whose numbers people compare side by side.

Thin wrappers over :func:`vitdeploy.api.profile`, :func:`vitdeploy.api.eval` and :func:`vitdeploy.api.benchmark`;
kept apart from ``cli.py`` (which adds them) so neither passes 600 lines. Nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import os

import click

from .cli_common import (check_report_dir, data_option, echo, echo_json, json_option, runtime_option,
                         threads_option)
from .cli_farm import profile_farm, report_options, state_option
from .errors import CheckFailed, VitdeployError
from .options import COMPUTE_UNITS
from .progress import step


@click.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--device", default="host", show_default=True,
              help="host, a catalog name (pixel7, iphone12, ...) or a serial/UDID (see `vitdeploy devices`).")
@click.option("--farm", help="Profile on a hosted farm instead: aws or qai-hub (several models at once; docs/farms.md).")
@click.option("--devices", "farm_devices", help='Farm devices by name, comma-separated: "Google Pixel 7,Samsung Galaxy S24".')
@click.option("--max-devices", type=click.IntRange(1, None), help="Farm: at most this many of the matched devices.")
@click.option("--runs", default=50, show_default=True, type=click.IntRange(1, None))
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0, None))
@threads_option("Host CPU threads (with --farm: the one thread count to run).")
@click.option("--device-threads", default="1,4", show_default=True, help="Android CPU thread counts to try.")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(1, None),
              help="Farm: whole harness runs per device (repeats that disagree flag a result unstable).")
@click.option("--compute-units", help=f"Comma list: Android {','.join(COMPUTE_UNITS['android'])}; iOS "
                                      f"{','.join(COMPUTE_UNITS['ios'])} (default: all the device has).")
@click.option("--harness-apk", "harness_apks", multiple=True, type=click.Path(path_type=str),
              help="Prebuilt Android harness APK(s) to install (app and test APK).")
@click.option("--build-harness", is_flag=True,
              help="Build android_harness/ with Gradle first (needs an Android SDK) and install it.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, None),
              help="Seconds before a device run is abandoned (default 600; with --farm, the wait: 4 h).")
@click.option("--no-wait", is_flag=True, help="Farm: submit, record and return (`vitdeploy farm collect ID` later).")
@click.option("--dry-run", is_flag=True, help="Farm: show what would be uploaded and run; needs no credentials.")
@state_option()
@click.option("--variant", help="Override variant detection (checkpoints).")
@click.option("--report", "report_dir", type=click.Path(path_type=str), help="Write report.json/.md/.html here.")
@click.option("--ops", "per_op", is_flag=True,
              help="A .tflite on the host: time per op type and arithmetic (int8, float, QUANTIZE/DEQUANTIZE), "
                   "each op cut out and timed alone on its kernel, vs the whole model.")
@report_options
@click.pass_context
def profile(ctx: click.Context, models: tuple[str, ...], device: str, farm: str | None, farm_devices: str | None,
            max_devices: int | None, runs: int, warmup: int, threads: int, device_threads: str, repeat: int,
            compute_units: str | None, harness_apks: tuple[str, ...], build_harness: bool, timeout_s: float | None,
            no_wait: bool, dry_run: bool, state_dir: str | None, variant: str | None, report_dir: str | None,
            per_op: bool, as_json: bool, plot_path: str | None, markdown_path: str | None, max_cv: float,
            max_repeat_spread: float) -> None:
    """Latency of MODELS (checkpoints or artifacts) on the host, a phone or farm phones.

    One model: load, first run, min/median/p90/mean/std. Several on the host: timed interleaved, one table
    with the speed-up over the first. A host run whose p90 passes 1.5x its median (or CV 10 %) is flagged noisy.
    """
    from . import api

    if per_op:
        given = [name for name, on in (("--farm", farm), ("--device", device != "host"), ("--report", report_dir),
                                       ("several models", len(models) > 1)) if on]
        return _profile_ops(models[0], given, runs=runs, warmup=warmup, threads=threads, as_json=as_json)
    try:
        dthreads = tuple(int(t) for t in device_threads.split(",") if t.strip())
    except ValueError:
        raise VitdeployError(f"--device-threads takes comma-separated integers, got '{device_threads}'") from None
    units = _compute_units(compute_units, device, models) if compute_units else None
    if farm:
        if device != "host" or report_dir or build_harness:
            raise VitdeployError("--farm runs on the farm's phones: drop --device/--report/--build-harness "
                                 "(the farm's table: --json, --markdown, --plot)")
        return profile_farm(ctx, models, farm=farm, devices=farm_devices, max_devices=max_devices, runs=runs,
                            warmup=warmup, threads=threads, device_threads=dthreads, compute_units=units,
                            repeat=repeat, no_wait=no_wait, dry_run=dry_run, harness_apks=harness_apks,
                            timeout_s=timeout_s, state_dir=state_dir, as_json=as_json, plot_path=plot_path,
                            markdown_path=markdown_path, max_cv=max_cv, max_repeat_spread=max_repeat_spread)
    farm_only = [name for name, on in (("--devices", farm_devices), ("--max-devices", max_devices),
                                       ("--no-wait", no_wait), ("--dry-run", dry_run), ("--repeat", repeat != 1),
                                       ("--plot", plot_path), ("--markdown", markdown_path)) if on]
    if farm_only:
        raise VitdeployError(f"{farm_only[0]} is for farms: add --farm aws|qai-hub (a phone here: --device NAME)")
    if len(models) > 1 and device == "host":
        return _profile_host_many(models, runs=runs, warmup=warmup, threads=threads, variant=variant,
                                  report_dir=report_dir, as_json=as_json)
    if len(models) != 1:
        raise VitdeployError("--device takes one model; several models are timed together on the host "
                             "(--device host) or on a farm (--farm)")
    model = models[0]
    check_report_dir(report_dir)
    # The host has its own bar (timing runs); a phone's harness run is minutes of silence without this line.
    with step(f"profiling {os.path.basename(model)} on {device}") if device != "host" else contextlib.nullcontext():
        result = api.profile(model, device=device, runs=runs, warmup=warmup, threads=threads, variant=variant,
                             progress=not as_json, compute_units=units, device_threads=dthreads,
                             harness_apks=harness_apks, timeout_s=600.0 if timeout_s is None else timeout_s,
                             build_harness=build_harness)
    if report_dir:
        from .reports import write_report

        write_report(report_dir, kind="profile", data=_profile_report_data(result))
    if as_json:
        echo_json(result)
        return
    _print_profile(result)


def _profile_report_data(result: dict) -> dict:
    """Device runs report one latency list per config; the report plots the first that ran."""
    if "runs_ms" in result:
        return result
    ran = next((c for c in result.get("configs", []) if c.get("latencies_ms")), None)
    data = {k: v for k, v in result.items() if k not in ("configs", "request", "result", "output")}
    data["configs"] = [{k: v for k, v in c.items() if k != "outputs"} for c in result.get("configs", [])]
    if ran:
        data["runs_ms"] = ran["latencies_ms"]
        data["median_ms"] = ran.get("median_ms")
    return data


def _print_profile(r: dict) -> None:
    if r.get("device") == "host":
        echo(f"{r['model']} on host ({r.get('runtime', r['kind'])}, {r.get('threads')} threads, "
                   f"{r['runs']} runs)")
        echo(f"  load {r['load_ms']:.1f} ms, first {r['first_ms']:.2f} ms")
        echo(f"  min {r['min_ms']:.2f}  median {r['median_ms']:.2f}  p90 {r['p90_ms']:.2f}  "
                   f"mean {r['mean_ms']:.2f}  std {r['std_ms']:.2f}  (ms)")
        return
    parity = {p["config"]: p for p in r.get("parity", [])}
    echo(f"{r['model']} on {r.get('serial') or r.get('device')}")
    echo(f"  {'config':<24} {'median ms':>10} {'min ms':>8} {'cosine':>9} {'top-1':>6}")
    for c in r.get("configs", []):
        lat = sorted(c.get("latencies_ms") or [])
        p = parity.get(c.get("name"), {})
        med = f"{c['median_ms']:.2f}" if c.get("median_ms") is not None else "-"
        mn = f"{lat[0]:.2f}" if lat else "-"
        cos = f"{p['cosine']:.5f}" if "cosine" in p else "-"
        top = ("yes" if p.get("top1_match") else "NO") if "top1_match" in p else "-"
        echo(f"  {c.get('name', '?'):<24} {med:>10} {mn:>8} {cos:>9} {top:>6}"
                   + (f"  ({c.get('error') or c.get('status')})" if not lat else ""))




@click.command("eval")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@data_option("ImageFolder layout: one subfolder per class (sorted order = class index), or labels.txt.",
             required=True)
@click.option("--limit-per-class", type=click.IntRange(1, None), help="Evaluate at most this many images per class.")
@click.option("--variant", help="Override variant detection for checkpoints.")
@threads_option()
@runtime_option()
@click.option("--report", "report_dir", type=click.Path(path_type=str), help="Write report.json/.md/.html here.")
@json_option("output")
def eval_cmd(models: tuple[str, ...], data_dir: str, limit_per_class: int | None, variant: str | None, threads: int,
             runtime: str, report_dir: str | None, as_json: bool) -> None:
    """Top-1/top-5 accuracy of MODELS side by side on a labelled image set: each named by target and precision
    (from its metadata), with its size and its top-1 difference from the first model."""
    from . import api

    check_report_dir(report_dir)
    with step(f"evaluating {len(models)} model(s) on {os.path.basename(os.path.normpath(data_dir))}"):
        result = api.eval(list(models), data_dir, threads=threads, limit_per_class=limit_per_class, variant=variant,
                          runtime=runtime)
    if report_dir:
        from .reports import write_report

        write_report(report_dir, kind="eval", data=result.to_dict())
    if as_json:
        echo_json(result.to_dict())
    else:
        echo(result.table())




def _profile_host_many(models, *, runs, warmup, threads, variant, report_dir, as_json) -> None:
    from . import api
    from .profile import format_many

    if report_dir:
        raise VitdeployError("--report takes one model; several models on the host: --json")
    result = api.profile(list(models), runs=runs, warmup=warmup, threads=threads, variant=variant)
    if as_json:
        echo_json(result)
    else:
        echo(format_many(result))


def _profile_ops(model: str, given: list[str], *, runs, warmup, threads, as_json) -> None:
    from . import api
    from .op_profile import format_ops

    if given:
        raise VitdeployError(f"--ops profiles one .tflite on this host: drop {given[0]}")
    with step(f"timing each op of {os.path.basename(model)}") if not as_json else contextlib.nullcontext():
        result = api.profile_ops(model, runs=runs, warmup=warmup, threads=threads)
    if as_json:
        echo_json(result)
    else:
        echo(format_ops(result))


def _compute_units(raw: str, device: str, models) -> tuple[str, ...]:
    """--compute-units in the platform's one spelling (the device's, else the artifact's): old spellings are taken
    with a note on stderr. A format with units of its own on that platform (a .pte: cpu, coreml) takes those,
    as they are spelled."""
    from . import api
    from .formats import format_of, platform_units
    from .options import compute_units

    values = [u.strip() for u in raw.split(",") if u.strip()]
    fmt = format_of(models[0]) if models else None
    platform = None
    if device != "host":
        spec = api.catalog_device(device)
        platform = spec.platform if spec is not None and spec.platform in COMPUTE_UNITS else None
    if platform is None:
        platform = fmt.platforms[0] if fmt is not None and len(fmt.platforms) == 1 else None
    if platform is None:
        return tuple(values)
    own = fmt.compute_units.get(platform) if fmt is not None else None
    if own is not None and set(own) != set(platform_units(platform)):
        bad = [u for u in values if u not in own]
        if bad:
            raise VitdeployError(f"--compute-units {bad[0]}: not a {platform} compute unit for a {fmt.suffix}; "
                                 f"choose from {', '.join(own)}")
        return tuple(values)
    return compute_units(platform, values, say=lambda line: echo(line, err=True))


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=str))
@data_option("Images to judge on: an ImageFolder (labelled accuracy) or a flat folder (top-1 agreement with the "
             "checkpoint). Default: the shipped held-out set for the references, else built-in natural images.")
@click.option("--targets", "targets", multiple=True, help="Limit targets (repeatable or comma list; default: all).")
@click.option("--precisions", "precisions", multiple=True,
              help="Limit precisions (repeatable or comma list; canonical names: fp32, fp16, w8a8, ...).")
@click.option("--quick", is_flag=True, help="TFLite fp32 and w8a8 only (a minute, not the whole matrix).")
@click.option("--n-images", type=click.IntRange(1, None),
              help="At most this many images, spread evenly (default: every image; 64 built-in ones).")
@click.option("--runs", default=30, show_default=True, type=click.IntRange(1, None), help="Interleaved timing rounds.")
@threads_option("Host CPU threads for every runtime.")
@click.option("--calib", "calib_dir", type=click.Path(path_type=str),
              help="Calibration images for w8a8/w8a16 (default: built-in natural images).")
@click.option("--variant", help="Override variant detection.")
@click.option("-o", "--out", "out_dir", default="out/benchmark", show_default=True, type=click.Path(path_type=str),
              help="Where the artifacts are written.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write the table as Markdown.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write a PNG: accuracy (zoomed axis) against host latency.")
@json_option("summary")
def benchmark(checkpoint: str, data_dir: str | None, targets: tuple[str, ...], precisions: tuple[str, ...],
              quick: bool, n_images: int | None, runs: int, threads: int, calib_dir: str | None, variant: str | None,
              out_dir: str, markdown_path: str | None, plot_path: str | None, as_json: bool) -> None:
    """Every target x precision this host can run for CHECKPOINT, in one table: size, accuracy, worst-image
    cosine, host latency and speed-up vs fp32 measured interleaved in one run, noise flagged."""
    from . import api
    from .benchmark import format_markdown, format_table, plan
    from .files import write_atomically
    from .outputs import check_output_file

    split = lambda values: tuple(v.strip() for value in values for v in value.split(",") if v.strip())  # noqa: E731
    targets, precisions = split(targets), split(precisions)
    plan(targets, precisions, quick)  # a bad --targets/--precisions is refused before the checkpoint loads
    for path, option in ((markdown_path, "--markdown"), (plot_path, "--plot")):
        if path:
            check_output_file(path, option)
    say = None if as_json else (lambda line: echo(line, err=True))
    summary = api.benchmark(checkpoint, out_dir=out_dir, data_dir=data_dir, targets=targets, precisions=precisions,
                            quick=quick, n_images=n_images, runs=runs, threads=threads, calib_dir=calib_dir,
                            variant=variant, say=say)
    if markdown_path:
        write_atomically(markdown_path, format_markdown(summary))
    if plot_path:
        from .benchmark import plot

        plot(summary, plot_path)
    if as_json:
        echo_json(summary)
    else:
        echo(format_table(summary))
    failed = [r for r in summary["rows"] if r.get("status") == "failed"]
    if failed:
        raise CheckFailed(f"{len(failed)} of {len(summary['rows']) - 1} cells failed")


compare_commands = [profile, eval_cmd, benchmark]
