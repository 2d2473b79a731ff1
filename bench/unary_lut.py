"""Does the pinned LiteRT fold DEQUANTIZE -> float unary -> QUANTIZE into one int8 lookup table (XNNPACK)?

    .venv/bin/python bench/unary_lut.py [--rounds 200] [--threads 1]

Five 1x1 convolutions (32 channels, 96x96) with an activation between each, converted to fp32 and to w8a8
twice: every op int8, and the activation kept float between QUANTIZE/DEQUANTIZE (the quantizer's
NO_QUANTIZE). Activations: none, HARD_SWISH, LOGISTIC and GELU (tanh form: costly in float). If XNNPACK
fuses the float island into a table, its cost is one int8 pass whatever the activation costs in float.
Prints the op census of each file and the median ms, interleaved.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ACTIVATIONS = {"none": None, "hardswish": "HARD_SWISH", "sigmoid": "LOGISTIC", "gelu": "GELU"}


def net(activation: str):
    import torch
    from torch import nn

    act = {"none": nn.Identity(), "hardswish": nn.Hardswish(), "sigmoid": nn.Sigmoid(),
           "gelu": nn.GELU(approximate="tanh")}[activation]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(32, 32, 1) for _ in range(5))
            self.act = act

        def forward(self, x):
            for conv in self.convs[:-1]:
                x = self.act(conv(x))
            return self.convs[-1](x)

    torch.manual_seed(0)
    return Net().eval()


def main() -> None:
    import litert_torch
    import numpy as np
    import torch

    from vitdeploy.quantization import tflite as q
    from vitdeploy.quantization.tflite_graph import FallbackGroup, float_op_counts
    from vitdeploy.runtimes.tflite import delegation_census
    from vitdeploy.runtimes.timing import interleaved_tflite

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="unary_lut_"))
    calib = np.random.default_rng(0).standard_normal((8, 32, 96, 96)).astype(np.float32)
    paths = {}
    for activation, op in ACTIVATIONS.items():
        path = work / f"{activation}_fp32.tflite"
        litert_torch.convert(net(activation), (torch.randn(1, 32, 96, 96),)).export(str(path))
        paths[f"{activation} fp32"] = path
        float_model = path.read_bytes()
        qsvs = q._calibrate(float_model, calib, 1, "min_max")
        for label, groups in [("int8", [])] + ([(f"{op} float island", [FallbackGroup(op, "op_type", op, ())])]
                                               if op else []):
            model = q._static_int8(float_model, qsvs, groups, False)
            paths[f"{activation} {label}"] = work / f"{activation}_{label.replace(' ', '_')}.tflite"
            paths[f"{activation} {label}"].write_bytes(model)
            print(f"{activation} {label}: float ops {float_op_counts(model)}, "
                  f"not delegated {delegation_census(model)['not_delegated']}", flush=True)
    timing = interleaved_tflite(paths, threads=args.threads, rounds=args.rounds)
    print(json.dumps({name: timing[name]["median_ms"] for name in paths}, indent=1))


if __name__ == "__main__":
    main()
