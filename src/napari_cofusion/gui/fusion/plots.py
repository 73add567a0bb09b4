"""The fine-tune panel's two plots, both napari-themed :class:`~napari_cofusion.gui.base.PlotPanel`
s that redraw themselves from the state (and again when the napari theme changes): the live loss
curve (``state.step``) and the estimated SRF and PSF (``state.degradation``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from napari_cofusion.gui.base import PlotPanel
from napari_cofusion.gui.fusion.state import FusionState

__all__ = ["LossPlot", "DegradationPlot", "LOSS_DRAW_INTERVAL_MS"]

#: the live loss curve is drawn at most this often (ms); the line's data follow every step at once
LOSS_DRAW_INTERVAL_MS = 500


class LossPlot(PlotPanel):
    """Loss against step (log scale); ``line`` is the curve."""

    def __init__(self, viewer, state: FusionState, parent: QWidget | None = None) -> None:
        super().__init__(viewer, redraw=self.draw, parent=parent, min_height=150, toolbar=False)
        self.state = state
        self.line = None
        # the canvas is redrawn at most every LOSS_DRAW_INTERVAL_MS, without the figure's layout pass
        # while a job runs (a full draw took 50 ms idle, 120-340 ms against a training thread)
        self._draw_timer = QTimer(self)
        self._draw_timer.setSingleShot(True)
        self._draw_timer.setInterval(LOSS_DRAW_INTERVAL_MS)
        self._draw_timer.timeout.connect(self._draw_frame)
        state.events.step.connect(self._step)
        state.events.busy.connect(lambda busy: None if busy else self.draw_idle())
        self.draw()

    def draw(self) -> None:
        """Draw the axes and the whole curve anew."""
        self.reset_axes()
        ax = self.axes
        with self.styled():
            ax.set_yscale("log")
            ax.set_xlabel("step", fontsize="small")
            ax.set_ylabel("loss", fontsize="small")
            ax.tick_params(which="both", labelsize="x-small")
            (self.line,) = ax.plot([], [], lw=1.2)
        ax.set_xlim(0, 1)  # until the first step: an empty [0, 1] axis, not matplotlib's default ±0.05
        ax.set_ylim(1e-4, 1e-1)
        self._update()

    def _step(self, *_: Any) -> None:
        self._update()

    def _update(self) -> None:
        steps, values = self.state.loss_steps, self.state.loss_values
        self.line.set_data(steps, [max(v, 1e-8) for v in values])
        if steps:
            ax = self.axes
            ax.autoscale(enable=True)  # the placeholder limits switched it off
            ax.relim()
            ax.autoscale_view()
        if self.state.busy:
            if not self._draw_timer.isActive():
                self._draw_timer.start()
        else:
            self.draw_idle()

    def _draw_frame(self) -> None:
        """The throttled draw during a run: the axes keep their place (no layout pass)."""
        fig = self.figure
        engine = fig.get_layout_engine()
        if engine is None or not self.state.busy:
            self.draw_idle()
            return
        fig.set_layout_engine("none")
        try:
            self.canvas.draw()
        finally:
            fig.set_layout_engine(engine)


class DegradationPlot(PlotPanel):
    """Two axes: the SRF rows against wavelength, and the PSF kernel; hidden until an estimate."""

    def __init__(self, viewer, state: FusionState, parent: QWidget | None = None) -> None:
        super().__init__(viewer, redraw=self.draw, parent=parent, ncols=2, min_height=130, toolbar=False)
        self.state = state
        state.events.degradation.connect(self.draw)
        self.setVisible(False)

    def draw(self, *_: Any) -> None:
        deg = self.state.degradation
        self.reset_axes()
        if deg is None:
            self.setVisible(False)
            return
        ax_r, ax_k = self.all_axes
        with self.styled():
            for ax in (ax_r, ax_k):
                ax.tick_params(labelsize="xx-small")
            wl = deg.hs_wavelengths
            x = np.asarray(wl) if wl is not None else np.arange(deg.srf.shape[1])
            for i, row in enumerate(deg.srf):
                ax_r.plot(x, row, lw=1.0, label=f"MS {i}")
            ax_r.set_xlabel("wavelength (nm)" if wl is not None else "HS band", fontsize="x-small")
            ax_r.set_title("SRF" + (" (estimated)" if deg.srf_estimated else ""), fontsize="x-small")
            ax_k.imshow(deg.kernel)
            ax_k.set_xticks([])
            ax_k.set_yticks([])
            title = f"PSF σ {deg.sigma:.2f}" if deg.sigma is not None else "PSF"
            ax_k.set_title(title + f", phase {deg.phase}", fontsize="x-small")
        self.setVisible(True)
        self.draw_idle()
