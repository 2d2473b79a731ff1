"""Cross-check vitdeploy against real timm: timm writes the checkpoints and the reference logits.

timm cannot be imported beside vitdeploy's torch, so the two halves run in two interpreters:

    # 1. timm side (a separate venv with timm; never imports vitdeploy)
    /work/interop-venv/bin/python bench/timm_crosscheck.py --export /tmp/xcheck
    # 2. vitdeploy side
    .venv/bin/python bench/timm_crosscheck.py --compare /tmp/xcheck

    .venv/bin/python bench/timm_crosscheck.py     # both, into a temporary directory

The export builds each ``timm.create_model(name, pretrained=False)``, gives it random weights
that make its logits non-degenerate (scaled normal init, BatchNorm running statistics measured
in train mode over random and structured images, then eval mode) and writes
``<name>.safetensors`` (timm's ``state_dict()``), ``<name>.input.npy`` (a fixed float32 NCHW
batch at the model's native size), ``<name>.logits.npy`` (timm's eval-mode float32 logits) and
``<name>.logits64.npy`` (the same model run in float64).
The compare loads every checkpoint with ``vitdeploy.checkpoints.load``, checks the layout and
the detected variant, runs the same batch in float32 and in float64 and prints a markdown table.
It exits 1 when a detection is wrong, a float32 relative logit difference
(max |diff| / max |timm logit|) exceeds 1e-4, or a float64 one exceeds 1e-9.

Random LeViTs are ill-conditioned when every residual branch ends in a BatchNorm of weight ~1
(timm's own float32 logits then differ from its float64 ones by up to 1e-1 for levit_256), which
would hide structure behind rounding. The export therefore scales the last BatchNorm of each
LeViT residual branch by RESIDUAL_GAIN, which puts timm's own float32 error near 1e-6; the
"timm fp32 noise" column shows that floor per model.

Create the interop venv (outside the repo; ~5.5 GB, a CUDA build of torch that runs on CPU):

    python3 -m venv /work/interop-venv
    /work/interop-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

INTEROP_PYTHON = Path(os.environ.get("VITDEPLOY_INTEROP_PYTHON", "/work/interop-venv/bin/python"))
REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4
TOLERANCE_FP64 = 1e-9
RESIDUAL_GAIN = 0.1
# LeViT: the last BatchNorm of each residual branch (attention, MLP, the downsample's residual MLP).
RESIDUAL_BN = r"(blocks\.\d+\.attn\.proj\.ln|blocks\.\d+\.mlp\.ln2|downsample\.mlp\.ln2)\.bn$"
BATCH = 4
SEED = 0

# timm model name -> (vitdeploy variant, expected layout)
MODELS: dict[str, tuple[str, str]] = {
    "levit_128s": ("levit_128s", "timm"),
    "levit_128": ("levit_128", "timm"),
    "levit_192": ("levit_192", "timm"),
    "levit_256": ("levit_256", "timm"),
    "levit_384": ("levit_384", "timm"),
    "levit_conv_128s": ("levit_128s", "timm-conv"),
    "levit_conv_128": ("levit_128", "timm-conv"),
    "levit_conv_192": ("levit_192", "timm-conv"),
    "levit_conv_256": ("levit_256", "timm-conv"),
    "levit_conv_384": ("levit_384", "timm-conv"),
    "mobilevit_xxs": ("mobilevit_xxs", "timm"),
    "mobilevit_xs": ("mobilevit_xs", "timm"),
    "mobilevit_s": ("mobilevit_s", "timm"),
}


def _images(n: int, size: int, seed: int) -> np.ndarray:
    """n float32 NCHW images cycling through kinds: gaussian noise, smooth colour gradients,
    oriented sinusoids and blocky uniform noise, roughly in a normalised image's range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    out = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        kind = i % 4
        if kind == 0:
            img = rng.standard_normal((3, size, size))
        elif kind == 1:
            a = rng.uniform(-2, 2, (3, 3))
            img = a[:, 0, None, None] * yy + a[:, 1, None, None] * xx + a[:, 2, None, None] * xx * yy
        elif kind == 2:
            f, th, ph = rng.uniform(2, 12, 3), rng.uniform(0, np.pi, 3), rng.uniform(0, 2 * np.pi, 3)
            img = np.stack([1.5 * np.sin(np.pi * f[c] * (np.cos(th[c]) * xx + np.sin(th[c]) * yy) + ph[c])
                            for c in range(3)])
        else:
            block = rng.uniform(-2, 2, (3, size // 16, size // 16))
            img = np.kron(block, np.ones((16, 16))) + 0.3 * rng.standard_normal((3, size, size))
        out[i] = img
    return out


# --- timm side ---------------------------------------------------------------------------

def export(out_dir: Path, names: list[str]) -> None:
    import copy
    import re

    import safetensors.torch
    import timm
    import torch
    from torch import nn

    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"timm": timm.__version__, "torch": torch.__version__, "models": {}}
    for name in names:
        torch.manual_seed(SEED)
        model = timm.create_model(name, pretrained=False)
        size = model.pretrained_cfg["input_size"][-1]
        with torch.no_grad():
            for mname, m in model.named_modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    fan_in = m.weight[0].numel()
                    m.weight.normal_(0, fan_in ** -0.5)
                    if m.bias is not None:
                        m.bias.normal_(0, 0.1)
                elif isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
                    if m.weight is not None:
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.normal_(0, 0.2)
                    if name.startswith("levit") and re.search(RESIDUAL_BN, mname):
                        m.weight.mul_(RESIDUAL_GAIN)
                        m.bias.mul_(RESIDUAL_GAIN)
            for pname, p in model.named_parameters():
                if pname.endswith("attention_biases"):
                    p.normal_(0, 1.0)
            # BatchNorm running statistics from data: cumulative average (momentum=None) in train mode.
            bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None
            model.train()
            for k in range(3):
                model(torch.from_numpy(_images(8, size, seed=100 + k)))
            model.eval()
            for bn in bns:
                bn.momentum = 0.1
            x = torch.from_numpy(_images(BATCH, size, seed=SEED))
            logits = model(x)
            logits64 = copy.deepcopy(model).double()(x.double())
        noise = float((logits.double() - logits64).abs().max() / logits64.abs().max())
        spread = float(logits.std(0).mean() / logits.std())
        ok = bool(torch.isfinite(logits).all()) and spread > 0.05
        print(f"{name}: input {tuple(x.shape)}, logits {tuple(logits.shape)}, |max| {logits.abs().max():.3g}, "
              f"batch spread {spread:.2f}, timm fp32-vs-fp64 {noise:.1e}, argmax {logits.argmax(1).tolist()}",
              file=sys.stderr)
        if not ok:
            raise SystemExit(f"{name}: degenerate logits (spread {spread:.3g}); refusing to export")
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        safetensors.torch.save_file(sd, str(out_dir / f"{name}.safetensors"))
        np.save(out_dir / f"{name}.input.npy", x.numpy())
        np.save(out_dir / f"{name}.logits.npy", logits.numpy())
        np.save(out_dir / f"{name}.logits64.npy", logits64.numpy())
        meta["models"][name] = {"input_size": size, "num_keys": len(sd), "batch_spread": spread,
                                "timm_fp32_noise": noise,
                                "pretrained_cfg": {k: model.pretrained_cfg.get(k) for k in
                                                   ("mean", "std", "interpolation", "crop_pct", "input_size")}}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


# --- vitdeploy side ----------------------------------------------------------------------

def compare(out_dir: Path) -> int:
    import torch

    from vitdeploy import checkpoints

    meta = json.loads((out_dir / "meta.json").read_text())
    rows, failures = [], []
    for name in meta["models"]:
        want_variant, want_layout = MODELS[name]
        path = out_dir / f"{name}.safetensors"
        try:
            ckpt = checkpoints.load(path)
        except Exception as e:  # noqa: BLE001 - report every model
            rows.append((name, "-", "-", "-", "-", "-", "-", "-", f"FAIL: {type(e).__name__}: {e}"))
            failures.append(name)
            continue
        x = torch.from_numpy(np.load(out_dir / f"{name}.input.npy"))
        ref = torch.from_numpy(np.load(out_dir / f"{name}.logits.npy"))
        ref64 = torch.from_numpy(np.load(out_dir / f"{name}.logits64.npy"))
        with torch.no_grad():
            y = ckpt.model(x)
            y64 = ckpt.model.double()(x.double())
        d = (y - ref).abs().max().item()
        rel = d / ref.abs().max().item()
        rel64 = ((y64 - ref64).abs().max() / ref64.abs().max()).item()
        problems = []
        if ckpt.layout != want_layout:
            problems.append(f"layout {ckpt.layout} != {want_layout}")
        if ckpt.variant != want_variant:
            problems.append(f"variant {ckpt.variant} != {want_variant}")
        if not rel <= TOLERANCE:
            problems.append(f"rel diff {rel:.2e} > {TOLERANCE:g}")
        if not rel64 <= TOLERANCE_FP64:
            problems.append(f"fp64 rel diff {rel64:.2e} > {TOLERANCE_FP64:g}")
        if problems:
            failures.append(name)
        rows.append((name, ckpt.layout, ckpt.variant, ckpt.preprocessing.channel_order, f"{d:.2e}", f"{rel:.2e}",
                     f"{meta['models'][name]['timm_fp32_noise']:.1e}", f"{rel64:.1e}",
                     "ok" if not problems else "FAIL: " + "; ".join(problems)))
    print(f"timm {meta['timm']} (torch {meta['torch']}) -> vitdeploy (torch {torch.__version__}), "
          f"batch {BATCH}, tolerance {TOLERANCE:g} (fp32) / {TOLERANCE_FP64:g} (fp64)\n")
    print("| timm model | layout | detected variant | channels | fp32 max abs diff | fp32 max abs diff / max abs logit "
          "| timm fp32 noise (own fp32 vs fp64) | fp64 rel diff | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if failures:
        print(f"\n{len(failures)} failure(s): {', '.join(failures)}")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--export", type=Path, metavar="DIR", help="timm side: write checkpoints, inputs and logits")
    g.add_argument("--compare", type=Path, metavar="DIR", help="vitdeploy side: load and compare")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), metavar="NAME",
                    help="timm models to export (default: all)")
    args = ap.parse_args(argv)
    if args.export:
        export(args.export, args.models)
        return 0
    if args.compare:
        return compare(args.compare)
    if not INTEROP_PYTHON.exists():
        print(f"No interop interpreter at {INTEROP_PYTHON} (override with VITDEPLOY_INTEROP_PYTHON). Create it "
              "outside the repo:\n\n    python3 -m venv /work/interop-venv\n"
              "    /work/interop-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm safetensors\n\n"
              "then run this script again, or the two halves by hand (see --help).", file=sys.stderr)
        return 2
    venv_python = REPO / ".venv" / "bin" / "python"
    compare_python = venv_python if venv_python.exists() else Path(sys.executable)
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="timm-crosscheck-") as tmp:
        # Run the timm half outside the repo so the repo's vitdeploy can never shadow anything.
        subprocess.run([str(INTEROP_PYTHON), script, "--export", tmp, "--models", *args.models], check=True,
                       cwd=tempfile.gettempdir())
        return subprocess.run([str(compare_python), script, "--compare", tmp], cwd=str(REPO)).returncode


if __name__ == "__main__":
    sys.exit(main())
