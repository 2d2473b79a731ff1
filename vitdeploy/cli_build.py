"""``vitdeploy build``: every checkpoint in a folder through its recipe's cells (:func:`vitdeploy.api.build`).

The plan (checkpoints x cells, what is skipped and why) goes to stderr before the first cell, one line per
cell as it finishes, then the table on stdout; ``--json`` prints only the summary (plan, skipped, cells).
"""

from __future__ import annotations

import click

from .cli_common import data_option, echo, echo_json, json_option
from .errors import CheckFailed
from .cli_group import _Command
from .formats import TARGETS


@click.command(cls=_Command)
@click.option("--recipes", "recipes_dir", type=click.Path(path_type=str),
              help="Directory of recipe YAML files  [default: the recipes that ship with vitdeploy]")
@click.option("--checkpoints", "checkpoints_dir", required=True, type=click.Path(path_type=str),
              help="Directory of checkpoints: every one is built (its variant detected); other files are "
                   "listed as skipped.")
@click.option("-o", "--out", "out_dir", default="out/build", show_default=True, type=click.Path(path_type=str))
@click.option("--target", "targets", multiple=True, type=click.Choice(TARGETS), help="Limit targets.")
@click.option("--variant", "variants", multiple=True, help="Limit variants.")
@data_option("Parity images (default: the built-in natural-image set).")
@click.option("--n-images", default=16, show_default=True, type=click.IntRange(1, None),
              help="Parity images per cell (spread evenly over --data).")
@click.option("--calib", "calib_dir", type=click.Path(path_type=str),
              help="Calibration images for int8/w8a8 cells (default: built-in natural images).")
@json_option("summary")
def build(recipes_dir: str | None, checkpoints_dir: str, out_dir: str, targets: tuple[str, ...],
          variants: tuple[str, ...], data_dir: str | None, n_images: int, calib_dir: str | None,
          as_json: bool) -> None:
    """Convert every checkpoint in a folder to the matrix its recipe lists (targets x precisions), check parity
    and host latency, summarise (table + build_report.json/.md in the output folder)."""
    from . import api
    from .build import cell_mode, format_build_table, format_plan

    def on_plan(plan: dict) -> None:
        if not as_json:
            echo(format_plan(plan), err=True)

    def on_cell(row: dict) -> None:
        if not as_json:
            mode = cell_mode(row["target"], row["precision"], row["quantize"])
            echo(f"[{row['status']:>6}] {click.format_filename(row['checkpoint'], shorten=True)} ({row['variant']}) "
                 f"{row['target']} {mode} ({row['seconds']} s)", err=True)

    summary = api.build(recipes_dir, checkpoints_dir, out_dir, targets=targets, variants=variants,
                        images_dir=data_dir, parity_images=n_images, calib_dir=calib_dir, on_plan=on_plan,
                        on_cell=on_cell)
    if as_json:
        echo_json(summary)
    else:
        echo(format_build_table(summary))
        echo(f"report: {summary['report']['markdown']}", err=True)
    if summary["failed"] or summary.get("below_target"):
        below = f", {summary['below_target']} below target" if summary.get("below_target") else ""
        raise CheckFailed(f"{summary['failed']} of {len(summary['cells'])} cells failed{below}")
