"""Trained reference models: every variant trained from scratch on the photo-regions task.

    .venv/bin/python bench/train_reference.py [--variants levit_128s mobilevit_xxs ...] [--steps 1500]
                                              [--recipe default|timm] [--retrain] [--threads 2] [--export DIR]

No pretrained weights can be downloaded here, and random stand-ins say nothing about what
low precision costs. This trains each variant *at its native resolution* (MobileViT
multi-scale, see below) on the natural-image task of ``bench/photo_regions.py`` (22 photographs,
training crops and held-out crops from disjoint regions) with a standard recipe: AdamW
(weight decay 0.05, no decay on norms/biases), linear warmup then cosine decay, label smoothing
0.1, gradient clipping, and augmentation (random resized crops, flips, colour jitter). The loss
curve, training accuracy and held-out float top-1 are written to ``results.json``.

MobileViT trains multi-scale, as ml-cvnets does (a random side in 160/192 per batch: its
convolution/unfold path costs 5x more per step at 256 px on this CPU), then its BatchNorm
statistics are re-estimated at the native 256 px before evaluation (FixRes).

It uses CUDA when ``torch.cuda.is_available()``, else the CPU. Forward and backward run under bf16
autocast (fp32 master weights and optimizer state) where the hardware has bf16 arithmetic: on this
host's AVX512-BF16 a LeViT-384 step at batch 32 takes 0.85 s against 2.7 s in fp32 (2 threads);
``--amp off`` trains in fp32. Everything is cached under
``bench/.cache/train_reference/``; ``--export DIR`` writes fp16 safetensors (what is committed
under ``vitdeploy/references/``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CACHE = Path(__file__).resolve().parent / ".cache" / "train_reference"
# Training recipes. "default" made the committed references. "timm": closer to timm's defaults (twice the learning
# rate, no label smoothing, another seed) -- a second checkpoint per variant whose weights and activations were
# not shaped by the same recipe, to judge int8 techniques on more than one (issue 27).
RECIPES = {"default": {"lr": 1e-3, "label_smoothing": 0.1, "seed": 0},
           "timm": {"lr": 2e-3, "label_smoothing": 0.0, "seed": 1}}


def checkpoint_name(variant: str, recipe: str = "default") -> str:
    return f"{variant}_photos{'' if recipe == 'default' else '_' + recipe}.safetensors"
MOBILEVIT_TRAIN_SIDES = (160, 192)


def _param_groups(model, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norm weights and attention-bias tables (as timm does)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or "attention_biases" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def augment_batch(pixels: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 NHWC crops -> float NHWC 0..255 at ``side``: random resized crop (35-100 % area),
    horizontal flip, brightness/contrast/saturation jitter (+-20 %)."""
    from PIL import Image

    out = np.empty((len(pixels), side, side, 3), dtype=np.float32)
    for i, img in enumerate(pixels):
        h, w = img.shape[:2]
        area = rng.uniform(0.35, 1.0) * h * w
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        ch, cw = min(h, int(round(math.sqrt(area / ratio)))), min(w, int(round(math.sqrt(area * ratio))))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = Image.fromarray(img[top:top + ch, left:left + cw]).resize((side, side), Image.Resampling.BICUBIC)
        x = np.asarray(crop, dtype=np.float32)
        if rng.random() < 0.5:
            x = x[:, ::-1]
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.8, 1.2)
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * rng.uniform(0.8, 1.2)
        out[i] = np.clip(x, 0, 255)
    return out


def train(variant: str, data: Path, out: Path, *, steps: int, threads: int, batch: int = 32, lr: float = 1e-3,
          weight_decay: float = 0.05, seed: int = 0, log_every: int = 25, save_every: int = 50,
          amp: str = "auto", label_smoothing: float = 0.1) -> dict:
    """Train ``variant`` from scratch; save a timm-layout float32 checkpoint; return the training record.

    Every ``save_every`` steps the whole training state goes to ``<out>.partial.pt`` (tensors and plain
    numbers only, read back with ``weights_only=True``), and a run that finds one resumes from it: the
    larger variants take hours on a CPU, longer than one working session.
    """
    import torch
    from safetensors.torch import save_file

    from photo_regions import class_names
    from vitdeploy.checkpoints import preprocessing_for
    from vitdeploy.models import create_model, variant_info

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    use_bf16 = amp == "bf16" or (amp == "auto" and bf16_is_fast(device))
    info = variant_info(variant)
    pre = preprocessing_for(info.family, "timm")
    pool = np.load(data / "train.npz")
    pixels, targets = pool["pixels"], torch.from_numpy(pool["labels"])
    model = create_model(variant, num_classes=len(class_names())).train().to(device)
    opt = torch.optim.AdamW(_param_groups(model, weight_decay), lr=lr)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
    rng = np.random.default_rng(seed)
    wall, curve, losses, correct, order = time.perf_counter(), [], [], [], np.array([], dtype=int)
    partial = out.with_name(out.name + ".partial.pt")
    partial.parent.mkdir(parents=True, exist_ok=True)  # the first partial save comes before the checkpoint's
    first = 0
    if partial.is_file():
        state = torch.load(partial, map_location=device, weights_only=True)
        if state["steps"] == steps:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            rng.bit_generator.state = state["numpy_rng"]
            torch.set_rng_state(state["torch_rng"])
            order, curve, losses, correct = state["order"].numpy(), state["curve"], state["losses"], state["correct"]
            first, wall = state["step"], wall - state["seconds"]
            print(f"  {variant}: resuming at step {first} from {partial}", flush=True)
    for step in range(first, steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(len(pixels))])
        idx, order = order[:batch], order[batch:]
        side = int(rng.choice(MOBILEVIT_TRAIN_SIDES)) if info.family == "mobilevit" else info.img_size
        x = torch.from_numpy(pre.normalize(augment_batch(pixels[idx], side, rng))).to(device)
        y = targets[idx].to(device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        correct.append(float((logits.argmax(1) == y).float().mean()))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": round(float(np.mean(losses[-log_every:])), 4),
                          "train_acc": round(float(np.mean(correct[-log_every:])), 3),
                          "lr": round(sched.get_last_lr()[0], 7), "seconds": round(time.perf_counter() - wall, 1)})
            print(f"  {variant} " + " ".join(f"{k} {v}" for k, v in curve[-1].items()), flush=True)
        if (step + 1) % save_every == 0 and step + 1 < steps:
            _save_partial(partial, step + 1, steps, model, opt, sched, rng, order, curve, losses, correct,
                          time.perf_counter() - wall)
    model = model.cpu()
    if info.family == "mobilevit":
        recalibrate_batchnorm(model, pixels, pre, info.img_size, rng)
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out))
    partial.unlink(missing_ok=True)
    return {"variant": variant, "device": device, "steps": steps, "batch": batch, "lr": lr,
            "weight_decay": weight_decay, "label_smoothing": label_smoothing, "seed": seed, "warmup_steps": warmup,
            "autocast": "bf16" if use_bf16 else "off",
            "train_sides": list(MOBILEVIT_TRAIN_SIDES) if info.family == "mobilevit" else [info.img_size],
            "epochs": round(steps * batch / len(pixels), 2), "train_images": int(len(pixels)),
            "wall_seconds": round(time.perf_counter() - wall, 1), "loss_curve": curve, "checkpoint": str(out)}


