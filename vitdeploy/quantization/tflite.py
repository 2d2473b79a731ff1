"""Quantize float .tflite models with ai-edge-quantizer (no TensorFlow needed).

* :func:`quantize_fp16` -- float16 weights (``float_casting``), float compute.
* :func:`quantize_dynamic` -- recipe ``dynamic_wi8_afp32``: int8 weights, activations
  quantized on the fly by the kernels.
* :func:`quantize_int8` -- recipe ``static_wi8_ai8`` (full-integer, calibrated; precision
  ``w8a8``), route chosen by measured accuracy on held-out natural images (logits cosine vs the
  float model on the worst image):

  1. calibrate twice -- moving-average ranges (the quantizer's default, trims rare peaks) and
     full min/max ranges -- and keep whichever int8 model scores better;
  2. keep in float the op types XNNPACK has no int8 kernels for, when that costs no accuracy,
     so the model is one fast XNNPACK graph;
  3. while the cosine is below ``min_cosine``, greedily keep in float the candidate that helps
     most: a TFLite op type (``SOFTMAX``, ``LOGISTIC``...) or every op lowered from one PyTorch
     module class (``LayerNorm``, ``SiLU``, ``Attention``: their pieces only help together);
  4. stop when a round gains less than ``min_gain``. A model still below the target is reported
     as such (``target_met: False``) with the measured alternatives (fp16, dynamic, w8a16: cosine
     and ms/image) so the caller can say what to use instead. int8 activations always: int16
     ones are never chosen silently.
* :func:`quantize_w8a16` -- recipe ``static_wi8_ai16`` (TFLite's "16x8" full-integer mode), only
  when asked for: XNNPACK has no int16 kernels, so every int16 op runs on TFLite's reference
  kernels (trained MobileViT-XXS: ~330 ms per image vs 14-27 ms for int8 activations here).
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Callable

import numpy as np

from ..errors import ConversionError
from ..diagnostics import describe, quiet
from ..similarity import logits_agreement
from .tflite_calibration import _calibrate, _calibrate_all, _set_input_range  # _calibrate: tests, bench
from .tflite_graph import (FallbackGroup, _LAYOUT_OPS, _SKIP_IN_REPORT, _float_islands, _layout_next_to,
                           _matmuls_fed_by, _op_scopes, _tensor_ops, fallback_candidates, float_op_counts,
                           int16_op_counts, scope_pattern)

# Activation-range statistics tried for int8 calibration (see _calibrate; "mse": ranges.py), and for
# int16 (which has resolution to spare: clipping never pays there).
CALIBRATION_STATISTICS = ("moving_average", "min_max", "mse")
INT16_STATISTICS = ("moving_average", "min_max")
# int8 BATCH_MATMUL with a symmetric (zero point 0) right-hand input, which XNNPACK runs in int8
# (see _symmetric_matmul_rhs_only); False: asymmetric, left to TFLite's built-in kernels, so the search keeps
# it float. Off: at equal accuracy it is not faster (docs/int8-goals.md, "Attention matmuls in int8"):
# probabilities @ V must stay float for accuracy, and q @ k alone in int8 measured 0.94-1.02x the float-matmul
# w8a8 on trained LeViT-128S, 0.98-1.01x on MobileViT-XXS (bench/int8_matmul.py, 2026-12-07).
SYMMETRIC_MATMUL_RHS = False
# After the first sweep over all op types, later greedy rounds only retry this many best candidates.
_RETRY_TOP = 5


def quantize_fp16(float_model: bytes) -> bytes:
    """float16 weights for FC/conv layers (dequantized at load time; ~half the size)."""
    from ai_edge_quantizer import algorithm_manager, quantizer

    q = quantizer.Quantizer(bytearray(float_model))
    q.add_weight_only_config(".*", "*", num_bits=16,
                             algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return _run_quantizer(q, None, "fp16")


def quantize_dynamic(float_model: bytes) -> bytes:
    """Dynamic-range quantization: int8 per-channel weights, float activations."""
    from ai_edge_quantizer import quantizer, recipe

    q = quantizer.Quantizer(bytearray(float_model))
    q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
    return _run_quantizer(q, None, "dynamic")


def quantize_int8(float_model: bytes, *, calib_inputs: np.ndarray, eval_inputs: np.ndarray, int8_io: bool = False,
                  min_cosine: float = 0.99, min_gain: float = 0.002, max_rounds: int = 4,
                  progress: Callable[[str], None] | None = None, calib_source: str = "",
                  input_range: tuple[float, float] | None = None, threads: int = 2,
                  keep_undelegated_float: bool = True, reference_model: bytes | None = None,
                  measure_alternatives: bool = True, equivalents: dict[str, bytes] | None = None,
                  per_tensor_fallback: bool = True) -> tuple[bytes, dict]:
    """Full-integer static int8 with accuracy-driven float fallback; returns (model bytes, report).

    ``calib_inputs`` / ``eval_inputs``: batches in the float model's input convention; the eval
    images must not be calibration images. The criterion is the per-image logits cosine against
    the float model on the *worst* eval image (what the parity gate checks); the report also
    has the mean and top-1 agreement.
    Candidates for float fallback are op types (``SOFTMAX``) and PyTorch module classes found in
    the tensor names (``LayerNorm``: all ops a LayerNorm lowered to, which only help together).
    A round keeps the candidate that helps most; the search stops at ``min_cosine``, after
    ``max_rounds``, or when the best candidate gains less than ``min_gain`` (then the error is
    spread over the whole network and no fallback is worth its latency).
    ``keep_undelegated_float``: first keep in float the op types XNNPACK cannot run in int8
    (see :func:`_keep_undelegated_in_float`), so the int8 model is one fast XNNPACK graph
    rather than dozens of partitions stitched by TFLite's slow built-in kernels.
    ``input_range``: the input's true value range (``(0, 255)`` for pixel inputs) instead of the
    range seen in calibration, so bright pixels that calibration missed do not clip.
    ``reference_model``: the float model int8 is judged against when ``float_model`` is not it
    (a copy fine-tuned for int8, see :mod:`vitdeploy.quantization.finetune`).
    ``measure_alternatives``: when the search ends below ``min_cosine``, convert and measure
    fp16, dynamic and w8a16 too (``report["alternatives"]``), so the caller can name a better mode.
    ``per_tensor_fallback``: before whole op types, keep in float the few ops whose outputs int8
    represents worst (see :func:`_keep_worst_tensors_in_float`).
    ``equivalents``: float models computing the same function with the same graph (e.g. after
    LayerNorm -> Linear scale migration, :mod:`vitdeploy.passes.smooth`); each is calibrated and
    quantized beside ``float_model``, and the best (graph, range statistic) pair goes on.
    """
    from ..runtimes.tflite import run_tflite

    say = progress or (lambda _msg: None)
    reference = run_tflite(reference_model or float_model, eval_inputs, threads=threads)
    groups = fallback_candidates(float_model)
    graphs = {"plain": float_model, **(equivalents or {})}
    ranges, range_summary, activations = {}, {}, {}
    for graph, graph_model in graphs.items():
        say(f"calibrating int8 on {len(calib_inputs)} images ({graph} graph, {', '.join(INT16_STATISTICS)} ranges)")
        for statistic, qsvs in _calibrate_all(graph_model, calib_inputs, threads, INT16_STATISTICS).items():
            ranges[graph, statistic] = qsvs
        say(f"calibrating int8 on {len(calib_inputs)} images ({graph} graph, mse ranges)")
        from .ranges import mse_ranges  # starts from the min_max tensors

        ranges[graph, "mse"], range_summary[graph], activations[graph] = mse_ranges(
            graph_model, calib_inputs, ranges[graph, "min_max"], threads)
        if input_range is not None:
            for statistic in CALIBRATION_STATISTICS:
                _set_input_range(ranges[graph, statistic], graph_model, *input_range)

    def attempt(chosen: list[str], route: tuple[str, str]) -> tuple[bytes, dict]:
        model = _static_int8(graphs[route[0]], ranges[route], [groups[name] for name in chosen], int8_io)
        return model, _timed_agreement(model, eval_inputs, reference, threads)

    first = {route: attempt([], route) for route in ranges}
    route = max(ranges, key=lambda r: _criterion(first[r][1]))
    graph, statistic = route
    float_model = graphs[graph]  # alternatives are measured on the graph that was kept
    model, score = first[route]
    say(f"full int8: logits cosine {_describe(score)} vs float ({graph} graph, {statistic} ranges)")
    history = [{"float_ops": [], **score,
                "by_route": {"+".join(r): _criterion(first[r][1]) for r in ranges}}]
    speed = {"enabled": keep_undelegated_float}
    chosen: list[str] = []
    if keep_undelegated_float:
        chosen, model, score, speed = _keep_undelegated_in_float(
            model, score, lambda ops: attempt(ops, route), groups, min_cosine, min_gain, say, graphs[graph])
        history.append({"float_ops": list(chosen), **score, "reason": "xnnpack"})
    if _criterion(score) < min_cosine and per_tensor_fallback:
        model, score, chosen, per_tensor = _keep_worst_tensors_in_float(
            graphs[graph], ranges[route], calib_inputs, activations.get(graph), groups, chosen, model, score,
            lambda ops: attempt(ops, route), min_cosine, min_gain, threads, say)
        if per_tensor.get("kept"):
            history.append({"float_ops": list(chosen), **score, "reason": "per-tensor"})
        speed["per_tensor"] = per_tensor
    candidates = [name for name in groups if name not in chosen and groups[name].kind != "tensor"]
    for _ in range(max_rounds):
        if _criterion(score) >= min_cosine or not candidates:
            break
        say(f"cosine {_describe(score)} < {min_cosine}: trying float fallback for {len(candidates)} candidates")
        trials = {name: attempt(chosen + [name], route) for name in candidates}
        ranked = sorted(candidates, key=lambda name: -_criterion(trials[name][1]))
        best = ranked[0]
        gain = _criterion(trials[best][1]) - _criterion(score)
        history.append({"tried": {name: _criterion(trials[name][1]) for name in ranked},
                        "best": best, "gain": round(gain, 6)})
        if gain < min_gain:
            say(f"no float fallback gains {min_gain} cosine (best: {best}, {gain:+.4f}); stopping")
            break
        chosen = chosen + [best]
        model, score = trials[best]
        history.append({"float_ops": list(chosen), **score})
        say(f"keeping {best} in float: cosine {_describe(score)}")
        candidates = ranked[1:_RETRY_TOP + 1]  # later rounds retry only the most promising
    met = _criterion(score) >= min_cosine
    warnings, alternatives = [], {}
    if not met:
        if measure_alternatives:
            say(f"cosine {_describe(score)} < {min_cosine}: measuring fp16, dynamic and w8a16 for comparison")
            alternatives = measure_alternative_modes(float_model, reference_model or graphs["plain"], eval_inputs,
                                                     ranges[graph, "min_max"], threads, say)
            alternatives = {"w8a8": {**_brief(score)}, **alternatives}
        warnings.append(missed_target_warning(_criterion(score), min_cosine, chosen,
                                              finetuned=reference_model is not None, alternatives=alternatives))
    report = {
        "recipe": "static_wi8_ai8",
        "precision": "w8a8",
        "activations": "int8",
        "target_met": met,
        "min_cosine": min_cosine,
        "calibration": {"images": int(len(calib_inputs)), "source": calib_source, "ranges": statistic,
                        "graph": graph, "by_route": history[0]["by_route"], "mse": range_summary.get(graph)},
        "eval_images": int(len(eval_inputs)),
        "criterion": f"logits cosine vs float >= {min_cosine} on every held-out image",
        "cosine_before": history[0]["cosine_mean"],
        "cosine_min_before": history[0]["cosine_min"],
        "cosine_after": score["cosine_mean"],
        "cosine_min_after": score["cosine_min"],
        "top1_agreement_after": score["top1_agreement"],
        "ms_per_image": score["ms_per_image"],
        "float_fallback_ops": chosen,
        "float_for_speed": speed.get("kept_float", []),
        "xnnpack": speed,
        "float_fallback_detail": {name: groups[name].describe() for name in chosen},
        "float_op_counts": float_op_counts(model),
        "int16_op_counts": int16_op_counts(model),
        "int8_io": int8_io,
        "alternatives": alternatives,
        "search": history,
        "warnings": warnings,
    }
    return model, report


def _keep_undelegated_in_float(model: bytes, score: dict, attempt: Callable, groups: dict, min_cosine: float,
                               noise: float, say: Callable[[str], None], float_model: bytes
                               ) -> tuple[list[str], bytes, dict, dict]:
    """Keep float the op types XNNPACK leaves to TFLite's built-in kernels in the full int8 model.

    XNNPACK has no int8 HARD_SWISH, SOFTMAX or the LayerNorm pieces (RSQRT, SQUARED_DIFFERENCE...), and
    BATCH_MATMUL only with a symmetric right-hand input (``SYMMETRIC_MATMUL_RHS``), so a full int8 ViT runs
    as 60-90 partitions and is slower than float; in float XNNPACK takes them. The set is tried alone and
    with the layout ops float that connect to those ops through layout ops only (see ``_LAYOUT_OPS`` and
    :func:`_layout_next_to`; not every layout op: trained LeViT-128S, same accuracy, 2.21 vs 2.65 ms -- the
    stem's PAD and the head's reshapes in float cost 0.44 ms), and also with the matmuls that take those
    ops' outputs float (:func:`_matmuls_fed_by`: attention probabilities @ V), and with the rest of the modules
    those ops make mostly float (:func:`_float_islands`: whole LayerNorms). It is accepted only if its cosine stays
    above ``min(min_cosine, c) - max(noise, (1 - c) / 4)`` with ``c`` the full int8 cosine; when neither
    passes, each leave-one-out subset (with the layout ops) is tried. Among acceptable sets (those meeting
    ``min_cosine`` if any do) the one leaving the fewest ops outside XNNPACK wins, then the one with the fewest
    QUANTIZE/DEQUANTIZE ops (each a pass over its tensor), then by cosine.
    """
    from ..runtimes.tflite import delegation_census

    census = delegation_census(model)
    slow = [op for op in census["not_delegated"] if op in groups and groups[op].kind == "op_type"]
    record = {"enabled": True, "int8_not_delegated": census["not_delegated"], "int8_partitions": census["partitions"],
              "kept_float": [], "tried": {}}
    if not slow:
        return [], model, score, record
    say(f"XNNPACK leaves {sum(census['not_delegated'].values())} int8 ops to built-in kernels "
        f"({', '.join(slow)}): trying them in float")
    trials = {}
    # A float set may add up to a quarter of full int8's own error: the worst-image cosine of a model
    # int8 already hurts is noisy (trained MobileViT-XXS: 0.59-0.66 across float sets whose mean
    # cosines differ by < 0.004), and speed is then the only thing a float set can still change.
    target = min(min_cosine, _criterion(score)) - max(noise, 0.25 * (1.0 - _criterion(score)))

    def run(subset: tuple) -> None:
        q_model, q_score = attempt(list(subset))
        census = delegation_census(q_model)
        left = census["not_delegated"]
        boundaries = census["ops"].get("QUANTIZE", 0) + census["ops"].get("DEQUANTIZE", 0)
        trials[subset] = (q_model, q_score, sum(left.values()), left, boundaries)
        record["tried"][",".join(subset)] = {"cosine_min": q_score["cosine_min"], "cosine_mean": q_score["cosine_mean"],
                                             "not_delegated": sum(left.values()), "quantize_dequantize": boundaries}

    layout = ()
    group = _layout_next_to(float_model, slow)
    if group is not None:
        groups[group.name] = group
        layout = (group.name,)
    run(tuple(slow))
    if layout:  # float layout ops between float compute ops (see _LAYOUT_OPS); XNNPACK runs them
        run(tuple(slow) + layout)
    fed = _matmuls_fed_by(float_model, slow) if "BATCH_MATMUL" not in slow else None
    if fed is not None:  # int8 matmuls (XNNPACK's, symmetric right-hand input) except those after float ops
        groups[fed.name] = fed
        run(tuple(slow) + (fed.name,) + layout)
    islands = _float_islands(float_model, slow)
    if islands is not None:  # whole modules float rather than int8 pieces between float ones
        groups[islands.name] = islands
        run(tuple(slow) + layout + (islands.name,))
    if max(_criterion(t[1]) for t in trials.values()) < target and len(slow) > 1:
        for drop in slow:
            run(tuple(op for op in slow if op != drop) + layout)
    ok = [s for s, t in trials.items() if _criterion(t[1]) >= target]
    if not ok:
        say(f"keeping {', '.join(slow)} in float costs accuracy; left int8")
        return [], model, score, record
    ok = [s for s in ok if _criterion(trials[s][1]) >= min_cosine] or ok
    best = min(ok, key=lambda s: (trials[s][2], trials[s][4], -_criterion(trials[s][1])))
    q_model, q_score, _, left, _ = trials[best]
    record.update(kept_float=list(best), not_delegated_after=left,
                  partitions_after=delegation_census(q_model)["partitions"])
    say(f"keeping {', '.join(best)} in float for XNNPACK: cosine {_describe(q_score)}, "
        f"{sum(left.values())} ops left outside XNNPACK")
    return list(best), q_model, q_score, record


# How many of the worst-represented tensors the per-tensor stage keeps float, fewest first: every
# float island costs QUANTIZE/DEQUANTIZE pairs, so the smallest set meeting the target wins.
PER_TENSOR_STEPS = (1, 2, 4, 8, 16)
# At most this share of the model's compute ops may go float this way: past it the "w8a8" model
# would be a float model with int8 decoration (a 2-op test net: none; MobileViT-XXS: ~40 ops).
PER_TENSOR_MAX_SHARE = 0.2


def tensor_sqnr(values: dict[str, np.ndarray], qsvs: dict) -> dict[str, float]:
    """Signal-to-quantization-noise ratio (dB) of each activation tensor under its int8 range:
    where int8 loses the most of a tensor, relative to the tensor itself."""
    from .ranges import quantization_mse

    out = {}
    for name, v in values.items():
        if name not in qsvs or not v.size:
            continue
        lo, hi = float(np.min(qsvs[name]["min"])), float(np.max(qsvs[name]["max"]))
        noise = quantization_mse(v, lo, hi)
        out[name] = float(10 * np.log10(max(float(np.mean(v.astype(np.float64) ** 2)), 1e-30) / max(noise, 1e-30)))
    return out


def _keep_worst_tensors_in_float(float_model: bytes, qsvs: dict, calib_inputs: np.ndarray,
                                 activations: dict[str, np.ndarray] | None, groups: dict,
                                 chosen: list[str], model: bytes, score: dict, attempt: Callable, min_cosine: float,
                                 min_gain: float, threads: int, say: Callable[[str], None]
                                 ) -> tuple[bytes, dict, list[str], dict]:
    """Keep float the tensors int8 represents worst (lowest SQNR on calibration images): each one's
    producer and consumers go float, so the tensor is never quantized. 1, 2, 4... tensors, stopping
    at the fewest that meet ``min_cosine``; if none does, the best set when it gains ``min_gain``.
    ``activations``: the values MSE range selection already collected on this graph (reused, not re-run).
    Returns (model, score, chosen, record); ``groups`` gains one ``tensor`` group per op used."""
    from .ranges import collect_activations

    producers, consumers = _tensor_ops(float_model)
    scopes = _op_scopes(float_model)
    compute = [n for n, op in producers.items() if op not in _SKIP_IN_REPORT and op not in _LAYOUT_OPS]
    budget = int(PER_TENSOR_MAX_SHARE * len(compute))
    record = {"budget_ops": budget, "tried": {}, "kept": []}
    if budget < 1:
        return model, score, chosen, record
    wanted = [n for n in compute if n in qsvs]
    values = ({n: activations[n] for n in wanted if n in activations} if activations is not None
              else collect_activations(float_model, calib_inputs[:16], wanted, threads))
    sqnr = tensor_sqnr(values, qsvs)
    ranked = sorted(sqnr, key=sqnr.get)
    record["ranked"] = [{"tensor": n, "op": producers[n], "sqnr_db": round(sqnr[n], 1)} for n in ranked[:16]]

    def ops_of(tensor: str) -> list[str]:
        ops = [(producers[tensor], tensor)] + consumers.get(tensor, [])
        names = []
        for op_type, out in ops:
            if op_type in _SKIP_IN_REPORT or out not in scopes:  # an unnamed output: no scope to match
                continue
            name = f"{op_type}@{out.rsplit('/', 1)[-1][:80]}"  # op type @ its module, short
            groups[name] = FallbackGroup(name, "tensor", scope_pattern([scopes[out]]), ((op_type, 1),))
            names.append(name)
        return names

    best = None
    for k in PER_TENSOR_STEPS:
        names = list(dict.fromkeys(n for tensor in ranked[:k] for n in ops_of(tensor)))
        if k > len(ranked) or len(names) > budget:
            break
        q_model, q_score = attempt(chosen + names)
        record["tried"][k] = {**_brief(q_score), "float_ops": len(names)}
        say(f"  worst {k} tensors in float ({len(names)} ops): cosine {_describe(q_score)}")
        if best is None or _criterion(q_score) > _criterion(best[1]) or _criterion(q_score) >= min_cosine:
            best = (q_model, q_score, names)
        if _criterion(q_score) >= min_cosine:
            break
    if best is None or _criterion(best[1]) - _criterion(score) < min_gain:
        return model, score, chosen, record
    record["kept"] = best[2]
    say(f"keeping {len(best[2])} ops around the worst-represented tensors in float: cosine {_describe(best[1])}")
    return best[0], best[1], chosen + best[2], record


def quantize_w8a16(float_model: bytes, *, calib_inputs: np.ndarray, eval_inputs: np.ndarray,
                   progress: Callable[[str], None] | None = None, calib_source: str = "",
                   input_range: tuple[float, float] | None = None, threads: int = 2) -> tuple[bytes, dict]:
    """int8 weights, int16 activations (``static_wi8_ai16``); returns (model bytes, report).

    Calibrated with each range statistic, the better kept: int16 has resolution to spare, so full
    min/max ranges usually win (trained MobileViT-XXS, natural images: worst cosine 0.999 vs 0.982
    with moving-average ranges). Slow by construction: no XNNPACK kernels (see the module docstring).
    """
    from ..runtimes.tflite import run_tflite

    say = progress or (lambda _msg: None)
    reference = run_tflite(float_model, eval_inputs, threads=threads)
    trials = {}
    say(f"calibrating w8a16 on {len(calib_inputs)} images ({', '.join(INT16_STATISTICS)} ranges)")
    for statistic, qsvs in _calibrate_all(float_model, calib_inputs, threads, INT16_STATISTICS).items():
        if input_range is not None:
            _set_input_range(qsvs, float_model, *input_range)
        model = _static_int8(float_model, qsvs, [], False, 16)
        trials[statistic] = (model, _timed_agreement(model, eval_inputs, reference, threads, reference_kernels=True))
    statistic = max(INT16_STATISTICS, key=lambda st: _criterion(trials[st][1]))
    model, score = trials[statistic]
    say(f"w8a16: logits cosine {_describe(score)} vs float ({statistic} ranges)")
    report = {"recipe": "static_wi8_ai16", "precision": "w8a16", "activations": "int16",
              "calibration": {"images": int(len(calib_inputs)), "source": calib_source, "ranges": statistic},
              "by_statistic": {st: _criterion(trials[st][1]) for st in INT16_STATISTICS},
              "eval_images": int(len(eval_inputs)), "cosine_after": score["cosine_mean"],
              "cosine_min_after": score["cosine_min"], "top1_agreement_after": score["top1_agreement"],
              "ms_per_image": score["ms_per_image"], "float_op_counts": float_op_counts(model),
              "int16_op_counts": int16_op_counts(model),
              "warnings": [f"w8a16: int16 activations run on TFLite's reference kernels, not XNNPACK "
                           f"({score['ms_per_image']:.0f} ms/image while measuring here); "
                           "w8a8 or dynamic keep XNNPACK speed"]}
    return model, report


def measure_alternative_modes(float_model: bytes, reference_model: bytes | None, eval_inputs: np.ndarray,
                              min_max_ranges: dict, threads: int, say: Callable[[str], None]) -> dict:
    """fp32, fp16, dynamic and w8a16 of ``float_model``: worst-image cosine, top-1 agreement and
    ms/image (measured while judging, same images, same threads) against the reference float model.

    w8a16 with ``min_max_ranges`` only, the statistic that wins for int16 (see :func:`quantize_w8a16`; ``--quantize
    w8a16`` itself tries both): int16 runs on reference kernels (~300 ms/image on MobileViT-XXS), and judging both
    statistics, then re-running the winner, took 11 s of every missed MobileViT-XXS conversion."""
    from ..runtimes.tflite import run_tflite

    reference = run_tflite(reference_model or float_model, eval_inputs, threads=threads)
    out = {"fp32": _brief(_timed_agreement(float_model, eval_inputs, reference, threads))}
    for name, make in (("fp16", lambda: quantize_fp16(float_model)), ("dynamic", lambda: quantize_dynamic(float_model)),
                       ("w8a16", lambda: _static_int8(float_model, min_max_ranges, [], False, 16))):
        try:
            out[name] = _brief(_timed_agreement(make(), eval_inputs, reference, threads,
                                                reference_kernels=name == "w8a16"))
        except ConversionError as e:
            out[name] = {"error": str(e)}
        say(f"  {name}: {out[name]}")
    return out


def _run(model: bytes, inputs, threads: int):
    from ..runtimes.tflite import run_tflite

    return run_tflite(model, inputs, threads=threads)


def _timed_agreement(model: bytes, inputs, reference, threads: int, *, reference_kernels: bool = False) -> dict:
    """Agreement with ``reference`` and ms per image while judging. ``reference_kernels``: the model runs on
    TFLite's one-thread reference kernels (int16 activations), so ``threads`` interpreters share the images
    (:func:`~vitdeploy.runtimes.tflite.run_tflite_split`)."""
    if reference_kernels:
        from ..runtimes.tflite import run_tflite_split

        logits, ms = run_tflite_split(model, inputs, workers=threads)
        return {**logits_agreement(logits, reference), "ms_per_image": round(ms, 1)}
    started = time.perf_counter()
    score = logits_agreement(_run(model, inputs, threads), reference)
    return {**score, "ms_per_image": round(1e3 * (time.perf_counter() - started) / len(inputs), 1)}


def _brief(score: dict) -> dict:
    return {k: score[k] for k in ("cosine_min", "cosine_mean", "top1_agreement", "ms_per_image") if k in score}


def missed_target_warning(cosine: float, min_cosine: float, float_ops: list[str], *, finetuned: bool,
                          alternatives: dict | None = None) -> str:
    """The one line for a w8a8 model below the target: the measured options, and what to try next."""
    measured = "; ".join(f"{name} cosine {alt['cosine_min']:.4f} at {alt['ms_per_image']:.0f} ms/image"
                         for name, alt in (alternatives or {}).items() if "cosine_min" in alt)
    advice = "use --quantize dynamic or fp16 (w8a16 where size matters more than speed)" + (
        "" if finetuned else ", or --int8-finetune STEPS with --calib images of your domain")
    return (f"w8a8 logits cosine (worst image) {cosine:.4f} is below {min_cosine} "
            f"(float fallback: {', '.join(float_ops) or 'none helped'})"
            + (f"; measured: {measured}" if measured else "") + f"; {advice} "
            "(docs/troubleshooting.md, \"int8 accuracy loss\")")


def _criterion(score: dict) -> float:
    """What the search optimises: the worst held-out image's logits cosine, which is what
    ``vitdeploy parity``'s int8 preset gates on (``cosine_min``), so a converted model passes it."""
    return score["cosine_min"]


