"""Core ML matrix: fidelity, size, conversion time and op counts per variant and precision/quantization.

    .venv/bin/python bench/coreml_matrix.py [variants...] [--modes fp32,fp16,w8,w8a8] [--images 16]
                                            [--calib 32] [--ops-only] [--json out.json]

For each variant (seeded stand-in weights, vitdeploy.synthetic) and mode -- fp32, fp16, w8 (int8
weights, fp16 compute), w8a8 (int8 weights and activations, fp16 compute, calibrated through the
MIL interpreter on the built-in images) -- convert to an image-input .mlpackage and report:
logits cosine (min over images), max abs error and top-1 agreement against fp32 PyTorch on
``--images`` held-out natural images (random crops never used for calibration), run through
vitdeploy's MIL interpreter with fp16 arithmetic emulated; size on disk; conversion seconds;
op counts (batch_norm, gather, total; ``before`` = the unfolded model through coremltools'
default pipeline, no vitdeploy passes).

``torch_ref_cos``: the same loss applied in PyTorch (fp16: ``model.half()``; w8: the same int8
per-channel weights) -- how sensitive the stand-in model itself is. The stand-ins amplify
last-stage feature errors ~10x at the head (head BatchNorm mean/std up to 10), so their fp16/int8
fidelity is far worse than a trained checkpoint's; compare Core ML with that column.
``--ops-only`` converts fp16 only, without running images (op counts for all variants quickly).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitdeploy.models import VARIANTS, variant_info  # noqa: E402
from vitdeploy.sample_images import natural_images  # noqa: E402

MODES = {"fp32": ("fp32", "none"), "fp16": ("fp16", "none"), "w8": ("fp16", "w8"), "w8a8": ("fp16", "w8a8")}


def metrics(got: np.ndarray, ref: np.ndarray) -> dict:
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    cos = np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {"cos_min": round(float(cos.min()), 5), "max_abs": round(float(np.abs(got - ref).max()), 4),
            "rel_max_abs": round(float(np.abs(got - ref).max() / np.abs(ref).max()), 5),
            "top1": round(float(np.mean(got.argmax(1) == ref.argmax(1))), 4)}


def torch_reference(model, x, mode: str) -> np.ndarray | None:
    """The PyTorch model with the same loss as ``mode`` (None for fp32 and w8a8)."""
    import torch

    from vitdeploy.targets.coreml import prepare_model

    if mode == "fp16":
        with torch.no_grad():
            return copy.deepcopy(model).half()(torch.from_numpy(x).half()).float().numpy()
    if mode == "w8":
        prepared, _, _ = prepare_model(model)
        with torch.no_grad():
            for t in list(prepared.parameters()) + [b for b in prepared.buffers() if b.is_floating_point()]:
                if t.numel() >= 2048 and t.ndim >= 2:
                    w = t.reshape(t.shape[0], -1).double()
                    scale = w.abs().max(1, keepdim=True).values / 127
                    t.copy_((torch.round(w / scale).clamp(-127, 127) * scale).reshape(t.shape))
            return prepared(torch.from_numpy(x)).numpy()
    return None


def run_variant(variant: str, modes: list[str], n_images: int, n_calib: int, ops_only: bool, work: Path) -> list[dict]:
    import torch

    from vitdeploy.checkpoints import preprocessing_for
    from vitdeploy.quantization import coreml as qcoreml
    from vitdeploy.runtimes.coreml import CoreMLRunner
    from vitdeploy.synthetic import seeded_model
    from vitdeploy.targets.coreml import convert_coreml

    info = variant_info(variant)
    pre = preprocessing_for(info.family, "timm")
    model = seeded_model(variant, 0)
    images = natural_images(qcoreml.N_CALIB + n_images, info.img_size, seed=0)
    calib, heldout = images[:n_calib], images[qcoreml.N_CALIB:]
    x = pre.normalize(heldout)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    rows = []
    for i, mode in enumerate(modes):
        precision, quantize = MODES[mode]
        out = work / f"{variant}_{mode}.mlpackage"
        t0 = time.perf_counter()
        conv = convert_coreml(model, variant=variant, input_size=info.input_size, preprocessing=pre, out=out,
                              precision=precision, quantize=quantize, calib=calib if quantize == "w8a8" else None,
                              count_before=(i == 0))
        seconds = time.perf_counter() - t0
        after = conv.op_counts_after
        row = {"variant": variant, "mode": mode, "size_mb": round(conv.size_bytes / 1e6, 2),
               "convert_s": round(seconds, 1), "batch_norm": after.get("batch_norm", 0),
               "gather": after.get("gather", 0) + after.get("gather_nd", 0), "ops": sum(after.values()),
               "max_rank": conv.max_tensor_rank, "op_counts_after": after}
        if conv.op_counts_before is not None:
            before = conv.op_counts_before
            row.update(before_batch_norm=before.get("batch_norm", 0), before_ops=sum(before.values()),
                       op_counts_before=before)
        if not ops_only:
            t1 = time.perf_counter()
            got = CoreMLRunner(out, runtime="interpreter").predict_nchw(x)
            row["interp_s_per_image"] = round((time.perf_counter() - t1) / len(x), 2)
            row.update(metrics(got, ref))
            torch_ref = torch_reference(model, x, mode)
            if torch_ref is not None:
                row["torch_ref_cos"] = metrics(torch_ref, ref)["cos_min"]
                row["torch_ref_top1"] = metrics(torch_ref, ref)["top1"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.startswith("op_counts")}), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    cols = ["variant", "mode", "cos_min", "max_abs", "top1", "torch_ref_cos", "torch_ref_top1", "size_mb",
            "convert_s", "batch_norm", "gather", "ops", "before_batch_norm", "before_ops", "max_rank"]
    cols = [c for c in cols if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=["levit_128s", "mobilevit_xxs", "mobilevit_s"])
    parser.add_argument("--modes", default="fp32,fp16,w8,w8a8")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--calib", type=int, default=32)
    parser.add_argument("--ops-only", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    variants = list(VARIANTS) if args.variants == ["all"] else args.variants
    modes = ["fp16"] if args.ops_only else args.modes.split(",")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="coreml-matrix-") as work:
        for variant in variants:
            rows += run_variant(variant, modes, args.images, args.calib, args.ops_only, Path(work))
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
