"""Spectra dock widget: click in the viewer, see the spectrum of every cube layer there; draw an
ROI (Shapes or Labels) and see mean ± std per layer; compare as differences; export CSV or an
ENVI spectral library.

Thin: which pixel of which cube a click means, the ROI statistics, the CSV and the library are
:mod:`napari_cofusion.core.spectra`; the drawing is :mod:`napari_cofusion.gui.spectra_plot`, the
ROI masks :mod:`napari_cofusion.gui.spectra_roi`. A click is turned into a pixel of the
high-resolution grid (the largest cube) with that layer's ``world_to_data``; every other cube
is sampled at the pixel holding that HR pixel's centre, through its own scale and translate
(:func:`~napari_cofusion.core.spectra.grid_affine`), so an LRHSI placed over its HRMSI gives the
LR pixel under the click. Its curve is labelled with its own LR pixel, ``"<name> (LR px r, c)"``.

ROI curves follow their layer: drawing, moving or deleting a shape, or painting, recomputes that
layer's ROI spectra (debounced by 150 ms) until "Clear".

A marker (napari Points layer "spectra locations") shows every location: a filled red disc for
the current one, grey squares for the pinned ones; it follows Pin and Clear.

Difference view ("show"): *fused − reference* subtracts the reference's curve from every other
HR hyperspectral curve of the same set (the reference is the layer whose name contains
"reference", "ref", "gt" or "ground truth"); *fused − LR* subtracts the LR pixel's spectrum (the LR image
upsampled by nearest neighbour at that pixel) from every HR hyperspectral curve with the same
band count except the reference's. ROI means are differenced the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy,
                            QVBoxLayout, QWidget)

from napari_cofusion.core import spectra as core
from napari_cofusion.core.errors import CubeError
from napari_cofusion.gui.base import ErrorLabel, PlotPanel, same_layer, scrollable
from napari_cofusion.gui.layers import cube_layers, layer_wavelengths, show_info
from napari_cofusion.gui.spectra_plot import PINNED_STYLES, draw_curves
from napari_cofusion.gui.spectra_roi import layer_masks, roi_layers

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["SpectraWidget", "PINNED_STYLES", "MARKERS_NAME", "VIEWS"]

#: name of the Points layer marking the clicked locations
MARKERS_NAME = "spectra locations"
#: entries of the "show" combo box
VIEWS = ("spectra", "fused − reference", "fused − LR")


class SpectraWidget(QWidget):
    """Spectra of every cube layer at the clicked location; "Pin" keeps a set of curves (drawn
    dashed) to compare several points, "ROI spectra" adds mean ± std over the shapes or labels
    of a layer, "Clear" removes them all; export as CSV (long format) or ENVI spectral library."""

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.current: list[core.Spectrum] = []
        self.pinned: list[list[core.Spectrum]] = []
        self.rois: list[core.Spectrum] = []
        self.lines: list = []  # matplotlib data lines, in the order of the drawn curves
        self.drawn: list[core.Spectrum] = []  # the curves drawn (differences in a difference view)
        self.location: tuple[int, int] | None = None
        self.current_world: tuple[float, float] | None = None
        self.pinned_world: list[tuple[float, float]] = []
        self.notes: list[str] = []
        self._marker_size = 5.0  # world units: 5 HR pixels
        self._roi_sources: list = []  # Shapes / Labels layers whose edits recompute their ROI spectra
        self._roi_pending: list = []
        self._roi_timer = QTimer(self)
        self._roi_timer.setSingleShot(True)
        self._roi_timer.setInterval(150)
        self._roi_timer.timeout.connect(self._recompute_rois)

        self.follow_clicks = QCheckBox("update on click in the viewer")
        self.follow_clicks.setChecked(True)
        self.legend_check = QCheckBox("legend")
        self.legend_check.setChecked(True)
        self.legend_check.setToolTip("Show the legend below the plot")
        self.view_combo = QComboBox()
        self.view_combo.addItems(list(VIEWS))
        self.view_combo.setToolTip("Plot the spectra, or fused − reference, or fused − LR (the LR pixel's spectrum)")
        self.info = QLabel("click on the image to plot the spectra there")
        self.info.setWordWrap(True)
        self.pin_button = QPushButton("Pin")
        self.pin_button.setToolTip("Keep the current curves (dashed) and compare them with the next click")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove every curve, pinned ones and ROIs included")
        self.roi_combo = QComboBox()
        self.roi_combo.setToolTip("A Shapes layer (rectangles, polygons, ellipses) or a Labels layer")
        self.roi_button = QPushButton("ROI spectra")
        self.roi_button.setToolTip("Mean ± std of every cube layer over each shape or label of the chosen layer")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("All curves as CSV: " + ", ".join(core.CSV_COLUMNS))
        self.export_sli_button = QPushButton("Export library…")
        self.export_sli_button.setToolTip("All curves as an ENVI spectral library (.sli + .hdr), one per band set")
        self.error = ErrorLabel()
        self.plot = PlotPanel(napari_viewer, redraw=self._draw, parent=self, min_height=300)
        self.plot.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        top = QHBoxLayout()
        top.addWidget(self.follow_clicks, 1)
        top.addWidget(self.legend_check)
        view = QHBoxLayout()
        view.addWidget(QLabel("show"))
        view.addWidget(self.view_combo, 1)
        buttons = QHBoxLayout()
        for b in (self.pin_button, self.clear_button):
            buttons.addWidget(b)
        roi = QHBoxLayout()
        roi.addWidget(QLabel("ROI layer"))
        roi.addWidget(self.roi_combo, 1)
        roi.addWidget(self.roi_button)
        export = QHBoxLayout()
        export.addWidget(self.export_button)
        export.addWidget(self.export_sli_button)
        lay = QVBoxLayout(self)
        for row in (top, view):
            lay.addLayout(row)
        lay.addWidget(self.info)
        for row in (buttons, roi, export):
            lay.addLayout(row)
        lay.addWidget(self.error)
        lay.addWidget(self.plot, 1)

        self.pin_button.clicked.connect(self.pin)
        self.clear_button.clicked.connect(self.clear)
        self.roi_button.clicked.connect(lambda: self.roi_spectra())
        self.export_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.export_sli_button.clicked.connect(lambda: self._export_dialog("sli"))
        self.legend_check.toggled.connect(lambda _on: self._draw())
        self.view_combo.currentTextChanged.connect(lambda _t: self._draw())
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        ev = self.viewer.layers.events
        for e in (ev.inserted, ev.removed):
            e.connect(self._refill_rois)
        self._refill_rois()
        self._update_buttons()
        self._draw()
        scrollable(self)  # the dock scrolls instead of growing the window (gui.base)

    # ---------------------------------------------------------------- mouse
    def _on_mouse(self, _source, event) -> None:
        """napari mouse callback: a plain left click (no modifier) plots the spectra there, unless
        an ROI is being drawn (see :meth:`_drawing`)."""
        try:
            if not self.follow_clicks.isChecked():
                return
        except RuntimeError:  # the Qt widget is gone: stop listening
            self._remove_callback()
            return
        if getattr(event, "type", None) != "mouse_press" or getattr(event, "button", None) != 1:
            return
        if list(getattr(event, "modifiers", []) or []):
            return
        if self._drawing():
            return
        self.show_spectra_at(event.position)

    def _drawing(self) -> bool:
        """Whether the active layer is a Shapes, Labels or Points layer in a drawing or editing
        mode (drawing an ROI must not move the spectra); pan/zoom mode clicks count."""
        from napari.layers import Labels, Points, Shapes

        active = self.viewer.layers.selection.active
        if not isinstance(active, (Shapes, Labels, Points)):
            return False
        return str(getattr(active, "mode", "pan_zoom")) not in ("pan_zoom", "transform")

    def _remove_callback(self) -> None:
        cbs = self.viewer.mouse_drag_callbacks
        if self._on_mouse in cbs:
            cbs.remove(self._on_mouse)
        ev = self.viewer.layers.events
        for e in (ev.inserted, ev.removed):
            try:
                e.disconnect(self._refill_rois)
            except (TypeError, RuntimeError, ValueError):
                pass

    # ---------------------------------------------------------------- sampling
    def _hr_layer(self, layers: list):
        """The layer defining the HR grid: the largest cube (the selected one among equals)."""
        grid = core.hr_shape([l.data.shape for l in layers])
        hr = [l for l in layers if tuple(l.data.shape[-2:]) == grid]
        active = self.viewer.layers.selection.active
        return next((l for l in hr if same_layer(l, active)), hr[0]), grid

    @staticmethod
    def _affine(hr_layer, grid, layer):
        return core.grid_affine(grid, layer.data.shape, hr_layer.scale, hr_layer.translate, layer.scale, layer.translate)

    def _cubes(self, layers, hr_layer, grid) -> list[tuple]:
        return [(l.name, l.data, layer_wavelengths(l), self._affine(hr_layer, grid, l)) for l in layers]

    def _with_widths(self, spectra: list[core.Spectrum], layers) -> list[core.Spectrum]:
        by_name = {l.name: l for l in layers}
        for s in spectra:
            layer = by_name.get(s.layer)
            if layer is not None and core.is_multispectral(s):
                s.fwhm = core.band_fwhm(dict(layer.metadata), s.values.size)
        return spectra

    def show_spectra_at(self, world_position: Sequence[float]) -> list[core.Spectrum]:
        """Plot the spectrum of every cube layer at a world position (row and column last);
        returns the new current curves (empty outside the image or without cubes)."""
        self.error.clear_message()
        layers = cube_layers(self.viewer)
        if not layers:
            self.info.setText("no cube layer to take spectra from")
            return []
        try:
            hr_layer, grid = self._hr_layer(layers)
            pix = core.pixel_from_coords(np.asarray(hr_layer.world_to_data(np.asarray(world_position, float))), grid)
            if pix is None:
                self.info.setText("outside the image: click on a cube")
                return []
            row, col = pix
            skipped: list[str] = []
            spectra = self._with_widths(core.sample_spectra(self._cubes(layers, hr_layer, grid), row, col, hr=grid,
                                                            notes=skipped), layers)
        except CubeError as exc:
            self.error.show_message(str(exc))
            return []
        self.location = (row, col)
        self._marker_size = 5.0 * float(np.mean(np.abs(np.asarray(hr_layer.scale, float)[-2:])))
        centre = np.asarray(hr_layer.data_to_world(np.array([0.0] * (hr_layer.data.ndim - 2) + [row, col])), float)
        self.current_world = (float(centre[-2]), float(centre[-1]))
        self.current = spectra
        self.info.setText(f"pixel ({row}, {col}) of the {grid[0]}×{grid[1]} grid"
                          + (f"; {len(self.pinned)} pinned set(s)" if self.pinned else "")
                          + "".join(f"; {n}" for n in skipped))
        self._changed()
        return spectra

    # ---------------------------------------------------------------- ROIs
    def _refill_rois(self, _event=None) -> None:
        try:
            old = self.roi_combo.currentText()
            names = [l.name for l in roi_layers(self.viewer) if l.name != MARKERS_NAME]
        except RuntimeError:  # the Qt widget is gone
            self._remove_callback()
            return
        self.roi_combo.blockSignals(True)
        self.roi_combo.clear()
        self.roi_combo.addItems(names)
        if old in names:
            self.roi_combo.setCurrentText(old)
        elif names:
            self.roi_combo.setCurrentIndex(len(names) - 1)  # the newest
        self.roi_combo.blockSignals(False)
        self._update_buttons()

    def roi_spectra(self, layer=None, notify: bool = True) -> list[core.Spectrum]:
        """Mean ± std of every cube layer over each shape (or label) of ``layer`` (default: the
        one chosen in the combo box); replaces the ROI curves of that layer and returns the new ones."""
        self.error.clear_message()
        if layer is None:
            name = self.roi_combo.currentText()
            layer = self.viewer.layers[name] if name in self.viewer.layers else None
        layers = cube_layers(self.viewer)
        if layer is None or not layers:
            self.error.show_message("draw a rectangle or polygon in a Shapes layer (or paint a Labels layer) first")
            return []
        try:
            hr_layer, grid = self._hr_layer(layers)
            masks, notes = layer_masks(layer, hr_layer, grid)
            new = []
            for roi_name, mask in masks:
                for l in layers:
                    try:
                        new.append(core.roi_spectrum(l.name, l.data, mask, roi_name, layer_wavelengths(l),
                                                     self._affine(hr_layer, grid, l),
                                                     lr=tuple(l.data.shape[-2:]) != grid))
                    except CubeError as exc:  # e.g. the ROI lies beyond a shifted LRHSI's pixels
                        notes.append(f"{roi_name}: {exc}")
            self._with_widths(new, layers)
        except CubeError as exc:
            self.error.show_message(str(exc))
            return []
        prefix = f"{layer.name} "
        kept = [s for s in self.rois if not (s.roi.startswith(prefix) and s.roi[len(prefix):].startswith(("#", "label ")))]
        self._follow_roi_layer(layer)
        if not masks:
            if len(kept) != len(self.rois):  # its shapes were all deleted: its curves go too
                self.rois = kept
                self._changed()
            self.error.show_message("; ".join(notes) or f"{layer.name}: no shape or label to take an ROI from",
                                    notify=notify)
            return []
        self.rois = kept + new
        self.info.setText(f"{len(masks)} ROI(s) from {layer.name}" + (f" ({'; '.join(notes)})" if notes else ""))
        self._changed()
        return new

    def _follow_roi_layer(self, layer) -> None:
        """Recompute this layer's ROI spectra (debounced) when its shapes or labels change."""
        if any(same_layer(layer, l) for l in self._roi_sources):
            return
        self._roi_sources.append(layer)
        layer.events.data.connect(self._roi_edited)
        if hasattr(layer.events, "paint"):
            layer.events.paint.connect(self._roi_edited)

    def _roi_edited(self, event=None) -> None:
        source = getattr(event, "source", None)
        if source is not None and not any(same_layer(source, l) for l in self._roi_pending):
            self._roi_pending.append(source)
        self._roi_timer.start()

    def _recompute_rois(self) -> None:
        pending, self._roi_pending = self._roi_pending, []
        live = list(self.viewer.layers)
        for layer in pending:
            if any(same_layer(layer, l) for l in live) and any(same_layer(layer, l) for l in self._roi_sources):
                self.roi_spectra(layer, notify=False)  # the red label, not a toast per edit

    def _unfollow_rois(self) -> None:
        for layer in self._roi_sources:
            for name in ("data", "paint"):
                ev = getattr(layer.events, name, None)
                if ev is not None:
                    try:
                        ev.disconnect(self._roi_edited)
                    except (TypeError, RuntimeError, ValueError):
                        pass
        self._roi_sources, self._roi_pending = [], []

    # ---------------------------------------------------------------- curves
    def all_spectra(self) -> list[core.Spectrum]:
        """Pinned sets first (oldest first), then the current curves, then the ROI means."""
        return [s for group in self.pinned for s in group] + list(self.current) + list(self.rois)

    def curve_sets(self) -> list[list[core.Spectrum]]:
        """The pixel sets: pinned ones (oldest first), then the current one."""
        return [list(g) for g in self.pinned] + ([list(self.current)] if self.current else [])

    def pin(self) -> None:
        """Keep the current curves; the next click adds a new set beside them."""
        if not self.current:
            return
        for s in self.current:
            s.pinned = True
        self.pinned.append(self.current)
        if self.current_world is not None:
            self.pinned_world.append(self.current_world)
        self.current, self.current_world = [], None
        self._changed()

    def clear(self) -> None:
        self.current, self.pinned, self.rois, self.location = [], [], [], None
        self.current_world, self.pinned_world = None, []
        self._unfollow_rois()
        self.error.clear_message()
        self.info.setText("click on the image to plot the spectra there")
        self._changed()

    def _changed(self) -> None:
        self._update_buttons()
        self._sync_markers()
        self._draw()

    def _update_buttons(self) -> None:
        self.pin_button.setEnabled(bool(self.current))
        has = bool(self.current or self.pinned or self.rois)
        self.clear_button.setEnabled(has)
        self.export_button.setEnabled(has)
        self.export_sli_button.setEnabled(has)
        self.roi_button.setEnabled(self.roi_combo.count() > 0)

    # ---------------------------------------------------------------- markers
    def marker_positions(self) -> list[tuple[tuple[float, float], bool]]:
        """(world (row, col), pinned) of every location marked: pinned ones first."""
        return [(p, True) for p in self.pinned_world] + ([(self.current_world, False)] if self.current_world else [])

    @property
    def markers_layer(self):
        return self.viewer.layers[MARKERS_NAME] if MARKERS_NAME in self.viewer.layers else None

    def _sync_markers(self) -> None:
        marks = self.marker_positions()
        layer = self.markers_layer
        if not marks:
            if layer is not None:
                layer.data = np.zeros((0, 2))
            return
        data = np.array([p for p, _ in marks], float)
        face = ["#9a9a9a" if pinned else "#ff3030" for _, pinned in marks]
        symbol = ["square" if pinned else "disc" for _, pinned in marks]
        if layer is None:
            selection = list(self.viewer.layers.selection)
            active = self.viewer.layers.selection.active
            layer = self.viewer.add_points(data, name=MARKERS_NAME, size=self._marker_size, face_color=face,
                                           border_color="white",
                                           border_width=0.15, symbol=symbol, opacity=0.9)
            self.viewer.layers.selection.clear()
            self.viewer.layers.selection.update(selection)
            self.viewer.layers.selection.active = active
        else:
            layer.data = data
            layer.face_color = face
            layer.symbol = symbol

    # ---------------------------------------------------------------- differences
    def difference_spectra(self, view: str | None = None) -> tuple[list[core.Spectrum], list[str]]:
        """The curves of a difference view (``view``: an entry of :data:`VIEWS`, default the
        combo's) for every pixel set and ROI (:func:`napari_cofusion.core.spectra.difference_curves`)."""
        view = view or self.view_combo.currentText()
        by_roi: dict[str, list[core.Spectrum]] = {}
        for s in self.rois:
            by_roi.setdefault(s.roi, []).append(s)
        return core.difference_curves(self.curve_sets() + list(by_roi.values()),
                                      "reference" if view == VIEWS[1] else "LR")

    # ---------------------------------------------------------------- export
    def export_csv(self, path) -> str:
        """Write all curves (long format, see :data:`napari_cofusion.core.spectra.CSV_COLUMNS`);
        raises CubeError for an existing file or when there is nothing to write."""
        return str(core.write_csv(self.all_spectra(), path))

    def export_sli(self, path) -> list[str]:
        """Write all curves as ENVI spectral libraries (see :func:`napari_cofusion.core.spectra.write_library`)."""
        return core.write_library(self.all_spectra(), path)

    def _export_dialog(self, kind: str) -> None:
        if kind == "csv":
            path, _ = QFileDialog.getSaveFileName(self, "Export spectra", "spectra.csv", "CSV (*.csv)")
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export spectral library", "spectra.sli",
                                                  "ENVI spectral library (*.sli)")
        if not path:
            return
        try:
            written = self.export_csv(path) if kind == "csv" else ", ".join(self.export_sli(path))
        except CubeError as exc:
            self.error.show_message(str(exc))
            return
        self.error.clear_message()
        show_info(f"spectra written to {written}")

    # ---------------------------------------------------------------- plot
    def _entries(self) -> list[tuple[core.Spectrum, int]]:
        view = self.view_combo.currentText()
        if view != VIEWS[0]:
            diffs, notes = self.difference_spectra(view)
            self.notes += notes
            return [(d, -1 if d.roi else 0) for d in diffs]
        entries = [(s, i) for i, g in enumerate(self.curve_sets()) for s in g]
        return entries + [(s, -1) for s in self.rois]

    def _draw(self) -> None:
        self.plot.reset_axes()
        for extra in list(self.plot.figure.axes):
            if extra not in self.plot.all_axes:
                extra.remove()
        ax = self.plot.axes
        self.lines, self.notes = [], []
        with self.plot.styled():
            entries = self._entries()
            self.drawn = [s for s, _ in entries]
            if not entries:
                msg = "click on the image" if not self.all_spectra() else "nothing to difference: " + "; ".join(self.notes)
                ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize="small", wrap=True)
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                self.lines, _twin, notes = draw_curves(ax, entries, legend=self.legend_check.isChecked())
                self.notes += notes
        self.plot.setToolTip("\n".join(self.notes))
        self.plot.draw_now()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._remove_callback()
        self._unfollow_rois()
        super().closeEvent(event)
