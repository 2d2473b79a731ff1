"""Report writing: report.json / report.md / self-contained report.html with embedded plots.

Fast: the data dicts are built from real metric computations on small arrays (no model runs).
The browser test renders report.html in headless Chromium when it is installed.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from vitdeploy.errors import VitdeployError
from vitdeploy.parity import metrics as M
from vitdeploy.parity.tolerances import check, resolve
from vitdeploy.reports import write_report


def parity_data(passed: bool = False) -> dict:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(6, 50))
    got = ref + rng.normal(scale=1e-2 if not passed else 1e-7, size=ref.shape)
    natural = M.compare(ref, got)
    failures = check({"natural": natural}, resolve("fp32"))
    assert (not failures) == passed
    blocks = [{"block": f"stages.0.blocks.{i}", "rel_l2": 1e-7 if i < 2 else 0.2, "cosine": 1.0 if i < 2 else 0.98,
               "cosine_min": 1.0, "max_abs": 1e-6, "match": "name", "layout": "same", "shape": [196, 128],
               "tensor": "t"} for i in range(4)]
    return {
        "kind": "parity", "passed": passed, "artifact": "/x/model_fp32.tflite", "checkpoint": "/x/model.pth",
        "precision": "fp32", "precision_source": "vitdeploy metadata", "tolerances": resolve("fp32"),
        "failures": [f.to_dict() for f in failures],
        "metrics": {"natural": natural, "random": M.compare(ref[:2], got[:2])},
        "per_image": dict(M.per_sample(ref, got), names=[f"img_{i}.png" for i in range(6)]),
        "histogram": M.error_histogram(ref, got), "random_histogram": M.error_histogram(ref[:2], got[:2]),
        "inputs": {"natural": {"source": "built-in natural images", "count": 6}, "random": {"count": 2}},
        "warnings": [], "seconds": 1.0,
        "localization": {"blocks": blocks, "threshold": 1e-3, "first_divergent": "stages.0.blocks.2",
                         "jumps": [{"block": "stages.0.blocks.2", "ratio": 2e6, "rel_l2": 0.2,
                                    "previous_rel_l2": 1e-7}],
                         "mapping": {"by_name": 4, "by_shape": 0, "unmatched": 0}},
    }


def profile_data() -> dict:
    rng = np.random.default_rng(1)
    runs = (20 + rng.gamma(2.0, 1.5, size=60)).round(3).tolist()
    return {"model": "m.tflite", "kind": "tflite", "device": "host", "runs": 60, "warmup": 5, "runs_ms": runs,
            "median_ms": float(np.median(runs)), "p90_ms": float(np.percentile(runs, 90)), "min_ms": min(runs),
            "mean_ms": float(np.mean(runs)), "std_ms": float(np.std(runs)), "first_ms": 80.0, "load_ms": 12.0,
            "threads": 2, "runtime": "ai-edge-litert (XNNPACK)", "host": {"cpu": "test"}}


def eval_data() -> dict:
    return {"kind": "eval", "dataset": {"root": "/data", "images": 20, "classes": 4, "labels_file": None},
            "models": [{"model": "a.pth", "kind": "checkpoint", "top1": 0.9, "top5": 1.0, "n": 20, "seconds": 1.0},
                       {"model": "a_int8.tflite", "kind": "tflite", "top1": 0.85, "top5": 1.0, "n": 20,
                        "seconds": 0.5}]}


def embedded_images(html: str) -> list[tuple[str, bytes]]:
    return [(mime, base64.b64decode(data))
            for mime, data in re.findall(r'src="data:(image/[a-z+]+);base64,([A-Za-z0-9+/=]+)"', html)]


def assert_self_contained(html: str) -> None:
    assert not re.search(r"(src|href)=\"(?!data:)", html), "an external resource is referenced"
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "<link" not in html and "@import" not in html


# ----------------------------------------------------------------------------- fast


def test_parity_report_three_files(tmp_path):
    from PIL import Image

    paths = write_report(tmp_path / "rep", kind="parity", data=parity_data())
    assert set(paths) == {"json", "md", "html"} and all(p.is_file() for p in paths.values())
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["report.html", "report.json", "report.md"]
    doc = json.loads(paths["json"].read_text())
    assert doc["kind"] == "parity" and doc["data"]["passed"] is False
    assert doc["figures"] == ["Logit error histogram", "Per-image relative error", "Per-block error (localization)"]
    md = paths["md"].read_text()
    assert "## Failures" in md and "| cosine_min |" in md and "stages.0.blocks.2" in md
    assert "| metric | natural images (gate) | random tensors (report) |" in md
    html = paths["html"].read_text()
    assert_self_contained(html)
    images = embedded_images(html)
    assert len(images) == 3
    for mime, data in images:  # every plot decodes to a real, non-blank image
        assert mime == "image/png"
        im = Image.open(io.BytesIO(data)).convert("L")
        assert im.size[0] > 300 and im.size[1] > 200
        assert np.asarray(im).std() > 5
    assert "FAILED" in html and "stages.0.blocks.2" in html


def test_profile_and_eval_reports(tmp_path):
    p = write_report(tmp_path / "prof", kind="profile", data=profile_data())
    html = p["html"].read_text()
    assert_self_contained(html)
    assert len(embedded_images(html)) == 1 and "median_ms" in p["md"].read_text()
    e = write_report(tmp_path / "eval", kind="eval", data=eval_data())
    md = e["md"].read_text()
    assert "| a_int8.tflite | tflite | - | 85.00% | - | 100.00% | 20 |" in md  # no size/delta in this old data
    assert len(embedded_images(e["html"].read_text())) == 1


def test_report_sanitizes_and_escapes(tmp_path):
    data = parity_data()
    data["metrics"]["natural"]["snr_db"] = float("inf")
    data["per_image"]["names"][0] = "<script>alert(1)</script>.png"
    data["extra"] = np.float32(1.5)
    p = write_report(tmp_path, kind="parity", data=data, figures=False)
    doc = json.loads(p["json"].read_text())  # strict JSON: no Infinity/NaN literals
    assert doc["data"]["metrics"]["natural"]["snr_db"] == "inf" and doc["data"]["extra"] == 1.5
    html = p["html"].read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert embedded_images(html) == []


def test_extra_figures_and_bad_input(tmp_path):
    from vitdeploy.reports.figures import Figure

    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    p = write_report(tmp_path, kind="eval", data=eval_data(), figures=[Figure("custom", svg, "image/svg+xml")])
    kinds = [m for m, _ in embedded_images(p["html"].read_text())]
    assert kinds == ["image/png", "image/svg+xml"]
    with pytest.raises(VitdeployError, match="unknown report kind"):
        write_report(tmp_path, kind="latency", data={})
    with pytest.raises(VitdeployError, match="must be a dict"):
        write_report(tmp_path, kind="eval", data=None)


def test_rewrite_is_atomic_and_leaves_no_partial_files(tmp_path, monkeypatch):
    import vitdeploy.reports as R

    write_report(tmp_path, kind="eval", data=eval_data())
    before = (tmp_path / "report.md").read_text()

    def broken(*_a, **_k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(R, "render_html", broken)
    data = eval_data()
    data["models"][0]["top1"] = 0.1
    with pytest.raises(RuntimeError):
        write_report(tmp_path, kind="eval", data=data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json", "report.md"]
    assert (tmp_path / "report.md").read_text() == before  # rendering failed: the old report stays whole
    monkeypatch.undo()
    write_report(tmp_path, kind="eval", data=data)
    assert "10.00%" in (tmp_path / "report.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json", "report.md"]


# ----------------------------------------------------------------------------- real browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium) -- browser rendering not checked")
    paths = write_report(tmp_path / "rep", kind="parity", data=parity_data())
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               f"--screenshot={shot}", "--window-size=1200,3200", paths["html"].resolve().as_uri()]
        subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    px = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert px.std() > 10  # not a blank page
    # matplotlib's C0 blue (31, 119, 180) only exists in the plots: they decoded and were painted.
    blue = (abs(px[..., 0] - 31) < 25) & (abs(px[..., 1] - 119) < 25) & (abs(px[..., 2] - 180) < 25)
    assert blue.sum() > 2000, "no plot pixels in the rendered page"
    # The FAILED badge (#b22222) is painted too.
    red = (abs(px[..., 0] - 178) < 12) & (abs(px[..., 1] - 34) < 12) & (abs(px[..., 2] - 34) < 12)
    assert red.sum() > 50
