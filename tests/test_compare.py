"""Issue 30, the numbers people compare side by side: profile of several models (interleaved), eval labelled by
target + precision with size and delta, a zoomed accuracy axis, noise flagged on host runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fuzz_seeds import seeds  # noqa: F401 - the session fixture
from vitdeploy.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_noise_warning_thresholds():
    from vitdeploy.runtimes.timing import noise_warning

    calm = {"median_ms": 10.0, "p90_ms": 11.0, "mean_ms": 10.2, "std_ms": 0.5}
    assert noise_warning(calm) is None
    assert "10.0x the median" in noise_warning({**calm, "p90_ms": 100.0, "std_ms": 30.0})
    assert "CV 20%" in noise_warning({**calm, "std_ms": 2.04})


def test_single_host_profile_flags_noise(seeds, monkeypatch):  # noqa: F811
    import vitdeploy.runtimes.timing as timing
    from vitdeploy.profile import profile

    def skewed(run, *, runs, warmup, progress=False):
        ms = [10.0] * 8 + [100.0, 100.0]
        return {"first_ms": 10.0, "runs_ms": ms, **timing.summarize(ms)}

    monkeypatch.setattr(timing, "measure_latency", skewed)
    result = profile(seeds["tflite"], runs=10, warmup=0)
    assert result["noisy"] and any("noisy timing" in w for w in result["warnings"])


def test_profile_several_models_on_host_interleaved(seeds):  # noqa: F811
    a, b = seeds["tflite"], seeds["tflite_pixels"]
    result = run("profile", a, b, "--runs", "3", "--warmup", "1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["interleaved"] and data["baseline"] == str(a)
    rows = {r["model"]: r for r in data["models"]}
    assert rows[str(a)]["speedup_vs_first"] == 1.0 and rows[str(b)]["speedup_vs_first"] > 0
    assert rows[str(a)]["label"] == "tflite fp32" and rows[str(b)]["size_bytes"] > 0
    text = run("profile", a, b, "--runs", "3", "--warmup", "1").output
    assert "vs first" in text and "baseline" in text and "interleaved" in text
    one = run("profile", a, "--runs", "2", "--warmup", "0")
    assert one.exit_code == 0 and "median" in one.output  # one model: the single-model output, unchanged


def test_eval_names_models_by_target_and_precision_with_size_and_delta(seeds):  # noqa: F811
    result = run("eval", seeds["tflite"], seeds["tflite_pixels"], "--data", seeds["data"], "--json")
    assert result.exit_code == 0, result.output
    models = json.loads(result.output)["models"]
    assert [m["name"] for m in models] == ["tflite fp32", "tflite fp32"]
    assert all(m["size_bytes"] > 0 for m in models) and models[0]["delta_top1"] == 0.0
    table = run("eval", seeds["tflite"], seeds["tflite_pixels"], "--data", seeds["data"]).output
    assert "target precision" in table and "vs first" in table and "baseline" in table


def test_eval_table_shows_the_drop_in_points():
    from vitdeploy.parity.evaluate import Dataset, EvalResult, ModelAccuracy

    ds = Dataset(root=__import__("pathlib").Path("d"), files=[], targets=None, classes=[], class_index={},
                 labels_file=None)
    models = [ModelAccuracy("a_fp32.tflite", "tflite", 0.9045, 1, 181, 200, 200, 1.0, name="tflite fp32",
                            size_bytes=30_100_000, delta_top1=0.0),
              ModelAccuracy("a_w8a8.tflite", "tflite", 0.8955, 1, 179, 200, 200, 1.0, name="tflite w8a8",
                            size_bytes=8_300_000, delta_top1=-0.009)]
    table = EvalResult(ds, models).table()
    assert "tflite w8a8" in table and "-0.90 pt" in table and "8.3" in table


def test_accuracy_chart_axis_zoomed_to_a_point_drop():
    from vitdeploy.reports.figures import accuracy, zoomed_axis

    lo, hi = zoomed_axis([90.45, 89.55, 99.0, 99.5])
    assert 85 < lo < 89.55 and 99.5 <= hi <= 100
    fig = accuracy({"models": [{"model": "a.tflite", "name": "tflite fp32", "top1": 0.9045, "top5": 0.99},
                               {"model": "b.tflite", "name": "tflite w8a8", "top1": 0.8955, "top5": 0.985}]})
    lo, hi = zoomed_axis([90.45, 89.55, 99.0, 98.5])
    assert f"axis {lo:.1f}-{hi:.1f} %" in fig.title and hi - lo < 15


def test_a_busy_host_is_said_even_when_the_spread_looks_fine():
    """PyTorch eager ran at 1549 ms median / 1554 ms p90 (no spread, so "not noisy") on a host whose other processes
    filled the cores; the load average is what shows it."""
    from vitdeploy.runtimes.timing import busy_host_warning

    assert busy_host_warning(load=6.5, cores=2).startswith("busy host: load average 6.5 on 2 cores")
    assert busy_host_warning(load=2.4, cores=2) is None  # our own two timing threads are load 2
    assert busy_host_warning() is None or "busy host" in busy_host_warning()  # the real load average reads


def test_benchmark_footer_carries_the_busy_host_line():
    from vitdeploy.benchmark import _footer

    rows = [{"target": "checkpoint", "label": "fp32", "median_ms": 1549.0, "p90_ms": 1554.0,
             "busy_host": "busy host: load average 6.5 on 2 cores while timing: ..."}]
    summary = {"images": {"labelled": True, "n": 4, "source": "x"}, "threads": 2, "runs": 3, "rows": rows}
    assert "warning: busy host: load average 6.5 on 2 cores while timing: ..." in _footer(summary)
