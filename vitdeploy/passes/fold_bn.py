"""BatchNorm folding passes: Conv+BN, Linear+BN1d (LeViT's Linear_BN) and BN1d+Linear (LeViT's heads).

With ``w = gamma / sqrt(var + eps)``:
  W x + b followed by BN   ->  (W * w[:, None]) x + (b - mean) * w + beta
  BN followed by W x + b   ->  (W * w[None, :]) x + W (beta - mean * w) + b
Folds are computed in float64 so the folded model stays within float32 rounding of the original.
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.layers import ConvNorm, LinearNorm, NormLinear
from .registry import register_pass


def _bn_scale_shift(bn: nn.modules.batchnorm._BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    var = bn.running_var.double()
    mean = bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    denominator = var + bn.eps
    if not bool((denominator > 0).all()):
        # checkpoints.load refuses negative running_var by name; a model built in memory can still carry it.
        from ..errors import VitdeployError

        raise VitdeployError(f"cannot fold BatchNorm: running_var + eps <= 0 (min {float(denominator.min()):.3g}); "
                             "a variance cannot be negative")
    scale = gamma / torch.sqrt(denominator)
    shift = beta - mean * scale
    if not (bool(torch.isfinite(scale).all()) and bool(torch.isfinite(shift).all())):
        from ..errors import VitdeployError

        raise VitdeployError("cannot fold BatchNorm: the folded weights are not finite")
    return scale, shift


def _with_bias(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> nn.Module:
    """A copy of ``layer`` (Conv2d or Linear) carrying the given weight and a bias."""
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                        layer.dilation, layer.groups, bias=True, dtype=layer.weight.dtype)
    else:
        new = nn.Linear(layer.in_features, layer.out_features, bias=True, dtype=layer.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        new.bias.copy_(bias)
    return new


def _fold_after(layer: nn.Module, bn) -> nn.Module:
    scale, shift = _bn_scale_shift(bn)
    w = layer.weight.double()
    b = layer.bias.double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    w = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    return _with_bias(layer, w, b * scale + shift)


def _fold_before(bn, layer: nn.Linear) -> nn.Linear:
    scale, shift = _bn_scale_shift(bn)
    w = layer.weight.double()
    b = layer.bias.double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    return _with_bias(layer, w * scale[None, :], w @ shift + b)


def _pairs(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind) and isinstance(m.bn, nn.modules.batchnorm._BatchNorm)]


@register_pass("fold_conv_bn")
@torch.no_grad()
def fold_conv_bn(model: nn.Module) -> int:
    """Conv2d followed by BatchNorm2d -> one Conv2d with bias."""
    pairs = _pairs(model, ConvNorm)
    for m in pairs:
        setattr(m, m.conv_name, _fold_after(m.weight_layer, m.bn))
        m.bn = nn.Identity()
    return len(pairs)


@register_pass("fold_linear_bn")
@torch.no_grad()
def fold_linear_bn(model: nn.Module) -> int:
    """Linear followed by BatchNorm1d over features (LeViT's Linear_BN) -> one Linear."""
    pairs = _pairs(model, LinearNorm)
    for m in pairs:
        m.linear = _fold_after(m.linear, m.bn)
        m.bn = nn.Identity()
    return len(pairs)


@register_pass("fold_bn_linear")
@torch.no_grad()
def fold_bn_linear(model: nn.Module) -> int:
    """BatchNorm1d followed by Linear (LeViT's classifier heads) -> one Linear."""
    pairs = _pairs(model, NormLinear)
    for m in pairs:
        m.linear = _fold_before(m.bn, m.linear)
        m.bn = nn.Identity()
    return len(pairs)
