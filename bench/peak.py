"""The machine's limit in the runtime users deploy to: peak GFLOP/s of LiteRT/XNNPACK on this CPU.

    .venv/bin/python bench/peak.py [--threads 1,2] [--runs 10]

Graphs, each converted with litert-torch (float32) and quantized with ai-edge-quantizer
(``static_wi8_ai8``, calibrated on random data: int8 GEMMs use AVX-512 VNNI in XNNPACK):

* ``fc``: one ``FULLY_CONNECTED`` ``[1, M, K] x [K, N]`` (M=K=N=2048, 17.2 GFLOP);
* ``bmm``: ``BATCH_MATMUL`` of two inputs ``[4, 1024, 1024] @ [4, 1024, 1024]`` (8.6 GFLOP, float only:
  the quantizer leaves input-input matmuls float);
* ``conv``: four 3x3 ``CONV_2D`` 256->256 at 56x56 (14.8 GFLOP).

Peak = the best of these at each thread count and precision. FLOPs = 2 x MACs.

``skeleton(model, input)``: every ``nn.Linear``/``nn.Conv2d`` of a model, each applied once to an
input of the shape it sees in the real forward pass (slices of one graph input, so nothing is
constant-folded), outputs reduced and summed; also quantized to int8 like the models. Timed in the same runtime, it tells how long the
model's GEMM/conv work alone takes at the model's own (small) shapes; the rest of the model's
latency is everything else (attention softmax, LayerNorm/BN, reshapes/transposes, activations).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache" / "peak"
sys.path.insert(0, str(ROOT))


def _graphs():
    import torch
    from torch import nn

    class FC(nn.Module):
        def __init__(self, k=2048, n=2048):
            super().__init__()
            self.fc = nn.Linear(k, n, bias=False)

        def forward(self, x):
            return self.fc(x)

    class BMM(nn.Module):
        def forward(self, a, b):
            return torch.matmul(a, b)

    class Convs(nn.Module):
        def __init__(self, c=256, layers=4):
            super().__init__()
            self.convs = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(layers)])

        def forward(self, x):
            return self.convs(x)

    torch.manual_seed(0)
    return {
        "fc 2048x2048x2048 (FULLY_CONNECTED)": (FC(), [(1, 2048, 2048)], 2 * 2048 ** 3),
        "bmm 4x1024^3 (BATCH_MATMUL)": (BMM(), [(4, 1024, 1024), (4, 1024, 1024)], 2 * 4 * 1024 ** 3),
        "conv 4x 3x3 256ch 56x56 (CONV_2D)": (Convs(), [(1, 256, 56, 56)], 2 * 4 * 56 * 56 * 256 * 256 * 9),
    }


def _versions_key() -> str:
    import hashlib
    from importlib.metadata import version

    import inspect

    # Only what shapes the converted graphs: the graph builders (not the timing code) and the versions.
    h = hashlib.sha256((inspect.getsource(_graphs) + inspect.getsource(skeleton_module)).encode())
    for pkg in ("torch", "litert-torch", "ai-edge-quantizer"):
        h.update(version(pkg).encode())
    return h.hexdigest()[:10]


def convert_float(module, shapes, path: Path) -> bytes:
    """litert-torch conversion of ``module`` (cached by file)."""
    import torch

    if path.exists():
        return path.read_bytes()
    import litert_torch

    path.parent.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    sample = tuple(torch.randn(*s, generator=g) for s in shapes)
    with torch.no_grad():
        litert_torch.convert(module.eval(), sample).export(str(path))
    return path.read_bytes()


def quantize_int8(float_bytes: bytes, shapes, path: Path) -> bytes | None:
    """Static int8 (weights and activations) with ai-edge-quantizer; None when the graph has no weights."""
    if path.exists():
        return path.read_bytes()
    if len(shapes) != 1:
        return None
    from vitdeploy.quantization.tflite import quantize_int8 as q8

    rng = np.random.default_rng(0)
    calib = rng.standard_normal((4, *shapes[0][1:])).astype(np.float32) if shapes[0][0] == 1 else None
    if calib is None:
        return None
    model, _ = q8(float_bytes, calib_inputs=calib, eval_inputs=calib[:2], max_rounds=0)
    path.write_bytes(model)
    return model


class Interp:
    """A bare LiteRT interpreter (XNNPACK) with random inputs set."""

    def __init__(self, model: bytes | Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        content = model.read_bytes() if isinstance(model, Path) else bytes(model)
        self.interpreter = Interpreter(model_content=content, num_threads=int(threads))
        self.interpreter.allocate_tensors()
        rng = np.random.default_rng(0)
        for d in self.interpreter.get_input_details():
            if np.dtype(d["dtype"]).kind == "f":
                x = rng.standard_normal(d["shape"]).astype(d["dtype"])
            else:
                x = rng.integers(-100, 100, d["shape"]).astype(d["dtype"])
            self.interpreter.set_tensor(d["index"], x)

    def __call__(self):
        self.interpreter.invoke()


def measure_peak(threads=(1, 2), runs: int = 8, log=print) -> dict:
    """``{"rows": [...], "peak": {("fp32"|"int8", threads): gflops}}`` (peak keyed as "fp32@2")."""
    from host_latency import interleaved

    key = _versions_key()
    rows, engines = [], {}
    for name, (module, shapes, flops) in _graphs().items():
        tag = name.split()[0]
        fpath = CACHE / f"{tag}-{key}.tflite"
        fbytes = convert_float(module, shapes, fpath)
        qbytes = None
        try:
            qbytes = quantize_int8(fbytes, shapes, CACHE / f"{tag}-{key}-int8.tflite")
        except Exception as e:  # noqa: BLE001 - report and go on with float
            log(f"  peak: int8 quantization of {tag} failed: {type(e).__name__}: {str(e)[:200]}")
        for t in threads:
            engines[(name, "fp32", t)] = (Interp(fbytes, t), flops)
            if qbytes is not None:
                engines[(name, "int8", t)] = (Interp(qbytes, t), flops)
    stats = interleaved({k: v[0] for k, v in engines.items()}, rounds=max(2, runs // 4), block=4, warmup=2)
    peak: dict[str, float] = {}
    for (name, dtype, t), (_, flops) in engines.items():
        med = stats[(name, dtype, t)]["median_ms"]
        gflops = flops / (med / 1000) / 1e9
        rows.append({"graph": name, "dtype": dtype, "threads": t, "median_ms": med, "gflops": round(gflops, 1)})
        k = f"{dtype}@{t}"
        peak[k] = max(peak.get(k, 0.0), round(gflops, 1))
    return {"rows": rows, "peak": peak}


# ----------------------------------------------------------------------------- model skeleton


def skeleton_module(model, example):
    """A module running only ``model``'s Linear/Conv2d layers, each on an input of its real shape."""
    import torch
    from torch import nn

    shapes: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: shapes.append((mod, tuple(inp[0].shape))))
             for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    numel = max(int(np.prod(s)) for _, s in shapes)

    class Skeleton(nn.Module):
        def __init__(self):
            super().__init__()
            import copy

            self.layers = nn.ModuleList([copy.deepcopy(m) for m, _ in shapes])
            self.shapes = [s for _, s in shapes]

        def forward(self, x):
            total = None
            for layer, s in zip(self.layers, self.shapes):
                n = int(np.prod(s))
                if len(s) == 4:  # feed convs channels-last data, as the converter lays them out anyway
                    inp = x[0, :n].reshape(s[0], s[2], s[3], s[1]).permute(0, 3, 1, 2)
                else:
                    inp = x[0, :n].reshape(s)
                y = layer(inp).sum()  # a full reduction: layout-agnostic, one read of the output
                total = y if total is None else total + y
            return total.reshape(1)

    flops = sum(_layer_flops(m, s) for m, s in shapes)
    return Skeleton().eval(), (1, numel), flops, len(shapes)


def _layer_flops(m, in_shape) -> int:
    from torch import nn

    if isinstance(m, nn.Linear):
        return 2 * int(np.prod(in_shape[:-1])) * m.in_features * m.out_features
    n, c, h, w = in_shape
    kh, kw = m.kernel_size
    sh, sw = m.stride
    ph, pw = m.padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return 2 * n * oh * ow * m.out_channels * (c // m.groups) * kh * kw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    result = measure_peak(tuple(int(t) for t in args.threads.split(",")), args.runs)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
