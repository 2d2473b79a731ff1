"""``vitdeploy build``: every checkpoint in a folder x every cell its variant's recipe lists, never stopping early.

Nothing in the folder is dropped silently: each entry is either a checkpoint (its variant detected from the
weights, so any layout) that gets its recipe's cells, or a line in ``skipped`` saying why (not a checkpoint
file, unreadable, no recipe for its variant, not among ``--variant``). Two checkpoints of one variant are two
rows of the plan: artifacts are named by checkpoint *and* variant (:func:`formats.artifact_name`), and every
row names its source. The plan is known, and every artifact path checked, before the first conversion; a
build report (``build_report.json`` + ``build_report.md``) is written into the output folder at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import VitdeployError
from .formats import FORMATS, HOST_TIMED_TARGETS

REPORT_JSON = "build_report.json"
REPORT_MD = "build_report.md"


@dataclass
class FolderEntry:
    """One entry of the checkpoints folder: a checkpoint of ``variant``, or skipped for ``reason``."""

    path: Path
    variant: str | None = None
    reason: str | None = None


def find_checkpoints(directory: str | Path) -> list[FolderEntry]:
    """Every entry of ``directory``, sorted by name: each a checkpoint (loaded to detect its variant) or
    skipped with the reason. Checkpoints of the same variant are all kept."""
    from .progress import note, step

    d = Path(directory)
    if not d.is_dir():
        raise VitdeployError(f"{d}: --checkpoints must be a directory")
    entries = []
    with step(f"reading the checkpoints in {d.name or d}"):
        for p in sorted(d.iterdir()):
            note(p.name)
            entries.append(_entry(p))
    return entries


def _entry(p: Path) -> FolderEntry:
    from . import checkpoints
    from .checkpoints.reader import WEIGHT_NAME_ENDINGS, is_weights_name
    from .diagnostics import first_line
    from .files import disk_full

    if p.is_dir() and not (p / "config.json").exists():
        return FolderEntry(p, reason="a folder without config.json (not a Hugging Face checkpoint)")
    if not p.is_dir() and not is_weights_name(p.name):
        return FolderEntry(p, reason=f"not a checkpoint file (checkpoints end in {', '.join(WEIGHT_NAME_ENDINGS)})")
    try:
        return FolderEntry(p, variant=checkpoints.load(p).variant)
    except Exception as e:  # noqa: BLE001 - an unreadable file is skipped and said so, whatever the reader raised
        if disk_full(e):
            raise
        return FolderEntry(p, reason=f"not loadable as a checkpoint ({first_line(e).removeprefix(f'{p}: ')})")


@dataclass
class Cell:
    checkpoint: Path
    variant: str
    target: str
    precision: str
    quantize: str
    path: Path
    tolerances: dict | None


def plan(recipes_dir: str | Path | None, checkpoints_dir: str | Path, out_dir: str | Path, *,
         targets: tuple[str, ...] = (), variants: tuple[str, ...] = ()) -> dict:
    """What the build will do: ``{"recipes", "checkpoints": [...], "skipped": [...], "cells": [Cell]}``.

    Bad input (a bad recipe, an unknown ``--variant`` or one with no checkpoint, a folder without any
    checkpoint, an artifact path that cannot be written) is refused here, before any conversion."""
    from .outputs import check_artifact_path, check_output_dir
    from .cell import artifact_path
    from .recipes import BUILTIN_RECIPES, did_you_mean, load_recipes, precision_class

    recipes_dir = Path(recipes_dir) if recipes_dir else BUILTIN_RECIPES
    every = load_recipes(recipes_dir)
    by_variant: dict = {}
    for r in every:
        if r.variant in by_variant:
            raise VitdeployError(f"{r.path}: variant {r.variant} already has a recipe ({by_variant[r.variant].path})")
        by_variant[r.variant] = r
    unknown = [v for v in variants if v not in by_variant]
    if unknown:
        raise VitdeployError(f"--variant {unknown[0]}: no recipe for it in {recipes_dir}"
                             f"{did_you_mean(unknown[0], sorted(by_variant))}")
    out = check_output_dir(Path(out_dir), "-o")
    entries = find_checkpoints(checkpoints_dir)
    skipped = [{"path": str(e.path), "reason": e.reason} for e in entries if e.reason]
    chosen = []
    for e in (e for e in entries if e.variant):
        recipe = by_variant.get(e.variant)
        cells = [c for c in recipe.cells() if not targets or c[0] in targets] if recipe else []
        why = (f"{e.variant}: no recipe for it in {recipes_dir}" if recipe is None else
               f"{e.variant}: not among --variant {', '.join(variants)}" if variants and e.variant not in variants
               else f"{e.variant}: its recipe lists none of --target {', '.join(targets)}" if not cells else None)
        if why:
            skipped.append({"path": str(e.path), "variant": e.variant, "reason": why})
        else:
            chosen.append((e, recipe, cells))
    missing = [v for v in variants if v not in {e.variant for e, _, _ in chosen}]
    if missing or not chosen:
        what = f"no checkpoint of --variant {missing[0]}" if missing else "no checkpoint to build"
        why = f" ({len(skipped)} entries skipped; first: {Path(skipped[0]['path']).name}: {skipped[0]['reason']})" \
            if skipped else " (the folder is empty)"
        raise VitdeployError(f"{checkpoints_dir}: {what}{why}")
    stems = _stems([e.path for e, _, _ in chosen])
    cells, checkpoints = [], []
    for e, recipe, recipe_cells in chosen:
        for target, precision, quantize in recipe_cells:
            path = artifact_path(out / e.variant, stems[e.path], target, precision, quantize, variant=e.variant)
            cells.append(Cell(e.path, e.variant, target, precision, quantize, path,
                              recipe.parity.get(precision_class(target, precision, quantize)) or None))
        checkpoints.append({"path": str(e.path), "variant": e.variant, "recipe": str(recipe.path),
                            "cells": len(recipe_cells)})
    # Every artifact path is checked before the first (minutes-long) conversion; build rebuilds its own folder.
    for c in cells:
        check_artifact_path(c.path, c.target, option="-o", force=True)
    return {"recipes": str(recipes_dir), "out_dir": str(out), "checkpoints": checkpoints, "skipped": skipped,
            "cells": cells}


def _stems(paths: list[Path]) -> dict[Path, str]:
    """Each checkpoint's name for its artifacts: its stem, or its whole name where two stems collide
    (``mine.pth`` and ``mine.safetensors`` -> ``mine_pth``, ``mine_safetensors``)."""
    from .convert import checkpoint_stem

    stems = {p: checkpoint_stem(p) for p in paths}
    seen = [s for s in stems.values()]
    return {p: (p.name.replace(".", "_") if seen.count(s) > 1 else s) for p, s in stems.items()}


def build(recipes_dir: str | Path | None, checkpoints_dir: str | Path, out_dir: str | Path, *,
          targets: tuple[str, ...] = (), variants: tuple[str, ...] = (), parity_images: int = 16,
          latency_runs: int = 20, threads: int = 2, images_dir: str | Path | None = None,
          calib_dir: str | Path | None = None, on_plan: Callable[[dict], None] | None = None,
          on_cell: Callable[[dict], None] | None = None) -> dict:
    """Convert every (checkpoint x target x mode) the recipes ask for; check parity and host latency; never stop early.

    ``recipes_dir``: None for the recipes that ship with vitdeploy. ``images_dir``: parity images (default:
    the built-in natural-image set); ``calib_dir``: calibration images for int8/w8a8 cells (default: the
    built-in set). ``on_plan`` gets the plan before the first cell, ``on_cell`` each row as it is done.
    """
    from .cell import STATUS_BELOW_TARGET, build_artifact
    from .progress import step

    the_plan = plan(recipes_dir, checkpoints_dir, out_dir, targets=targets, variants=variants)
    if on_plan:
        on_plan(the_plan)
    rows = []
    for i, c in enumerate(the_plan["cells"], 1):
        with step(f"build {i}/{len(the_plan['cells'])}: {c.checkpoint.name} ({c.variant}) -> {c.target} "
                  f"{cell_mode(c.target, c.precision, c.quantize)}"):
            row = build_artifact(c.checkpoint, c.target, c.precision, c.quantize, c.path, variant=c.variant,
                                 calib_dir=calib_dir, parity_images=parity_images, images_dir=images_dir,
                                 tolerances=c.tolerances, force=True)  # build rebuilds its own folder
            if row["status"] == STATUS_BELOW_TARGET:  # written aside under a name that says so: the one verdict
                row["error"] = row.pop("verdict")  # the line under the cell says which target it missed
            if row["status"] == "ok" and c.target in HOST_TIMED_TARGETS:
                row["host_median_ms"] = _host_latency(Path(row["path"]), latency_runs, threads)
        row = {"checkpoint": str(c.checkpoint), "variant": c.variant, **row}
        rows.append(row)
        if on_cell:
            on_cell(row)
    summary = {"out_dir": the_plan["out_dir"], "recipes": the_plan["recipes"],
               "checkpoints": the_plan["checkpoints"], "skipped": the_plan["skipped"], "cells": rows,
               "failed": sum(r["status"] not in ("ok", STATUS_BELOW_TARGET) for r in rows),
               "below_target": sum(r["status"] == STATUS_BELOW_TARGET for r in rows)}
    summary["report"] = write_build_report(summary)
    return summary


def cell_mode(target: str, precision: str, quantize: str) -> str:
    """A cell's mode as the plan, the progress line and the per-cell line show it (canonical names; Core ML's
    compute precision first when it quantizes: ``fp16 w8``)."""
    from .precisions import parse_call

    return parse_call(target, quantize, precision).describe()


def _host_latency(artifact: Path, runs: int, threads: int) -> float:
    from .runtimes.open import open_runner
    from .runtimes.timing import profile_runner

    return profile_runner(lambda: open_runner(artifact, threads=threads), runs=runs, warmup=3)["median_ms"]


def format_plan(the_plan: dict) -> str:
    """The plan as the build prints it up front: N checkpoints x cells, what each builds, what is skipped."""
    cells = the_plan["cells"]
    lines = [f"plan: {len(the_plan['checkpoints'])} checkpoint(s), {len(cells)} artifact(s) -> {the_plan['out_dir']} "
             f"(recipes: {the_plan['recipes']})"]
    for ck in the_plan["checkpoints"]:
        modes = [f"{c.target} {cell_mode(c.target, c.precision, c.quantize)}" for c in cells
                 if str(c.checkpoint) == ck["path"]]
        lines.append(f"  {Path(ck['path']).name} ({ck['variant']}): {len(modes)} cells: {', '.join(modes)}")
    for s in the_plan["skipped"]:
        lines.append(f"  skipped {Path(s['path']).name}: {s['reason']}")
    return "\n".join(lines)


_BUILD_COLUMNS = ("checkpoint", "variant", "target", "mode", "status", "MB", "conv s", "parity", "cos min", "max abs",
                  "top-1", "host ms")


def format_build_table(summary: dict) -> str:
    """The build table, each column as wide as its longest cell (checkpoint names are the user's)."""
    rows = [_BUILD_COLUMNS] + [_build_cells(r) for r in summary["cells"]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_BUILD_COLUMNS))]
    line = lambda r: "  ".join(c.ljust(w) if i < 5 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [line(rows[0]), "  ".join("-" * w for w in widths)]
    for r, cells in zip(summary["cells"], rows[1:]):
        lines.append(line(cells))
        if r["status"] != "ok":
            lines.append(f"    {'below target' if r['status'] == 'below target' else 'error'}: {r.get('error')}")
        elif r.get("float_fallback_ops"):
            lines.append(f"    kept in float: {', '.join(r['float_fallback_ops'])}")
    for s in summary.get("skipped", []):
        lines.append(f"skipped {Path(s['path']).name}: {s['reason']}")
    n_ck = len(summary.get("checkpoints", []))
    lines.append((f"{n_ck} checkpoint(s), " if n_ck else "") + f"{len(summary['cells'])} cells, "
                 f"{summary['failed']} failed"
                 + (f", {summary['below_target']} below target" if summary.get("below_target") else "")
                 + (f", {len(summary['skipped'])} skipped" if summary.get("skipped") else ""))
    return "\n".join(lines)


def _build_cells(r: dict) -> tuple[str, ...]:
    mode = cell_mode(r["target"], r["precision"], r["quantize"])  # the canonical words (precisions.py)
    mode += " (a16)" if r.get("activations") == "int16" else ""
    fmt = lambda v, f: (f.format(v) if isinstance(v, (int, float)) else "-")  # noqa: E731
    return (Path(r["checkpoint"]).name if r.get("checkpoint") else "-", r["variant"], r["target"], mode, r["status"],
            fmt(r.get("size_mb"), "{:.1f}"), fmt(r.get("convert_s"), "{:.1f}"), str(r.get("parity", "-")),
            fmt(r.get("cosine_min"), "{:.6f}"), fmt(r.get("max_abs"), "{:.2e}"),
            fmt(r.get("top1_agreement"), "{:.0%}"), fmt(r.get("host_median_ms"), "{:.2f}"))


def write_build_report(summary: dict) -> dict:
    """``build_report.json`` and ``build_report.md`` in the output folder; returns their paths."""
    import json

    from .diagnostics import visible
    from .files import write_atomically

    out = Path(summary["out_dir"])
    paths = {"json": str(out / REPORT_JSON), "markdown": str(out / REPORT_MD)}
    write_atomically(out / REPORT_JSON, json.dumps({**summary, "report": paths}, indent=2, default=str) + "\n")
    md = ["# vitdeploy build", "", f"Recipes: `{summary['recipes']}`", "", "## Checkpoints", ""]
    md += [f"- `{ck['path']}` ({ck['variant']}): {ck['cells']} cells" for ck in summary["checkpoints"]]
    if summary["skipped"]:
        md += ["", "## Skipped", ""] + [f"- `{s['path']}`: {s['reason']}" for s in summary["skipped"]]
    md += ["", "## Cells", "", "```", format_build_table(summary), "```", ""]
    write_atomically(out / REPORT_MD, visible("\n".join(md)))
    return paths
