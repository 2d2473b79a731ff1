"""One build cell (checkpoint x target x precision -> one artifact), as ``demo``, ``build`` and ``benchmark`` run it:
convert, then parity.

:func:`build_artifact` converts a checkpoint to one (target, precision, quantization) cell and checks
the artifact against the checkpoint; it returns one row (JSON-able) and never raises for a cell that
fails: the caller goes on with the next one. Host latency is the caller's (``demo`` times its TFLite
artifacts interleaved, ``build`` each cell alone).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .errors import VitdeployError
from .formats import artifact_name
from .precisions import parse_call

STATUS_BELOW_TARGET = "below target"  # a w8a8 model that missed its accuracy target, written aside


def artifact_path(out_dir: str | Path, stem: str, target: str, precision: str, quantize: str,
                  variant: str | None = None) -> Path:
    """Where a cell's artifact goes: :func:`formats.artifact_name` (``variant``: see there) in ``out_dir``."""
    return Path(out_dir) / artifact_name(stem, target, parse_call(target, quantize, precision), variant=variant)


def build_artifact(checkpoint: str | Path, target: str, precision: str, quantize: str, path: str | Path, *,
                   variant: str | None = None, calib_dir: str | Path | None = None, parity_images: int = 16,
                   images_dir: str | Path | None = None, tolerances: dict | None = None, html_report: bool = False,
                   say: Callable[[str], None] | None = None, force: bool = False) -> dict:
    """Convert ``checkpoint`` to ``path`` and check its parity; a row with ``status`` ok / below target / failed.

    ``calib_dir`` calibrates w8a8/w8a16 cells only. ``tolerances`` override the parity preset of the
    artifact's precision; ``html_report`` writes ``<artifact>.report/report.html`` beside it. ``force``
    replaces an artifact already at ``path`` (``build`` and ``demo`` rebuild their own folders).
    """
    from .convert import convert
    from .diagnostics import raise_if_interrupted
    from .files import disk_full

    raise_if_interrupted()  # after a Ctrl-C, no further cell starts
    say = say or (lambda _msg: None)
    path = Path(path)
    parsed = parse_call(target, quantize, precision)
    row = {"target": target, "precision": precision, "quantize": quantize, "label": parsed.name, "path": str(path)}
    start = time.perf_counter()
    say(f"converting -> {path.name}")
    try:
        calib = calib_dir if parsed.calibrated else None
        report = convert(checkpoint, target, out=path, quantize=parsed, variant=variant,
                         calib_dir=calib, force=force)
        path = Path(report["path"])  # a w8a8 model below the accuracy target is written aside
        met = report.get("accuracy_target_met", True)
        row.update(status="ok" if met else STATUS_BELOW_TARGET, path=str(path),
                   size_mb=round(report.get("size_bytes", 0) / 1e6, 2), convert_s=report.get("seconds"))
        if not met:
            row["verdict"] = (report.get("warnings") or ["w8a8 below the accuracy target"])[-1]
        if report.get("float_fallback_ops"):
            row["float_fallback_ops"] = report["float_fallback_ops"]
        if report.get("quant_report", {}).get("activations") == "int16":
            row["activations"] = "int16"
        row.update(check_parity(path, checkpoint, n_images=parity_images, images_dir=images_dir,
                                tolerances=tolerances, html_report=html_report, say=say))
    except (VitdeployError, RuntimeError, ValueError, OSError) as e:
        if disk_full(e):  # a full disk is the user's to fix, for every cell: exit 2, not a failed cell
            raise
        row.update(status="failed", error=str(e).splitlines()[0] if str(e) else type(e).__name__)
        say(f"  failed: {row['error']}")
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row


def check_parity(artifact: Path, checkpoint: str | Path, *, n_images: int = 16, images_dir=None,
                 tolerances: dict | None = None, html_report: bool = False, say=None) -> dict:
    """The parity columns of a row (natural images), with an HTML report beside the artifact when asked."""
    from .parity import run_parity
    from .progress import note

    note(f"checking parity of {Path(artifact).name}")
    result = run_parity(artifact, checkpoint, images_dir=images_dir, n_images=n_images, tolerances=tolerances)
    nat = result.natural
    only_verdict = result.failures and all(f.metric == "accuracy_target" for f in result.failures)
    row = {"parity": "pass" if result.passed else (STATUS_BELOW_TARGET if only_verdict else "FAIL"),
           "precision_preset": result.precision,
           "cosine_min": nat.get("cosine_min"), "cosine_mean": nat.get("cosine_mean"), "max_abs": nat.get("max_abs"),
           "rel_max_abs": nat["max_abs"] / nat["ref_abs_max"] if nat.get("ref_abs_max") else None,
           "top1_agreement": nat.get("top1"), "parity_failures": [f.describe() for f in result.failures]}
    if html_report:
        from .reports import write_report

        report_dir = Path(artifact).parent / f"{Path(artifact).name}.report"
        write_report(report_dir, kind="parity", data=result.to_dict())
        row["report"] = str(report_dir / "report.html")
    if say:
        say(f"  parity {'PASS' if result.passed else 'FAIL'} ({result.precision}): cosine min "
            f"{nat.get('cosine_min', float('nan')):.6f}, top-1 agreement {nat.get('top1', float('nan')):.0%}"
            + (f" -> {row['report']}" if html_report else ""))
    return row
