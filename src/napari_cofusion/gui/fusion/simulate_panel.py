"""The Simulate panel: an (LRHSI, HRMSI) pair simulated from a reference layer with a scale, a
PSF, an SRF and noise; the new layers become the selected pair. Its settings are also the
fine-tune's recipe for a reference whose LRHSI was not simulated (``state.simulate_settings``)."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, Container, FloatSpinBox, SpinBox
from qtpy.QtWidgets import QFormLayout, QGroupBox, QPushButton, QWidget

from napari_cofusion.core.errors import CofusionError, CubeError
from napari_cofusion.core.srf import srf_presets
from napari_cofusion.degrade.simulate import simulate_pair
from napari_cofusion.gui.base import LayerListWatcher, same_layer
from napari_cofusion.gui.fusion.pair_panel import LayerCombo
from napari_cofusion.gui.fusion.state import FusionState
from napari_cofusion.gui.layers import add_cube, cube_layers, layer_cube

__all__ = ["SimulatePanel"]


class SimulatePanel(QGroupBox):
    def __init__(self, viewer, state: FusionState, parent: QWidget | None = None) -> None:
        super().__init__("Simulate from reference", parent)
        self.viewer = viewer
        self.state = state
        f = QFormLayout(self)
        self.sim_ref_combo = LayerCombo(viewer)
        # the recipe is a plain form: magicgui builds it (and its labels); the panel reads its values
        self.form = Container(widgets=[
            SpinBox(name="scale", label="Scale", min=2, max=64, value=4),
            ComboBox(name="psf", label="PSF", choices=["weak", "wald", "dhif"], value="weak",
                     tooltip="weak: 3×3 σ 0.5; wald: FWHM = scale; dhif: the s×s Gaussian of the dhif protocols, "
                             "samples between HR pixels (PROTOCOL.md)"),
            ComboBox(name="srf", label="SRF", choices=srf_presets(), value=srf_presets()[0]),
            FloatSpinBox(name="snr", label="SNR", min=0.0, max=100.0, step=5.0, value=0.0,
                         tooltip="noise added to both images, as a signal-to-noise ratio; 0: no noise"),
        ], labels=True)
        self.form.margins = (0, 0, 0, 0)
        self.scale_spin, self.psf_combo = self.form.scale.native, self.form.psf.native
        self.srf_combo, self.snr_spin = self.form.srf.native, self.form.snr.native
        self.snr_spin.setSuffix(" dB")
        self.snr_spin.setSpecialValueText("no noise")
        self.simulate_button = QPushButton("Simulate pair")
        self.simulate_button.clicked.connect(lambda: self.simulate())
        f.addRow("Reference", self.sim_ref_combo)
        f.addRow(self.form.native)
        f.addRow(self.simulate_button)
        self.form.changed.connect(self._settings_changed)
        state.events.busy.connect(lambda busy: self.simulate_button.setEnabled(not busy))
        self._settings_changed()
        self._watcher = LayerListWatcher(viewer, self.refresh)
        self.refresh()

    def settings(self) -> dict[str, Any]:
        """The ``simulate_pair`` keyword arguments the panel shows."""
        v = self.form.asdict()
        snr = float(v["snr"]) or None
        return {"scale": int(v["scale"]), "psf": v["psf"], "srf": v["srf"], "snr_db": snr, "seed": 0 if snr else None}

    def _settings_changed(self, *_: Any) -> None:
        self.state.simulate_settings = self.settings()

    def refresh(self) -> None:
        """Refill the reference combo; without a choice, offer the cube with the most bands."""
        layers = cube_layers(self.viewer)
        had = self.sim_ref_combo.layer()
        self.sim_ref_combo.fill(layers)
        if had is None or not same_layer(had, self.sim_ref_combo.layer()):
            best = max(layers, key=lambda l: (l.data.shape[0], l.data.size), default=None)
            if best is not None:
                self.sim_ref_combo.select(best)

    def simulate(self) -> tuple | None:
        """Simulate (LRHSI, HRMSI) from the chosen reference; add them and make them the pair.
        Returns the (LRHSI, HRMSI, reference) layers, or None (with a message)."""
        if self.state.busy:
            return None
        try:
            layer = self.sim_ref_combo.layer()
            if layer is None:
                raise CubeError("choose a reference cube layer to simulate from")
            ref = layer_cube(layer)
            pair = simulate_pair(ref, **self.settings())
        except CofusionError as exc:
            self.state.fail(str(exc))
            return None
        self.state.clear_error()
        lr_layer = add_cube(self.viewer, pair.lr)
        msi_layer = add_cube(self.viewer, pair.msi)
        # the reference is cropped to a multiple of the scale; add the crop when that changed it
        ref_layer = layer if pair.reference.shape == ref.shape else add_cube(self.viewer, pair.reference)
        self.state.select_pair(lr_layer, msi_layer, ref_layer, chosen=True)
        dropped = pair.recipe.srf.get("dropped")
        self.state.status = (f"simulated ×{pair.recipe.scale} with PSF {pair.recipe.psf_obj.describe()} and SRF "
                             f"{pair.recipe.srf['name']}"
                             + (f" (bands outside the cube dropped: {', '.join(dropped)})" if dropped else ""))
        return lr_layer, msi_layer, ref_layer

    def detach(self) -> None:
        self._watcher.close()
