"""The ``vitdeploy`` command line: thin wrappers over :mod:`vitdeploy.api`.

Nothing heavy is imported at module level, so ``vitdeploy --help`` starts instantly.
Exit codes: 0 ok, 1 a check failed, 2 bad input or usage.
"""

from __future__ import annotations

import json
import os
import sys

import click

# The converters' C++ runtimes log INFO lines to stderr; users want vitdeploy's own lines only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")
# TensorFlow (inside the TFLite converter) logs "oneDNN custom operations are on" before absl logging is
# initialised, so the level above does not reach it; its oneDNN ops are not what the .tflite runs.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from . import __version__  # noqa: E402 (after the environment above, which the converters read at import)
from .diagnostics import quiet_third_party_noise, visible  # noqa: E402

quiet_third_party_noise()

from .errors import CheckFailed, VitdeployError
from .formats import TARGETS
from .exits import _Group
from .cli_farm import farm, profile_farm, report_options, state_option

# The emulated phone CPUs (kept here, not imported, so --help stays instant; a test checks it matches).
EMULATED_CPUS = ("cortex-a55", "cortex-a76", "cortex-a710")


def json_option(what: str = "output"):
    return click.option("--json", "as_json", is_flag=True, help=f"Machine-readable {what}.")


def threads_option(help: str | None = None):  # noqa: A002 - click's keyword
    return click.option("--threads", default=2, show_default=True, type=click.IntRange(1, None), help=help)


def runtime_option(help: str | None = None):  # noqa: A002 - click's keyword
    return click.option("--runtime", type=click.Choice(["auto", "coreml", "interpreter"]), default="auto",
                        show_default=True, help=help)


def _echo(message: object = "", err: bool = False, nl: bool = True) -> None:
    """Every human-readable line: file names, labels, checkpoint keys and a phone's words are untrusted, so
    control characters (ANSI escapes, CR, bidi overrides) are shown escaped, never sent to the terminal."""
    click.echo(visible(message), err=err, nl=nl)


def _echo_json(obj) -> None:
    # json.dumps escapes every control and non-ASCII character (ensure_ascii): nothing raw reaches the terminal.
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vitdeploy")
def main() -> None:
    """Convert LeViT and MobileViT checkpoints to Core ML, TFLite and ExecuTorch, check parity, profile on device."""


@main.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option("--variant", help="Override variant detection (e.g. levit_128s, mobilevit_xs).")
@json_option("output")
def inspect(path: str, variant: str | None, as_json: bool) -> None:
    """Show what a checkpoint or artifact is: family, variant, layout, preprocessing, BN folding."""
    from . import api

    info = api.inspect(path, variant=variant)
    if as_json:
        _echo_json(info)
        return
    _print_inspect(info)


def _print_inspect(info: dict) -> None:
    from .preprocessing import Preprocessing

    rows = [("path", info["path"])]
    for key in ("kind", "family", "variant", "layout", "wrapper", "params", "num_classes", "input_size"):
        if info.get(key) is not None:
            value = info[key]
            if key == "params":
                value = f"{value:,}"
            if key == "variant" and info.get("variant_source") == "--variant":
                value = f"{value} (from --variant)"
            rows.append((key, value))
    rows += [*info.get("summary", {}).items(), ("preprocessing", Preprocessing.from_dict(info["preprocessing"]).describe())]
    if "bn_folding" in info:
        f = info["bn_folding"]
        rows.append(("bn folding", f"{f['total_folded']} BatchNorm folded "
                     f"({', '.join(f'{k}: {v}' for k, v in f['folded'].items())}); "
                     f"params {f['params_before']:,} -> {f['params_after']:,}"))
    if "op_counts" in info:
        ops = sorted(info["op_counts"].items(), key=lambda kv: -kv[1])
        rows.append(("ops", ", ".join(f"{k} {v}" for k, v in ops)))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        _echo(f"{k:<{width}}  {v}")


