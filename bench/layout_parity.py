"""Max logit differences between vitdeploy's loaded model and each layout's reference, all variants.

    .venv/bin/python bench/layout_parity.py          # prints a markdown table

HF: against HF transformers' own implementation (random weights, randomised BN stats).
timm / timm-conv / official / cvnets: weights written in that layout (tests/layout_writers.py),
loaded back, compared with the model they came from.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from layout_writers import randomize_batchnorm, to_cvnets, to_official, to_timm_conv  # noqa: E402
from test_checkpoints import hf_model  # noqa: E402

from vitdeploy import checkpoints  # noqa: E402
from vitdeploy.models import VARIANTS, create_model  # noqa: E402


def _diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    d = (a - b).abs().max().item()
    return d, d / b.abs().max().item()


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for variant, info in VARIANTS.items():
            x = torch.randn(4, *info.input_size, generator=torch.Generator().manual_seed(0))
            ref = hf_model(variant)
            ref.save_pretrained(tmp / variant)
            with torch.no_grad():
                rows.append(("hf", variant, *_diff(checkpoints.load(tmp / variant).model(x),
                                                    ref(pixel_values=x).logits)))
            model = randomize_batchnorm(create_model(variant))
            writers = {"timm": lambda m: m.state_dict()}
            if info.family == "levit":
                writers.update({"timm-conv": to_timm_conv, "official": to_official})
            else:
                writers["cvnets"] = to_cvnets
            for layout, write in writers.items():
                path = tmp / f"{variant}-{layout}.pth"
                torch.save(write(model), path)
                with torch.no_grad():
                    rows.append((layout, variant, *_diff(checkpoints.load(path).model(x), model(x))))
    print("| layout | variant | max abs diff | max abs diff / max abs logit |")
    print("|---|---|---|---|")
    for layout, variant, d, r in sorted(rows):
        print(f"| {layout} | {variant} | {d:.2e} | {r:.2e} |")


if __name__ == "__main__":
    main()
