"""The Fusion widget's progress and messages: progress bar, Cancel, the status line and the error
label (the one place user errors are shown, with a napari notification)."""

from __future__ import annotations

import time
from typing import Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from napari_cofusion.gui.base import ErrorLabel
from napari_cofusion.gui.fusion.state import FusionState

__all__ = ["ProgressPanel", "REPEAT_QUIET_S"]

#: the same error again within this many seconds updates the label but is not toasted again
REPEAT_QUIET_S = 10.0


class ProgressPanel(QGroupBox):
    """Follows ``state.progress``, ``status``, ``error`` and ``busy``; Cancel calls ``cancel``."""

    def __init__(self, state: FusionState, cancel: Callable[[], None], parent: QWidget | None = None) -> None:
        super().__init__("Progress", parent)
        self.state = state
        self._last_toast: tuple[str, float] = ("", float("-inf"))  # (message, monotonic time)
        self.progress_bar = QProgressBar()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(lambda: cancel())
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.error_label = ErrorLabel()
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        bar.addWidget(self.progress_bar)
        bar.addWidget(self.cancel_button)
        lay.addLayout(bar)
        lay.addWidget(self.status_label)
        lay.addWidget(self.error_label)
        ev = state.events
        ev.progress.connect(self._show_progress)
        ev.status.connect(lambda text: self.status_label.setText(text))
        ev.error.connect(self._show_error)
        ev.busy.connect(lambda busy: self.cancel_button.setEnabled(busy))
        self._show_progress(state.progress)
        self.status_label.setText(state.status)
        self._show_error(state.error)
        self.cancel_button.setEnabled(state.busy)

    def _show_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        self.progress_bar.setRange(0, max(int(total), 0))  # 0: Qt's "busy" bar
        self.progress_bar.setValue(int(done))

    def _show_error(self, message: str) -> None:
        if message:
            last, when = self._last_toast
            now = time.monotonic()
            repeat = message == last and now - when < REPEAT_QUIET_S
            self.error_label.show_message(message, notify=not repeat)  # a napari notification, once
            if not repeat:
                self._last_toast = (message, now)
        else:
            self.error_label.clear_message()