@main.command()
@click.argument("model", type=click.Path(path_type=str))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--variant", help="Override variant detection for a checkpoint.")
@click.option("--save-logits", type=click.Path(dir_okay=False, path_type=str),
              help="Write float32 (N, classes) logits to this .npy file.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, None), help="Classes to print per input.")
@click.option("--labels", "labels_file", type=click.Path(path_type=str), help="Class names, one per line (default: the model's own).")
@threads_option("CPU threads (artifacts).")
@runtime_option(help="Core ML: real Core ML (macOS) or vitdeploy's MIL interpreter.")
@json_option("output")
def predict(model: str, inputs: tuple[str, ...], variant: str | None, save_logits: str | None, top: int,
            labels_file: str | None, threads: int, runtime: str, as_json: bool) -> None:
    """Classify INPUTS (image files, or one preprocessed .npy NCHW batch) with MODEL (checkpoint or artifact)."""
    from . import api

    if save_logits:
        from .outputs import check_output_file

        check_output_file(save_logits, "--save-logits")
    pred = api.predict(model, list(inputs), variant=variant, threads=threads, runtime=runtime, labels_file=labels_file)
    if save_logits:
        api.save_array(save_logits, pred.logits)
    tops = pred.top(top)
    if as_json:
        _echo_json({"model": model, "logits_file": save_logits, "shape": list(pred.logits.shape),
                    "predictions": [{"input": name, "top": t} for name, t in zip(pred.inputs, tops)]})
        return
    for name, t in zip(pred.inputs, tops):
        _echo(name)
        for r in t:
            label = f"  {r['label']}" if r["label"] else ""
            _echo(f"  {r['class']:>5}  {r['prob']:7.2%}  logit {r['logit']:8.3f}{label}")
    if save_logits:
        _echo(f"logits {tuple(pred.logits.shape)} -> {save_logits}", err=True)


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=str))
@click.option("--target", type=click.Choice(TARGETS), required=True, help="Artifact format.")
@click.option("--recipe", type=click.Path(path_type=str),
              help="A recipes/*.yaml: fixes the variant and the default precision/quantization.")
@click.option("-o", "--out", type=click.Path(path_type=str), help="Output path (default: <checkpoint>_<mode>.<ext>).")
@click.option("--quantize", help="tflite: fp32|fp16|fp16-compute|dynamic|w8a8|w8a16; coreml: fp32|fp16|w8|w8a8; "
                                 "executorch: fp32|w8a8 (aliases: none=fp32, int8=w8a8)  [default: fp32]")
@click.option("--precision", type=click.Choice(["fp16", "fp32", "fp16-compute"]),
              help="Core ML: compute precision [default: fp16]. tflite: fp16-compute = fp16 weights and fp16 "
                   "arithmetic on phones that have it (same as --quantize fp16-compute).")
@click.option("--calib", "calib_dir", type=click.Path(path_type=str),
              help="Directory of calibration images (int8/w8a8; default: built-in natural images).")
@click.option("--labels", "labels_file", type=click.Path(path_type=str), help="Class labels, one per line.")
@click.option("--raw-input", is_flag=True, help="Keep a float NCHW tensor input instead of an image input.")
@click.option("--int8-io", is_flag=True, help="tflite int8: int8 input/output tensors instead of float.")
@click.option("--int8-finetune", type=click.IntRange(min=0), default=0, metavar="STEPS",
              help="tflite int8: quantization-aware fine-tuning steps on the --calib images first "
                   "(distillation, no labels; for MobileViT). 0 = off.")
@click.option("--no-int16", "no_int16", is_flag=True, hidden=True)  # gone: int16 only as --quantize w8a16
@click.option("--deployment-target", type=click.Choice(["iOS16", "iOS17", "iOS18"]),
              help="Core ML: minimum iOS (default: the lowest that supports what was asked).")
