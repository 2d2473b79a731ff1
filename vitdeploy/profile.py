"""``vitdeploy profile``: latency on the host (LiteRT, ExecuTorch or PyTorch eager) or on a device through its harness."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from .errors import VitdeployError


def profile(model: str | Path, *, device: str = "host", runs: int = 50, warmup: int = 5, threads: int = 2,
            variant: str | None = None, progress: bool = False, compute_units: tuple[str, ...] | None = None,
            device_threads: tuple[int, ...] = (1, 4), harness_apks: tuple[str, ...] = (), timeout_s: float = 600,
            adb: str = "adb", server_socket: str | None = None, build_harness: bool = False) -> dict:
    """Latency statistics of a checkpoint or artifact on ``device`` (``host``, a catalog name, a serial/UDID)."""
    if runs < 1 or warmup < 0 or threads < 1:
        raise VitdeployError("--runs and --threads must be >= 1, --warmup >= 0")
    path = Path(model)
    if device == "host":
        from .runtimes.timing import busy_host_warning, noise_warning

        result = _profile_host(path, runs=runs, warmup=warmup, threads=threads, variant=variant, progress=progress)
        noisy = noise_warning(result)
        result["noisy"] = noisy is not None
        for warning in (noisy, busy_host_warning()):
            if warning:
                result.setdefault("warnings", []).append(warning)
        _say_warnings(result, progress)
        return result
    if "android" in _device_platforms(path, device) and not harness_apks:
        from .devices import harness_build

        # --build-harness builds android_harness/ with Gradle (needs an SDK); otherwise reuse an earlier build.
        built = harness_build.build_harness() if build_harness else harness_build.prebuilt_apks()
        harness_apks = tuple(str(a) for a in built or ())
    return _profile_device(path, device, runs=runs, warmup=warmup, compute_units=compute_units,
                           threads=device_threads, harness_apks=harness_apks, timeout_s=timeout_s, adb=adb,
                           server_socket=server_socket)


def _device_platforms(path: Path, device: str) -> tuple[str, ...]:
    """The platforms ``device`` may be that run ``path``'s format: the catalog's one for a catalog name (a
    .pte on an iPhone needs no Android harness), every one the format runs on for a serial or UDID."""
    from .devices.catalog import lookup
    from .formats import format_of

    fmt = format_of(path)
    if fmt is None:
        return ()
    spec = lookup(device)
    return tuple(p for p in fmt.platforms if spec is None or spec.platform == p)


def _profile_host(path: Path, *, runs, warmup, threads, variant, progress) -> dict:
    from .devices import host_info
    from .formats import format_of
    from .runtimes.open import runner_class
    from .runtimes.timing import profile_runner, profile_torch

    fmt = format_of(path)
    ckpt = None
    if fmt is not None and fmt.host_latency:
        if not path.is_file():
            raise VitdeployError(f"{path}: no such file")
        runner = runner_class(fmt)
        runner.load_runtime()  # its imports (~3 s for ExecuTorch's) are no part of the model's load_ms
        stats = profile_runner(lambda: runner(path, threads=threads), runs=runs, warmup=warmup, progress=progress)
    elif fmt is not None:  # Core ML: its runtime is Apple's
        if platform.system() != "Darwin":
            raise VitdeployError("Core ML latency needs macOS or an iPhone (--device iphone12 ...); on Linux "
                                 "vitdeploy's MIL interpreter checks numerics but is not a latency reference")
        stats = _profile_coreml_mac(path, runs=runs, warmup=warmup, progress=progress)
    else:
        from . import checkpoints

        start = time.perf_counter()
        ckpt = checkpoints.load(path, variant=variant)
        load_ms = (time.perf_counter() - start) * 1000
        stats = profile_torch(ckpt.model, ckpt.input_size, threads=threads, runs=runs, warmup=warmup,
                              progress=progress)
        stats["load_ms"] = round(load_ms, 3)
    if fmt is None or fmt.host_latency:
        stats.update(_output_check(_host_runner(path, ckpt, threads)))
    return {"model": str(path), "kind": fmt.name if fmt is not None else "checkpoint", "device": "host",
            "host": host_info(), "runs": runs, "warmup": warmup, **stats}


def profile_many(models: list[str | Path], *, runs: int = 50, warmup: int = 5, threads: int = 2,
                 variant: str | None = None) -> dict:
    """Several models on this host timed interleaved (every round runs each once, so a change in load hits all
    alike): one row per model with its latency, its speed-up over the first (median of per-round ratios) and a
    noise flag (:func:`vitdeploy.runtimes.timing.noise_warning`)."""
    from .devices import host_info
    from .parity.evaluate import size_on_disk
    from .parity.precision import artifact_label
    from .runtimes.timing import busy_host_warning, interleaved, noise_warning

    if runs < 1 or warmup < 0 or threads < 1:
        raise VitdeployError("--runs and --threads must be >= 1, --warmup >= 0")
    names = [str(m) for m in models]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise VitdeployError(f"{dup} is given twice: each model once")
    runners = {name: _timed_runner(Path(name), threads, variant) for name in names}
    measured = interleaved(runners, rounds=runs, warmup=max(1, warmup), baseline=names[0])
    speedup = measured.pop("speedup", {})
    busy = busy_host_warning()
    rows, warnings = [], [busy] if busy else []
    for name in names:
        stats = measured[name]
        noisy = noise_warning(stats, Path(name).name)
        if noisy:
            warnings.append(noisy)
        rows.append({"model": name, "label": artifact_label(name), "size_bytes": size_on_disk(name),
                     **{k: stats[k] for k in ("min_ms", "median_ms", "p90_ms", "mean_ms", "std_ms")},
                     "speedup_vs_first": 1.0 if name == names[0] else speedup.get(name), "noisy": noisy is not None})
    return {"kind": "profile", "device": "host", "host": host_info(), "interleaved": True, "rounds": runs,
            "warmup": warmup, "threads": threads, "baseline": names[0], "models": rows, "warnings": warnings}


def format_many(result: dict) -> str:
    """The table of :func:`profile_many`: one row per model, speed-up over the first."""
    rows = [("model", "target precision", "MB", "median ms", "p90 ms", "min ms", "vs first", "noise")]
    for r in result["models"]:
        mb = f"{r['size_bytes'] / 1e6:.1f}" if r.get("size_bytes") is not None else "-"
        speed = "baseline" if r["model"] == result["baseline"] else (
            f"{r['speedup_vs_first']:.2f}x" if r.get("speedup_vs_first") else "-")
        rows.append((Path(r["model"]).name, r["label"], mb, f"{r['median_ms']:.2f}", f"{r['p90_ms']:.2f}",
                     f"{r['min_ms']:.2f}", speed, "NOISY" if r["noisy"] else "ok"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"host, {result['threads']} threads, {result['rounds']} interleaved rounds; vs first = "
                 f"{Path(result['baseline']).name} time / this (median of per-round ratios)")
    return "\n".join(lines + [f"warning: {w}" for w in result["warnings"]])


class TorchTimed:
    """A checkpoint as :func:`interleaved` times it: one batch-1 forward pass in PyTorch eager per ``run_once``."""

    def __init__(self, model, input_size, threads: int):
        import torch

        self.model, self.threads, self._torch = model.eval(), threads, torch
        self._x = torch.randn(1, *tuple(input_size))

    def run_once(self) -> None:
        torch = self._torch
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                self.model(self._x)
        finally:
            torch.set_num_threads(previous)


def _timed_runner(path: Path, threads: int, variant: str | None):
    from .formats import format_of
    from .runtimes.open import open_runner

    fmt = format_of(path)
    if fmt is None:
        from . import checkpoints

        ckpt = checkpoints.load(path, variant=variant)
        return TorchTimed(ckpt.model, ckpt.input_size, threads)
    if not fmt.host_latency:
        raise VitdeployError(f"{path.name}: {fmt.name} latency is not measured on this host (the formats table); "
                             f"profile it on a device (--device), or drop it from the list")
    return open_runner(path, threads=threads, require_metadata=False)


def _host_runner(path: Path, ckpt, threads: int):
    from .runtimes.open import TorchRunner, open_runner

    return TorchRunner(ckpt) if ckpt is not None else open_runner(path, threads=threads)


def _output_check(runner) -> dict:
    """Latency of a model whose outputs are NaN/inf measures nothing useful: run it once on a natural image
    and report it ("outputs not finite on 1 of 1 inputs") next to the timing."""
    from .sample_images import natural_images

    rgb = natural_images(1, runner.input_size[1], seed=42)
    y = np.asarray(runner.predict_nchw(runner.preprocessing.normalize(rgb)))
    finite = bool(np.isfinite(y).all())
    out = {"outputs_finite": finite}
    if not finite:
        out["warnings"] = ["outputs not finite on 1 of 1 inputs (a natural image): the timing measures a model "
                           "that computes NaN/inf (fp16 overflow is the usual cause)"]
    return out


def _say_warnings(result: dict, progress: bool) -> None:
    if progress:  # human output: the CLI prints latencies only, so the finding goes to stderr here
        import click

        from .diagnostics import visible

        for w in result.get("warnings", []):
            click.echo(visible(f"warning: {w}"), err=True)


def _profile_coreml_mac(path: Path, *, runs, warmup, progress) -> dict:  # pragma: no cover - macOS only
    import coremltools as ct

    from .formats.coreml import check_package_tree
    from .runtimes.timing import measure_latency

    check_package_tree(path)
    start = time.perf_counter()
    model = ct.models.MLModel(str(path))
    load_ms = (time.perf_counter() - start) * 1000
    spec = model.get_spec()
    feed = {}
    for inp in spec.description.input:
        if inp.type.WhichOneof("Type") == "imageType":
            from PIL import Image

            it = inp.type.imageType
            feed[inp.name] = Image.fromarray(np.zeros((it.height, it.width, 3), np.uint8))
        else:
            shape = tuple(inp.type.multiArrayType.shape)
            feed[inp.name] = np.zeros(shape, np.float32)
    stats = measure_latency(lambda: model.predict(feed), runs=runs, warmup=warmup, progress=progress)
    return {"load_ms": round(load_ms, 3), **stats, "runtime": f"Core ML (coremltools {ct.__version__})"}


def _profile_device(path: Path, device: str, *, runs, warmup, compute_units, threads, harness_apks, timeout_s, adb,
                    server_socket) -> dict:
    """Run the harness on a phone, then check its output against the same artifact on the host."""
    from .devices import profile_on_device
    from .runtimes.open import open_runner

    if not path.exists():
        raise VitdeployError(f"{path}: no such file or directory")
    from .devices.catalog import lookup
    from .formats import ARTIFACT_SUFFIXES, format_of, refuse_on_platform

    if format_of(path) is None:  # the formats table says which artifacts exist (.tflite, .mlpackage, .pte)
        raise VitdeployError(f"{path}: profile on a device takes an artifact ({', '.join(ARTIFACT_SUFFIXES)})")
    spec = lookup(device)
    if spec is not None and spec.platform != "host":  # a catalog name: refuse a format it cannot run offline
        refuse_on_platform(path, spec.platform, spec.name)
    from .sample_images import natural_images

    runner = open_runner(path)
    rgb = natural_images(1, runner.input_size[1], seed=42)
    result = profile_on_device(path, device, runs=runs, warmup=warmup, threads=threads, compute_units=compute_units,
                               input_array=_device_input(runner, rgb), timeout_s=timeout_s,
                               harness_apks=harness_apks, adb=adb, server_socket=server_socket)
    reference = np.asarray(runner.predict_nchw(runner.preprocessing.normalize(rgb)), dtype=np.float32).reshape(-1)
    result["parity"] = _parity_per_config(result, reference)
    result["model"] = str(path)
    return result


def _device_input(runner, rgb: np.ndarray) -> np.ndarray:
    """The tensor the artifact itself takes for RGB pixels ``rgb``: the pixels, or the preprocessed NCHW tensor."""
    from .runtimes.tflite import LAYOUT_RAW

    spec = getattr(runner, "input_spec", None) or {}
    if spec.get("layout") == LAYOUT_RAW:
        return runner.preprocessing.normalize(rgb)
    return rgb.astype(np.float32)


def _parity_per_config(result: dict, reference: np.ndarray) -> list[dict]:
    rows = []
    for config in result.get("configs", []):
        outputs = config.get("outputs") or []
        if not outputs:
            rows.append({"config": config.get("name"), "error": config.get("error") or config.get("status")})
            continue
        got = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        if not np.isfinite(got).all():  # a cosine of NaN/inf says nothing: say what happened instead
            rows.append({"config": config.get("name"), "outputs_finite": False,
                         "error": "outputs not finite on 1 of 1 inputs (fp16 overflow is the usual cause)"})
            continue
        cos = float(got @ reference / (np.linalg.norm(got) * np.linalg.norm(reference) + 1e-30))
        rows.append({"config": config.get("name"), "cosine": cos,
                     "max_abs_error": float(np.abs(got - reference).max()),
                     "top1_match": bool(got.argmax() == reference.argmax())})
    return rows
