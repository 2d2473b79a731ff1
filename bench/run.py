"""``make bench``: run every benchmark suite side by side and write docs/benchmarks.md.

    .venv/bin/python bench/run.py             # full run: every variant (~25 min on 2 cores)
    .venv/bin/python bench/run.py --quick     # smoke check: levit_128s, few runs (~3 min with a warm cache)
    .venv/bin/python bench/run.py --fresh     # re-measure every conversion (ignore bench/.cache)

Suites: conversion (bench/conversion.py), peak GFLOP/s (bench/peak.py), host latency
(bench/host_latency.py), where the time goes (GEMM skeletons, bench/peak.py), Core ML graph
quality (bench/coreml_graph.py), start-up (bench/startup.py), accuracy (read from
bench/.cache/reference_accuracy.json when the reference-accuracy job has written it).
Raw results: bench/.cache/results.json. The report is rewritten after every suite, so an
interrupted run still leaves what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
CACHE = HERE / ".cache"
DOC = ROOT / "docs" / "benchmarks.md"
PYC = ".venv/bin/python"

ALL_VARIANTS = ("levit_128s", "levit_128", "levit_192", "levit_256", "levit_384",
                "mobilevit_xxs", "mobilevit_xs", "mobilevit_s")
SKELETON_VARIANTS = ("levit_128s", "mobilevit_s")


def log(msg: str, **_kw) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- suites


def suite_flops(variants) -> dict:
    from host_latency import model_flops

    return {v: model_flops(v) for v in variants}


def suite_skeleton(variant: str, conversions: list[dict], threads, rounds: int, block: int) -> dict:
    """Model vs its GEMM/conv skeleton, interleaved, in LiteRT/XNNPACK."""
    import torch

    from conversion import input_shape, load_vitdeploy
    from host_latency import _tflite_engine, artifacts_for, interleaved, paired_ratio
    from peak import CACHE as PEAK_CACHE
    from peak import Interp, _versions_key, convert_float, quantize_int8, skeleton_module

    model = load_vitdeploy(variant)
    module, shape, flops, n_layers = skeleton_module(model, torch.zeros(*input_shape(variant)))
    path = PEAK_CACHE / f"skeleton-{variant}-{_versions_key()}.tflite"
    fbytes = convert_float(module, [shape], path)
    qbytes = quantize_int8(fbytes, [shape], path.with_name(path.stem + "-int8.tflite"))
    arts = artifacts_for(variant, conversions)
    engines = {}
    names = ("vitdeploy tflite fp32", "vitdeploy tflite int8", "direct tflite fp32")
    for t in threads:
        engines[("skeleton fp32", t)] = Interp(fbytes, t)
        if qbytes:
            engines[("skeleton int8", t)] = Interp(qbytes, t)
        for name in names:
            if arts.get(name):
                engines[(name, t)] = _tflite_engine(arts[name], t, not name.startswith("direct"), variant)
    stats = interleaved(engines, rounds=rounds, block=block)
    out = {"variant": variant, "layers": n_layers, "skeleton_flops": flops, "by_threads": {}}
    for t in threads:
        s = stats[("skeleton fp32", t)]["median_ms"]
        row = {"skeleton_ms": s, "skeleton_gflops": round(flops / s / 1e6, 1)}
        if ("skeleton int8", t) in stats:
            row["skeleton_int8_ms"] = stats[("skeleton int8", t)]["median_ms"]
            row["skeleton_int8_speedup"] = paired_ratio(stats, ("skeleton fp32", t), ("skeleton int8", t))
        for name in names:
            if (name, t) in stats:
                row[name] = stats[(name, t)]["median_ms"]
                ref = "skeleton int8" if "int8" in name and ("skeleton int8", t) in stats else "skeleton fp32"
                row[name + " / skeleton"] = paired_ratio(stats, (name, t), (ref, t))
                row[name + " speed-up over fp32"] = paired_ratio(stats, ("vitdeploy tflite fp32", t), (name, t))
        out["by_threads"][str(t)] = row
    return out


def tflite_op_census(path) -> dict:
    """Op types of a .tflite, which of them XNNPACK did *not* take, and the number of XNNPACK partitions."""
    from vitdeploy.runtimes.tflite import delegation_census

    return delegation_census(path)


def suite_accuracy() -> dict | None:
    p = CACHE / "reference_accuracy.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        return {"error": f"unreadable: {e}"}


# ----------------------------------------------------------------------------- report


def _fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16") if f" {f}" in flags]
    except (OSError, StopIteration):
        isa = []
    return f"{cpu}, {os.cpu_count()} cores ({', '.join(isa)}), {platform.system()} {platform.machine()}"


def _versions() -> str:
    from importlib.metadata import version

    out = []
    for pkg in ("torch", "transformers", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "coremltools",
                "onnxruntime", "onnx", "onnxscript"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except Exception:  # noqa: BLE001
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def render(R: dict) -> str:  # noqa: C901 - one linear report
    quick = R["quick"]
    cmd_run = f"{PYC} bench/run.py" + (" --quick" if quick else "")
    L = ["# Benchmarks", ""]
    L += [f"Generated by `{cmd_run}` (`make bench` runs the full set) on {R['started']} – {R.get('finished', 'running')}"
          + (f"; suites re-run with `--merge`: {'; '.join(R['reruns'])}" if R.get("reruns") else "") + ".",
          f"Machine: {R['machine']}; load average at start {R['load_start']}, at end {R.get('load_end', '–')} "
          "(a shared machine: figures are medians of interleaved runs, compare ratios rather than absolute times).",
          f"Software: {R['versions']}.", ""]
    if quick:
        L += ["> **Quick run** (`--quick`): one variant, few runs — a smoke check, not the reference figures.", ""]
    L += ["How to read it:", "",
          "* Every latency figure is a median of interleaved rounds: within a variant, all engines and both thread "
          "counts take turns, so a busy phase of the shared machine hits them alike; ratios are paired per round.",
          "* *The limit* is measured, not computed from clocks: the best GFLOP/s that LiteRT/XNNPACK reaches on "
          "large GEMM/conv graphs on this CPU, per thread count and precision.",
          "* Per-op attribution: ai-edge-litert's Python interpreter has no op profiler and no pip package ships "
          "TFLite's `benchmark_model` (ai-edge-litert 2.3 has `tools/benchmark_litert_model.py`, whole-model "
          "timing only). So time is attributed by (a) which ops XNNPACK takes (delegate census) and (b) timing "
          "sub-graphs: each model's Linear/Conv *skeleton*.",
          ""]
    L += ["Models: the same weights for every path — HF transformers' own LeViT/MobileViT classes with seeded "
          "random weights (BatchNorm statistics randomised, no denormal activations), saved once with "
          "`save_pretrained`; vitdeploy converts that directory (`vitdeploy convert`), the *direct path* loads it "
          "with `AutoModelForImageClassification.from_pretrained` and hands it (wrapped to return `.logits`) to "
          "`litert_torch.convert` / `torch.export`+`ct.convert` / `torch.onnx.export`. No trained weights exist "
          "here; latency does not depend on weight values. vitdeploy's .tflite takes RGB pixels (NHWC, "
          "preprocessing inside the graph); the direct one takes a preprocessed NCHW tensor.", ""]

    # goals -------------------------------------------------------------------------------
    G = R.get("goals")
    if G:
        L += ["## Goals", "", "| goal | result | detail | why (when missed; from this run's measurements) |",
              "|---|---|---|---|"]
        for g in G:
            L.append(f"| {g['goal']} | **{g['status']}** | {g['detail']} | {g.get('why') or ''} |")
        L += [""]

    # findings ----------------------------------------------------------------------------
    if R.get("findings"):
        L += ["## Findings", ""] + [f"* {f}" for f in R["findings"]] + [""]

    # peak --------------------------------------------------------------------------------
    P = R.get("peak")
    if P:
        L += ["## The limit: peak GFLOP/s of LiteRT/XNNPACK on this CPU", "",
              f"Reproduce: `{PYC} bench/peak.py`. Graphs converted with litert-torch; int8 = ai-edge-quantizer "
              "`static_wi8_ai8` (per-channel int8 weights, int8 activations: XNNPACK QS8/QC8 kernels, AVX-512 "
              "VNNI). FLOPs = 2 x MACs (int8: integer ops, same count).", "",
              "| graph | precision | threads | median ms | GFLOP/s |", "|---|---|---|---|---|"]
        for r in P["rows"]:
            L.append(f"| {r['graph']} | {r['dtype']} | {r['threads']} | {_fmt(r['median_ms'], 2)} | {_fmt(r['gflops'])} |")
        L += ["", "Peak used below (best graph): " + ", ".join(f"{k.replace('@', ' @ ')} threads: **{v:.0f} GFLOP/s**"
                                                          for k, v in sorted(P["peak"].items())), ""]

    # latency -----------------------------------------------------------------------------
    LAT = R.get("latency")
    if LAT:
        peak = (P or {}).get("peak", {})
        L += ["## Host latency (batch 1)", "",
              f"Reproduce one variant: `{PYC} bench/host_latency.py <variant> --threads 1,2`. "
              "LiteRT = `ai_edge_litert.interpreter.Interpreter(num_threads=t)` (XNNPACK delegate); "
              "ONNX Runtime CPU provider (`intra_op_num_threads=t`); PyTorch eager with `torch.set_num_threads(t)`. "
              "Median of all timed calls; *vs fp32* = median over interleaved rounds of (engine / vitdeploy fp32), "
              ">1 means slower than vitdeploy's fp32 .tflite. GFLOP/s = model FLOPs / median time; "
              "*% peak* = that / the fp32 (int8) peak at the same thread count.", ""]
        # write_latency_plot puts it beside the page whenever there are latency results
        L += [f"![latency of each engine relative to vitdeploy's fp32 .tflite]({LATENCY_PLOT})", ""]
        L += ["| variant | GFLOP | engine | threads | median ms | min ms | p90 ms | vs fp32 | GFLOP/s | % peak |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for v, res in LAT.items():
            fl = R["flops"].get(v)
            for r in sorted(res["rows"], key=lambda r: (r["threads"], _engine_order(r["engine"]))):
                gf = fl / (r["median_ms"] / 1000) / 1e9 if fl else None
                pk = peak.get(("int8" if "int8" in r["engine"] else "fp32") + f"@{r['threads']}")
                pct = 100 * gf / pk if gf and pk else None
                L.append(f"| {v} | {_fmt(fl / 1e9 if fl else None, 2)} | {r['engine']} | {r['threads']} | "
                         f"{_fmt(r['median_ms'], 2)} | {_fmt(r.get('min_ms'), 2)} | {_fmt(r['p90_ms'], 2)} | "
                         f"{_fmt(r['vs_vitdeploy_fp32'], 2)} | "
                         f"{_fmt(gf)} | {_fmt(pct, 0)} |")
            if res.get("skipped"):
                L.append(f"| {v} | | skipped: " + "; ".join(f"{k}: {e}" for k, e in res["skipped"].items())
                         + " | | | | | | | |")
        L += ["", "Summary ratios (paired, per variant):", "",
              "| variant | threads | direct / vitdeploy fp32 (>=1: vitdeploy not slower) | int8 speed-up over fp32 | "
              "fp32 % of peak |", "|---|---|---|---|---|"]
        for v, res in LAT.items():
            for t in sorted(res["int8_speedup"], key=int):
                L.append(f"| {v} | {t} | {_fmt(res['direct_over_vitdeploy'].get(t), 2)} | "
                         f"{_fmt(res['int8_speedup'].get(t), 2)} | {_fmt(_pct_peak(R, v, t), 0)} |")
        L += [""]
        if R.get("tflite_ops"):
            L += ["TFLite op census: ops, XNNPACK partitions, and the ops XNNPACK did not take (they run on "
                  "TFLite's built-in kernels between partitions; found by walking each `DELEGATE` node's subgraph, "
                  "`bench/run.py: tflite_op_census`):", "",
                  "| variant | file | ops | XNNPACK partitions | not delegated | op types |", "|---|---|---|---|---|---|"]
            for v, ops in R["tflite_ops"].items():
                fb = ops.get("int8_float_fallback")
                for key, label in (("vitdeploy", "vitdeploy fp32"), ("direct", "direct fp32"),
                                   ("int8", f"vitdeploy int8 (kept float: {', '.join(fb) if fb else 'none'})")):
                    c = ops.get(key)
                    if c:
                        L.append(f"| {v} | {label} | {sum(c['ops'].values())} | {c['partitions']} | "
                                 f"{_ops_str(c['not_delegated']) if c['not_delegated'] else 'none'} | "
                                 f"{_ops_str(c['ops'])} |")
            L += [""]

    # skeleton ----------------------------------------------------------------------------
    SK = R.get("skeleton")
    if SK:
        L += ["## Where the time goes: GEMM/conv skeleton", "",
              "Each model's `nn.Linear`/`nn.Conv2d` layers alone, each on an input of the shape it sees in the "
              "real forward pass, converted with litert-torch and timed interleaved with the full models "
              f"(`{PYC} bench/run.py` suite `skeleton`; builder `bench/peak.py: skeleton_module`). The skeleton "
              "time is what the model's GEMM/conv work costs at its own shapes; full model minus skeleton is "
              "everything else (attention matmuls/softmax, norms, activations, reshapes/transposes).", "",
              "| variant | threads | layers | skeleton GFLOP | skeleton ms | skeleton GFLOP/s | vitdeploy fp32 ms "
              "| direct fp32 ms | skeleton share of vitdeploy fp32 | skeleton int8 ms (speed-up) | vitdeploy int8 ms "
              "| skeleton share of vitdeploy int8 |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for v, s in SK.items():
            if "error" in s:
                L.append(f"| {v} | – | error: {s['error']} | | | | | | | |")
                continue
            for t, row in s["by_threads"].items():
                share = lambda k: _pct(1 / row[k]) if row.get(k) else "–"  # noqa: E731
                L.append(f"| {v} | {t} | {s['layers']} | {_fmt(s['skeleton_flops'] / 1e9, 2)} | "
                         f"{_fmt(row['skeleton_ms'], 2)} | {_fmt(row['skeleton_gflops'])} | "
                         f"{_fmt(row.get('vitdeploy tflite fp32'), 2)} | {_fmt(row.get('direct tflite fp32'), 2)} | "
                         f"{share('vitdeploy tflite fp32 / skeleton')} | {_fmt(row.get('skeleton_int8_ms'), 2)} "
                         f"({_fmt(row.get('skeleton_int8_speedup'), 2)}x) | {_fmt(row.get('vitdeploy tflite int8'), 2)} | "
                         f"{share('vitdeploy tflite int8 / skeleton')} |")
        L += [""]

    # conversion --------------------------------------------------------------------------
    C = R.get("conversions")
    if C:
        L += ["## Conversion", "",
              f"Reproduce: `{PYC} bench/conversion.py <variant> --fresh`. One child process per conversion; "
              "*s* = wall seconds of the conversion call (checkpoint load included, interpreter start-up and "
              "imports excluded), *cpu s* = CPU seconds of the same span (less affected by a busy machine), "
              "*peak MB* = the process's peak RSS (`getrusage(RUSAGE_SELF).ru_maxrss`), *+MB* = peak minus RSS "
              "before converting (torch and the converter already imported). vitdeploy int8 includes the "
              "calibration and the accuracy-driven float-fallback search. Rows from the cache say when they were "
              "measured.", "",
              "| variant | path | target | mode | s | cpu s | peak MB | +MB | artifact MB | measured |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in C:
            if not r.get("ok"):
                L.append(f"| {r['variant']} | {r['path']} | {r['target']} | {r['mode']} | failed: "
                         f"{str(r.get('error'))[:160]} | | | | | |")
                continue
            L.append(f"| {r['variant']} | {r['path']} | {r['target']} | {r['mode']} | {_fmt(r['seconds'])} | "
                     f"{_fmt(r.get('cpu_s'))} | {_fmt(r['peak_rss_mb'], 0)} | {_fmt(r.get('converter_peak_mb'), 0)} | "
                     f"{_fmt(r['size_mb'], 2)} | {r.get('measured_at', '')}{' (cached)' if r.get('cached') else ''} "
                     f"load {r.get('load_avg_1min', '–')} |")
        L += [""]

    # core ml -----------------------------------------------------------------------------
    CM = R.get("coreml")
    if CM:
        L += ["## Core ML graph quality", "",
              f"Reproduce: `{PYC} bench/coreml_graph.py <variant>`. fp16 ML Program, iOS16, op counts without "
              "consts, read back from the saved .mlpackage. *direct* = HF model -> `torch.export` -> "
              "`ct.convert(convert_to=\"mlprogram\")`; *vitdeploy* = `vitdeploy convert --target coreml` "
              "(`vitdeploy.targets.coreml.convert_coreml`).", "",
              "Neural Engine rules applied per op (a static check; no Apple device here): (1) op type on an "
              "allow-list of ANE-supported MIL ops (conv/linear/matmul, elementwise, activations, softmax, norms, "
              "pooling, reductions, reshape/transpose/concat/split/slice; `gather*`, `scatter*`, control flow are "
              "not); (2) every non-const tensor rank <= 4 (Core ML allows 5, the ANE works on 4-D tiles); "
              "(3) every dimension <= 16384; (4) fp16 compute (a boundary `cast` and the ImageType scale/bias "
              "ops are exempt; int32/bool shape math runs on CPU). See `bench/coreml_graph.py`.", "",
              "| variant | path | ops | fewer ops than direct | batch_norm | gather | max rank | ANE-ok ops | "
              "rule violations | LeViT goal |", "|---|---|---|---|---|---|---|---|---|---|"]
        for v, c in CM.items():
            for name in ("direct", "vitdeploy"):
                a = c.get(name, {})
                if "error" in a:
                    L.append(f"| {v} | {name} | error: {str(a['error'])[:160]} | | | | | | | |")
                    continue
                red = f"{100 * c['op_reduction']:.0f} %" if name == "vitdeploy" and "op_reduction" in c else ""
                goal = ("" if name != "vitdeploy" or "goal_met" not in c else ("met" if c["goal_met"] else "MISSED"))
                viol = ", ".join(f"{k} {n}" for k, n in a["ane_violations_by_op"].items()) or "none"
                L.append(f"| {v} | {name} | {a['total_ops']} | {red} | {a['batch_norm']} | {a['gather']} | "
                         f"{a['max_rank']} | {a['ane_ok_ops']}/{a['total_ops']} | {viol} | {goal} |")
        L += ["", "Op counts by type:", "", "| variant | path | ops by type |", "|---|---|---|"]
        for v, c in CM.items():
            for name in ("direct", "vitdeploy"):
                if "op_counts" in c.get(name, {}):
                    L.append(f"| {v} | {name} | {_ops_str(c[name]['op_counts'])} |")
        L += [""]

    # startup -----------------------------------------------------------------------------
    S = R.get("startup")
    if S:
        L += ["## Start-up", "", f"Reproduce: `{PYC} bench/startup.py` ({S['tool']}).", "",
              "| what | command | median ms | mean ms | min ms | runs |", "|---|---|---|---|---|---|"]
        for r in S["rows"]:
            L.append(f"| {r['what']} | `{r['command'].replace(str(ROOT) + '/', '')}` | {_fmt(r['median_ms'])} | "
                     f"{_fmt(r['mean_ms'])} | {_fmt(r['min_ms'])} | {r['runs']} |")
        heavy = S.get("heavy_modules_after_cli_import")
        L += ["", f"Heavy modules loaded by `import vitdeploy.cli`: {', '.join(heavy) if heavy else 'none'}.", ""]

    # accuracy ----------------------------------------------------------------------------
    L += ["## Accuracy (trained reference models)", ""]
    A = R.get("accuracy")
    if A is None:
        L += ["The accuracy of every precision on trained references (float top-1, w8a8 top-1 drop, worst-image "
              "cosine, int8 vs fp32 latency, conversion seconds, techniques kept) is in "
              "[int8-goals.md](int8-goals.md), written by `bench/int8_goals.py` from the references "
              "`bench/train_reference.py` trains.", ""]
    else:
        L += _accuracy_lines(A)
    L += ["## Dependencies", "",
          "The latency comparison needs `onnxruntime`, `onnx` and `onnxscript` (for `torch.onnx.export(dynamo=True)`) "
          "in the venv: `.venv/bin/pip install onnxruntime onnx onnxscript` (they install cleanly beside torch "
          "2.13 CPU and do not change it); start-up timing uses `hyperfine` when present "
          "(`apt-get install -y hyperfine`). Caches: `bench/.cache/` (gitignored).", ""]
    return "\n".join(L)


def _accuracy_lines(A) -> list[str]:
    rows = A if isinstance(A, list) else A.get("rows") if isinstance(A, dict) else None
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        keys = list(rows[0].keys())
        out = ["Reproduce: `.venv/bin/python bench/train_reference.py --coreml` (trains on scikit-learn's digits, "
               "converts every mode, evaluates the held-out split with `vitdeploy eval`). Top-1 on held-out digits.", "",
               "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        out += ["| " + " | ".join(_fmt(r.get(k), 2) for k in keys) + " |" for r in rows]
        return out + [""]
    return ["```json", json.dumps(A, indent=1)[:4000], "```", ""]


def _pct(x) -> str:
    return f"{100 * x:.0f} %"


def _ops_str(ops) -> str:
    if not ops:
        return "–"
    return ", ".join(f"{k} {n}" for k, n in sorted(ops.items(), key=lambda kv: -kv[1]))


def _engine_order(name: str) -> int:
    order = ["vitdeploy tflite fp32", "vitdeploy tflite int8", "direct tflite fp32", "onnxruntime (HF export)",
             "pytorch eager (HF)", "pytorch eager (vitdeploy)"]
    return order.index(name) if name in order else 99


def _pct_peak(R, v, t):
    res, fl = R["latency"][v], R["flops"].get(v)
    pk = (R.get("peak") or {}).get("peak", {}).get(f"fp32@{t}")
    row = next((r for r in res["rows"] if r["engine"] == "vitdeploy tflite fp32" and r["threads"] == int(t)), None)
    if not (row and fl and pk):
        return None
    return 100 * fl / (row["median_ms"] / 1000) / 1e9 / pk


LATENCY_PLOT = "benchmarks-latency.svg"  # written beside docs/benchmarks.md


def write_latency_plot(R: dict, path: Path) -> Path | None:
    """Grouped bars: each engine's median latency / vitdeploy fp32's, per variant, 1 and 2 threads."""
    LAT = R.get("latency") or {}
    if not LAT:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "vitdeploy"  # stable element ids: re-renders of the same data diff cleanly
    engines = ["vitdeploy tflite int8", "direct tflite fp32", "onnxruntime (HF export)", "pytorch eager (HF)"]
    variants = list(LAT)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, threads in zip(axes, (1, 2)):
        width = 0.8 / len(engines)
        for i, engine in enumerate(engines):
            ratios = [next((r["vs_vitdeploy_fp32"] for r in LAT[v]["rows"] if r["engine"] == engine
                            and r["threads"] == threads and r["vs_vitdeploy_fp32"]), float("nan")) for v in variants]
            ax.bar([k + (i - (len(engines) - 1) / 2) * width for k in range(len(variants))], ratios, width, label=engine)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(variants)), [v.replace("mobilevit", "mvit") for v in variants], rotation=30)
        ax.set_title(f"{threads} thread(s)")
        ax.set_yscale("log")
    axes[0].set_ylabel("latency / vitdeploy fp32 .tflite (log; < 1 = faster)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=len(engines), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, format="svg", metadata={"Date": None})  # no timestamp: re-renders diff cleanly
    plt.close(fig)
    return path


def _why_direct(R: dict) -> str:
    """Why vitdeploy's .tflite can be slower than the direct one: the op census difference."""
    parts = []
    for v, ops in (R.get("tflite_ops") or {}).items():
        a, b = (ops.get("vitdeploy") or {}).get("ops") or {}, (ops.get("direct") or {}).get("ops") or {}
        if a and b:
            diff = {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}
            parts.append(f"{v}: " + (", ".join(f"{k} {n:+d}" for k, n in sorted(diff.items())) or "same ops"))
    return ("both files are litert-torch graphs of the same network with BatchNorm folded (the converter folds "
            "HF's eval-mode BN itself), so XNNPACK does the same GEMM/conv work; op differences (vitdeploy minus "
            "direct) " + "; ".join(parts) + ". Ratios within ~3 % of 1 are inside this machine's run-to-run noise")


