"""Activation ranges chosen per tensor by measured quantization error (MSE-optimal clipping).

Min/max ranges let one rare peak set a tensor's int8 step: after BatchNorm folding a few SiLU
channels of MobileViT reach +-100 while most stay within a few units, and the small values get a
handful of levels. Moving averages of batch min/max trim peaks only by chance. Here each
activation tensor's range is the one that minimises the mean squared error of int8
quantize-dequantize over values the float model really produced on the calibration images:
clipping a rare peak costs its clipped excess, rounding every other value costs step**2 / 12,
and the search weighs the two on the tensor's own data (Banner et al. 2019; what
ai-edge-quantizer's MSE algorithm does for weights). The whole-model choice between these ranges
and the plain statistics stays with :func:`vitdeploy.quantization.tflite.quantize_int8`, measured.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Values kept per tensor per calibration image (plus its min and max): enough that a tail of
# 1e-4 of a 1M-value tensor is still seen about once per image, bounded memory for ~300 tensors.
SAMPLES_PER_IMAGE = 8192
# Fractions of each end of the min/max range tried: log-spaced down to 1 %, since one SiLU
# channel at +-150 over a tensor whose values mostly lie within +-3 wants a cut near 3 %.
SHRINK = tuple(float(a) for a in np.geomspace(1.0, 0.01, 33))
SEARCH_VALUES = 131072  # the search's own subsample (extremes kept): ~1 ms per candidate


def collect_activations(float_model: bytes, inputs: np.ndarray, names: list[str], threads: int = 2,
                        seed: int = 0) -> dict[str, np.ndarray]:
    """A sample of each named tensor's values over ``inputs`` (one image at a time), extremes included.

    The images are shared out among ``threads`` one-thread interpreters running at once (the interpreter
    releases the GIL while invoking; without XNNPACK most built-in float kernels and the copying out of every
    tensor use one core). Each image is sampled with its own seed, so the result does not depend on ``threads``.
    """
    from ..runtimes.tflite import in_image_chunks

    parts = in_image_chunks(lambda first, chunk: _collect_chunk(float_model, chunk, names, first, seed), inputs, threads)
    merged: dict[str, list[np.ndarray]] = {}
    for part in parts:  # image order, as one interpreter would have seen them
        for name, values in part.items():
            merged.setdefault(name, []).extend(values)
    return {name: np.concatenate(values) for name, values in merged.items() if values}


def _collect_chunk(float_model: bytes, inputs: np.ndarray, names: list[str], first: int,
                   seed: int) -> dict[str, list[np.ndarray]]:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # Without the default XNNPACK delegate: inside a delegated graph intermediate tensors are not kept.
    interpreter = Interpreter(model_content=bytes(float_model), num_threads=1,
                              experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    index = {t["name"]: t["index"] for t in interpreter.get_tensor_details()}
    wanted = [n for n in names if n in index]
    input_index = interpreter.get_input_details()[0]["index"]
    samples: dict[str, list[np.ndarray]] = {n: [] for n in wanted}
    for i, x in enumerate(inputs):
        rng = np.random.default_rng((seed, first + i))
        interpreter.set_tensor(input_index, np.asarray(x[None], dtype=np.float32))
        interpreter.invoke()
        for name in wanted:
            values = np.asarray(interpreter.get_tensor(index[name]), dtype=np.float32).ravel()
            if values.size > SAMPLES_PER_IMAGE:
                picked = values[rng.integers(0, values.size, SAMPLES_PER_IMAGE)]
                values = np.concatenate([picked, [values.min(), values.max()]])
            samples[name].append(values)
    return samples


def quantization_mse(values: np.ndarray, lo: float, hi: float, levels: int = 256) -> float:
    """Mean squared error of asymmetric integer quantize-dequantize of ``values`` over [lo, hi]
    (zero exactly representable, as TFLite requires)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (levels - 1), 1e-12)
    zero_point = float(np.round(-lo / scale))
    # float32 throughout, in place: a float64 zero point used to promote every temporary to float64;
    # 1.11 -> 0.07 ms per call on 131k values; the search over MobileViT-XXS's 695 tensors (99 calls each) 9.4 -> 3.2 s
    # on 2 threads, every chosen range the same on both committed references (docs/int8-goals.md, "w8a8 conversion time").
    error = np.divide(values, np.float32(scale), dtype=np.float32)
    np.round(error, out=error)
    np.clip(error, -zero_point, levels - 1 - zero_point, out=error)  # = clip(q + zero point, 0, levels - 1) - zp
    error *= np.float32(scale)
    error -= values
    return float(np.dot(error, error)) / max(error.size, 1)


