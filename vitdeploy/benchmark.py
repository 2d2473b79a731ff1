"""``vitdeploy benchmark``: one checkpoint, every target x precision this host can run, one table.

What ``yolo benchmark`` is to ultralytics users. Each cell is converted and checked by
:func:`vitdeploy.cell.build_artifact` (the one conversion loop: ``demo`` and ``build`` run it too); then
every artifact and the checkpoint read the same images: labelled accuracy on an ImageFolder (or top-1
agreement with the checkpoint when the folder is unlabelled), the worst image's cosine with the checkpoint's
logits; then the host-timed ones (``formats.HOST_TIMED_TARGETS``) run interleaved in one
:func:`vitdeploy.runtimes.timing.interleaved` run, so a change in load hits all alike, each with its speed-up
over its target's fp32 and a noise flag. Core ML is converted and judged (the MIL interpreter off macOS) but
"not timed here" unless on a Mac.

Images, when not given: the references' shipped held-out set for a reference checkpoint, else the built-in
natural images (agreement with the checkpoint).
"""

from __future__ import annotations

import importlib.util
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import VitdeployError
from .formats import FORMATS, HOST_TIMED_TARGETS, TARGETS
from .precisions import UNQUANTIZED, canonical, format_cells

QUICK = (("tflite", "fp32"), ("tflite", "w8a8"))  # --quick: the float baseline and full integer, on TFLite
NEEDS = {"coreml": "coremltools", "executorch": "executorch"}  # the library a target's converter imports


def plan(targets: tuple[str, ...] = (), precisions: tuple[str, ...] = (), quick: bool = False) -> list[dict]:
    """The cells, in table order: ``{"target", "precision" (compute), "quantize", "label"}`` per target x the
    canonical precisions its row of the formats table holds (Core ML's fp32/fp16 are compute precisions)."""
    unknown = [t for t in targets if t not in FORMATS]
    if unknown:
        raise VitdeployError(f"--targets {unknown[0]}: choose from {', '.join(TARGETS)}")
    wanted = {canonical(p) for p in precisions}
    cells = []
    for target in targets or TARGETS:
        for cell in format_cells(target):
            if (quick and (target, cell.name) not in QUICK) or (wanted and cell.name not in wanted):
                continue
            quantize = UNQUANTIZED if cell.compute and not cell.quantized else cell.name  # Core ML: compute alone
            cells.append({"target": target, "precision": cell.compute or "fp32", "quantize": quantize,
                          "label": cell.describe()})
    if not cells:
        raise VitdeployError("no target x precision left to benchmark: check --targets / --precisions")
    return cells


def benchmark(checkpoint: str | Path, *, out_dir: str | Path = "out/benchmark", data_dir: str | Path | None = None,
              targets: tuple[str, ...] = (), precisions: tuple[str, ...] = (), quick: bool = False,
              n_images: int | None = None, runs: int = 30, threads: int = 2, calib_dir: str | Path | None = None,
              variant: str | None = None, say: Callable[[str], None] | None = None) -> dict:
    """Convert, judge and time every cell of :func:`plan` for ``checkpoint``; a JSON-able summary whose
    ``rows`` start with the checkpoint itself (the accuracy baseline)."""
    from . import checkpoints
    from .outputs import check_output_dir
    from .convert import checkpoint_stem
    from .cell import STATUS_BELOW_TARGET, artifact_path, build_artifact

    say = say or (lambda _msg: None)
    if runs < 1 or threads < 1:
        raise VitdeployError("--runs and --threads must be >= 1")
    cells = plan(targets, precisions, quick)
    out = check_output_dir(Path(out_dir), "-o")
    ckpt = checkpoints.load(checkpoint, variant=variant)
    images = _images(checkpoint, ckpt, data_dir, n_images)
    stem = checkpoint_stem(checkpoint)
    rows = []
    for cell in cells:
        needs = NEEDS.get(cell["target"])
        if needs and importlib.util.find_spec(needs) is None:
            rows.append({**cell, "status": f"skipped ({needs} not installed)"})
            continue
        say(f"{cell['target']} {cell['label']}")
        path = artifact_path(out, stem, cell["target"], cell["precision"], cell["quantize"])
        row = build_artifact(checkpoint, cell["target"], cell["precision"], cell["quantize"], path,
                             variant=ckpt.variant, calib_dir=calib_dir, say=lambda m: say(f"  {m}"))
        rows.append({**cell, **row, "label": cell["label"]})
    usable = [r for r in rows if r.get("status") in ("ok", STATUS_BELOW_TARGET)]
    say(f"accuracy on {images['n']} images ({images['source']})")
    reference = _judge(ckpt, usable, images, threads)
    say(f"timing {sum(r['target'] in _timed_targets() for r in usable) + 1} models interleaved, {runs} rounds")
    eager = _time(ckpt, usable, runs, threads)
    head = {"target": "checkpoint", "label": "fp32", "status": "ok", "path": str(checkpoint),
            "size_mb": round(_size(checkpoint) / 1e6, 2), **reference, **eager}
    return {"kind": "benchmark", "checkpoint": str(checkpoint), "variant": ckpt.variant, "out_dir": str(out),
            "images": {k: v for k, v in images.items() if k not in ("x", "targets")}, "runs": runs,
            "threads": threads, "host": _host(), "rows": [head, *rows],
            "timed_targets": list(_timed_targets()), "fastest": fastest_within(rows, head)}