def _why_int8(R: dict, slow: list) -> str:
    """Why int8 misses 1.5x for a variant: float/int8 boundaries, XNNPACK coverage, float fallback."""
    parts = []
    for v in sorted({v for v, _, _ in slow}):
        ops = (R.get("tflite_ops") or {}).get(v) or {}
        q = ops.get("int8") or {}
        counts, nd = q.get("ops") or {}, q.get("not_delegated") or {}
        boundaries = counts.get("QUANTIZE", 0) + counts.get("DEQUANTIZE", 0)
        kept = ops.get("int8_float_fallback") or []
        parts.append(f"{v}: {boundaries} of its {sum(counts.values())} ops are QUANTIZE/DEQUANTIZE at float/int8 "
                     f"boundaries; {sum(nd.values())} ops outside XNNPACK, {q.get('partitions', '?')} partition(s); "
                     f"kept float: {', '.join(kept) or 'none'}")
    return ("int8 speeds up only the Linear/Conv work (see the skeleton rows); every op kept float for accuracy or "
            "XNNPACK coverage adds a QUANTIZE/DEQUANTIZE pair, which costs most in small, elementwise-heavy "
            "models: " + "; ".join(parts))


def _why_peak(R: dict) -> str:
    """Why fp32 is below 75 % of peak: the skeleton's share and its own efficiency."""
    parts = []
    peak = ((R.get("peak") or {}).get("peak") or {}).get("fp32@1")
    for v, s in (R.get("skeleton") or {}).items():
        row = (s.get("by_threads") or {}).get("1") or {}
        if row.get("vitdeploy tflite fp32"):
            parts.append(f"{v} 1 thr: Linear/Conv work {100 * row['skeleton_ms'] / row['vitdeploy tflite fp32']:.0f} % "
                         f"of the time at {row['skeleton_gflops']:.0f} GFLOP/s"
                         + (f" ({100 * row['skeleton_gflops'] / peak:.0f} % of the 1-thread peak)" if peak else ""))
    return ("a model's FLOPs are its Linear/Conv layers, but small per-layer GEMMs (LeViT's 16-196 tokens, "
            "MobileViT's depthwise convs) run below the large-GEMM peak, and the remaining time goes to ops with "
            "few FLOPs (attention matmuls/softmax, norms, activations, reshapes): " + "; ".join(parts))


