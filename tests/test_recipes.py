"""Recipes agree with the model registry and the preprocessing each source expects."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vitdeploy.errors import VitdeployError
from vitdeploy.models import LEVIT, MOBILEVIT_BGR, VARIANTS, levit, mobilevit
from vitdeploy.recipes import load_recipe, load_recipes

RECIPES = Path(__file__).resolve().parents[1] / "vitdeploy" / "recipe_files"


def test_one_recipe_per_variant():
    assert sorted(r.variant for r in load_recipes(RECIPES)) == sorted(VARIANTS)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_recipe_matches_registry(variant):
    r = load_recipe(RECIPES / f"{variant}.yaml")
    if r.family == "levit":
        cfg = levit.CONFIGS[variant]
        assert r.architecture == {"embed_dim": list(cfg.embed_dim), "key_dim": cfg.key_dim,
                                  "num_heads": list(cfg.num_heads), "depth": list(cfg.depth)}
        expected = LEVIT
    else:
        cfg = mobilevit.CONFIGS[variant]
        assert r.architecture == {"channels": list(cfg.channels), "transformer_dims": list(cfg.transformer_dims),
                                  "transformer_depths": list(cfg.transformer_depths),
                                  "num_features": cfg.num_features}
        expected = MOBILEVIT_BGR  # ml-cvnets / HF MobileViT: BGR in 0..1
    assert r.input_size == VARIANTS[variant].input_size
    assert r.preprocessing == expected.to_dict()
    assert ("tflite", "fp32", "fp32") in r.cells() and ("coreml", "fp16", "w8") in r.cells()


def test_recipe_names_a_variant_instead_of_repeating_its_config(tmp_path):
    """Recipes carry only what the variant does not fix; an older recipe that repeats the config loads
    when it agrees, and is refused in one line when it does not."""
    for f in RECIPES.glob("*.yaml"):
        assert not {"family", "input_size", "architecture", "preprocessing"} & set(yaml.safe_load(f.read_text()))
    base = (RECIPES / "mobilevit_xxs.yaml").read_text()
    (tmp_path / "old.yaml").write_text(base + "family: mobilevit\ninput_size: [3, 256, 256]\n"
                                       "architecture: {transformer_dims: [64, 80, 96]}\n"
                                       "preprocessing: {channel_order: BGR, scale: 0.00392156862745098}\n")
    assert load_recipe(tmp_path / "old.yaml").variant == "mobilevit_xxs"
    (tmp_path / "rgb.yaml").write_text(base + "preprocessing: {channel_order: RGB}\n")
    with pytest.raises(VitdeployError, match="preprocessing disagree with variant mobilevit_xxs"):
        load_recipe(tmp_path / "rgb.yaml")


def test_bad_recipe(tmp_path):
    (tmp_path / "x.yaml").write_text("variant: levit_128s\nfamily: mobilevit\n")
    with pytest.raises(VitdeployError, match="lacks"):
        load_recipe(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text((RECIPES / "levit_128s.yaml").read_text() + "family: mobilevit\n")
    with pytest.raises(VitdeployError, match="disagree"):
        load_recipe(tmp_path / "y.yaml")
    (tmp_path / "z.yaml").write_text("variant: [unclosed")
    with pytest.raises(VitdeployError, match="not valid YAML"):
        load_recipe(tmp_path / "z.yaml")


def test_recipe_tolerances_are_known_parity_metrics():
    from vitdeploy.parity.tolerances import KEYS, PRESETS

    for r in load_recipes(RECIPES):
        assert set(r.parity) <= set(PRESETS)
        for overrides in r.parity.values():
            assert set(overrides) <= set(KEYS), overrides


@pytest.mark.slow
def test_build_converts_checks_and_reports(tmp_path):
    """`vitdeploy build` on a two-recipe matrix and a folder with one LeViT checkpoint: a real cell, the
    MobileViT recipe unused (no checkpoint of it), the note skipped and said so (issue 30)."""
    import json

    from click.testing import CliRunner

    from vitdeploy.cli import main
    from vitdeploy.synthetic import write_seeded_checkpoint

    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (RECIPES / "levit_128s.yaml").read_text()
    assert "quantize: [fp32, fp16, dynamic, w8a8]" in text  # the shipped list this test narrows
    text = text.replace("quantize: [fp32, fp16, dynamic, w8a8]", "quantize: [fp32]")
    (recipes / "levit_128s.yaml").write_text(text)
    (recipes / "mobilevit_xxs.yaml").write_text((RECIPES / "mobilevit_xxs.yaml").read_text())
    ckpts = tmp_path / "ckpts"
    write_seeded_checkpoint("levit_128s", ckpts / "mine.safetensors")
    (ckpts / "notes.txt").write_text("not a checkpoint")  # skipped with the reason, not fatal
    images = tmp_path / "images"
    from PIL import Image

    from vitdeploy.sample_images import natural_images

    for cls, batch in enumerate((natural_images(3, 256, seed=5), natural_images(3, 256, seed=6))):
        (images / f"c{cls}").mkdir(parents=True)
        for i, img in enumerate(batch):
            Image.fromarray(img).save(images / f"c{cls}" / f"{i}.png")

    result = CliRunner().invoke(main, ["build", "--recipes", str(recipes), "--checkpoints", str(ckpts), "-o",
                                       str(tmp_path / "out"), "--target", "tflite", "--images", str(images),
                                       "--n-images", "4", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    cells = {(c["variant"], c["quantize"]): c for c in summary["cells"]}
    assert set(cells) == {("levit_128s", "fp32")}
    good = cells[("levit_128s", "fp32")]
    assert good["checkpoint"] == str(ckpts / "mine.safetensors") and Path(good["path"]).name == "mine_levit_128s_fp32.tflite"
    assert [Path(s["path"]).name for s in summary["skipped"]] == ["notes.txt"]
    assert good["status"] == "ok" and good["parity"] == "pass", good
    assert Path(good["path"]).is_file() and good["size_mb"] > 1 and good["host_median_ms"] > 0
    assert good["cosine_min"] > 0.99999 and good["top1_agreement"] == 1.0 and good["max_abs"] < 1e-3
    assert summary["failed"] == 0 and Path(summary["report"]["json"]).is_file()

    from vitdeploy.build import format_build_table

    table = format_build_table(summary)
    assert "mine.safetensors" in table and "max abs" in table and "1 cells, 0 failed, 1 skipped" in table


def test_list_images_spreads_a_limited_sample_over_all_classes(tmp_path):
    from vitdeploy.parity.run import list_images

    for cls in "abcd":
        (tmp_path / cls).mkdir()
        for i in range(10):
            (tmp_path / cls / f"{i}.png").write_bytes(b"")
    picked = list_images(tmp_path, 8)
    assert len(picked) == 8 and {p.parent.name for p in picked} == set("abcd")
    assert picked == sorted(picked)
    assert len(list_images(tmp_path)) == 40 and len(list_images(tmp_path, 100)) == 40


def test_build_table_marks_int16_activation_cells():
    from vitdeploy.build import format_build_table

    cell = {"checkpoint": "ckpts/xxs.pth", "variant": "mobilevit_xxs", "target": "tflite", "precision": "fp32", "status": "ok", "size_mb": 1.8,
            "convert_s": 96.0, "parity": "pass", "cosine_min": 0.9988, "max_abs": 0.3, "top1_agreement": 1.0,
            "host_median_ms": 400.0}
    table = format_build_table({"cells": [dict(cell, quantize="int8", activations="int16"),
                                          dict(cell, quantize="int8")], "failed": 0})
    rows = [line for line in table.splitlines() if line.startswith("xxs.pth")]
    assert "w8a8 (a16)" in rows[0] and "(a16)" not in rows[1]
