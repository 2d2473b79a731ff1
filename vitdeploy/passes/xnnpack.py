"""XNNPACK rewrites for the ExecuTorch target: the same function in ops XNNPACK's partitioner takes.

ExecuTorch's XNNPACK partitioner has no LayerNorm and takes ``mean.dim`` only as a 4-D global average
pool, so every ``nn.LayerNorm`` stayed a portable kernel between two delegate calls: trained
MobileViT-XXS fp32 ran as 32 XNNPACK calls with 21 ``native_layer_norm`` kernels between them (4.98 ms
vs 3.79 ms for its .tflite, 2 threads). :func:`layernorm_as_linear` computes the two reductions as
linear layers against a constant ``1/C`` vector (sum of ``x_i / C``: the mean, in float32 like the
original), which XNNPACK runs as fully-connected ops next to its sub/mul/rsqrt/add.
"""

from __future__ import annotations

import functools

from .registry import register_pass


@register_pass("layernorm_as_linear")
def layernorm_as_linear(model) -> int:
    """Every ``nn.LayerNorm`` over the last dimension -> :class:`LinearReductionLayerNorm` (same function)."""
    from torch import nn

    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm) and len(child.normalized_shape) == 1:
                setattr(parent, name, _layernorm_cls()(child))
                count += 1
    return count


@functools.lru_cache(maxsize=None)
def _layernorm_cls():
    import torch
    from torch.nn import functional as F

    class LinearReductionLayerNorm(torch.nn.Module):
        """LayerNorm with its mean and variance as ``linear(x, 1/C)``: ops XNNPACK delegates."""

        def __init__(self, norm: torch.nn.LayerNorm):
            super().__init__()
            (channels,) = norm.normalized_shape
            self.eps = float(norm.eps)
            self.register_buffer("average", torch.full((1, channels), 1.0 / channels))
            self.weight = norm.weight
            self.bias = norm.bias

        def forward(self, x):
            centred = x - F.linear(x, self.average)
            scaled = centred * torch.rsqrt(F.linear(centred * centred, self.average) + self.eps)
            if self.weight is not None:
                scaled = scaled * self.weight
            if self.bias is not None:
                scaled = scaled + self.bias
            return scaled

    LinearReductionLayerNorm.__module__ = __name__
    LinearReductionLayerNorm.__qualname__ = "LinearReductionLayerNorm"
    return LinearReductionLayerNorm


def layernorm_class_name() -> str:
    """The qualified class name the quantizer's filters see (kept float in int8: see targets.executorch)."""
    cls = _layernorm_cls()
    return f"{cls.__module__}.{cls.__qualname__}"