def _describe(score: dict) -> str:
    return f"min {score['cosine_min']:.4f} / mean {score['cosine_mean']:.4f}"


# ----------------------------------------------------------------------------- internals


def _static_int8(float_model: bytes, qsvs: dict, float_groups: list[FallbackGroup], int8_io: bool,
                 activation_bits: int = 8) -> bytes:
    from ai_edge_quantizer import algorithm_manager, recipe

    no_quantize = algorithm_manager.AlgorithmName.NO_QUANTIZE
    q = _quantizer_for(float_model)
    q.load_quantization_recipe(recipe.static_wi8_ai16() if activation_bits == 16 else recipe.static_wi8_ai8())
    symmetric_rhs = activation_bits == 8 and SYMMETRIC_MATMUL_RHS
    if symmetric_rhs:
        q.update_quantization_recipe(".*", "BATCH_MATMUL", op_config=_symmetric_activations_config())
    # INPUT/OUTPUT are the quantizer's virtual ops for the graph's inputs and outputs: excluding
    # them keeps a float interface (QUANTIZE/DEQUANTIZE ops are inserted inside the graph).
    # Later recipe entries win, so these override the ".*" int8 default.
    for group in float_groups:
        if group.kind in ("module", "tensor"):
            q.update_quantization_recipe(group.pattern, "*", algorithm_key=no_quantize)
        else:
            q.update_quantization_recipe(".*", group.pattern, algorithm_key=no_quantize)
    for op in [] if int8_io else ["INPUT", "OUTPUT"]:
        q.update_quantization_recipe(".*", op, algorithm_key=no_quantize)
    if not symmetric_rhs:
        return _run_quantizer(q, qsvs, "int8")
    with _symmetric_matmul_rhs_only():
        return _run_quantizer(q, qsvs, "int8")


