"""Does TFLite's PAD before a stride-2 conv cost anything in the whole model? Measured, then dropped.

    .venv/bin/python bench/stem_padding.py [--variants levit_128s] [--rounds 1000]

The op profile (``vitdeploy profile --ops``) times each op alone and gave the image stem's PAD 0.60 ms of
LeViT-128S's 4.1 ms w8a8 file. litert-torch writes PyTorch's ``Conv2d(3, stride=2, padding=1)`` on an even
input as PAD + VALID conv (TFLite's SAME pads 0 before, 1 after there). The same conv with its kernel grown
by one zero row and column (4x4) pads 1/1 under SAME, so the converter keeps the padding inside the conv:
same outputs in float, 16/9 the multiply-adds. This converts each reference three ways -- as shipped, the
image stem's conv grown ("stem"), every eligible stride-2 conv grown ("all") -- in fp32 and w8a8, and times
the three files of each precision interleaved at 1 and 2 threads (median of per-round ratios vs as shipped).
The rewrite lives here, not in ``vitdeploy.passes``: it bought nothing (docs/int8-goals.md, "The stem PAD").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REWRITE = "bench_grow_stride2_convs"


def grow_stride2_convs(model, max_in_channels: int) -> int:
    """Each zero-padded stride-2 Conv2d with an odd kernel, padding (k-1)/2 and at most ``max_in_channels``
    inputs -> the same conv with one zero row and column more (exact on even inputs, SAME padding 1/1)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def eligible(m) -> bool:
        return (isinstance(m, nn.Conv2d) and tuple(m.stride) == (2, 2) and tuple(m.dilation) == (1, 1)
                and m.padding_mode == "zeros" and isinstance(m.padding, tuple) and m.in_channels <= max_in_channels
                and all(k % 2 == 1 and k > 1 and p == (k - 1) // 2 for k, p in zip(m.kernel_size, m.padding)))

    names = [name for name, m in model.named_modules() if eligible(m)]
    for name in names:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        conv = getattr(owner, attr)
        grown = nn.Conv2d(conv.in_channels, conv.out_channels, tuple(k + 1 for k in conv.kernel_size), stride=2,
                          padding=conv.padding, groups=conv.groups, bias=conv.bias is not None)
        with torch.no_grad():
            grown.weight.copy_(F.pad(conv.weight, (0, 1, 0, 1)))
            if conv.bias is not None:
                grown.bias.copy_(conv.bias)
        setattr(owner, attr, grown)  # every reference input here is even-sized (224, 256)
    return len(names)


def convert_three(variant: str, mode: str, out: Path) -> dict:
    from vitdeploy import passes
    from vitdeploy.convert import convert
    from vitdeploy.quantization.tflite_graph import op_types
    from vitdeploy.references import checkpoint

    saved = dict(passes.PIPELINES)
    files, census = {}, {}
    for tag, max_in in (("shipped", 0), ("stem", 4), ("all", 1 << 20)):
        passes.PASSES[REWRITE] = lambda m, c=max_in: grow_stride2_convs(m, c)
        passes.PIPELINES.update({k: v + (REWRITE,) for k, v in saved.items() if k.startswith("tflite")})
        try:
            report = convert(checkpoint(variant), "tflite", out=out / f"{variant}_{mode}_{tag}.tflite", quantize=mode,
                             force=True)
        finally:
            passes.PIPELINES.clear()
            passes.PIPELINES.update(saved)
        files[tag] = Path(report["path"])
        ops = op_types(files[tag].read_bytes())
        census[tag] = {"grown_convs": report["rewrites"].get(REWRITE, 0), "PAD": ops.get("PAD", 0),
                       "ops": sum(ops.values())}
    return {"files": files, "census": census}


def timing(files: dict, rounds: int, threads: int) -> dict:
    from vitdeploy.runtimes.tflite import TFLiteRunner
    from vitdeploy.runtimes.timing import interleaved, median_ratio

    t = interleaved({n: TFLiteRunner(p, threads=threads) for n, p in files.items()}, rounds=rounds, keep_runs=True)
    return {"median_ms": {n: t[n]["median_ms"] for n in files},
            "speedup_vs_shipped": {n: median_ratio(t["shipped"]["runs_ms"], t[n]["runs_ms"]) for n in files
                                   if n != "shipped"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["levit_128s"])
    parser.add_argument("--modes", nargs="+", default=["fp32", "w8a8"])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / ".cache" / "stem_padding")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import os

    result = {"measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load": os.getloadavg()[0]}
    for variant in args.variants:
        for mode in args.modes:
            run = convert_three(variant, mode, args.out)
            result[f"{variant} {mode}"] = {"census": run["census"],
                                           **{f"{th} threads": timing(run["files"], args.rounds, th) for th in (1, 2)}}
            print(json.dumps(result[f"{variant} {mode}"]), flush=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
