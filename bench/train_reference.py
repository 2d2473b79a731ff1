"""Trained reference models: LeViT-128S and MobileViT-XXS on scikit-learn's bundled digits.

    .venv/bin/python bench/train_reference.py [--variants levit_128s mobilevit_xxs] [--steps 60]
                                              [--retrain] [--coreml] [--int8-finetune STEPS] [--threads 2]

No pretrained weights can be downloaded here, and random stand-ins say little about how much
accuracy quantization really costs. This trains both families *at their native resolution*
(224 / 256) on the 8x8 digits (1797 images, 10 classes) upscaled to 64x64 RGB PNGs, read through the
checkpoint's own preprocessing (resize + centre crop + normalization) -- exactly how ``vitdeploy
eval`` reads them -- with a stratified 30 % held-out split. Then every TFLite quantization mode
(and Core ML, with ``--coreml``, when that target exists) is converted from the trained checkpoint
and evaluated on the held-out split next to the fp32 PyTorch model.

CPU budget: the machine is shared, so training is a short fixed schedule (``--steps``, default 60
AdamW steps of batch 32, about 1.5 epochs; warmup + cosine LR). Everything is cached under
``bench/.cache/train_reference/`` (gitignored): the image folders, the trained checkpoints, the artifacts, ``results.json`` and an
eval report (``report/report.html``). Re-running only re-evaluates unless ``--retrain``.
Needs scikit-learn (only for its bundled digits data set): ``pip install scikit-learn``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CACHE = Path(__file__).resolve().parent / ".cache" / "train_reference"  # own subfolder: bench/.cache is shared
MODES = ("none", "fp16", "dynamic", "int8")


def write_digits(root: Path, size: int = 64, test_fraction: float = 0.3, seed: int = 0) -> dict:
    """train/, test/ (ImageFolder, classes '0'..'9') and calib/ (64 mixed training images) under ``root``."""
    import numpy as np
    from PIL import Image

    marker = root / "done.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("needs scikit-learn for its bundled digits data set: .venv/bin/pip install scikit-learn")
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).round().clip(0, 255).astype(np.uint8)
    targets = digits.target
    rng = np.random.default_rng(seed)
    test = np.zeros(len(targets), dtype=bool)
    for c in range(10):  # stratified split
        idx = np.flatnonzero(targets == c)
        test[rng.permutation(idx)[: round(len(idx) * test_fraction)]] = True
    calib = rng.permutation(np.flatnonzero(~test))[:64]
    for i, (img, c) in enumerate(zip(images, targets)):
        pil = Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC).convert("RGB")
        split = "test" if test[i] else "train"
        (root / split / str(c)).mkdir(parents=True, exist_ok=True)
        pil.save(root / split / str(c) / f"{i:04d}.png")
        if i in set(calib.tolist()):
            (root / "calib").mkdir(parents=True, exist_ok=True)
            pil.save(root / "calib" / f"{i:04d}.png")
    info = {"train": int((~test).sum()), "test": int(test.sum()), "calib": len(calib), "size": size}
    marker.write_text(json.dumps(info))
    return info


def train(variant: str, data: Path, out: Path, *, steps: int, threads: int, batch: int = 32, lr: float = 2e-3,
          seed: int = 0, train_size: int | None = None) -> dict:
    """Train ``variant`` (10 classes) from scratch for ``steps`` AdamW steps; save a timm-layout checkpoint.

    A fixed step count (not a wall-clock budget) so the result does not depend on how busy the
    shared machine is: linear warmup over the first 10 % of steps, then cosine decay.
    ``train_size``: train MobileViT at this square resolution instead of its native one (it is
    resolution-agnostic and ml-cvnets itself trains multi-scale); LeViT's attention biases are
    tied to its resolution, so it always trains at 224.
    """
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from vitdeploy.checkpoints import preprocessing_for
    from vitdeploy.models import create_model, variant_info
    from vitdeploy.parity.evaluate import read_image_folder
    from vitdeploy.preprocessing import load_image_rgb

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    info = variant_info(variant)
    pre = preprocessing_for(info.family, "timm")  # the layout the checkpoint is saved in
    if train_size and info.family == "mobilevit":
        import dataclasses

        pre = dataclasses.replace(pre, crop=train_size, resize=round(train_size * pre.resize / pre.crop))
    ds = read_image_folder(data / "train")
    pixels = np.stack([load_image_rgb(p, pre) for p in ds.files])  # uint8, exactly as eval reads them
    targets = torch.from_numpy(ds.targets)
    model = create_model(variant, num_classes=10).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
    rng = np.random.default_rng(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    losses, correct, order = [], [], np.array([], dtype=int)
    for step in range(steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(len(pixels))])
        idx, order = order[:batch], order[batch:]
        x = torch.from_numpy(pre.normalize(pixels[idx]))
        y = targets[idx]
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        correct.append(float((logits.argmax(1) == y).float().mean()))
        if (step + 1) % 5 == 0 or step + 1 == steps:
            print(f"  {variant} step {step + 1}/{steps} loss {np.mean(losses[-5:]):.3f} "
                  f"train acc {np.mean(correct[-5:]):.2f} ({time.perf_counter() - wall:.0f}s)", flush=True)
    if pre.crop != info.img_size:
        recalibrate_batchnorm(model, variant, data, threads)
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    return {"variant": variant, "steps": steps, "batch": batch, "train_size": pre.crop, "epochs": round(steps * batch / len(pixels), 2),
            "wall_seconds": round(time.perf_counter() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "final_loss": round(float(np.mean(losses[-5:])), 4),
            "final_train_acc": round(float(np.mean(correct[-10:])), 3), "train_images": len(pixels),
            "checkpoint": str(out)}


def recalibrate_batchnorm(model, variant: str, data: Path, threads: int, batch: int = 64) -> None:
    """Re-estimate BatchNorm running statistics at the native resolution (no gradient step).

    A MobileViT trained at a smaller ``train_size`` keeps statistics of that scale; evaluated at
    its native resolution it then loses most of its accuracy (measured here: MobileViT-XS 22 %,
    -S 46 % held-out top-1 after training at 160 px). One pass over the training images at the
    native resolution fixes the statistics (the train/test resolution discrepancy of FixRes).
    """
    import numpy as np
    import torch

    from vitdeploy.checkpoints import preprocessing_for
    from vitdeploy.models import variant_info
    from vitdeploy.parity.evaluate import read_image_folder
    from vitdeploy.preprocessing import load_image_rgb

    torch.set_num_threads(threads)
    pre = preprocessing_for(variant_info(variant).family, "timm")
    files = read_image_folder(data / "train").files
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    model.train()
    with torch.no_grad():
        for i in range(0, len(files), batch):
            pixels = np.stack([load_image_rgb(p, pre) for p in files[i:i + batch]])
            model(torch.from_numpy(pre.normalize(pixels)))
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


def convert_all(ckpt: Path, data: Path, out_dir: Path, coreml: bool, int8_finetune: int = 0) -> list[Path]:
    from vitdeploy.convert import convert

    artifacts = []
    tflite_modes = [(mode, 0) for mode in MODES] + ([("int8", int8_finetune)] if int8_finetune else [])
    for mode, steps in tflite_modes:
        name = "fp32" if mode == "none" else mode + (f"_ft{steps}" if steps else "")
        out = out_dir / f"{ckpt.stem}_{name}.tflite"
        if not out.is_file() or out.stat().st_mtime < ckpt.stat().st_mtime:
            t = time.perf_counter()
            convert(ckpt, "tflite", out=out, quantize=mode, calib_dir=data / "calib" if mode == "int8" else None,
                    int8_finetune=steps)
            print(f"  converted {out.name} in {time.perf_counter() - t:.0f}s", flush=True)
        artifacts.append(out)
    if coreml:
        try:
            import vitdeploy.targets.coreml  # noqa: F401
        except ImportError as e:
            print(f"  Core ML skipped: {e}")
        else:
            for precision, quant in (("fp16", "none"), ("fp16", "w8"), ("fp16", "w8a8")):
                out = out_dir / f"{ckpt.stem}_{precision}{'' if quant == 'none' else '_' + quant}.mlpackage"
                if not out.exists():
                    convert(ckpt, "coreml", out=out, precision=precision, quantize=quant,
                            calib_dir=data / "calib")
                artifacts.append(out)
    return artifacts


def write_suite_accuracy(results: dict) -> Path:
    """``bench/.cache/reference_accuracy.json``: the rows docs/benchmarks.md's accuracy section shows."""
    rows = []
    for variant, entry in results["models"].items():
        acc = entry.get("accuracy") or []
        base = next((a for a in acc if a["model"].endswith(".safetensors")), None)
        training = entry.get("training") or {}
        for a in acc:
            rows.append({"variant": variant, "model": a["model"], "top-1 %": round(100 * a["top1"], 2),
                         "drop vs checkpoint (pts)": round(100 * (base["top1"] - a["top1"]), 2) if base else None,
                         "top-5 %": round(100 * a["top5"], 2), "images": a["n"],
                         "training": f"{training.get('steps', '?')} steps, {training.get('epochs', '?')} epochs, "
                                     f"{training.get('train_size', 'native')} px"})
    out = CACHE.parent / "reference_accuracy.json"
    out.write_text(json.dumps({"data": results["data"], "rows": rows}, indent=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["levit_128s", "mobilevit_xxs"])
    parser.add_argument("--steps", type=int, default=60, help="training steps per model (batch 32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--limit-per-class", type=int, default=None,
                        help="evaluate on at most this many held-out images per class (default: all ~54)")
    parser.add_argument("--coreml", action="store_true", help="also convert and evaluate Core ML (MIL interpreter)")
    parser.add_argument("--train-size", type=int, default=None,
                        help="MobileViT training resolution (default: native 256; evaluation is always native)")
    parser.add_argument("--recalibrate-bn", action="store_true",
                        help="only re-estimate BatchNorm statistics of existing checkpoints at native resolution")
    parser.add_argument("--int8-finetune", type=int, default=0, metavar="STEPS",
                        help="also convert TFLite int8 with this many steps of int8 fine-tuning (`_int8_ftSTEPS`)")
    parser.add_argument("--train-only", action="store_true",
                        help="train and evaluate the checkpoint only (no artifacts; `vitdeploy build` converts them)")
    args = parser.parse_args()

    from vitdeploy.parity import evaluate
    from vitdeploy.reports import write_report

    data = CACHE / "digits"
    print(f"data: {write_digits(data)}", flush=True)
    results = {"data": json.loads((data / "done.json").read_text()), "models": {}}
    previous = CACHE / "results.json"
    if previous.is_file():
        results["models"] = json.loads(previous.read_text()).get("models", {})
    all_rows = []
    for variant in args.variants:
        ckpt = CACHE / f"{variant}_digits.safetensors"
        entry = results["models"].get(variant, {})
        if args.recalibrate_bn and ckpt.is_file():
            from safetensors.torch import load_file, save_file

            from vitdeploy.models import create_model

            model = create_model(variant, num_classes=10)
            model.load_state_dict(load_file(str(ckpt)))
            recalibrate_batchnorm(model, variant, data, args.threads)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt))
            entry.setdefault("training", {})["bn_recalibrated_at_native"] = True
        elif args.retrain or not ckpt.is_file():
            print(f"training {variant} ({args.steps} steps)", flush=True)
            entry["training"] = train(variant, data, ckpt, steps=args.steps, threads=args.threads,
                                      train_size=args.train_size)
        artifacts = [] if args.train_only else convert_all(ckpt, data, CACHE / "artifacts", args.coreml,
                                                                args.int8_finetune)
        res = evaluate([ckpt, *artifacts], data / "test", threads=args.threads, batch_size=32,
                       limit_per_class=args.limit_per_class)
        print(res.table(), flush=True)
        entry["accuracy"] = [{"model": Path(m.model).name, "top1": m.top1, "top5": m.top5, "n": m.n}
                             for m in res.models]
        results["models"][variant] = entry
        for m in res.to_dict()["models"]:
            m["name"] = Path(m["model"]).name
            all_rows.append(m)
        previous.write_text(json.dumps(results, indent=2))
    write_suite_accuracy(results)
    dataset = {"root": str(data / "test"), "images": all_rows[0]["n"] if all_rows else 0, "classes": 10,
               "labels_file": None}
    paths = write_report(CACHE / "report", kind="eval", data={"kind": "eval", "dataset": dataset, "models": all_rows},
                         title="Trained reference models on digits: fp32 vs quantized")
    print(f"results: {previous}\nreport: {paths['html']}")


if __name__ == "__main__":
    main()