def goals(R: dict) -> list[dict]:
    out = []
    LAT = R.get("latency") or {}
    if LAT:
        rat = [(v, t, r) for v, res in LAT.items() for t, r in res["direct_over_vitdeploy"].items() if r is not None]
        slower = [(v, t, r) for v, t, r in rat if r < 1.0]
        worst = min(rat, key=lambda x: x[2]) if rat else None
        status = "met" if rat and not slower else ("MISSED" if slower else "not measured")
        if slower and all(r >= 0.97 for _, _, r in slower):
            status = "MISSED (within 3 % noise)"
        out.append({"goal": "vitdeploy .tflite never slower than the direct path", "status": status,
                    "why": _why_direct(R) if slower else "",
                    "detail": (f"direct/vitdeploy from {worst[2]:.2f} ({worst[0]}, {worst[1]} thr) to "
                               f"{max(r for _, _, r in rat):.2f}; slower cases: "
                               + (", ".join(f"{v} {t}thr {r:.2f}" for v, t, r in slower) or "none"))
                    if worst else ""})
        sp = [(v, t, r) for v, res in LAT.items() for t, r in res["int8_speedup"].items() if r is not None]
        miss = [(v, t, r) for v, t, r in sp if r < 1.5]
        out.append({"goal": "int8 >= 1.5x faster than fp32", "status": "met" if sp and not miss else
                    ("MISSED" if miss else "not measured"), "why": _why_int8(R, miss) if miss else "",
                    "detail": ("speed-ups " + ", ".join(f"{v} {t}thr {r:.2f}x" for v, t, r in sp)) if sp else ""})
        pp = [(v, t, _pct_peak(R, v, t)) for v, res in LAT.items() for t in res["int8_speedup"]]
        pp = [x for x in pp if x[2] is not None]
        miss = [x for x in pp if x[2] < 75]
        out.append({"goal": "fp32 >= 75 % of peak", "status": "met" if pp and not miss else
                    ("MISSED" if miss else "not measured"), "why": _why_peak(R) if miss else "",
                    "detail": ", ".join(f"{v} {t}thr {p:.0f} %" for v, t, p in pp)})
    CM = R.get("coreml") or {}
    lev = {v: c for v, c in CM.items() if v.startswith("levit") and "goal_met" in c}
    if lev:
        out.append({"goal": "Core ML LeViT: >= 30 % fewer ops than direct, no batch_norm/gather, rank <= 4",
                    "status": "met" if all(c["goal_met"] for c in lev.values()) else "MISSED",
                    "detail": ", ".join(f"{v} {100 * c['op_reduction']:.0f} % fewer, bn {c['vitdeploy']['batch_norm']}, "
                                        f"gather {c['vitdeploy']['gather']}, rank {c['vitdeploy']['max_rank']}"
                                        for v, c in lev.items())})
    return out


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small variant, few runs (smoke check)")
    parser.add_argument("--fresh", action="store_true", help="re-measure conversions even when cached")
    parser.add_argument("--variants", help="comma-separated subset (default: all; --quick: levit_128s)")
    parser.add_argument("--suites", default="conversion,peak,latency,skeleton,coreml,startup",
                        help="comma-separated subset of suites")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--merge", action="store_true",
                        help="keep the other suites' results from bench/.cache/results.json (re-run some suites only)")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the report from bench/.cache/results.json without measuring")
    args = parser.parse_args()
    if args.render_only:
        R = json.loads((CACHE / "results.json").read_text())
        R["accuracy"] = suite_accuracy()
        R["goals"], R["findings"] = goals(R), findings(R)
        write_latency_plot(R, args.out.parent / LATENCY_PLOT)
        args.out.write_text(render(R))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.simplefilter("ignore")
    variants = (args.variants.split(",") if args.variants else (["levit_128s"] if args.quick else list(ALL_VARIANTS)))
    suites = set(args.suites.split(","))
    q = args.quick
    R: dict = {"quick": q, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": _machine(),
               "versions": _versions(), "load_start": round(os.getloadavg()[0], 2), "variants": variants}
    if args.merge and (CACHE / "results.json").is_file():
        previous = json.loads((CACHE / "results.json").read_text())
        R = {**previous, "reruns": previous.get("reruns", []) + [
            f"{', '.join(sorted(suites))} re-run {R['started']} (load {R['load_start']})"]}
    CACHE.mkdir(parents=True, exist_ok=True)

    def save():
        R["goals"] = goals(R)
        R["findings"] = findings(R)
        (CACHE / "results.json").write_text(json.dumps(R, indent=1, default=str))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_latency_plot(R, args.out.parent / LATENCY_PLOT)
        args.out.write_text(render(R))

    from conversion import DEFAULT_JOBS, run_conversions

    t0 = time.perf_counter()
    log(f"conversions for {', '.join(variants)}")
    if "conversion" in suites or (suites & {"latency", "coreml", "skeleton"} and not (args.merge and R.get("conversions"))):
        R["conversions"] = run_conversions(variants, jobs=DEFAULT_JOBS, fresh=args.fresh, log=log)
    else:
        R.setdefault("conversions", [])
    if not q and "conversion" in suites:
        from conversion import EXTRA_JOBS

        R["conversions"] += run_conversions(variants[:1], jobs=EXTRA_JOBS, fresh=args.fresh, log=log)
    log(f"conversions done ({time.perf_counter() - t0:.0f} s)")
    save()
    threads = (1, 2)
    if ("latency" in suites or "peak" in suites) and not set(variants) <= set(R.get("flops") or {}):
        R["flops"] = suite_flops(variants)
    if "peak" in suites:
        log("peak GFLOP/s")
        from peak import measure_peak

        R["peak"] = measure_peak(threads, runs=4 if q else 12, log=log)
        log(f"peak: {R['peak']['peak']}")
        save()
    if "latency" in suites:
        from host_latency import artifacts_for, bench_variant

        R["latency"], R["tflite_ops"] = {}, {}
        for v in variants:
            log(f"latency {v}")
            arts = artifacts_for(v, R["conversions"])
            R["latency"][v] = bench_variant(v, arts, threads, rounds=3 if q else 10, block=3 if q else 5, log=log)
            R["tflite_ops"][v] = {k: tflite_op_census(arts[n]) for k, n in
                                  (("vitdeploy", "vitdeploy tflite fp32"), ("direct", "direct tflite fp32"),
                                   ("int8", "vitdeploy tflite int8")) if arts.get(n)}
            fb = next((r.get("float_fallback_ops") for r in R["conversions"] if r["variant"] == v and r.get("ok")
                       and (r["target"], r["mode"], r["path"]) == ("tflite", "int8", "vitdeploy")), None)
            R["tflite_ops"][v]["int8_float_fallback"] = fb
            save()
    if "skeleton" in suites:
        R["skeleton"] = {}
        for v in [v for v in variants if v in SKELETON_VARIANTS] or variants[:1]:
            log(f"skeleton {v}")
            try:
                R["skeleton"][v] = suite_skeleton(v, R["conversions"], threads, rounds=3 if q else 6,
                                                  block=3 if q else 5)
            except Exception as e:  # noqa: BLE001
                R["skeleton"][v] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            save()
    if "coreml" in suites:
        from coreml_graph import compare

        log("core ml graphs")
        R["coreml"] = {v: compare(v, R["conversions"]) for v in variants}
        save()
    if "startup" in suites:
        from startup import measure

        log("start-up")
        R["startup"] = measure(runs=3 if q else 8, warmup=1 if q else 2)
        save()
    R["accuracy"] = suite_accuracy()
    R["finished"] = time.strftime("%H:%M UTC", time.gmtime())
    R["load_end"] = round(os.getloadavg()[0], 2)
    save()
    log(f"wrote {args.out} in {time.perf_counter() - t0:.0f} s")


