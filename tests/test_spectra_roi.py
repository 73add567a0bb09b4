"""ROI spectra, differences, markers and the ENVI spectral library export.

The core (Qt-free) statistics and grid mapping are checked against plain numpy; the spectral
library against ``spectral``'s reader; the widget end to end on a pair written to disk by
``simulate`` (ENVI LRHSI, TIFF HRMSI) and opened through ``viewer.open``.
"""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest

from napari_cofusion.core import spectra as core
from napari_cofusion.core.errors import CubeError
from napari_cofusion.core.io.sli import sli_name, write_sli

PLUGIN = "napari-cofusion"


# ------------------------------------------------------------------------------- core
def test_roi_stats_against_numpy():
    rng = np.random.default_rng(1)
    data = rng.random((7, 20, 24)).astype(np.float32)
    mask = np.zeros((20, 24), bool)
    mask[3:9, 5:17] = True
    mask[12, 2] = True
    mean, std, n = core.roi_stats(data, mask)
    sel = data.astype(np.float64)[:, mask]
    assert n == int(mask.sum()) == 73
    np.testing.assert_allclose(mean, sel.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std, sel.std(axis=1), rtol=1e-12)
    with pytest.raises(CubeError, match="no pixel"):
        core.roi_stats(data, np.zeros((20, 24), bool))
    with pytest.raises(CubeError, match="does not match"):
        core.roi_stats(data, np.ones((4, 4), bool))


def test_polygon_and_ellipse_masks():
    rect = [[9.5, 19.5], [9.5, 40.5], [30.5, 40.5], [30.5, 19.5]]
    m = core.polygon_mask(rect, (64, 64))
    expected = np.zeros((64, 64), bool)
    expected[10:31, 20:41] = True
    np.testing.assert_array_equal(m, expected)
    tri = core.polygon_mask([[0, 0], [0, 10], [10, 0]], (12, 12))
    assert tri[2, 2] and not tri[8, 8] and tri.sum() > 0
    ell = core.polygon_mask(core.ellipse_polygon([[-0.5, -0.5], [20.5, 20.5]]), (21, 21))
    assert ell[10, 10] and not ell[0, 0] and abs(ell.sum() - np.pi * 10.5 ** 2) < 20


def test_grid_mapping_placed_and_unplaced():
    """An LRHSI at scale 4, translate 2 (the protocol's phase) and one left at scale 1 map every HR
    pixel to the LR pixel ``row // 4``; an HR mask maps to the LR pixels holding its pixels."""
    placed = core.grid_affine((128, 128), (31, 32, 32), (1, 1), (0, 0), (4, 4), (2, 2))
    unplaced = core.grid_affine((128, 128), (31, 32, 32), (1, 1, 1), (0, 0, 0), (1, 1, 1), (0, 0, 0))
    for aff in (placed, unplaced):
        for r in range(128):
            assert core.map_pixel_affine(r, 127 - r, aff, (32, 32)) == core.map_pixel(r, 127 - r, (128, 128), (32, 32))
    # a translated HR layer over an LR one at scale 8 (world = 2·HR), as the napari layers say
    aff = core.grid_affine((64, 64), (8, 8), (2, 2), (1, 1), (16, 16), (7, 7))
    r = 37
    world = 2 * r + 1
    assert core.map_pixel_affine(r, r, aff, (8, 8))[0] == int(np.floor((world - 7) / 16 + 0.5))
    # phase 0: the last HR row is beyond the LR footprints; with notes it is skipped, not an error
    phase0 = core.grid_affine((8, 8), (2, 2), None, None, (4, 4), (0, 0))
    cubes = [("hr", np.zeros((3, 8, 8)), None), ("lr", np.zeros((3, 2, 2)), None, phase0)]
    with pytest.raises(CubeError, match="outside"):
        core.sample_spectra(cubes, 7, 7)
    notes: list[str] = []
    assert [s.layer for s in core.sample_spectra(cubes, 7, 7, notes=notes)] == ["hr"] and "lr" in notes[0]
    mask = np.zeros((128, 128), bool)
    mask[10:31, 20:41] = True
    lr = core.mask_on_grid(mask, (32, 32), placed)
    exp = np.zeros((32, 32), bool)
    exp[2:8, 5:11] = True
    np.testing.assert_array_equal(lr, exp)
    np.testing.assert_array_equal(core.mask_on_grid(mask, (128, 128)), mask)


