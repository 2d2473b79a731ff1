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
from .diagnostics import quiet_third_party_noise  # noqa: E402

quiet_third_party_noise()

from .errors import CheckFailed, VitdeployError
from .formats import FORMATS, TARGETS
from .cli_group import _Group
from .cli_common import (data_option, echo, echo_json, check_report_dir, json_option, runtime_option,
                         threads_option, top_k_option)
from .cli_build import build
from .cli_farm import farm
from .progress import step
from .options import COMPUTE_UNITS, COREML_CONVERTER_UNITS, SCOPE, compute_units, refuse_inapplicable
from .precisions import DEFAULT, PARITY_OLD_PRESETS, PRECISIONS, canonical, parse, preset_of, quantize_choices
from .cli_compare import compare_commands

# The emulated phone CPUs (kept here, not imported, so --help stays instant; a test checks it matches).
EMULATED_CPUS = ("cortex-a55", "cortex-a76", "cortex-a710")


_echo, _echo_json, _check_report_dir = echo, echo_json, check_report_dir


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
@top_k_option("Classes to print per input.")
@click.option("--labels", "labels_file", type=click.Path(path_type=str),
              help="Class names, one per line (default: the model's own).")
@threads_option("CPU threads (artifacts).")
@runtime_option(help="Core ML: real Core ML (macOS) or vitdeploy's MIL interpreter.")
@json_option("output")
def predict(model: str, inputs: tuple[str, ...], variant: str | None, save_logits: str | None, top_k: int,
            labels_file: str | None, threads: int, runtime: str, as_json: bool) -> None:
    """Classify INPUTS (image files, or one preprocessed .npy NCHW batch) with MODEL (checkpoint or artifact)."""
    from . import api

    if save_logits:
        from .outputs import check_output_file

        check_output_file(save_logits, "--save-logits")
    pred = api.predict(model, list(inputs), variant=variant, threads=threads, runtime=runtime, labels_file=labels_file)
    if save_logits:
        api.save_array(save_logits, pred.logits)
    tops = pred.top(top_k)
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
@click.option("--quantize", help="; ".join(f"{t}: {'|'.join(quantize_choices(t))}"
                                           for t in TARGETS) + " (aliases: none=fp32, int8=w8a8)  [default: "
                                 + ", ".join(f"{t} {DEFAULT[t]}" for t in TARGETS) + "]")
@click.option("--precision", type=click.Choice(PRECISIONS),
              help="Core ML: compute precision, fp16|fp32, of a quantized model too [default: "
                   f"{DEFAULT['coreml']}]. tflite, executorch: the file's precision, the same as --quantize "
                   "(fp16-compute = fp16 weights and fp16 arithmetic on phones that have it). A --quantize it "
                   "contradicts is refused.")
@click.option("--calib", "calib_dir", type=click.Path(path_type=str),
              help="Directory of calibration images (int8/w8a8; default: built-in natural images).")
@click.option("--labels", "labels_file", type=click.Path(path_type=str), help="Class labels, one per line.")
@click.option("--raw-input", is_flag=True, help="Keep a float NCHW tensor input instead of an image input.")
@click.option("--int8-io", is_flag=True, help="tflite int8: int8 input/output tensors instead of float.")
@click.option("--int8-finetune", type=click.IntRange(min=0), default=0, metavar="STEPS",
              help="tflite int8: quantization-aware fine-tuning steps of the int8 graph on the --calib "
                   "images, written with its own scales and int8 input/output (distillation, no labels; "
                   "for MobileViT). 0 = off.")
@click.option("--no-int16", "no_int16", is_flag=True, hidden=True)  # gone: int16 only as --quantize w8a16
@click.option("--deployment-target", type=click.Choice(["iOS16", "iOS17", "iOS18"]),
              help="Core ML: minimum iOS (default: the lowest that supports what was asked).")
