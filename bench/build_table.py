"""Render `vitdeploy build --json` summaries as one markdown table.

    .venv/bin/python bench/build_table.py out/build_*.json > docs/build-matrix.md

Every figure comes from the JSON (nothing is typed in by hand).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def mode(cell: dict) -> str:
    if cell["target"] == "tflite":
        name = {"none": "fp32"}.get(cell["quantize"], cell["quantize"])
        return name + (" (int16 activations)" if cell.get("activations") == "int16" else "")
    return cell["precision"] + ("" if cell["quantize"] == "none" else f" {cell['quantize']}")


def fmt(value, spec: str) -> str:
    return spec.format(value) if isinstance(value, (int, float)) else "–"


def render(cells: list[dict]) -> str:
    lines = ["| variant | target | mode | parity | cosine min | max abs err | top-1 agreement | size MB | "
             "convert s | host median ms (2 thr) | kept in float |", "|" + "---|" * 11]
    for c in cells:
        if c["status"] != "ok":
            lines.append(f"| {c['variant']} | {c['target']} | {mode(c)} | failed: {c.get('error', '')[:80]} "
                         "| | | | | | | |")
            continue
        lines.append(f"| {c['variant']} | {c['target']} | {mode(c)} | {c.get('parity', '–')} | "
                     f"{fmt(c.get('cosine_min'), '{:.6f}')} | {fmt(c.get('max_abs'), '{:.2e}')} | "
                     f"{fmt(c.get('top1_agreement'), '{:.0%}')} | {fmt(c.get('size_mb'), '{:.1f}')} | "
                     f"{fmt(c.get('convert_s'), '{:.0f}')} | {fmt(c.get('host_median_ms'), '{:.2f}')} | "
                     f"{', '.join(c.get('float_fallback_ops') or c.get('float_fallback') or []) or '–'} |")
    return "\n".join(lines)


def main() -> None:
    cells = []
    for path in sys.argv[1:]:
        text = Path(path).read_text()
        if text.strip():
            cells += json.loads(text)["cells"]
    print(render(cells))


if __name__ == "__main__":
    main()