def mse_range(values: np.ndarray, levels: int = 256) -> tuple[float, float, dict]:
    """(lo, hi) minimising :func:`quantization_mse`, each end searched in turn (a skewed tensor
    clips one side more): hi given lo=min, lo given that hi, hi again given that lo."""
    lo0, hi0 = float(min(values.min(), 0.0)), float(max(values.max(), 0.0))
    if hi0 - lo0 <= 0:
        return lo0, hi0, {"shrink_lo": 1.0, "shrink_hi": 1.0, "mse_gain": 1.0}
    if values.size > SEARCH_VALUES:
        picked = np.random.default_rng(0).integers(0, values.size, SEARCH_VALUES)
        values = np.concatenate([values[picked], [lo0, hi0]]).astype(np.float32)
    lo, hi = lo0, hi0
    for end in ("hi", "lo", "hi"):
        if end == "hi" and hi0 > 0:
            hi = min((a * hi0 for a in SHRINK), key=lambda v: quantization_mse(values, lo, v, levels))
        elif end == "lo" and lo0 < 0:
            lo = min((a * lo0 for a in SHRINK), key=lambda v: quantization_mse(values, v, hi, levels))
    base = quantization_mse(values, lo0, hi0, levels)
    chosen = quantization_mse(values, lo, hi, levels)
    return lo, hi, {"shrink_lo": round(lo / lo0, 3) if lo0 else 1.0, "shrink_hi": round(hi / hi0, 3) if hi0 else 1.0,
                    "mse_gain": round(base / max(chosen, 1e-30), 3)}


def mse_ranges(float_model: bytes, inputs: np.ndarray, qsvs: dict, threads: int = 2,
               skip: tuple[str, ...] = ()) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """``qsvs`` (ai-edge-quantizer's per-tensor ``{"min", "max"}``) with MSE-optimal ranges, a summary,
    and the sampled values each range was chosen on (for callers that rank tensors on them too)."""
    names = [n for n in qsvs if n not in skip]
    values = collect_activations(float_model, inputs, names, threads)
    out, gains, clipped = dict(qsvs), [], 0
    # One search per tensor, independent and deterministic: numpy releases the GIL in the big array
    # operations, so ``threads`` searches run at once (MobileViT-XXS, 695 tensors: 25 s on one core).
    with ThreadPoolExecutor(max(1, threads)) as pool:
        searched = dict(zip(values, pool.map(mse_range, values.values())))
    for name, v in values.items():
        lo, hi, info = searched[name]
        old = qsvs[name]
        out[name] = {**old, "min": np.full_like(np.asarray(old["min"], dtype=np.float32), lo),
                     "max": np.full_like(np.asarray(old["max"], dtype=np.float32), hi)}
        gains.append(info.get("mse_gain", 1.0))
        clipped += info.get("shrink_lo", 1.0) < 1.0 or info.get("shrink_hi", 1.0) < 1.0
    summary = {"tensors": len(values), "clipped": int(clipped),
               "median_mse_gain": round(float(np.median(gains)), 3) if gains else None,
               "max_mse_gain": round(float(np.max(gains)), 3) if gains else None}
    return out, summary, values