@click.option("--compute-units", "compute_units_", default="all", show_default=True,
              help=f"Core ML: the model's default compute units, {'|'.join(COMPUTE_UNITS['ios'])} "
                   "(old spellings cpu, cpu_gpu, cpu_ne still accepted).")
@click.option("--delegate", type=click.Choice(["xnnpack", "coreml"]), default="xnnpack", show_default=True,
              help="executorch: the backend the program is lowered to.")
@click.option("--variant", help="Override variant detection.")
@click.option("--force", is_flag=True, help="Replace an artifact already at the output path.")
@json_option("report")
@click.pass_context
def convert(ctx: click.Context, checkpoint: str, target: str, recipe: str | None, out: str | None, quantize: str | None,
            precision: str | None, calib_dir: str | None, labels_file: str | None, raw_input: bool, int8_io: bool,
            int8_finetune: int, no_int16: bool, deployment_target: str | None, compute_units_: str,
            delegate: str, variant: str | None, force: bool, as_json: bool) -> None:
    """Convert CHECKPOINT to a Core ML .mlpackage, a .tflite or an ExecuTorch .pte (BatchNorm folded first)."""
    from . import api

    if recipe:
        r = api.load_recipe(recipe)
        if variant and variant != r.variant:
            raise VitdeployError(f"--variant {variant} contradicts the recipe's variant {r.variant}")
        variant = r.variant
        default_precision, default_quantize = r.default_mode(target)
        compute = FORMATS[target].compute_precisions
        if quantize is None and (precision is None or compute):
            quantize = default_quantize
        if precision is None and compute and (quantize is None or canonical(quantize) not in compute):
            precision = default_precision  # the recipe's compute precision, unless --quantize named one
    if no_int16:
        raise VitdeployError("--no-int16 is gone: int16 activations are only used when asked, with --quantize w8a16")
    chosen = parse(target, quantize, precision)  # parsed once here; contradictions refused, nothing overridden
    given = [p.opts[0] for p in ctx.command.params if p.opts and p.opts[0] in SCOPE and p.name
             and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    refuse_inapplicable(target, chosen.name, given)
    units = compute_units("ios", [compute_units_], say=lambda line: _echo(line, err=True))[0]
    compute_units_ = COREML_CONVERTER_UNITS[units]
    say = None if as_json else (lambda msg: _echo(msg, err=True))
    report = api.convert(checkpoint, target, out=out, quantize=chosen, calib_dir=calib_dir,
                         labels_file=labels_file, raw_input=raw_input, int8_io=int8_io,
                         deployment_target=deployment_target, compute_units=compute_units_, variant=variant,
                         int8_finetune=int8_finetune, delegate=delegate, progress=say, force=force)
    missed = report.get("accuracy_target_met") is False
    if as_json:
        _echo_json(report)
        if missed:
            where = "quant_report.alternatives" if "alternatives" in report.get("quant_report", {}) else "warnings"
            raise CheckFailed(f"{report['path']}: w8a8 below the accuracy target (see {where})")
        return
    mb = report.get("size_bytes", 0) / 1e6
    mode = chosen.describe()
    _echo(f"{report['path']}  {report['variant']} -> {target} ({mode}), "
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
@click.argument("artifact", type=click.Path(path_type=str))
@click.option("--checkpoint", required=True, type=click.Path(path_type=str), help="The PyTorch reference checkpoint.")
@data_option("Directory of images (default: the built-in natural-image set).")
@click.option("--n-images", type=click.IntRange(1, None),
              help="How many images (default: 16 built-in, or every image under --data; spread evenly).")
@click.option("--n-random", default=4, show_default=True, type=click.IntRange(0, None),
              help="Seeded random tensors, reported separately.")
@click.option("--precision", type=click.Choice([*PRECISIONS, *PARITY_OLD_PRESETS]),
              help="Judge with the tolerance preset of this precision (w8a8: the int8 preset), not a conversion "
                   "precision (default: the artifact's, read from its metadata; int8 still read, deprecated).")
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
def parity(artifact: str, checkpoint: str, data_dir: str | None, n_images: int | None, n_random: int,
           precision: str | None, cpus: tuple[str, ...], device: str | None, fp16: str, xnnpack: bool,
           tolerances: tuple[str, ...], do_localize: bool, variant: str | None, threads: int,
           runtime: str, report_dir: str | None, as_json: bool) -> None:
    """Check ARTIFACT against the PyTorch CHECKPOINT; exit 1 naming the metric that failed."""
    from . import api
    from .parity import parse_overrides

    targets = api.emulated_cpus(cpus, device)
    if (fp16 != "model" or not xnnpack) and not targets:
        raise VitdeployError("--fp16 and --no-xnnpack choose how an emulated CPU runs: add --cpu or --device")
    _check_report_dir(report_dir)
    precision = preset_of(precision, say=lambda line: _echo(line, err=True))
    results = []
    for i, cpu in enumerate(targets or [None], 1):  # an emulated CPU takes minutes: a ticking line per stage
        with step(f"parity {i}/{len(targets or [None])}: {os.path.basename(artifact)} on "
                  f"{f'emulated {cpu}' if cpu else 'the host'}"):
            results.append(api.parity(artifact, checkpoint, images_dir=data_dir, n_images=n_images,
                                      n_random=n_random, tolerances=parse_overrides(tolerances) or None,
                                      threads=threads, precision=precision, variant=variant, runtime=runtime,
                                      cpu=cpu, fp16=fp16, xnnpack=xnnpack))
    data = results[0].to_dict()
    if len(results) > 1:  # one result per emulated CPU; the first stays at the top level
        data["other_cpus"] = [r.to_dict() for r in results[1:]]
    loc = None
    if do_localize:
        arm = results[0].arm  # the CPU parity ran on, asked for or chosen (an fp16-compute file)
        emulate = {"cpu": arm["cpu"], "fp16": fp16, "xnnpack": xnnpack, "threads": threads} if arm else None
        with step(f"localizing the divergence of {os.path.basename(artifact)}"):
            loc = api.localize(artifact, checkpoint, images_dir=data_dir, variant=variant,
                               precision=results[0].precision, emulate=emulate)
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
@click.option("--class-name", help="The helper's Swift/Kotlin class (and file) name. Default: named after the model "
              "(levit_128s_w8a8.tflite -> Levit128sW8a8Classifier).")
@json_option("report")
def package_cmd(artifact: str, platform: str | None, into: str | None, out: str | None, force: bool, top_k: int,
                android_package: str | None, allow_below_target: bool, class_name: str | None, as_json: bool) -> None:
    """Put a converted model into an iOS or Android app, with labels and a generated Swift/Kotlin helper."""
    from pathlib import Path

    from . import api

    if bool(into) == bool(out):
        raise VitdeployError("give exactly one of --into APP_DIR or -o DIR")
    r = api.package(artifact, platform=platform, into=Path(into) if into else None, out=Path(out) if out else None,
                    force=force, top_k=top_k, android_package=android_package,
                    allow_below_target=allow_below_target, class_name=class_name)
    _echo(json.dumps(r.to_dict(), indent=2, default=str) if as_json else "\n".join(r.lines()))


@main.command()
@json_option("output")
def devices(as_json: bool) -> None:
    """List the host, connected Android and iOS devices, and the device catalog."""
    from . import api
    from .devices import format_devices

    listing = api.devices()
    if as_json:
        _echo_json(listing)
    else:
        _echo(format_devices(listing))


main.add_command(build)
main.add_command(farm)
for _command in compare_commands:
    main.add_command(_command)


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
    from . import api

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
        env = api.setup_arm(cache, force=force, say=say, progress=progress)
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
    from . import api
    from .outputs import check_output_dir

    check_output_dir(out_dir, "-o")
    summary = api.demo(list(checkpoints), out_dir, echo=None if as_json else _echo, quick=quick)
    if as_json:
        _echo_json(summary)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
