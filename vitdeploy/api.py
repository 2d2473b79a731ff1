"""The Python API behind each CLI command, under the same names.

    import vitdeploy.api as vd
    vd.inspect("levit_128s.pth")
    vd.predict("levit_128s.pth", ["cat.jpg"]).top(5)
    report = vd.convert("levit_128s.pth", "tflite", quantize="w8a8")
    result = vd.parity(report.out, "levit_128s.pth")
    vd.profile(report.out, device="host")

Each function takes the command's options as keyword arguments (see the function it forwards to)
and imports what it needs when called, so ``import vitdeploy.api`` stays light. The CLI goes through
these functions only (tests/test_architecture.py checks): a command parses its options, calls the function
of its name here and prints what it returns.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import write_atomically
from .runtimes.open import is_artifact, open_runner, read_inputs


def inspect(path: str | Path, *, variant: str | None = None) -> dict:
    """What a checkpoint or artifact is: family, variant, layout, params, input, preprocessing, BN folding."""
    if is_artifact(path):
        runner = open_runner(path)
        info = runner.describe()
        if hasattr(runner, "op_counts"):
            info["op_counts"] = runner.op_counts()
        from .summary import artifact_summary
        from .verdict import target_of

        info.update(accuracy_target=target_of(getattr(runner, "config", None)),
                    label_names=list(runner.labels) if runner.labels else None, summary=artifact_summary(runner))
        return info
    from . import checkpoints
    from .passes import fold_batchnorm
    from .summary import checkpoint_summary

    ckpt = checkpoints.load(path, variant=variant)
    info = ckpt.describe()
    info["bn_folding"] = fold_batchnorm(copy.deepcopy(ckpt.model)).to_dict()
    info["summary"] = checkpoint_summary(ckpt)
    return info


@dataclass
class Prediction:
    logits: np.ndarray  # (N, classes) float32
    labels: list[str] | None
    inputs: list[str]

    def top(self, k: int) -> list[list[dict]]:
        """Per input, the k best classes with softmax probabilities."""
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        out = []
        for row_logits, row_probs in zip(self.logits, probs):
            idx = np.argsort(-row_logits, kind="stable")[:k]
            out.append([{"class": int(i), "label": self.labels[i] if self.labels else None,
                         "logit": float(row_logits[i]), "prob": float(row_probs[i])} for i in idx])
        return out


def predict(model: str | Path, inputs: list[str | Path], *, variant: str | None = None, threads: int = 2,
            runtime: str = "auto", labels_file: str | Path | None = None) -> Prediction:
    """Logits of a checkpoint or artifact on image files or one preprocessed .npy NCHW batch.

    ``labels_file``: class names, one per line, instead of the model's own (their count must match)."""
    runner = open_runner(model, variant=variant, threads=threads, runtime=runtime)
    x = read_inputs(list(inputs), runner)
    logits = np.asarray(runner.predict_nchw(x), dtype=np.float32)
    labels = runner.labels
    if labels_file is not None:
        from .convert import read_labels

        labels = read_labels(labels_file, int(logits.shape[1]))
    names = [str(p) for p in inputs]
    if len(names) == 1 and str(names[0]).endswith(".npy"):
        names = [f"{names[0]}[{i}]" for i in range(len(logits))]
    return Prediction(logits=logits, labels=labels, inputs=names)


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """Write a .npy atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomically(Path(path), buffer.getvalue())
    return Path(path)


def save_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    write_atomically(Path(path), text)
    return Path(path)


def convert(checkpoint: str | Path, target: str, **options):
    """``vitdeploy convert``: a checkpoint to a .tflite/.mlpackage (:func:`vitdeploy.convert.convert`)."""
    from .convert import convert as run

    return run(checkpoint, target, **options)


def load_recipe(path: str | Path):
    """``vitdeploy convert --recipe``: a recipe file read and validated (:func:`vitdeploy.recipes.load_recipe`)."""
    from .recipes import load_recipe as run

    return run(path)


def parity(artifact: str | Path, checkpoint: str | Path, **options):
    """``vitdeploy parity``: the artifact against its checkpoint (:func:`vitdeploy.parity.run_parity`)."""
    from .parity import run_parity

    return run_parity(artifact, checkpoint, **options)


def localize(artifact: str | Path, checkpoint: str | Path, **options):
    """``vitdeploy parity --localize``: where the artifact starts to diverge (:func:`vitdeploy.parity.localize`)."""
    from .parity import localize as run

    return run(artifact, checkpoint, **options)


def emulated_cpus(cpus: tuple[str, ...] | list[str] = (), device: str | None = None) -> list[str]:
    """``vitdeploy parity --cpu/--device``: the emulated CPUs asked for, ``cpus`` as given (each once), then the
    stand-ins for a catalog phone's cores (:func:`vitdeploy.devices.catalog.emulated_cpus`)."""
    chosen = list(dict.fromkeys(cpus))
    if device:
        from .devices.catalog import emulated_cpus as stand_ins
        from .devices.catalog import get_device

        chosen += [c for c in stand_ins(get_device(device)) if c not in chosen]
    return chosen


def catalog_device(name: str):
    """The device catalog's entry (:class:`vitdeploy.devices.catalog.DeviceSpec`) for a name as users type it,
    or None (``vitdeploy profile --device``)."""
    from .devices.catalog import lookup

    return lookup(name)


