"""``vitdeploy demo``: the main job end to end on built-in defaults.

Without arguments it uses the trained references that ship with vitdeploy
(:mod:`vitdeploy.references`: MobileViT-XXS and LeViT-128S trained on natural photographs),
then for each checkpoint: inspect, fold BatchNorm and check the folded model against the
original; convert to TFLite (fp32 and w8a8), Core ML (fp16 and w8) and ExecuTorch (fp32 and w8a8);
check each artifact's parity against the checkpoint; profile the checkpoint and the TFLite and
ExecuTorch artifacts on the host (interleaved); write HTML reports; print a summary. ``quick=True``
keeps to the float artifacts.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .formats import HOST_TIMED_TARGETS

DEFAULT_VARIANTS = ("mobilevit_xxs", "levit_128s")


ARTIFACTS = (  # (target, precision, quantize, in quick mode)
    ("tflite", "fp32", "fp32", True),
    ("tflite", "fp32", "w8a8", False),
    ("coreml", "fp16", "fp32", True),  # fp32 beside a compute precision: not quantized
    ("coreml", "fp16", "w8", False),
    ("executorch", "fp32", "fp32", True),
    ("executorch", "fp32", "w8a8", False),
)


def run_demo(checkpoint_paths: list[str], out_dir: str | Path, echo: Callable[[str], None] | None = print,
             quick: bool = False, convert: bool = True) -> dict:
    """Run the demo; returns a JSON-able summary. ``echo=None`` keeps it quiet; ``convert=False`` stops after folding."""
    from .cell import STATUS_BELOW_TARGET

    say = echo or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    references = not checkpoint_paths
    if references:
        from . import references as refs

        checkpoint_paths = [str(refs.checkpoint(v)) for v in DEFAULT_VARIANTS]
        say("using the trained references that ship with vitdeploy (vitdeploy/references/)")
    results = []
    for p in checkpoint_paths:
        result = _demo_one(Path(p), out, say)
        if convert:
            result["artifacts"] = _artifacts(Path(p), out / result["variant"], say, quick)
            result["latency"] = _latency(Path(p), result["artifacts"], out / result["variant"], say)
        results.append(result)
    summary = {"out_dir": str(out), "models": results, "references": references}
    _print_summary(results, say)
    for r in results:
        for a in r.get("artifacts", []):
            if a.get("status") == STATUS_BELOW_TARGET:
                say(f"note: {r['variant']} {a['target']} {a['label']} missed its accuracy target and was written "
                    f"as {Path(a['path']).name}: {a.get('verdict', '')}")
    _write_summary(out, summary)
    return summary


def _artifacts(ckpt: Path, out: Path, say, quick: bool) -> list[dict]:
    """Convert, then check parity (with an HTML report) of every demo artifact; failures are recorded, not fatal."""
    from .convert import checkpoint_stem
    from .cell import artifact_path, build_artifact

    rows = []
    for target, precision, quantize, in_quick in ARTIFACTS:
        if quick and not in_quick:
            continue
        needs = {"coreml": "coremltools", "executorch": "executorch"}.get(target)
        if needs and not _has(needs):
            rows.append({"target": target, "quantize": quantize, "status": f"skipped ({needs} not installed)"})
            continue
        path = artifact_path(out, checkpoint_stem(ckpt), target, precision, quantize)
        rows.append(build_artifact(ckpt, target, precision, quantize, path, html_report=True, say=say,
                                   force=True))  # the demo rebuilds its own folder
    return rows


def _latency(ckpt: Path, artifacts: list[dict], out: Path, say) -> dict:
    """Host latency (2 threads): the checkpoint in PyTorch eager, then the TFLite and ExecuTorch artifacts
    interleaved (each round runs every artifact once) with each one's speed-up over TFLite fp32."""
    from .cell import STATUS_BELOW_TARGET
    from .profile import profile
    from .reports import write_report
    from .runtimes.open import open_runner
    from .runtimes.timing import interleaved

    timings = {"pytorch eager": profile(ckpt, runs=20, warmup=3)}
    # A w8a8 model below its accuracy target is timed too: what it would cost is part of the verdict.
    timed = {f"{a['target']} {a['label']}": a["path"] for a in artifacts
             if a.get("status") in ("ok", STATUS_BELOW_TARGET) and a["target"] in HOST_TIMED_TARGETS}
    if timed:
        baseline = "tflite fp32" if "tflite fp32" in timed else None
        measured = interleaved({name: open_runner(p, threads=2) for name, p in timed.items()}, rounds=30,
                               baseline=baseline)
        speedup = measured.pop("speedup", {})
        timings.update(measured)
        if baseline:
            write_report(out / "latency.report", kind="profile", data=profile(timed[baseline], runs=30, warmup=3))
        for name, ratio in speedup.items():
            timings[name]["speedup_vs_fp32"] = ratio
    say("  host latency (median ms, 2 threads, interleaved; x = TFLite fp32 time / this): " + ", ".join(
        f"{k} {v['median_ms']:.1f}" + (f" ({v['speedup_vs_fp32']:.2f}x)" if "speedup_vs_fp32" in v else "")
        for k, v in timings.items()))
    return {k: {key: v[key] for key in ("median_ms", "min_ms", "p90_ms", "speedup_vs_fp32") if key in v}
            for k, v in timings.items()}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _write_summary(out: Path, summary: dict) -> None:
    import json

    from .files import write_atomically

    write_atomically(out / "summary.json", json.dumps(summary, indent=2, default=str))


