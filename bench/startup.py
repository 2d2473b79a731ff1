"""Start-up time: ``vitdeploy --help`` and ``import vitdeploy.cli`` vs ``import torch``.

    .venv/bin/python bench/startup.py [--runs 10]

Uses ``hyperfine`` (warm-up runs, then ``--runs`` timed runs; mean, median, min) when it is on
PATH (``apt-get install -y hyperfine``), else times ``subprocess.run`` calls itself (median).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def commands() -> dict[str, str]:
    py = str(Path(sys.executable))
    cli = VENV_BIN / "vitdeploy"
    cli_cmd = str(cli) if cli.exists() else f"{py} -m vitdeploy"
    return {
        "python -c pass": f"{py} -c pass",
        "vitdeploy --help": f"{cli_cmd} --help",
        "import vitdeploy.cli": f"{py} -c 'import vitdeploy.cli'",
        "import torch": f"{py} -c 'import torch'",
    }


def measure(runs: int = 10, warmup: int = 2) -> dict:
    cmds = commands()
    rows = []
    if shutil.which("hyperfine"):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "h.json"
            args = ["hyperfine", "--style", "none", "-N" if _shell_free_ok() else "--shell=sh", "--warmup", str(warmup),
                    "--runs", str(runs), "--export-json", str(out)]
            args = [a for a in args if a]
            for name, cmd in cmds.items():
                args += ["-n", name, cmd]
            subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
            for r in json.loads(out.read_text())["results"]:
                rows.append({"what": r["command"], "command": cmds[r["command"]], "mean_ms": round(r["mean"] * 1000, 1),
                             "median_ms": round(r["median"] * 1000, 1), "min_ms": round(r["min"] * 1000, 1),
                             "runs": len(r["times"])})
        tool = subprocess.run(["hyperfine", "--version"], capture_output=True, text=True).stdout.strip()
    else:
        tool = "subprocess.run timing (hyperfine not installed)"
        times = {name: [] for name in cmds}
        for _ in range(warmup):
            for cmd in cmds.values():
                subprocess.run(cmd, shell=True, capture_output=True, cwd=ROOT)
        for _ in range(runs):  # interleaved
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, shell=True, capture_output=True, cwd=ROOT)
                times[name].append((time.perf_counter() - t0) * 1000)
        for name, ts in times.items():
            rows.append({"what": name, "command": cmds[name], "mean_ms": round(statistics.fmean(ts), 1),
                         "median_ms": round(statistics.median(ts), 1), "min_ms": round(min(ts), 1), "runs": runs})
    return {"tool": tool, "rows": rows, "heavy_modules_after_cli_import": _heavy_modules()}


def _shell_free_ok() -> bool:
    """hyperfine -N (no intermediate shell) exists since 1.13."""
    try:
        v = subprocess.run(["hyperfine", "--version"], capture_output=True, text=True).stdout.split()[-1]
        major, minor = (int(x) for x in v.split(".")[:2])
        return (major, minor) >= (1, 13)
    except Exception:  # noqa: BLE001
        return False


def _heavy_modules() -> list[str]:
    """Which heavy libraries ``import vitdeploy.cli`` pulls in (should be none)."""
    code = ("import sys, vitdeploy.cli; heavy = ['torch', 'numpy', 'transformers', 'coremltools', 'litert_torch', "
            "'ai_edge_litert', 'onnx']; print(','.join(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ))
    return [m for m in out.stdout.strip().split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(json.dumps(measure(args.runs), indent=1))


if __name__ == "__main__":
    main()
