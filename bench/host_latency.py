"""Host latency, side by side: vitdeploy's .tflite vs what users would run instead, batch 1.

    .venv/bin/python bench/host_latency.py levit_128s [--threads 1,2] [--rounds 8] [--block 5]

Engines (same weights, see ``bench/conversion.py``; artifacts come from its cache):

* ``vitdeploy tflite fp32`` / ``int8``: ``vitdeploy convert <hf dir> --target tflite [--quantize int8]``,
  run by ai-edge-litert's interpreter (XNNPACK delegate, ``num_threads``), pixel input;
* ``direct tflite fp32``: HF model -> ``litert_torch.convert`` directly, same interpreter;
* ``pytorch eager (HF)``: ``transformers`` model, ``torch.inference_mode``, ``torch.set_num_threads``;
* ``pytorch eager (vitdeploy)``: vitdeploy's BN-folded module, same settings;
* ``onnxruntime (HF export)``: ``torch.onnx.export(dynamo=True)`` of the HF model, CPU provider,
  ``intra_op_num_threads``, default graph optimizations.

Noise control: all engines of a variant and both thread counts are timed in **interleaved rounds**
(each round: every engine runs ``block`` timed calls, in rotating order); the median of all calls
is reported, and each ratio is the median over rounds of the per-round ratio of block medians,
so slow phases of a shared machine hit all engines alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

REFERENCE = "vitdeploy tflite fp32"


def interleaved(engines: dict, *, rounds: int, block: int, warmup: int = 3,
                before: Callable[[object], None] | None = None) -> dict:
    """Time every engine (a no-argument callable) in interleaved rounds.

    Returns ``{key: {"median_ms", "p10_ms", "p90_ms", "runs", "block_medians": [...]}}``.
    ``before(key)`` runs (untimed) before each engine's block, e.g. to set torch's thread count.
    """
    keys = list(engines)
    times: dict = {k: [] for k in keys}
    blocks: dict = {k: [] for k in keys}
    for k in keys:
        if before:
            before(k)
        for _ in range(warmup):
            engines[k]()
    for r in range(rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            if before:
                before(k)
            run = engines[k]
            ts = []
            for _ in range(block):
                t0 = time.perf_counter()
                run()
                ts.append((time.perf_counter() - t0) * 1000.0)
            times[k] += ts
            blocks[k].append(statistics.median(ts))
            time.sleep(0.01)  # let spinning worker threads of the previous engine go idle
    out = {}
    for k in keys:
        ts = sorted(times[k])
        out[k] = {"median_ms": round(statistics.median(ts), 3), "min_ms": round(ts[0], 3), "p10_ms": round(ts[len(ts) // 10], 3),
                  "p90_ms": round(ts[min(len(ts) - 1, (9 * len(ts)) // 10)], 3), "runs": len(ts),
                  "block_medians": [round(b, 3) for b in blocks[k]]}
    return out


def paired_ratio(stats: dict, a, b) -> float | None:
    """Median over rounds of (block median of ``a``) / (block median of ``b``)."""
    if a not in stats or b not in stats:
        return None
    ra, rb = stats[a]["block_medians"], stats[b]["block_medians"]
    return round(statistics.median(x / y for x, y in zip(ra, rb)), 3)


def model_flops(variant: str) -> int:
    """FLOPs (2 x MACs) of one batch-1 forward pass, counted by ``torch.utils.flop_counter``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from conversion import input_shape, load_vitdeploy

    model = load_vitdeploy(variant)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(*input_shape(variant)))
    return int(counter.get_total_flops())


def _tflite_engine(path: Path, threads: int, pixels: bool, variant: str):
    from ai_edge_litert.interpreter import Interpreter

    from conversion import input_shape
    from vitdeploy.sample_images import natural_images

    interp = Interpreter(model_path=str(path), num_threads=int(threads))
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    _, _, h, _ = input_shape(variant)
    img = natural_images(1, h, seed=3).astype(np.float32)  # NHWC RGB 0..255
    x = img if pixels else np.ascontiguousarray(img.transpose(0, 3, 1, 2) / 255.0, dtype=np.float32)
    interp.set_tensor(d["index"], x.astype(d["dtype"]).reshape(d["shape"]))
    return interp.invoke