def _demo_one(path: Path, out: Path, say) -> dict:
    import torch

    from . import checkpoints
    from .passes import fold_batchnorm
    from .sample_images import natural_images

    t0 = time.perf_counter()
    ckpt = checkpoints.load(path)
    say(f"\n== {path.name}: {ckpt.variant} ({ckpt.layout} layout), {ckpt.preprocessing.describe()}")
    _, h, w = ckpt.input_size
    x = ckpt.preprocessing.normalize(natural_images(16, h))
    folded = copy.deepcopy(ckpt.model)
    report = fold_batchnorm(folded)
    with torch.no_grad():
        ref = ckpt.model(torch.from_numpy(x)).numpy()
        got = folded(torch.from_numpy(x)).numpy()
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    say(f"BN folding: {report.total_folded} BatchNorm folded, {report.batchnorm_after} left, "
        f"max rel diff {rel:.2e} on 16 natural images")
    top1 = ref.argmax(1)
    return {
        "checkpoint": str(path),
        "variant": ckpt.variant,
        "layout": ckpt.layout,
        "bn_folding": report.to_dict(),
        "folded_max_rel_diff": rel,
        "top1_classes": top1.tolist(),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _print_summary(results: list[dict], say) -> None:
    say("\nsummary")
    say(f"{'variant':<15} {'layout':<8} {'BN folded':>9} {'fold rel diff':>13} {'distinct top-1':>14}")
    for r in results:
        say(f"{r['variant']:<15} {r['layout']:<8} {r['bn_folding']['total_folded']:>9} "
            f"{r['folded_max_rel_diff']:>13.2e} {len(set(r['top1_classes'])):>14}")
    rows = [(r["variant"], a) for r in results for a in r.get("artifacts", [])]
    if rows:
        say(f"\n{'variant':<15} {'artifact':<22} {'status':<12} {'MB':>6} {'parity':>12} {'cos min':>9} {'top-1':>6} "
            f"{'host ms':>8} {'vs fp32':>8}")
        for variant, a in rows:
            latency = next((r.get("latency", {}) for r in results if r["variant"] == variant), {})
            key = f"{a['target']} {a.get('label')}" if a["target"] in HOST_TIMED_TARGETS else ""
            ms = latency.get(key, {}).get("median_ms")
            speedup = latency.get(key, {}).get("speedup_vs_fp32")
            label = a.get("label", "")
            name = f"{a['target']} {label}" if a["target"] in HOST_TIMED_TARGETS else \
                f"coreml {a.get('precision', '')}" + (f" {label}" if label and label != a.get("precision") else "")
            fmt = lambda v, f: f.format(v) if isinstance(v, (int, float)) else "-"  # noqa: E731
            say(f"{variant:<15} {name:<22} {a['status'][:12]:<12} {fmt(a.get('size_mb'), '{:.1f}'):>6} "
                f"{a.get('parity', '-'):>12} {fmt(a.get('cosine_min'), '{:.6f}'):>9} "
                f"{fmt(a.get('top1_agreement'), '{:.0%}'):>6} {fmt(ms, '{:.2f}'):>8} {fmt(speedup, '{:.2f}x'):>8}")
        for r in results:
            eager = r.get("latency", {}).get("pytorch eager")
            if eager:
                say(f"{r['variant']}: PyTorch eager median {eager['median_ms']:.1f} ms on the host")
