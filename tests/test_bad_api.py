"""Misuse from Python gets a clear error before any work, never a silent different result or a
traceback from inside torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_cofusion.api import fuse, simulate_pair
from napari_cofusion.core.errors import CubeError, DeviceError, WeightsError
from napari_cofusion.learn.device import resolve_device
from napari_cofusion.learn.infer import fuse_tensor
from napari_cofusion.learn.models import CoFusion, CoFusionConfig, check_card
from napari_cofusion.learn.selfsup import scene_config
from napari_cofusion.learn.train import TrainConfig
from napari_cofusion.learn.weights import load_weights, read_card, save_weights
from napari_cofusion.samples import bundled_reference

SMALL = dict(width=16, depths=(1, 1, 1), top_k=4)


@pytest.fixture(scope="module")
def pair():
    return simulate_pair(bundled_reference(), protocol="cave-x4")


def test_fuse_refuses_unknown_keywords(pair):
    with pytest.raises(CubeError, match="glp-hs does not take radious"):
        fuse(pair.lr, pair.msi, "glp-hs", radious=3)


def test_fuse_refuses_weights_for_a_classical_method(pair, tmp_path):
    with pytest.raises(CubeError, match="bicubic does not take weights.*learned methods \\(cofusion\\)"):
        fuse(pair.lr, pair.msi, "bicubic", weights=str(tmp_path / "w.safetensors"))


def test_fuse_refuses_a_constant_pair(pair):
    zero = pair.lr.with_data(np.zeros_like(pair.lr.data))
    with pytest.raises(CubeError, match="constant"):
        fuse(zero, pair.msi.with_data(np.zeros_like(pair.msi.data)), "cofusion")


@pytest.mark.parametrize("phase", [-1, 4, 1.5])
def test_fuse_refuses_a_phase_outside_the_scale(pair, phase):
    with pytest.raises(CubeError, match="phase"):
        fuse(pair.lr, pair.msi, "glp-hs", phase=phase)


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


def test_the_smallest_tiles_give_a_finite_result_and_smaller_ones_are_refused(pair):
    """tile=8 used to return NaN (blending weights that vanished between tiles)."""
    model = CoFusion(CoFusionConfig(hs_bands=31, ms_bands=3, scale=4, **SMALL)).eval()
    lr, msi = torch.from_numpy(pair.lr.data), torch.from_numpy(pair.msi.data)
    with pytest.raises(CubeError, match="at least lcm\\(scale, 8\\) = 8"):
        fuse_tensor(model, lr, msi, tile=4)
    out = fuse_tensor(model, lr, msi, tile=8, overlap=64)
    assert torch.isfinite(out).all()
    with pytest.raises(CubeError, match="at least"):
        fuse(pair.lr, pair.msi, "glp-hs", tile=4)


@pytest.mark.parametrize("device", ["banana", "cuda:x", "tpu"])
def test_unknown_devices_are_refused(device):
    with pytest.raises(DeviceError, match="device|use cpu"):
        resolve_device(device)


def test_zero_steps_are_refused_not_defaulted():
    with pytest.raises(CubeError, match="steps = 0"):
        scene_config(0)
    with pytest.raises(CubeError, match="lr = -0.001"):
        TrainConfig(lr=-1e-3)
    assert scene_config().steps > 0


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


def test_simulate_refuses_scale_zero():
    with pytest.raises(CubeError, match="scale"):
        simulate_pair(bundled_reference(), scale=0)
