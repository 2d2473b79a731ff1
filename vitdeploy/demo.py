"""``vitdeploy demo``: the main job end to end on built-in defaults.

Without arguments it writes seeded MobileViT-XS and LeViT-128S checkpoints (no
pretrained weights can be downloaded here), then for each checkpoint: inspect, fold
BatchNorm and check the folded model against the original, classify the built-in
natural images. Stages for the conversion targets join as they land.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import numpy as np

DEFAULT_VARIANTS = ("mobilevit_xs", "levit_128s")


def run_demo(checkpoint_paths: list[str], out_dir: str | Path, echo: Callable[[str], None] | None = print) -> dict:
    """Run the demo; returns a JSON-able summary. ``echo=None`` keeps it quiet."""
    say = echo or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not checkpoint_paths:
        checkpoint_paths = [str(_default_checkpoint(v, out, say)) for v in DEFAULT_VARIANTS]
    results = [_demo_one(Path(p), out, say) for p in checkpoint_paths]
    summary = {"out_dir": str(out), "models": results}
    _print_summary(results, say)
    return summary


def _default_checkpoint(variant: str, out: Path, say) -> Path:
    from .synthetic import write_seeded_checkpoint

    path = out / f"{variant}_seeded.safetensors"
    if not path.exists():
        say(f"writing seeded {variant} checkpoint (timm layout) -> {path}")
        write_seeded_checkpoint(variant, path, seed=0)
    return path


def _demo_one(path: Path, out: Path, say) -> dict:
    import torch

    from . import checkpoints
    from .passes import fold_batchnorm
    from .sample_images import natural_images

    t0 = time.perf_counter()
    ckpt = checkpoints.load(path)
    say(f"\n== {path.name}: {ckpt.variant} ({ckpt.layout} layout), {ckpt.preprocessing.describe()}")
    _, h, w = ckpt.input_size
    x = ckpt.preprocessing.normalize(natural_images(16, h))
    folded = copy.deepcopy(ckpt.model)
    report = fold_batchnorm(folded)
    with torch.no_grad():
        ref = ckpt.model(torch.from_numpy(x)).numpy()
        got = folded(torch.from_numpy(x)).numpy()
    rel = float(np.abs(got - ref).max() / np.abs(ref).max())
    say(f"BN folding: {report.total_folded} BatchNorm folded, {report.batchnorm_after} left, "
        f"max rel diff {rel:.2e} on 16 natural images")
    top1 = ref.argmax(1)
    return {
        "checkpoint": str(path),
        "variant": ckpt.variant,
        "layout": ckpt.layout,
        "bn_folding": report.to_dict(),
        "folded_max_rel_diff": rel,
        "top1_classes": top1.tolist(),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _print_summary(results: list[dict], say) -> None:
    say("\nsummary")
    say(f"{'variant':<15} {'layout':<8} {'BN folded':>9} {'fold rel diff':>13} {'distinct top-1':>14}")
    for r in results:
        say(f"{r['variant']:<15} {r['layout']:<8} {r['bn_folding']['total_folded']:>9} "
            f"{r['folded_max_rel_diff']:>13.2e} {len(set(r['top1_classes'])):>14}")