def _ort_engine(path: Path, threads: int, variant: str):
    import onnxruntime as ort

    from conversion import input_shape

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(input_shape(variant)).astype(np.float32)
    name = sess.get_inputs()[0].name
    return lambda: sess.run(None, {name: x})


def _torch_engine(model, variant: str):
    import torch

    from conversion import input_shape

    x = torch.randn(*input_shape(variant), generator=torch.Generator().manual_seed(0))

    def run():
        with torch.inference_mode():
            model(x)

    return run


def bench_variant(variant: str, artifacts: dict, threads=(1, 2), rounds: int = 8, block: int = 5,
                  log=print) -> dict:
    """``artifacts``: engine name -> path (missing engines are skipped, with the reason in ``skipped``)."""
    import torch

    from conversion import load_direct, load_vitdeploy

    engines, skipped = {}, {}
    hf = load_direct(variant)
    vd = load_vitdeploy(variant)
    for t in threads:
        for name, path in artifacts.items():
            if path is None or not Path(path).exists():
                skipped[name] = "artifact missing (conversion failed)"
                continue
            try:
                if name.endswith("onnx") or name.startswith("onnxruntime"):
                    engines[(name, t)] = _ort_engine(Path(path), t, variant)
                else:
                    engines[(name, t)] = _tflite_engine(Path(path), t, name.startswith("vitdeploy"), variant)
            except Exception as e:  # noqa: BLE001
                skipped[name] = f"{type(e).__name__}: {str(e)[:200]}"
        engines[("pytorch eager (HF)", t)] = _torch_engine(hf, variant)
        engines[("pytorch eager (vitdeploy)", t)] = _torch_engine(vd, variant)

    def before(key):
        if key[0].startswith("pytorch"):
            torch.set_num_threads(key[1])

    stats = interleaved(engines, rounds=rounds, block=block, before=before)
    torch.set_num_threads(max(threads))
    rows = []
    for (name, t), s in stats.items():
        rows.append({"variant": variant, "engine": name, "threads": t, **{k: v for k, v in s.items()
                                                                            if k != "block_medians"},
                     "vs_vitdeploy_fp32": paired_ratio(stats, (name, t), (REFERENCE, t))})
    speedups = {t: paired_ratio(stats, (REFERENCE, t), ("vitdeploy tflite int8", t)) for t in threads}
    direct = {t: paired_ratio(stats, ("direct tflite fp32", t), (REFERENCE, t)) for t in threads}
    return {"rows": rows, "int8_speedup": speedups, "direct_over_vitdeploy": direct, "skipped": skipped}


def artifacts_for(variant: str, conversions: list[dict]) -> dict:
    """Engine name -> artifact path, from ``bench/conversion.py`` rows."""
    want = {("tflite", "none", "vitdeploy"): "vitdeploy tflite fp32",
            ("tflite", "int8", "vitdeploy"): "vitdeploy tflite int8",
            ("tflite", "none", "direct"): "direct tflite fp32",
            ("onnx", "fp32", "onnx"): "onnxruntime (HF export)"}
    out = {name: None for name in want.values()}
    for r in conversions:
        name = want.get((r["target"], r["mode"], r["path"]))
        if r["variant"] == variant and name and r.get("ok"):
            out[name] = ROOT / r["artifact"]
    return out


def main() -> None:
    from conversion import run_conversions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["levit_128s"])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=5)
    args = parser.parse_args()
    jobs = (("tflite", "none", "vitdeploy"), ("tflite", "int8", "vitdeploy"), ("tflite", "none", "direct"),
            ("onnx", "fp32", "onnx"))
    for v in args.variants:
        conv = run_conversions([v], jobs=jobs)
        res = bench_variant(v, artifacts_for(v, conv), tuple(int(t) for t in args.threads.split(",")),
                            args.rounds, args.block)
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
