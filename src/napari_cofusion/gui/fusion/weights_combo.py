"""A weights choice: the shipped weights, the files added in this session, the session's
fine-tuned model, Browse…, and (to start a fine-tune) a new model. It follows
``state.weights_paths`` and ``state.finetuned_model``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

from napari_cofusion.core.errors import CofusionError, CubeError
from napari_cofusion.gui.fusion.state import FusionState
from napari_cofusion.learn import weights as wmod
from napari_cofusion.learn.start import NEW, SHIPPED

__all__ = ["WeightsCombo", "checked_weights_path", "W_SHIPPED", "W_SESSION", "W_NEW", "W_BROWSE"]

W_SHIPPED = "(matching shipped weights)"
W_BROWSE = "Browse…"
W_SESSION = "(fine-tuned in this session)"
W_NEW = "(new model)"
SESSION, BROWSE, PATH = "session", "browse", "path:"


def checked_weights_path(path: str | Path) -> Path:
    """``path`` as a ``.safetensors`` file whose card can be read (:class:`CofusionError` if not)."""
    p = Path(path)
    if p.suffix != ".safetensors":
        p = p.with_suffix(".safetensors")
    if not p.is_file():
        raise CubeError(f"{p}: weights file not found")
    wmod.read_card(p)
    return p


def _card_label(path: Path) -> str:
    try:
        c = wmod.read_card(path)
        return f"{path.stem} ({c.get('hs_bands')} HS / {c.get('ms_bands')} MS, ×{c.get('scale')})"
    except CofusionError:
        return path.stem


class WeightsCombo(QComboBox):
    """The entries' data: :data:`~napari_cofusion.learn.start.SHIPPED`, ``NEW``, ``"session"``,
    ``"path:<file>"`` or ``"browse"``; :meth:`choice` turns the current one into what
    :func:`~napari_cofusion.learn.start.starting_model` takes."""

    def __init__(self, state: FusionState, with_new: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.with_new = with_new
        self._last_index = 0
        self.activated.connect(self._activated)
        state.events.weights_paths.connect(self.rebuild)
        state.events.finetuned_model.connect(self.rebuild)
        self.rebuild()

    def _entries(self) -> list[tuple[str, str]]:
        entries = [(W_NEW, NEW)] if self.with_new else []
        entries.append((W_SHIPPED, SHIPPED))
        seen = set()
        for p in [*wmod.list_weights(), *self.state.weights_paths]:
            key = str(Path(p).resolve())
            if key not in seen:
                seen.add(key)
                entries.append((_card_label(Path(p)), f"{PATH}{p}"))
        if self.state.finetuned_model is not None:
            entries.append((W_SESSION, SESSION))
        entries.append((W_BROWSE, BROWSE))
        return entries

    def rebuild(self, *_: Any) -> None:
        """Refill the entries, keeping the current choice where it is still offered."""
        keep = self.currentData()
        self.blockSignals(True)
        try:
            self.clear()
            for label, key in self._entries():
                self.addItem(label, key)
            idx = self.findData(keep) if keep not in (None, BROWSE) else -1
            self.setCurrentIndex(idx if idx >= 0 else self.findData(SHIPPED))
            self._last_index = self.currentIndex()
        finally:
            self.blockSignals(False)

    def select_path(self, path: Path) -> bool:
        for i in range(self.count()):
            key = self.itemData(i)
            if key and key.startswith(PATH) and Path(key[len(PATH):]).resolve() == path.resolve():
                self.setCurrentIndex(i)
                self._last_index = i
                return True
        return False

    def select_session(self) -> None:
        idx = self.findData(SESSION)
        if idx >= 0:
            self.setCurrentIndex(idx)
            self._last_index = idx

    def choice(self) -> Any:
        """``SHIPPED``, ``NEW``, a weights :class:`~pathlib.Path` or the session's model."""
        key = self.currentData() or SHIPPED
        if key == BROWSE:
            raise CubeError("choose a weights file (Browse…) or another weights entry")
        if key == SESSION:
            if self.state.finetuned_model is None:
                raise CubeError("no model was fine-tuned in this session")
            return self.state.finetuned_model
        if key.startswith(PATH):
            return Path(key[len(PATH):])
        return key

    def _activated(self, _index: int) -> None:
        if self.currentData() != BROWSE:
            self._last_index = self.currentIndex()
            return
        path, _ = QFileDialog.getOpenFileName(self, "CoFusion weights", str(wmod.shipped_weights_dir()),
                                              "Weights (*.safetensors)")
        if path:
            try:
                p = checked_weights_path(path)
            except CofusionError as exc:
                self.state.fail(str(exc))
            else:
                self.state.add_weights_path(p)
                if self.select_path(p):
                    return
        self.setCurrentIndex(max(self._last_index, 0))