def bf16_is_fast(device: str) -> bool:
    """Whether bf16 autocast speeds training up here: CUDA with bf16, or a CPU with native bf16 (AVX512-BF16/AMX)."""
    import torch

    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _save_partial(path: Path, step: int, steps: int, model, opt, sched, rng, order, curve, losses, correct,
                  seconds: float) -> None:
    """The training state after ``step`` steps, written aside and renamed (an interrupted save keeps the last)."""
    import torch

    tmp = path.with_name(path.name + ".tmp")
    torch.save({"step": step, "steps": steps, "model": model.state_dict(), "opt": opt.state_dict(),
                "sched": sched.state_dict(), "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "order": torch.from_numpy(np.asarray(order, dtype=np.int64)), "curve": curve, "losses": losses,
                "correct": correct, "seconds": seconds}, tmp)
    tmp.replace(path)


def recalibrate_batchnorm(model, pixels: np.ndarray, pre, side: int, rng: np.random.Generator, batch: int = 64,
                          images: int = 1024) -> None:
    """Re-estimate BatchNorm running statistics at the native resolution (no gradient step).

    A MobileViT trained at smaller sides keeps statistics of that scale; one pass over training
    crops at the native side fixes them (the train/test resolution discrepancy of FixRes).
    """
    import torch
    from PIL import Image

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over all batches
    model.train()
    chosen = rng.permutation(len(pixels))[:images]
    with torch.no_grad():
        for i in range(0, len(chosen), batch):
            x = np.stack([np.asarray(Image.fromarray(pixels[j]).resize((side, side), Image.Resampling.BICUBIC))
                          for j in chosen[i:i + batch]])
            model(torch.from_numpy(pre.normalize(x)))
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


def export_fp16(ckpt: Path, out: Path) -> Path:
    """The committed form: fp16 safetensors (half the bytes; vitdeploy loads them as float32)."""
    from safetensors.torch import load_file, save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in load_file(str(ckpt)).items()},
              str(out), metadata={"task": "photo_regions (bench/photo_regions.py)", "format": "pt"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["levit_128s", "mobilevit_xxs"])
    parser.add_argument("--steps", type=int, default=1500, help="AdamW steps per model (batch 32)")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default="default")
    parser.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                        help="bf16 autocast: auto = where the hardware has bf16 arithmetic")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--export", type=Path, default=None, help="write fp16 safetensors of each variant here")
    args = parser.parse_args()

    from photo_regions import build
    from vitdeploy.parity import evaluate

    data = CACHE.parent / "photo_regions"
    info = build(data)
    results_path = CACHE / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"models": {}}
    results["data"] = {k: v for k, v in info.items() if k != "sources"}
    recipe = RECIPES[args.recipe]
    for variant in args.variants:
        ckpt = CACHE / checkpoint_name(variant, args.recipe)
        key = variant if args.recipe == "default" else f"{variant}@{args.recipe}"
        entry = results["models"].get(key, {})
        if args.retrain or not ckpt.is_file():
            print(f"training {variant} ({args.steps} steps, recipe {args.recipe})", flush=True)
            entry["training"] = train(variant, data, ckpt, steps=args.steps, threads=args.threads,
                                      lr=args.lr or recipe["lr"], amp=args.amp, seed=recipe["seed"],
                                      label_smoothing=recipe["label_smoothing"])
            entry["training"]["recipe"] = args.recipe
        res = evaluate([ckpt], data / "heldout", threads=args.threads, batch_size=32)
        print(res.table(), flush=True)
        entry["float_top1"] = res.models[0].top1
        entry["heldout_images"] = res.models[0].n
        # Re-read: several variants may train in parallel processes, each adding its own entry.
        results = json.loads(results_path.read_text()) if results_path.is_file() else results
        results.setdefault("models", {})[key] = entry
        results["data"] = {k: v for k, v in info.items() if k != "sources"}
        CACHE.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1))
        if args.export:
            print(f"  exported {export_fp16(ckpt, args.export / checkpoint_name(variant, args.recipe))}")
    print(f"results: {results_path}")


if __name__ == "__main__":
    main()
