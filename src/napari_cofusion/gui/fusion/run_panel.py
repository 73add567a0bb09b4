"""The Run panel: fuse the selected pair with a registered method (weights, device and the
consistency step for the learned one) and add the result as a layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QPushButton, QWidget

from napari_cofusion import api
from napari_cofusion.core.errors import CofusionError
from napari_cofusion.gui.fusion.runner import JobOutcome, JobRunner
from napari_cofusion.gui.fusion.state import FusionState, JobKind
from napari_cofusion.gui.fusion.weights_combo import WeightsCombo
from napari_cofusion.gui.layers import add_cube, show_warning
from napari_cofusion.jobs import fusion_job
from napari_cofusion.learn.device import available_devices
from napari_cofusion.learn.start import SHIPPED

__all__ = ["RunPanel", "unique_name"]

CONSISTENCY_TIP = (
    "Project the result onto the LRHSI and HRMSI it came from, so that blurring and decimating it gives the "
    "LRHSI and the SRF gives the HRMSI. auto: only when the PSF and an SRF fitted to the pair explain the pair "
    "(simulated pairs, clean data); off for noisy or real pairs the model does not fit. Set to each method's "
    "default when the method changes (auto for CoFusion, off for the baselines).")


PSF_RECIPE = "recipe, else weak"
PSF_ESTIMATE = "estimate from the pair"
PSF_TIP = ("The blur and decimation phase that relate the LRHSI to the scene. 'recipe, else weak': the LRHSI's "
           "simulation recipe when it has one, else the weak preset. 'estimate from the pair': fitted to the two "
           "images (the estimate and any doubt about it are reported); the default for the pair-only methods.")
#: methods meant for a pair alone (no recipe, no reference): they default to an estimated PSF
PAIR_ONLY = ("pnp-gf", "pnp-zsl", "mossfuse")


def start_fusion(state: FusionState, runner: JobRunner, lr: Any, msi: Any, method: str, options: dict[str, Any],
                 meta: dict[str, Any], status: str = "fusing…") -> Any:
    """Start a fusion job on the selected pair's cubes (its outcome goes to the Run panel's
    :meth:`RunPanel.job_done`, which adds the layer); ``meta`` joins the layer's metadata with the
    input layers' names. The one way the panels start a fusion. Returns the worker (or None)."""
    state.status = f"{method}: {status}"
    meta = {"inputs": [state.pair.lr.name, state.pair.msi.name], **meta}
    return runner.start(fusion_job(lr, msi, method, options, runner.cancel_event), JobKind.FUSION, f"{method} fusion",
                        1, context=meta)


def unique_name(viewer, base: str) -> str:
    """``base``, or ``base [i]`` with the first ``i`` no layer is called yet."""
    names = {layer.name for layer in viewer.layers}
    if base not in names:
        return base
    i = 1
    while f"{base} [{i}]" in names:
        i += 1
    return f"{base} [{i}]"


