"""matplotlib plots for reports (Agg backend, returned as PNG bytes; nothing is shown or left open)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass


@dataclass
class Figure:
    """A rendered plot: title, image bytes and MIME type (``image/png`` or ``image/svg+xml``)."""

    title: str
    data: bytes
    mime: str = "image/png"
    name: str = ""


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def render(fig, title: str, name: str, fmt: str = "png") -> Figure:
    plt = _plt()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format=fmt, dpi=96)
    plt.close(fig)
    return Figure(title, buf.getvalue(), "image/svg+xml" if fmt == "svg" else "image/png", name)


def error_histogram(data: dict) -> Figure | None:
    """|logit error| histograms on log-spaced bins, natural images and random tensors."""
    hists = [("natural images", data.get("histogram")), ("random tensors", data.get("random_histogram"))]
    hists = [(label, h) for label, h in hists if h and h.get("counts")]
    if not hists:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for (label, h), color in zip(hists, ("C0", "C1")):
        edges, counts = h["edges"], h["counts"]
        ax.stairs(counts, edges, fill=True, alpha=0.45, color=color, label=label)
        ax.stairs(counts, edges, color=color)
    ax.set_xscale("log")
    ax.set_xlabel("|artifact logit - reference logit|")
    ax.set_ylabel("logits")
    ax.set_title("Logit error distribution")
    ax.legend()
    ax.grid(alpha=0.3)
    return render(fig, "Logit error histogram", "error_histogram")


def per_image(data: dict) -> Figure | None:
    per = data.get("per_image") or {}
    if not per.get("cosine"):
        return None
    plt = _plt()
    rel = [_plottable(v) for v in per["rel_l2"]]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    colors = ["C0" if a == b else "C3" for a, b in zip(per["top1_ref"], per["top1_got"])]
    ax.bar(range(len(rel)), rel, color=colors)
    ax.set_yscale("log")
    ax.set_xlabel("natural image (red: top-1 class differs)")
    ax.set_ylabel("relative L2 of logits")
    ax.set_title("Per-image error")
    ax.grid(alpha=0.3, axis="y")
    return render(fig, "Per-image relative error", "per_image")


def block_curve(loc: dict) -> Figure | None:
    """Relative L2 per block along the network, divergence threshold and first divergent block marked."""
    rows = [b for b in loc.get("blocks", []) if b.get("rel_l2") is not None]
    if not rows:
        return None
    plt = _plt()
    names = [b["block"] for b in rows]
    values = [max(_plottable(b["rel_l2"]), 1e-12) if math.isfinite(_plottable(b["rel_l2"])) else float("nan")
              for b in rows]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(range(len(values)), values, marker="o", color="C0", label="block output rel L2")
    if loc.get("threshold"):
        ax.axhline(loc["threshold"], color="C1", linestyle="--", label=f"threshold {loc['threshold']:g}")
    first = loc.get("first_divergent")
    if first in names:
        i = names.index(first)
        ax.plot([i], [values[i]], marker="o", markersize=12, color="C3", fillstyle="none",
                label=f"diverges at {first}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("relative L2 vs PyTorch")
    ax.set_title("Per-block error")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return render(fig, "Per-block error (localization)", "block_error")


def latency(data: dict) -> Figure | None:
    runs = [float(v) for v in data.get("runs_ms") or []]
    if not runs:
        return None
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    a1.hist(runs, bins=min(40, max(5, len(runs) // 3)), color="C0")
    for key, color in (("median_ms", "C1"), ("p90_ms", "C3")):
        if data.get(key) is not None:
            a1.axvline(float(data[key]), color=color, linestyle="--", label=f"{key[:-3]} {float(data[key]):.2f} ms")
    a1.set_xlabel("latency (ms)")
    a1.set_ylabel("runs")
    a1.set_title("Latency distribution")
    a1.legend(fontsize=8)
    a2.plot(range(1, len(runs) + 1), runs, color="C0", linewidth=1)
    a2.set_xlabel("run")
    a2.set_ylabel("ms")
    a2.set_title("Latency per run")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
    return render(fig, "Latency", "latency")


def accuracy(data: dict) -> Figure | None:
    """Top-1/top-5 per model as points on an axis zoomed to the data (:func:`zoomed_axis`), the range in the
    title: a 0.9-point drop between fp32 and int8 is as visible as it is consequential."""
    models = data.get("models") or []
    if not models:
        return None
    plt = _plt()
    import numpy as np

    names = [f"{m['name']}\n{_short(m['model'])}" if m.get("name") else _short(m["model"]) for m in models]
    x = np.arange(len(models))
    top1 = [_plottable(m["top1"]) * 100 for m in models]
    top5 = [_plottable(m["top5"]) * 100 for m in models]
    lo, hi = zoomed_axis(top1 + top5)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(models) + 2), 3.6))
    ax.plot(x, top1, "o-", label="top-1", color="C0")
    ax.plot(x, top5, "s--", label="top-5", color="C2")
    for xi, v in zip(x, top1):
        if math.isfinite(v):
            ax.annotate(f"{v:.2f}", (xi, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(lo, hi)
    ax.set_title(f"Accuracy (axis {lo:.1f}-{hi:.1f} %, zoomed to the data)")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    return render(fig, f"Accuracy per model (axis {lo:.1f}-{hi:.1f} %)", "accuracy")


def zoomed_axis(values, *, floor: float = 0.0, ceiling: float = 100.0, min_span: float = 2.0) -> tuple[float, float]:
    """An axis range around ``values`` (finite ones), padded by a quarter of their spread and at least
    ``min_span`` wide, clipped to [floor, ceiling]: differences of a point fill the plot instead of a pixel."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return floor, ceiling
    low, high = min(finite), max(finite)
    pad = max((high - low) * 0.25, (min_span - (high - low)) / 2, 0.0)
    lo, hi = max(floor, low - pad), min(ceiling, high + pad)
    if hi - lo < min_span:  # clipped at a bound: extend the other way
        lo, hi = (max(floor, hi - min_span), hi) if hi >= ceiling else (lo, min(ceiling, lo + min_span))
    return round(lo, 3), round(hi, 3)


def _plottable(v) -> float:
    """A metric as a float for plotting; NaN (a gap) for None and for non-finite values, which reports carry
    as the strings "inf"/"nan" (JSON has no infinity)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f if math.isfinite(f) else float("nan")


def _short(path: str) -> str:
    return str(path).replace("\\", "/").rsplit("/", 1)[-1]


def default_figures(kind: str, data: dict) -> list[Figure]:
    """The plots a report of ``kind`` gets from its data."""
    makers = {
        "parity": [error_histogram, per_image, lambda d: block_curve(d["localization"]) if d.get("localization")
                   else None],
        "localization": [block_curve],
        "profile": [latency],
        "eval": [accuracy],
    }[kind]
    return [f for f in (m(data) for m in makers) if f is not None]
