"""Conversion benchmark: seconds, peak memory and artifact size per variant x target x mode x path.

    .venv/bin/python bench/conversion.py levit_128s [--targets tflite,coreml] [--json out.json]

Every conversion runs in its own child process (``python bench/conversion.py --job '<json>'``),
which reports ``getrusage(RUSAGE_SELF)`` at exit (``ru_maxrss``: peak resident set of the whole
process, Python + torch + converter; the same number the parent's ``os.wait4`` would get) and its
RSS just before the conversion started (imports done), so "converter peak" = peak - baseline.
``seconds`` is wall time of the conversion call only (imports excluded); ``cpu_s`` is the CPU time
(user+sys, all threads) of the same span -- less sensitive than wall time to a shared machine.

Results are cached under ``bench/.cache/conversions.json``, keyed by a fingerprint of what shapes
the artifact (vitdeploy's ``targets/<target>.py``, ``quantization/<target>.py``, ``models/``,
``passes/``; this file; the checkpoint; package versions); ``--fresh`` re-measures. Each row
records when it was measured.

Paths compared (same weights: one HF ``save_pretrained`` directory per variant, written once):

* ``vitdeploy``: ``vitdeploy.convert.convert(<hf dir>, target, quantize=...)`` -- what
  ``vitdeploy convert`` does (load, BN fold, convert, metadata).
* ``direct``: what a user would do without vitdeploy -- ``AutoModelForImageClassification.
  from_pretrained(<hf dir>)``, a 3-line wrapper returning ``.logits``, then
  ``litert_torch.convert(...)`` (TFLite) or ``torch.export`` + ``ct.convert(convert_to="mlprogram",
  minimum_deployment_target=iOS16)`` (Core ML, fp16 like vitdeploy's default).
* ``onnx`` (for the latency suite): ``torch.onnx.export`` of the same HF model.

Weights: HF transformers' own model classes with seeded random weights (normal(0, 0.05)
matrices, BatchNorm running statistics randomised so no activation is denormal), saved once
under ``bench/.cache/ckpt``; vitdeploy loads that directory through its HF layout mapping.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
sys.path.insert(0, str(ROOT))

PY = sys.executable


# ----------------------------------------------------------------------------- models (same weights)


def hf_reference(variant: str):
    """HF transformers' own model for ``variant``: seeded random weights, sane BatchNorm statistics."""
    import torch
    import transformers

    from vitdeploy.models import levit, mobilevit

    torch.manual_seed(0)
    if variant.startswith("levit"):
        c = levit.CONFIGS[variant]
        cfg = transformers.LevitConfig(hidden_sizes=list(c.embed_dim), num_attention_heads=list(c.num_heads),
                                       depths=list(c.depth), key_dim=[c.key_dim] * 3, num_labels=1000)
        model = transformers.LevitForImageClassificationWithTeacher(cfg)
    else:
        c = mobilevit.CONFIGS[variant]
        cfg = transformers.MobileViTConfig(hidden_sizes=list(c.transformer_dims),
                                           neck_hidden_sizes=[16, *c.channels, c.num_features],
                                           expand_ratio=c.expansion, num_labels=1000)
        model = transformers.MobileViTForImageClassification(cfg)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in model.named_parameters():
            # HF's init gives denormal activations in MobileViT (slow in every CPU runtime): avoid them.
            p.normal_(0, 0.05, generator=g) if p.ndim > 1 else p.uniform_(0.5, 1.5, generator=g)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return model.eval()


def ensure_checkpoint(variant: str) -> Path:
    """The HF directory every path converts from (written once, cached)."""
    out = CACHE / "ckpt" / variant
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(variant + ".partial")
        hf_reference(variant).save_pretrained(tmp)
        if out.exists():
            import shutil

            shutil.rmtree(out)
        tmp.rename(out)
    return out


def load_direct(variant: str):
    """What a user of HF transformers has: the model from the checkpoint directory, returning logits."""
    import torch
    from transformers import AutoModelForImageClassification

    hf = AutoModelForImageClassification.from_pretrained(ensure_checkpoint(variant)).eval()

    class Logits(torch.nn.Module):  # the minimal wrapper every exporter needs (HF returns an output object)
        def __init__(self):
            super().__init__()
            self.hf = hf

        def forward(self, pixel_values):
            return self.hf(pixel_values=pixel_values).logits

    return Logits().eval()


def load_vitdeploy(variant: str, fold: bool = True):
    """vitdeploy's model of the same checkpoint (BatchNorm folded, as ``vitdeploy convert`` uses it)."""
    from vitdeploy import checkpoints
    from vitdeploy.passes import fold_batchnorm

    model = checkpoints.load(ensure_checkpoint(variant)).model.eval()
    if fold:
        fold_batchnorm(model)
    return model.eval()


