"""Numerical agreement between reference logits and artifact logits (vectorized numpy).

Every function takes ``ref`` and ``got`` of the same shape ``(N, ...)`` (one row per sample) and
computes in float64, so the metrics themselves add no rounding worth mentioning.

Definitions (``r`` = reference row, ``g`` = artifact row, ``e = g - r``):

* ``max_abs``     max |e| over every element of every sample
* ``mean_abs``    mean |e| over every element
* ``rel_l2``      ||e||_2 / ||r||_2 over the whole batch (one number; per sample in :func:`per_sample`)
* ``cosine``      r.g / (||r|| ||g||) per sample; reported as min and mean
* ``snr_db``      10 log10(||r||^2 / ||e||^2) over the batch (= -20 log10 rel_l2); inf when e == 0
* ``top1``        fraction of samples whose argmax agrees
* ``top5``        mean over samples of |top5(r) & top5(g)| / 5 (set overlap; order inside the top 5 ignored)
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import VitdeployError
from ..similarity import cosine_rows

_TINY = 1e-30


def _pair(ref, got) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(ref, dtype=np.float64)
    g = np.asarray(got, dtype=np.float64)
    if r.shape != g.shape:
        raise VitdeployError(f"reference and artifact outputs differ in shape: {r.shape} vs {g.shape}")
    if r.ndim == 1:
        r, g = r[None], g[None]
    if r.ndim == 0 or r.shape[0] == 0 or r.size == 0:
        raise VitdeployError("no outputs to compare")
    if not (np.isfinite(r).all()):
        raise VitdeployError("the reference outputs contain NaN or inf")
    return r.reshape(len(r), -1), g.reshape(len(g), -1)


def cosine_per_sample(ref, got) -> np.ndarray:
    """Cosine similarity per row; 1.0 when both rows are all zero, 0.0 when only one is; NaN in ``got`` -> -1."""
    return cosine_rows(*_pair(ref, got))


def rel_l2_per_sample(ref, got) -> np.ndarray:
    r, g = _pair(ref, got)
    with np.errstate(invalid="ignore"):
        out = np.linalg.norm(g - r, axis=1) / np.maximum(np.linalg.norm(r, axis=1), _TINY)
    return np.where(np.isfinite(out), out, np.inf)


def max_abs_error(ref, got) -> float:
    r, g = _pair(ref, got)
    e = np.abs(g - r)
    return float(np.inf) if not np.isfinite(e).all() else float(e.max())


def mean_abs_error(ref, got) -> float:
    r, g = _pair(ref, got)
    e = np.abs(g - r)
    return float(np.inf) if not np.isfinite(e).all() else float(e.mean())


def rel_l2(ref, got) -> float:
    r, g = _pair(ref, got)
    num = np.linalg.norm(g - r)
    if not np.isfinite(num):
        return float(np.inf)
    return float(num / max(np.linalg.norm(r), _TINY))


def snr_db(ref, got) -> float:
    r, g = _pair(ref, got)
    noise = float(((g - r) ** 2).sum())
    if not math.isfinite(noise):
        return float(-np.inf)
    signal = float((r ** 2).sum())
    if noise == 0.0:
        return float(np.inf)
    return 10.0 * math.log10(max(signal, _TINY) / noise)


def topk_indices(x: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of the k largest entries per row, best first (stable for ties; NaN ranks last)."""
    x = np.asarray(x, dtype=np.float64)
    x = np.where(np.isnan(x), -np.inf, x)
    k = min(k, x.shape[1])
    return np.argsort(-x, axis=1, kind="stable")[:, :k]


def top1_agreement(ref, got) -> float:
    r, g = _pair(ref, got)
    return float((topk_indices(r, 1)[:, 0] == topk_indices(g, 1)[:, 0]).mean())


def top5_agreement(ref, got, k: int = 5) -> float:
    r, g = _pair(ref, got)
    k = min(k, r.shape[1])
    tr, tg = topk_indices(r, k), topk_indices(g, k)
    overlap = (tr[:, :, None] == tg[:, None, :]).any(2).sum(1)
    return float((overlap / k).mean())


def compare(ref, got) -> dict:
    """All metrics as a JSON-able dict (floats; inf where an error is unbounded)."""
    cos = cosine_per_sample(ref, got)
    return {
        "n": int(np.asarray(ref).shape[0]) if np.asarray(ref).ndim > 1 else 1,
        "max_abs": max_abs_error(ref, got),
        "mean_abs": mean_abs_error(ref, got),
        "rel_l2": rel_l2(ref, got),
        "cosine_min": float(cos.min()),
        "cosine_mean": float(cos.mean()),
        "snr_db": snr_db(ref, got),
        "top1": top1_agreement(ref, got),
        "top5": top5_agreement(ref, got),
        "ref_abs_max": float(np.abs(np.asarray(ref, dtype=np.float64)).max()),
    }


def nonfinite_rows(y) -> np.ndarray:
    """(N,) bool: rows of ``y`` holding any NaN or inf."""
    y = np.asarray(y)
    return ~np.isfinite(y.reshape(len(y), -1)).all(1)


def nonfinite_count(y) -> dict:
    """``{"count": rows with NaN/inf, "of": rows, "nan": rows with a NaN}``."""
    y = np.asarray(y)
    flat = y.reshape(len(y), -1)
    return {"count": int(nonfinite_rows(y).sum()), "of": int(len(y)), "nan": int(np.isnan(flat).any(1).sum())}


def unmeasured() -> dict:
    """:func:`compare`'s keys when no row could be compared (every output non-finite): nothing measured."""
    keys = ("max_abs", "mean_abs", "rel_l2", "cosine_min", "cosine_mean", "snr_db", "top1", "top5", "ref_abs_max")
    return {"n": 0, **{k: None for k in keys}}


def compare_finite(ref, got) -> tuple[dict, dict]:
    """(:func:`compare` over the rows whose ``got`` is finite, :func:`nonfinite_count` of ``got``).

    Non-finite rows are counted apart: their cosine -1 / rel L2 inf would only hide what happened."""
    got = np.asarray(got)
    bad = nonfinite_rows(got)
    ok = ~bad
    metrics = compare(np.asarray(ref)[ok], got[ok]) if ok.any() else unmeasured()
    return metrics, nonfinite_count(got)


def per_sample(ref, got) -> dict:
    """Per-sample cosine, relative L2, max abs error and whether the top-1 class agrees (lists)."""
    r, g = _pair(ref, got)
    return {
        "cosine": cosine_per_sample(r, g).tolist(),
        "rel_l2": rel_l2_per_sample(r, g).tolist(),
        "max_abs": np.where(np.isfinite(g).all(1), np.abs(g - r).max(1), np.inf).tolist(),
        "top1_ref": topk_indices(r, 1)[:, 0].tolist(),
        "top1_got": topk_indices(g, 1)[:, 0].tolist(),
        "finite": np.isfinite(g).all(1).tolist(),
    }


def error_histogram(ref, got, bins: int = 40) -> dict:
    """Histogram of |error| over all elements on log-spaced bins (for reports): ``{"edges", "counts", "zeros"}``."""
    r, g = _pair(ref, got)
    e = np.abs(g - r).ravel()
    e = e[np.isfinite(e)]
    zeros = int((e == 0).sum())
    e = e[e > 0]
    if e.size == 0:
        return {"edges": [], "counts": [], "zeros": zeros}
    lo, hi = float(e.min()), float(e.max())
    if hi <= lo:
        hi = lo * 1.0001 + 1e-30
    edges = np.logspace(math.log10(lo), math.log10(hi), bins + 1)
    counts, _ = np.histogram(e, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "zeros": zeros}