# What "accurate" means for the pick: the int8 goal's top-1 drop (docs/int8-goals.md) and the int8 parity
# preset's worst-image cosine.
PICK_MAX_DROP_PT = 1.0
PICK_MIN_COSINE = 0.99


def fastest_within(rows: list[dict], head: dict, max_drop_pt: float = PICK_MAX_DROP_PT,
                   min_cosine: float = PICK_MIN_COSINE) -> dict:
    """The fastest timed artifact per target that passed its parity gate, lost at most ``max_drop_pt`` points
    against the checkpoint and kept a worst-image cosine >= ``min_cosine``, and the overall fastest of those:
    the question a benchmark is run to answer ("which file do I ship?"). ``{}`` when none qualifies."""
    def accurate(r: dict) -> bool:
        drop = -(r.get("delta_pt") or 0.0)
        return (r.get("status") == "ok" and r.get("median_ms") is not None and drop <= max_drop_pt
                and (r.get("worst_cosine") or 0.0) >= min_cosine)

    ok = [r for r in rows if accurate(r)]
    per_target = {}
    for r in sorted(ok, key=lambda r: r["median_ms"]):
        per_target.setdefault(r["target"], f"{r['target']} {r['label']}")
    best = min(ok, key=lambda r: r["median_ms"], default=None)
    return {"criteria": {"max_drop_pt": max_drop_pt, "min_worst_cosine": min_cosine},
            "per_target": per_target, "overall": f"{best['target']} {best['label']}" if best else None,
            "noisy": bool(best and (best.get("noisy") or head.get("noisy") or head.get("busy_host")))}


def _timed_targets() -> tuple[str, ...]:
    """HOST_TIMED_TARGETS, plus Core ML on a Mac (Core ML itself runs there)."""
    return HOST_TIMED_TARGETS + (("coreml",) if platform.system() == "Darwin" else ())


def _host() -> dict:
    from .devices import host_info

    return host_info()


def _size(path) -> int:
    from .parity.evaluate import size_on_disk

    return size_on_disk(path) or 0


def _images(checkpoint, ckpt, data_dir, n_images) -> dict:
    """The images every model reads, preprocessed once as the checkpoint takes them: ``x`` (NCHW), ``targets``
    (class indices, or None: agreement with the checkpoint), where they came from."""
    from .preprocessing import IMAGE_SUFFIXES, load_images

    if data_dir is None:
        from . import references

        if Path(checkpoint).resolve().parent == references.DIR:
            data_dir = references.heldout_dir()
    if data_dir is None:
        from .sample_images import natural_images

        n = n_images or 64
        return {"x": ckpt.preprocessing.normalize(natural_images(n, ckpt.input_size[1], seed=7)), "targets": None,
                "n": n, "labelled": False, "source": "built-in natural images: top-1 agreement with the checkpoint"}
    root = Path(data_dir)
    if not root.is_dir():
        raise VitdeployError(f"{root}: --data must be a folder of images (ImageFolder: one subfolder per class)")
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        from .parity.evaluate import read_image_folder

        data = read_image_folder(root)
        files, targets = data.files, data.targets
        source, labelled = f"{root}: labelled, {len(data.classes)} classes", True
    else:
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise VitdeployError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)})")
        targets, source, labelled = None, f"{root}: unlabelled, top-1 agreement with the checkpoint", False
    if n_images and n_images < len(files):  # spread evenly, so every class keeps a share
        pick = np.linspace(0, len(files) - 1, n_images).round().astype(int)
        files = [files[i] for i in pick]
        targets = targets[pick] if targets is not None else None
    return {"x": load_images(files, ckpt.preprocessing), "targets": targets, "n": len(files), "labelled": labelled,
            "source": source}