@click.option("--compute-units", type=click.Choice(["all", "cpu", "cpu_gpu", "cpu_ne"]), default="all",
              show_default=True, help="Core ML: the model's default compute units.")
@click.option("--delegate", type=click.Choice(["xnnpack", "coreml"]), default="xnnpack", show_default=True,
              help="executorch: the backend the program is lowered to.")
@click.option("--variant", help="Override variant detection.")
@json_option("report")
def convert(checkpoint: str, target: str, recipe: str | None, out: str | None, quantize: str | None,
            precision: str | None, calib_dir: str | None, labels_file: str | None, raw_input: bool, int8_io: bool,
            int8_finetune: int, no_int16: bool, deployment_target: str | None, compute_units: str,
            delegate: str, variant: str | None, as_json: bool) -> None:
    """Convert CHECKPOINT to a Core ML .mlpackage, a .tflite or an ExecuTorch .pte (BatchNorm folded first)."""
    from .convert import convert as run_convert

    if recipe:
        from .recipes import load_recipe

        r = load_recipe(recipe)
        if variant and variant != r.variant:
            raise VitdeployError(f"--variant {variant} contradicts the recipe's variant {r.variant}")
        variant = r.variant
        default_precision, default_quantize = r.default_mode(target)
        precision, quantize = precision or default_precision, quantize or default_quantize
    if no_int16:
        raise VitdeployError("--no-int16 is gone: int16 activations are only used when asked, with --quantize w8a16")
    if precision == "fp16-compute":
        from .precisions import canonical as _canonical

        if target != "tflite":
            raise VitdeployError("--precision fp16-compute is for --target tflite; Core ML's --precision fp16 "
                                 "already computes in fp16")
        if quantize and _canonical(quantize) != "fp16-compute":
            raise VitdeployError(f"--precision fp16-compute contradicts --quantize {quantize}")
        precision, quantize = None, "fp16-compute"
    precision, quantize = precision or "fp16", quantize or "none"
    say = None if as_json else (lambda msg: _echo(msg, err=True))
    report = run_convert(checkpoint, target, out=out, quantize=quantize, precision=precision, calib_dir=calib_dir,
                         labels_file=labels_file, raw_input=raw_input, int8_io=int8_io,
                         deployment_target=deployment_target, compute_units=compute_units, variant=variant,
                         int8_finetune=int8_finetune, delegate=delegate, progress=say)
    missed = report.get("accuracy_target_met") is False
    if as_json:
        _echo_json(report)
        if missed:
            where = "quant_report.alternatives" if "alternatives" in report.get("quant_report", {}) else "warnings"
            raise CheckFailed(f"{report['path']}: w8a8 below the accuracy target (see {where})")
        return
    mb = report.get("size_bytes", 0) / 1e6
    _echo(f"{report['path']}  {report['variant']} -> {target} ({report.get('precision') or report.get('quantize')}), "
               f"{mb:.1f} MB, "
               f"{report['bn_folding']['total_folded']} BatchNorm folded, {report['total_seconds']:.1f} s")
    if report.get("float_fallback_ops"):
        _echo(f"kept in float: {', '.join(report['float_fallback_ops'])}")
    if report.get("quant_report", {}).get("activations") == "int16":
        _echo("activations: int16 (int8 weights)")
    warnings = report.get("warnings", [])
    for w in warnings[:-1] if missed else warnings:
        _echo(f"warning: {w}", err=True)
    if missed:  # a check failed, as in `parity`: the model was kept aside under a name that says so
        raise CheckFailed(warnings[-1] if warnings else "w8a8 below the accuracy target")


