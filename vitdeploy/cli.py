"""The ``vitdeploy`` command line: thin wrappers over :mod:`vitdeploy.api`.

Nothing heavy is imported at module level, so ``vitdeploy --help`` starts instantly.
Exit codes: 0 ok, 1 a check failed, 2 bad input or usage.
"""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import CheckFailed, VitdeployError


class _Group(click.Group):
    """Turns vitdeploy's errors into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (VitdeployError, CheckFailed) as e:
            click.echo(f"error: {e}" if isinstance(e, VitdeployError) else f"check failed: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vitdeploy")
def main() -> None:
    """Convert LeViT and MobileViT checkpoints to Core ML and TFLite, check parity, profile on device."""


@main.command()
@click.argument("path", type=click.Path(path_type=str))
@click.option("--variant", help="Override variant detection (e.g. levit_128s, mobilevit_xs).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
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
    rows.append(("preprocessing", Preprocessing.from_dict(info["preprocessing"]).describe()))
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
        click.echo(f"{k:<{width}}  {v}")


@main.command()
@click.argument("model", type=click.Path(path_type=str))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--variant", help="Override variant detection for a checkpoint.")
@click.option("--save-logits", type=click.Path(dir_okay=False, path_type=str),
              help="Write float32 (N, classes) logits to this .npy file.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(1, None), help="Classes to print per input.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, None), help="CPU threads (artifacts).")
@click.option("--runtime", type=click.Choice(["auto", "coreml", "interpreter"]), default="auto", show_default=True,
              help="Core ML: real Core ML (macOS) or vitdeploy's MIL interpreter.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(model: str, inputs: tuple[str, ...], variant: str | None, save_logits: str | None, top: int,
            threads: int, runtime: str, as_json: bool) -> None:
    """Classify INPUTS (image files, or one preprocessed .npy NCHW batch) with MODEL (checkpoint or artifact)."""
    from . import api

    pred = api.predict(model, list(inputs), variant=variant, threads=threads, runtime=runtime)
    if save_logits:
        api.save_array(save_logits, pred.logits)
    tops = pred.top(top)
    if as_json:
        _echo_json({"model": model, "logits_file": save_logits, "shape": list(pred.logits.shape),
                    "predictions": [{"input": name, "top": t} for name, t in zip(pred.inputs, tops)]})
        return
    for name, t in zip(pred.inputs, tops):
        click.echo(name)
        for r in t:
            label = f"  {r['label']}" if r["label"] else ""
            click.echo(f"  {r['class']:>5}  {r['prob']:7.2%}  logit {r['logit']:8.3f}{label}")
    if save_logits:
        click.echo(f"logits {tuple(pred.logits.shape)} -> {save_logits}", err=True)


@main.command()
@click.argument("checkpoints", nargs=-1, type=click.Path(path_type=str))
@click.option("-o", "--out", "out_dir", default="out/demo", show_default=True, type=click.Path(path_type=str),
              help="Where the demo writes checkpoints, artifacts and its report.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
def demo(checkpoints: tuple[str, ...], out_dir: str, as_json: bool) -> None:
    """The main job end to end on built-in seeded MobileViT-XS and LeViT-128S (or the given CHECKPOINTS)."""
    from .demo import run_demo

    summary = run_demo(list(checkpoints), out_dir, echo=None if as_json else click.echo)
    if as_json:
        _echo_json(summary)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
