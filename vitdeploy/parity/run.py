"""The parity gate: an artifact against its source checkpoint run in PyTorch.

Inputs come in two clearly separated sets:

* **natural** -- the user's images (``images_dir``, preprocessed with the *checkpoint's*
  preprocessing) or vitdeploy's built-in natural photographs. Every gated metric, including
  top-1/top-5 agreement, is measured here.
* **random** -- seeded uniform random pixels (0..255, then the same preprocessing), i.e. in-range
  noise images. Their numeric error is reported; nothing is gated on them unless a
  ``random_*`` tolerance is set (noise is far from the data an int8 model was calibrated on).

Both runners take the same float32 NCHW batch (see :mod:`vitdeploy.runtimes.open`), so the artifact's
own input convention (pixels in the graph, BGR flips) is part of what is checked.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CheckFailed, VitdeployError
from ..formats import LAYOUT_RAW, format_of
from ..preprocessing import IMAGE_SUFFIXES, list_images  # noqa: F401  (list_images: part of this module's API)
from . import metrics as M
from .precision import artifact_precision  # noqa: F401 (part of this module's API)
from .tolerances import BelowTarget, Failure, NonFinite, changes, check, describe_preset, resolve



@dataclass
class ParityResult:
    artifact: str
    checkpoint: str
    precision: str
    precision_source: str
    tolerances: dict
    natural: dict  # metrics.compare() on the natural images
    random: dict | None  # metrics.compare() on the random tensors (None when n_random == 0)
    per_image: dict  # metrics.per_sample() on the natural images + "names"
    histogram: dict  # metrics.error_histogram() of |logit error| on the natural images
    random_histogram: dict | None
    inputs: dict  # {"natural": {"source", "count", "names"}, "random": {"count", "seed"}}
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    artifact_info: dict = field(default_factory=dict)
    # {"natural": {"count", "of", "nan"}, "random": ... | None}: inputs whose artifact outputs hold NaN/inf
    nonfinite: dict = field(default_factory=dict)
    first_nonfinite: str | None = None  # the first value in the artifact's graph that was not finite
    # On an emulated phone CPU: {"cpu", "fp16_compute", "xnnpack", "emulator", "host_vs_arm": metrics, ...}
    arm: dict | None = None
    # --tol keys that differ from the preset: {"key", "preset", "given", "change": loosened|tightened|added}
    tolerance_changes: list = field(default_factory=list)
    accuracy_target: dict | None = None  # the verdict its converter stored (vitdeploy.verdict), if any

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {
            "kind": "parity",
            "passed": self.passed,
            "artifact": self.artifact,
            "checkpoint": self.checkpoint,
            "precision": self.precision,
            "precision_source": self.precision_source,
            "tolerances": self.tolerances,
            "failures": [f.to_dict() for f in self.failures],
            "metrics": {"natural": self.natural, "random": self.random},
            "per_image": self.per_image,
            "histogram": self.histogram,
            "random_histogram": self.random_histogram,
            "inputs": self.inputs,
            "warnings": self.warnings,
            "seconds": self.seconds,
            "artifact_info": self.artifact_info,
            "nonfinite": self.nonfinite,
            "first_nonfinite": self.first_nonfinite,
            "arm": self.arm,
            "tolerance_changes": self.tolerance_changes,
            "accuracy_target": self.accuracy_target,
        }

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        where = f" on an emulated {self.arm['cpu']}" if self.arm else ""
        lines = [f"parity {'PASSED' if self.passed else 'FAILED'}: {self.artifact}{where} vs {self.checkpoint} "
                 f"({describe_preset(self.precision, self.tolerance_changes)}; preset from {self.precision_source})",
                 f"  natural images ({self.inputs['natural']['count']}, {self.inputs['natural']['source']}): "
                 + self._metrics_text(self.natural, "natural", full=True)]
        if self.random:
            lines.append(f"  random tensors ({self.inputs['random']['count']}, reported only): "
                         + self._metrics_text(self.random, "random", full=False))
        if self.arm:
            lines.append("  " + describe_arm(self.arm))
        lines += [f"  FAIL {f.describe()}" for f in self.failures]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _metrics_text(self, m: dict, inputs: str, full: bool) -> str:
        """The metric values, measured on the inputs whose outputs were finite (or why there are none)."""
        bad = (self.nonfinite.get(inputs) or {}).get("count", 0)
        if not m.get("n"):
            return "no metric measured: outputs not finite on every input"
        text = f"cosine min {m['cosine_min']:.6f}"
        if full:
            text += (f" mean {m['cosine_mean']:.6f}, rel L2 {m['rel_l2']:.3e}, max abs {m['max_abs']:.3e}, "
                     f"SNR {m['snr_db']:.1f} dB, top-1 {m['top1']:.1%}, top-5 {m['top5']:.1%}")
        else:
            text += f", rel L2 {m['rel_l2']:.3e}, max abs {m['max_abs']:.3e}"
        return text + (f" (on the {m['n']} inputs with finite outputs; {bad} not finite)" if bad else "")

    def raise_if_failed(self) -> None:
        """:class:`CheckFailed` (exit 1) naming every metric that missed."""
        if self.failures:
            raise CheckFailed("parity: " + "; ".join(f.describe() for f in self.failures))


# ----------------------------------------------------------------------------- inputs


def natural_inputs(pre, input_size, *, images_dir=None, n_images: int | None = 16, seed: int = 0):
    """(NCHW float32 batch, source description, names)."""
    from ..preprocessing import load_images
    from ..sample_images import natural_images

    if images_dir is not None:
        files = list_images(images_dir, n_images)
        x = load_images(files, pre)
        if tuple(x.shape[1:]) != tuple(input_size):  # a crop that does not fit the model
            raise VitdeployError(f"preprocessed images have shape {tuple(x.shape[1:])}, the model takes "
                                 f"{tuple(input_size)}")
        return x, str(images_dir), [str(p) for p in files]
    n = 16 if n_images is None else int(n_images)
    rgb = natural_images(n, int(input_size[1]), seed=seed)
    return pre.normalize(rgb), "built-in natural images", [f"natural_{i:03d}" for i in range(n)]


def random_inputs(pre, input_size, n: int, seed: int) -> np.ndarray:
    """Seeded uniform random pixels (0..255) preprocessed like the images: in-range noise."""
    rng = np.random.default_rng(seed + 7919)
    _, h, w = (int(v) for v in input_size)
    pixels = rng.uniform(0.0, 255.0, size=(n, h, w, 3)).astype(np.float32)
    return pre.normalize(pixels)


# ----------------------------------------------------------------------------- the gate


def _runner_input_size(runner) -> tuple[int, int, int]:
    size = getattr(runner, "input_size", None)
    if size is not None:
        return tuple(int(v) for v in size)
    spec = getattr(runner, "input_spec", None) or {}
    shape = spec.get("shape")
    if shape and len(shape) == 4:
        return (3, shape[2], shape[3]) if spec.get("layout") == LAYOUT_RAW else (3, shape[1], shape[2])
    raise VitdeployError(f"{getattr(runner, 'path', '?')}: cannot tell the artifact's input size")


def _predict(runner, x: np.ndarray, what: str) -> np.ndarray:
    try:
        y = runner.predict_nchw(x)
    except VitdeployError:
        raise
    except Exception as e:  # a runtime error is a finding about the artifact, reported as such
        raise VitdeployError(f"{what} failed to run: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}") from None
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[0] != len(x):
        raise VitdeployError(f"{what} returned shape {y.shape}, expected ({len(x)}, classes)")
    return y.astype(np.float32, copy=False)


def run_parity(artifact: str | Path, checkpoint: str | Path, *, images_dir: str | Path | None = None,
               n_images: int | None = 16, n_random: int = 4, seed: int = 0, tolerances: dict | None = None,
               threads: int = 2, precision: str | None = None, variant: str | None = None,
               runtime: str = "auto", cpu: str | None = None, fp16: str = "model",
               xnnpack: bool = True) -> ParityResult:
    """Compare ``artifact`` (.tflite, .mlpackage, or another checkpoint) with ``checkpoint`` in PyTorch.

    ``precision`` (``fp32``/``fp16``/``int8``) overrides the preset read from the artifact;
    ``tolerances`` overrides single keys (see :mod:`vitdeploy.parity.tolerances`).
    ``cpu`` (a .tflite only): run the artifact on that emulated phone CPU (:mod:`vitdeploy.emulation`),
    ``fp16`` ``model``/``force``/``off`` (fp16 arithmetic as the file asks / always / never), ``xnnpack``
    False for the built-in kernels; the host-vs-ARM difference is reported in ``result.arm``.
    Raises :class:`VitdeployError` for bad input; a failed check is ``result.passed == False``.
    """
    from ..runtimes.open import TorchRunner, is_artifact, open_runner

    started = time.perf_counter()
    artifact, checkpoint = Path(artifact), Path(checkpoint)
    if n_random < 0 or (n_images is not None and n_images < 1):
        raise VitdeployError("n_images must be >= 1 and n_random >= 0")
    if not artifact.exists():
        raise VitdeployError(f"{artifact}: no such file or directory")
    if is_artifact(checkpoint):
        raise VitdeployError(f"{checkpoint}: the reference must be a PyTorch checkpoint, not an artifact")
    reference = open_runner(checkpoint, variant=variant)
    if not isinstance(reference, TorchRunner):  # pragma: no cover - open_runner returns one for checkpoints
        raise VitdeployError(f"{checkpoint}: not a checkpoint")
    if precision is None:
        precision, precision_source = artifact_precision(artifact)
    else:
        precision_source = "given"
    tol = resolve(precision, tolerances)
    warnings: list[str] = []
    cpu = _emulation_plan(artifact, precision, cpu, warnings)
    emulate = {"cpu": cpu, "fp16": fp16, "xnnpack": xnnpack} if cpu else None
    runner = open_runner(artifact, variant=variant, threads=threads, runtime=runtime, emulate=emulate)
    if getattr(runner, "fp16_compute", False) and precision in ("fp32", "fp16") and precision_source != "given":
        # fp16 arithmetic (--fp16 force, or the file's request) is judged as fp16 arithmetic, not as the file's fp32
        precision, precision_source = "fp16-compute", f"fp16 arithmetic on the emulated CPU; the file: {precision_source}"
        tol = resolve(precision, tolerances)
    from ..verdict import target_of

    target = target_of(getattr(runner, "config", None))
    if target is not None and target["metric"] in tol and target["metric"] not in (tolerances or {}):
        tol[target["metric"]] = max(tol[target["metric"]] or float("-inf"), target["threshold"])  # the bar it missed
    ref_size = tuple(reference.input_size)
    got_size = _runner_input_size(runner)
    if got_size != ref_size:
        raise VitdeployError(f"{artifact} takes input {got_size} but {checkpoint} ({reference.variant}) takes "
                             f"{ref_size}: not converted from this checkpoint")
    pre = reference.preprocessing
    art_pre = getattr(runner, "preprocessing", None)
    if art_pre is not None and art_pre != pre:
        warnings.append(f"the artifact records preprocessing '{art_pre.describe()}' but the checkpoint expects "
                        f"'{pre.describe()}'")

    x_nat, source, names = natural_inputs(pre, ref_size, images_dir=images_dir, n_images=n_images, seed=seed)
    ref_nat = _reference_outputs(reference, x_nat, checkpoint)
    got_nat = _predict(runner, x_nat, "the artifact")
    if ref_nat.shape != got_nat.shape:
        raise VitdeployError(f"{artifact} outputs {got_nat.shape[1]} classes, {checkpoint} {ref_nat.shape[1]}: "
                             "not converted from this checkpoint")
    natural, nonfinite_nat = M.compare_finite(ref_nat, got_nat)
    per_image = dict(M.per_sample(ref_nat, got_nat), names=names)
    distinct = len(set(per_image["top1_ref"]))
    if len(names) > 1 and distinct == 1:
        warnings.append("every natural image has the same top-1 class in the reference: top-1 agreement is "
                        "weak evidence here")

    random = random_hist = None
    if n_random:
        x_rand = random_inputs(pre, ref_size, n_random, seed)
        ref_rand = _reference_outputs(reference, x_rand, checkpoint)
        got_rand = _predict(runner, x_rand, "the artifact")
        random, nonfinite_rand = M.compare_finite(ref_rand, got_rand)
        random_hist = M.error_histogram(ref_rand, got_rand)

    arm = None
    if cpu:
        arm = dict(runner.describe(), guest=getattr(runner, "last_report", {}))
        host = open_runner(artifact, variant=variant, threads=threads)
        arm["host_vs_arm"] = M.compare_finite(_predict(host, x_nat, "the artifact on the host"), got_nat)[0]
        if arm["guest"].get("warning"):
            warnings.append(arm["guest"]["warning"])
    measured = {"natural": natural, "random": random}
    failures = check(measured, tol)
    nonfinite = {"natural": nonfinite_nat, "random": nonfinite_rand if n_random else None}
    first_bad = None
    if nonfinite_nat["count"] or (n_random and nonfinite_rand["count"]):
        x_bad = x_nat if nonfinite_nat["count"] else x_rand
        got_bad = got_nat if nonfinite_nat["count"] else got_rand
        first_bad = _first_nonfinite_layer(artifact, reference, x_bad[M.nonfinite_rows(got_bad)][:1], emulate)
    if nonfinite_nat["count"]:
        failures.insert(0, NonFinite.of(nonfinite_nat, "natural", first_bad))
    if target is not None and not target["met"]:
        failures.insert(0, BelowTarget.of(target))
    if failures and arm and arm.get("fp16_compute"):
        arm["fp32_arithmetic"], hint = _fp16_fix(artifact, reference, x_nat, ref_nat, tol, threads, arm)
        warnings.append(hint)
    if n_random and nonfinite_rand["count"]:
        warnings.append(NonFinite.of(nonfinite_rand, "random", first_bad).describe())
    info = {}
    try:
        info = runner.describe() if hasattr(runner, "describe") else {}
    except Exception:  # describe() is informational only
        info = {}
    return ParityResult(
        artifact=str(artifact), checkpoint=str(checkpoint), precision=precision, precision_source=precision_source,
        tolerances=tol, natural=natural, random=random, per_image=per_image,
        histogram=M.error_histogram(ref_nat, got_nat), random_histogram=random_hist,
        inputs={"natural": {"source": source, "count": len(names), "names": names,
                            "distinct_top1": distinct},
                "random": {"count": int(n_random), "seed": int(seed), "kind": "uniform pixels 0..255, preprocessed"}},
        failures=failures, warnings=warnings, seconds=round(time.perf_counter() - started, 3),
        artifact_info=_jsonable(info), nonfinite=nonfinite, first_nonfinite=first_bad,
        arm=_jsonable(arm) if arm else None, tolerance_changes=changes(precision, tolerances),
        accuracy_target=target)


def _fp16_fix(artifact: Path, reference, x: np.ndarray, ref: np.ndarray, tol: dict, threads: int,
              arm: dict) -> tuple[dict, str]:
    """Run the artifact again on the same emulated CPU with fp32 arithmetic: does fp16 arithmetic alone break it?"""
    from ..runtimes.open import open_runner

    runner = open_runner(artifact, threads=threads, emulate={"cpu": arm["cpu"], "fp16": "off",
                                                             "xnnpack": arm.get("xnnpack", True)})
    metrics, nonfinite = M.compare_finite(ref, _predict(runner, x, "the artifact with fp32 arithmetic"))
    passes = not nonfinite["count"] and not check({"natural": metrics, "random": None}, tol)
    if passes:
        hint = (f"fp16 arithmetic breaks it on {arm['cpu']}; with fp32 arithmetic on the same CPU it passes "
                f"(cosine min {metrics['cosine_min']:.6f}): convert with --quantize fp16 (fp16 weights, fp32 "
                "arithmetic) or leave fp16 inference off in the app")
    else:
        hint = (f"with fp32 arithmetic on {arm['cpu']} it fails too (cosine min {metrics.get('cosine_min', float('nan')):.6f}): "
                "the fault is not fp16 arithmetic alone")
    return dict(metrics, passes=passes, nonfinite=nonfinite["count"]), hint


def describe_arm(arm: dict) -> str:
    """One line: which emulated CPU, what arithmetic, and how far its logits are from the host's."""
    kernels = "XNNPACK" if arm.get("xnnpack") else "built-in kernels (XNNPACK off)"
    arithmetic = "fp16 arithmetic" if arm.get("fp16_compute") else "fp32 arithmetic"
    d = arm.get("host_vs_arm") or {}
    diff = (f"host vs ARM: cosine min {d['cosine_min']:.6f}, max abs {d['max_abs']:.3e}, top-1 agreement "
            f"{d['top1']:.1%}" if d.get("n") else "host vs ARM: not measured")
    return f"emulated {arm['cpu']} ({arm.get('emulator', 'qemu')}, {kernels}, {arithmetic}); {diff}"