@main.command()
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
@click.option("--compute-units", help="Comma list: Android xnnpack,gpu,nnapi; iOS cpuOnly,cpuAndGPU,"
                                      "cpuAndNeuralEngine,all (default: all the device has).")
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
@report_options
@click.pass_context
def profile(ctx: click.Context, models: tuple[str, ...], device: str, farm: str | None, farm_devices: str | None,
            max_devices: int | None, runs: int, warmup: int, threads: int, device_threads: str, repeat: int,
            compute_units: str | None, harness_apks: tuple[str, ...], build_harness: bool, timeout_s: float | None,
            no_wait: bool, dry_run: bool, state_dir: str | None, variant: str | None, report_dir: str | None,
            as_json: bool, plot_path: str | None, markdown_path: str | None, max_cv: float,
            max_repeat_spread: float) -> None:
    """Latency of MODEL (checkpoint or artifact) on the host, a phone or farm phones: load, first run, min/median/p90/mean/std."""
    from .profile import profile as run_profile

    try:
        dthreads = tuple(int(t) for t in device_threads.split(",") if t.strip())
    except ValueError:
        raise VitdeployError(f"--device-threads takes comma-separated integers, got '{device_threads}'") from None
    units = tuple(u.strip() for u in compute_units.split(",") if u.strip()) if compute_units else None
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
    if len(models) != 1:
        raise VitdeployError("several models are profiled together on a farm (--farm); --device takes one model")
    model = models[0]
    _check_report_dir(report_dir)
    result = run_profile(model, device=device, runs=runs, warmup=warmup, threads=threads, variant=variant,
                         progress=not as_json, compute_units=units, device_threads=dthreads,
                         harness_apks=harness_apks, timeout_s=600.0 if timeout_s is None else timeout_s,
                         build_harness=build_harness)
    if report_dir:
        from .reports import write_report

        write_report(report_dir, kind="profile", data=_profile_report_data(result))
    if as_json:
        _echo_json(result)
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
        _echo(f"{r['model']} on host ({r.get('runtime', r['kind'])}, {r.get('threads')} threads, "
                   f"{r['runs']} runs)")
        _echo(f"  load {r['load_ms']:.1f} ms, first {r['first_ms']:.2f} ms")
        _echo(f"  min {r['min_ms']:.2f}  median {r['median_ms']:.2f}  p90 {r['p90_ms']:.2f}  "
                   f"mean {r['mean_ms']:.2f}  std {r['std_ms']:.2f}  (ms)")
        return
    parity = {p["config"]: p for p in r.get("parity", [])}
    _echo(f"{r['model']} on {r.get('serial') or r.get('device')}")
    _echo(f"  {'config':<24} {'median ms':>10} {'min ms':>8} {'cosine':>9} {'top-1':>6}")
    for c in r.get("configs", []):
        lat = sorted(c.get("latencies_ms") or [])
        p = parity.get(c.get("name"), {})
        med = f"{c['median_ms']:.2f}" if c.get("median_ms") is not None else "-"
        mn = f"{lat[0]:.2f}" if lat else "-"
        cos = f"{p['cosine']:.5f}" if "cosine" in p else "-"
        top = ("yes" if p.get("top1_match") else "NO") if "top1_match" in p else "-"
        _echo(f"  {c.get('name', '?'):<24} {med:>10} {mn:>8} {cos:>9} {top:>6}"
                   + (f"  ({c.get('error') or c.get('status')})" if not lat else ""))


@main.command()
@click.option("--recipes", "recipes_dir", default="recipes", show_default=True, type=click.Path(path_type=str),
              help="Directory of recipe YAML files.")
@click.option("--checkpoints", "checkpoints_dir", required=True, type=click.Path(path_type=str),
              help="Directory holding a checkpoint per variant (matched by detection).")
@click.option("-o", "--out", "out_dir", default="out/build", show_default=True, type=click.Path(path_type=str))
@click.option("--target", "targets", multiple=True, type=click.Choice(TARGETS), help="Limit targets.")
@click.option("--variant", "variants", multiple=True, help="Limit variants.")
@click.option("--images", "images_dir", type=click.Path(path_type=str),
              help="Parity images (default: the built-in natural-image set).")
@click.option("--n-images", default=16, show_default=True, type=click.IntRange(1, None),
              help="Parity images per cell (spread evenly over --images).")
