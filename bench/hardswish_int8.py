"""Hard-swish as int8 ops (pass ``hardswish_scale_forward``), before and after, on the trained LeViT-128S.

    .venv/bin/python bench/hardswish_int8.py [--rounds 100] [--threads 2] [--parity-images 32] [--checkpoint CKPT]

Converts the committed reference (``vitdeploy/references/levit_128s_photos.safetensors``; ``--checkpoint``:
another trained LeViT of the photo-regions task, e.g. ``bench/train_reference.py --recipe timm``'s) to TFLite fp32
and w8a8 twice, exactly as ``vitdeploy convert`` does: once with the pass taken out of every pipeline
("before"), once as shipped ("after"); calibration on the built-in natural images (the photo-regions
calibration crops need Debian's wallpaper packages). Then measures top-1 on ``references/heldout``, the
worst natural-image logits cosine of each w8a8 file against the checkpoint (``vitdeploy parity``), the
op census (all ops / float ops / QUANTIZE+DEQUANTIZE / ops XNNPACK leaves out) and the latency of the
four files interleaved (every round runs each once; speed-ups are medians of per-round ratios against
fp32 before). Prints one JSON document, also written to ``--out``/results.json beside the .tflite files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASS = "hardswish_scale_forward"


def convert_both(out: Path, with_pass: bool, ckpt: Path) -> dict:
    from vitdeploy import passes
    from vitdeploy.convert import convert

    saved = dict(passes.PIPELINES)
    if not with_pass:
        passes.PIPELINES.update({k: tuple(p for p in v if p != PASS) for k, v in saved.items()})
    tag = "after" if with_pass else "before"
    try:
        files, reports = {}, {}
        for mode in ("fp32", "w8a8"):
            t = time.perf_counter()
            report = convert(ckpt, "tflite", out=out / f"levit_{mode}_{tag}.tflite",
                             quantize=mode, force=True)
            files[f"{mode}_{tag}"] = Path(report["path"])
            reports[mode] = {"seconds": round(time.perf_counter() - t, 1), "rewrites": report["rewrites"]}
            if mode == "w8a8":
                q = report["quant_report"]
                reports[mode].update(search_cosine_min=q["cosine_min_after"], ranges=q["calibration"]["ranges"],
                                     float_ops=q["float_fallback_ops"],
                                     full_int8_not_delegated=q["xnnpack"].get("int8_not_delegated"))
    finally:
        passes.PIPELINES.clear()
        passes.PIPELINES.update(saved)
    return {"files": files, "reports": reports}


def census(path: Path) -> dict:
    from vitdeploy.quantization.tflite_graph import float_op_counts, op_types
    from vitdeploy.runtimes.tflite import delegation_census

    data = path.read_bytes()
    ops = op_types(data)
    return {"ops": sum(ops.values()), "float_ops": sum(float_op_counts(data).values()),
            "quantize_dequantize": ops.get("QUANTIZE", 0) + ops.get("DEQUANTIZE", 0),
            "hard_swish": ops.get("HARD_SWISH", 0), "not_delegated": delegation_census(data)["not_delegated"],
            "float_by_type": float_op_counts(data)}


def latency(files: dict, args) -> dict:
    """The four files interleaved; speed-ups (> 1: faster) are medians of per-round ratios."""
    import os

    from vitdeploy.runtimes.tflite import TFLiteRunner
    from vitdeploy.runtimes.timing import interleaved, median_ratio

    load = round(os.getloadavg()[0], 2)
    timing = interleaved({n: TFLiteRunner(p, threads=args.threads) for n, p in files.items()}, rounds=args.rounds,
                         keep_runs=True)
    ms = {name: timing[name]["runs_ms"] for name in files}
    return {"median_ms": {n: timing[n]["median_ms"] for n in files}, "threads": args.threads, "rounds": args.rounds,
            "w8a8_speedup": {t: median_ratio(ms[f"fp32_{t}"], ms[f"w8a8_{t}"]) for t in ("before", "after")},
            "w8a8_after_vs_fp32_before": median_ratio(ms["fp32_before"], ms["w8a8_after"]),
            "fp32_after_vs_before": median_ratio(ms["fp32_before"], ms["fp32_after"]),
            "w8a8_after_vs_before": median_ratio(ms["w8a8_before"], ms["w8a8_after"]),
            "load": [load, round(os.getloadavg()[0], 2)],
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parity-images", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "hardswish_int8")
    parser.add_argument("--latency-only", action="store_true", help="re-time the four files already in --out")
    parser.add_argument("--checkpoint", type=Path, help="a trained LeViT (default: the committed LeViT-128S)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.latency_only:
        files = {f"{m}_{t}": args.out / f"levit_{m}_{t}.tflite"
                 for t in ("before", "after") for m in ("fp32", "w8a8")}
        print(json.dumps(latency(files, args), indent=1))
        return

    from vitdeploy.parity import evaluate, run_parity
    from vitdeploy.references import checkpoint, heldout_dir

    ckpt = args.checkpoint or checkpoint("levit_128s")
    runs = {tag: convert_both(args.out, tag == "after", ckpt) for tag in ("before", "after")}
    files = {**runs["before"]["files"], **runs["after"]["files"]}
    res = evaluate([ckpt, *files.values()], heldout_dir(), threads=args.threads, batch_size=32)
    top1 = {Path(m.model).name: m.top1 for m in res.models}
    result = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "checkpoint": str(ckpt),
              "heldout_images": res.models[0].n,
              "top1_checkpoint": top1[ckpt.name]}
    for tag, run in runs.items():
        w8a8 = run["files"][f"w8a8_{tag}"]
        parity = run_parity(w8a8, ckpt, n_images=args.parity_images)
        result[tag] = {**run["reports"], "top1": {m: top1[p.name] for m, p in run["files"].items()},
                       "natural_cosine_min": parity.natural.get("cosine_min"), "census": census(w8a8)}
    result["latency"] = latency(files, args)
    text = json.dumps(result, indent=1, default=str)
    (args.out / "results.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
