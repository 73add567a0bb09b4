"""Recipes, PSF specs, weights cards and model configurations are checked against the pair and
a schema before they are used: a recipe of another pair, a card that does not say what to build
or asks for an absurd model is refused with a message that names it, before anything is built."""

from __future__ import annotations

import json

import pytest

from napari_cofusion.api import fuse, simulate_pair
from napari_cofusion.cli import main
from napari_cofusion.core.errors import CubeError, WeightsError
from napari_cofusion.degrade.simulate import save_pair
from napari_cofusion.learn.models import CoFusion, CoFusionConfig, check_card
from napari_cofusion.learn.weights import load_weights, read_card, save_weights
from napari_cofusion.samples import bundled_reference

SMALL = dict(width=16, depths=(1, 1, 1), top_k=4)


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(bundled_reference(), protocol="cave-x4")


def test_fuse_refuses_a_recipe_of_another_scale(pair):
    other = simulate_pair(bundled_reference(), protocol="cave-x2").recipe.to_json()
    lr = pair.lr.with_data(pair.lr.data, meta={"recipe": other})
    with pytest.raises(CubeError, match="recipe is for ×2 but .* are ×4"):
        fuse(lr, pair.msi, "glp-hs")


@pytest.mark.parametrize("recipe", [[1, 2], {"scale": 4, "phase": -1}, {"scale": 4, "psf": {"kind": "box", "size": 0}}])
def test_fuse_refuses_a_malformed_recipe(pair, recipe):
    lr = pair.lr.with_data(pair.lr.data, meta={"recipe": recipe})
    with pytest.raises(CubeError, match="recipe"):
        fuse(lr, pair.msi, "glp-hs")


@pytest.mark.parametrize("change, says", [
    ({"depths": [1, 2, 33000]}, "depths"), ({"width": 6}, "multiple of 4"), ({"phase": 7}, "phase"),
    ({"widht": 64}, "unknown keys widht"), ({"hs_bands": 0}, "hs_bands"),
])
def test_configurations_outside_bounds_are_refused_before_building(change, says):
    cfg = {**CoFusionConfig(**SMALL).to_json(), **change}
    with pytest.raises(WeightsError, match=says):
        CoFusionConfig.from_json(cfg)


@pytest.mark.parametrize("card, says", [
    ([], "JSON object"),
    ({"architecture": "cofusion", "hs_bands": 31, "ms_bands": 3, "scale": 4}, "lacks config"),
    ({"architecture": "unet", "config": {}, "hs_bands": 31, "ms_bands": 3, "scale": 4}, "unknown architecture"),
    ({"architecture": "cofusion", "config": {"hs_bands": 31}, "hs_bands": 48, "ms_bands": 3, "scale": 4},
     "hs_bands = 48 but its config says 31"),
])
def test_cards_that_do_not_say_what_to_build_are_refused(card, says):
    with pytest.raises(WeightsError, match=says):
        check_card(card)


def test_loading_checks_the_card_before_building(tmp_path):
    cfg = CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)
    card = {"architecture": "cofusion", "config": cfg.to_json(), "hs_bands": 6, "ms_bands": 3, "scale": 4}
    st, js = save_weights(CoFusion(cfg), tmp_path / "w", card)
    for bad in ([], {k: v for k, v in card.items() if k != "config"},
                {**card, "config": {**card["config"], "depths": [1, 2, 33000]}}):
        open(js, "w").write(json.dumps(bad))
        with pytest.raises(WeightsError):
            read_card(st)
        with pytest.raises(WeightsError):
            load_weights(st)


@pytest.mark.parametrize("spec", ["box:0", "box:-3", "gaussian:0", "gaussian:7:-1", {"kind": "box", "sise": 3}])
def test_psf_specs_that_would_become_something_else_are_refused(spec):
    from napari_cofusion.degrade.simulate import PSF

    with pytest.raises(CubeError, match="PSF"):
        PSF.parse(spec).kernel(4)


def test_a_stale_recipe_beside_the_pair_is_refused_by_the_cli(tmp_path, capsys):
    """A ×2 recipe.json beside a ×4 pair used to be trusted (51.1 → 30.4 dB)."""
    ref = bundled_reference()
    save_pair(simulate_pair(ref, protocol="cave-x4"), tmp_path / "x4")
    save_pair(simulate_pair(ref, protocol="cave-x2"), tmp_path / "x2")
    (tmp_path / "x4" / "recipe.json").write_text((tmp_path / "x2" / "recipe.json").read_text())
    rc = main(["fuse", "--lr", str(tmp_path / "x4" / "lr.hdr"), "--msi", str(tmp_path / "x4" / "msi.hdr"),
               "--out", str(tmp_path / "f.hdr")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "recipe is for ×2" in err[0]
    assert not (tmp_path / "f.hdr").exists()
    for bad in ("[1, 2]", '{"scale": 4, "phase": -1}'):
        (tmp_path / "x4" / "recipe.json").write_text(bad)
        assert main(["fuse", "--lr", str(tmp_path / "x4" / "lr.hdr"), "--msi", str(tmp_path / "x4" / "msi.hdr"),
                     "--out", str(tmp_path / "f.hdr")]) == 2
        assert "recipe" in capsys.readouterr().err


def test_a_card_without_config_is_refused_by_the_cli(tmp_path, capsys):
    """It used to build a default model (47.3 instead of 51.8 dB)."""
    save_pair(simulate_pair(bundled_reference(), protocol="cave-x4"), tmp_path / "p")
    cfg = CoFusionConfig(hs_bands=31, ms_bands=3, scale=4, base="glp-hs", **SMALL)
    card = {"architecture": "cofusion", "config": cfg.to_json(), "hs_bands": 31, "ms_bands": 3, "scale": 4}
    st, js = save_weights(CoFusion(cfg), tmp_path / "w", card)
    card.pop("config")
    open(js, "w").write(json.dumps(card))
    rc = main(["fuse", "--lr", str(tmp_path / "p" / "lr.hdr"), "--msi", str(tmp_path / "p" / "msi.hdr"),
               "--method", "cofusion", "--weights", st, "--out", str(tmp_path / "f.hdr")])
    assert rc == 2 and "lacks config" in capsys.readouterr().err
