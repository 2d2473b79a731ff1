"""Reports: ``report.json``, ``report.md`` and a self-contained ``report.html`` for parity, profile and eval.

    from vitdeploy.reports import write_report
    write_report("out/parity", kind="parity", data=result.to_dict())

The HTML has no external resources: CSS inline, plots (matplotlib, Agg) embedded as base64
``data:`` URIs. Every file is written to a temporary name next to it and renamed, so a report
directory never holds a half-written file.
"""

from __future__ import annotations

import base64
import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from ..errors import VitdeployError
from ..files import write_atomically

KINDS = ("parity", "profile", "eval", "localization")
__all__ = ["write_report", "KINDS", "render_markdown", "render_html", "to_json"]


def write_report(out_dir: str | Path, kind: str = "parity", data: dict | None = None, figures=None,
                 title: str | None = None) -> dict[str, Path]:
    """Write the three report files into ``out_dir``; returns ``{"json", "md", "html"}`` paths.

    ``figures``: ``None`` = the default plots for ``kind`` made from ``data``; ``False`` = none; a list of
    :class:`vitdeploy.reports.figures.Figure` (or ``(title, png_bytes)`` tuples) = these *in addition*.
    """
    from . import figures as F

    if kind not in KINDS:
        raise VitdeployError(f"unknown report kind '{kind}'; choose one of {', '.join(KINDS)}")
    if not isinstance(data, dict):
        raise VitdeployError("report data must be a dict (e.g. result.to_dict())")
    data = _sanitize(data)
    figs: list = []
    if figures is not False:
        figs = F.default_figures(kind, data)
        for extra in figures or []:
            figs.append(extra if isinstance(extra, F.Figure) else F.Figure(str(extra[0]), bytes(extra[1])))
    title = title or _default_title(kind, data)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VitdeployError(f"{out}: cannot create the report directory ({e.strerror})") from None
    document = {"kind": kind, "title": title, "generated": generated, "data": data,
                "figures": [f.title for f in figs]}
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    # Render everything first: a failure leaves the previous report untouched, not a mixed set.
    texts = {"json": to_json(document), "md": render_markdown(kind, data, title, generated),
             "html": render_html(kind, data, title, generated, figs)}
    for key in ("json", "md", "html"):
        write_atomically(paths[key], texts[key])
    return paths


# ----------------------------------------------------------------------------- helpers


def to_json(obj) -> str:
    return json.dumps(_sanitize(obj), indent=2, allow_nan=False) + "\n"


