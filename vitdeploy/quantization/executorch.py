"""int8 for ExecuTorch: PT2E with the XNNPACK quantizer, chosen by measured accuracy (module in, module out).

:func:`quantize_int8` takes the float PyTorch module the .pte is exported from (pixel or raw input, as
:mod:`vitdeploy.targets.executorch` wraps it) and returns the PT2E-converted module (quantize /
dequantize nodes around every op XNNPACK runs in int8: conv, linear, add, mul, cat, pooling; the
rest -- softmax, LayerNorm, hardswish, the attention matmuls -- stays float and XNNPACK runs it in
fp32) plus a report. The target lowers it and judges the lowered program itself.

The search (each attempt: prepare, convert -- calibration is measured once, see :func:`_quantized` -- and
run the converted module in PyTorch on the held-out images, where lowering one candidate to a .pte would
cost ~35 s on MobileViT-XXS here):

1. full int8: per-channel symmetric weights, per-tensor activations with histogram ranges
   (``get_symmetric_quantization_config(is_per_channel=True)``, what ExecuTorch recommends);
2. when the worst held-out image's logits cosine vs float is below ``min_cosine``, one round keeping
   each candidate in float -- the model's transformer module classes (attention, MLP, the block
   around them) and its top-level stem and head -- and keeping the best one if it gains ``min_gain``;
   per-tensor weights are tried too (never better on the trained references; kept in the report).

Calibration feeds the images one at a time to histogram observers. Trained MobileViT-XXS, worst held-out
image cosine of the converted module vs float: histogram per image 0.979, histogram on one 32-image batch
0.971 (its .pte: 0.956 vs 0.9865), min-max 0.956, moving-average min-max 0.936; so one statistic, no
route search. The float candidates barely move it (0.9765-0.9795: the error is spread over the network,
as TFLite's search found), per-tensor weights cost 0.016. The calibration/held-out split is :mod:`vitdeploy.quantization.calibration`'s,
shared with every target. Must not import :mod:`vitdeploy.targets` (data flows one way).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..diagnostics import quiet

# Module classes never offered as float candidates: leaves (their ops are what is quantized) and containers.
_LEAF_CLASSES = {"Linear", "Conv2d", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "GroupNorm", "Identity", "Sequential",
                 "ModuleList", "ModuleDict", "Dropout", "SiLU", "GELU", "ReLU", "Hardswish", "Module"}
_TOP_LEVEL_NAMES = ("stem", "head", "head_dist", "final_conv")  # first and last layers: classic int8 trouble spots
MAX_CANDIDATES = 6


def quantize_int8(module, *, calib_inputs: np.ndarray, eval_inputs: np.ndarray, inner=None,
                  min_cosine: float = 0.99, min_gain: float = 0.002, search: bool = True,
                  progress: Callable[[str], None] | None = None, calib_source: str = "",
                  always_float: tuple[str, ...] = (), quantized_under: str = "") -> tuple[object, dict]:
    """(converted module taking a batch of any size, report). ``module``: float, the .pte's input convention.

    ``calib_inputs`` / ``eval_inputs``: float32 batches in that convention, disjoint. ``inner``: the
    classifier inside ``module`` (its module classes and top-level children are the float candidates).
    ``always_float``: qualified module class names no attempt quantizes. ``quantized_under``: a submodule
    path of ``module`` (e.g. ``"model"``); when given, ops outside it (the pixel wrapper's preprocessing
    conv) stay float, so the first quantize sits in front of the stem as with raw input.
    """
    import torch

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    calib = torch.from_numpy(np.ascontiguousarray(calib_inputs, dtype=np.float32))
    held = torch.from_numpy(np.ascontiguousarray(eval_inputs, dtype=np.float32))
    with torch.no_grad():
        reference = module(held).numpy()
    graph = _export_dynamic(module, calib)
    calibrated: dict = {}  # observed node -> activation observer state, from the first (full int8) calibration

    def attempt(float_classes=(), float_names=(), per_channel=True):
        t = time.perf_counter()
        say(f"int8 attempt: float {', '.join((*float_classes, *float_names)) or 'nothing'}"
            f"{'' if per_channel else ', per-tensor weights'}")
        converted = _quantized(graph, calib, (*always_float, *float_classes), float_names, per_channel, calibrated,
                               quantized_under)
        with torch.no_grad():
            logits = converted(held).numpy()
        return converted, {**score(logits, reference), "seconds": round(time.perf_counter() - t, 1)}

    converted, best = attempt()
    chosen: dict = {"float_classes": [], "float_names": [], "per_channel": True}
    history = [{"tried": "full int8", "float": [], "per_channel": True, **best}]
    if search and best["cosine_min"] < min_cosine:
        trials = []
        for cls in transformer_classes(inner):
            trials.append(({"float_classes": [cls], "float_names": [], "per_channel": True}, f"{cls.rsplit('.', 1)[-1]} float"))
        for name in top_level_names(inner):
            trials.append(({"float_classes": [], "float_names": [name], "per_channel": True}, f"{name} float"))
        trials = trials[:MAX_CANDIDATES]
        trials.append(({"float_classes": [], "float_names": [], "per_channel": False}, "per-tensor weights"))
        say(f"worst-image cosine {best['cosine_min']:.4f} < {min_cosine}: trying {len(trials)} alternatives")
        results = []
        for config, label in trials:
            model, s = attempt(config["float_classes"], config["float_names"], config["per_channel"])
            history.append({"tried": label, "float": [*config["float_classes"], *config["float_names"]],
                            "per_channel": config["per_channel"], **s})
            results.append((s["cosine_min"], label, config, model, s))
        top = max(results, key=lambda r: r[0])
        if top[0] - best["cosine_min"] >= min_gain:
            say(f"keeping {top[1]}: worst-image cosine {best['cosine_min']:.4f} -> {top[0]:.4f}")
            _, _, chosen, converted, best = top
        else:
            say(f"no alternative gains {min_gain} (best: {top[1]}, {top[0] - best['cosine_min']:+.4f})")
    report = {
        "recipe": "pt2e XNNPACKQuantizer (symmetric int8, per-tensor activations)",
        "precision": "w8a8",
        "activations": "int8",
        "weights": "per-channel" if chosen["per_channel"] else "per-tensor",
        "float_modules": [*chosen["float_classes"], *chosen["float_names"]],
        "always_float": list(always_float),
        "min_cosine": min_cosine,
        "calibration": {"images": int(len(calib)), "source": calib_source, "observer": "histogram", "batch": 1},
        "eval_images": int(len(held)),
        "criterion": f"logits cosine vs float >= {min_cosine} on every held-out image",
        "pytorch_proxy": best,  # the converted module run in PyTorch; the target measures the .pte itself
        "search": history,
        "search_seconds": round(time.perf_counter() - started, 1),
    }
    return converted, report


def score(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Per-image logits cosine (worst and mean) and top-1 agreement of ``logits`` vs ``reference``."""
    a, b = np.asarray(logits, np.float64), np.asarray(reference, np.float64)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    return {"cosine_min": round(float(cos.min()), 6), "cosine_mean": round(float(cos.mean()), 6),
            "top1_agreement": round(float((a.argmax(1) == b.argmax(1)).mean()), 4)}


