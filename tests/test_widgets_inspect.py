"""Inspection dock widgets (pseudo-colour, quality, spectra) in a real napari window (Xvfb).

The fused cubes come from the core (``methods.fuse``) once per module; every number the widgets
show is checked against the core function that should have produced it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("napari_matplotlib")

from napari_cofusion.core import display, metrics
from napari_cofusion.core import spectra as core_spectra
from napari_cofusion.core.errors import CubeError
from napari_cofusion.api import fuse
from napari_cofusion.samples import cave_pair, houston_pair
from napari_cofusion.degrade.simulate import PSF

pytestmark = pytest.mark.gui

PLUGIN = "napari-cofusion"
REF, MSI, LR = "CAVE peppers crop reference", "CAVE peppers crop HRMSI nikon-d700", "CAVE peppers crop LRHSI x4"
FUSED = "glp-hs fused"
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cave_fused():
    lr, msi, _ref = cave_pair("cave-x4")
    return fuse(lr, msi, "glp-hs").cube


@pytest.fixture(scope="module")
def houston_fused():
    hs, rgb = houston_pair()
    return fuse(hs, rgb, "glp-hs").cube


def _cave_viewer(make_napari_viewer, fused=None, **kwargs):
    viewer = make_napari_viewer(**kwargs)
    viewer.open_sample(PLUGIN, "cave_pair")
    # the 3-band MSI also opens as its true-colour composite (gui.scene): the cubes are the three
    assert [l.name for l in viewer.layers if not l.rgb] == [REF, MSI, LR]
    if fused is not None:
        from napari_cofusion.gui.layers import add_cube

        add_cube(viewer, fused, name=FUSED)
    return viewer


def _click(row, col, band=0, **over):
    ev = dict(position=(band, row, col), type="mouse_press", button=1, modifiers=[])
    ev.update(over)
    return SimpleNamespace(**ev)


# ------------------------------------------------------------------------------- core (no Qt)
def test_display_core():
    wl = np.arange(400, 701, 10.0)
    assert display.default_rgb_bands(31, wl) == (24, 15, 6)  # 640, 550, 460 nm
    # not covering 450-650: by wavelength rank, the longest to red (the CAVE HRMSI is R, G, B)
    assert display.default_rgb_bands(3, [632.0, 543.8, 467.6]) == (0, 1, 2)
    assert display.default_rgb_bands(3, [467.6, 543.8, 632.0]) == (2, 1, 0)
    assert display.default_rgb_bands(31, None) == (23, 15, 7)
    assert display.default_rgb_bands(1) == (0, 0, 0)
    b = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, 101)
    s = display.percentile_stretch(b, 10, 90)
    assert s.dtype == np.float32 and s.min() == 0 and s.max() == 1
    assert np.isclose(s[0, 50], 0.5, atol=1e-6)
    assert not display.percentile_stretch(np.full((4, 4), 0.3)).any()
    with pytest.raises(CubeError, match="G band 40"):
        display.composite(np.zeros((31, 4, 4)), (1, 40, 2))


def test_spectra_core(tmp_path):
    assert core_spectra.map_pixel(40, 50, (128, 128), (31, 32, 32)) == (10, 12)
    assert core_spectra.map_pixel(40, 50, (128, 128), (3, 128, 128)) == (40, 50)
    assert core_spectra.pixel_from_coords((0, 39.6, 50.4), (128, 128)) == (40, 50)
    assert core_spectra.pixel_from_coords((0, -0.6, 3), (128, 128)) is None
    cube = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    sp = core_spectra.sample_spectra([("hr", cube, [500, 600]), ("lr", cube[:, :2, :2], None)], 3, 2)
    assert [(s.layer, s.row, s.col) for s in sp] == [("hr", 3, 2), ("lr", 1, 1)]
    assert sp[1].wavelengths is None and list(sp[1].x()) == [0, 1]
    p = core_spectra.write_csv(sp, tmp_path / "s.csv")
    rows = list(csv.DictReader(p.open()))
    assert len(rows) == 4 and rows[0]["wavelength_nm"] == "500.0" and rows[3]["wavelength_nm"] == ""
    with pytest.raises(CubeError, match="already exists"):
        core_spectra.write_csv(sp, p)


# ------------------------------------------------------------------------------- manifest
def test_widgets_from_manifest(make_napari_viewer):
    from napari_cofusion.gui.pseudocolor import PseudoColorWidget
    from napari_cofusion.gui.quality import QualityWidget
    from napari_cofusion.gui.spectra import SpectraWidget

    viewer = make_napari_viewer()
    for display_name, cls in (("Pseudo-colour", PseudoColorWidget), ("Quality (SAM map, PSNR, QNR)", QualityWidget),
                              ("Spectra", SpectraWidget)):
        dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, display_name)
        assert isinstance(widget, cls), display_name
    # widgets made before any layer follow the layer list
    _, pc = viewer.window.add_plugin_dock_widget(PLUGIN, "Pseudo-colour")
    assert pc.layer_combo.count() == 0
    viewer.open_sample(PLUGIN, "cave_pair")
    assert [pc.layer_combo.itemText(i) for i in range(pc.layer_combo.count())] == [REF, MSI, LR]
    viewer.layers.remove(MSI)
    assert [pc.layer_combo.itemText(i) for i in range(pc.layer_combo.count())] == [REF, LR]


# ------------------------------------------------------------------------------- pseudo-colour
def test_pseudocolor_default_show_and_live_update(make_napari_viewer):
    from napari_cofusion.gui.pseudocolor import PseudoColorWidget

    viewer = _cave_viewer(make_napari_viewer)
    w = PseudoColorWidget(viewer)
    w.layer_combo.setCurrentText(REF)
    wl = np.asarray(viewer.layers[REF].metadata["wavelengths"])
    assert w.bands() == tuple(int(np.argmin(abs(wl - nm))) for nm in (640, 550, 460)) == (24, 15, 6)
    assert w.stretch() == (1.0, 99.0)
    assert w.band_labels[0].text() == "640 nm"

    comp = w.show_composite()
    assert comp.name == f"{REF} pseudo-colour" and comp.rgb
    assert comp.data.shape == (128, 128, 3) and comp.data.dtype == np.float32
    assert 0.0 <= comp.data.min() and comp.data.max() <= 1.0
    assert comp.metadata["pseudocolor_of"] == REF and comp.metadata["bands"] == [24, 15, 6]
    src = viewer.layers[REF].data
    np.testing.assert_array_equal(comp.data, display.composite(src, (24, 15, 6), 1, 99))

    # changing a band or the stretch updates the same layer in place
    n_layers = len(viewer.layers)
    w.band_spins[0].setValue(30)
    assert comp.metadata["bands"] == [30, 15, 6]
    np.testing.assert_array_equal(comp.data, display.composite(src, (30, 15, 6), 1, 99))
    w.high_spin.setValue(95.0)
    np.testing.assert_array_equal(comp.data, display.composite(src, (30, 15, 6), 1, 95))
    assert len(viewer.layers) == n_layers

    # by wavelength: the nearest band is chosen and its nm shown
    w.by_wavelength.setChecked(True)
    assert w.nm_spins[2].isVisibleTo(w) and not w.band_spins[2].isVisibleTo(w)
    w.nm_spins[2].setValue(503.0)
    assert w.bands()[2] == 10 and w.band_labels[2].text() == "band 10 · 500 nm"
    assert comp.metadata["bands"] == [30, 15, 10]

    # the source's data change → the composite follows
    viewer.layers[REF].data = src[::-1].copy()
    np.testing.assert_array_equal(comp.data, display.composite(src[::-1], (30, 15, 10), 1, 95))

    # a cube not covering 450-650 nm (the HRMSI, 632/544/468 nm): by wavelength rank
    w.layer_combo.setCurrentText(MSI)
    assert w.bands() == (0, 1, 2)
    assert w.show_composite().data.shape == (128, 128, 3)
    # back on the reference: the composite's own settings come back
    w.layer_combo.setCurrentText(REF)
    assert w.bands() == (30, 15, 10) and w.stretch() == (1.0, 95.0)


# ------------------------------------------------------------------------------- quality
def test_quality_full_reference(make_napari_viewer, cave_fused):
    from napari_cofusion.gui.quality import QualityWidget, sam_layer_name

    viewer = _cave_viewer(make_napari_viewer, cave_fused)
    w = QualityWidget(viewer)
    # defaults picked from names and shapes
    assert (w.fused_combo.currentText(), w.ref_combo.currentText()) == (FUSED, REF)
    assert (w.lr_combo.currentText(), w.ms_combo.currentText()) == (LR, MSI)
    assert "×4" in w.scale_label.text() and not w.scale_spin.isEnabled()

    res = w.compute()
    z, x = viewer.layers[FUSED].data, viewer.layers[REF].data
    assert res is not None and w.error.isHidden()
    sam_layer = viewer.layers[sam_layer_name(FUSED, REF)]
    np.testing.assert_array_equal(sam_layer.data, metrics.sam_map(z, x))
    assert sam_layer.colormap.name in ("magma", "inferno")
    assert sam_layer.contrast_limits[0] == 0
    assert np.isclose(sam_layer.contrast_limits[1], np.nanpercentile(sam_layer.data, 99))
    mean = metrics.sam(z, x)
    assert sam_layer.metadata["mean_sam_deg"] == pytest.approx(mean, rel=1e-12)
    assert f"{mean:.3f}°" in w.sam_label.text()
    expected = metrics.full_reference(z, x, 4)
    got = w.table_values()
    assert list(got) == ["psnr", "ssim", "sam", "ergas", "rmse", "cc"]
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k
    assert w.table.item(0, 0).text() == "PSNR (dB)" and w.table.item(0, 1).text() == f"{expected['psnr']:.4f}"
    # per-band PSNR against wavelength: 31 points
    xs, ys = w.psnr_line.get_data()
    assert len(xs) == len(ys) == 31
    np.testing.assert_allclose(xs, viewer.layers[FUSED].metadata["wavelengths"])
    np.testing.assert_allclose(ys, metrics.psnr_per_band(z, x))
    assert w.plot.axes.get_xlabel() == "wavelength (nm)"

    # again: the SAM layer is updated, not duplicated; without an LRHSI the spin box scale is used
    n = len(viewer.layers)
    w.lr_combo.setCurrentText("(none)")
    assert w.scale_spin.isEnabled()
    w.scale_spin.setValue(2)
    assert w.compute()["ergas"] == pytest.approx(metrics.ergas(z, x, 2))
    assert len(viewer.layers) == n


def test_quality_errors_are_shown_not_raised(make_napari_viewer, cave_fused):
    from napari_cofusion.gui.quality import QualityWidget

    viewer = _cave_viewer(make_napari_viewer, cave_fused)
    w = QualityWidget(viewer)
    w.ref_combo.setCurrentText(LR)  # 32×32 against a 128×128 fused cube
    assert w.compute() is None
    assert not w.error.isHidden()
    msg = w.error.text()
    assert "differ in shape" in msg and FUSED in msg and LR in msg and "(31, 32, 32)" in msg
    assert w.table.rowCount() == 0
    # nothing to compare with
    w.ref_combo.setCurrentText("(none)")
    w.ms_combo.setCurrentText("(none)")
    assert w.compute() is None and "choose a reference" in w.error.text()
    # an LRHSI not related by an integer scale
    viewer.add_image(np.zeros((31, 30, 30), np.float32), name="odd", rgb=False)
    w.lr_combo.setCurrentText("odd")
    w.ms_combo.setCurrentText(MSI)
    assert w.compute() is None and "integer scale" in w.error.text()
    # a good run afterwards clears the message
    w.ref_combo.setCurrentText(REF)
    w.lr_combo.setCurrentText(LR)
    assert w.compute() is not None and w.error.isHidden()


def test_quality_no_reference_houston(make_napari_viewer, houston_fused):
    from napari_cofusion.gui.layers import add_cube
    from napari_cofusion.gui.quality import QualityWidget

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "houston_pair")
    hs, rgb = "Houston 2018 HS (CASI)", "Houston 2018 RGB"
    add_cube(viewer, houston_fused, name="houston fused")
    w = QualityWidget(viewer)
    w.fused_combo.setCurrentText("houston fused")
    w.ref_combo.setCurrentText("(none)")
    w.lr_combo.setCurrentText(hs)
    w.ms_combo.setCurrentText(rgb)
    w.psf_combo.setCurrentText("weak")
    res = w.compute()
    assert res is not None and w.error.isHidden(), w.error.text()
    assert 0.0 < res["qnr"] <= 1.0
    expected = metrics.no_reference(viewer.layers["houston fused"].data, viewer.layers[hs].data,
                                    viewer.layers[rgb].data, PSF.parse("weak").kernel(4), 4)
    got = w.table_values()
    assert list(got) == ["d_lambda", "d_s", "qnr"]
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k
    assert w.psnr_line is None


# ------------------------------------------------------------------------------- spectra
def test_spectra_click_pin_export(make_napari_viewer, cave_fused, tmp_path):
    from napari_cofusion.gui.spectra import SpectraWidget

    viewer = _cave_viewer(make_napari_viewer, cave_fused)
    w = SpectraWidget(viewer)
    assert w._on_mouse in viewer.mouse_drag_callbacks
    # only a plain left press counts
    w._on_mouse(viewer, _click(40, 50, button=2))
    w._on_mouse(viewer, _click(40, 50, modifiers=["Shift"]))
    w._on_mouse(viewer, _click(40, 50, type="mouse_move"))
    assert w.current == [] and w.lines == []

    w._on_mouse(viewer, _click(40, 50))
    cubes = [REF, MSI, LR, FUSED]
    assert [s.layer for s in w.current] == cubes
    where = {s.layer: (s.row, s.col) for s in w.current}
    assert where == {REF: (40, 50), MSI: (40, 50), FUSED: (40, 50), LR: (10, 12)}
    for s in w.current:
        np.testing.assert_array_equal(s.values, viewer.layers[s.layer].data[:, s.row, s.col])
    assert len(w.lines) == 4
    labels = [t.get_text() for t in w.plot.axes.get_legend().get_texts()]
    # the LR curve is labelled with its own (LR) pixel
    assert labels == [f"{REF} (40, 50)", f"{MSI} (40, 50)", f"{LR} (LR px 10, 12)", f"{FUSED} (40, 50)"]
    np.testing.assert_allclose(w.lines[2].get_xdata(), viewer.layers[LR].metadata["wavelengths"])
    np.testing.assert_array_equal(w.lines[2].get_ydata(), viewer.layers[LR].data[:, 10, 12])
    assert w.plot.axes.get_xlabel() == "wavelength (nm)"

    # pin, then a second click: two sets, the pinned one dashed
    w.pin()
    w.show_spectra_at((0, 100, 7))
    sets = w.curve_sets()
    assert len(sets) == 2 and all(s.pinned for s in sets[0]) and not any(s.pinned for s in sets[1])
    assert {s.layer: (s.row, s.col) for s in sets[1]}[LR] == (25, 1)
    assert len(w.lines) == 8
    # hyperspectral curves: dashed (pinned) then solid; the 3-band HRMSI: points without a line
    assert [l.get_linestyle() for i, l in enumerate(w.lines) if i % 4 != 1] == ["--"] * 3 + ["-"] * 3
    assert [l.get_linestyle() for i, l in enumerate(w.lines) if i % 4 == 1] == ["None", "None"]
    # a click outside the image changes nothing
    assert w.show_spectra_at((0, 500, 7)) == [] and len(w.curve_sets()) == 2

    # CSV round trip (long format), never overwriting
    path = tmp_path / "spectra.csv"
    w.export_csv(path)
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["layer", "row", "col", "pinned", "wavelength_nm", "value", "std", "n_pixels", "kind",
                             "label"]
    assert len(rows) == 2 * (31 + 3 + 31 + 31)
    lr_rows = [r for r in rows if r["layer"] == LR and r["pinned"] == "True"]
    assert [(int(r["row"]), int(r["col"])) for r in lr_rows] == [(10, 12)] * 31
    np.testing.assert_array_equal([float(r["value"]) for r in lr_rows], viewer.layers[LR].data[:, 10, 12])
    assert [float(r["wavelength_nm"]) for r in lr_rows] == viewer.layers[LR].metadata["wavelengths"]
    before = path.read_bytes()
    with pytest.raises(CubeError, match="already exists"):
        w.export_csv(path)
    assert path.read_bytes() == before

    w.clear()
    assert w.curve_sets() == [] and w.lines == []
    with pytest.raises(CubeError, match="no spectra"):
        w.export_csv(tmp_path / "empty.csv")


def test_spectra_with_layer_scale(make_napari_viewer, cave_fused):
    """Layers shown at a physical pixel size (scale 2, LRHSI scale 8 to overlay): world → data."""
    from napari_cofusion.gui.spectra import SpectraWidget

    viewer = _cave_viewer(make_napari_viewer, cave_fused)
    for layer in viewer.layers:
        s = 8.0 if layer.name == LR else 2.0
        layer.scale = (1.0, s, s)[-layer.ndim:]  # the MSI's true-colour composite is 2-D
    w = SpectraWidget(viewer)
    spectra = w.show_spectra_at((0, 80.4, 99.8))
    assert {s.layer: (s.row, s.col) for s in spectra} == {REF: (40, 50), MSI: (40, 50), FUSED: (40, 50), LR: (10, 12)}


# ------------------------------------------------------------------------------- screenshot
def test_screenshot_with_docked_widgets(make_napari_viewer, cave_fused, tmp_path):
    """The real window with the fused result, its SAM map and a spectrum plot docked."""
    viewer = _cave_viewer(make_napari_viewer, cave_fused, show=True)
    viewer.window._qt_window.resize(1400, 860)
    _, pc = viewer.window.add_plugin_dock_widget(PLUGIN, "Pseudo-colour")
    _, quality = viewer.window.add_plugin_dock_widget(PLUGIN, "Quality (SAM map, PSNR, QNR)")
    _, spectra = viewer.window.add_plugin_dock_widget(PLUGIN, "Spectra", tabify=False)
    pc.layer_combo.setCurrentText(FUSED)
    pc.show_composite()
    quality.fused_combo.setCurrentText(FUSED)
    quality.ref_combo.setCurrentText(REF)
    assert quality.compute() is not None
    spectra._on_mouse(viewer, _click(40, 50))
    spectra.pin()
    spectra._on_mouse(viewer, _click(100, 20))
    for name in (REF, MSI, LR, FUSED):
        viewer.layers[name].visible = False
    viewer.grid.enabled = True
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 300 and shot.shape[1] > 600
    assert float(np.std(shot[..., :3])) > 20.0
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    assert float(np.std(canvas[..., :3])) > 20.0  # the image layers were drawn, not just the widgets
    out = tmp_path / "screenshot.png"
    from imageio.v3 import imwrite

    imwrite(out, shot)
    assert out.stat().st_size > 10_000
