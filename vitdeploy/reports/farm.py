"""Latency on many phones as one comparison: rows, the stability verdict, a table (terminal, Markdown,
JSON) and one plot, from :class:`~vitdeploy.devices.backend.LatencyRecord` s of any backend.

A row is one (model, backend, device, OS, runtime, compute units, threads) with its repeats pooled: median,
p10, p90 of every raw latency, the worst repeat's coefficient of variation and how far the repeats' medians
lie apart. It is **unstable** when that CV is above ``max_cv`` (default 10 %) or the repeats' medians differ
by more than ``max_repeat_spread`` (default 5 % of the lowest). Numbers from a farm's own profiler (Qualcomm
AI Hub) are labelled as such, never as the vitdeploy harness. A device that reported nothing is one error
line; the others are kept.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..devices.backend import SOURCE_HARNESS, SOURCE_QAI_HUB, LatencyRecord, _quantile

MAX_CV, MAX_REPEAT_SPREAD = 0.10, 0.05
SOURCE_LABELS = {SOURCE_HARNESS: "harness", SOURCE_QAI_HUB: "qai-hub profiler"}
VENDOR_COLORS = {"Qualcomm": "#d62728", "Samsung": "#1f77b4", "Google": "#2ca02c", "MediaTek": "#ff7f0e",
                 "Apple": "#7f7f7f", "HiSilicon": "#9467bd", None: "#bcbd22"}


@dataclass
class Row:
    model: str
    backend: str
    device: str
    soc: str | None
    vendor: str | None
    os: str | None
    runtime: str
    compute_units: str
    threads: int | None
    source: str
    repeats: int
    latencies_ms: list[float] = field(default_factory=list)
    repeat_medians: list[float] = field(default_factory=list)
    cv: float | None = None  # the worst repeat's
    repeat_spread: float | None = None  # (max - min) / min of the repeats' medians
    thermal: str | None = None
    queue_s: float | None = None
    url: str | None = None
    unstable: bool = False
    why_unstable: str | None = None

    @property
    def median_ms(self) -> float | None:
        return _quantile(self.latencies_ms, 0.5)

    @property
    def p10_ms(self) -> float | None:
        return _quantile(self.latencies_ms, 0.1)

    @property
    def p90_ms(self) -> float | None:
        return _quantile(self.latencies_ms, 0.9)

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "latencies_ms"}
        d.update(median_ms=self.median_ms, p10_ms=self.p10_ms, p90_ms=self.p90_ms,
                 source_label=SOURCE_LABELS.get(self.source, self.source))
        return d


def _thermal(records: Sequence[LatencyRecord]) -> str | None:
    """"nominal->light" (before -> after), or the one state reported; None when nothing says."""
    states = []
    for r in records:
        t = r.thermal or {}
        before = t.get("before") or t.get("thermal_before") or t.get("thermal_state")
        after = t.get("after") or t.get("thermal_after")
        if before or after:
            states.append(f"{before or '?'}->{after}" if after else str(before))
    return ", ".join(dict.fromkeys(states)) or None


def rows(records: Sequence[LatencyRecord], *, max_cv: float = MAX_CV,
         max_repeat_spread: float = MAX_REPEAT_SPREAD) -> tuple[list[Row], list[str]]:
    """The comparison rows (records that measured something) and one error line per failed device/config."""
    groups: "OrderedDict[tuple, list[LatencyRecord]]" = OrderedDict()
    errors: list[str] = []
    for r in records:
        if r.error or not r.latencies_ms:
            what = f"{r.compute_units}" + (f" {r.threads}t" if r.threads else "")
            line = f"{r.device} [{r.backend}] {Path(r.model).name} {what}: {r.error or 'no latencies'}"
            if line not in errors:
                errors.append(line)
            continue
        key = (r.model, r.backend, r.device, r.os, r.runtime, r.compute_units, r.threads, r.source)
        groups.setdefault(key, []).append(r)
    out = []
    for (model, backend, device, os_, runtime, units, threads, source), recs in groups.items():
        recs = sorted(recs, key=lambda r: r.repeat)
        medians = [r.median_ms for r in recs]
        cvs = [r.cv for r in recs if r.cv is not None]
        spread = (max(medians) - min(medians)) / min(medians) if len(medians) > 1 and min(medians) > 0 else None
        cv = max(cvs) if cvs else None
        why = []
        if cv is not None and cv > max_cv:
            why.append(f"CV {cv:.0%} > {max_cv:.0%}")
        if spread is not None and spread > max_repeat_spread:
            why.append(f"repeats differ by {spread:.0%} > {max_repeat_spread:.0%}")
        queues = [r.queue_s for r in recs if r.queue_s is not None]
        first = recs[0]
        out.append(Row(model=model, backend=backend, device=device, soc=first.soc, vendor=first.vendor, os=os_,
                       runtime=runtime, compute_units=units, threads=threads, source=source, repeats=len(recs),
                       latencies_ms=[x for r in recs for x in r.latencies_ms], repeat_medians=medians, cv=cv,
                       repeat_spread=spread, thermal=_thermal(recs), queue_s=max(queues) if queues else None,
                       url=next((r.url for r in recs if r.url), None), unstable=bool(why),
                       why_unstable="; ".join(why) or None))
    return out, errors


def _f(x, fmt="{:.2f}", none="-") -> str:
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


COLUMNS = ("model", "device", "SoC", "OS", "runtime", "units", "threads", "median ms", "p90 ms", "CV", "repeats",
           "thermal", "queue s", "source", "link")


def _cells(r: Row) -> list[str]:
    return [Path(r.model).name, r.device + (" [unstable]" if r.unstable else ""), r.soc or "?", r.os or "-",
            r.runtime, r.compute_units, _f(r.threads, "{}"), _f(r.median_ms), _f(r.p90_ms), _f(r.cv, "{:.1%}"),
            str(r.repeats), r.thermal or "-", _f(r.queue_s, "{:.0f}"), SOURCE_LABELS.get(r.source, r.source),
            r.url or "-"]


def format_table(table_rows: Sequence[Row], errors: Sequence[str] = ()) -> str:
    """The terminal table: aligned columns, then one line per unstable row and per error."""
    body = [list(COLUMNS)] + [_cells(r) for r in table_rows]
    widths = [max(len(row[i]) for row in body) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in body]
    lines += [f"unstable: {r.device} {Path(r.model).name} {r.compute_units}"
              + (f" {r.threads}t" if r.threads else "") + f": {r.why_unstable}" for r in table_rows if r.unstable]
    lines += _source_notes(table_rows)
    lines += [f"error: {e}" for e in errors]
    return "\n".join(lines)


def _source_notes(table_rows: Sequence[Row]) -> list[str]:
    if any(r.source == SOURCE_QAI_HUB for r in table_rows):
        return ["note: 'qai-hub profiler' rows are Qualcomm AI Hub's own measurements (its runtime and timing), "
                "not the vitdeploy harness; compare them with each other, not with harness rows"]
    return []


def format_markdown(table_rows: Sequence[Row], errors: Sequence[str] = (), *, title: str = "Latency on devices",
                    max_cv: float = MAX_CV, max_repeat_spread: float = MAX_REPEAT_SPREAD) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    out = [f"# {title}", "",
           f"Unstable (marked **unstable**): CV above {max_cv:.0%} or repeats' medians more than "
           f"{max_repeat_spread:.0%} apart.", "",
           "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table_rows:
        cells = [esc(c) for c in _cells(r)]
        if r.unstable:
            cells[1] = f"{esc(r.device)} **unstable**"
        if r.url:
            cells[-1] = f"[job]({r.url})"
        out.append("| " + " | ".join(cells) + " |")
    notes = _source_notes(table_rows) + [f"unstable: {r.device} {Path(r.model).name}: {r.why_unstable}"
                                         for r in table_rows if r.unstable]
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    if errors:
        out += ["", "## Devices that did not report", ""] + [f"- {esc(e)}" for e in errors]
    return "\n".join(out) + "\n"


def to_json(table_rows: Sequence[Row], errors: Sequence[str], records: Sequence[LatencyRecord], *,
            max_cv: float = MAX_CV, max_repeat_spread: float = MAX_REPEAT_SPREAD) -> dict:
    return {"rows": [r.to_json() for r in table_rows], "errors": list(errors),
            "thresholds": {"max_cv": max_cv, "max_repeat_spread": max_repeat_spread},
            "records": [r.to_json() for r in records]}


def plot(table_rows: Sequence[Row], path: str | Path) -> Path:
    """Median latency per device and configuration, bars coloured by SoC vendor, one bar per model side by
    side (fp32 vs int8), error bars p10-p90; written as PNG (matplotlib, Agg) atomically."""
    import io

    from ..files import write_atomically
    from .figures import _plt

    plt = _plt()
    models = list(dict.fromkeys(r.model for r in table_rows))
    groups = list(dict.fromkeys((r.device, r.backend, r.compute_units, r.threads) for r in table_rows))
    by = {(r.device, r.backend, r.compute_units, r.threads, r.model): r for r in table_rows}
    width = 0.8 / max(len(models), 1)
    hatches = ["", "//", "..", "xx", "\\\\", "oo"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) * max(len(models), 1) + 2), 4.5))
    for j, model in enumerate(models):
        for i, g in enumerate(groups):
            r = by.get((*g, model))
            if r is None or r.median_ms is None:
                continue
            lo, hi = r.median_ms - r.p10_ms, r.p90_ms - r.median_ms
            ax.bar(i + (j - (len(models) - 1) / 2) * width, r.median_ms, width, yerr=[[lo], [hi]], capsize=3,
                   color=VENDOR_COLORS.get(r.vendor, VENDOR_COLORS[None]), hatch=hatches[j % len(hatches)],
                   edgecolor="black", linewidth=0.5)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{d}\n{u}" + (f" {t}t" if t else "") for d, _, u, t in groups], fontsize=8, rotation=30,
                       ha="right")
    ax.set_ylabel("median latency (ms), p10-p90")
    ax.set_title("Latency per device")
    from matplotlib.patches import Patch

    vendors = list(dict.fromkeys(r.vendor for r in table_rows))
    handles = [Patch(facecolor=VENDOR_COLORS.get(v, VENDOR_COLORS[None]), label=v or "unknown SoC") for v in vendors]
    handles += [Patch(facecolor="white", edgecolor="black", hatch=hatches[j % len(hatches)], label=Path(m).name)
                for j, m in enumerate(models)]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=96)
    plt.close(fig)
    path = Path(path)
    write_atomically(path, buf.getvalue())
    return path
