"""PyTorch image classifier -> ExecuTorch .pte (XNNPACK delegate), float32 or PT2E int8, with metadata.

Input convention of the produced program (the TFLite target's, :mod:`vitdeploy.targets.tflite`)
---------------------------------------------------------------------------------------------
* Default (``raw_input=False``): one input ``[1, H, W, 3]`` float32 of **RGB pixels 0..255** (NHWC);
  the source's preprocessing (BGR flip, scale, mean/std) is one 1x1 convolution inside the graph.
* ``raw_input=True``: ``[1, 3, H, W]`` float32 already preprocessed as the checkpoint expects (NCHW).

Batch 1 (phones classify one frame at a time); runners loop over a batch. The metadata (input spec,
preprocessing, labels, precision, source checksum, variant, vitdeploy version) is a constant method in
the program (:mod:`vitdeploy.formats.executorch`), so the artifact is one file, written atomically.

``w8a8``: :func:`vitdeploy.quantization.executorch.quantize_int8` (PT2E, XNNPACK quantizer, small float
fallback search), then the lowered program itself is judged on the held-out images against the float
module: below the worst-image cosine target (0.99, TFLite's) it is written to ``<stem>.below-target.pte``.
Heavy libraries (torch, executorch, torchao) are imported lazily.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import Conversion, check_image_arguments
from .image_input import logits_module, model_inputs_from_pixels, pixel_input_module, pixel_input_spec
from ..diagnostics import describe, quiet
from ..errors import ConversionError, VitdeployError
from ..files import write_atomically
from ..formats import LAYOUT_PIXELS, LAYOUT_RAW
from ..formats.executorch import constant_methods, with_metadata_in_place
from ..precisions import label
from ..preprocessing import Preprocessing
from ..quantization.calibration import natural_images_hw, split_calibration
from ..verdict import KEY as ACCURACY_TARGET, target_record

QUANTIZE_MODES = ("none", "int8")  # internal keys; names: vitdeploy.precisions.EXECUTORCH_MODES
DELEGATES = ("xnnpack", "coreml")
BELOW_TARGET_SUFFIX = ".below-target"
MIN_COSINE = 0.99  # the worst held-out image's logits cosine vs float: the TFLite int8 target


@dataclass
class ExecuTorchConversion(Conversion):
    """What :func:`convert_executorch` produced (JSON-able through :meth:`to_dict`)."""

    path: Path
    size_bytes: int
    seconds: float
    quantize: str
    precision: str
    delegate: str
    accuracy_target_met: bool
    input: dict
    rewrites: dict = field(default_factory=dict)  # XNNPACK rewrites (vitdeploy.passes.xnnpack): name -> count
    quant_report: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)



def convert_executorch(model, *, input_size: tuple[int, int, int], preprocessing: Preprocessing, out: Path,
                       quantize: str = "none", calib: np.ndarray | None = None, labels: list[str] | None = None,
                       raw_input: bool = False, metadata: dict | None = None, delegate: str = "xnnpack",
                       search: bool = True, progress: Callable[[str], None] | None = None) -> ExecuTorchConversion:
    """Export ``model`` (NCHW float -> logits, BatchNorm already folded) to a .pte at ``out``.

    ``calib``: uint8 NHWC RGB pixels for int8 (default: built-in natural images), split into calibration
    and judging images by :func:`vitdeploy.quantization.calibration.split_calibration`. ``search``:
    whether int8 may try keeping modules in float when full int8 misses the target.
    """
    say = progress or (lambda _msg: None)
    out = Path(out)
    channels, height, width = _check_arguments(input_size, preprocessing, quantize, calib, labels, delegate)
    if out.suffix.lower() != ".pte":
        raise VitdeployError(f"{out}: an ExecuTorch program is written to a .pte file")
    started = time.perf_counter()
    input_spec = pixel_input_spec(channels, height, width, preprocessing, raw_input)
    rewrites, always_float = {}, ()
    if delegate == "xnnpack":  # on a copy; a no-op when convert already ran passes.PIPELINES["executorch"]
        import copy

        from ..passes.xnnpack import layernorm_as_linear, layernorm_class_name

        model = copy.deepcopy(model)
        rewrites["layernorm_as_linear"] = layernorm_as_linear(model)
        # int8 reductions would quantize the variance: the LayerNorms stay float (XNNPACK runs them in fp32).
        if any(f"{type(m).__module__}.{type(m).__qualname__}" == layernorm_class_name() for m in model.modules()):
            always_float = (layernorm_class_name(),)
    wrapper = _wrapped(model, preprocessing, raw_input)
    sample = model_inputs_from_pixels(natural_images_hw(1, height, width, seed=0), input_spec, preprocessing)
    num_classes = _num_classes(wrapper, sample, labels)

    quant_report: dict = {}
    warnings: list[str] = []
    to_lower = wrapper
    if quantize == "int8":
        from ..quantization.executorch import quantize_int8, score

        calib_pixels, heldout_pixels, source = split_calibration(calib, height, width)
        eval_inputs = model_inputs_from_pixels(heldout_pixels, input_spec, preprocessing)
        # Pixel input: the preprocessing conv stays out of int8 (``quantized_under``; it was an extra int8
        # activation + int8 weights in front of the stem), and is folded into the stem's first conv when that
        # is exact (no mean shift: MobileViT). Worst held-out cosine of the w8a8 .pte vs float, trained
        # references, before -> after: LeViT-128S 0.9964 -> 0.9995 (float conv, not foldable); MobileViT-XXS
        # 0.9856 -> 0.9888 folded (search keeps the stem float; unfolded: 0.9840). Held-out top-1 drop
        # unchanged (0.91 / 0.45 points); latency unchanged (30 interleaved rounds, 2 threads: LeViT 1.93 ->
        # 1.89 ms, MobileViT 5.40 -> 5.28 ms).
        folded = None if raw_input else _folded_pixel_module(model, preprocessing, wrapper, sample)
        say(f"quantizing (w8a8, PT2E) on {len(calib_pixels)} images")
        to_lower, quant_report = quantize_int8(
            folded or wrapper, calib_inputs=model_inputs_from_pixels(calib_pixels, input_spec, preprocessing),
            eval_inputs=eval_inputs, inner=model, min_cosine=MIN_COSINE, search=search, progress=say,
            calib_source=source, always_float=always_float, quantized_under="" if raw_input else "model")
    config = {"input": input_spec, "preprocessing": preprocessing.to_dict(), "num_classes": num_classes,
              "quantize": quantize, "precision": label("executorch", quantize), "delegate": delegate,
              "labels": list(labels) if labels else None, "float_modules": quant_report.get("float_modules", []),
              **{k: v for k, v in (metadata or {}).items() if k not in ("input", "labels", ACCURACY_TARGET)}}
    if quantize == "int8":  # room for the verdict, measured on the lowered program and written in place below
        config[ACCURACY_TARGET] = dict(target_record("cosine_min", MIN_COSINE, 0.0, against=" " * 80),
                                       pending=" " * 40)
    say(f"lowering to ExecuTorch ({delegate})")
    program = _lower(to_lower, sample, delegate, config)

    met = True
    if delegate == "coreml":
        from ..runtimes.executorch import backend_available

        if not backend_available("CoreMLBackend"):
            warnings.append("lowered to the Core ML delegate but not run: this host's ExecuTorch runtime has no "
                            "CoreMLBackend (Apple devices only), so parity is unchecked here")
    if quantize == "int8":
        import torch

        from ..runtimes.executorch import run_pte

        with torch.no_grad():
            reference = wrapper(torch.from_numpy(eval_inputs)).numpy()
        measured = score(run_pte(program, eval_inputs), reference)
        met = measured["cosine_min"] >= MIN_COSINE
        quant_report.update(target_met=met, cosine_min_after=measured["cosine_min"],
                            cosine_after=measured["cosine_mean"], top1_agreement_after=measured["top1_agreement"])
        say(f"w8a8 .pte: worst-image cosine {measured['cosine_min']:.4f}, mean {measured['cosine_mean']:.4f} vs float")
        if not met:
            warnings.append(f"w8a8 misses the accuracy target: worst held-out image logits cosine "
                            f"{measured['cosine_min']:.4f} < {MIN_COSINE} (tried: "
                            f"{', '.join(h['tried'] for h in quant_report['search'])}); "
                            "written aside as .below-target; use fp32")
            out = out.with_name(out.stem + BELOW_TARGET_SUFFIX + out.suffix)
        record = target_record("cosine_min", MIN_COSINE, measured["cosine_min"],
                               against=f"the float model, {len(eval_inputs)} held-out images")
        updated = dict(config, **{ACCURACY_TARGET: record})
        program = with_metadata_in_place(program, config, updated) or _lower(to_lower, sample, delegate, updated)
    write_atomically(out, program)
    seconds = time.perf_counter() - started
    say(f"wrote {out} ({len(program) / 1e6:.1f} MB) in {seconds:.1f} s")
    return ExecuTorchConversion(path=out, size_bytes=out.stat().st_size, seconds=round(seconds, 2), quantize=quantize,
                                precision=label("executorch", quantize), delegate=delegate, accuracy_target_met=met,
                                input=input_spec, rewrites=rewrites, quant_report=quant_report, warnings=warnings)


def _check_arguments(input_size, preprocessing, quantize, calib, labels, delegate) -> tuple[int, int, int]:
    if quantize not in QUANTIZE_MODES:
        raise VitdeployError(f"unknown quantization '{quantize}' for executorch; choose one of "
                             f"{', '.join(QUANTIZE_MODES)}")
    if delegate not in DELEGATES:
        raise VitdeployError(f"unknown delegate '{delegate}'; choose one of {', '.join(DELEGATES)}")
    if delegate == "coreml" and quantize != "none":
        raise VitdeployError("--delegate coreml takes fp32 only here (its int8 needs Core ML's own quantizer)")
    size = check_image_arguments(input_size, preprocessing, calib)
    if labels is not None and any("\n" in str(x) for x in labels):
        raise VitdeployError("labels must not contain newlines")
    return size


def _wrapped(model, preprocessing: Preprocessing, raw_input: bool):
    model.eval()
    return logits_module(model) if raw_input else pixel_input_module(model, preprocessing)


def _folded_pixel_module(model, preprocessing: Preprocessing, wrapper, sample: np.ndarray):
    """Pixel-input module whose stem's first conv takes the RGB pixels itself (:func:`passes.pixel_input.
    fold_pixel_affine`), or None when that is not exact; checked against ``wrapper`` on ``sample``."""
    import torch

    from ..passes.pixel_input import fold_pixel_affine

    inner = fold_pixel_affine(model, preprocessing)
    if inner is None:
        return None

    class FoldedPixelInput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = logits_module(inner)

        def forward(self, image):
            return self.model(image.permute(0, 3, 1, 2))

    folded = FoldedPixelInput().eval()
    x = torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32))
    with torch.no_grad():
        want, got = wrapper(x), folded(x)
    if not torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max())):
        return None
    return folded


def _num_classes(wrapper, sample: np.ndarray, labels) -> int:
    import torch

    with torch.no_grad():
        y = wrapper(torch.from_numpy(np.ascontiguousarray(sample, dtype=np.float32)))
    if y.ndim != 2 or y.shape[0] != 1:
        raise ConversionError(f"the model returned shape {tuple(y.shape)}, expected (1, classes) logits")
    if labels is not None and len(labels) != y.shape[1]:
        raise VitdeployError(f"{len(labels)} labels given but the model has {y.shape[1]} classes")
    return int(y.shape[1])


def _lower(module, sample: np.ndarray, delegate: str, config: dict) -> bytes:
    """torch.export (batch 1) -> edge -> delegate partitions -> .pte bytes, with the metadata method."""
    import torch

    partitioner = _partitioner(delegate)
    stage = "torch.export"
    try:
        with quiet():
            from executorch.exir import to_edge_transform_and_lower

            with torch.no_grad():
                exported = torch.export.export(module, (torch.from_numpy(np.ascontiguousarray(sample)),))
                stage = f"lowering to {delegate}"
                edge = to_edge_transform_and_lower(exported, transform_passes=[drop_noop_expand, split_as_slices],
                                                   partitioner=[partitioner], constant_methods=constant_methods(config))
                stage = "serialization"
                return bytes(edge.to_executorch().buffer)
    except VitdeployError:
        raise
    except Exception as e:  # export and lowering raise many unrelated types; report stage + reason
        raise ConversionError(f"ExecuTorch conversion failed at {stage}: {describe(e)}") from e


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


def split_as_slices(graph_module):
    """``split_with_sizes_copy`` (attention's q/k/v split) -> one ``slice_copy`` per piece (edge dialect).

    XNNPACK has no split but takes unit-step slices, so each split was a portable kernel between two
    delegate calls: trained MobileViT-XXS 9, LeViT-128S 11. Same values (a slice is a split's piece).
    """
    import operator

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


def _partitioner(delegate: str):
    if delegate == "xnnpack":
        with quiet():
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        return XnnpackPartitioner()
    try:
        with quiet(stdout=True):
            from executorch.backends.apple.coreml.partition import CoreMLPartitioner
    except Exception as e:  # ImportError, or coremltools failing to load its native parts
        raise VitdeployError(f"--delegate coreml is unavailable here: {describe(e)}") from None
    return CoreMLPartitioner()


__all__ = ["LAYOUT_PIXELS", "LAYOUT_RAW", "ExecuTorchConversion", "convert_executorch"]
