"""Attention matmuls in int8: w8a8 with and without a symmetric right-hand BATCH_MATMUL input, one run.

    .venv/bin/python bench/int8_matmul.py [--variants levit_128s mobilevit_xxs] [--rounds 30] [--threads 2]
                                          [--latency-only]

For each committed trained reference this converts TFLite fp32 and w8a8 twice, exactly as
``vitdeploy convert CKPT --target tflite --quantize w8a8`` does (built-in natural images calibrate and
judge the search): ``before`` with ``SYMMETRIC_MATMUL_RHS = False`` (asymmetric right-hand input: XNNPACK
leaves BATCH_MATMUL to TFLite's kernels, so the search keeps it float), ``after`` with it on. Then:
top-1 on ``vitdeploy/references/heldout`` (checkpoint, fp32, before, after), the worst natural-image logits
cosine against the checkpoint (``vitdeploy parity``), the op census (float ops, QUANTIZE+DEQUANTIZE, ops
XNNPACK leaves out) and fp32/before/after latency interleaved (speed-up: median of per-round ratios).
Writes ``bench/.cache/int8_matmul.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / ".cache" / "int8_matmul"


def census(path: Path) -> dict:
    from vitdeploy.quantization.tflite_graph import float_op_counts, op_types
    from vitdeploy.runtimes.tflite import delegation_census

    data = path.read_bytes()
    ops = op_types(data)
    return {"ops": sum(ops.values()), "quantize_dequantize": ops.get("QUANTIZE", 0) + ops.get("DEQUANTIZE", 0),
            "float_ops": sum(float_op_counts(data).values()), "float_by_type": float_op_counts(data),
            "not_delegated": delegation_census(data)["not_delegated"]}


def run_variant(variant: str, args) -> dict:
    from vitdeploy import references
    from vitdeploy.convert import convert
    from vitdeploy.parity import evaluate, run_parity
    from vitdeploy.quantization import tflite as q
    ckpt = references.checkpoint(variant)
    out = OUT / variant
    out.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": out / f"{variant}_fp32.tflite"}
    convert(ckpt, "tflite", out=paths["fp32"], quantize="fp32", force=True)
    row: dict = {"variant": variant}
    for name, symmetric in (("before", False), ("after", True)):
        q.SYMMETRIC_MATMUL_RHS = symmetric
        result = convert(ckpt, "tflite", out=out / f"{variant}_w8a8_{name}.tflite", quantize="w8a8", force=True,
                         progress=lambda m: print(f"  [{name}] {m}", flush=True))
        paths[name], report = Path(result["path"]), result["quant_report"]  # ".below-target" when it missed
        row[name] = {"search_cosine_min": report["cosine_min_after"], "float_ops_kept": report["float_fallback_ops"],
                     "ranges": report["calibration"]["ranges"], "graph": report["calibration"]["graph"],
                     "census": census(paths[name]),
                     "natural_cosine_min": run_parity(paths[name], ckpt, n_images=args.parity_images
                                                      ).natural.get("cosine_min")}
    q.SYMMETRIC_MATMUL_RHS = False  # the default again
    res = evaluate([ckpt, *paths.values()], references.heldout_dir(), threads=args.threads, batch_size=32)
    row["top1"] = {Path(m.model).name: m.top1 for m in res.models}
    row["heldout_images"] = res.models[0].n
    row["paths"] = {n: str(p) for n, p in paths.items()}
    row.update(latency(paths, args))
    print(json.dumps({k: row[k] for k in ("variant", "top1", "median_ms", "speedup_vs_fp32")}), flush=True)
    return row


def latency(paths: dict, args) -> dict:
    """fp32, before and after side by side; the speed-up is the median of per-round ratios."""
    from vitdeploy.runtimes.timing import interleaved_tflite

    timing = interleaved_tflite(paths, threads=args.threads, rounds=args.rounds, baseline="fp32")
    return {"median_ms": {n: timing[n]["median_ms"] for n in paths}, "speedup_vs_fp32": timing["speedup"],
            "rounds": args.rounds, "threads": args.threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=["levit_128s", "mobilevit_xxs"])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parity-images", type=int, default=32)
    parser.add_argument("--latency-only", action="store_true", help="re-time the files of an earlier run")
    args = parser.parse_args()
    results = OUT.parent / "int8_matmul.json"
    rows = json.loads(results.read_text()) if results.is_file() else {}
    for v in args.variants:
        if args.latency_only:
            rows[v].update(latency({n: Path(p) for n, p in rows[v]["paths"].items()}, args))
            print(json.dumps({k: rows[v][k] for k in ("variant", "median_ms", "speedup_vs_fp32")}), flush=True)
        else:
            row = run_variant(v, args)
            rows = {**(json.loads(results.read_text()) if results.is_file() else {}), v: row}
        results.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
