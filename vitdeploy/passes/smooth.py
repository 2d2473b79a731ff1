"""Scale migration LayerNorm -> Linear (SmoothQuant, Xiao et al. 2023), exact in float.

MobileViT's transformer blocks feed a LayerNorm's output into a Linear (``norm1 -> attn.qkv``,
``norm2 -> mlp.fc1``). A few LayerNorm channels carry values far larger than the rest (their
gamma is large), and per-tensor int8 activations give the rest few levels. With per-channel
``s``:  ``W (gamma * n + beta) = (W diag(s)) ((gamma / s) * n + beta / s)``, so dividing the
LayerNorm's affine by ``s`` and multiplying the Linear's input columns by ``s`` changes nothing
in float and moves the outlier range from the activation (one int8 scale per tensor) to the
weights (one int8 scale per output channel, which absorbs it). ``s_j = max|x_j|^a / max|W_j|^(1-a)``.
"""

from __future__ import annotations

import numpy as np

DEFAULT_ALPHA = 0.5


def layernorm_linear_pairs(model) -> list[tuple[str, object, object]]:
    """(name, LayerNorm, Linear) for every pre-norm transformer block (``norm1/attn.qkv``, ``norm2/mlp.fc1``)."""
    from torch import nn

    pairs = []
    for name, block in model.named_modules():
        for norm_name, linear_path in (("norm1", ("attn", "qkv")), ("norm2", ("mlp", "fc1"))):
            norm = getattr(block, norm_name, None)
            linear = block
            for part in linear_path:
                linear = getattr(linear, part, None)
            if isinstance(norm, nn.LayerNorm) and isinstance(linear, nn.Linear) and norm.elementwise_affine:
                pairs.append((f"{name}.{norm_name}", norm, linear))
    return pairs


def smooth_layernorm_linear(model, inputs: np.ndarray, alpha: float = DEFAULT_ALPHA, batch: int = 16) -> dict:
    """Migrate activation outliers of each LayerNorm into the next Linear, in place; returns a report.

    ``inputs``: calibration batch in the model's input convention (NCHW float), used to measure
    each LayerNorm output channel's largest magnitude.
    """
    import torch

    pairs = layernorm_linear_pairs(model)
    if not pairs:
        return {"pairs": 0}
    amax = {name: None for name, _, _ in pairs}
    handles = []
    for name, norm, _ in pairs:
        def hook(_m, _args, out, name=name):
            m = out.detach().abs().reshape(-1, out.shape[-1]).amax(0)
            amax[name] = m if amax[name] is None else torch.maximum(amax[name], m)
        handles.append(norm.register_forward_hook(hook))
    try:
        with torch.no_grad():
            for i in range(0, len(inputs), batch):
                model(torch.as_tensor(np.asarray(inputs[i:i + batch], dtype=np.float32)))
    finally:
        for h in handles:
            h.remove()
    spreads_before, spreads_after = [], []
    with torch.no_grad():
        for name, norm, linear in pairs:
            x_max = amax[name].double().clamp_min(1e-5)
            w_max = linear.weight.detach().double().abs().amax(0).clamp_min(1e-5)
            s = (x_max ** alpha / w_max ** (1 - alpha)).clamp_min(1e-5)
            s = s / torch.exp(torch.log(s).mean())  # keep the overall scale: only the spread moves
            norm.weight.copy_((norm.weight.double() / s).to(norm.weight.dtype))
            norm.bias.copy_((norm.bias.double() / s).to(norm.bias.dtype))
            linear.weight.copy_((linear.weight.double() * s[None, :]).to(linear.weight.dtype))
            spreads_before.append(float(x_max.max() / x_max.median()))
            spreads_after.append(float((x_max / s).max() / (x_max / s).median()))
    return {"pairs": len(pairs), "alpha": alpha,
            "channel_spread_before": round(float(np.median(spreads_before)), 2),
            "channel_spread_after": round(float(np.median(spreads_after)), 2),
            "max_channel_spread_before": round(float(np.max(spreads_before)), 2),
            "max_channel_spread_after": round(float(np.max(spreads_after)), 2)}
