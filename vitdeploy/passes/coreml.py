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
      every attention map fewer; exact for LeViT-128S's 1/4, one float rounding otherwise). Each attention
      class says which rows are queries (``query_projection``); one that does not is refused.
    * ``merged_heads``: several classifier heads averaged into one linear layer (LeViT's two:
      ``(h(x) + h_dist(x)) / 2`` -> ``linear(x, (W + W_d) / 2, (b + b_d) / 2)``: two ops fewer, one rounding
      of the weights); the family says which heads (``Family.classifier_heads``).
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
    """Multiply the query rows of the module's query projection by ``module.scale`` and set the scale to 1.

    A module with a float ``scale`` other than 1 is an attention, and its class says where its queries come
    from: ``query_projection() -> (nn.Linear, query rows)``, or None to keep its scale as a multiply. A class
    that does not say is refused (:class:`UnfoldableAttention`): guessing would either leave a mul the pass
    claims to remove or scale the wrong rows."""
    scale = getattr(module, "scale", None)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 1.0:
        return False
    hook = getattr(module, "query_projection", None)
    if hook is None:
        raise UnfoldableAttention(module)
    found = hook()
    if found is None:
        return False  # the class keeps its scale (its own decision, stated in its query_projection)
    layer, rows = found
    if layer.bias is None or _has_batchnorm_after(module):
        return False  # unfolded BN after the projection would undo the scaling
    layer.weight[rows] *= scale
    layer.bias[rows] *= scale
    module.scale = 1.0
    return True


class UnfoldableAttention(TypeError):
    """An attention (a module with a float ``scale``) whose class does not say how its scale folds into its
    queries: a family's bug, not bad input, so a TypeError with the fix in its message."""

    def __init__(self, module):
        cls = type(module)
        super().__init__(f"attention_scale_into_query: {cls.__module__}.{cls.__qualname__} has an attention "
                         f"scale ({module.scale:.3g}) but no query_projection(); define it on the class: return "
                         "(the nn.Linear computing the queries, the indices of its query rows), or None to keep "
                         "the scale as a multiply")


def _has_batchnorm_after(module) -> bool:
    from torch import nn

    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


@register_pass("merged_heads", wraps=True)
def merged_heads(model):
    """A model whose logits average several BatchNorm-free classifier heads (LeViT's class and distillation
    heads, its family says which) wrapped in a module computing them as one Linear."""
    heads = _foldable_heads(model)
    if not heads:
        return model, 0
    return _merged_heads_cls()(model, heads).eval(), 1


def _foldable_heads(model) -> list:
    """The model's classifier Linears when there are several, with biases and no BatchNorm before them; else []."""
    from torch import nn

    from ..models import FAMILIES

    fam = FAMILIES.get(getattr(model, "family", None))
    if fam is None or isinstance(model, _merged_heads_cls()):
        return []
    heads = fam.classifier_heads(model)
    if len(heads) < 2 or not all((bn is None or isinstance(bn, nn.Identity)) and linear.bias is not None
                                 for bn, linear in heads):
        return []
    return [linear for _, linear in heads]


@functools.lru_cache(maxsize=None)
def _merged_heads_cls():
    import torch
    from torch import nn

    from ..models import family

    class MergedHeads(nn.Module):
        """A model (BN-folded) whose classifier heads, averaged, are one linear layer:
        ``mean_i(W_i x + b_i) = (mean_i W_i) x + mean_i b_i`` (its pooled features in, logits out)."""

        def __init__(self, model, heads):
            super().__init__()
            self.family = model.family
            self.add_module(model.family, model)  # the module names stay those of the family's model
            with torch.no_grad():
                weight = sum(h.weight.double() for h in heads) / len(heads)
                bias = sum(h.bias.double() for h in heads) / len(heads)
            self.head = nn.Linear(heads[0].in_features, heads[0].out_features)
            with torch.no_grad():
                self.head.weight.copy_(weight)
                self.head.bias.copy_(bias)

        def forward(self, x):
            inner = getattr(self, self.family)
            return self.head(family(self.family).pool(inner.forward_features(x)))

    return MergedHeads
