"""``vitdeploy demo``: the main job end to end on built-in defaults.

Without arguments it writes seeded MobileViT-XS and LeViT-128S checkpoints (no
pretrained weights can be downloaded here), then for each checkpoint: inspect, fold
BatchNorm and check the folded model against the original; convert to TFLite (fp32 and
int8) and Core ML (fp16 and w8); check each artifact's parity against the checkpoint;
profile the checkpoint and the TFLite artifacts on the host; write HTML reports; print
a summary. ``quick=True`` keeps to the float artifacts.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np

DEFAULT_VARIANTS = ("mobilevit_xs", "levit_128s")
STAND_IN_NOTE = ("\nnote: the default checkpoints are seeded random stand-ins (no weights can be downloaded here). "
                 "Their pooled features barely differ between images, so the classifier amplifies fp16/int8 rounding "
                 "10-100x; a low-precision parity FAIL above says that, not that the artifact is broken. Trained "
                 "weights pass (docs/build-matrix.md); run `vitdeploy demo YOUR_CHECKPOINT...`.")


ARTIFACTS = (  # (target, precision, quantize, in quick mode)
    ("tflite", "fp32", "none", True),
    ("tflite", "fp32", "int8", False),
    ("coreml", "fp16", "none", True),
    ("coreml", "fp16", "w8", False),
)


def run_demo(checkpoint_paths: list[str], out_dir: str | Path, echo: Callable[[str], None] | None = print,
             quick: bool = False, convert: bool = True) -> dict:
    """Run the demo; returns a JSON-able summary. ``echo=None`` keeps it quiet; ``convert=False`` stops after folding."""
    say = echo or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stand_ins = not checkpoint_paths
    if stand_ins:
        checkpoint_paths = [str(_default_checkpoint(v, out, say)) for v in DEFAULT_VARIANTS]
    results = []
    for p in checkpoint_paths:
        result = _demo_one(Path(p), out, say)
        if convert:
            result["artifacts"] = _artifacts(Path(p), out / result["variant"], say, quick)
            result["latency"] = _latency(Path(p), result["artifacts"], out / result["variant"], say)
        results.append(result)
    summary = {"out_dir": str(out), "models": results, "stand_ins": stand_ins}
    _print_summary(results, say)
    if stand_ins and any(a.get("parity") == "FAIL" for r in results for a in r.get("artifacts", [])):
        say(STAND_IN_NOTE)
    _write_summary(out, summary)
    return summary


def _artifacts(ckpt: Path, out: Path, say, quick: bool) -> list[dict]:
    """Convert, then check parity (with an HTML report) of every demo artifact; failures are recorded, not fatal."""
    from .convert import convert
    from .errors import VitdeployError

    rows = []
    for target, precision, quantize, in_quick in ARTIFACTS:
        if quick and not in_quick:
            continue
        if target == "coreml" and not _has("coremltools"):
            rows.append({"target": target, "quantize": quantize, "status": "skipped (coremltools not installed)"})
            continue
        ext = "tflite" if target == "tflite" else "mlpackage"
        mode = (precision if quantize == "none" else quantize) if target == "tflite" else f"{precision}_{quantize}"
        path = out / f"{ckpt.name.split('.')[0]}_{mode}.{ext}"
        row = {"target": target, "precision": precision, "quantize": quantize, "path": str(path)}
        say(f"converting -> {path.name}")
        try:
            report = convert(ckpt, target, out=path, quantize=quantize, precision=precision)
            row.update(status="ok", size_mb=round(report["size_bytes"] / 1e6, 2), convert_s=report.get("seconds"),
                       float_fallback_ops=report.get("float_fallback_ops"))
            row.update(_parity(path, ckpt, say))
        except (VitdeployError, RuntimeError, ValueError) as e:
            row.update(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
            say(f"  failed: {row['error']}")
        rows.append(row)
    return rows


def _parity(artifact: Path, ckpt: Path, say) -> dict:
    from .parity import run_parity
    from .reports import write_report

    result = run_parity(artifact, ckpt, n_images=16)
    report_dir = artifact.parent / f"{artifact.name}.report"
    write_report(report_dir, kind="parity", data=result.to_dict())
    nat = result.natural
    say(f"  parity {'PASS' if result.passed else 'FAIL'} ({result.precision}): cosine min "
        f"{nat.get('cosine_min', float('nan')):.6f}, top-1 agreement {nat.get('top1', float('nan')):.0%} "
        f"-> {report_dir / 'report.html'}")
    return {"parity": "pass" if result.passed else "FAIL", "precision_preset": result.precision,
            "cosine_min": nat.get("cosine_min"), "top1_agreement": nat.get("top1"),
            "report": str(report_dir / "report.html")}


def _latency(ckpt: Path, artifacts: list[dict], out: Path, say) -> dict:
    """Host latency of the checkpoint (PyTorch eager) and each TFLite artifact, side by side (2 threads)."""
    from .profile import profile
    from .reports import write_report

    timings = {"pytorch eager": profile(ckpt, runs=20, warmup=3)}
    for a in artifacts:
        if a.get("status") == "ok" and a["target"] == "tflite":
            timings[f"tflite {a['quantize'] if a['quantize'] != 'none' else 'fp32'}"] = profile(a["path"], runs=30,
                                                                                                 warmup=3)
    fastest = timings.get("tflite fp32")
    if fastest:
        write_report(out / "latency.report", kind="profile", data=fastest)
    say("  host latency (median ms, 2 threads): " + ", ".join(f"{k} {v['median_ms']:.1f}" for k, v in timings.items()))
    return {k: {"median_ms": v["median_ms"], "min_ms": v["min_ms"], "p90_ms": v["p90_ms"]} for k, v in timings.items()}


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _write_summary(out: Path, summary: dict) -> None:
    import json

    from .api import save_text

    save_text(out / "summary.json", json.dumps(summary, indent=2, default=str))


def _default_checkpoint(variant: str, out: Path, say) -> Path:
    from .synthetic import write_seeded_checkpoint

    path = out / f"{variant}_seeded.safetensors"
    if not path.exists():
        say(f"writing seeded {variant} checkpoint (timm layout) -> {path}")
        write_seeded_checkpoint(variant, path, seed=0)
    return path


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
        say(f"\n{'variant':<15} {'artifact':<22} {'status':<8} {'MB':>6} {'parity':>6} {'cos min':>9} {'top-1':>6} "
            f"{'host ms':>8}")
        for variant, a in rows:
            latency = next((r.get("latency", {}) for r in results if r["variant"] == variant), {})
            key = f"tflite {a['quantize'] if a.get('quantize') != 'none' else 'fp32'}" if a["target"] == "tflite" else ""
            ms = latency.get(key, {}).get("median_ms")
            name = f"{a['target']} {a.get('precision', '')} {a.get('quantize', '')}".strip()
            fmt = lambda v, f: f.format(v) if isinstance(v, (int, float)) else "-"  # noqa: E731
            say(f"{variant:<15} {name:<22} {a['status'][:8]:<8} {fmt(a.get('size_mb'), '{:.1f}'):>6} "
                f"{a.get('parity', '-'):>6} {fmt(a.get('cosine_min'), '{:.6f}'):>9} "
                f"{fmt(a.get('top1_agreement'), '{:.0%}'):>6} {fmt(ms, '{:.2f}'):>8}")
        for r in results:
            eager = r.get("latency", {}).get("pytorch eager")
            if eager:
                say(f"{r['variant']}: PyTorch eager median {eager['median_ms']:.1f} ms on the host")
