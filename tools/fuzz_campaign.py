"""A long fuzz campaign over every reader of untrusted input (hypothesis, large example budget).

    .venv/bin/python tools/fuzz_campaign.py --minutes 10 --out out/fuzz

The same mutations and contract as tests/test_fuzz.py (exit 0, or exit 2 with one "error:" line naming the
file; never a traceback, an internal error or code run from the file), with thousands of examples instead of
a dozen. Each reader runs in its own process (a native crash kills only that reader's run and is counted),
with an equal share of the time budget. Failing inputs are kept under --out/<reader>/ for reproduction, and
a summary (inputs tried per reader, distinct failures) is printed and written to --out/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the seeds and mutation strategies live with the tests

READERS = ("ckpt_pth", "ckpt_pth_tensor_bytes", "ckpt_legacy", "ckpt_bin", "ckpt_safetensors", "ckpt_random_bytes",
           "hf_config", "image_png", "image_jpg", "image_modes", "npy_header", "npy_bytes", "tflite", "mlpackage",
           "mlpackage_tree", "recipe", "labels", "harness_result")


def build_seeds(out: Path) -> dict[str, str]:
    import fuzz_seeds as F

    seeds = dict(F.checkpoint_seeds(out / "ck"))
    seeds.update(F.image_seeds(out / "img"))
    seeds["npy"] = F.npy_seed(out / "npy")
    seeds["tflite"] = F.tflite_seed(out / "tflite")
    seeds["mlpackage"] = F.mlpackage_seed(out / "coreml")
    seeds["recipe"] = F.recipe_seed(out / "recipe")
    seeds["data"] = F.image_folder_seed(out / "folder")
    return {k: str(v) for k, v in seeds.items()}


# ----------------------------------------------------------------------------- one reader (child process)


class _Expired(BaseException):
    """The reader's time share is spent: a BaseException, so hypothesis stops instead of shrinking a "failure"."""


class Tally:
    """Inputs tried and failures by signature; the property never raises, so hypothesis keeps generating."""

    def __init__(self, reader: str, out: Path, deadline: float):
        self.reader, self.out, self.deadline = reader, out, deadline
        self.tried = 0
        self.exits: dict[str, int] = {}
        self.failures: dict[str, dict] = {}

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise _Expired

    def stash(self, path: Path) -> None:
        """Keep the input about to be read: if the reader crashes the process, this file is the example."""
        dest = self.out / self.reader / f"last_input{path.suffix}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)

    def record(self, code: int, stderr: str, names: list[Path], must_fail: bool, keep: Path) -> None:
        from test_fuzz import assert_contract

        self.tried += 1
        self.exits[str(code)] = self.exits.get(str(code), 0) + 1
        try:
            assert_contract(code, stderr, names, must_fail=must_fail)
        except AssertionError as e:
            signature = _signature(code, stderr or str(e))
            entry = self.failures.setdefault(signature, {"count": 0, "exit": code, "example": None,
                                                         "stderr": stderr.strip()[:500] or str(e)[:500]})
            entry["count"] += 1
            if entry["example"] is None:
                dest = self.out / self.reader / f"failure_{len(self.failures)}{keep.suffix}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if keep.is_dir() else shutil.copy)(keep, dest)
                entry["example"] = str(dest)


def _signature(code: int, text: str) -> str:
    """A failure's kind without paths and numbers, so one bug counts once however many inputs hit it."""
    line = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("INFO: ")), "")
    line = re.sub(r"(/[^\s:'\"]+)+", "<path>", line)
    return f"exit {code}: " + re.sub(r"\d+", "N", line)[:160]


