"""Open napari with the plugin's dock widgets and a sample or the user's files (``napari-cofusion gui``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from napari_cofusion.core.errors import CubeError

PLUGIN = "napari-cofusion"
#: (widget display name, tabify): Fusion, Pseudo-colour and Quality share the right dock as tabs;
#: Spectra is moved to the bottom area, under the canvas, where its plot is wide and stays visible
#: while clicking.
DOCKED: tuple[tuple[str, bool], ...] = (
    ("Fusion", False),
    ("Pseudo-colour", True),
    ("Quality (SAM map, PSNR, QNR)", True),
    ("Spectra", False),
)
SAMPLES = ("cave_pair", "houston_pair")


def open_viewer(files: Sequence[str] = (), sample: str | None = "cave_pair", fuse_method: str | None = None,
                show: bool = True):
    """A napari viewer with the widgets docked and ``files`` (through the plugin's readers) or the
    ``sample`` loaded; with ``fuse_method`` the Fusion widget runs that method on the pair at once
    (synchronously; several methods one after the other). Returns ``(viewer, {name: widget})``."""
    import napari

    if sample is not None and sample not in SAMPLES:
        raise CubeError(f"unknown sample {sample!r}; choose one of {', '.join(SAMPLES)}")
    for f in files:
        if not Path(f).exists():
            raise CubeError(f"{f}: file not found")
    viewer = napari.Viewer(title="napari-cofusion", show=show)
    widgets, docks = {}, {}
    for name, tabify in DOCKED:
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=tabify)
    from qtpy.QtCore import Qt

    qt_window = viewer.window._qt_window
    qt_window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, docks["Spectra"])
    if files:
        for f in files:
            viewer.open(str(f), plugin=PLUGIN)
    elif sample:
        viewer.open_sample(PLUGIN, sample)
    fusion = widgets["Fusion"]
    from qtpy.QtWidgets import QApplication

    methods = [fuse_method] if isinstance(fuse_method, str) else list(fuse_method or [])
    for method in methods:  # one after the other; the last result is shown
        fusion.method_combo.setCurrentText(method)
        worker = fusion.run_fusion()
        if worker is not None:
            import time

            while fusion.worker is not None:  # wait, keeping the event loop alive
                QApplication.processEvents()
                time.sleep(0.02)
    if methods and fusion.last_result_layer is not None:
        tour(viewer, widgets, fusion.last_result_layer)
    QApplication.processEvents()
    docks["Fusion"].raise_()  # the tab a user starts from
    viewer.window._qt_window.resizeDocks([docks["Spectra"]], [360], Qt.Orientation.Vertical)
    QApplication.processEvents()
    viewer.reset_view()  # fitted to the scene in the canvas's final size (the layers are placed by gui.scene)
    return viewer, widgets


def tour(viewer, widgets: dict, fused) -> None:
    """Show what the widgets do on a fused result, in the one world frame of the pair: the fused
    cube's pseudo-colour composite with the LRHSI overlaid half-transparent at its place (scale and
    phase), the SAM map and metrics against the reference (or QNR without one), spectra at two
    pixels (one pinned, both marked) and the mean ± std spectra of a rectangular ROI."""
    pc, quality, spectra = widgets["Pseudo-colour"], widgets["Quality (SAM map, PSNR, QNR)"], widgets["Spectra"]
    cubes = [layer for layer in viewer.layers if getattr(layer, "rgb", False) is False]
    pc.layer_combo.setCurrentText(fused.name)
    pc.show_composite()
    quality.fused_combo.setCurrentText(fused.name)
    quality.compute()
    _c, h, w = fused.data.shape
    spectra.show_spectra_at((0, h // 3, w // 3))
    spectra.pin()
    spectra.show_spectra_at((0, (2 * h) // 3, (2 * w) // 3))
    y0, x0 = h // 2, w // 8
    roi = viewer.add_shapes([[[y0, x0], [y0, x0 + w // 5], [y0 + h // 5, x0 + w // 5], [y0 + h // 5, x0]]],
                            shape_type="rectangle", name="ROI", edge_color="yellow", face_color="transparent",
                            edge_width=max(1, h // 128))
    spectra.roi_spectra(roi)
    fusion = widgets["Fusion"]
    lr = fusion.state.pair.lr if fusion.state.pair is not None else None
    for layer in cubes:  # the cubes (and the SAM map, whose mean the Quality dock shows) hidden ...
        layer.visible = False
    if lr is not None:  # ... but the LRHSI, half-transparent over the composite: the pair overlays
        lr.visible, lr.opacity = True, 0.45
        viewer.layers.move(viewer.layers.index(lr), len(viewer.layers) - 1)
    viewer.layers.selection.active = roi
    viewer.reset_view()


def run(files: Sequence[str] = (), sample: str | None = "cave_pair", fuse_method: str | None = None,
        screenshot: str | None = None) -> int:
    """Open the window; with ``screenshot`` save the whole window to that PNG and quit (a check that
    runs headless under Xvfb) instead of handing control to the user."""
    import napari

    out = Path(screenshot) if screenshot else None
    if out is not None and out.exists():
        raise CubeError(f"{out}: already exists; choose another file name")
    if out is not None and not out.parent.is_dir():
        raise CubeError(f"{out.parent}: folder not found")
    viewer, _widgets = open_viewer(files, sample, fuse_method, show=True)
    if out is not None:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QApplication, QDockWidget

        from superqt.utils._qthreading import WorkerBase

        qt_window = viewer.window._qt_window
        qt_window.resize(1500, 980)
        # the docks scroll, so they shrink with the window: give the Spectra plot its height back
        spectra = [d for d in qt_window.findChildren(QDockWidget) if d.windowTitle().startswith("Spectra")]
        qt_window.resizeDocks(spectra[:1], [560], Qt.Orientation.Vertical)
        WorkerBase.await_workers(msecs=60_000)  # background checks (pair agreement, metrics) done first
        QApplication.processEvents()
        viewer.reset_view()
        viewer.screenshot(str(out), canvas_only=False, flash=False)
        print(f"[gui] {len(viewer.layers)} layers: {', '.join(l.name for l in viewer.layers)}")
        print(f"[gui] wrote {out}")
        WorkerBase.await_workers(msecs=60_000)  # none may outlive the window
        viewer.close()
        return 0
    napari.run()
    return 0
