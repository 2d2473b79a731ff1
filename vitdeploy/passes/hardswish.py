"""Hard-swish as ops XNNPACK runs in int8: the 1/6 moved into the next Linear/Conv's weights.

``hardswish(x) = x * relu6(x + 3) / 6``. TFLite's XNNPACK delegate has no int8 HARD_SWISH, so in a w8a8
LeViT each one ran in float between a DEQUANTIZE and a QUANTIZE (trained LeViT-128S: 25 of them). The
converter (litert-torch 0.10) makes HARD_SWISH of ``aten.hardswish`` only; written out, ``x * relu6(x + 3) / 6``
stays ADD (fused RELU6), MUL, MUL. :func:`hardswish_scale_forward` computes ``x * relu6(x + 3)`` (ADD + MUL,
both int8 in the delegate) and saves the third op by dividing the weights (not the bias) of the Linear/Conv
that takes it by 6: ``W (6 h) / 6 + b = W h + b``, exact up to one rounding of the weights; a conv's padding
(zeros, or copies of the input) commutes with the scale. A Hardswish whose only consumer is not such a layer stays as it is.
"""

from __future__ import annotations

import functools

from .registry import register_pass


@register_pass("hardswish_scale_forward")
def hardswish_scale_forward(model) -> int:
    """Each ``nn.Hardswish`` feeding one Linear/Conv -> ``x * relu6(x + 3)``, that layer's weight / 6.

    Returns the number rewritten; the Hardswish modules left alone (no such consumer, or a model
    torch.fx cannot trace) are named by :func:`hardswish_consumers` and noted on the progress line.
    """
    import torch

    pairs, left = hardswish_consumers(model)
    with torch.no_grad():
        for act, consumer in pairs.items():
            layer = model.get_submodule(consumer)
            layer.weight.copy_((layer.weight.double() / 6.0).to(layer.weight.dtype))
            parent, _, name = act.rpartition(".")
            setattr(model.get_submodule(parent), name, _six_hardswish_cls()())
    if left:
        from ..progress import note

        note(f"hardswish_scale_forward: {len(left)} Hardswish without a Linear/Conv consumer kept "
             f"({', '.join(left[:3])}{'...' if len(left) > 3 else ''})")
    return len(pairs)


def hardswish_consumers(model) -> tuple[dict[str, str], list[str]]:
    """({Hardswish module name: the Linear/Conv module name that alone takes its output}, [the others]).

    Read from the model's torch.fx graph (the order of ``forward``, not of the attributes). A pair
    qualifies when the Hardswish runs once, its output goes only to that layer, and the layer runs once
    with a weight no other module shares (scaling it must change nothing else).
    """
    from torch import fx, nn

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Hardswish)]
    if not names:
        return {}, []
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - an untraceable model keeps its Hardswish (reported as left alone)
        return {}, names
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    shared = _shared_weights(model)
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module" or node.target not in names or calls[node.target] != 1:
            continue
        users = list(node.users)
        if len(users) != 1 or users[0].op != "call_module" or calls[users[0].target] != 1:
            continue
        layer = model.get_submodule(users[0].target)
        if isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)) and id(layer.weight) not in shared:
            pairs[node.target] = users[0].target
    return pairs, [n for n in names if n not in pairs]


def _shared_weights(model) -> set[int]:
    """ids of parameters registered under more than one name (tied weights)."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    return {k for k, v in seen.items() if v > 1}


@functools.lru_cache(maxsize=None)
def _six_hardswish_cls():
    from torch import nn
    from torch.nn import functional as F

    class SixHardswish(nn.Module):
        """``6 * hardswish(x) = x * relu6(x + 3)``; the next layer's weights carry the 1/6."""

        def forward(self, x):
            return x * F.relu6(x + 3.0)

    SixHardswish.__module__ = __name__
    SixHardswish.__qualname__ = "SixHardswish"
    return SixHardswish
