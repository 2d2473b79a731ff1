"""Issue 28, finding 3: file names, checkpoint keys, labels and a phone's messages are untrusted; printed for
a human they never carry a raw control character (ANSI escape, CR, bidi override) to the terminal."""

from __future__ import annotations

import json
import re
import unicodedata

import numpy as np
import pytest
from click.testing import CliRunner

from vitdeploy import cli_compare
from vitdeploy.cli import main
from vitdeploy.diagnostics import visible

HOSTILE = "\x1b[31mred\r\u202eevil\x07\x9b2J"


def _raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on (newlines and tabs excepted)."""
    return [c for c in text if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]


def test_visible_escapes_what_a_terminal_acts_on_and_nothing_else():
    assert visible(HOSTILE) == "\\x1b[31mred\\r\\u202eevil\\x07\\x9b2J"
    assert visible("lion\ttiger\nzebra") == "lion\ttiger\nzebra"
    assert visible("a\nb", newlines=False) == "a\\nb"
    assert visible("Größe 猫 — café") == "Größe 猫 — café"  # ordinary non-ASCII text stays
    assert visible("\ud800 \u2028 \u200b \ue000") == "\\ud800 \\u2028 \\u200b \\ue000"
    assert visible(42) == "42"


@pytest.fixture(scope="module")
def hostile_hf(tmp_path_factory):
    """A Hugging Face checkpoint folder whose labels and file name carry escapes (MobileViT-XXS, the smallest)."""
    from safetensors.torch import save_file

    from vitdeploy.synthetic import seeded_model

    root = tmp_path_factory.mktemp("esc")
    hf = root / f"hf{HOSTILE}"
    hf.mkdir()
    sd = seeded_model("mobilevit_xxs", seed=0).state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(hf / "model.safetensors"))
    (hf / "config.json").write_text(json.dumps({"id2label": {str(i): f"{HOSTILE}{i}" for i in range(1000)}}))
    x = root / f"x{HOSTILE}.npy"
    np.save(x, np.random.default_rng(0).standard_normal((1, 3, 256, 256)).astype(np.float32))
    return hf, x


def test_predict_and_inspect_print_labels_and_names_escaped(hostile_hf):
    hf, x = hostile_hf
    r = CliRunner().invoke(main, ["predict", str(hf), str(x), "--top", "2"])
    assert r.exit_code == 0, r.output
    assert _raw_controls(r.stdout + r.stderr) == [], r.stdout
    assert "\\x1b[31mred\\r\\u202eevil" in r.stdout  # the label is there, readable
    assert re.search(r"x\\x1b\[31mred", r.stdout)  # and the input's name
    r = CliRunner().invoke(main, ["inspect", str(hf)])
    assert r.exit_code == 0, r.output
    assert _raw_controls(r.stdout + r.stderr) == [] and "hf\\x1b[31mred" in r.stdout


def test_json_output_is_already_escaped(hostile_hf):
    hf, x = hostile_hf
    r = CliRunner().invoke(main, ["predict", str(hf), str(x), "--top", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert _raw_controls(r.stdout) == []
    top = json.loads(r.stdout)["predictions"][0]["top"][0]
    assert top["label"].startswith(HOSTILE)  # the exact label survives for programs


def test_error_lines_escape_keys_and_file_names(tmp_path):
    import torch

    path = tmp_path / f"k{HOSTILE}.pth"
    torch.save({f"{HOSTILE}.weight": torch.zeros(3)}, path)
    r = CliRunner().invoke(main, ["inspect", str(path)])
    assert r.exit_code == 2
    assert _raw_controls(r.stderr) == [] and len(r.stderr.splitlines()) == 1, repr(r.stderr)
    assert "\\x1b[31mred" in r.stderr


def test_a_phones_words_are_escaped_in_the_profile_table(capsys):
    cli_compare._print_profile({"model": "m.tflite", "serial": f"EMU{HOSTILE}", "device": "pixel7", "parity": [],
                        "configs": [{"name": "gpu", "status": "error", "error": f"GPU {HOSTILE}", "latencies_ms": []}]})
    out = capsys.readouterr().out
    assert _raw_controls(out) == [] and "GPU \\x1b[31mred" in out
