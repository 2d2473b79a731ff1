"""Core ML rewrites: model changes that cut Core ML ops and change nothing beyond float rounding.

Registered like the BatchNorm folds (``two_op_hardswish``, ``attention_scale_into_query``, and
``merged_heads``, which wraps the model in a new module); every one is a no-op on a model it already ran on.
The model must be BatchNorm-folded first (an unfolded BN after a projection would undo the scaling).
"""

from __future__ import annotations

import functools

from .registry import register_pass, run_passes


COREML_REWRITES = ("two_op_hardswish", "attention_scale_into_query", "merged_heads")


def restructure_for_coreml(model):
    """Rewrites that cut Core ML ops and change nothing beyond float rounding (model must be BN-folded).

    * ``two_op_hardswish``: coremltools lowers ``nn.Hardswish`` to thresholded_relu + sigmoid_hard + mul;
      ``x * hardsigmoid(x)`` is the same function (hardsigmoid is exactly 0 below -3) in two ops.
    * ``attention_scale_into_query``: folded into the query projection's weights and bias (one ``mul`` on
      every attention map fewer; exact for LeViT-128S's 1/4, one float rounding otherwise).
    * ``merged_heads``: LeViT's two classifier heads averaged into one linear layer: ``(h(x) + h_dist(x)) / 2``
      -> ``linear(x, (W + W_d) / 2, (b + b_d) / 2)`` (two ops fewer, one rounding of the weights).
    Returns (model, {rewrite: count}).
    """
    return run_passes(COREML_REWRITES, model)


@register_pass("two_op_hardswish")
def two_op_hardswish(model) -> int:
    """nn.Hardswish -> x * hardsigmoid(x) (Core ML: sigmoid_hard + mul instead of three ops)."""
    from torch import nn

    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Hardswish):
                setattr(parent, name, _TwoOpHardswish())
                count += 1
    return count


@register_pass("attention_scale_into_query")
def attention_scale_into_query(model) -> int:
    """Every attention's ``scale`` folded into its query projection (one mul per attention map fewer)."""
    import torch

    with torch.no_grad():
        return sum(_fold_attention_scale(module) for module in model.modules())


@functools.lru_cache(maxsize=None)
def _two_op_hardswish_cls():
    from torch import nn
    from torch.nn import functional as F

    class TwoOpHardswish(nn.Module):
        """hardswish(x) = x * hardsigmoid(x): Core ML sigmoid_hard + mul."""

        def forward(self, x):
            return x * F.hardsigmoid(x)

    return TwoOpHardswish


def _TwoOpHardswish():  # noqa: N802 - a factory standing in for a class defined lazily (torch import)
    return _two_op_hardswish_cls()()


def _fold_attention_scale(module) -> bool:
    """Multiply the query rows of the q projection by ``module.scale`` and set the scale to 1."""
    from ..models import levit, mobilevit

    scale = float(getattr(module, "scale", 1.0))
    if scale == 1.0:
        return False
    if isinstance(module, levit.Attention):
        layer = module.qkv.linear
        per_head = 2 * module.key_dim + module.val_dim
        rows = [h * per_head + i for h in range(module.num_heads) for i in range(module.key_dim)]
    elif isinstance(module, levit.AttentionDownsample):
        layer = module.q.ln.linear
        rows = list(range(layer.out_features))
    elif isinstance(module, mobilevit.MultiHeadAttention):
        layer = module.qkv
        rows = list(range(module.num_heads * module.head_dim))
    else:
        return False
    if layer.bias is None or _has_batchnorm_after(module):
        return False  # unfolded BN after the projection would undo the scaling
    layer.weight[rows] *= scale
    layer.bias[rows] *= scale
    module.scale = 1.0
    return True


def _has_batchnorm_after(module) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@register_pass("merged_heads", wraps=True)
def merged_heads(model):
    """LeViT's class and distillation heads averaged into one Linear (a new module around the model)."""
    if not _heads_foldable(model):
        return model, 0
    return _MergedHeadLevit(model), 1


def _heads_foldable(model) -> bool:
    from torch import nn

    heads = (getattr(model, "head", None), getattr(model, "head_dist", None))
    return all(h is not None and isinstance(getattr(h, "bn", None), nn.Identity) for h in heads)


def _MergedHeadLevit(model):  # noqa: N802 - factory for a lazily defined nn.Module
    import torch
    from torch import nn

    class MergedHeadLevit(nn.Module):
        """LeViT with head and head_dist averaged into one linear layer (model BN-folded)."""

        family = "levit"

        def __init__(self, levit_model):
            super().__init__()
            self.levit = levit_model
            h, d = levit_model.head.linear, levit_model.head_dist.linear
            with torch.no_grad():
                weight = (h.weight.double() + d.weight.double()) / 2
                bias = (h.bias.double() + d.bias.double()) / 2
            self.head = nn.Linear(h.in_features, h.out_features)
            with torch.no_grad():
                self.head.weight.copy_(weight)
                self.head.bias.copy_(bias)

        def forward(self, x):
            return self.head(self.levit.forward_features(x).mean(1))

    return MergedHeadLevit(model).eval()