def run_reader(reader: str, seeds: dict[str, str], out: Path, seconds: float, examples: int) -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    import fuzz_seeds as F
    import test_fuzz as T

    tally = Tally(reader, out, time.monotonic() + seconds)
    budget = settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                      suppress_health_check=list(HealthCheck))
    S = {k: Path(v) for k, v in seeds.items()}

    def inspect_file(seed: Path, data: bytes, must_fail: bool = False) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = T.mutated_copy(seed, data, Path(tmp))
            tally.stash(path)
            code, _, err = T.cli("inspect", path)
            tally.record(code, err, [path], must_fail, path)

    def checkpoint(fmt: str):
        data = S[fmt].read_bytes()
        bounds = F.safetensors_boundaries(data) if fmt == "safetensors" else F.zip_boundaries(data)

        @budget
        @given(mutated=T.byte_mutation(data, bounds))
        def prop(mutated):
            tally.check_time()
            inspect_file(S[fmt], mutated)
        return prop

    def tensor_bytes():
        data = S["pth"].read_bytes()
        spans = [s for s in F.tensor_data_spans(data) if s[1] - s[0] > 64]

        @budget
        @given(span=st.sampled_from(spans), offset=st.floats(0, 1), length=st.integers(1, 4096),
               mask=st.integers(1, 255))
        def prop(span, offset, length, mask):
            tally.check_time()
            start = span[0] + int(offset * (span[1] - span[0] - 1))
            inspect_file(S["pth"], F.flip_bits(data, list(range(start, min(span[1], start + length))), mask),
                         must_fail=True)
        return prop

    def random_bytes():
        @budget
        @given(payload=st.binary(max_size=4096), suffix=st.sampled_from([".pth", ".pt", ".bin", ".safetensors"]))
        def prop(payload, suffix):
            tally.check_time()
            inspect_file(S["pth"].with_suffix(suffix), payload, must_fail=True)
        return prop

    def hf_config():
        @budget
        @given(blob=st.binary(max_size=256) | T.yaml_values.map(lambda v: json.dumps(v, default=str).encode()))
        def prop(blob):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                hf = Path(tmp) / "hf"
                hf.mkdir()
                os.symlink(S["hf"] / "model.safetensors", hf / "model.safetensors")
                (hf / "config.json").write_bytes(blob)
                code, _, err = T.cli("inspect", hf)
                tally.record(code, err, [hf], False, hf / "config.json")
        return prop

    def image(fmt: str):
        data = S[fmt].read_bytes()

        @budget
        @given(mutated=T.byte_mutation(data, [0, 8, 16, 33, 64, len(data) // 2, len(data)]))
        def prop(mutated):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                path = T.mutated_copy(S[fmt], mutated, Path(tmp))
                tally.stash(path)
                code, _, err = T.cli("predict", S["tflite"], path)
                tally.record(code, err, [path], False, path)
        return prop

    def npy(kind: str):
        data = S["npy"].read_bytes()
        strategy = T.npy_mutation() if kind == "header" else T.byte_mutation(data, [0, 6, 8, 10, 64, 128, len(data)])

        @budget
        @given(blob=strategy)
        def prop(blob):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                path = T.mutated_copy(S["npy"], blob, Path(tmp))
                out_file = Path(tmp) / "logits.npy"
                code, _, err = T.cli("predict", S["tflite"], path, "--save-logits", out_file)
                tally.record(code, err, [path], False, path)
                if code != 0 and out_file.exists():
                    tally.record(3, f"half-written {out_file}", [path], False, path)
        return prop

    def tflite():
        data = S["tflite"].read_bytes()

        @budget
        @given(mutated=T.byte_mutation(data, [0, 4, 8, 16, 32, len(data) // 4, len(data) // 2, len(data)]))
        def prop(mutated):
            tally.check_time()
            inspect_file(S["tflite"], mutated)
        return prop

    def mlpackage():
        @budget
        @given(part=st.sampled_from(T.MLPACKAGE_PARTS), data=st.data())
        def prop(part, data):
            blob = (S["mlpackage"] / part).read_bytes()
            mutated = data.draw(T.byte_mutation(blob, [0, 1, 8, 64, len(blob) // 2, len(blob)]))
            tally.check_time()  # after every draw: hypothesis wants each example to draw the same way
            with tempfile.TemporaryDirectory() as tmp:
                pkg = Path(tmp) / S["mlpackage"].name
                shutil.copytree(S["mlpackage"], pkg)
                (pkg / part).write_bytes(mutated)
                tally.stash(pkg / part)
                code, _, err = T.cli("inspect", pkg)
                tally.record(code, err, [pkg], False, pkg)
        return prop

    def recipe():
        @budget
        @given(blob=T.recipe_mutation(S["recipe"].read_text()))
        def prop(blob):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                path = T.mutated_copy(S["recipe"], blob, Path(tmp))
                empty = Path(tmp) / "empty.pth"
                empty.write_bytes(b"")
                code, _, err = T.cli("convert", empty, "--target", "tflite", "--recipe", path)
                tally.record(code, err, [path, empty], True, path)
        return prop

    def labels():
        @budget
        @given(blob=st.binary(max_size=256) | st.text(max_size=128).map(str.encode))
        def prop(blob):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                data = Path(tmp) / "data"
                shutil.copytree(S["data"], data)
                (data / "labels.txt").write_bytes(blob)
                code, _, err = T.cli("eval", S["tflite"], "--data", data)
                tally.record(code, err, [data / "labels.txt", data], False, data / "labels.txt")
        return prop

    def mlpackage_tree():
        @budget
        @given(edit=T.package_tree_edit())
        def prop(edit):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                pkg, outside = Path(tmp) / S["mlpackage"].name, Path(tmp) / "secret.txt"
                outside.write_text("secret")
                shutil.copytree(S["mlpackage"], pkg)
                T.apply_package_edit(pkg, edit, outside)
                for args in (("inspect", pkg), ("package", pkg, "--platform", "ios", "-o", Path(tmp) / "app")):
                    code, _, err = T.cli(*args)
                    tally.record(code, err, [pkg], True, pkg)
        return prop

    def image_modes():
        @budget
        @given(spec=T.odd_image())
        def prop(spec):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                path = T.write_odd_image(spec, Path(tmp))
                if path is None:
                    return
                tally.stash(path)
                code, _, err = T.cli("predict", S["tflite"], path)
                tally.record(code, err, [path], False, path)
        return prop

    def harness_result():
        req = T.harness_request()

        @budget
        @given(blob=T.result_mutation(T.valid_result(req)))
        def prop(blob):
            tally.check_time()
            with tempfile.TemporaryDirectory() as tmp:
                tally.tried += 1
                try:
                    T.check_result_contract(blob, req, Path(tmp))
                    tally.exits["0|2"] = tally.exits.get("0|2", 0) + 1
                except Exception as e:  # noqa: BLE001 - any other exception is the finding
                    sig = _signature(3, f"{type(e).__name__}: {e}")
                    entry = tally.failures.setdefault(sig, {"count": 0, "exit": 3, "example": None,
                                                            "stderr": str(e)[:500]})
                    entry["count"] += 1
                    if entry["example"] is None:
                        dest = out / "harness_result" / f"failure_{len(tally.failures)}.json"
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(blob)
                        entry["example"] = str(dest)
        return prop

    props = {"ckpt_pth": lambda: checkpoint("pth"), "ckpt_pth_tensor_bytes": tensor_bytes,
             "ckpt_legacy": lambda: checkpoint("legacy"), "ckpt_bin": lambda: checkpoint("bin"),
             "ckpt_safetensors": lambda: checkpoint("safetensors"), "ckpt_random_bytes": random_bytes,
             "hf_config": hf_config, "image_png": lambda: image("png"), "image_jpg": lambda: image("jpg"),
             "npy_header": lambda: npy("header"), "npy_bytes": lambda: npy("bytes"), "tflite": tflite,
             "mlpackage": mlpackage, "recipe": recipe, "labels": labels, "mlpackage_tree": mlpackage_tree,
             "image_modes": image_modes, "harness_result": harness_result}
    started = time.monotonic()
    try:
        props[reader]()()
    except _Expired:
        pass
    return {"reader": reader, "tried": tally.tried, "seconds": round(time.monotonic() - started, 1),
            "exits": tally.exits, "failures": tally.failures}


# ----------------------------------------------------------------------------- driver


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="Total time budget, shared equally by the readers.")
    ap.add_argument("--examples", type=int, default=100000, help="Hypothesis example budget per reader.")
    ap.add_argument("--reader", action="append", choices=READERS, help="Only these readers (repeatable).")
    ap.add_argument("--out", default="out/fuzz", help="Failing inputs and summary.json go here.")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one reader, print its JSON
    ap.add_argument("--seeds", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out)
    if args.child:
        result = run_reader(args.child, json.loads(Path(args.seeds).read_text()), out, args.seconds, args.examples)
        print("RESULT " + json.dumps(result))
        return 0
    readers = args.reader or list(READERS)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    seeds = build_seeds(out / "seeds")
    (out / "seeds.json").write_text(json.dumps(seeds))
    share = max(10.0, (args.minutes * 60 - (time.monotonic() - started)) / len(readers))
    results = [_run_child(r, out, share, args.examples) for r in readers]
    summary = {"minutes": round((time.monotonic() - started) / 60, 1), "readers": results,
               "inputs_tried": sum(r["tried"] for r in results),
               "distinct_failures": sum(len(r["failures"]) for r in results)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    _print_summary(summary)
    return 1 if summary["distinct_failures"] else 0


def _run_child(reader: str, out: Path, seconds: float, examples: int) -> dict:
    """One reader in its own process: a segfault or a hang is a finding about that reader, not the campaign's end."""
    cmd = [sys.executable, __file__, "--child", reader, "--seeds", str(out / "seeds.json"), "--out", str(out),
           "--seconds", str(seconds), "--examples", str(examples)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, env=env)
    except subprocess.TimeoutExpired:
        return {"reader": reader, "tried": 0, "seconds": seconds, "exits": {},
                "failures": {"hang": {"count": 1, "exit": None, "stderr": "the reader's process timed out"}}}
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:  # the process died: a native crash (negative code) or an error in the campaign itself
        last = sorted((out / reader).glob("last_input*"))
        return {"reader": reader, "tried": 0, "seconds": seconds, "exits": {},
                "failures": {f"process exit {proc.returncode}": {"count": 1, "exit": proc.returncode,
                                                                 "stderr": proc.stderr[-800:],
                                                                 "example": str(last[0]) if last else None}}}
    return json.loads(line[len("RESULT "):])


def _print_summary(summary: dict) -> None:
    print(f"{'reader':<24} {'inputs':>7} {'seconds':>8}  exits            distinct failures")
    for r in summary["readers"]:
        exits = ", ".join(f"{k}: {v}" for k, v in sorted(r["exits"].items()))
        print(f"{r['reader']:<24} {r['tried']:>7} {r['seconds']:>8}  {exits:<16} {len(r['failures'])}")
        for sig, f in r["failures"].items():
            print(f"    {f['count']} x {sig}  (e.g. {f.get('example')})")
    print(f"{summary['inputs_tried']} inputs in {summary['minutes']} min; "
          f"{summary['distinct_failures']} distinct failures")


if __name__ == "__main__":
    sys.exit(main())
