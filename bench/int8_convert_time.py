"""w8a8 conversion time of the trained references: this tree against a baseline commit, interleaved.

    .venv/bin/python bench/int8_convert_time.py [--baseline REV] [--variants levit_128s mobilevit_xxs]
                                                [--checkpoints CKPT ...] [--rounds 1] [--json out.json]

``--checkpoints``: trained checkpoints to convert instead of the committed references of ``--variants``
(e.g. ``bench/train_reference.py``'s under ``bench/.cache/train_reference/``), named by their file stem.

Each conversion is ``python -m vitdeploy convert REF --target tflite --quantize w8a8`` in its own
process, with ``PYTHONPATH`` pointing at this tree or at a worktree of ``--baseline`` (made once under
``bench/.cache/baseline-<rev>``), the two alternating within each round so a change of machine load
hits both. Reported per conversion: wall seconds (start to exit, imports included) and CPU seconds
(user+sys of the child, all threads: less sensitive to other processes than wall time). The artifact's
worst-image cosine is read from its metadata, so a speed-up that changed the result shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def baseline_tree(rev: str) -> Path:
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = ROOT / "bench" / ".cache" / f"baseline-{sha}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), sha], check=True,
                       capture_output=True)
    return tree


def convert_once(tree: Path, checkpoint: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "vitdeploy", "convert", str(checkpoint), "--target", "tflite",
                             "--quantize", "w8a8", "-o", str(out)], env=env, cwd=tree,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    written = out if out.exists() else out.with_name(out.stem + ".below-target" + out.suffix)
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "exit": os.waitstatus_to_exitcode(status), "cosine_min": _measured_cosine(written)}


def _measured_cosine(path: Path) -> float | None:
    from vitdeploy.formats.tflite import read_tflite_metadata

    if not path.exists():
        return None
    return read_tflite_metadata(path)["vitdeploy"].get("accuracy_target", {}).get("measured")


def main() -> None:
    from vitdeploy import references

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="caf2ead")
    parser.add_argument("--variants", nargs="+", default=["levit_128s", "mobilevit_xxs"])
    parser.add_argument("--checkpoints", nargs="+", type=Path, help="checkpoint files instead of --variants")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    trees = {"baseline": baseline_tree(args.baseline), "this tree": ROOT}
    checkpoints = ({path.stem: path.resolve() for path in args.checkpoints} if args.checkpoints
                   else {variant: references.checkpoint(variant) for variant in args.variants})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for variant, checkpoint in checkpoints.items():
                order = list(trees) if r % 2 == 0 else list(reversed(trees))
                for name in order:
                    out = Path(tmp) / f"{variant}_{name.replace(' ', '_')}_{r}.tflite"
                    row = {"variant": variant, "tree": name, "round": r, "load": round(os.getloadavg()[0], 1),
                           **convert_once(trees[name], checkpoint, out)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    for variant in checkpoints:
        mine = [x for x in rows if x["variant"] == variant]
        base = {x["round"]: x for x in mine if x["tree"] == "baseline"}
        ratios = [base[x["round"]]["cpu_s"] / x["cpu_s"] for x in mine if x["tree"] == "this tree"]
        print(f"{variant}: baseline/this-tree CPU time {', '.join(f'{v:.2f}x' for v in ratios)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