@click.option("--calib", "calib_dir", type=click.Path(path_type=str),
              help="Calibration images for int8/w8a8 cells (default: built-in natural images).")
@json_option("summary")
def build(recipes_dir: str, checkpoints_dir: str, out_dir: str, targets: tuple[str, ...], variants: tuple[str, ...],
          images_dir: str | None, n_images: int, calib_dir: str | None, as_json: bool) -> None:
    """Convert the whole matrix (variants x targets x precisions), check parity and host latency, summarise."""
    from .recipes import build as run_build
    from .recipes import format_build_table

    def on_cell(row: dict) -> None:
        if not as_json:
            mode = row["quantize"] if row["target"] == "tflite" else f"{row['precision']}/{row['quantize']}"
            _echo(f"[{row['status']:>6}] {row['variant']} {row['target']} {mode} ({row['seconds']} s)", err=True)

    summary = run_build(recipes_dir, checkpoints_dir, out_dir, targets=targets, variants=variants,
                        images_dir=images_dir, parity_images=n_images, calib_dir=calib_dir, on_cell=on_cell)
    if as_json:
        _echo_json(summary)
    else:
        _echo(format_build_table(summary))
    if summary["failed"]:
        raise CheckFailed(f"{summary['failed']} of {len(summary['cells'])} cells failed")


@main.command()
@click.argument("artifact", type=click.Path(path_type=str))
@click.option("--checkpoint", required=True, type=click.Path(path_type=str), help="The PyTorch reference checkpoint.")
@click.option("--images", "images_dir", type=click.Path(path_type=str),
              help="Directory of images (default: the built-in natural-image set).")
@click.option("--n-images", type=click.IntRange(1, None),
              help="How many images (default: 16 built-in, or every image under --images; spread evenly).")
@click.option("--n-random", default=4, show_default=True, type=click.IntRange(0, None),
              help="Seeded random tensors, reported separately.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "fp16-compute", "int8"]),
              help="Tolerance preset (default: read from the artifact).")
@click.option("--cpu", "cpus", multiple=True, type=click.Choice(list(EMULATED_CPUS)),
              help="Run the .tflite on this emulated phone CPU (qemu + the aarch64 LiteRT; repeatable; "
                   "`vitdeploy setup arm` once first).")
@click.option("--device", "device", help="Emulate the CPU cores of this catalog phone (e.g. pixel7).")
@click.option("--fp16", "fp16", type=click.Choice(["model", "force", "off"]), default="model", show_default=True,
              help="Emulated CPU: fp16 arithmetic as the file asks (model), always (force: what an app enabling "
                   "fp16 inference gets), or never.")
@click.option("--xnnpack/--no-xnnpack", default=True, show_default=True,
              help="Emulated CPU: XNNPACK's kernels, or TFLite's built-in ones.")
@click.option("--tol", "tolerances", multiple=True, metavar="KEY=VALUE",
              help="Override one tolerance, e.g. --tol cosine_min=0.995 (repeatable; VALUE 'none' disables).")
