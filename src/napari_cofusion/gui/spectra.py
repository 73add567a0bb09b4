"""Spectra dock widget: click in the viewer, see the spectrum of every cube layer there.

Thin: which pixel of which cube a click means, the sampling and the CSV are
:mod:`napari_cofusion.core.spectra`. The click is turned into a pixel of the high-resolution grid
(the largest cube) with that layer's ``world_to_data``, so layers with a scale or translation
work; smaller cubes (the LRHSI) are sampled at the low-resolution pixel holding it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import matplotlib
import numpy as np
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_cofusion.core import spectra as core
from napari_cofusion.core.errors import CubeError
from napari_cofusion.gui.base import ErrorLabel, PlotPanel, same_layer
from napari_cofusion.gui.layers import cube_layers, layer_wavelengths, show_info

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["SpectraWidget"]


#: line styles of the pinned pixel sets, in pinning order (the current set is solid)
PINNED_STYLES = ("--", ":", "-.")


class SpectraWidget(QWidget):
    """Spectra of every cube layer at the clicked location; "Pin" keeps a set of curves
    (drawn dashed) to compare several points, "Clear" removes them all, "Export CSV…" writes
    every curve in long format."""

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.current: list[core.Spectrum] = []
        self.pinned: list[list[core.Spectrum]] = []
        self.lines: list = []  # matplotlib lines, in the order of all_spectra()
        self.location: tuple[int, int] | None = None

        self.follow_clicks = QCheckBox("update on click in the viewer")
        self.follow_clicks.setChecked(True)
        self.info = QLabel("click on the image to plot the spectra there")
        self.info.setWordWrap(True)
        self.pin_button = QPushButton("Pin")
        self.pin_button.setToolTip("Keep the current curves (dashed) and compare them with the next click")
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Remove every curve, pinned ones included")
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Write all curves as CSV: layer, row, col, pinned, wavelength_nm, value")
        self.error = ErrorLabel()
        self.plot = PlotPanel(napari_viewer, redraw=self._draw, parent=self)

        buttons = QHBoxLayout()
        for b in (self.pin_button, self.clear_button, self.export_button):
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addWidget(self.follow_clicks)
        lay.addWidget(self.info)
        lay.addLayout(buttons)
        lay.addWidget(self.error)
        lay.addWidget(self.plot, 1)

        self.pin_button.clicked.connect(self.pin)
        self.clear_button.clicked.connect(self.clear)
        self.export_button.clicked.connect(self._export_dialog)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        self._update_buttons()
        self._draw()

    # ---------------------------------------------------------------- mouse
    def _on_mouse(self, _source, event) -> None:
        """napari mouse callback: a plain left click (no modifier) plots the spectra there."""
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
        self.show_spectra_at(event.position)

    def _remove_callback(self) -> None:
        cbs = self.viewer.mouse_drag_callbacks
        if self._on_mouse in cbs:
            cbs.remove(self._on_mouse)

    # ---------------------------------------------------------------- sampling
    def _hr_layer(self, layers: list):
        """The layer defining the HR grid: the largest cube (the selected one among equals)."""
        grid = core.hr_shape([l.data.shape for l in layers])
        hr = [l for l in layers if tuple(l.data.shape[-2:]) == grid]
        active = self.viewer.layers.selection.active
        return next((l for l in hr if same_layer(l, active)), hr[0]), grid

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
            cubes = [(l.name, l.data, layer_wavelengths(l)) for l in layers]
            spectra = core.sample_spectra(cubes, row, col, hr=grid)
        except CubeError as exc:
            self.error.show_message(str(exc))
            return []
        self.location = (row, col)
        self.current = spectra
        self.info.setText(f"pixel ({row}, {col}) of the {grid[0]}×{grid[1]} grid"
                          + (f"; {len(self.pinned)} pinned set(s)" if self.pinned else ""))
        self._update_buttons()
        self._draw()
        return spectra

    # ---------------------------------------------------------------- curves
    def all_spectra(self) -> list[core.Spectrum]:
        """Pinned sets first (oldest first), then the current curves."""
        return [s for group in self.pinned for s in group] + list(self.current)

    def curve_sets(self) -> list[list[core.Spectrum]]:
        return [list(g) for g in self.pinned] + ([list(self.current)] if self.current else [])

    def pin(self) -> None:
        """Keep the current curves; the next click adds a new set beside them."""
        if not self.current:
            return
        for s in self.current:
            s.pinned = True
        self.pinned.append(self.current)
        self.current = []
        self._update_buttons()
        self._draw()

    def clear(self) -> None:
        self.current, self.pinned, self.location = [], [], None
        self.error.clear_message()
        self.info.setText("click on the image to plot the spectra there")
        self._update_buttons()
        self._draw()

    def _update_buttons(self) -> None:
        self.pin_button.setEnabled(bool(self.current))
        has = bool(self.current or self.pinned)
        self.clear_button.setEnabled(has)
        self.export_button.setEnabled(has)

    # ---------------------------------------------------------------- export
    def export_csv(self, path) -> str:
        """Write all curves (long format, see :data:`napari_cofusion.core.spectra.CSV_COLUMNS`);
        raises CubeError for an existing file or when there is nothing to write."""
        return str(core.write_csv(self.all_spectra(), path))

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export spectra", "spectra.csv", "CSV (*.csv)")
        if not path:
            return
        try:
            written = self.export_csv(path)
        except CubeError as exc:
            self.error.show_message(str(exc))
            return
        self.error.clear_message()
        show_info(f"spectra written to {written}")

    # ---------------------------------------------------------------- plot
    def _draw(self) -> None:
        self.plot.reset_axes()
        ax = self.plot.axes
        self.lines = []
        curves = self.all_spectra()
        with self.plot.styled():
            if not curves:
                ax.text(0.5, 0.5, "click on the image", ha="center", va="center", transform=ax.transAxes,
                        fontsize="small")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                by_nm = all(s.wavelengths is not None for s in curves)
                # one colour per layer (the same at every pixel), one line style per pixel set:
                # solid for the current click, dashed / dotted / dash-dot for the pinned sets
                cycle = [c["color"] for c in matplotlib.rcParams["axes.prop_cycle"]] or ["C0"]
                colours: dict[str, str] = {}
                for i, group in enumerate(self.curve_sets()):
                    style = "-" if (group and not group[0].pinned) else PINNED_STYLES[i % len(PINNED_STYLES)]
                    for s in group:
                        colour = colours.setdefault(s.layer, cycle[len(colours) % len(cycle)])
                        x = s.wavelengths if by_nm else np.arange(s.values.size, dtype=float)
                        (line,) = ax.plot(x, s.values, linestyle=style, color=colour, marker=".",
                                          markersize=3, linewidth=1.2, label=s.label)
                        self.lines.append(line)
                ax.set_xlabel("wavelength (nm)" if by_nm else "band")
                ax.set_ylabel("value")
                ax.grid(True, alpha=0.3)
                ax.legend(fontsize="xx-small", loc="best", framealpha=0.6)
        self.plot.draw_now()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._remove_callback()
        super().closeEvent(event)
