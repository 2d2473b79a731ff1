"""Layers shared by both families: a weight layer and its BatchNorm, kept as a pair so
the BN-folding passes can find them by type.

State-dict names follow timm (``linear``/``conv`` + ``bn``), vitdeploy's canonical layout.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvNorm(nn.Module):
    """Conv2d (no bias) followed by BatchNorm2d; LeViT's stem names the conv ``linear``."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, conv_name: str = "linear"):
        super().__init__()
        self.conv_name = conv_name
        self.add_module(conv_name, nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False))
        self.bn = nn.BatchNorm2d(out_chs)

    @property
    def weight_layer(self) -> nn.Conv2d:
        return getattr(self, self.conv_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.weight_layer(x))


class ConvNormAct(ConvNorm):
    """MobileViT's conv + BatchNorm2d + optional activation (timm ``ConvNormAct``: ``conv``, ``bn``)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 act: bool = True):
        super().__init__(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups, conv_name="conv")
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class LinearNorm(nn.Module):
    """Linear (no bias) followed by BatchNorm1d over the feature axis of a (B, N, C) tensor."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.bn = nn.BatchNorm1d(out_features)

    @property
    def weight_layer(self) -> nn.Linear:
        return self.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        if isinstance(self.bn, nn.Identity):
            return x
        return self.bn(x.flatten(0, 1)).reshape_as(x)


class NormLinear(nn.Module):
    """BatchNorm1d followed by Linear: LeViT's classifier heads."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.linear = nn.Linear(in_features, out_features)

    @property
    def weight_layer(self) -> nn.Linear:
        return self.linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.bn(x))