@click.option("--localize", "do_localize", is_flag=True, help="Also find the block where divergence starts.")
@click.option("--variant", help="Override variant detection for the checkpoint.")
@threads_option()
@runtime_option()
@click.option("--report", "report_dir", type=click.Path(path_type=str), help="Write report.json/.md/.html here.")
@json_option("output")
def parity(artifact: str, checkpoint: str, images_dir: str | None, n_images: int | None, n_random: int,
           precision: str | None, cpus: tuple[str, ...], device: str | None, fp16: str, xnnpack: bool,
           tolerances: tuple[str, ...], do_localize: bool, variant: str | None, threads: int,
           runtime: str, report_dir: str | None, as_json: bool) -> None:
    """Check ARTIFACT against the PyTorch CHECKPOINT; exit 1 naming the metric that failed."""
    from .parity import localize, parse_overrides, run_parity

    targets = _emulated_cpus(cpus, device)
    if (fp16 != "model" or not xnnpack) and not targets:
        raise VitdeployError("--fp16 and --no-xnnpack choose how an emulated CPU runs: add --cpu or --device")
    _check_report_dir(report_dir)
    results = [run_parity(artifact, checkpoint, images_dir=images_dir, n_images=n_images,
                          n_random=n_random, tolerances=parse_overrides(tolerances) or None, threads=threads,
                          precision=precision, variant=variant, runtime=runtime, cpu=cpu, fp16=fp16, xnnpack=xnnpack)
               for cpu in (targets or [None])]
    data = results[0].to_dict()
    if len(results) > 1:  # one result per emulated CPU; the first stays at the top level
        data["other_cpus"] = [r.to_dict() for r in results[1:]]
    loc = None
    if do_localize:
        arm = results[0].arm  # the CPU parity ran on, asked for or chosen (an fp16-compute file)
        emulate = {"cpu": arm["cpu"], "fp16": fp16, "xnnpack": xnnpack, "threads": threads} if arm else None
        loc = localize(artifact, checkpoint, images_dir=images_dir, variant=variant, precision=results[0].precision,
                       emulate=emulate)
        data["localization"] = loc.to_dict()
    if report_dir:
        from .reports import write_report

        write_report(report_dir, kind="parity", data=data)
    if as_json:
        _echo_json(data)
    else:
        for result in results:
            _echo(result.summary())
        if loc is not None:
            _echo(loc.table())
        if report_dir:
            _echo(f"report: {report_dir}/report.html")
    failures = [(f"{r.arm['cpu']}: " if len(results) > 1 else "") + f.describe() for r in results for f in r.failures]
    if failures:
        raise CheckFailed("; ".join(failures))


def _check_report_dir(report_dir: str | None) -> None:
    """--report must be a folder that can be written, judged before the measurements that fill it."""
    if report_dir:
        from .outputs import check_output_dir

        check_output_dir(report_dir, "--report")


def _emulated_cpus(cpus: tuple[str, ...], device: str | None) -> list[str]:
    """The emulated CPUs asked for: --cpu as given, then the stand-ins for a catalog phone's cores."""
    chosen = list(dict.fromkeys(cpus))
    if device:
        from .devices.catalog import emulated_cpus, get_device

        chosen += [c for c in emulated_cpus(get_device(device)) if c not in chosen]
    return chosen


@main.command("eval")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=str),
              help="ImageFolder layout: one subfolder per class (sorted order = class index), or labels.txt.")
@click.option("--limit-per-class", type=click.IntRange(1, None), help="Evaluate at most this many images per class.")
@click.option("--variant", help="Override variant detection for checkpoints.")
@threads_option()
@runtime_option()
@click.option("--report", "report_dir", type=click.Path(path_type=str), help="Write report.json/.md/.html here.")
@json_option("output")
def eval_cmd(models: tuple[str, ...], data_dir: str, limit_per_class: int | None, variant: str | None, threads: int,
             runtime: str, report_dir: str | None, as_json: bool) -> None:
    """Top-1/top-5 accuracy of MODELS (checkpoints and artifacts) side by side on a labelled image set."""
    from .parity import evaluate

    _check_report_dir(report_dir)
    result = evaluate(list(models), data_dir, threads=threads, limit_per_class=limit_per_class, variant=variant,
                      runtime=runtime)
    if report_dir:
        from .reports import write_report

        write_report(report_dir, kind="eval", data=result.to_dict())
    if as_json:
        _echo_json(result.to_dict())
    else:
        _echo(result.table())


@main.command("package")
@click.argument("artifact", type=click.Path(path_type=str))
@click.option("--platform", type=click.Choice(["ios", "android"]),
              help="Default: from the artifact (.mlpackage -> ios, .tflite -> android); required for a .pte.")
