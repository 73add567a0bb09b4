"""Pseudo-colour dock widget: three bands of a cube as an RGB composite layer.

Thin: the band choice and the percentile stretch are :mod:`napari_cofusion.core.display`. The
composite (``"<cube> pseudo-colour"``, rgb=True, (H, W, 3) float in [0, 1]) stays linked to its
cube through its metadata (``pseudocolor_of``, ``bands``, ``stretch``) and is recomputed in
place when the bands or the stretch change here, or when the cube's data change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGridLayout, QHBoxLayout, QLabel, QPushButton,
    QSpinBox, QVBoxLayout, QWidget,
)

from napari_cofusion.core import display
from napari_cofusion.core.errors import CubeError
from napari_cofusion.gui.base import ErrorLabel, LayerListWatcher, cube_layer_names, layer_by_name, refill_combo, same_layer, scrollable
from napari_cofusion.gui.layers import cube_layers, layer_wavelengths

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["PseudoColorWidget", "composite_name"]

CHANNELS = ("R", "G", "B")


def composite_name(cube_name: str) -> str:
    return f"{cube_name} pseudo-colour"


class PseudoColorWidget(QWidget):
    """Pick a cube, three bands (by index or wavelength) and a percentile stretch; "Show" adds
    the RGB composite, which then follows every change."""

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._sources: list = []  # cube layers whose data events we follow
        self._loading = False

        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The (bands, rows, columns) cube to show in colour")
        self.by_wavelength = QCheckBox("choose bands by wavelength (nm)")
        self.band_spins: list[QSpinBox] = []
        self.nm_spins: list[QDoubleSpinBox] = []
        self.band_labels: list[QLabel] = []
        grid = QGridLayout()
        for i, ch in enumerate(CHANNELS):
            sb = QSpinBox()
            sb.setToolTip(f"{ch} band index (0-based)")
            nm = QDoubleSpinBox()
            nm.setDecimals(1)
            nm.setSuffix(" nm")
            nm.setToolTip(f"{ch} wavelength: the nearest band is used")
            nm.setVisible(False)
            lab = QLabel("")
            grid.addWidget(QLabel(ch), i, 0)
            grid.addWidget(sb, i, 1)
            grid.addWidget(nm, i, 2)
            grid.addWidget(lab, i, 3)
            sb.valueChanged.connect(self._on_band_spin)
            nm.valueChanged.connect(lambda _v, i=i: self._on_nm_spin(i))
            self.band_spins.append(sb)
            self.nm_spins.append(nm)
            self.band_labels.append(lab)

        self.low_spin = QDoubleSpinBox()
        self.high_spin = QDoubleSpinBox()
        for sp, lo, hi, val in ((self.low_spin, 0.0, 49.5, 1.0), (self.high_spin, 50.0, 100.0, 99.0)):
            sp.setRange(lo, hi)
            sp.setDecimals(1)
            sp.setSingleStep(0.5)
            sp.setSuffix(" %")
            sp.setValue(val)
            sp.valueChanged.connect(self._controls_changed)
        self.low_spin.setToolTip("Each channel's low percentile maps to 0")
        self.high_spin.setToolTip("Each channel's high percentile maps to 1")

        self.default_button = QPushButton("Default bands")
        self.default_button.setToolTip("True colour (640 / 550 / 460 nm) when the cube covers 450–650 nm, "
                                       "else bands at 3/4, 1/2 and 1/4 of its range")
        self.show_button = QPushButton("Show")
        self.show_button.setToolTip("Add the RGB composite layer (it then follows the settings)")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.error = ErrorLabel()

        form = QFormLayout()
        form.addRow("cube", self.layer_combo)
        stretch = QHBoxLayout()
        stretch.addWidget(QLabel("low"))
        stretch.addWidget(self.low_spin)
        stretch.addWidget(QLabel("high"))
        stretch.addWidget(self.high_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.default_button)
        buttons.addWidget(self.show_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.by_wavelength)
        lay.addLayout(grid)
        lay.addWidget(QLabel("percentile stretch (per channel)"))
        lay.addLayout(stretch)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addWidget(self.error)
        lay.addStretch(1)

        self.layer_combo.currentTextChanged.connect(self._on_layer_changed)
        self.by_wavelength.toggled.connect(self._on_mode)
        self.default_button.clicked.connect(self.reset_bands)
        self.show_button.clicked.connect(self.show_composite)

        self._watcher = LayerListWatcher(napari_viewer, self._refresh_layers)
        self._refresh_layers()
        if self.layer_combo.currentText():
            self._on_layer_changed(self.layer_combo.currentText())
        scrollable(self)  # the dock scrolls instead of growing the window (gui.base)

    # ---------------------------------------------------------------- state
    def current_layer(self):
        return layer_by_name(self.viewer, self.layer_combo.currentText())

    def bands(self) -> tuple[int, int, int]:
        return tuple(int(sb.value()) for sb in self.band_spins)  # type: ignore[return-value]

    def stretch(self) -> tuple[float, float]:
        return float(self.low_spin.value()), float(self.high_spin.value())

    def set_bands(self, bands) -> None:
        """Set the R, G, B band indices (updates a shown composite once)."""
        self._loading = True
        try:
            for sb, b in zip(self.band_spins, bands):
                sb.setValue(int(b))
        finally:
            self._loading = False
        self._controls_changed()

    def reset_bands(self) -> None:
        layer = self.current_layer()
        if layer is None:
            return
        self.set_bands(display.default_rgb_bands(layer.data.shape[0], layer_wavelengths(layer)))

    def composite_layer(self, source=None):
        """The composite layer linked to ``source`` (default: the chosen cube), or None."""
        source = source if source is not None else self.current_layer()
        if source is None:
            return None
        name = composite_name(source.name)
        if name in self.viewer.layers and self.viewer.layers[name].metadata.get("pseudocolor_of") == source.name:
            return self.viewer.layers[name]
        return None

    # ---------------------------------------------------------------- layer list
    def _refresh_layers(self) -> None:
        refill_combo(self.layer_combo, cube_layer_names(self.viewer))
        live = cube_layers(self.viewer)
        for src in list(self._sources):
            if not any(same_layer(src, l) for l in live):
                src.events.data.disconnect(self._on_source_data)
                self._sources.remove(src)

    def _on_layer_changed(self, name: str) -> None:
        layer = layer_by_name(self.viewer, name)
        self.error.clear_message()
        if layer is None:
            for w in (*self.band_spins, *self.nm_spins, self.show_button, self.default_button, self.by_wavelength):
                w.setEnabled(False)
            self.status.setText("no cube layer: open a cube or a sample")
            return
        for w in (*self.band_spins, *self.nm_spins, self.show_button, self.default_button):
            w.setEnabled(True)
        self._configure_ranges(layer)
        comp = self.composite_layer(layer)
        bands = None
        if comp is not None:  # an existing composite keeps its settings
            try:
                bands = display.check_bands(comp.metadata.get("bands", ()), layer.data.shape[0])
                lo, hi = comp.metadata.get("stretch", self.stretch())
                self._loading = True
                self.low_spin.setValue(float(lo))
                self.high_spin.setValue(float(hi))
            except (CubeError, TypeError, ValueError):
                bands = None
            finally:
                self._loading = False
        if bands is None:
            bands = display.default_rgb_bands(layer.data.shape[0], layer_wavelengths(layer))
        self.set_bands(bands)

    def _configure_ranges(self, layer) -> None:
        n = int(layer.data.shape[0])
        wl = layer_wavelengths(layer)
        self._loading = True
        try:
            for sb in self.band_spins:
                sb.setRange(0, n - 1)
            if wl is not None:
                for nm in self.nm_spins:
                    nm.setRange(float(np.min(wl)), float(np.max(wl)))
        finally:
            self._loading = False
        self.by_wavelength.setEnabled(wl is not None)
        if wl is None and self.by_wavelength.isChecked():
            self.by_wavelength.setChecked(False)
        self._on_mode(self.by_wavelength.isChecked())

    def _on_mode(self, by_nm: bool) -> None:
        for sb, nm in zip(self.band_spins, self.nm_spins):
            sb.setVisible(not by_nm)
            nm.setVisible(by_nm)
        self._sync_labels()

    # ---------------------------------------------------------------- controls
    def _on_band_spin(self, _value: int) -> None:
        if not self._loading:
            self._controls_changed()

    def _on_nm_spin(self, i: int) -> None:
        if self._loading:
            return
        layer = self.current_layer()
        wl = None if layer is None else layer_wavelengths(layer)
        if wl is None:
            return
        band = display.nearest_band(wl, self.nm_spins[i].value())
        if band != self.band_spins[i].value():
            self.band_spins[i].setValue(band)  # → _on_band_spin → update
        else:
            self._sync_labels()

    def _sync_labels(self) -> None:
        layer = self.current_layer()
        wl = None if layer is None else layer_wavelengths(layer)
        by_nm = self.by_wavelength.isChecked()
        self._loading = True
        try:
            for sb, nm, lab in zip(self.band_spins, self.nm_spins, self.band_labels):
                b = int(sb.value())
                if wl is not None and 0 <= b < len(wl):
                    lab.setText(f"band {b} · {wl[b]:g} nm" if by_nm else f"{wl[b]:g} nm")
                    if not nm.hasFocus():
                        nm.setValue(float(wl[b]))
                else:
                    lab.setText("" if not by_nm else f"band {b}")
        finally:
            self._loading = False

    def _controls_changed(self, *_args) -> None:
        if self._loading:
            return
        self._sync_labels()
        if self.low_spin.value() >= self.high_spin.value():
            self.error.show_message("the low percentile must be below the high one", notify=False)
            return
        self.error.clear_message()
        layer = self.current_layer()
        comp = self.composite_layer(layer)
        if comp is not None:
            self._update(comp, layer, self.bands(), self.stretch())

    # ---------------------------------------------------------------- composite
    def show_composite(self):
        """Add (or refresh) the composite of the chosen cube; returns the layer (None on error)."""
        layer = self.current_layer()
        if layer is None:
            self.error.show_message("choose a cube layer first")
            return None
        bands, (lo, hi) = self.bands(), self.stretch()
        try:
            rgb = display.composite(layer.data, bands, lo, hi)
        except CubeError as exc:
            self.error.show_message(f"{layer.name}: {exc}")
            return None
        self.error.clear_message()
        meta = self._metadata(layer, bands, lo, hi)
        comp = self.composite_layer(layer)
        if comp is None:
            name = composite_name(layer.name)
            if name in self.viewer.layers:  # a layer of that name we did not make: do not clobber it
                self.error.show_message(f"a layer called '{name}' already exists and is not a pseudo-colour "
                                        "composite: rename it first")
                return None
            comp = self.viewer.add_image(
                rgb, name=name, rgb=True, contrast_limits=(0.0, 1.0), metadata=meta,
                scale=tuple(layer.scale[-2:]), translate=tuple(layer.translate[-2:]),
            )
        else:
            comp.metadata.update(meta)
            comp.data = rgb
            comp.contrast_limits = (0.0, 1.0)
        self._follow(layer)
        self.status.setText(self._describe(layer, bands))
        return comp

    def _metadata(self, layer, bands, lo, hi) -> dict:
        wl = layer_wavelengths(layer)
        return {
            "pseudocolor_of": layer.name, "bands": [int(b) for b in bands], "stretch": [float(lo), float(hi)],
            "band_wavelengths": None if wl is None else [float(wl[b]) for b in bands],
        }

    def _describe(self, layer, bands) -> str:
        wl = layer_wavelengths(layer)
        parts = [f"{ch} {b}" + ("" if wl is None else f" ({wl[b]:g} nm)") for ch, b in zip(CHANNELS, bands)]
        return f"{layer.name}: " + ", ".join(parts)

    def _follow(self, layer) -> None:
        if not any(same_layer(s, layer) for s in self._sources):
            layer.events.data.connect(self._on_source_data)
            self._sources.append(layer)

    def _update(self, comp, layer, bands, stretch) -> None:
        try:
            comp.data = display.composite(layer.data, bands, *stretch)
        except CubeError as exc:
            self.error.show_message(f"{layer.name}: {exc}")
            return
        comp.metadata.update(self._metadata(layer, bands, *stretch))
        comp.contrast_limits = (0.0, 1.0)
        self.status.setText(self._describe(layer, bands))

    def _on_source_data(self, event) -> None:
        layer = event.source
        if layer is None or layer.data.ndim != 3 or layer.rgb:
            return
        comp = self.composite_layer(layer)
        if same_layer(layer, self.current_layer()):
            self._configure_ranges(layer)
        if comp is None:
            return
        n = int(layer.data.shape[0])
        try:
            bands = display.check_bands(comp.metadata.get("bands", ()), n)
        except CubeError:
            bands = display.default_rgb_bands(n, layer_wavelengths(layer))
        stretch = tuple(comp.metadata.get("stretch", (1.0, 99.0)))
        if same_layer(layer, self.current_layer()) and tuple(bands) != self.bands():
            self.set_bands(bands)  # updates the composite through the controls
            return
        self._update(comp, layer, bands, stretch)

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._disconnect()
        super().closeEvent(event)

    def _disconnect(self) -> None:
        try:
            self._watcher.close()
        except Exception:  # noqa: BLE001 - the viewer may already be gone
            pass
        for src in self._sources:
            try:
                src.events.data.disconnect(self._on_source_data)
            except Exception:  # noqa: BLE001
                pass
        self._sources = []