def test_difference_fwhm_and_csv(tmp_path):
    a = core.Spectrum("fused", 3, 4, np.array([1.0, 2.0, 4.0]), np.array([400.0, 500.0, 600.0]))
    b = core.Spectrum("ref", 3, 4, np.array([0.5, 2.0, 3.0]), np.array([400.0, 500.0, 600.0]))
    d = core.difference(a, b, "reference")
    np.testing.assert_array_equal(d.values, [0.5, 0.0, 1.0])
    assert d.kind == "difference" and d.label == "fused − reference (3, 4)"
    with pytest.raises(CubeError, match="cannot be subtracted"):
        core.difference(a, core.Spectrum("x", 0, 0, np.zeros(2)), "x")
    # FWHM of a triangle of half-width 20 nm sampled every nm is 20 nm
    wl = np.arange(400.0, 601.0)
    tri = np.clip(1 - np.abs(wl - 500) / 20, 0, None)
    assert core.fwhm_from_curves(tri[None], wl)[0] == pytest.approx(20.0)
    assert list(core.band_fwhm({"fwhm": [10, 20, 30]}, 3)) == [10, 20, 30]
    assert core.band_fwhm({}, 3) is None
    nikon = core.band_fwhm({"recipe": {"srf": {"name": "nikon-d700", "band_names": ["R", "G", "B"]}}}, 3)
    assert nikon is not None and nikon.shape == (3,) and (nikon > 20).all()
    roi = core.roi_spectrum("cube", np.ones((3, 4, 4)), np.ones((4, 4), bool), "ROI 1", [400, 500, 600])
    p = core.write_csv([a, roi], tmp_path / "s.csv")
    rows = list(csv.DictReader(p.open()))
    assert [r["kind"] for r in rows] == ["pixel"] * 3 + ["roi"] * 3
    assert rows[3]["row"] == "" and rows[3]["std"] == "0.0" and rows[3]["n_pixels"] == "16"


# ------------------------------------------------------------------------------- spectral library
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sli_round_trip_through_spectral(tmp_path, dtype):
    import spectral.io.envi as envi

    rng = np.random.default_rng(3)
    spectra = rng.random((4, 31))
    wl = np.linspace(400.0, 700.0, 31) + 0.1
    names = ["fused (1, 2)", "LRHSI (LR px 0, 0)", "odd, {name}", "ROI 1 mean"]
    sli, hdr = write_sli(spectra, names, tmp_path / "lib", wl, dtype=dtype)
    assert sli.endswith("lib.sli") and hdr.endswith("lib.hdr")
    lib = envi.open(hdr)
    assert isinstance(lib, envi.SpectralLibrary)
    want = spectra.astype(dtype)
    assert lib.spectra.shape == (4, 31) and lib.spectra.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(lib.spectra, want)
    assert lib.names == ["fused (1; 2)", "LRHSI (LR px 0; 0)", "odd; (name)", "ROI 1 mean"]  # commas → ;
    np.testing.assert_array_equal(np.asarray(lib.bands.centers, float), wl)
    h = envi.read_envi_header(hdr)
    assert h["data type"] == ("5" if dtype == "float64" else "4") and h["byte order"] == "0"
    assert h["samples"] == "31" and h["lines"] == "4" and h["file type"] == "ENVI Spectral Library"
    with pytest.raises(CubeError, match="already exists"):
        write_sli(spectra, names, tmp_path / "lib.sli", wl)
    with pytest.raises(CubeError, match="names"):
        write_sli(spectra, names[:2], tmp_path / "other", wl)


# ------------------------------------------------------------------------------- widget, end to end
def _click(world):
    return SimpleNamespace(position=tuple(world), type="mouse_press", button=1, modifiers=[])