@click.option("--into", type=click.Path(path_type=str),
              help="App project: the folder with the .xcodeproj, or an Android project/app module.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=str),
              help="Just write the files (and a README.md) into this folder.")
@click.option("--force", is_flag=True, help="Replace existing files that differ.")
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Classes the helper returns.")
@click.option("--package", "android_package", help="Kotlin package of the helper with -o (android).")
@click.option("--allow-below-target", is_flag=True, help="Package a model its converter judged below target (warned).")
@json_option("report")
def package_cmd(artifact: str, platform: str | None, into: str | None, out: str | None, force: bool, top_k: int,
                android_package: str | None, allow_below_target: bool, as_json: bool) -> None:
    """Put a converted model into an iOS or Android app, with labels and a generated Swift/Kotlin helper."""
    from pathlib import Path

    from .packaging import infer_platform, package

    if bool(into) == bool(out):
        raise VitdeployError("give exactly one of --into APP_DIR or -o DIR")
    r = package(Path(artifact), platform=platform or infer_platform(Path(artifact)), into=Path(into) if into else None,
                out=Path(out) if out else None, force=force, top_k=top_k, android_package=android_package,
                allow_below_target=allow_below_target)
    _echo(json.dumps(r.to_dict(), indent=2, default=str) if as_json else "\n".join(r.lines()))


@main.command()
@json_option("output")
def devices(as_json: bool) -> None:
    """List the host, connected Android and iOS devices, and the device catalog."""
    from .devices import format_devices, list_devices

    listing = list_devices()
    if as_json:
        _echo_json(listing)
    else:
        _echo(format_devices(listing))


main.add_command(farm)


@main.group()
def setup() -> None:
    """One-time setups that later commands use."""


@setup.command("arm")
@click.option("--cache", "cache", type=click.Path(path_type=str),
              help="Cache folder (default: $VITDEPLOY_CACHE, else ~/.cache/vitdeploy).")
@click.option("--force", is_flag=True, help="Rebuild even when an environment is there.")
@json_option("output")
def setup_arm_cmd(cache: str | None, force: bool, as_json: bool) -> None:
    """Build the emulated phone CPU (qemu + aarch64 Python and LiteRT) that `parity --cpu` runs on.

    Downloads ~90 MB (Debian arm64 packages, trixie's static qemu when the system's cannot model a Cortex-A55
    or A710, the aarch64 ai-edge-litert and numpy wheels) into the cache; changes nothing on the system.
    """
    from pathlib import Path

    from .emulation import setup_arm

    bars = []

    def progress(label: str, total: int):
        if as_json or not sys.stderr.isatty():
            return None
        bar = click.progressbar(length=total, label=f"  {label}", file=sys.stderr)
        bar.__enter__()
        bars.append(bar)
        return bar.update

    say = (lambda line: None) if as_json else (lambda line: _echo(line, err=True))
    try:
        env = setup_arm(Path(cache) if cache else None, force=force, say=say, progress=progress)
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    if as_json:
        _echo_json({"root": str(env.root), "qemu": str(env.qemu), **env.manifest})
    else:
        _echo(env.describe())


@main.command()
@click.argument("checkpoints", nargs=-1, type=click.Path(path_type=str))
@click.option("-o", "--out", "out_dir", default="out/demo", show_default=True, type=click.Path(path_type=str),
              help="Where the demo writes checkpoints, artifacts and its report.")
@click.option("--quick", is_flag=True, help="Float artifacts only (skips int8/w8): about half the time.")
@json_option("summary")
def demo(checkpoints: tuple[str, ...], out_dir: str, quick: bool, as_json: bool) -> None:
    """The main job end to end on the trained MobileViT-XXS and LeViT-128S references (or the given CHECKPOINTS)."""
    from .demo import run_demo
    from .outputs import check_output_dir

    check_output_dir(out_dir, "-o")
    summary = run_demo(list(checkpoints), out_dir, echo=None if as_json else _echo, quick=quick)
    if as_json:
        _echo_json(summary)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