class RunPanel(QGroupBox):
    """Writes ``state.device``; selects the session's model when a fine-tune produces one; handles
    the outcome of :attr:`JobKind.FUSION` jobs (``last_result_layer``: the last layer added)."""

    def __init__(self, viewer, state: FusionState, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__("Run", parent)
        self.viewer = viewer
        self.state = state
        self.runner = runner
        self.last_result_layer = None
        f = QFormLayout(self)
        self.method_combo = QComboBox()
        self.method_combo.addItems(api.method_names())
        if "glp-hs" in api.method_names():
            self.method_combo.setCurrentText("glp-hs")
        self.method_combo.currentTextChanged.connect(self._method_changed)
        self.weights_combo = WeightsCombo(state, with_new=False)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_combo.setToolTip("Where CoFusion runs and fine-tunes: the CPU, or a CUDA GPU where torch sees one")
        self.device_combo.currentTextChanged.connect(self._device_changed)
        self.consistency_combo = QComboBox()
        self.consistency_combo.addItems(["auto", "on", "off"])
        self.consistency_combo.setToolTip(CONSISTENCY_TIP)
        self.fuse_psf_combo = QComboBox()
        self.fuse_psf_combo.addItems([PSF_RECIPE, PSF_ESTIMATE])
        self.fuse_psf_combo.setToolTip(PSF_TIP)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.run_fusion())
        f.addRow("Method", self.method_combo)
        f.addRow("Weights", self.weights_combo)
        f.addRow("Device", self.device_combo)
        f.addRow("Consistency", self.consistency_combo)
        f.addRow("PSF", self.fuse_psf_combo)
        f.addRow(self.run_button)
        ev = state.events
        ev.scale.connect(self._update_button)
        ev.busy.connect(self._update_button)
        ev.finetuned_model.connect(self._new_session_model)
        self._method_changed(self.method_combo.currentText())
        self._device_changed(self.device_combo.currentText())
        self._update_button()

    def _update_button(self, *_: Any) -> None:
        self.run_button.setEnabled(self.state.pair_valid and not self.state.busy)

    def _device_changed(self, device: str) -> None:
        self.state.device = device

    def _method_changed(self, name: str) -> None:
        try:
            method = api.get_method(name)
        except CofusionError:
            self.weights_combo.setEnabled(False)
            return
        self.weights_combo.setEnabled(method.needs_weights)
        self.consistency_combo.setCurrentText(method.consistency)
        # the pair-only methods are for pairs with no recipe: estimate by default
        self.fuse_psf_combo.setCurrentText(PSF_ESTIMATE if name in PAIR_ONLY else PSF_RECIPE)

    def _new_session_model(self, model: Any, *_: Any) -> None:
        if model is not None:  # (the combo has already offered it)
            self.weights_combo.select_session()

    def run_fusion(self) -> Any:
        """Fuse the selected pair with the selected method in a worker; returns the worker (or None)."""
        state = self.state
        cubes = state.pair_cubes()
        if cubes is None:
            return None
        lr, msi = cubes
        method = self.method_combo.currentText()
        try:
            options: dict[str, Any] = {"consistency": self.consistency_combo.currentText()}
            if self.fuse_psf_combo.currentText() == PSF_ESTIMATE:
                options["psf"] = "auto"  # fuse estimates it and records meta["estimate"]
            meta: dict[str, Any] = {}
            if api.get_method(method).needs_weights:
                options["device"] = state.device
                choice = self.weights_combo.choice()
                if isinstance(choice, str) and choice == SHIPPED:
                    options["weights"] = None  # the shipped weights matching the band counts
                    meta["weights"] = "matching shipped weights"
                elif isinstance(choice, Path):
                    options["weights"] = str(choice)
                    meta["weights"] = str(choice)
                else:
                    options["model"] = choice
                    meta["weights"] = "fine-tuned in this session"
        except CofusionError as exc:
            state.fail(str(exc))
            return None
        return start_fusion(state, self.runner, lr, msi, method, options, meta)

    @staticmethod
    def doubts(meta: dict[str, Any]) -> list[str]:
        """What the user must be told about a result: doubts about the estimated degradation, and
        a pair-only method's fallback to glp-hs (with the numbers), and pnp-zsl's network left out
        (the pair too small to learn from, or what it learned did not hold on held-out pixels)."""
        out = list((meta.get("estimate") or {}).get("doubts") or [])
        options = meta.get("options") or {}
        if options.get("fallback"):
            out.append(options["fallback"])
        network = options.get("network")
        if isinstance(network, dict) and not network.get("used") and not options.get("fallback"):
            out.append(f"no network: {network.get('reason', '')}")
        return out

    def job_done(self, outcome: JobOutcome) -> None:
        """A fusion job ended: add its result as a new layer (not after a Cancel)."""
        if outcome.cancelled:
            self.state.status = "fusion cancelled"
            return
        result = outcome.result
        if outcome.failed or result is None:
            return
        cube = result.cube
        name = unique_name(self.viewer, f"{result.method} fused")
        cube.name = name
        cube.meta.update(outcome.context or {}, seconds=round(float(result.seconds), 3))
        self.last_result_layer = add_cube(self.viewer, cube, name=name)
        for doubt in self.doubts(result.meta or {}):
            show_warning(f"{name}: {doubt}")
        note = ""
        if result.consistency and result.consistency.get("mode") != "off":
            from napari_cofusion.degrade.consistency import describe_consistency

            note = f"; consistency: {describe_consistency(result.consistency)}"
        self.state.status = f"{name}: {cube.bands} bands, {cube.shape[1]}×{cube.shape[2]} in {result.seconds:.1f} s{note}"