def _sanitize(obj):
    """JSON-safe copy: non-finite floats become the strings "inf", "-inf", "nan"; numpy scalars become Python."""
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _sanitize(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _default_title(kind: str, data: dict) -> str:
    if kind == "parity":
        return f"Parity: {_name(data.get('artifact'))} vs {_name(data.get('checkpoint'))}"
    if kind == "localization":
        return f"Localization: {_name(data.get('artifact'))}"
    if kind == "profile":
        return f"Profile: {_name(data.get('model'))} on {data.get('device', 'host')}"
    return "Accuracy evaluation"


def _name(path) -> str:
    return str(path or "?").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _num(v, spec: str = ".6g") -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return str(v)


def _pct(v) -> str:
    return "-" if v is None or isinstance(v, str) else f"{float(v):.2%}"


# ----------------------------------------------------------------------------- content (shared by md and html)

_METRIC_ROWS = (("cosine_min", "cosine (min over inputs)", ".7f"), ("cosine_mean", "cosine (mean)", ".7f"),
                ("rel_l2", "relative L2", ".3e"), ("max_abs", "max abs error", ".3e"),
                ("mean_abs", "mean abs error", ".3e"), ("snr_db", "SNR (dB)", ".1f"),
                ("top1", "top-1 agreement", "pct"), ("top5", "top-5 agreement", "pct"))


def _fmt_metric(value, spec):
    return _pct(value) if spec == "pct" else _num(value, spec)


def _sections(kind: str, data: dict) -> list[tuple[str, list, list[list[str]] | str]]:
    """(heading, header row, rows | paragraph) for each section of a report."""
    out = []
    if kind == "parity":
        verdict = "PASSED" if data.get("passed") else "FAILED"
        out.append(("Verdict", [], f"{verdict} -- preset {data.get('precision')} "
                                   f"(from {data.get('precision_source')}); "
                                   f"{data.get('inputs', {}).get('natural', {}).get('count', '?')} natural images "
                                   f"({data.get('inputs', {}).get('natural', {}).get('source', '?')}) gate the result; "
                                   f"{data.get('inputs', {}).get('random', {}).get('count', 0)} random tensors "
                                   "are reported only."))
        if data.get("arm"):
            from ..parity.run import describe_arm

            out.append(("Emulated phone CPU", [], describe_arm(data["arm"])))
        nonfinite = _nonfinite_text(data)
        if nonfinite:
            out.append(("Outputs not finite", [], nonfinite))
        if data.get("failures"):
            out.append(("Failures", ["metric", "inputs", "measured", "threshold", "missed by"],
                        [[f["metric"], f["inputs"], _num(f["measured"]), ("≥ " if f["direction"] == "min" else "≤ ")
                          + _num(f["threshold"]), _num(f["miss"], ".3g")] for f in data["failures"]]))
        m = data.get("metrics", {})
        nat, rnd = m.get("natural") or {}, m.get("random") or {}
        out.append(("Metrics", ["metric", "natural images (gate)", "random tensors (report)"],
                    [[label, _fmt_metric(nat.get(key), spec), _fmt_metric(rnd.get(key), spec) if rnd else "-"]
                     for key, label, spec in _METRIC_ROWS]))
        tol = {k: v for k, v in (data.get("tolerances") or {}).items() if v is not None}
        out.append(("Tolerances", ["key", "threshold"], [[k, _num(v)] for k, v in tol.items()]))
        per = data.get("per_image") or {}
        if per.get("cosine"):
            rows = []
            for i, name in enumerate(per.get("names") or range(len(per["cosine"]))):
                rows.append([_name(name), _num(per["cosine"][i], ".7f"), _num(per["rel_l2"][i], ".3e"),
                             _num(per["max_abs"][i], ".3e"), str(per["top1_ref"][i]), str(per["top1_got"][i])])
            out.append(("Per image", ["image", "cosine", "rel L2", "max abs", "top-1 ref", "top-1 artifact"], rows))
        if data.get("localization"):
            out += _sections("localization", data["localization"])
        if data.get("warnings"):
            out.append(("Warnings", [], "; ".join(data["warnings"])))
    elif kind == "localization":
        first = data.get("first_divergent")
        text = (f"Divergence starts at **{first}** (first block with rel L2 above {_num(data.get('threshold'))})"
                if first else f"No block above rel L2 {_num(data.get('threshold'))}")
        if data.get("jumps"):
            text += "; largest jumps: " + ", ".join(f"{j['block']} (x{_num(j['ratio'], '.3g')})" for j in data["jumps"])
        mapping = data.get("mapping") or {}
        text += (f". Tensors matched by name: {mapping.get('by_name', 0)}, by shape: {mapping.get('by_shape', 0)}, "
                 f"unmatched: {mapping.get('unmatched', 0)}.")
        out.append(("Localization", [], text))
        out.append(("Per-block error", ["block", "rel L2", "cosine", "cosine min", "max abs", "match", "layout"],
                    [[b["block"], _num(b.get("rel_l2"), ".3e"), _num(b.get("cosine"), ".7f"),
                      _num(b.get("cosine_min"), ".7f"), _num(b.get("max_abs"), ".3e"), _num(b.get("match")),
                      _num(b.get("layout"))] for b in data.get("blocks", [])]))
    elif kind == "profile":
        keys = [k for k in ("model", "kind", "device", "runtime", "threads", "runs", "warmup", "load_ms", "first_ms",
                            "min_ms", "median_ms", "p90_ms", "mean_ms", "std_ms") if k in data]
        out.append(("Latency", ["field", "value"], [[k, _num(data[k], ".3f")] for k in keys]))
        if data.get("host"):
            out.append(("Host", ["field", "value"], [[str(k), _num(v)] for k, v in data["host"].items()]))
        if data.get("parity"):
            out.append(("On-device parity", ["config", "cosine", "max abs error", "top-1 match"],
                        [[str(r.get("config")), _num(r.get("cosine"), ".7f"), _num(r.get("max_abs_error"), ".3e"),
                          _num(r.get("top1_match"))] for r in data["parity"]]))
    elif kind == "eval":
        ds = data.get("dataset") or {}
        out.append(("Dataset", [], f"{ds.get('images', '?')} images in {ds.get('classes', '?')} classes from "
                                   f"{ds.get('root', '?')}" + (f", class indices from {ds['labels_file']}"
                                                               if ds.get("labels_file") else
                                                               ", class index = sorted folder order")))
        out.append(("Accuracy", ["model", "target precision", "MB", "top-1", "top-1 vs first (pt)", "top-5", "images",
                                 "outputs not finite", "seconds"],
                    [[_name(m["model"]), str(m.get("name") or m.get("kind")),
                      _num(m["size_bytes"] / 1e6, ".1f") if isinstance(m.get("size_bytes"), (int, float)) else "-",
                      _pct(m["top1"]),
                      _num(m["delta_top1"] * 100, "+.2f") if isinstance(m.get("delta_top1"), (int, float)) else "-",
                      _pct(m["top5"]), str(m["n"]), str(m.get("nonfinite", 0)), _num(m.get("seconds"), ".1f")]
                     for m in data.get("models", [])]))
    return out


def _nonfinite_text(data: dict) -> str:
    """A parity report's NaN/inf finding in words ("" when every output was finite)."""
    parts = []
    for inputs, count in (data.get("nonfinite") or {}).items():
        if isinstance(count, dict) and count.get("count"):
            parts.append(f"outputs not finite on {count['count']} of {count.get('of', '?')} {inputs} inputs")
    if not parts:
        return ""
    first = data.get("first_nonfinite")
    return ("; ".join(parts) + (f". First non-finite value: {first}" if first else "")
            + ". Metrics are measured on the inputs whose outputs were finite; fp16 overflow is the usual cause.")


# ----------------------------------------------------------------------------- markdown


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(kind: str, data: dict, title: str, generated: str) -> str:
    lines = [f"# {title}", "", f"_Generated by vitdeploy, {generated}. Plots: see report.html._", ""]
    for heading, header, body in _sections(kind, data):
        lines += [f"## {heading}", ""]
        if isinstance(body, str):
            lines += [body, ""]
            continue
        if not body:
            lines += ["(none)", ""]
            continue
        lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body]
        lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- html

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;
padding:0 1em;background:#fff}
h1{font-size:1.5em;border-bottom:2px solid #ddd;padding-bottom:.3em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:left}th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}
.pass{color:#fff;background:#2a7d2a;padding:.1em .5em;border-radius:3px}
.fail{color:#fff;background:#b22222;padding:.1em .5em;border-radius:3px}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
.meta{color:#666;font-size:.85em}pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
"""


def _html_text(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")  # the one bit of markdown the sections use
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def render_html(kind: str, data: dict, title: str, generated: str, figures: list) -> str:
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class=\"meta\">Generated by vitdeploy, {html.escape(generated)}. Self-contained: no external "
            "resources.</p>"]
    if kind == "parity":
        ok = bool(data.get("passed"))
        body.append(f"<p><span class=\"{'pass' if ok else 'fail'}\">{'PASSED' if ok else 'FAILED'}</span></p>")
    for heading, header, content in _sections(kind, data):
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(content, str):
            body.append(f"<p>{_html_text(content)}</p>")
            continue
        if not content:
            body.append("<p>(none)</p>")
            continue
        body.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>"
                    "<tbody>" + "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                                        for row in content) + "</tbody></table>")
    if figures:
        body.append("<h2>Plots</h2>")
        for fig in figures:
            b64 = base64.b64encode(fig.data).decode("ascii")
            body.append(f"<figure><img alt=\"{html.escape(fig.title)}\" src=\"data:{fig.mime};base64,{b64}\">"
                        f"<figcaption>{html.escape(fig.title)}</figcaption></figure>")
    body.append("<details><summary>Raw data (report.json)</summary><pre>"
                + html.escape(json.dumps(data, indent=2)) + "</pre></details>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
