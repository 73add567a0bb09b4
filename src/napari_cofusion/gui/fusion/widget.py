"""The Fusion dock widget: the five panels (Pair, Simulate, Run, Fine-tune, Progress) around one
evented :class:`~napari_cofusion.gui.fusion.state.FusionState` and one
:class:`~napari_cofusion.gui.fusion.runner.JobRunner`.

The panels never touch each other's widgets: each writes the state and follows the fields it
shows. The runner routes the jobs' typed updates to the state and each job's outcome to the
handler of its :class:`~napari_cofusion.gui.fusion.state.JobKind`.

For scripts and tests the widget also offers the panels' controls under their own names
(``lr_combo``, ``method_combo``, ``steps_spin``, ``progress_bar``, ...) and the actions
(:meth:`run_fusion`, :meth:`start_finetune`, :meth:`estimate_degradations`, :meth:`simulate`,
:meth:`save_weights`, :meth:`add_weights_path`, :meth:`set_pair`, :meth:`cancel`, :meth:`start_job`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_cofusion.core.errors import CofusionError
from napari_cofusion.gui import scene
from napari_cofusion.gui.base import collapsible, scrollable
from napari_cofusion.gui.fusion.finetune_panel import FinetunePanel
from napari_cofusion.gui.fusion.pair_panel import PairPanel
from napari_cofusion.gui.fusion.progress_panel import ProgressPanel
from napari_cofusion.gui.fusion.run_panel import RunPanel
from napari_cofusion.gui.fusion.runner import JobRunner
from napari_cofusion.gui.fusion.simulate_panel import SimulatePanel
from napari_cofusion.gui.fusion.state import FusionState, JobKind
from napari_cofusion.gui.fusion.weights_combo import checked_weights_path
from napari_cofusion.jobs import JobUpdate

__all__ = ["FusionWidget"]


def _alias(owner: str, name: str) -> property:
    return property(lambda self: getattr(getattr(self, owner), name), doc=f"``{owner}.{name}``")


class FusionWidget(QWidget):
    """Pair selection, simulation, fusion and fine-tuning (see the module docstring)."""

    # the panels' controls, the state's fields and the runner's worker, for scripts and tests
    lr_combo = _alias("pair_panel", "lr_combo")
    msi_combo = _alias("pair_panel", "msi_combo")
    ref_combo = _alias("pair_panel", "ref_combo")
    pair_info = _alias("pair_panel", "pair_info")
    pair_note = _alias("pair_panel", "pair_note")
    pair_message = _alias("pair_panel", "pair_message")
    sim_ref_combo = _alias("simulate_panel", "sim_ref_combo")
    scale_spin = _alias("simulate_panel", "scale_spin")
    psf_combo = _alias("simulate_panel", "psf_combo")
    srf_combo = _alias("simulate_panel", "srf_combo")
    snr_spin = _alias("simulate_panel", "snr_spin")
    simulate_button = _alias("simulate_panel", "simulate_button")
    method_combo = _alias("run_panel", "method_combo")
    weights_combo = _alias("run_panel", "weights_combo")
    device_combo = _alias("run_panel", "device_combo")
    consistency_combo = _alias("run_panel", "consistency_combo")
    fuse_psf_combo = _alias("run_panel", "fuse_psf_combo")
    run_button = _alias("run_panel", "run_button")
    last_result_layer = _alias("run_panel", "last_result_layer")
    ft_weights_combo = _alias("finetune_panel", "ft_weights_combo")
    steps_spin = _alias("finetune_panel", "steps_spin")
    lr_edit = _alias("finetune_panel", "lr_edit")
    patch_spin = _alias("finetune_panel", "patch_spin")
    batch_spin = _alias("finetune_panel", "batch_spin")
    ft_psf_combo = _alias("finetune_panel", "ft_psf_combo")
    ft_srf_combo = _alias("finetune_panel", "ft_srf_combo")
    ft_route_combo = _alias("finetune_panel", "route_combo")
    estimate_button = _alias("finetune_panel", "estimate_button")
    finetune_button = _alias("finetune_panel", "finetune_button")
    save_button = _alias("finetune_panel", "save_button")
    loss_plot = _alias("finetune_panel", "loss_plot")
    degradation_plot = _alias("finetune_panel", "degradation_plot")
    progress_bar = _alias("progress_panel", "progress_bar")
    cancel_button = _alias("progress_panel", "cancel_button")
    status_label = _alias("progress_panel", "status_label")
    error_label = _alias("progress_panel", "error_label")
    scale = _alias("state", "scale")
    pair_valid = _alias("state", "pair_valid")
    busy = _alias("state", "busy")
    finetuned_model = _alias("state", "finetuned_model")
    finetuned_info = _alias("state", "finetuned_info")
    loss_steps = _alias("state", "loss_steps")
    loss_values = _alias("state", "loss_values")
    degradation = _alias("state", "degradation")
    degradation_report = _alias("state", "degradation_report")
    worker = _alias("runner", "worker")
    cancel_event = _alias("runner", "cancel_event")

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.state = FusionState()
        self.runner = JobRunner(self.state)
        self.pair_panel = PairPanel(napari_viewer, self.state)
        self.simulate_panel = SimulatePanel(napari_viewer, self.state)
        self.run_panel = RunPanel(napari_viewer, self.state, self.runner)
        self.finetune_panel = FinetunePanel(napari_viewer, self.state, self.runner)
        self.progress_panel = ProgressPanel(self.state, self.runner.cancel)
        self.runner.handlers = {
            JobKind.FUSION: self.run_panel.job_done,
            JobKind.FINETUNE: self.finetune_panel.finetune_done,
            JobKind.ESTIMATE: self.finetune_panel.estimate_done,
        }
        root = QVBoxLayout(self)
        for panel in (self.pair_panel, self.simulate_panel, self.run_panel, self.finetune_panel):
            root.addWidget(collapsible(panel, expanded=panel is not self.simulate_panel))
        root.addStretch(1)
        scrollable(self)  # the groups scroll; Progress (bar, Cancel, status, error) stays in view under them
        self.layout().addWidget(collapsible(self.progress_panel))
        scene.install(napari_viewer).follow(self.state)  # the pair placed in one world frame (gui.scene)

    # ------------------------------------------------------------------ actions
    def run_fusion(self) -> Any:
        """Fuse the selected pair with the selected method in a worker; returns the worker (or None)."""
        return self.run_panel.run_fusion()

    def start_finetune(self) -> Any:
        """Fine-tune CoFusion on the scene in a worker (without a reference layer: the chosen
        pair-only route, pnp-gf by default); returns the worker (or None)."""
        return self.finetune_panel.start_finetune()

    def estimate_degradations(self) -> Any:
        """Estimate the pair's PSF / SRF in a worker; returns the worker (or None)."""
        return self.finetune_panel.estimate_degradations()

    def simulate(self) -> tuple | None:
        """Simulate a pair from the Simulate panel's reference; returns the (LRHSI, HRMSI, reference) layers."""
        return self.simulate_panel.simulate()

    def save_weights(self, path: str | Path | None = None) -> tuple[str, str] | None:
        """Save the session's fine-tuned model (a file dialog without ``path``); never overwrites."""
        return self.finetune_panel.save_weights(path)

    def cancel(self) -> None:
        """Stop the running job at its next yield (fine-tuning: at the next step, keeping the model)."""
        self.runner.cancel()

    def start_job(self, job: Iterator[JobUpdate], kind: JobKind, desc: str, total: int, context: Any = None) -> Any:
        """Run a job generator of :mod:`napari_cofusion.jobs` in the widget's worker; its outcome goes
        to the handler of ``kind``. Returns the worker (None while another job runs)."""
        return self.runner.start(job, kind, desc, total, context)

    def set_pair(self, lr, msi, reference=None) -> None:
        """Select layers (objects or names) as the pair and the optional reference."""
        get = lambda x: self.viewer.layers[x] if isinstance(x, str) else x  # noqa: E731
        self.state.select_pair(get(lr), get(msi), None if reference is None else get(reference), chosen=True)

    def refresh_layers(self) -> None:
        """Refill the layer choices from the viewer (they also follow it by themselves)."""
        self.pair_panel.refresh()
        self.simulate_panel.refresh()

    def add_weights_path(self, path: str | Path, select: Sequence[str] = ("run", "finetune")) -> bool:
        """Offer a ``.safetensors`` file (with its card) in both weights choices; select it in the
        Run choice and/or the fine-tune one. Returns False (with a message) when it is unusable."""
        try:
            p = checked_weights_path(path)
        except CofusionError as exc:
            self.state.fail(str(exc))
            return False
        self.state.add_weights_path(p)
        for name, combo in (("run", self.run_panel.weights_combo), ("finetune", self.finetune_panel.ft_weights_combo)):
            if name in select:
                combo.select_path(p)
        return True

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        for panel in (self.pair_panel, self.simulate_panel):
            try:
                panel.detach()
            except Exception:  # noqa: BLE001 - the viewer may already be gone
                pass
        super().closeEvent(event)