def input_shape(variant: str) -> tuple[int, int, int, int]:
    from vitdeploy.models import VARIANTS

    s = VARIANTS[variant].img_size
    return (1, 3, s, s)


# ----------------------------------------------------------------------------- one conversion (child side)


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_job(job: dict) -> dict:
    """Runs inside the child. Returns what it measured (seconds = conversion only, load excluded)."""
    import warnings

    warnings.simplefilter("ignore")
    variant, path, target, mode, out = job["variant"], job["path"], job["target"], job["mode"], Path(job["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt = ensure_checkpoint(variant)
    import torch  # noqa: F401  (imported before the baseline RSS for every path alike)

    if path == "vitdeploy":
        from vitdeploy.convert import convert

        if target == "coreml":
            import coremltools  # noqa: F401
        else:
            import litert_torch  # noqa: F401
        base, c0 = _rss_kb(), _cpu_s()
        t0 = time.perf_counter()
        if target == "tflite":
            report = convert(ckpt, "tflite", out=out, quantize=mode, force=True)
        else:
            precision, _, quant = mode.partition("_")
            report = convert(ckpt, "coreml", out=out, precision=precision, quantize=quant or "none", force=True)
        seconds = time.perf_counter() - t0
        extra = {"float_fallback_ops": report.get("float_fallback_ops"),
                 "quant_cosine": (report.get("quant_report") or {}).get("cosine_after")}
    elif path == "direct":
        import torch

        if target == "tflite":
            import litert_torch
        else:
            import coremltools as ct
        base, c0 = _rss_kb(), _cpu_s()
        t0 = time.perf_counter()
        model = load_direct(variant)  # loading counts, as in vitdeploy's path
        x = torch.randn(*input_shape(variant))
        with torch.no_grad():
            if target == "tflite":
                litert_torch.convert(model, (x,)).export(str(out))
            else:
                ep = torch.export.export(model, (x,)).run_decompositions({})
                precision = ct.precision.FLOAT16 if mode == "fp16" else ct.precision.FLOAT32
                mlmodel = ct.convert(ep, inputs=[ct.TensorType(name="pixel_values", shape=x.shape)],
                                     convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                                     compute_precision=precision, skip_model_load=True)
                mlmodel.save(str(out))
        seconds = time.perf_counter() - t0
        extra = {}
    elif path == "onnx":
        import torch

        base, c0 = _rss_kb(), _cpu_s()
        t0 = time.perf_counter()
        model = load_direct(variant)
        x = torch.randn(*input_shape(variant))
        with torch.no_grad():
            torch.onnx.export(model, (x,), str(out), input_names=["pixel_values"], output_names=["logits"],
                              dynamo=True, external_data=False)
        seconds = time.perf_counter() - t0
        extra = {}
    else:
        raise ValueError(path)
    return {"seconds": round(seconds, 2), "cpu_s": round(_cpu_s() - c0, 2), "rss_before_mb": round(base / 1024, 1),
            **extra}


# ----------------------------------------------------------------------------- parent side


def artifact_path(variant: str, target: str, mode: str, path: str) -> Path:
    suffix = {"tflite": ".tflite", "coreml": ".mlpackage", "onnx": ".onnx"}[target]
    return CACHE / "artifacts" / f"{variant}__{path}__{target}__{mode}{suffix}"


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size if p.exists() else 0


def convert_in_child(variant: str, target: str, mode: str, path: str, timeout: float = 900) -> dict:
    """One conversion in a fresh process; its own peak RSS from ``os.wait4``."""
    out = artifact_path(variant, target, mode, path)
    if out.exists():
        import shutil

        shutil.rmtree(out) if out.is_dir() else out.unlink()
    job = {"variant": variant, "target": target, "mode": mode, "path": path, "out": str(out)}
    row = {"variant": variant, "target": target, "mode": mode, "path": path, "artifact": str(out.relative_to(ROOT))}
    env = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="3")
    started = time.perf_counter()
    proc = subprocess.Popen([PY, __file__, "--job", json.dumps(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        return {**row, "ok": False, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - started
    result = None
    for line in stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line[len("BENCH_RESULT "):])
    if proc.returncode != 0 or result is None:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-3:]
        return {**row, "ok": False, "error": " | ".join(tail)[-400:] or f"exit code {proc.returncode}"}
    return {**row, "ok": True, **result, "process_wall_s": round(wall, 2), "size_mb": round(_size(out) / 1e6, 2),
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_avg_1min": round(os.getloadavg()[0], 2)}


# ----------------------------------------------------------------------------- cache


_SOURCES = {
    "tflite": ["targets/tflite.py", "quantization/tflite.py"],
    "coreml": ["targets/coreml.py", "quantization/coreml.py"],
    "onnx": [],
}
# What shapes the graph and its numbers; not checkpoints/CLI/report code (edited often, no effect on the file).
_COMMON = ["models", "passes"]


def fingerprint(variant: str, target: str, mode: str, path: str) -> str:
    """Hash of everything the artifact depends on."""
    import hashlib
    from importlib.metadata import version

    import inspect

    h = hashlib.sha256(f"{variant}|{target}|{mode}|{path}".encode())
    for fn in (hf_reference, load_direct, run_job):  # the code that makes the artifact, not the bookkeeping
        h.update(inspect.getsource(fn).encode())
    files = []
    if path == "vitdeploy":
        for rel in _SOURCES[target] + _COMMON:
            p = ROOT / "vitdeploy" / rel
            files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    for f in files:
        if f.exists():
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())
    ckpt = ensure_checkpoint(variant)
    for f in sorted(ckpt.iterdir()):
        h.update(f.name.encode())
        h.update(str(f.stat().st_size).encode())
    for pkg in ("torch", "transformers", "litert-torch", "ai-edge-litert", "ai-edge-quantizer", "coremltools", "onnx",
                "onnxscript"):
        try:
            h.update(f"{pkg}={version(pkg)}".encode())
        except Exception:  # noqa: BLE001
            pass
    return h.hexdigest()[:16]


def _load_cache() -> dict:
    p = CACHE / "conversions.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    p = CACHE / "conversions.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    tmp.replace(p)


def cached_or_convert(variant: str, target: str, mode: str, path: str, fresh: bool = False) -> dict:
    key = f"{variant}|{target}|{mode}|{path}"
    fp = fingerprint(variant, target, mode, path)
    cache = _load_cache()
    hit = cache.get(key)
    if not fresh and hit and hit.get("fingerprint") == fp and hit.get("ok") and (ROOT / hit["artifact"]).exists():
        return {**hit, "cached": True}
    row = convert_in_child(variant, target, mode, path)
    row["fingerprint"] = fp
    cache = _load_cache()  # another process may have written meanwhile
    cache[key] = row
    _save_cache(cache)
    return {**row, "cached": False}


def _job_main(job: dict) -> None:
    import resource

    try:
        result = run_job(job)
    except Exception as e:  # noqa: BLE001 - reported as one line to the parent
        msg = " ".join(str(e).split())[:300]
        print(f"{type(e).__name__}: {msg}", file=sys.stderr)
        sys.exit(1)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["peak_rss_mb"] = round(peak_kb / 1024, 1)
    result["converter_peak_mb"] = round(result["peak_rss_mb"] - result["rss_before_mb"], 1)
    sys.stdout.flush()
    print("BENCH_RESULT " + json.dumps(result), flush=True)


# The other modes, for one variant in the full run (their artifacts are not timed here).
EXTRA_JOBS = (("tflite", "fp16", "vitdeploy"), ("tflite", "dynamic", "vitdeploy"), ("coreml", "fp32", "vitdeploy"),
              ("coreml", "fp16_w8", "vitdeploy"), ("coreml", "fp16_w8a8", "vitdeploy"))
DEFAULT_JOBS = (("tflite", "none", "vitdeploy"), ("tflite", "int8", "vitdeploy"), ("tflite", "none", "direct"),
                ("onnx", "fp32", "onnx"), ("coreml", "fp16", "vitdeploy"), ("coreml", "fp16", "direct"))


def run_conversions(variants, jobs=DEFAULT_JOBS, fresh: bool = False, log=print) -> list[dict]:
    rows = []
    for variant in variants:
        ensure_checkpoint(variant)
        for target, mode, path in jobs:
            row = cached_or_convert(variant, target, mode, path, fresh=fresh)
            log(f"  convert {variant:14s} {path:9s} {target:6s} {mode:5s} -> "
                + (f"{row['seconds']:6.1f} s (cpu {row['cpu_s']:.0f} s), peak {row['peak_rss_mb']:.0f} MB, "
                   f"{row['size_mb']} MB{' [cached ' + row['measured_at'] + ']' if row['cached'] else ''}"
                   if row["ok"] else f"FAILED: {row['error']}"), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["levit_128s"])
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--fresh", action="store_true", help="ignore the cache, convert again")
    args = parser.parse_args()
    if args.job:
        _job_main(json.loads(args.job))
        return
    rows = run_conversions(args.variants, fresh=args.fresh)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
