"""ExecuTorch (.pte, XNNPACK) vs TFLite on trained references: parity, held-out top-1, convert time, latency.

    .venv/bin/python bench/executorch_table.py [--variants levit_128s mobilevit_xxs ...] [--threads 2]
                                               [--rounds 30] [--cache DIR] [--reuse] [--no-tflite]

For each variant's trained reference (``<cache>/train_reference/<variant>_photos.safetensors``, else
the committed ``vitdeploy/references/``) this converts, as a user would (default calibration), the
ExecuTorch fp32 and w8a8 .pte and the TFLite fp32 and w8a8 .tflite, then measures:

* logits cosine (worst and mean) and top-1 agreement against the PyTorch checkpoint on 32 built-in
  natural images (photographs the model never saw; what ``vitdeploy parity`` checks);
* top-1 of the checkpoint and of every artifact on the committed held-out crops of the photo-regions
  task (``vitdeploy/references/heldout``: 220 images, one image = 0.45 points);
* conversion seconds (each conversion in this process, one after the other);
* host latency at batch 1, ``--threads`` threads, the .pte and the .tflite of the same precision
  interleaved (every round runs each once, so machine load hits all alike; the ratio is the median of
  per-round ratios).

Writes ``bench/.cache/executorch/results.json`` and ``docs/executorch.md``. Run heavy things one at a time
on a shared machine (``nice``), and ``--reuse`` re-measures existing artifacts without converting.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OUT = ROOT / "bench" / ".cache" / "executorch"
DOC = ROOT / "docs" / "executorch.md"
KINDS = {"pte_fp32": ("executorch", "fp32", ".pte"), "pte_w8a8": ("executorch", "w8a8", ".pte"),
         "tflite_fp32": ("tflite", "fp32", ".tflite"), "tflite_w8a8": ("tflite", "w8a8", ".tflite")}


def checkpoint_for(variant: str, cache: Path) -> Path | None:
    for path in (cache / "train_reference" / f"{variant}_photos.safetensors",
                 ROOT / "vitdeploy" / "references" / f"{variant}_photos.safetensors"):
        if path.is_file():
            return path
    return None


def convert_all(variant: str, ckpt: Path, kinds: list[str], reuse: bool) -> dict:
    """kind -> {"path", "convert_s", "target_met", "report"}; w8a8 files below the target keep their aside name."""
    from vitdeploy.convert import convert

    out = OUT / variant
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for kind in kinds:
        target, precision, suffix = KINDS[kind]
        existing = sorted(out.glob(f"{variant}_{kind}*{suffix}"))
        if reuse and existing:
            made[kind] = {"path": existing[0], "convert_s": None, "target_met": ".below-target" not in existing[0].name}
            continue
        for old in existing:
            old.unlink()
        print(f"  converting {kind}", flush=True)
        t = time.perf_counter()
        report = convert(ckpt, target, out=out / f"{variant}_{kind}{suffix}", quantize=precision, force=True)
        made[kind] = {"path": Path(report["path"]), "convert_s": round(time.perf_counter() - t, 1),
                      "target_met": report.get("accuracy_target_met", True),
                      "report": {k: report.get("quant_report", {}).get(k) for k in
                                 ("cosine_min_after", "cosine_after", "float_modules", "float_fallback_ops", "weights",
                                  "search_seconds")}}
    return made


def natural_parity(ckpt: Path, paths: dict, threads: int, n: int = 32) -> dict:
    from vitdeploy import checkpoints
    from vitdeploy.runtimes.open import TorchRunner, open_runner
    from vitdeploy.sample_images import natural_images
    from vitdeploy.similarity import logits_agreement

    model = checkpoints.load(ckpt)
    x = model.preprocessing.normalize(natural_images(n, model.input_size[1], seed=7))
    ref = TorchRunner(model).predict_nchw(x)
    out = {}
    for kind, path in paths.items():
        out[kind] = logits_agreement(open_runner(path, threads=threads).predict_nchw(x), ref)
    return out


def heldout_top1(ckpt: Path, paths: dict, threads: int) -> dict:
    from vitdeploy import references
    from vitdeploy.parity import evaluate

    res = evaluate([ckpt, *paths.values()], references.heldout_dir(), threads=threads, batch_size=32)
    top1 = [m.top1 for m in res.models]
    return {"images": res.models[0].n, "checkpoint": round(top1[0], 4),
            **{kind: round(t, 4) for kind, t in zip(paths, top1[1:])}}


def interleaved(paths: dict, threads: int, rounds: int, warmup: int = 5) -> dict:
    """Median ms of each artifact, every round running each once; ``pte_over_tflite`` per precision."""
    from vitdeploy.runtimes.open import open_runner
    from vitdeploy.runtimes.timing import interleaved as measure, median_ratio

    runs = measure({kind: open_runner(path, threads=threads) for kind, path in paths.items()}, rounds=rounds,
                   warmup=warmup, keep_runs=True)
    out = {"median_ms": {k: r["median_ms"] for k, r in runs.items()},
           "min_ms": {k: r["min_ms"] for k, r in runs.items()}, "threads": threads, "rounds": rounds}
    for precision in ("fp32", "w8a8"):
        a, b = runs.get(f"pte_{precision}"), runs.get(f"tflite_{precision}")
        if a and b:
            out[f"pte_over_tflite_{precision}"] = median_ratio(a["runs_ms"], b["runs_ms"])
    return out


def run_variant(variant: str, ckpt: Path, args) -> dict:
    kinds = [k for k in KINDS if not (args.no_tflite and k.startswith("tflite"))]
    made = convert_all(variant, ckpt, kinds, args.reuse)
    paths = {kind: m["path"] for kind, m in made.items()}
    row = {"variant": variant, "checkpoint": str(ckpt), "convert_s": {k: m["convert_s"] for k, m in made.items()},
           "target_met": {k: m["target_met"] for k, m in made.items()},
           "int8_search": {k: m.get("report") for k, m in made.items() if k.endswith("w8a8")},
           "files_mb": {k: round(p.stat().st_size / 1e6, 1) for k, p in paths.items()}}
    print("  parity", flush=True)
    row["natural"] = natural_parity(ckpt, paths, args.threads)
    print("  held-out top-1", flush=True)
    row["heldout_top1"] = heldout_top1(ckpt, paths, args.threads)
    print("  latency", flush=True)
    row["latency"] = interleaved(paths, args.threads, args.rounds)
    row["load"] = round(os.getloadavg()[0], 2)
    print(json.dumps({k: row[k] for k in ("variant", "natural", "heldout_top1", "latency")}), flush=True)
    return row


def pte_census(variant: str, kind: str) -> dict | None:
    from vitdeploy.formats.executorch import read_pte_metadata

    found = sorted((OUT / variant).glob(f"{variant}_{kind}*.pte"))
    return read_pte_metadata(found[0])["census"] if found else None


def write_doc(results: dict) -> None:
    rows = list(results["rows"].values())
    lines = [
        "# ExecuTorch target: measured",
        "",
        "`vitdeploy convert CKPT --target executorch [--quantize fp32|w8a8]` writes a `.pte`: the BatchNorm-folded",
        "model, `torch.export`ed at batch 1 with the TFLite target's pixel input (NHWC RGB 0..255, preprocessing",
        "inside the graph as one 1x1 convolution; `--raw-input`: NCHW preprocessed), lowered with the XNNPACK",
        "partitioner. w8a8: PT2E with ExecuTorch's `XNNPACKQuantizer` (per-channel symmetric int8 weights,",
        "per-tensor int8 activations, histogram ranges), calibrated on the images of",
        "`quantization/calibration.py` (TFLite's policy), judged on the lowered `.pte` itself on the held-out",
        "images with TFLite's target (logits cosine vs float >= 0.99 on the worst image); a miss is written to",
        "`<stem>.below-target.pte`. When full int8 misses, one round tries keeping in float each transformer module",
        "class, the stem and the head, and per-tensor weights (judged in PyTorch on the converted module: lowering",
        "each candidate would cost ~35 s).",
        "",
        "Before partitioning, the model and its edge graph are rewritten into ops XNNPACK takes (same function):",
        "LayerNorm as two `linear(x, 1/C)` reductions + sub/mul/rsqrt/add (`passes/xnnpack.py`; float in w8a8),",
        "no-op `expand_copy` from 4-D matmuls dropped, q/k/v `split_with_sizes` as slices. Without them trained",
        "MobileViT-XXS fp32 ran as 32 XNNPACK calls split by 21 portable `native_layer_norm` and 9 `split` kernels",
        "(5.09 ms vs 3.77 ms after, interleaved), LeViT-128S fp32 as 35 calls split by 44 `expand_copy` (2.60 vs",
        "2.16 ms).",
        "",
        "Metadata (input spec and layout, preprocessing, labels, precision, delegate, source checksum, variant,",
        "vitdeploy version) lives inside the `.pte` as a constant method `vitdeploy_metadata` returning a JSON",
        "string (`formats/executorch.py`): one file, written atomically, no sidecar; an app reads it with",
        "`module.execute(\"vitdeploy_metadata\")`. `vitdeploy package` and the device harnesses read the same",
        "file (`read_pte_metadata` for labels and preprocessing, `read_program` for I/O and delegates): nothing",
        "travels beside the `.pte`.",
        "",
        f"Measured {results.get('measured', '?')} by `bench/executorch_table.py` on this host "
        f"({results.get('host', '?')}; load average at the end of each row in the JSON), executorch "
        f"{results.get('executorch', '?')}, batch 1, {rows[0]['latency']['threads'] if rows else '?'} threads.",
        "",
        "| variant | artifact | cosine min / mean vs PyTorch (32 natural images) | top-1 agree | held-out top-1 "
        "(checkpoint) | convert s | median ms | .pte / .tflite time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for kind in r["natural"]:
            nat = r["natural"][kind]
            precision = kind.split("_")[1]
            ratio = r["latency"].get(f"pte_over_tflite_{precision}") if kind.startswith("pte") else None
            met = "" if r["target_met"].get(kind, True) else " (below target)"
            lines.append(
                f"| {r['variant']} | {kind.replace('_', ' ')}{met} | {nat['cosine_min']:.6f} / {nat['cosine_mean']:.6f} | "
                f"{100 * nat['top1_agreement']:.1f} % | {100 * r['heldout_top1'][kind]:.2f} % "
                f"({100 * r['heldout_top1']['checkpoint']:.2f} %) | {r['convert_s'][kind] if r['convert_s'][kind] is not None else '-'} | "
                f"{r['latency']['median_ms'][kind]:.2f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "What each .pte runs (`vitdeploy inspect`): XNNPACK delegate calls, and the kernels left to ExecuTorch's "
              "portable ops between them (each one splits the delegated graph):", ""]
    for r in rows:
        for kind in r["natural"]:
            if kind.startswith("pte"):
                census = pte_census(r["variant"], kind)
                if census:
                    kernels = ", ".join(f"{k.split('::')[-1]} {v}" for k, v in census["kernels"].items()) or "none"
                    lines.append(f"- {r['variant']} {kind.replace('_', ' ')}: {sum(census['delegate_calls'].values())} "
                                 f"XNNPACK calls; portable kernels: {kernels}")
    lines += ["", "w8a8 search (what the converter tried and kept):", ""]
    for r in rows:
        for kind, rep in r["int8_search"].items():
            if rep:
                lines.append(f"- {r['variant']} {kind.replace('_', ' ')}: " + ", ".join(
                    f"{k} {v}" for k, v in rep.items() if v not in (None, [], {})))
    lines += ["", "Pixel input in int8: the in-graph preprocessing conv stays float (it used to be an extra int8 "
              "activation in front of the stem) and, where exact (no mean shift: MobileViT), is folded into the "
              "stem's first conv (`passes/pixel_input.py`). Measured by hand on the committed references (worst "
              "held-out cosine of the w8a8 .pte, before -> after): LeViT-128S 0.9964 -> 0.9995 (= --raw-input), "
              "MobileViT-XXS 0.9856 -> 0.9888 (still < 0.99: the error is spread over the network, as TFLite's "
              "search found); latency unchanged. LeViT's 4 strided `slice_copy` (Subsample, step 2) and the final "
              "`mean` remain portable kernels.", ""]
    lines += ["", "Held-out: `vitdeploy/references/heldout` (220 crops of the photo-regions task, regions never "
              "trained on; one image = 0.45 points). Latency ratios are medians of per-round ratios of interleaved "
              "runs; absolute ms on this shared 2-core host move with load, ratios less so.", ""]
    DOC.write_text("\n".join(lines))
    write_benchmarks_section(results)


BENCHMARKS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- executorch_table:begin -->", "<!-- executorch_table:end -->"


def summary_lines(results: dict) -> list[str]:
    """One row per variant: .pte vs .tflite at fp32 and w8a8, same weights, latency interleaved."""
    lines = ["| variant | fp32 .pte cosine min / top-1 agree | fp32 ms .pte / .tflite (ratio) | w8a8 .pte worst cosine "
             "| held-out top-1 ckpt / .pte w8a8 / .tflite w8a8 | w8a8 ms .pte / .tflite (ratio) |",
             "|---|---|---|---|---|---|"]
    for r in results["rows"].values():
        nat, top1, lat = r["natural"], r["heldout_top1"], r["latency"]
        ms = lat["median_ms"]
        miss = "" if r["target_met"].get("pte_w8a8", True) else " (below target)"
        lines.append(
            f"| {r['variant']} | {nat['pte_fp32']['cosine_min']:.6f} / {100 * nat['pte_fp32']['top1_agreement']:.0f} % | "
            f"{ms['pte_fp32']:.2f} / {ms['tflite_fp32']:.2f} ({lat.get('pte_over_tflite_fp32', float('nan')):.2f}) | "
            f"{(r['int8_search'].get('pte_w8a8') or {}).get('cosine_min_after', float('nan')):.4f}{miss} | "
            f"{100 * top1['checkpoint']:.1f} / {100 * top1['pte_w8a8']:.1f} / {100 * top1['tflite_w8a8']:.1f} % | "
            f"{ms['pte_w8a8']:.2f} / {ms['tflite_w8a8']:.2f} ({lat.get('pte_over_tflite_w8a8', float('nan')):.2f}) |")
    return lines


def write_benchmarks_section(results: dict) -> None:
    """The summary table inside docs/benchmarks.md, between the markers (the rest of that page is other scripts')."""
    text = BENCHMARKS.read_text()
    if BEGIN not in text or END not in text:
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = [f"Measured {results.get('measured', '?')} by `bench/executorch_table.py --variants ...` (2 threads, "
            "batch 1, every round runs each artifact once; ratio = median of per-round .pte ms / .tflite ms). "
            "Cosines vs the checkpoint on 32 natural images; w8a8 worst cosine = the converter's own held-out "
            "judgement; held-out top-1 on `vitdeploy/references/heldout` (220 crops). Details: "
            "[executorch.md](executorch.md).", "", *summary_lines(results)]
    BENCHMARKS.write_text(head + BEGIN + "\n" + "\n".join(body) + "\n" + END + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["levit_128s", "mobilevit_xxs"])
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / ".cache",
                        help="the folder holding train_reference/<variant>_photos.safetensors")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--reuse", action="store_true", help="measure existing artifacts, convert only missing ones")
    parser.add_argument("--no-tflite", action="store_true", help="ExecuTorch only (no TFLite comparison)")
    parser.add_argument("--doc-only", action="store_true", help="rewrite docs/executorch.md from results.json")
    args = parser.parse_args()
    from importlib.metadata import version

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    if args.doc_only:
        write_doc(results)
        return
    for variant in args.variants:
        ckpt = checkpoint_for(variant, args.cache)
        if ckpt is None:
            print(f"{variant}: no trained reference under {args.cache}/train_reference", flush=True)
            continue
        print(f"== {variant} ({ckpt})", flush=True)
        row = run_variant(variant, ckpt, args)
        results = json.loads(path.read_text()) if path.is_file() else results
        _keep_conversion_facts(row, results["rows"].get(variant))
        results["rows"][variant] = row
        results.update(measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), executorch=version("executorch"),
                       host=f"{os.cpu_count()} cores")
        path.write_text(json.dumps(results, indent=1, default=str))
        write_doc(results)
    print(f"results: {path}\n{DOC}")


def _keep_conversion_facts(row: dict, previous: dict | None) -> None:
    """A reused artifact (--reuse) keeps the conversion seconds and int8 search its conversion recorded."""
    for key in ("convert_s", "int8_search"):
        for kind, value in ((previous or {}).get(key) or {}).items():
            if row[key].get(kind) in (None, {}, []) and value not in (None, {}, []):
                row[key][kind] = value


if __name__ == "__main__":
    main()