def transformer_classes(inner) -> list[str]:
    """Qualified names of ``inner``'s module classes holding a Linear but no Conv2d (attention, MLP, their
    block), innermost first: the parts of a ViT int8 hurts most."""
    import torch

    if inner is None:
        return []
    found: dict[str, int] = {}
    for sub in inner.modules():
        cls = type(sub)
        if sub is inner or cls.__name__ in _LEAF_CLASSES:
            continue
        mods = list(sub.modules())
        if any(isinstance(m, torch.nn.Linear) for m in mods) and not any(isinstance(m, torch.nn.Conv2d) for m in mods):
            found.setdefault(f"{cls.__module__}.{cls.__qualname__}", len(mods))
    return sorted(found, key=lambda k: found[k])


def top_level_names(inner) -> list[str]:
    if inner is None:
        return []
    return [name for name, _ in inner.named_children() if name in _TOP_LEVEL_NAMES]


def _export_dynamic(module, calib):
    """``module`` captured by torch.export with a dynamic batch (calibration and judging run batches)."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    with quiet():
        return torch.export.export(module, (calib[:2],), dynamic_shapes=({0: batch},)).module()


def _quantized(graph, calib, float_classes, float_names, per_channel: bool, calibrated: dict, under: str = ""):
    """Prepare, calibrate, convert. Calibration observes the float model, whatever is annotated: the first
    call records its activation observers' states in ``calibrated`` and later calls load them (weight
    observers read their weights), so a search attempt costs prepare + convert, not another calibration."""
    import copy

    import torch

    with quiet():  # torchao logs about CUDA kernels it cannot load, and pytree deprecations, on import
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                               get_symmetric_quantization_config)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))
    if float_classes or float_names or under:
        quantizer.set_filter_function(_outside(set(float_classes), tuple(float_names), under))
    with quiet():
        prepared = prepare_pt2e(copy.deepcopy(graph), quantizer)
        with torch.no_grad():
            if not _load_observers(prepared, calibrated):
                for i in range(len(calib)):
                    prepared(calib[i:i + 1])
                if not calibrated:
                    calibrated.update(_observer_states(prepared))
        return convert_pt2e(prepared)


def _observers(prepared):
    """(key, observer module, observed node) of every observer call in a prepared graph; the key (observed
    node, first consumer) names the same edge in any preparation of the same exported graph."""
    out = []
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not node.target.startswith("activation_post_process_"):
            continue
        source = node.args[0]
        users = sorted(u.name for u in node.users)
        out.append(((source.name, users[0] if users else ""), getattr(prepared, node.target), source))
    return out


def _observer_states(prepared) -> dict:
    states = {}
    for key, observer, source in _observers(prepared):
        if source.op != "get_attr":  # weights are observed from the weights themselves
            states[key] = {k: v.clone() for k, v in observer.state_dict().items()}
    return states


def _load_observers(prepared, states: dict) -> bool:
    """Fill ``prepared``'s observers from ``states`` (activations) and their weights; False when an
    activation edge has no recorded state (then the caller calibrates)."""
    if not states:
        return False
    entries = _observers(prepared)
    if any(source.op != "get_attr" and key not in states for key, _, source in entries):
        return False
    for key, observer, source in entries:
        if source.op == "get_attr":
            value = prepared
            for part in source.target.split("."):
                value = getattr(value, part)
            observer(value)
        else:
            observer.load_state_dict(states[key])
    return True


def _outside(classes: set[str], names: tuple[str, ...], under: str = ""):
    """A node filter: True for nodes from none of the ``classes`` (qualified names) / top-level ``names``
    and, with ``under``, only for nodes inside that submodule path."""

    def keep(node) -> bool:
        stack = node.meta.get("nn_module_stack", {}).values()
        # Only ops carry a module stack; weights (get_attr) are judged with their op (quantizers ask about them).
        if under and node.op == "call_function" and not any(path == under or path.startswith(f"{under}.")
                                                             for path, _ in stack):
            return False
        for path, cls in stack:
            type_name = cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"
            if type_name in classes:
                return False
            # The classifier sits under the wrappers (``model.inner.`` for pixel input, ``inner.`` for raw).
            if any(path.endswith(f"inner.{name}") or f"inner.{name}." in path for name in names):
                return False
        return True

    return keep