def _judge(ckpt, rows: list[dict], images: dict, threads: int, batch: int = 16) -> dict:
    """Accuracy (or agreement), its delta from the checkpoint and the worst image's cosine, into each row;
    returns the checkpoint's own columns."""
    from .runtimes.open import TorchRunner, open_runner

    x, targets = images["x"], images["targets"]

    def logits(runner) -> np.ndarray:
        return np.concatenate([np.asarray(runner.predict_nchw(x[i:i + batch]), dtype=np.float64)
                               for i in range(0, len(x), batch)])

    ref = logits(TorchRunner(ckpt))
    truth = targets if targets is not None else ref.argmax(1)
    base = float((ref.argmax(1) == truth).mean())
    for row in rows:
        try:
            got = logits(open_runner(row["path"], threads=threads))
        except (VitdeployError, RuntimeError, ValueError, OSError) as e:
            row["accuracy_error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
            continue
        finite = np.isfinite(got).all(1)
        cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1) + 1e-30)
        row.update(accuracy=float(((got.argmax(1) == truth) & finite).mean()),
                   worst_cosine=float(np.where(finite, cos, -1.0).min()),
                   agreement=float(((got.argmax(1) == ref.argmax(1)) & finite).mean()))
        row["delta_pt"] = round((row["accuracy"] - base) * 100, 3)
    return {"accuracy": base, "worst_cosine": 1.0, "agreement": 1.0, "delta_pt": 0.0}


def _time(ckpt, rows: list[dict], runs: int, threads: int) -> dict:
    """Every host-timed artifact and the checkpoint (PyTorch eager), interleaved in one run, into each row with
    its speed-up over the same target's fp32 and a noise flag; returns the checkpoint's latency columns."""
    from .profile import TorchTimed
    from .runtimes.open import open_runner
    from .runtimes.timing import busy_host_warning, interleaved, median_ratio, noise_warning

    timed = [r for r in rows if r["target"] in _timed_targets()]
    for r in rows:
        if r["target"] not in _timed_targets():
            r["latency"] = "not timed here"
    runners = {"checkpoint": TorchTimed(ckpt.model, ckpt.input_size, threads)}
    runners.update({f"{r['target']} {r['label']}": open_runner(r["path"], threads=threads) for r in timed})
    started = time.perf_counter()
    measured = interleaved(runners, rounds=runs, warmup=3, keep_runs=True)
    for r in timed:
        r.update(_latency(measured[f"{r['target']} {r['label']}"], noise_warning))
        fp32 = measured.get(f"{r['target']} fp32") or measured.get(f"{r['target']} fp16")
        if fp32 is not None:
            r["speedup_vs_fp32"] = median_ratio(fp32["runs_ms"], measured[f"{r['target']} {r['label']}"]["runs_ms"])
    busy = busy_host_warning()  # right after the run: the 1-minute load average covers it
    return {**_latency(measured["checkpoint"], noise_warning), "timing_s": round(time.perf_counter() - started, 1),
            **({"busy_host": busy} if busy else {})}


def _latency(stats: dict, noise_warning) -> dict:
    warning = noise_warning(stats)
    return {"median_ms": stats["median_ms"], "p90_ms": stats["p90_ms"], "min_ms": stats["min_ms"],
            "noisy": warning is not None, **({"noise": warning} if warning else {})}


# ----------------------------------------------------------------------------- table, Markdown, plot

_COLUMNS = ("model", "status", "MB", "accuracy", "vs ckpt", "worst cos", "median ms", "p90 ms", "vs fp32", "noise")


def _cells(summary: dict) -> list[tuple[str, ...]]:
    fmt = lambda v, f: f.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"  # noqa: E731
    out = []
    for r in summary["rows"]:
        name = _name(r)
        timed = r.get("median_ms") is not None
        out.append((name, str(r.get("status", "-"))[:24], fmt(r.get("size_mb"), "{:.1f}"),
                    fmt(r.get("accuracy"), "{:.2%}"),
                    "baseline" if r["target"] == "checkpoint" else fmt(r.get("delta_pt"), "{:+.2f} pt"),
                    fmt(r.get("worst_cosine"), "{:.5f}"),
                    fmt(r.get("median_ms"), "{:.2f}") if timed else str(r.get("latency", "-")),
                    fmt(r.get("p90_ms"), "{:.2f}"), fmt(r.get("speedup_vs_fp32"), "{:.2f}x"),
                    ("NOISY" if r.get("noisy") else "ok") if timed else "-"))
    return out


def _footer(summary: dict) -> list[str]:
    img = summary["images"]
    what = "labelled top-1 accuracy" if img["labelled"] else "top-1 agreement with the checkpoint"
    lines = [f"accuracy: {what} on {img['n']} images ({img['source']}); worst cos: the lowest cosine with the "
             f"checkpoint's logits over those images",
             f"latency: host, {summary['threads']} threads, {summary['runs']} interleaved rounds (every round runs "
             f"each model once); vs fp32 = the same target's fp32 time / this (median of per-round ratios); "
             f"noisy: p90 > 1.5x median or CV > 10 %"]
    lines += _noise_lines(summary["rows"])
    lines += [f"warning: {r['busy_host']}" for r in summary["rows"][:1] if r.get("busy_host")]
    lines += _pick_lines(summary)
    lines += [f"{r['target']} {r['label']}: {r.get('error') or r.get('accuracy_error')}" for r in summary["rows"]
              if r.get("error") or r.get("accuracy_error")]
    return lines


