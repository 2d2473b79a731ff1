"""Rewrites of torch.export graphs (not of models): registered with the graph kind they apply to.

``split_silu`` runs on an exported ATen graph before PT2E annotation (:mod:`vitdeploy.quantization.pt2e`);
``drop_noop_expand`` and ``split_as_slices`` on ExecuTorch's edge dialect before partitioning
(:mod:`vitdeploy.targets.executorch`). Each keeps the function exactly; torch and executorch load inside.
"""

from __future__ import annotations

import operator

from .registry import register_graph_pass


@register_graph_pass("split_silu", applies_to="aten")
def split_silu(graph):
    """Every ``aten.silu`` node of an exported graph as ``mul(x, sigmoid(x))`` (same function), in place.

    The PT2E quantizer annotates ``sigmoid`` (fixed 1/256 output scale, TFLite's LOGISTIC) and ``mul``, not
    ``silu``, which would stay a float island (trained MobileViT-XXS: 168 QUANTIZE/DEQUANTIZE ops with SiLU
    float, 98 split)."""
    import torch

    aten = torch.ops.aten
    for node in list(graph.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.silu.default, aten.silu_.default):
            continue
        x = node.args[0]
        with graph.graph.inserting_after(node):
            sigmoid = graph.graph.call_function(aten.sigmoid.default, (x,))
        with graph.graph.inserting_after(sigmoid):
            mul = graph.graph.call_function(aten.mul.Tensor, (x, sigmoid))
        for new, source in ((sigmoid, torch.sigmoid), (mul, operator.mul)):
            new.meta = {**node.meta, "source_fn_stack": [(new.name, source)]}  # the annotators match on these
        node.replace_all_uses_with(mul)
        graph.graph.erase_node(node)
    graph.graph.lint()
    graph.recompile()
    return graph


@register_graph_pass("drop_noop_expand", applies_to="edge")
def drop_noop_expand(graph_module):
    """Remove ``expand_copy`` nodes that expand a tensor to its own shape (edge dialect, before partitioning).

    ``torch.matmul`` on 4-D attention tensors decomposes into expand + view + bmm even when nothing is
    broadcast; XNNPACK has no expand, so each one left a portable kernel between two delegate calls.
    Trained LeViT-128S fp32: 44 such nodes, 35 XNNPACK partitions -> 13, logits unchanged (max |diff| 1e-6).
    """
    import torch
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    targets = (exir_ops.edge.aten.expand_copy.default, torch.ops.aten.expand.default)
    removed = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target not in targets:
            continue
        source = node.args[0]
        before, after = getattr(source, "meta", {}).get("val"), node.meta.get("val")
        if before is not None and after is not None and tuple(before.shape) == tuple(after.shape) \
                and before.dtype == after.dtype:
            node.replace_all_uses_with(source)
            graph_module.graph.erase_node(node)
            removed += 1
    if removed:
        graph_module.graph.eliminate_dead_code()
        graph_module.recompile()
    return PassResult(graph_module, bool(removed))


@register_graph_pass("split_as_slices", applies_to="edge")
def split_as_slices(graph_module):
    """``split_with_sizes_copy`` (attention's q/k/v split) -> one ``slice_copy`` per piece (edge dialect).

    XNNPACK has no split but takes unit-step slices, so each split was a portable kernel between two
    delegate calls: trained MobileViT-XXS 9, LeViT-128S 11. Same values (a slice is a split's piece).
    """
    from executorch.exir.dialects._ops import ops as exir_ops
    from executorch.exir.pass_base import PassResult

    split = exir_ops.edge.aten.split_with_sizes_copy.default
    replaced = 0
    for node in list(graph_module.graph.nodes):
        if node.op != "call_function" or node.target != split:
            continue
        users = list(node.users)
        if not users or any(u.target is not operator.getitem for u in users):
            continue
        source, sizes = node.args[0], list(node.args[1])
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for user in users:
            index = user.args[1]
            with graph_module.graph.inserting_before(user):
                piece = graph_module.graph.call_function(
                    exir_ops.edge.aten.slice_copy.Tensor, (source, dim, starts[index], starts[index] + sizes[index], 1))
            piece.meta = dict(user.meta)
            user.replace_all_uses_with(piece)
            graph_module.graph.erase_node(user)
        graph_module.graph.erase_node(node)
        replaced += 1
    if replaced:
        graph_module.recompile()
    return PassResult(graph_module, bool(replaced))
