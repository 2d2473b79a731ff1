"""Learned int8 ranges through PT2E on a trained reference: w8a8 files compared on held-out images and speed.

    .venv/bin/python bench/pt2e_qat.py [--variant mobilevit_xxs] [--steps 300] [--rounds 40]

Converts the reference three ways exactly as a user would (``vitdeploy convert``, built-in calibration
images): fp32, w8a8 (ai-edge-quantizer's calibration and float-fallback search) and w8a8 with
``--int8-finetune STEPS`` (:mod:`vitdeploy.quantization.pt2e`: the int8 graph fine-tuned in PyTorch and
written by litert-torch with its own scales). Then, against the checkpoint's float logits:

* the 16 built-in held-out images the int8 search judges on (never calibrated or trained on);
* the labelled held-out crops of ``vitdeploy/references/heldout`` (worst cosine, top-1 agreement,
  top-1 against the labels);
* latency, 2 threads, interleaved (every round runs every file; ratios are medians of per-round ratios).

Writes ``bench/.cache/pt2e_qat.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / ".cache" / "pt2e_qat"


def heldout_sets(ckpt):
    """(16 built-in held-out images, labelled held-out crops, their labels) as uint8 NHWC pixels."""
    from vitdeploy.parity.evaluate import read_image_folder
    from vitdeploy.preprocessing import load_image_rgb
    from vitdeploy.quantization.calibration import split_calibration
    from vitdeploy.references import heldout_dir

    _, held, _ = split_calibration(None, ckpt.input_size[1], ckpt.input_size[2])
    data = read_image_folder(heldout_dir())
    crops = np.stack([load_image_rgb(p, ckpt.preprocessing) for p in data.files])
    return held, crops, data.targets


def judge(path: Path, sets: dict, reference: dict, labels) -> dict:
    from vitdeploy.runtimes.tflite import TFLiteRunner
    from vitdeploy.similarity import logits_agreement

    runner = TFLiteRunner(path, threads=2)
    out = {}
    for name, pixels in sets.items():
        logits = runner.predict_pixels(pixels)
        out[name] = logits_agreement(logits, reference[name])
        if name == "crops":
            out["crops_top1_labels"] = round(float((logits.argmax(1) == labels).mean()), 4)
    return out


def main() -> None:
    import torch

    from vitdeploy import checkpoints, references
    from vitdeploy.convert import convert
    from vitdeploy.quantization.tflite_graph import op_types
    from vitdeploy.runtimes.timing import interleaved_tflite

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="mobilevit_xxs", choices=references.VARIANTS)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    ckpt_path = references.checkpoint(args.variant)
    ckpt = checkpoints.load(ckpt_path)
    OUT.mkdir(parents=True, exist_ok=True)
    paths, row = {}, {"variant": args.variant, "steps": args.steps}
    for name, kwargs in (("fp32", {"quantize": "fp32"}), ("w8a8", {"quantize": "w8a8"}),
                         ("pt2e", {"quantize": "w8a8", "int8_finetune": args.steps})):
        t = time.perf_counter()
        report = convert(ckpt_path, "tflite", out=OUT / f"{args.variant}_{name}.tflite", force=True, **kwargs)
        paths[name] = Path(report["path"])
        row[f"convert_{name}_s"] = round(time.perf_counter() - t, 1)
        row[f"report_{name}"] = {k: report.get("quant_report", {}).get(k) for k in
                                 ("cosine_min_after", "top1_agreement_after", "float_fallback_ops", "finetune")}
    held, crops, labels = heldout_sets(ckpt)
    sets = {"held16": held, "crops": crops}
    with torch.no_grad():
        reference = {k: ckpt.model(torch.from_numpy(ckpt.preprocessing.normalize(v))).numpy() for k, v in sets.items()}
    for name, path in paths.items():
        row[name] = judge(path, sets, reference, labels)
        ops = op_types(path.read_bytes())
        row[name]["quantize_dequantize"] = ops.get("QUANTIZE", 0) + ops.get("DEQUANTIZE", 0)
        print(name, json.dumps(row[name]), flush=True)
    timed = interleaved_tflite(paths, threads=2, rounds=args.rounds, baseline="fp32")
    row["latency"] = {"median_ms": {n: timed[n]["median_ms"] for n in paths}, "speedup": timed["speedup"]}
    print(json.dumps(row["latency"]), flush=True)
    (ROOT / "bench" / ".cache" / "pt2e_qat.json").write_text(json.dumps(row, indent=1, default=str))


if __name__ == "__main__":
    main()
