"""The Fine-tune panel: fine-tune CoFusion on the scene from a reference layer; without one, run the
chosen pair-only route (pnp-zsl by default, the best measured; pnp-gf; MossFuse; or a scene-only CoFusion
fine-tune with estimated or preset degradations); estimate the PSF / SRF, save the fine-tuned
weights; the live loss curve and the estimate's plot. The defaults are the scene fine-tune's
(:mod:`napari_cofusion.learn.selfsup`), which the command line uses too."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Iterator

from qtpy.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                            QPushButton, QSpinBox, QWidget)

from napari_cofusion.core.errors import CofusionError, CubeError
from napari_cofusion.core.srf import srf_presets
from napari_cofusion.gui.fusion import finetune_plan as plans
from napari_cofusion.gui.fusion.pairing import layer_key
from napari_cofusion.gui.fusion.plots import DegradationPlot, LossPlot
from napari_cofusion.gui.fusion.run_panel import start_fusion
from napari_cofusion.gui.fusion.runner import JobOutcome, JobRunner
from napari_cofusion.gui.fusion.state import FusionState, JobKind
from napari_cofusion.gui.fusion.weights_combo import W_SESSION, WeightsCombo
from napari_cofusion.gui.layers import show_info, show_warning
from napari_cofusion.jobs import JobError, JobUpdate, Status, estimate_job
from napari_cofusion.learn import selfsup
from napari_cofusion.learn import weights as wmod

__all__ = ["FinetunePanel"]

EST = "estimate from the pair"


class _DeferredPlan:
    """A fine-tune planned in the worker: loading and adapting the starting model took 0.5 s, a
    freeze of the GUI when done in the click's slot (benchmarks/responsiveness.py). ``plan`` is set
    once the job has made it."""

    plan: Any = None

    def job(self, make) -> Iterator[JobUpdate]:
        yield Status("loading the starting model")
        try:
            inner, self.plan = make()
        except CofusionError:
            raise
        except Exception as exc:  # a RuntimeError (torch's) would be swallowed by the worker
            raise JobError(f"{type(exc).__name__}: {exc}") from None
        yield Status(f"fine-tuning ({self.plan.origin})")
        return (yield from inner)


#: the routes of "Fine-tune without a reference", the one that measured best first (its default):
#: label → the fusion method it runs (None: fine-tune CoFusion on the pair, giving reusable weights)
ROUTE_ZSL = "pnp-zsl: pnp-gf + a network trained on the pair (measured best)"
ROUTE_PNP = "pnp-gf: scene prior, no training"
ROUTE_MOSS = "MossFuse: a network trained on the pair"
ROUTE_COFUSION = "CoFusion fine-tune: weights you can reuse"
ROUTES: dict[str, str | None] = {ROUTE_ZSL: "pnp-zsl", ROUTE_PNP: "pnp-gf", ROUTE_MOSS: "mossfuse",
                                 ROUTE_COFUSION: None}
ROUTE_TIP = ("What Fine-tune does when the pair has no reference layer (benchmarks/scene_finetune.py, six scenes "
             "from four sensors, PSF estimated from the pair). pnp-gf: glp-hs, then rounds of projection onto both "
             "images and a guided filter by the HRMSI. pnp-zsl: pnp-gf, then a small network trained on the pair "
             "degraded once more corrects it, where that smaller pair is large enough to learn from (its LRHSI at "
             "least 16 pixels a side), the PSF is wide enough for the LRHSI not to be aliased, and the network "
             "beats pnp-gf on pixels it did not see; otherwise it is "
             "pnp-gf, and says why; the best measured (README). MossFuse: a network trained on the pair (about a "
             "minute). CoFusion: fine-tune the network on the pair and keep the weights; it added at most +0.07 dB "
             "over glp-hs. pnp-zsl, pnp-gf and MossFuse fit the SRF to the pair themselves.")

#: shown when the pair has no reference layer: what measured best without one
PAIR_ONLY_HINT = ("No reference layer: Fine-tune runs the route chosen below. Its default, pnp-zsl, is pnp-gf "
                  "(+1.2 dB at ×4 and +1.0 dB at ×8 over glp-hs on average, no training) with a correction learnt "
                  "from the pair where the pair is large enough; it falls back to glp-hs (saying why) when the "
                  "pair does not fit the observation model; a CoFusion fine-tune gained +0.01 to +0.07 dB.")


class FinetunePanel(QGroupBox):
    """Handles the outcome of :attr:`JobKind.FINETUNE` and :attr:`JobKind.ESTIMATE` jobs: the
    fine-tuned model goes to ``state.finetuned_model`` / ``finetuned_info``, an estimate to
    ``state.degradation`` (reused by the next scene-only fine-tune of the same pair and choices)."""

    def __init__(self, viewer, state: FusionState, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__("Fine-tune CoFusion", parent)
        self.viewer = viewer
        self.state = state
        self.runner = runner
        defaults = selfsup.scene_config()
        f = QFormLayout(self)
        self.ft_weights_combo = WeightsCombo(state, with_new=True)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1_000_000)
        self.steps_spin.setValue(selfsup.DEFAULT_STEPS)
        self.lr_edit = QLineEdit(f"{selfsup.DEFAULT_LR:g}")
        self.patch_spin = QSpinBox()
        self.patch_spin.setRange(8, 1024)
        self.patch_spin.setSingleStep(8)
        self.patch_spin.setValue(defaults.patch)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(defaults.batch)
        # without a reference layer: degradations estimated from the pair, or presets
        self.ft_psf_combo = QComboBox()
        self.ft_psf_combo.addItems([EST, "weak", "wald"])
        self.ft_psf_combo.setToolTip("PSF for scene-only fine-tuning (no reference): estimated from the pair or a preset")
        self.ft_srf_combo = QComboBox()
        self.ft_srf_combo.addItems([EST, *srf_presets()])
        self.ft_srf_combo.setToolTip("SRF for scene-only fine-tuning (no reference): estimated from the pair or a preset")
        self.route_combo = QComboBox()
        self.route_combo.addItems(list(ROUTES))
        self.route_combo.setToolTip(ROUTE_TIP)
        self.route_combo.currentTextChanged.connect(self._update_buttons)
        self.estimate_button = QPushButton("Estimate PSF / SRF")
        self.estimate_button.setToolTip("Estimate the blur, decimation phase and spectral response from the pair alone")
        self.estimate_button.clicked.connect(lambda: self.estimate_degradations())
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.clicked.connect(lambda: self.start_finetune())
        self.save_button = QPushButton("Save weights…")
        self.save_button.clicked.connect(lambda: self.save_weights())
        self.degradation_plot = DegradationPlot(viewer, state)
        self.estimate_warning = QLabel()  # why the last estimate is doubtful (degrade.estimate.estimate_doubts)
        self.estimate_warning.setWordWrap(True)
        self.estimate_warning.setStyleSheet("color: #e0a030;")
        self.estimate_warning.setVisible(False)
        self.loss_plot = LossPlot(viewer, state)
        # the measured advice for a pair with no reference (README, benchmarks/scene_finetune.py)
        self.pair_only_hint = QLabel(PAIR_ONLY_HINT)
        self.pair_only_hint.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.finetune_button)
        buttons.addWidget(self.save_button)
        f.addRow(self.pair_only_hint)
        f.addRow("Without a reference", self.route_combo)
        self._route_label = f.labelForField(self.route_combo)
        f.addRow("Start from", self.ft_weights_combo)
        f.addRow("Steps", self.steps_spin)
        f.addRow("Learning rate", self.lr_edit)
        f.addRow("Patch", self.patch_spin)
        f.addRow("Batch", self.batch_spin)
        f.addRow("PSF (no ref.)", self.ft_psf_combo)
        f.addRow("SRF (no ref.)", self.ft_srf_combo)
        f.addRow(self.estimate_button)
        f.addRow(self.degradation_plot)
        f.addRow(self.estimate_warning)
        f.addRow(buttons)
        f.addRow(self.loss_plot)
        for name in ("busy", "scale", "finetuned_model", "pair"):
            getattr(state.events, name).connect(self._update_buttons)
        self._update_buttons()

    def pair_only_method(self) -> str | None:
        """The fusion method Fine-tune runs instead of training (no reference layer and a fusion
        route chosen), else None."""
        return ROUTES[self.route_combo.currentText()] if self.state.pair.reference is None else None

    def _update_buttons(self, *_: Any) -> None:
        s = self.state
        no_ref = s.pair_valid and s.pair.reference is None
        self.pair_only_hint.setVisible(no_ref)
        self.route_combo.setVisible(no_ref)
        self._route_label.setVisible(no_ref)
        method = self.pair_only_method()
        self.finetune_button.setText(f"Fuse with {method}" if method else "Fine-tune")
        for w in (self.ft_weights_combo, self.steps_spin, self.lr_edit, self.patch_spin, self.batch_spin,
                  self.ft_srf_combo):
            w.setEnabled(method is None)  # what only a CoFusion fine-tune uses (the routes fit their SRF)
        self.finetune_button.setEnabled(not s.busy)
        self.estimate_button.setEnabled(s.pair_valid and not s.busy)
        self.save_button.setEnabled(s.finetuned_model is not None and not s.busy)

    def _degradation_choice(self) -> tuple[str | None, str | None]:
        psf, srf = self.ft_psf_combo.currentText(), self.ft_srf_combo.currentText()
        return (None if psf == EST else psf), (None if srf == EST else srf)

    def _degradation_key(self, psf: str | None, srf: str | None) -> tuple:
        return layer_key(self.state.pair.lr), layer_key(self.state.pair.msi), psf, srf

    # ------------------------------------------------------------------ estimate
    def estimate_degradations(self) -> Any:
        """Estimate the pair's PSF and SRF (or apply the chosen presets) in a worker; the result is
        shown in the plot under the button and reused by the next scene-only fine-tune."""
        cubes = self.state.pair_cubes()
        if cubes is None:
            return None
        lr, msi = cubes
        psf, srf = self._degradation_choice()
        return self.runner.start(estimate_job(lr, msi, psf, srf), JobKind.ESTIMATE, "PSF / SRF estimation", 1,
                                 context=self._degradation_key(psf, srf))

    def estimate_done(self, outcome: JobOutcome) -> None:
        if outcome.failed or outcome.result is None:
            if outcome.cancelled and not outcome.failed:
                self.state.status = "estimation cancelled"
            return
        with self.state.events.paused():
            self.state.degradation_key = outcome.context
            self.state.degradation = outcome.result
            self.state.status = outcome.result.describe()
        self._show_doubts(outcome.result)

    def _show_doubts(self, deg: Any) -> None:
        """Show (and notify once) why the estimate ``deg`` is doubtful; hide the warning when it is not."""
        from napari_cofusion.degrade.estimate import estimate_doubts

        reasons = estimate_doubts(deg)
        text = "; ".join(reasons)
        self.estimate_warning.setText(f"doubtful estimate: {text}" if text else "")
        self.estimate_warning.setVisible(bool(text))
        if text:
            show_warning(f"doubtful PSF / SRF estimate: {text}")

    # ------------------------------------------------------------------ fine-tune
    def start_finetune(self) -> Any:
        """Fine-tune CoFusion on the scene in a worker, or, with no reference layer, run the chosen
        pair-only route (pnp-zsl by default: a fusion job whose result the Run panel adds as a layer);
        returns the worker (or None)."""
        state = self.state
        if state.busy:
            return None
        method = self.pair_only_method()
        if method is not None:
            return self._fuse_pair_only(method)
        pair = state.pair
        try:
            cfg = plans.train_config(self.steps_spin.value(), self.lr_edit.text(), self.batch_spin.value(),
                                     self.patch_spin.value())
            choice = self.ft_weights_combo.choice()
            if pair.reference is not None:
                valid = state.pair_valid
                make = partial(plans.plan_with_reference, pair.reference, pair.lr if valid else None,
                               pair.msi if valid else None, state.scale, state.simulate_settings, cfg, choice,
                               state.device)
            else:
                if not state.pair_valid:
                    raise CubeError(state.no_pair_reason)
                psf, srf = self._degradation_choice()
                known = state.degradation if state.degradation_key == self._degradation_key(psf, srf) else None
                make = partial(plans.plan_scene_only, pair.lr, pair.msi, int(state.scale), psf, srf, cfg, choice,
                               state.device, degradation=known)
        except CofusionError as exc:
            state.fail(str(exc))
            return None
        state.reset_loss()
        state.status = f"fine-tuning for {cfg.steps} steps: loading the starting model…"
        deferred = _DeferredPlan()
        return self.runner.start(deferred.job(make), JobKind.FINETUNE, "CoFusion fine-tuning", cfg.steps,
                                 context=deferred)

    def _fuse_pair_only(self, method: str) -> Any:
        """The pair-only route as the Run panel's fusion job: the PSF estimated from the pair (or the
        chosen preset), the SRF fitted to it by the method."""
        state = self.state
        cubes = state.pair_cubes()
        if cubes is None:
            return None
        psf, _srf = self._degradation_choice()
        return start_fusion(state, self.runner, *cubes, method, {"psf": psf or "auto"},
                            {"route": "fine-tune without a reference"}, status="fusing from the pair alone…")

    def finetune_done(self, outcome: JobOutcome) -> None:
        """A fine-tune ended (finished, cancelled or failed): keep the model when it took a step."""
        state, plan, last = self.state, getattr(outcome.context, "plan", outcome.context), self.state.step
        if outcome.failed or last is None or plan is None:
            if outcome.cancelled and not outcome.failed:
                state.status = "fine-tuning cancelled before the first step; no model kept"
            return
        plan.model.eval()
        info = plans.training_record(plan, last)
        with state.events.paused():
            if plan.report and plan.report.get("degradation") is not None:
                state.degradation_report = plan.report
            state.finetuned_info = info
            state.finetuned_model = plan.model
            what = "stopped" if info["stopped_early"] else "finished"
            state.status = (f"fine-tuning {what} after {info['steps_done']} steps (loss {info['final_loss']:.5f}); "
                            f"the model is offered as {W_SESSION}")

    # ------------------------------------------------------------------ save
    def save_weights(self, path: str | Path | None = None) -> tuple[str, str] | None:
        """Write the session's fine-tuned model (safetensors + JSON card); never overwrites."""
        state = self.state
        if state.finetuned_model is None:
            state.fail("nothing to save: fine-tune a model first")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Save fine-tuned weights", "cofusion_finetuned.safetensors", "Weights (*.safetensors)",
                options=QFileDialog.Option.DontConfirmOverwrite,
            )
            if not path:
                return None
        model, info = state.finetuned_model, state.finetuned_info
        try:
            card = wmod.make_card(
                model, hs_wavelengths=info.get("hs_wavelengths"), srf=info.get("srf"), psf=info.get("psf"),
                protocol=None, training={k: v for k, v in info.items() if k not in ("hs_wavelengths", "psf", "srf")},
                training_mode="fine-tuned in the napari-cofusion Fusion widget")
            paths = wmod.save_weights(model, path, card, overwrite=False)
        except CofusionError as exc:
            state.fail(str(exc))
            return None
        state.clear_error()
        state.add_weights_path(Path(paths[0]))
        show_info(f"saved {paths[0]} and {Path(paths[1]).name}")
        state.status = f"saved {paths[0]}"
        return paths