def _emulation_plan(artifact: Path, precision: str, cpu: str | None, warnings: list[str]) -> str | None:
    """The CPU to emulate: the one asked for; for an fp16-compute .tflite, an emulated Cortex-A76 when the
    emulator is set up (x86 never computes in fp16, so a host-only check would not exercise it)."""
    fmt = format_of(artifact)
    if cpu or precision != "fp16-compute" or fmt is None or not fmt.emulated:
        return cpu
    from ..emulation import find_environment

    if find_environment() is not None:
        return "cortex-a76"
    warnings.append("judged on x86: fp16 arithmetic not exercised (x86 computes this fp16-compute model in fp32); "
                    "`vitdeploy setup arm` once, and parity judges it on an emulated phone CPU")
    return None


def _reference_outputs(reference, x: np.ndarray, checkpoint: Path) -> np.ndarray:
    """The checkpoint's logits; non-finite ones mean the reference itself is unusable (bad input, exit 2)."""
    y = _predict(reference, x, "the checkpoint")
    count = M.nonfinite_count(y)
    if count["count"]:
        raise VitdeployError(f"{checkpoint}: the checkpoint's own outputs are not finite on {count['count']} of "
                             f"{count['of']} inputs: it cannot serve as the reference")
    return y


def _first_nonfinite_layer(artifact: Path, reference, x_one: np.ndarray, emulate: dict | None = None) -> str | None:
    """Where NaN/inf first appears in the artifact's graph, on one input whose output was not finite.

    One extra run with every intermediate kept: cheap next to the parity run itself. None when the artifact
    is not a .tflite/.mlpackage or its runtime keeps no intermediates (the finding stands without it)."""
    from .localize import first_nonfinite

    fmt = format_of(artifact)
    if fmt is None or not fmt.intermediates or not len(x_one):
        return None
    try:
        return first_nonfinite(artifact, x_one[0], reference.preprocessing, reference.model, emulate=emulate)
    except Exception:  # noqa: BLE001 - a diagnostic extra: never turn a finding into a crash
        return None


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))
