"""Recipes: one YAML per variant saying how to build and check it; ``build`` runs a whole matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import VitdeployError
from .formats import HOST_TIMED_TARGETS
from .models import family_of, variant_info

_REQUIRED = ("variant", "targets", "parity")
# What the variant already fixes; older recipes repeated it, and may still, if it agrees.
_DERIVED = ("family", "input_size", "architecture", "preprocessing")


@dataclass
class Recipe:
    """How to build and check one variant; everything the variant fixes comes from its registered family."""

    path: Path
    variant: str
    targets: dict  # target -> {"quantize": [...], "precision": [...], "default": ...}
    parity: dict  # precision class -> tolerance overrides

    @property
    def family(self) -> str:
        return variant_info(self.variant).family

    @property
    def input_size(self) -> tuple[int, int, int]:
        return variant_info(self.variant).input_size

    @property
    def architecture(self) -> dict:
        return family_of(self.variant).architecture(self.variant)

    @property
    def preprocessing(self) -> dict:
        """The family's default input convention (a timm-layout checkpoint still gets timm's at load)."""
        return family_of(self.variant).preprocessing_default.to_dict()

    def cells(self) -> list[tuple[str, str, str]]:
        """(target, precision, quantize) for every artifact the recipe asks for; a target whose spec lists
        ``precision`` (Core ML's compute precision) gets every (precision, quantize) pair."""
        out = []
        for target, spec in self.targets.items():
            for precision in spec.get("precision", ["fp32"]):
                out += [(target, precision, q) for q in spec.get("quantize", ["none"])]
        return out

    def default_mode(self, target: str) -> tuple[str, str]:
        """(precision, quantize) the recipe uses when the command line does not say."""
        default = (self.targets.get(target) or {}).get("default", "none")
        if isinstance(default, dict):
            return default.get("precision", "fp16"), default.get("quantize", "none")
        return "fp16", default


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file."""
    import yaml

    from .formats import TARGETS

    p = Path(path)
    if not p.is_file():
        raise VitdeployError(f"{p}: recipe not found")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise VitdeployError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise VitdeployError(f"{p}: a recipe is a YAML mapping")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise VitdeployError(f"{p}: recipe lacks {', '.join(missing)}")
    recipe = Recipe(path=p, variant=variant_info(str(data["variant"])).name, targets=data["targets"],
                    parity=data["parity"])
    disagree = [k for k in _DERIVED if k in data and _plain(data[k]) != _plain(_derived(recipe, k, data[k]))]
    if disagree:
        raise VitdeployError(f"{p}: {', '.join(disagree)} disagree with variant {recipe.variant} "
                             f"(leave them out: the variant fixes them)")
    unknown = set(data["targets"]) - set(TARGETS)
    if unknown:
        raise VitdeployError(f"{p}: unknown target(s) {', '.join(sorted(unknown))}; choose from {', '.join(TARGETS)}")
    return recipe


def _derived(recipe: Recipe, key: str, given):
    """The recipe's value of ``key``; for a partial ``architecture``/``preprocessing`` mapping, just the keys given."""
    value = getattr(recipe, key)
    if isinstance(value, dict) and isinstance(given, dict):
        return {k: value.get(k) for k in given}
    return value


def _plain(value):
    """Lists for tuples, floats compared to 1e-9 relative, so YAML and dataclass values compare."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return float(f"{value:.9g}")
    return value


def load_recipes(directory: str | Path) -> list[Recipe]:
    d = Path(directory)
    files = sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml"))
    if not files:
        raise VitdeployError(f"{d}: no recipe files (*.yaml)")
    return [load_recipe(f) for f in files]


def precision_class(precision: str, quantize: str) -> str:
    """Which parity tolerance preset an artifact falls under (``quantize`` in any spelling)."""
    from .precisions import canonical, parity_preset

    name = canonical(quantize)
    return parity_preset(precision if name == "fp32" and precision in ("fp16", "fp32") else name)


def find_checkpoints(directory: str | Path) -> dict[str, Path]:
    """variant -> checkpoint file, by loading each candidate (files that are not checkpoints are skipped)."""
    from . import checkpoints
    from .checkpoints.reader import WEIGHT_SUFFIXES

    d = Path(directory)
    if not d.is_dir():
        raise VitdeployError(f"{d}: --checkpoints must be a directory")
    found: dict[str, Path] = {}
    candidates = sorted(p for p in d.iterdir() if p.suffix in WEIGHT_SUFFIXES or (p / "config.json").exists())
    for p in candidates:
        try:
            found.setdefault(checkpoints.load(p).variant, p)
        except VitdeployError:
            continue
    return found


def build(recipes_dir: str | Path, checkpoints_dir: str | Path, out_dir: str | Path, *, targets: tuple[str, ...] = (),
          variants: tuple[str, ...] = (), parity_images: int = 16, latency_runs: int = 20, threads: int = 2,
          images_dir: str | Path | None = None, calib_dir: str | Path | None = None,
          on_cell: Callable[[dict], None] | None = None) -> dict:
    """Convert every (variant x target x mode) the recipes ask for; check parity and host latency; never stop early.

    ``images_dir``: parity images (default: the built-in natural-image set); ``calib_dir``:
    calibration images for int8/w8a8 cells (default: the built-in set).
    """
    from .pipeline import STATUS_BELOW_TARGET, artifact_path, build_artifact

    recipes = [r for r in load_recipes(recipes_dir) if not variants or r.variant in variants]
    ckpts = find_checkpoints(checkpoints_dir)
    out = Path(out_dir)
    rows = []
    for recipe in recipes:
        cells = [c for c in recipe.cells() if not targets or c[0] in targets]
        for target, precision, quantize in cells:
            ckpt = ckpts.get(recipe.variant)
            path = artifact_path(out / recipe.variant, recipe.variant, target, precision, quantize)
            if ckpt is None:
                row = {"target": target, "precision": precision, "quantize": quantize, "status": "failed",
                       "error": f"no checkpoint for {recipe.variant} in {checkpoints_dir}", "seconds": 0.0}
            else:
                tolerances = recipe.parity.get(precision_class(precision, quantize)) or None
                row = build_artifact(ckpt, target, precision, quantize, path, variant=recipe.variant,
                                     calib_dir=calib_dir, parity_images=parity_images, images_dir=images_dir,
                                     tolerances=tolerances)
            if row["status"] == STATUS_BELOW_TARGET:  # written aside under a name that says so; a failed cell
                row.update(status="failed", error=row.pop("verdict"))
            if row["status"] == "ok" and target in HOST_TIMED_TARGETS:
                row["host_median_ms"] = _host_latency(Path(row["path"]), latency_runs, threads)
            row = {"variant": recipe.variant, **row}
            rows.append(row)
            if on_cell:
                on_cell(row)
    return {"out_dir": str(out), "cells": rows, "failed": sum(r["status"] != "ok" for r in rows)}


def _host_latency(artifact: Path, runs: int, threads: int) -> float:
    from .runners import open_runner
    from .runtimes.timing import profile_runner

    return profile_runner(lambda: open_runner(artifact, threads=threads), runs=runs, warmup=3)["median_ms"]


def format_build_table(summary: dict) -> str:
    head = f"{'variant':<14} {'target':<10} {'mode':<13} {'status':<7} {'MB':>6} {'conv s':>7} {'parity':>6} " \
           f"{'cos min':>9} {'max abs':>8} {'top-1':>6} {'host ms':>8}"
    lines = [head, "-" * len(head)]
    for r in summary["cells"]:
        mode = f"{r['precision']}/{r['quantize']}" if r["target"] == "coreml" else r["quantize"]
        mode += " (a16)" if r.get("activations") == "int16" else ""
        fmt = lambda v, f: (f.format(v) if isinstance(v, (int, float)) else "-")  # noqa: E731
        lines.append(f"{r['variant']:<14} {r['target']:<10} {mode:<13} {r['status']:<7} {fmt(r.get('size_mb'), '{:.1f}'):>6} "
                     f"{fmt(r.get('convert_s'), '{:.1f}'):>7} {r.get('parity', '-'):>6} "
                     f"{fmt(r.get('cosine_min'), '{:.6f}'):>9} {fmt(r.get('max_abs'), '{:.2e}'):>8} "
                     f"{fmt(r.get('top1_agreement'), '{:.0%}'):>6} "
                     f"{fmt(r.get('host_median_ms'), '{:.2f}'):>8}")
        if r["status"] != "ok":
            lines.append(f"    error: {r.get('error')}")
        elif r.get("float_fallback_ops"):
            lines.append(f"    kept in float: {', '.join(r['float_fallback_ops'])}")
    lines.append(f"{len(summary['cells'])} cells, {summary['failed']} failed")
    return "\n".join(lines)