def eval(models: list[str | Path], data_dir: str | Path, **options):  # noqa: A001 - the command's name
    """``vitdeploy eval``: top-1/top-5 on a labelled folder (:func:`vitdeploy.parity.evaluate`)."""
    from .parity import evaluate

    return evaluate(list(models), data_dir, **options)


def profile(model, **options) -> dict:
    """``vitdeploy profile``: latency on the host or a phone (:func:`vitdeploy.profile.profile`); a list of
    several models is timed interleaved on the host (:func:`vitdeploy.profile.profile_many`)."""
    from .profile import profile as run
    from .profile import profile_many

    if isinstance(model, (list, tuple)):
        if len(model) > 1:
            return profile_many(list(model), **options)
        model = model[0]
    return run(model, **options)


def profile_ops(model: str | Path, **options) -> dict:
    """``vitdeploy profile --ops``: a .tflite's time per op type and arithmetic on the host
    (:func:`vitdeploy.op_profile.profile_ops`)."""
    from .op_profile import profile_ops as run

    return run(model, **options)


def build(recipes_dir: str | Path | None, checkpoints_dir: str | Path, out_dir: str | Path, **options) -> dict:
    """``vitdeploy build``: every checkpoint x recipe cell converted, checked and timed (:func:`vitdeploy.build.build`)."""
    from .build import build as run

    return run(recipes_dir, checkpoints_dir, out_dir, **options)


def package(artifact: str | Path, *, platform: str | None = None, **options):
    """``vitdeploy package``: the artifact into an iOS/Android app (:func:`vitdeploy.packaging.package`)."""
    from .packaging import infer_platform, package as run

    artifact = Path(artifact)
    return run(artifact, platform=platform or infer_platform(artifact), **options)


def devices() -> dict:
    """``vitdeploy devices``: the host, attached phones and the catalog."""
    from .devices import list_devices

    return list_devices()


def farm_devices(farm: str, platform: str | None = None, **backend_kwargs) -> list:
    """``vitdeploy farm devices``: the DeviceRefs a farm offers (:func:`vitdeploy.devices.farm.farm_devices`)."""
    from .devices.farm import farm_devices as run

    return run(farm, platform, **backend_kwargs)


def profile_farm(farm: str, models: list[str | Path], *, timeout_s: float | None = None, **options) -> dict:
    """``vitdeploy profile MODEL... --farm NAME``: submit, record, wait (``timeout_s``, None: the farm default of
    4 h), collect (:func:`vitdeploy.devices.farm.profile_on_farm`); ``{"submissions", "records", "done"}``."""
    from .devices.farm import DEFAULT_TIMEOUT_S, profile_on_farm

    return profile_on_farm(farm, list(models), timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s,
                           **options)


def farm_status(ids: list[str], **options) -> list[dict]:
    """``vitdeploy farm status ID...`` (:func:`vitdeploy.devices.farm.farm_status`)."""
    from .devices.farm import farm_status as run

    return run(list(ids), **options)


def farm_collect(ids: list[str], *, wait_s: float | None = None, **options) -> list:
    """``vitdeploy farm collect ID...``: LatencyRecords, waiting for unfinished submissions first (at most
    ``wait_s``; None: the farm default of 4 h)."""
    from .devices.farm import DEFAULT_TIMEOUT_S
    from .devices.farm import farm_collect as run

    return run(list(ids), wait_s=DEFAULT_TIMEOUT_S if wait_s is None else wait_s, **options)


def farm_cancel(ids: list[str], **options) -> list[dict]:
    """``vitdeploy farm cancel ID...`` (:func:`vitdeploy.devices.farm.farm_cancel`)."""
    from .devices.farm import farm_cancel as run

    return run(list(ids), **options)


def farm_list(**options) -> list[dict]:
    """``vitdeploy farm list``: the recorded submissions."""
    from .devices.farm import farm_list as run

    return run(**options)


def latency_table(records: list, **thresholds) -> dict:
    """The comparison of LatencyRecords as JSON (rows, unstable flags, errors; :mod:`vitdeploy.reports.farm`)."""
    from .reports import farm as report

    rows, errors = report.rows(records, **thresholds)
    return report.to_json(rows, errors, records, **thresholds)


def demo(checkpoints: list[str | Path] = (), out_dir: str | Path = "out/demo", **options) -> dict:
    """``vitdeploy demo``: the committed references through every target, checked and timed."""
    from .demo import run_demo

    return run_demo([str(c) for c in checkpoints], out_dir, **options)


def setup_arm(cache: str | Path | None = None, *, force: bool = False, say=print, progress=None):
    """``vitdeploy setup arm``: build (or reuse) the emulated phone CPU environment; returns it.
    ``progress(label, total_bytes)``: a download's progress callback, or None (:func:`vitdeploy.emulation.setup_arm`)."""
    from .emulation import setup_arm as build

    return build(Path(cache) if cache else None, force=force, say=say, progress=progress)


def benchmark(checkpoint: str | Path, **options) -> dict:
    """``vitdeploy benchmark``: every target x precision this host can run for ``checkpoint`` in one summary
    (:func:`vitdeploy.benchmark.benchmark`; its table: :func:`vitdeploy.benchmark.format_table`)."""
    from .benchmark import benchmark as run

    return run(checkpoint, **options)
