"""A probe of the Qt event loop's responsiveness: a 10 ms ``QTimer`` whose ticks are timestamped;
a tick that comes late means the event loop was busy (the GUI froze) for that long. Used by
``benchmarks/responsiveness.py`` and the widget tests."""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer

__all__ = ["StallProbe"]


class StallProbe(QObject):
    """``start()`` … ``stop()``; ``stalls_ms`` holds each tick's delay beyond the interval (ms).

    The stall of a tick is the time since the previous tick minus the interval: 0 while the loop
    is idle, the length of the freeze when a slot (a redraw, a slow handler) kept the loop busy."""

    def __init__(self, interval_ms: int = 10, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(self.interval_ms)
        self.timer.timeout.connect(self._tick)
        self.stalls_ms: list[float] = []
        self.times: list[float] = []  # each tick's perf_counter time
        self.started = 0.0
        self._last: float | None = None

    def start(self) -> None:
        self.stalls_ms, self.times = [], []
        self._last = self.started = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.stalls_ms.append(max(0.0, (now - self._last) * 1000.0 - self.interval_ms))
            self.times.append(now)
        self._last = now

    @property
    def max_ms(self) -> float:
        return float(max(self.stalls_ms)) if self.stalls_ms else 0.0

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.stalls_ms, 99)) if self.stalls_ms else 0.0

    @property
    def max_at_s(self) -> float:
        """When the longest stall ended, in seconds since ``start()``."""
        if not self.stalls_ms:
            return 0.0
        return float(self.times[int(np.argmax(self.stalls_ms))] - self.started)

    def summary(self) -> str:
        return f"max stall {self.max_ms:.0f} ms, 99th percentile {self.p99_ms:.0f} ms over {len(self.stalls_ms)} ticks"