@functools.lru_cache(maxsize=4)
def _quantizer_for(float_model: bytes):
    """One parsed Quantizer per float model, its recipe reloaded for each attempt: parsing the flatbuffer
    into Python objects took 0.44 s of each 1.3 s attempt (MobileViT-XXS), and ``quantize()`` works on a
    copy, so the parsed model is reused unchanged (tests/test_calibration_pass.py checks the bytes)."""
    from ai_edge_quantizer import quantizer

    return quantizer.Quantizer(bytearray(float_model))


def _symmetric_activations_config():
    from ai_edge_quantizer import qtyping

    return qtyping.OpQuantizationConfig(
        activation_tensor_config=qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True),
        weight_tensor_config=qtyping.TensorQuantizationConfig(num_bits=8, symmetric=True,
                                                              granularity=qtyping.QuantGranularity.CHANNELWISE),
        compute_precision=qtyping.ComputePrecision.INTEGER, explicit_dequantize=False)


@contextlib.contextmanager
def _symmetric_matmul_rhs_only():
    """While quantizing: a BATCH_MATMUL configured with symmetric activations gets zero point 0 on its
    right-hand input only; its left-hand input and output stay asymmetric.

    XNNPACK (LiteRT >= 2.1.3) runs int8 BATCH_MATMUL only with a zero right-hand zero point. The quantizer
    applies ``symmetric`` to every tensor of the op, and a symmetric left-hand input (the softmax output,
    all in [0, 1]) loses half its levels: trained LeViT-128S, only its matmuls int8, worst-image cosine
    0.80 all-symmetric vs 0.986 right-hand only (0.985 asymmetric, not delegated). The quantizer requantizes
    the right-hand producer's asymmetric output into the symmetric input (one int8 QUANTIZE, run by XNNPACK).
    The quantizer's recipe takes only its own algorithm names, so its min/max materializer for
    BATCH_MATMUL is swapped for the duration of the call and restored after.
    """
    import dataclasses

    from ai_edge_quantizer import algorithm_manager as am, qtyping
    from ai_edge_quantizer.algorithms.uniform_quantize import common_quantize, naive_min_max_quantize

    key, op = am.AlgorithmName.MIN_MAX_UNIFORM_QUANT, qtyping.TFLOperationName.BATCH_MATMUL
    original = (am.get_init_qsv_func(key, op), am.get_quantization_func(key, op, qtyping.QuantizeMode.CALIBRATE),
                am.get_quantization_func(key, op, qtyping.QuantizeMode.MATERIALIZE), am.get_update_qsv_func(key, op))

    def materialize(op_info, graph_info, tensor_name_to_qsv, tensor_quant_params_cache):
        config = op_info.op_quant_config
        if config.activation_tensor_config is None or not config.activation_tensor_config.symmetric:
            return original[2](op_info=op_info, graph_info=graph_info, tensor_name_to_qsv=tensor_name_to_qsv,
                               tensor_quant_params_cache=tensor_quant_params_cache)
        asymmetric = dataclasses.replace(config.activation_tensor_config, symmetric=False)
        plain = common_quantize.materialize_batch_matmul(
            naive_min_max_quantize.get_tensor_quant_params,
            dataclasses.replace(op_info, op_quant_config=dataclasses.replace(config, activation_tensor_config=asymmetric)),
            graph_info, tensor_name_to_qsv, tensor_quant_params_cache)
        symmetric = common_quantize.materialize_batch_matmul(naive_min_max_quantize.get_tensor_quant_params, op_info,
                                                             graph_info, tensor_name_to_qsv, tensor_quant_params_cache)
        return [plain[0], symmetric[1], *plain[2:]]  # [lhs, rhs, output]

    am.register_quantized_op(key, op, original[0], calibration_func=original[1], update_qsv_func=original[3],
                             materialize_func=materialize)
    try:
        yield
    finally:
        am.register_quantized_op(key, op, original[0], calibration_func=original[1], materialize_func=original[2],
                                 update_qsv_func=original[3])


def _run_quantizer(q, qsvs: dict | None, what: str) -> bytes:
    try:
        with quiet():
            result = q.quantize(qsvs, enable_progress_bar=False, enable_progress_report=False)
    except Exception as e:
        raise ConversionError(f"{what} quantization failed: {describe(e)}") from e
    return bytes(result.quantized_model)