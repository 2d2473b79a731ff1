"""int8 ranges learned in PyTorch that reach the .tflite: PT2E quantization-aware fine-tuning (module in, module out).

The older route (:mod:`vitdeploy.quantization.finetune`) fine-tunes float weights under simulated int8,
then lets TFLite's own calibration recompute every range, so nothing it learned about ranges reaches
the file. Here the int8 graph itself is trained: litert-torch's ``PT2EQuantizer`` (per-channel
symmetric int8 weights, per-tensor int8 activations) annotates the exported module, its fake quantizers
start from histogram ranges measured on the calibration images (the PTQ statistic; moving-average
min/max ranges start far worse: worst held-out cosine 0.92 vs 0.96 on trained MobileViT-XXS),
the activation ranges are frozen and the weights are distilled towards the float model's logits
(no labels), and ``convert_pt2e`` gives the quantize/dequantize graph that
``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))`` writes as int8 with those
same scales. The target (:mod:`vitdeploy.targets.tflite`) converts and judges the file itself.

SiLU is split into ``x * sigmoid(x)`` before annotation (the registered graph pass
:func:`vitdeploy.passes.export_graph.split_silu`, ``passes.GRAPH_PIPELINES["pt2e-annotation"]``): the
quantizer annotates ``sigmoid`` and ``mul``, not ``silu``, which would stay a float island.
Must not import :mod:`vitdeploy.targets` (data flows one way).
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np

from ..diagnostics import quiet

DEFAULT_LR = 1e-5  # Adam; trained MobileViT-XXS, 30 steps: worst held-out cosine 0.960 -> 0.981 at 1e-5
DEFAULT_BATCH = 8


def quantizer(qat: bool):
    """litert-torch's PT2E quantizer (per-channel weights) with SiLU split for annotation.

    Its conv+BatchNorm QAT patterns are skipped: BatchNorm is folded before any target sees the model,
    and their annotator fails on torchao 0.15 ("Expected `mod` to be an instance of torch.nn.Module")."""
    from ..passes import run_graph_pipeline

    with quiet():  # torchao logs about CUDA kernels it cannot load, on import
        from litert_torch.quantize import pt2e_quantizer as pq

    class SplitSiLUQuantizer(pq.PT2EQuantizer):
        STATIC_QAT_ONLY_OPS = []

        def transform_for_annotation(self, model):
            return super().transform_for_annotation(run_graph_pipeline("pt2e-annotation", model))

    return SplitSiLUQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True, is_qat=qat))


def qat_int8(module, *, calib_inputs: np.ndarray, eval_inputs: np.ndarray, steps: int, lr: float = DEFAULT_LR,
             batch: int = DEFAULT_BATCH, seed: int = 0, threads: int = 2, input_range: tuple[float, float] | None = None,
             progress: Callable[[str], None] | None = None):
    """(converted PT2E module, quantizer, report): ``module`` (float, the file's input convention) trained for
    ``steps`` Adam steps as an int8 graph to match its own float logits on augmented ``calib_inputs``.

    ``eval_inputs`` (never trained on) measure the int8 graph in PyTorch before and after. ``input_range``:
    the input's true value range (pixels: 0..255), kept instead of the calibrated one. Pass the quantizer
    to ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=quantizer))``.
    """
    import torch

    if steps < 1:
        raise ValueError("steps must be >= 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _qat(module, calib_inputs, eval_inputs, steps, lr, batch, seed, input_range,
                    progress or (lambda _msg: None))
    finally:
        torch.set_num_threads(previous)  # a library call must not change the caller's torch


def _qat(module, calib_inputs, eval_inputs, steps, lr, batch, seed, input_range, say):
    import torch

    with quiet():
        from torchao.quantization.pt2e import disable_observer, move_exported_model_to_eval
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    started = time.perf_counter()
    calib = torch.from_numpy(np.ascontiguousarray(calib_inputs, dtype=np.float32))
    held = torch.from_numpy(np.ascontiguousarray(eval_inputs, dtype=np.float32))
    teacher = copy.deepcopy(module).eval()
    graph = export_dynamic(module, calib)
    qat = quantizer(qat=True)
    with quiet():
        prepared = prepare_qat_pt2e(copy.deepcopy(graph), qat)
        with torch.no_grad():
            prepared(calib[:batch])  # weight fake quantizers read their weights
    say(f"int8 ranges: histogram on {len(calib)} images")
    init = histogram_ranges(graph, prepared, calib, input_range)
    with torch.no_grad():
        reference = teacher(held).numpy()
    report = {"recipe": "pt2e litert-torch PT2EQuantizer QAT (per-channel weights, per-tensor activations)",
              "steps": int(steps), "lr": lr, "batch": batch, "images": int(len(calib)), "ranges": init,
              "pytorch_before": _agreement(prepared, held, reference)}
    losses = _train(prepared, teacher, calib, steps, lr, batch, seed, say)
    prepared.apply(disable_observer)
    report["pytorch_after"] = _agreement(prepared, held, reference)
    report["loss_first10"] = round(float(np.mean(losses[:10])), 5)
    report["loss_last10"] = round(float(np.mean(losses[-10:])), 5)
    with quiet():
        converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))  # else litert warns
    report["seconds"] = round(time.perf_counter() - started, 1)
    return converted, qat, report


def export_dynamic(module, calib):
    """``module`` captured by torch.export with a dynamic batch (training runs batches, the file batch 1)."""
    import torch

    dim = torch.export.Dim("batch", min=1, max=1024)
    with quiet():
        return torch.export.export(module.eval(), (calib[:2],), dynamic_shapes=({0: dim},)).module()


def histogram_ranges(graph, prepared, calib, input_range=None) -> dict:
    """Set each activation fake quantizer of ``prepared`` (QAT) to the range a histogram observer picks on
    ``calib`` (one image at a time, as the PTQ route calibrates) and freeze it; returns counts."""
    import torch

    with quiet():
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

        observed = prepare_pt2e(copy.deepcopy(graph), quantizer(qat=False))
        with torch.no_grad():
            for i in range(len(calib)):
                observed(calib[i:i + 1])
    histograms = {key: obs for key, (obs, _) in _observers(observed).items()}
    counts = {"histogram": 0, "input": 0, "kept": 0}
    for key, (fake, source) in _observers(prepared).items():
        obs = getattr(fake, "activation_post_process", None)
        if source.op == "get_attr" or not hasattr(obs, "min_val"):
            continue  # weights, and fixed-scale outputs (sigmoid: 1/256)
        if input_range is not None and _is_input(source):
            lo, hi = (torch.tensor(float(v)) for v in input_range)
            counts["input"] += 1
        elif hasattr(histograms.get(key), "_non_linear_param_search"):
            lo, hi = histograms[key]._non_linear_param_search()
            counts["histogram"] += 1
        else:
            counts["kept"] += 1  # no histogram for this edge: its moving average keeps running
            continue
        obs.min_val.copy_(lo.reshape(obs.min_val.shape))
        obs.max_val.copy_(hi.reshape(obs.max_val.shape))
        scale, zero_point = fake.calculate_qparams()
        fake.scale.copy_(scale.reshape(fake.scale.shape))
        fake.zero_point.copy_(zero_point.reshape(fake.zero_point.shape).to(fake.zero_point.dtype))
        fake.disable_observer()  # frozen: moving min/max of augmented batches would widen it again
    return counts


def _is_input(node) -> bool:
    """``node`` is the graph input, or the input through layout ops only (the pixel wrapper's NHWC -> NCHW)."""
    import torch

    layout = {torch.ops.aten.permute.default, torch.ops.aten.view.default, torch.ops.aten.reshape.default,
              torch.ops.aten.clone.default, torch.ops.aten.contiguous.default}
    while node.op == "call_function" and node.target in layout:
        node = node.args[0]
    return node.op == "placeholder"


def _observers(prepared) -> dict:
    """(observed node, first consumer) -> (observer or fake quantizer, observed node): the key names the same
    edge in any preparation of the same exported graph."""
    out = {}
    for node in prepared.graph.nodes:
        if node.op == "call_module" and node.target.startswith("activation_post_process_"):
            source = node.args[0]
            users = sorted(u.name for u in node.users)
            out[(source.name, users[0] if users else "")] = (getattr(prepared, node.target), source)
    return out


def _train(prepared, teacher, calib, steps, lr, batch, seed, say) -> list[float]:
    """Adam on the weights, MSE to the float logits (normalised by their variance), augmented batches."""
    import torch

    from .finetune import distill

    optimizer = torch.optim.Adam([p for p in prepared.parameters() if p.requires_grad], lr=lr)
    return distill(prepared, teacher, calib, optimizer, steps=steps, batch=batch, seed=seed, say=say,
                   clamp=(float(calib.min()), float(calib.max())))


def _agreement(model, x, reference) -> dict:
    import torch

    from ..similarity import logits_agreement

    with torch.no_grad():
        logits = np.concatenate([model(x[i:i + 16]).numpy() for i in range(0, len(x), 16)])
    return logits_agreement(logits, reference)


def activation_scales(converted) -> list[float]:
    """The per-tensor activation scales of a ``convert_pt2e`` graph (what the .tflite must carry)."""
    import torch

    quantize = torch.ops.quantized_decomposed.quantize_per_tensor.default
    return sorted({round(float(node.args[1]), 9) for node in converted.graph.nodes
                   if node.op == "call_function" and node.target == quantize and not isinstance(node.args[1], torch.fx.Node)})
