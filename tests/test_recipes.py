"""Recipes agree with the model registry and the preprocessing each source expects."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from vitdeploy.errors import VitdeployError
from vitdeploy.models import VARIANTS, levit, mobilevit
from vitdeploy.preprocessing import LEVIT, MOBILEVIT_BGR
from vitdeploy.recipes import load_recipe, load_recipes

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


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
        assert r.architecture == {"transformer_dims": list(cfg.transformer_dims),
                                  "transformer_depths": list(cfg.transformer_depths)}
        expected = MOBILEVIT_BGR
    pre = {k: v for k, v in asdict(expected).items() if k != "source"}
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.preprocessing.items()} == \
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in pre.items()}
    assert ("tflite", "fp32", "none") in r.cells() and ("coreml", "fp16", "w8") in r.cells()


def test_bad_recipe(tmp_path):
    (tmp_path / "x.yaml").write_text("variant: levit_128s\nfamily: mobilevit\n")
    with pytest.raises(VitdeployError, match="lacks"):
        load_recipe(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text((RECIPES / "levit_128s.yaml").read_text().replace("family: levit", "family: mobilevit"))
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