def findings(R: dict) -> list[str]:
    """Short measured statements for the report (numbers filled in from this run)."""
    import statistics as st

    out = []
    load = max(R.get("load_start") or 0, R.get("load_end") or 0)
    if load > 1.5:
        out.append(f"The machine was busy (load average up to {load:.1f} on 2 cores): 2-thread figures are the least "
                   "reliable, since a second worker thread often waits for a core (PyTorch eager's OpenMP barriers "
                   "suffer most); 1-thread figures are the reference.")
    LAT, SK, P = R.get("latency") or {}, R.get("skeleton") or {}, (R.get("peak") or {}).get("peak", {})
    OPS, CM = R.get("tflite_ops") or {}, R.get("coreml") or {}
    if LAT:
        d = [r for res in LAT.values() for r in res["direct_over_vitdeploy"].values() if r is not None]
        if d:
            out.append(f"vitdeploy vs direct .tflite: direct/vitdeploy latency ratio median {st.median(d):.2f} "
                       f"(range {min(d):.2f}-{max(d):.2f} over {len(d)} variant x thread cases). Both are litert-torch "
                       "graphs of the same network and the TFLite converter folds HF's eval-mode BatchNorm into the "
                       "FC/conv weights by itself, so the XNNPACK work is nearly identical; the differences are a "
                       "few elementwise ops and the input layout (see the op census): vitdeploy's graph starts "
                       "from NHWC pixels with the normalisation as one 1x1 CONV_2D, the direct graph needs an "
                       "NCHW->NHWC TRANSPOSE of its input. Differences of a few percent are within this machine's "
                       "noise.")
        for name, label in (("onnxruntime (HF export)", "ONNX Runtime"), ("pytorch eager (HF)", "PyTorch eager (HF)")):
            for t in ("1", "2"):
                xs = [r["vs_vitdeploy_fp32"] for res in LAT.values() for r in res["rows"]
                      if r["engine"] == name and str(r["threads"]) == t and r["vs_vitdeploy_fp32"]]
                if xs:
                    out.append(f"{label}, {t} thread(s): {st.median(xs):.2f}x vitdeploy fp32's latency (median over "
                               f"variants, range {min(xs):.2f}-{max(xs):.2f}).")
    for v, ops in OPS.items():
        q = ops.get("int8")
        if q and q.get("not_delegated"):
            nd = q["not_delegated"]
            out.append(f"{v} int8: XNNPACK does not take {sum(nd.values())} of the {sum(q['ops'].values())} ops "
                       f"({_ops_str(nd)}), so the graph runs as {q['partitions']} XNNPACK partitions with TFLite "
                       "built-in kernels in between (fp32: "
                       f"{(ops.get('vitdeploy') or {}).get('partitions', '?')} partition(s)).")
    for v, ops in OPS.items():
        a, b = (ops.get("vitdeploy") or {}).get("ops") or {}, (ops.get("direct") or {}).get("ops") or {}
        if a and b:
            diff = {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b) if a.get(k, 0) != b.get(k, 0)}
            out.append(f"{v} TFLite op census, vitdeploy minus direct: "
                       + (", ".join(f"{k} {n:+d}" for k, n in sorted(diff.items())) or "identical")
                       + f" ({sum(a.values())} vs {sum(b.values())} ops).")
    for v, s in SK.items():
        if "error" in s:
            continue
        for t, row in s["by_threads"].items():
            if row.get("vitdeploy tflite fp32"):
                pk = P.get(f"fp32@{t}")
                share = 100 * row["skeleton_ms"] / row["vitdeploy tflite fp32"]
                out.append(f"{v}, {t} thread(s): the Linear/Conv work alone (skeleton) takes {row['skeleton_ms']:.2f} ms "
                           f"= {share:.0f} % of the {row['vitdeploy tflite fp32']:.2f} ms model, at "
                           f"{row['skeleton_gflops']:.0f} GFLOP/s"
                           + (f" = {100 * row['skeleton_gflops'] / pk:.0f} % of the large-GEMM peak" if pk else "")
                           + "; the remaining "
                           f"{100 - share:.0f} % goes to ops that do few FLOPs (attention BATCH_MATMUL/SOFTMAX, "
                           "norms, activations, reshapes/transposes/slices).")
            if row.get("skeleton_int8_speedup") and row.get("vitdeploy tflite int8 speed-up over fp32"):
                out.append(f"{v}, {t} thread(s), int8: the Linear/Conv skeleton alone is "
                           f"{row['skeleton_int8_speedup']:.2f}x faster in int8, vitdeploy's int8 model only "
                           f"{row['vitdeploy tflite int8 speed-up over fp32']:.2f}x.")
    if P.get("fp32@2") and P.get("int8@2"):
        out.append(f"Peak: int8 {P['int8@2']:.0f} vs fp32 {P['fp32@2']:.0f} GOP/s with 2 threads "
                   f"({P['int8@2'] / P['fp32@2']:.1f}x; AVX-512 VNNI), 1 thread {P.get('int8@1', 0):.0f} vs "
                   f"{P.get('fp32@1', 0):.0f}.")
    for v, c in CM.items():
        dv, vv = c.get("direct", {}), c.get("vitdeploy", {})
        if "op_counts" in dv and "op_counts" in vv:
            diff = {k: vv["op_counts"].get(k, 0) - dv["op_counts"].get(k, 0)
                    for k in set(dv["op_counts"]) | set(vv["op_counts"])}
            big = sorted(((k, n) for k, n in diff.items() if n), key=lambda kv: kv[1])[:6]
            out.append(f"Core ML {v}: {vv['total_ops']} vs {dv['total_ops']} ops ({100 * c['op_reduction']:.0f} % fewer); "
                       "largest differences " + ", ".join(f"{k} {n:+d}" for k, n in big) + ".")
    return out


if __name__ == "__main__":
    main()
