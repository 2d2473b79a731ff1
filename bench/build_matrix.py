"""The full recipe matrix on trained checkpoints -> docs/build-matrix.md.

    .venv/bin/python bench/train_reference.py --variants ...   # the trained checkpoints first
    .venv/bin/python bench/build_matrix.py [--variants v1,v2] [--target tflite] [--render-only | --latency | --wide V:CELL]

For each variant with a trained checkpoint in ``bench/.cache/train_reference/`` (photo-regions task, see
bench/train_reference.py): ``vitdeploy build --variant V --json`` (every recipe cell: TFLite
fp32/fp16/dynamic/int8, Core ML fp32/fp16 x none/w8; parity on the built-in natural images;
host latency at 2 threads), then Core ML fp16 w8a8 (``vitdeploy convert --quantize w8a8`` and
``vitdeploy parity``), which the recipes do not list as a default. Each command's JSON is kept
in ``bench/.cache/build_matrix/`` and the page is rendered from those files only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CKPTS = ROOT / "bench" / ".cache" / "train_reference"
CACHE = ROOT / "bench" / ".cache" / "build_matrix"
DOC = ROOT / "docs" / "build-matrix.md"
VARIANTS = ("levit_128s", "levit_128", "levit_192", "levit_256", "levit_384", "mobilevit_xxs", "mobilevit_xs",
            "mobilevit_s")
CLI = [sys.executable, "-m", "vitdeploy.cli"]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_table import render  # noqa: E402


def run_variant(variant: str, out: Path, target: str | None = None) -> None:
    """Build every cell of ``variant`` (or only ``target``'s cells, replacing those in the cached build)."""
    ckpt = CKPTS / f"{variant}_photos.safetensors"
    build = subprocess.run([*CLI, "build", "--checkpoints", str(CKPTS), "--variant", variant, "-o", str(out),
                            "--json", *(["--target", target] if target else [])], capture_output=True, text=True)
    cached = CACHE / f"build_{variant}.json"
    if target and cached.is_file() and cached.read_text().strip():
        if not build.stdout.strip():
            print(f"{variant}: build failed: {build.stderr.strip()[-300:]}")
            return
        new, old_build = json.loads(build.stdout), json.loads(cached.read_text())
        kept = [c for c in old_build["cells"] if c["target"] != target]
        cells = new["cells"] + kept if target == "tflite" else kept + new["cells"]  # TFLite rows first
        failed = sum(c.get("parity") == "FAIL" or c["status"] != "ok" for c in cells)  # not the stale count
        cached.write_text(json.dumps({**old_build, "cells": cells, "failed": failed}, indent=1))
        return
    cached.write_text(build.stdout)
    if target:
        return
    artifact = out / variant / f"{variant}_fp16_w8a8.mlpackage"
    started = time.perf_counter()
    conv = subprocess.run([*CLI, "convert", str(ckpt), "--target", "coreml", "--quantize", "w8a8", "-o", str(artifact),
                           "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    (CACHE / f"w8a8_{variant}.convert.json").write_text(conv.stdout)
    (CACHE / f"w8a8_{variant}.time").write_text(f"{seconds:.2f} s\n")
    parity = subprocess.run([*CLI, "parity", str(artifact), "--checkpoint", str(ckpt), "--json"],
                            capture_output=True, text=True)
    (CACHE / f"w8a8_{variant}.parity.json").write_text(parity.stdout)


def w8a8_cell(variant: str) -> dict | None:
    convert, parity = CACHE / f"w8a8_{variant}.convert.json", CACHE / f"w8a8_{variant}.parity.json"
    if not (convert.is_file() and parity.is_file()):
        return None
    cell = {"variant": variant, "target": "coreml", "precision": "fp16", "quantize": "w8a8"}
    try:
        conv, par = json.loads(convert.read_text()), json.loads(parity.read_text())
    except ValueError:
        return {**cell, "status": "failed", "error": "conversion or parity did not finish"}
    natural = par["metrics"]["natural"]
    seconds = conv.get("seconds")
    timing = CACHE / f"w8a8_{variant}.time"
    if timing.is_file():  # wall seconds of the whole command, as measured by the runner
        seconds = float(timing.read_text().split()[0])
    return {**cell, "status": "ok", "parity": "pass" if par["passed"] else "FAIL",
            "cosine_min": natural["cosine_min"], "max_abs": natural["max_abs"], "top1_agreement": natural["top1"],
            "size_mb": round(conv["size_bytes"] / 1e6, 2), "convert_s": seconds}


def wide_parity(variant: str, cell: str, n_images: int, out: Path) -> None:
    """``vitdeploy parity`` of one built cell on ``n_images`` built-in natural images (a near-tie on 16
    images moves top-1 agreement by 6 points; the goal is >= 99 %, which needs >= 100 images)."""
    artifact = next(iter(sorted((out / variant).glob(f"{variant}_{cell}.*"))), None)
    if artifact is None:
        sys.exit(f"no built cell {variant}_{cell}.* under {out / variant}; build the variant first")
    ckpt = CKPTS / f"{variant}_photos.safetensors"
    parity = subprocess.run([*CLI, "parity", str(artifact), "--checkpoint", str(ckpt), "--n-images", str(n_images),
                             "--n-random", "0", "--json"], capture_output=True, text=True)
    (CACHE / f"wide_{variant}_{cell}.json").write_text(parity.stdout)


def wide_lines() -> list[str]:
    rows = []
    for path in sorted(CACHE.glob("wide_*.json")):
        try:
            par = json.loads(path.read_text())
        except ValueError:
            continue
        nat, info = par["metrics"]["natural"], par["artifact_info"]
        rows.append(f"| {info['variant']} | {info['kind']} | {Path(info['path']).name} | {nat['n']} | "
                    f"{'pass' if par['passed'] else 'FAIL'} | {nat['cosine_min']:.6f} | {nat['max_abs']:.2e} | "
                    f"{100 * nat['top1']:.1f} % |")
    if not rows:
        return []
    return ["## Larger natural-image checks", "",
            "`bench/build_matrix.py --wide VARIANT:CELL --n-images N`: `vitdeploy parity` of a built cell on N "
            "built-in natural images, for cells whose top-1 agreement on 16 images hinges on one near-tie.", "",
            "| variant | target | artifact | images | parity | cosine min | max abs err | top-1 agreement |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


def quiet_latency(out: Path, threads: int = 2, rounds: int = 30) -> dict:
    """Interleaved host latency of each variant's TFLite cells (run on a quiet machine).

    Every round invokes fp32, fp16, dynamic and int8 once each, so load changes hit all modes
    alike; the int8 speed-up is the median of the per-round fp32/int8 ratios.
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    results = {}
    for vdir in sorted(p for p in out.iterdir() if p.is_dir()):
        interpreters = {}
        for mode in ("none", "fp16", "dynamic", "int8"):
            path = vdir / f"{vdir.name}_{mode}.tflite"
            if not path.is_file():
                continue
            it = Interpreter(model_path=str(path), num_threads=threads)
            it.allocate_tensors()
            d = it.get_input_details()[0]
            it.set_tensor(d["index"], np.random.default_rng(0).uniform(0, 255, d["shape"]).astype(d["dtype"]))
            for _ in range(3):
                it.invoke()
            interpreters[mode] = it
        times = {mode: [] for mode in interpreters}
        for _ in range(rounds):
            for mode, it in interpreters.items():
                started = time.perf_counter()
                it.invoke()
                times[mode].append((time.perf_counter() - started) * 1000)
        entry = {"median_ms": {m: round(float(np.median(t)), 3) for m, t in times.items()}, "threads": threads,
                 "rounds": rounds}
        if "int8" in times and "none" in times:
            entry["int8_speedup"] = round(float(np.median(np.array(times["none"]) / np.array(times["int8"]))), 3)
        results[vdir.name] = entry
        print(vdir.name, entry, flush=True)
    (CACHE / "latency.json").write_text(json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                    "load": round(__import__("os").getloadavg()[0], 2),
                                                    "variants": results}, indent=1))
    return results


def latency_lines() -> list[str]:
    path = CACHE / "latency.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    lines = [f"## Host latency, quiet and interleaved ({data['measured']}, load {data['load']})", "",
             "`bench/build_matrix.py --latency`: LiteRT XNNPACK, 2 threads, each round runs every mode once; "
             "medians of 30 rounds; int8 speed-up = median of per-round fp32/int8 ratios.", "",
             "| variant | fp32 ms | fp16 ms | dynamic ms | int8 ms | int8 speed-up over fp32 |", "|---|---|---|---|---|---|"]
    for v, e in data["variants"].items():
        m = e["median_ms"]
        lines.append(f"| {v} | {m.get('none', '–')} | {m.get('fp16', '–')} | {m.get('dynamic', '–')} | "
                     f"{m.get('int8', '–')} | {e.get('int8_speedup', '–')}x |")
    return lines + [""]


def page(variants) -> str:
    cells = []
    for v in variants:
        path = CACHE / f"build_{v}.json"
        if path.is_file() and path.read_text().strip():
            cells += json.loads(path.read_text())["cells"]
        extra = w8a8_cell(v)
        if extra:
            cells.append(extra)
    accuracy = {}
    results = CKPTS / "results.json"
    if results.is_file():
        for v, entry in json.loads(results.read_text()).get("models", {}).items():
            base = ({"top1": entry["float_top1"], "n": entry.get("heldout_images")} if "float_top1" in entry
                    else next((a for a in entry.get("accuracy", []) if a["model"].endswith(".safetensors")), None))
            accuracy[v] = (base, entry.get("training", {}))
    lines = ["# Recipe build matrix on trained checkpoints", "",
             "Generated by `bench/build_matrix.py` from `vitdeploy build --json` (plus Core ML w8a8 through "
             "`vitdeploy convert` and `vitdeploy parity`); nothing typed in by hand.", "",
             "Checkpoints: every variant trained here on the photo-regions task (22 photographs, held-out crops from "
             "regions never trained on; "
             "`bench/train_reference.py`): no pretrained weights can be downloaded, and random-weight stand-ins "
             "are no test of fp16/int8 (their pooled features barely differ between images, so the classifier "
             "amplifies rounding error 10-100x; see docs/troubleshooting.md). Parity is measured against the "
             "PyTorch checkpoint on the 16 built-in natural images, with each recipe's tolerances for the "
             "artifact's precision (`pass`/`FAIL`); int8/w8a8 cells are calibrated on the built-in natural images. "
             "Host latency: LiteRT XNNPACK, 2 threads, median of 20 runs, measured while other jobs ran on this "
             "2-core machine (indicative only; docs/benchmarks.md has the careful side-by-side figures).", "",
             "| variant | training | held-out top-1 (fp32 checkpoint) |", "|---|---|---|"]
    built = {c["variant"] for c in cells}
    for v in variants:
        base, training = accuracy.get(v, (None, {}))
        if base:
            size = training.get("train_size", "native")
            recal = ", BatchNorm statistics re-estimated at native size" if training.get("bn_recalibrated_at_native") \
                else ""
            lines.append(f"| {v} | {training.get('steps', '?')} AdamW steps, batch 32, {size} px{recal} | "
                         f"{100 * base['top1']:.1f} % ({base['n']} images) |")
        elif v in built:
            lines.append(f"| {v} | **not trained** (out of CPU time): seeded random stand-in "
                         "(`vitdeploy.synthetic`), so its fp16/int8 rows say nothing about the converter | – |")
    lines += ["", render(cells), ""]
    failed = [c for c in cells if c.get("parity") == "FAIL" or c["status"] != "ok"]
    lines += [f"{len(cells)} cells, {sum(c.get('parity') == 'pass' for c in cells)} pass parity, "
              f"{len(failed)} fail or did not build.", ""]
    lines += wide_lines()
    lines += latency_lines()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "build_matrix")
    parser.add_argument("--render-only", action="store_true")
    parser.add_argument("--latency", action="store_true",
                        help="only measure the built TFLite cells' host latency (quiet machine), then render")
    parser.add_argument("--target", choices=["tflite", "coreml"],
                        help="rebuild only this target's cells (the other cells stay as cached)")
    parser.add_argument("--wide", metavar="VARIANT:CELL",
                        help="only run parity of one built cell (e.g. mobilevit_xs:fp16_w8) on --n-images images")
    parser.add_argument("--n-images", type=int, default=200)
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    CACHE.mkdir(parents=True, exist_ok=True)
    if args.wide:
        variant, _, cell = args.wide.partition(":")
        wide_parity(variant, cell, args.n_images, args.out)
    elif args.latency:
        quiet_latency(args.out)
    elif not args.render_only:
        for v in variants:
            if not (CKPTS / f"{v}_photos.safetensors").is_file():
                print(f"{v}: no trained checkpoint; run bench/train_reference.py --variants {v} --train-only first")
                continue
            print(f"{v}: building", flush=True)
            run_variant(v, args.out, args.target)
    DOC.write_text(page(variants))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