def _noise_lines(rows: list[dict]) -> list[str]:
    """One warning for a noisy run, not one per model (nine identical lines read as nine problems)."""
    noisy = [r for r in rows if r.get("noise")]
    if len(noisy) <= 1:
        return [f"warning: {_name(r)}: {r['noise']}" for r in noisy]
    timed = sum(r.get("median_ms") is not None for r in rows)
    worst = max(r["p90_ms"] / r["median_ms"] for r in noisy)
    return [f"warning: noisy timing on {len(noisy)} of {timed} timed models (p90 up to {worst:.1f}x the median; "
            f"{', '.join(_name(r) for r in noisy)}): another process shared the cores; the medians are not to be "
            f"quoted, the interleaved `vs fp32` ratios hold better; rerun on an idle machine (each model's figures: "
            f"--json, rows[].noise)"]


def _pick_lines(summary: dict) -> list[str]:
    pick = summary.get("fastest")
    if pick is None:
        return []
    crit = pick["criteria"]
    rule = f"within {crit['max_drop_pt']:g} pt of the checkpoint, worst cos >= {crit['min_worst_cosine']:g}"
    if not pick["overall"]:
        return [f"fastest accurate: none ({rule}): see the table for what each precision costs"]
    rows = {_name(r): r for r in summary["rows"]}
    best = rows[pick["overall"]]
    per = "; ".join(f"{t}: {name}" for t, name in pick["per_target"].items())
    return [f"fastest accurate ({rule}): {pick['overall']} ({best['median_ms']:.2f} ms, "
            f"{best.get('speedup_vs_fp32', 0):.2f}x its fp32{', noisy host' if pick['noisy'] else ''}); "
            f"per target: {per}"]


def _name(r: dict) -> str:
    return "checkpoint (PyTorch)" if r["target"] == "checkpoint" else f"{r['target']} {r['label']}"


def format_table(summary: dict) -> str:
    rows = [_COLUMNS, *_cells(summary)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([f"{summary['checkpoint']} ({summary['variant']})", *lines, *_footer(summary)])


def format_markdown(summary: dict) -> str:
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"# Benchmark: {cell(Path(summary['checkpoint']).name)} ({summary['variant']})", "",
             "| " + " | ".join(_COLUMNS) + " |", "|" + "|".join("---" if i < 2 else "---:" for i in range(len(_COLUMNS))) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in _cells(summary)]
    return "\n".join(lines + [""] + [f"- {cell(line)}" for line in _footer(summary)]) + "\n"


def plot(summary: dict, path: str | Path) -> None:
    """Accuracy (axis zoomed to the data, range in the title) against host latency, one labelled point per
    timed model; models not timed here are listed under the plot."""
    from .files import write_atomically
    from .reports.figures import _plt, render, zoomed_axis

    plt = _plt()
    rows = [r for r in summary["rows"] if isinstance(r.get("accuracy"), float)]
    timed = [r for r in rows if r.get("median_ms") is not None]
    acc = [r["accuracy"] * 100 for r in rows]
    lo, hi = zoomed_axis(acc)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r in timed:
        name = "checkpoint" if r["target"] == "checkpoint" else f"{r['target']} {r['label']}"
        ax.scatter(r["median_ms"], r["accuracy"] * 100, s=40, marker="x" if r.get("noisy") else "o")
        ax.annotate(name + (" (noisy)" if r.get("noisy") else ""), (r["median_ms"], r["accuracy"] * 100),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
    if timed:
        ms = [r["median_ms"] for r in timed]
        pad = max((max(ms) - min(ms)) * 0.15, 0.05 * max(ms))
        ax.set_xlim(max(0.0, min(ms) - pad), max(ms) + pad * 2.5)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"host median latency (ms), {summary['threads']} threads, interleaved")
    ax.set_ylabel("top-1 accuracy (%)" if summary["images"]["labelled"] else "top-1 agreement (%)")
    ax.set_title(f"{Path(summary['checkpoint']).name}: accuracy axis {lo:.1f}-{hi:.1f} % (zoomed)", fontsize=9)
    untimed = [f"{r['target']} {r['label']} {r['accuracy'] * 100:.2f} %" for r in rows if r.get("median_ms") is None]
    if untimed:
        fig.text(0.01, 0.01, "not timed here: " + ", ".join(untimed), fontsize=7)
    ax.grid(alpha=0.3)
    write_atomically(path, render(fig, "benchmark", "benchmark").data)
