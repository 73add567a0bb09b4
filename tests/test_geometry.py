"""One world frame for the cube layers (core.geometry, gui.scene) and the display defaults: the
arithmetic alone, then an ENVI LRHSI and a TIFF HRMSI written as ``napari-cofusion simulate``
writes them, opened through ``viewer.open`` and checked numerically (needs Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cofusion.core import display, geometry
from napari_cofusion.core.cube import Cube


# ---------------------------------------------------------------------- pure arithmetic
def test_lr_transform_centres_sample_on_observed_hr_pixel():
    for s in (2, 3, 4, 8):
        for p in range(s):
            (sy, sx), (ty, tx) = geometry.lr_transform(s, p)
            assert (sy, sx) == (s, s) and (ty, tx) == (p, p)
            for i in (0, 1, 7):  # napari: data pixel i is centred at world scale·i + translate
                assert sy * i + ty == s * i + p
    assert geometry.lr_transform(4) == ((4.0, 4.0), (2.0, 2.0))  # default phase s // 2
    assert geometry.lr_transform(1, 0) == ((1.0, 1.0), (0.0, 0.0))
    with pytest.raises(ValueError):
        geometry.lr_transform(0)


def test_sample_phase_order_recipe_estimate_default():
    class Estimate:
        scale, phase = 4, 1

    assert geometry.sample_phase(4, {"scale": 4, "phase": 3}, Estimate()) == 3  # the recipe first
    assert geometry.sample_phase(4, {"scale": 2, "phase": 1}, Estimate()) == 1  # recipe of another scale
    assert geometry.sample_phase(4, None, Estimate()) == 1
    assert geometry.sample_phase(4, {"scale": 4, "phase": None}, None) == 2
    assert geometry.sample_phase(4, {"phase": 9}, {"scale": 4, "phase": 0}) == 0  # out of range: skipped
    assert geometry.sample_phase(3) == 1


def test_scene_transforms_put_the_smaller_grids_in_the_hr_frame():
    shapes = [(31, 16, 16), (3, 64, 64), (31, 64, 64), (5, 50, 40)]
    out = geometry.scene_transforms(shapes, [0, None, None, None])
    assert out[0] == ((4.0, 4.0), (0.0, 0.0))
    assert out[1] == out[2] == ((1.0, 1.0), (0.0, 0.0))
    assert out[3] is None  # not an integer fraction of the HR grid: left alone
    assert geometry.integer_scale((64, 64), (16, 32)) is None
    assert geometry.scene_transforms([]) == []


def test_display_helpers():
    assert display.true_colour_bands(3, [600.0, 530.0, 460.0]) == (0, 1, 2)
    assert display.true_colour_bands(4, [480.0, 550.0, 660.0, 830.0]) == (2, 1, 0)
    assert display.true_colour_bands(3, None) is None
    assert display.true_colour_bands(31, np.linspace(400, 700, 31)) is None
    assert display.true_colour_bands(3, [800.0, 900.0, 1000.0]) is None
    assert display.band_label(2, [400.0, 410.0, 420.5]) == "λ 420.5 nm"
    assert display.band_label(5, [400.0]) == "band 5"
    data = np.linspace(0, 0.1, 3 * 40 * 40, dtype=np.float32).reshape(3, 40, 40)
    lo, hi = display.percentile_limits(data)
    assert 0.0 < lo < 0.005 and 0.095 < hi < 0.1
    assert display.percentile_limits(np.zeros((2, 4, 4))) == (0.0, 1e-6)


# ---------------------------------------------------------------------- in napari
def _reference(h: int = 64, w: int = 64) -> Cube:
    rng = np.random.default_rng(3)
    wl = np.linspace(400.0, 700.0, 31)
    yy, xx = np.mgrid[0:h, 0:w] / float(h)
    base = 0.3 + 0.2 * np.sin(6 * xx) * np.cos(5 * yy)
    data = base[None] * (0.5 + 0.5 * np.sin(wl / 40.0))[:, None, None] + 0.05 * rng.random((31, h, w))
    return Cube(data.astype(np.float32), wavelengths=wl, name="scene")


@pytest.fixture
def simulated_files(tmp_path):
    """``lr.hdr`` (ENVI) and ``msi.tif`` written as ``napari-cofusion simulate`` does (×4, weak PSF,
    Nikon D700 SRF, the protocol's phase 2), and the pair itself."""
    from napari_cofusion.core import ops
    from napari_cofusion.core.io import write_cube
    from napari_cofusion.degrade.simulate import simulate_pair

    ref = _reference()
    pair = simulate_pair(ref, scale=4, psf="weak", srf="nikon-d700")
    lr_path, msi_path = tmp_path / "lr.hdr", tmp_path / "msi.tif"
    write_cube(pair.lr, lr_path)
    write_cube(pair.msi, msi_path)
    import torch

    blurred = ops.blur(torch.from_numpy(pair.reference.data), pair.recipe.kernel()).numpy()
    return lr_path, msi_path, pair, blurred


def test_files_open_in_one_world_frame(make_napari_viewer, simulated_files):
    lr_path, msi_path, pair, blurred = simulated_files
    viewer = make_napari_viewer()
    (lr,) = viewer.open(str(lr_path), plugin="napari-cofusion")
    (msi,) = viewer.open(str(msi_path), plugin="napari-cofusion")
    assert lr.data.shape == (31, 16, 16) and msi.data.shape == (3, 64, 64)
    assert tuple(lr.scale) == (1, 4, 4) and tuple(lr.translate) == (0, 2, 2)
    assert tuple(msi.scale) == (1, 1, 1) and tuple(msi.translate) == (0, 0, 0)
    s, p = 4, pair.recipe.decimation_phase
    for i, j in ((0, 0), (3, 5), (15, 15), (7, 2)):
        world = np.asarray(lr.data_to_world((0, i, j)))  # the LR pixel's centre
        hr = np.asarray(msi.world_to_data(world))
        np.testing.assert_allclose(hr[1:], (s * i + p, s * j + p))
        # it is the HR pixel the LR sample observed: the blurred reference there equals the sample
        y, x = (int(round(v)) for v in hr[1:])
        np.testing.assert_allclose(np.asarray(lr.data)[:, i, j], blurred[:, y, x], rtol=1e-4, atol=1e-5)
        if 0 < y < 63:  # and not a neighbour (the test would catch a half- or one-pixel offset)
            assert np.abs(np.asarray(lr.data)[:, i, j] - blurred[:, y + 1, x]).max() > 1e-3
        # every HR pixel within ±s/2 of that centre maps back to LR pixel (i, j)
        for dy in (-1, 0, 1):
            back = np.asarray(lr.world_to_data(np.asarray(msi.data_to_world((0, y + dy, x)))))
            assert tuple(np.round(back[1:]).astype(int)) == (i, j)
    # the view is fitted to the scene (64×64 HR pixels), not to the first layer's 16×16 grid
    extent = viewer.layers.extent.world
    assert extent[1][-1] - extent[0][-1] == pytest.approx(64, abs=1.01)
    np.testing.assert_allclose(viewer.camera.center[-2:], (31.5, 31.5), atol=1.0)


def test_display_defaults_on_opened_files(make_napari_viewer, simulated_files):
    from napari_cofusion.gui.pseudocolor import composite_name

    lr_path, msi_path, pair, _ = simulated_files
    viewer = make_napari_viewer()
    (lr,) = viewer.open(str(lr_path), plugin="napari-cofusion")
    (msi,) = viewer.open(str(msi_path), plugin="napari-cofusion")
    # percentile contrast, not the dtype's [0, 1]
    lo, hi = display.percentile_limits(lr.data)
    np.testing.assert_allclose(lr.contrast_limits, (lo, hi), rtol=1e-5)
    assert hi < 0.95
    # the 3-band MSI (Nikon D700 band centres known) as a true-colour composite over its hidden cube
    wl = msi.metadata["wavelengths"]
    assert wl is not None and wl[0] > wl[1] > wl[2]
    from napari_cofusion.gui import scene

    assert scene.composite_name(msi.name) == composite_name(msi.name)  # the dock takes the layer over
    comp = viewer.layers[composite_name(msi.name)]
    assert comp.rgb and comp.metadata["pseudocolor_of"] == msi.name and comp.metadata["bands"] == [0, 1, 2]
    assert not msi.visible and comp.visible
    assert tuple(comp.scale) == (1, 1)
    # the band slider is labelled with the wavelength of the current band of the 31-band cube
    viewer.layers.selection.active = lr
    viewer.dims.set_current_step(0, 3)
    assert viewer.dims.axis_labels[0] == display.band_label(3, lr.metadata["wavelengths"]) == "λ 430 nm"
    viewer.dims.set_current_step(0, 30)
    assert viewer.dims.axis_labels[0] == "λ 700 nm"


def test_fusion_dock_places_pair_with_recipe_phase(make_napari_viewer, qtbot):
    """A pair simulated at phase 0 and added through the plugin (add_cube) and selected in the
    Fusion dock: the LRHSI's translate is the recipe's phase, and a fused result opens at HR with
    percentile contrast."""
    from napari_cofusion.degrade.simulate import simulate_pair
    from napari_cofusion.gui.fusion import FusionWidget
    from napari_cofusion.gui.layers import add_cube

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-cofusion", "Fusion")
    assert isinstance(widget, FusionWidget)
    pair = simulate_pair(_reference(32, 32), scale=4, psf="weak", srf="nikon-d700", phase=0)
    lr, msi = add_cube(viewer, pair.lr), add_cube(viewer, pair.msi)
    widget.set_pair(lr, msi)
    assert tuple(lr.scale) == (1, 4, 4) and tuple(lr.translate) == (0, 0, 0)
    dark = pair.reference.with_data(pair.reference.data * 0.05, name="fused (dark)", meta={"method": "test"})
    fused = add_cube(viewer, dark)
    assert tuple(fused.scale) == (1, 1, 1)
    assert fused.contrast_limits[1] < 0.05
    qtbot.waitUntil(lambda: widget.pair_panel.agreement.worker is None, timeout=30000)


def test_reader_preference_only_where_none_yet(make_napari_viewer):
    from napari.settings import get_settings

    from napari_cofusion.gui import scene

    make_napari_viewer()  # resets napari's settings for the test
    settings = get_settings()
    settings.plugins.extension2reader = {"*.tif": "some-other-plugin"}
    set_now = scene.prefer_plugin_reader()
    e2r = settings.plugins.extension2reader
    assert e2r["*.tif"] == "some-other-plugin"  # the user's choice is kept
    assert "*.tif" not in set_now
    assert all(e2r[p] == "napari-cofusion" for p in ("*.hdr", "*.tiff", "*.mat", "*.npy", "*.npz"))
    assert scene.prefer_plugin_reader() == []  # nothing left to set


def test_estimated_phase_places_a_pair_without_recipe(make_napari_viewer, qtbot):
    """Without a recipe the LRHSI sits at the protocol's phase s // 2 until the Fusion dock's PSF /
    SRF estimate for that pair gives another."""
    from napari_cofusion.degrade.estimate import estimate_degradation
    from napari_cofusion.gui.fusion.pairing import layer_key
    from napari_cofusion.gui.layers import add_cube

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-cofusion", "Fusion")
    from napari_cofusion.degrade.simulate import simulate_pair

    pair = simulate_pair(_reference(32, 32), scale=4, phase=1)
    lr = add_cube(viewer, pair.lr.with_data(pair.lr.data, meta={}))
    msi = add_cube(viewer, pair.msi.with_data(pair.msi.data, meta={}))
    widget.set_pair(lr, msi)
    assert tuple(lr.translate) == (0, 2, 2)
    state = widget.state
    deg = estimate_degradation(pair.lr, pair.msi)  # finds the phase the pair was made with
    assert deg.phase == 1
    with state.events.paused():  # as the Fusion dock's Estimate button stores it
        state.degradation_key = (layer_key(lr), layer_key(msi), None, None)
        state.degradation = deg
    assert tuple(lr.translate) == (0, 1, 1) and tuple(lr.scale) == (1, 4, 4)
    qtbot.waitUntil(lambda: widget.pair_panel.agreement.worker is None, timeout=30000)
