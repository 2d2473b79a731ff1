"""TFLite matrix: size, conversion time, fidelity and host latency per variant and quantization.

    .venv/bin/python bench/tflite_matrix.py [variants...] [--threads 2] [--runs 30] [--json out.json]

For each variant: PyTorch eager latency, then convert with quantize none/fp16/dynamic/int8
(pixel-input .tflite), and report file size, conversion seconds, logits cosine and top-1
agreement against PyTorch on 16 held-out natural images, and LiteRT/XNNPACK median latency.

No trained weights can be downloaded here, so the models are random-init with BatchNorm
statistics set from natural images (see ``input_dependent``): their logits differ per image,
unlike a plain random init, but they are not trained networks -- quantization fidelity on real
checkpoints is usually better (trained nets are less sensitive to activation noise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitdeploy.preprocessing import Preprocessing  # noqa: E402
from vitdeploy.sample_images import natural_images  # noqa: E402

MODES = ("none", "fp16", "dynamic", "int8")


def input_dependent(model, pre: Preprocessing, size: int, seed: int = 0):
    """Random weights with BatchNorm statistics from natural images (so logits vary per image), folded."""
    import torch
    from torch import nn

    from vitdeploy.passes import fold_batchnorm

    g = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        with torch.no_grad():
            bn.weight.copy_(0.5 * (1 + 0.3 * torch.randn(bn.num_features, generator=g)))
            bn.bias.copy_(0.3 * torch.randn(bn.num_features, generator=g))
        bn.train()
    with torch.no_grad():
        model(torch.from_numpy(pre.normalize(natural_images(12, size, seed=seed + 100))))
    model.eval()
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
    with torch.no_grad():
        spread = model(torch.from_numpy(pre.normalize(natural_images(4, size, seed=seed + 200)))).std()
        for head in heads:
            head.weight.mul_(3.0 / spread)
            if head.bias is not None:
                head.bias.mul_(3.0 / spread)
    fold_batchnorm(model)
    return model.eval()


def bench_variant(variant: str, work: Path, threads: int, runs: int, warmup: int) -> list[dict]:
    import torch

    from vitdeploy.models import create_model, family_of, variant_info
    from vitdeploy.quantization.tflite import logits_agreement
    from vitdeploy.runtimes.tflite import TFLiteRunner
    from vitdeploy.runtimes.timing import profile_tflite, profile_torch
    from vitdeploy.targets.tflite import convert_tflite

    info = variant_info(variant)
    pre = family_of(variant).preprocessing_default
    torch.manual_seed(0)  # create_model draws from the global RNG: same weights every run
    model = input_dependent(create_model(variant), pre, info.img_size)
    x = pre.normalize(natural_images(31, info.img_size, seed=11)[15:])  # held-out random crops
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    rows = []
    pt = profile_torch(model, info.input_size, threads=threads, runs=runs, warmup=warmup)
    rows.append({"variant": variant, "format": "pytorch eager", "size_mb": None, "convert_s": None,
                 "cosine": 1.0, "top1": 1.0, "min_ms": pt["min_ms"], "median_ms": pt["median_ms"], "p90_ms": pt["p90_ms"],
                 "float_ops": ""})
    for mode in MODES:
        conv = convert_tflite(model, input_size=info.input_size, preprocessing=pre, out=work / f"{variant}_{mode}.tflite",
                              quantize=mode, progress=lambda m: print(f"  [{variant} {mode}] {m}", file=sys.stderr))
        score = logits_agreement(TFLiteRunner(conv.path, threads=threads).predict_nchw(x), reference)
        lat = profile_tflite(conv.path, threads=threads, runs=runs, warmup=warmup)
        rows.append({"variant": variant, "format": f"tflite {mode}", "size_mb": round(conv.size_bytes / 1e6, 2),
                     "convert_s": conv.seconds, "cosine": score["cosine_mean"], "top1": score["top1_agreement"],
                     "min_ms": lat["min_ms"], "median_ms": lat["median_ms"], "p90_ms": lat["p90_ms"],
                     "float_ops": ",".join(conv.float_fallback_ops),
                     "int8_cosine_before_after": (conv.quant_report.get("cosine_before"),
                                                  conv.quant_report.get("cosine_after")) if mode == "int8" else None})
    return rows


def markdown(rows: list[dict]) -> str:
    head = ("| variant | format | size MB | convert s | cosine vs torch | top-1 agree | min ms | median ms | p90 ms "
            "| int8 float fallback |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        fmt = lambda v: "" if v is None else (f"{v:.6f}" if isinstance(v, float) and v < 1 and v > 0.9 else str(v))  # noqa: E731
        lines.append(f"| {r['variant']} | {r['format']} | {fmt(r['size_mb'])} | {fmt(r['convert_s'])} | "
                     f"{fmt(r['cosine'])} | {fmt(r['top1'])} | {r['min_ms']:.2f} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | "
                     f"{r['float_ops']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["levit_128s", "mobilevit_xxs"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for variant in args.variants:
            rows += bench_variant(variant, Path(work), args.threads, args.runs, args.warmup)
    print(markdown(rows))
    int8 = [r for r in rows if r["format"] == "tflite int8"]
    for r in int8:
        before, after = r["int8_cosine_before_after"]
        print(f"{r['variant']} int8 route: cosine vs float tflite {before} (all int8) -> {after} "
              f"(float: {r['float_ops'] or 'none'})")
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"threads={args.threads} runs={args.runs} warmup={args.warmup}; load average {load} "
          f"(latency is wall-clock: other jobs on the host inflate it); total {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
