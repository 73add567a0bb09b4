"""The Pair panel: the LRHSI, HRMSI and reference layers, guessed until the user picks them, and
what the pair check says about them."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QLabel, QWidget

from napari_cofusion.gui.base import NONE, ErrorLabel, LayerListWatcher
from napari_cofusion.gui.fusion.agreement import PairAgreement
from napari_cofusion.gui.fusion.pairing import Pair, guess_pair, layer_key
from napari_cofusion.gui.fusion.state import FusionState
from napari_cofusion.gui.layers import cube_layers

__all__ = ["PairPanel", "LayerCombo"]


class LayerCombo(QComboBox):
    """A combo box of the viewer's cube layers, keyed by layer (names may repeat)."""

    def __init__(self, viewer, with_none: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.with_none = with_none
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)

    def fill(self, layers: list) -> None:
        """Refill (no signals), keeping the current layer where it is still there."""
        keep = self.currentData()
        self.blockSignals(True)
        try:
            self.clear()
            if self.with_none:
                self.addItem(NONE, None)
            for layer in layers:
                self.addItem(layer.name, layer_key(layer))
            idx = self.findData(keep) if keep is not None else -1
            self.setCurrentIndex(idx if idx >= 0 else 0)
        finally:
            self.blockSignals(False)

    def layer(self):
        key = self.currentData()
        if key is None:
            return None
        return next((l for l in self.viewer.layers if layer_key(l) == key), None)

    def select(self, layer) -> None:
        """Show ``layer`` (None: "(none)") without emitting, when it is an entry."""
        idx = self.findData(layer_key(layer))
        if idx >= 0 and idx != self.currentIndex():
            self.blockSignals(True)
            self.setCurrentIndex(idx)
            self.blockSignals(False)


class PairPanel(QGroupBox):
    """Writes the chosen layers to ``state.pair`` (via ``state.select_pair``) and shows
    ``state.pair`` and its texts, whoever set them."""

    def __init__(self, viewer, state: FusionState, parent: QWidget | None = None) -> None:
        super().__init__("Pair", parent)
        self.viewer = viewer
        self.state = state
        f = QFormLayout(self)
        self.lr_combo, self.msi_combo = LayerCombo(viewer), LayerCombo(viewer)
        self.ref_combo = LayerCombo(viewer, with_none=True)
        for c, label in ((self.lr_combo, "LRHSI"), (self.msi_combo, "HRMSI"), (self.ref_combo, "Reference")):
            c.currentIndexChanged.connect(self._picked)
            c.activated.connect(self._user_picked)
            f.addRow(label, c)
        self.pair_info = QLabel()
        self.pair_info.setWordWrap(True)
        self.pair_note = QLabel()
        self.pair_note.setWordWrap(True)
        self.pair_note.setVisible(False)
        self.pair_message = ErrorLabel()  # why the pair cannot be fused; not an error notification
        f.addRow(self.pair_info)
        f.addRow(self.pair_note)
        f.addRow(self.pair_message)
        self.pair_warning = QLabel()  # the two images disagree (gui.fusion.agreement)
        self.pair_warning.setWordWrap(True)
        self.pair_warning.setStyleSheet("color: #e0a030;")
        self.pair_warning.setVisible(False)
        f.addRow(self.pair_warning)
        ev = state.events
        ev.pair.connect(self._show_pair)
        ev.pair_info.connect(lambda text: self.pair_info.setText(text))
        ev.pair_note.connect(self._show_note)
        ev.pair_problem.connect(self._show_problem)
        self.agreement = PairAgreement(state, self._show_warning)
        self._watcher = LayerListWatcher(viewer, self.refresh)
        self.refresh()

    def _current(self) -> Pair:
        return Pair(self.lr_combo.layer(), self.msi_combo.layer(), self.ref_combo.layer())

    def refresh(self) -> None:
        """Refill the combos (keeping the selections) and, until the pair is chosen, guess it."""
        layers = cube_layers(self.viewer)
        for combo in (self.lr_combo, self.msi_combo, self.ref_combo):
            combo.fill(layers)
        pair = self._current()
        if not self.state.pair_chosen:
            pair = guess_pair(layers, pair) or pair
        self.state.select_pair(pair.lr, pair.msi, pair.reference)
        self._show_pair(self.state.pair)  # the combos, also when the pair itself did not change

    def _user_picked(self, _index: int) -> None:
        self.state.pair_chosen = True

    def _picked(self, *_: Any) -> None:
        pair = self._current()
        self.state.select_pair(pair.lr, pair.msi, pair.reference)

    def _show_pair(self, pair: Pair, *_: Any) -> None:
        self.lr_combo.select(pair.lr)
        self.msi_combo.select(pair.msi)
        self.ref_combo.select(pair.reference)

    def _show_note(self, note: str) -> None:
        self.pair_note.setText(note)
        self.pair_note.setVisible(bool(note))

    def _show_warning(self, text: str) -> None:
        self.pair_warning.setText(text)
        self.pair_warning.setVisible(bool(text))

    def _show_problem(self, problem: str) -> None:
        if problem:
            self.pair_message.show_message(problem, notify=False)
        else:
            self.pair_message.clear_message()

    def detach(self) -> None:
        """Stop following the viewer's layer list and the pair (a running agreement check ends
        without touching this panel)."""
        self._watcher.close()
        self.agreement.close()
