"""The window fits a 1280×800 screen with every dock open: the docks scroll, the Fusion dock's
groups collapse (needs Xvfb)."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")


def test_window_with_all_docks_fits_1280x800(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_cofusion.gui.launch import DOCKED, PLUGIN

    viewer = make_napari_viewer(show=True)
    widgets = {}
    for name, tabify in DOCKED:
        _dock, widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=tabify)
    viewer.open_sample(PLUGIN, "cave_pair")
    QApplication.processEvents()
    window = viewer.window._qt_window
    hint = window.minimumSizeHint()
    print(f"\n[window] minimum size with all four docks: {hint.width()}×{hint.height()} px")
    assert hint.width() <= 1280 and hint.height() <= 800
    for name, w in widgets.items():  # every dock's content scrolls
        assert isinstance(getattr(w, "scroll_area", None), QScrollArea), name
    window.resize(1280, 800)
    QApplication.processEvents()
    assert window.width() <= 1280 and window.height() <= 800
    fusion = widgets["Fusion"]
    qtbot.waitUntil(lambda: fusion.pair_panel.agreement.worker is None, timeout=30000)


def test_fusion_groups_collapse(make_napari_viewer, qtbot):
    from superqt import QCollapsible

    viewer = make_napari_viewer()
    _dock, w = viewer.window.add_plugin_dock_widget("napari-cofusion", "Fusion")
    boxes = w.findChildren(QCollapsible)
    titles = [b.text() if hasattr(b, "text") else "" for b in boxes]
    assert len(boxes) == 5, titles
    run_box = next(b for b in boxes if w.run_panel in b.findChildren(type(w.run_panel)))
    assert run_box.isExpanded()
    run_box.collapse(animate=False)
    assert not run_box.isExpanded()
    run_box.expand(animate=False)
    assert run_box.isExpanded()


def test_gui_window_on_own_files_fits_and_is_fitted(make_napari_viewer, tmp_path, qtbot, monkeypatch):
    """``napari-cofusion gui lr.hdr msi.tif`` (launch.open_viewer): the window with its four docks
    (Spectra under the canvas) fits 1280×800, and the view shows the whole placed pair."""
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_cofusion.core.cube import Cube
    from napari_cofusion.core.io import write_cube
    from napari_cofusion.degrade.simulate import simulate_pair
    from napari_cofusion.gui.launch import open_viewer

    rng = np.random.default_rng(0)
    ref = Cube(rng.random((31, 64, 64)).astype(np.float32) * 0.2, wavelengths=np.linspace(400, 700, 31), name="r")
    pair = simulate_pair(ref, scale=4)
    write_cube(pair.lr, tmp_path / "lr.hdr")
    write_cube(pair.msi, tmp_path / "msi.tif")
    # the test's viewer factory (it cleans up napari's plugin registry and the window afterwards)
    monkeypatch.setattr(napari, "Viewer", lambda **kw: make_napari_viewer(**kw))
    viewer, widgets = open_viewer([str(tmp_path / "lr.hdr"), str(tmp_path / "msi.tif")], sample=None)
    window = viewer.window._qt_window
    QApplication.processEvents()
    hint = window.minimumSizeHint()
    print(f"\n[window] napari-cofusion gui: minimum size {hint.width()}×{hint.height()} px")
    assert hint.width() <= 1280 and hint.height() <= 800
    lr = next(l for l in viewer.layers if l.data.shape == (31, 16, 16))
    assert tuple(lr.translate) == (0, 2, 2) and tuple(lr.scale) == (1, 4, 4)
    np.testing.assert_allclose(viewer.camera.center[-2:], (31.5, 31.5), atol=1.0)
    assert viewer.camera.zoom > 1.0  # fitted to 64×64 HR pixels in the canvas, not left at zoom 1
    fusion = widgets["Fusion"]
    qtbot.waitUntil(lambda: fusion.pair_panel.agreement.worker is None, timeout=30000)
