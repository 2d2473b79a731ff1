"""Host latency measurement, one loop for every runtime (LiteRT, ExecuTorch, PyTorch eager), same statistics.

Runners time ``run_once()`` (one inference on an input already set) and name themselves
(``runtime_name()``); :func:`profile_runner` and :func:`interleaved` take any of them.

All times are wall-clock milliseconds from ``time.perf_counter``. ``first_ms`` is the very first
call (cold caches, lazy init: what an app sees once); it counts as one of the ``warmup`` calls,
and none of the warmup calls is in ``runs_ms``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable


def measure_latency(run: Callable[[], object], *, runs: int, warmup: int, progress: bool = False) -> dict:
    """Time ``run()``: ``{"first_ms", "runs_ms", "min_ms", "median_ms", "p90_ms", "mean_ms", "std_ms"}``."""
    if runs < 1:
        from ..errors import VitdeployError

        raise VitdeployError(f"runs must be at least 1, got {runs}")
    first_ms = _time_ms(run)
    for _ in range(max(0, warmup - 1)):
        run()
    runs_ms = []
    with _progress_bar(runs, progress) as bar:
        for _ in range(runs):
            runs_ms.append(_time_ms(run))
            bar.update(1)
    return {"first_ms": round(first_ms, 3), "runs_ms": [round(t, 3) for t in runs_ms], **summarize(runs_ms)}


def summarize(runs_ms: list[float]) -> dict:
    """min / median / p90 (linear interpolation) / mean / population std, rounded to microseconds."""
    ordered = sorted(runs_ms)
    p90 = _percentile(ordered, 0.9)
    stats = {"min_ms": ordered[0], "median_ms": statistics.median(ordered), "p90_ms": p90,
             "mean_ms": statistics.fmean(ordered), "std_ms": statistics.pstdev(ordered)}
    return {k: round(v, 3) for k, v in stats.items()}


# A host run is flagged noisy when its p90 passes this multiple of its median, or its coefficient of variation
# (std / mean) passes NOISY_CV: another process shared the cores, and a single median is not to be trusted.
NOISY_P90_RATIO = 1.5
NOISY_CV = 0.10


def noise_warning(stats: dict, name: str = "") -> str | None:
    """One line when ``stats`` (:func:`summarize`'s keys) are too spread to compare, else None."""
    median, p90 = stats.get("median_ms"), stats.get("p90_ms")
    mean, std = stats.get("mean_ms"), stats.get("std_ms")
    if not median or p90 is None or not mean or std is None:
        return None
    ratio, cv = p90 / median, std / mean
    if ratio <= NOISY_P90_RATIO and cv <= NOISY_CV:
        return None
    return (f"{name + ': ' if name else ''}noisy timing: p90 {p90:.2f} ms is {ratio:.1f}x the median {median:.2f} ms "
            f"(CV {cv:.0%}; flagged above {NOISY_P90_RATIO}x or CV {NOISY_CV:.0%}): another process shared the cores: "
            f"rerun on an idle machine; ratios of models timed interleaved (`vitdeploy profile A B`) hold better")


def busy_host_warning(load: float | None = None, cores: int | None = None) -> str | None:
    """One line when the host ran more than it has cores while timing (1-minute load average, our own threads
    included), else None. Spread alone misses it: PyTorch eager (OpenMP barriers) ran LeViT-128S at 1549 ms
    median, p90 1554 ms -- "not noisy" -- beside 12-18 ms on the idle host, while a test suite shared the 2
    cores; TFLite's own thread pool slowed ~2x in the same run."""
    import os

    load = os.getloadavg()[0] if load is None else load
    cores = (os.cpu_count() or 1) if cores is None else cores
    if load <= cores + 0.5:
        return None
    return (f"busy host: load average {load:.1f} on {cores} cores while timing: other processes shared the cores, "
            f"so absolute times (PyTorch eager most: its OpenMP threads wait on each other) are not to be quoted; "
            f"rerun on an idle machine")


def _percentile(ordered: list[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _time_ms(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1000.0


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


def _progress_bar(total: int, wanted: bool):
    """click's progress bar on an interactive terminal only (never in logs, pipes or CI)."""
    if not (wanted and sys.stderr.isatty()):
        return _NoBar()
    import click

    return click.progressbar(length=total, label="timing", file=sys.stderr)


def profile_runner(open_runner: Callable[[], object], *, runs: int, warmup: int, progress: bool = False) -> dict:
    """Latency of an artifact's runner on this host, whatever its runtime: ``load_ms`` (``open_runner()``:
    program load, allocation) plus :func:`measure_latency` of ``runner.run_once`` and the runtime's name."""
    start = time.perf_counter()
    runner = open_runner()
    load_ms = (time.perf_counter() - start) * 1000.0
    result = measure_latency(runner.run_once, runs=runs, warmup=warmup, progress=progress)
    return {"load_ms": round(load_ms, 3), **result, "threads": runner.threads, "runtime": runner.runtime_name()}


def profile_tflite(path, *, threads: int, runs: int, warmup: int, progress: bool = False) -> dict:
    """:func:`profile_runner` of a .tflite (LiteRT + XNNPACK), vitdeploy's or not."""
    from .tflite import TFLiteRunner

    return profile_runner(lambda: TFLiteRunner(Path(path), threads=threads), runs=runs, warmup=warmup,
                          progress=progress)


def profile_torch(model, input_size, *, threads: int, runs: int, warmup: int, progress: bool = False) -> dict:
    """Latency of PyTorch eager on this host, batch 1, ``threads`` intra-op threads; same keys."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        x = torch.randn(1, *tuple(input_size))
        model.eval()
        with torch.inference_mode():
            result = measure_latency(lambda: model(x), runs=runs, warmup=warmup, progress=progress)
    finally:
        torch.set_num_threads(previous)
    # load_ms 0: the module is already in memory; the key keeps one schema for both runtimes.
    return {"load_ms": 0.0, **result, "threads": threads, "runtime": f"torch {torch.__version__} eager"}


def interleaved(runners: dict, *, rounds: int = 30, warmup: int = 3, baseline: str | None = None,
                keep_runs: bool = False) -> dict:
    """Latency of several runners (any runtimes: objects with ``run_once``) measured side by side: every
    round runs each once, so a change in machine load hits all alike. ``{name: summary}`` plus, with
    ``baseline``, ``speedup`` = median over rounds of baseline ms / model ms (the robust ratio on a noisy
    host); ``keep_runs`` keeps each round's ms (``runs_ms``) for other ratios (:func:`median_ratio`)."""
    for runner in runners.values():
        for _ in range(warmup):
            runner.run_once()
    times: dict = {name: [] for name in runners}
    for _ in range(rounds):
        for name, runner in runners.items():
            times[name].append(_time_ms(runner.run_once))
    out = {name: {**summarize(t), "threads": getattr(runners[name], "threads", None), "rounds": rounds,
                  **({"runs_ms": [round(v, 3) for v in t]} if keep_runs else {})}
           for name, t in times.items()}
    if baseline in times:
        out["speedup"] = {name: median_ratio(times[baseline], t) for name, t in times.items() if name != baseline}
    return out


def median_ratio(numerator_ms: list[float], denominator_ms: list[float]) -> float:
    """Median over interleaved rounds of one model's ms / another's, the same round's (robust to load drift)."""
    return round(statistics.median(a / b for a, b in zip(numerator_ms, denominator_ms)), 3)


def interleaved_tflite(paths: dict, *, threads: int = 2, rounds: int = 30, warmup: int = 3,
                       baseline: str | None = None) -> dict:
    """:func:`interleaved` over .tflite files."""
    from .tflite import TFLiteRunner

    return interleaved({name: TFLiteRunner(Path(p), threads=threads) for name, p in paths.items()}, rounds=rounds,
                       warmup=warmup, baseline=baseline)