@pytest.mark.gui
def test_pair_from_disk_click_roi_export(make_napari_viewer, tmp_path):
    pytest.importorskip("napari")
    pytest.importorskip("napari_matplotlib")
    import spectral.io.envi as envi

    from napari_cofusion.api import fuse, read_cube
    from napari_cofusion.core.io import write_cube
    from napari_cofusion.degrade.simulate import simulate_pair
    from napari_cofusion.gui.layers import add_cube
    from napari_cofusion.gui.spectra import MARKERS_NAME, VIEWS, SpectraWidget
    from napari_cofusion.samples import cave_pair

    _lr, _msi, ref = cave_pair("cave-x4")
    pair = simulate_pair(ref, scale=4, seed=0)
    write_cube(pair.lr, tmp_path / "lr.hdr")
    write_cube(pair.msi, tmp_path / "msi.tif")
    write_cube(pair.reference, tmp_path / "reference.tif")
    viewer = make_napari_viewer()
    for name in ("lr.hdr", "msi.tif", "reference.tif"):
        assert viewer.open(str(tmp_path / name), plugin=PLUGIN)
    fused = fuse(read_cube(tmp_path / "lr.hdr"), read_cube(tmp_path / "msi.tif"), "glp-hs").cube
    add_cube(viewer, fused, name="fused")
    lr_l, msi_l, ref_l, fu_l = (viewer.layers[n] for n in ("lr", "msi", "reference", "fused"))
    assert lr_l.data.shape == (31, 32, 32) and fu_l.data.shape == (31, 128, 128)

    w = SpectraWidget(viewer)
    assert w.plot.minimumHeight() >= 250
    # click on the HR pixel (41, 57): its world position through the fused layer's transform
    world = fu_l.data_to_world((0, 41, 57))
    w._on_mouse(viewer, _click(world))
    got = {s.layer: s for s in w.current}
    assert (got["fused"].row, got["fused"].col) == (41, 57)
    # the LR pixel under that HR pixel, from the LR layer's own placement
    lr_data = np.asarray(lr_l.world_to_data(world))[-2:]
    lr_px = tuple(int(np.floor(v + 0.5)) for v in lr_data)
    if np.allclose(lr_l.scale[-2:], 1):  # not placed: the LR pixel holding it
        lr_px = (41 // 4, 57 // 4)
    assert lr_px == (10, 14), (lr_l.scale, lr_l.translate)
    assert (got["lr"].row, got["lr"].col) == lr_px and got["lr"].label == "lr (LR px 10, 14)"
    np.testing.assert_array_equal(got["lr"].values, lr_l.data[:, 10, 14])
    np.testing.assert_array_equal(got["fused"].values, fu_l.data[:, 41, 57])
    # the HRMSI: points at its band centres, no line
    ms_line = w.lines[[s.layer for s in w.drawn].index("msi")]
    assert ms_line.get_linestyle() == "None" and ms_line.get_marker() not in (None, "None", "")
    np.testing.assert_allclose(ms_line.get_xdata(), msi_l.metadata["wavelengths"])
    # one marker at the clicked pixel's centre
    markers = viewer.layers[MARKERS_NAME]
    np.testing.assert_allclose(markers.data, [np.asarray(world)[-2:]])

    # pin, second click: two markers (the pinned one distinct); with band widths, error bars
    msi_l.metadata["fwhm"] = [100.0, 90.0, 80.0]
    w.pin()
    w.show_spectra_at(fu_l.data_to_world((0, 100, 7)))
    assert len(markers.data) == 2 and list(markers.symbol) != [markers.symbol[0]] * 2
    assert [s.fwhm for s in w.current if s.layer == "msi"][0].tolist() == [100.0, 90.0, 80.0]

    # a rectangle ROI in a Shapes layer and a painted Labels ROI
    viewer.add_shapes([[[9.5, 19.5], [9.5, 40.5], [30.5, 40.5], [30.5, 19.5]]], shape_type="rectangle", name="roi")
    assert w.roi_combo.currentText() == "roi"
    rois = {s.layer: s for s in w.roi_spectra()}
    block = np.asarray(fu_l.data, np.float64)[:, 10:31, 20:41].reshape(31, -1)
    np.testing.assert_allclose(rois["fused"].values, block.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(rois["fused"].std, block.std(axis=1), rtol=1e-12)
    assert rois["fused"].n_pixels == 21 * 21 and rois["lr"].n_pixels == 36
    lr_block = np.asarray(lr_l.data, np.float64)[:, 2:8, 5:11].reshape(31, -1)
    np.testing.assert_allclose(rois["lr"].values, lr_block.mean(axis=1), rtol=1e-12)
    labels = np.zeros((128, 128), np.int32)
    labels[50:60, 70:90] = 3
    lab = viewer.add_labels(labels, name="painted")
    lab_rois = {s.layer: s for s in w.roi_spectra(lab)}
    np.testing.assert_allclose(lab_rois["reference"].values,
                               np.asarray(ref_l.data, np.float64)[:, 50:60, 70:90].reshape(31, -1).mean(axis=1))
    assert len(w.rois) == 2 * 4
    assert any(c.__class__.__name__ == "FillBetweenPolyCollection" or "Poly" in c.__class__.__name__
               for c in w.plot.axes.collections)

    # difference views
    w.view_combo.setCurrentText(VIEWS[2])  # fused − LR
    diffs = {s.label: s for s in w.drawn}
    d = diffs["fused − LR (100, 7)"]
    np.testing.assert_allclose(d.values, fu_l.data[:, 100, 7].astype(float) - lr_l.data[:, 25, 1])
    w.view_combo.setCurrentText(VIEWS[1])  # fused − reference
    d = {s.label: s for s in w.drawn}["fused − reference · roi #1 mean"]
    ref_block = np.asarray(ref_l.data, np.float64)[:, 10:31, 20:41].reshape(31, -1)
    np.testing.assert_allclose(d.values, block.mean(axis=1) - ref_block.mean(axis=1), rtol=1e-9, atol=1e-12)
    assert w.plot.axes.get_ylabel() == "difference"
    w.view_combo.setCurrentText(VIEWS[0])

    # legend outside (below) the axes, toggleable
    leg = w.plot.axes.get_legend()
    assert leg is not None and leg.get_bbox_to_anchor().y0 < w.plot.axes.get_window_extent().y0 + 1
    w.legend_check.setChecked(False)
    assert w.plot.axes.get_legend() is None
    w.legend_check.setChecked(True)

    # exports: CSV with the ROI mean and std; spectral libraries (31 bands, 3 bands)
    path = w.export_csv(tmp_path / "spectra.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fused_roi = [r for r in rows if r["layer"] == "fused" and r["kind"] == "roi" and r["label"].startswith("fused · roi")]
    np.testing.assert_array_equal([float(r["value"]) for r in fused_roi], rois["fused"].values)
    np.testing.assert_array_equal([float(r["std"]) for r in fused_roi], rois["fused"].std)
    assert {r["n_pixels"] for r in fused_roi} == {"441"}
    written = w.export_sli(tmp_path / "spectra.sli")
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == ["spectra.hdr", "spectra.sli", "spectra_3bands.hdr",
                                                             "spectra_3bands.sli"]
    lib = envi.open(str(tmp_path / "spectra.hdr"))
    hs = [s for s in w.all_spectra() if s.values.size == 31]
    assert lib.names == [sli_name(s.label) for s in hs]
    np.testing.assert_array_equal(lib.spectra, np.stack([s.values for s in hs]))
    np.testing.assert_array_equal(np.asarray(lib.bands.centers, float), fu_l.metadata["wavelengths"])
    k = lib.names.index(sli_name(rois["fused"].label))
    np.testing.assert_allclose(lib.spectra[k], block.mean(axis=1), rtol=1e-12)
    ms_lib = envi.open(str(tmp_path / "spectra_3bands.hdr"))
    assert ms_lib.spectra.shape == (2 + 2, 3)
    with pytest.raises(CubeError, match="already exists"):
        w.export_sli(tmp_path / "spectra.sli")

    # clear: curves, ROIs and markers go
    w.clear()
    assert w.all_spectra() == [] and len(viewer.layers[MARKERS_NAME].data) == 0


@pytest.mark.gui
def test_layer_without_wavelengths_uses_a_secondary_axis(make_napari_viewer, tmp_path):
    pytest.importorskip("napari_matplotlib")
    from napari_cofusion.gui.spectra import SpectraWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((31, 16, 16)).astype(np.float32), name="with nm", rgb=False,
                     metadata={"wavelengths": list(np.arange(400.0, 701.0, 10.0))})
    viewer.add_image(np.random.default_rng(1).random((20, 16, 16)).astype(np.float32), name="no nm", rgb=False)
    w = SpectraWidget(viewer)
    w.show_spectra_at((0, 5, 6))
    assert w.plot.axes.get_xlabel() == "wavelength (nm)"
    by = dict(zip([s.layer for s in w.drawn], w.lines))
    np.testing.assert_allclose(by["with nm"].get_xdata(), np.arange(400.0, 701.0, 10.0))
    assert by["no nm"].axes is not w.plot.axes and list(by["no nm"].get_xdata()) == list(range(20))
    assert any("no wavelengths" in n for n in w.notes)
    # a theme change redraws (the secondary axis too)
    viewer.theme = "light" if viewer.theme != "light" else "dark"
    assert len(w.lines) == 2 and w.lines[1].axes is not w.plot.axes and len(w.plot.figure.axes) == 2
    # the library: one per band set, the one without wavelengths has no wavelength list
    import spectral.io.envi as envi

    written = w.export_sli(tmp_path / "lib")
    assert len(written) == 4
    nm, bare = envi.open(str(tmp_path / "lib.hdr")), envi.open(str(tmp_path / "lib_20bands.hdr"))
    np.testing.assert_array_equal(nm.spectra[0], viewer.layers["with nm"].data[:, 5, 6])
    np.testing.assert_array_equal(bare.spectra[0], viewer.layers["no nm"].data[:, 5, 6])
    assert "wavelength" not in envi.read_envi_header(str(tmp_path / "lib_20bands.hdr"))


@pytest.mark.gui
def test_polygon_ellipse_and_line_shapes_in_3d(make_napari_viewer, qtbot):
    """A Shapes layer made in a 3-D (band, row, column) viewer: vertices carry the band index."""
    pytest.importorskip("napari_matplotlib")
    from napari_cofusion.gui.spectra import SpectraWidget

    viewer = make_napari_viewer()
    cube = np.random.default_rng(2).random((31, 40, 40)).astype(np.float32)
    viewer.add_image(cube, name="cube", rgb=False, metadata={"wavelengths": list(np.arange(400.0, 701.0, 10.0))})
    tri = [[3, 0.0, 0.0], [3, 0.0, 20.0], [3, 20.0, 0.0]]
    box = [[3, 9.5, 9.5], [3, 9.5, 30.5], [3, 30.5, 30.5], [3, 30.5, 9.5]]
    shapes = viewer.add_shapes([tri, box, [[3, 1.0, 1.0], [3, 5.0, 5.0]]], shape_type=["polygon", "ellipse", "line"],
                               name="drawn")
    w = SpectraWidget(viewer)
    # clicks while drawing shapes do not move the spectra; in pan/zoom mode they do
    shapes.mode = "add_rectangle"
    w._on_mouse(viewer, _click((3, 5, 5)))
    assert w.current == []
    shapes.mode = "pan_zoom"
    w._on_mouse(viewer, _click((3, 5, 5)))
    assert [(s.row, s.col) for s in w.current] == [(5, 5)]
    got = w.roi_spectra(shapes)
    assert [s.roi for s in got] == ["drawn #1", "drawn #2"] and "line has no inside" in w.info.text()
    m = core.polygon_mask(np.asarray(tri)[:, 1:], (40, 40))
    np.testing.assert_allclose(got[0].values, cube.astype(np.float64)[:, m].mean(axis=1), rtol=1e-12)
    assert got[1].n_pixels == int(core.polygon_mask(core.ellipse_polygon(np.asarray(box)[:, 1:]), (40, 40)).sum())
    # editing the layer recomputes its ROIs; deleting every shape removes them
    shapes.add_rectangles([[[3, 0.5, 0.5], [3, 0.5, 4.5], [3, 4.5, 4.5], [3, 4.5, 0.5]]])
    qtbot.waitUntil(lambda: len(w.rois) == 3, timeout=3000)
    np.testing.assert_allclose(w.rois[-1].values, cube.astype(np.float64)[:, 1:5, 1:5].reshape(31, -1).mean(axis=1))
    shapes.data = []
    qtbot.waitUntil(lambda: len(w.rois) == 0, timeout=3000)
