"""The Fusion dock widget: pick (or simulate) an LRHSI / HRMSI pair, fuse it with a registered
method, fine-tune CoFusion on the scene and save the fine-tuned weights.

Thin: every computation is a core call (``methods.check_pair`` / ``fuse``, ``simulate.simulate_pair``,
``train.make_scene`` / ``train``, ``weights.*``). Long work runs in a napari ``thread_worker``
generator that yields progress; Cancel quits the worker, which stops at the next yield.

The two job generators (:func:`fusion_job`, :func:`finetune_job`) are plain Python (no Qt) so they
can also be driven directly.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_cofusion import api as methods
from napari_cofusion.core.errors import Cancelled
from napari_cofusion.jobs import DIHEDRAL_VARIANTS, Heartbeat, Status, Step, Tiles, estimate_job, finetune_job, fusion_job
from napari_cofusion.learn.device import available_devices
from napari_cofusion.learn import weights as wmod
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.simulate import PSF, Recipe, simulate_pair
from napari_cofusion.core.srf import get_srf, srf_presets
from napari_cofusion.learn.selfsup import DEFAULT_CONSISTENCY
from napari_cofusion.gui.base import same_layer
from napari_cofusion.gui.layers import add_cube, cube_layers, layer_cube, show_error, show_info

__all__ = ["FusionWidget"]

NONE = "(none)"
W_SHIPPED = "(matching shipped weights)"
W_BROWSE = "Browse…"
W_SESSION = "(fine-tuned in this session)"
W_NEW = "(new model)"
EST = "estimate from the pair"
ERROR_STYLE = "color: #ff5c5c;"
NOTE_STYLE = "color: #e3b617;"



def _drive(job: Iterator[Any]) -> Iterator[Any]:
    """The worker's generator function: runs a job generator created (and kept) by the widget."""
    return (yield from job)


def _key(layer) -> str:
    """A combo-box key for a layer: napari hands plugin widgets proxies of the viewer and its
    layers (a new proxy per access), so the key is the wrapped layer's id."""
    return str(id(getattr(layer, "__wrapped__", layer)))


class _LayerShape:
    """Just enough of a Cube (name and shape) for ``methods.check_pair`` without copying data."""

    def __init__(self, layer) -> None:
        self.name = layer.name
        self.shape = tuple(int(s) for s in layer.data.shape)
        self.bands = self.shape[0]
        self.spatial_shape = self.shape[1:]


def _card_label(path: Path) -> str:
    try:
        c = wmod.read_card(path)
        return f"{path.stem} ({c.get('hs_bands')} HS / {c.get('ms_bands')} MS, ×{c.get('scale')})"
    except CubeError:
        return path.stem


def _recipe_json(kw: dict[str, Any]) -> dict[str, Any]:
    """``simulate_pair`` keyword arguments as JSON (for the weights card)."""
    out = dict(kw)
    srf = out.get("srf")
    if isinstance(srf, np.ndarray):
        out["srf"] = {"name": "matrix", "matrix": srf.tolist()}
    elif isinstance(srf, str):
        out["srf"] = {"name": srf}
    if out.get("psf") is not None:
        out["psf"] = PSF.parse(out["psf"]).to_json()
    return out


# ---------------------------------------------------------------------------- the widget
class FusionWidget(QWidget):
    """Pair selection, simulation, fusion and fine-tuning (see the module docstring).

    Attributes for scripting and tests: ``worker`` (the running worker or None),
    ``fusion_worker`` / ``finetune_worker`` (the last of each), ``scale`` (the pair's scale or
    None), ``finetuned_model`` / ``finetuned_info``, ``loss_steps`` / ``loss_values``,
    ``last_result_layer``.
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.fusion_worker = None
        self.finetune_worker = None
        self.scale: int | None = None
        self.finetuned_model = None
        self.finetuned_info: dict[str, Any] = {}
        self.loss_steps: list[int] = []
        self.loss_values: list[float] = []
        self.last_result_layer = None
        self._extra_weights: list[Path] = []
        self._user_pair = False
        self._job_gen: Iterator[Any] | None = None
        self._job_kind = ""
        self._job_error = False
        self._cancel = threading.Event()
        self._pbar = None
        self._job: dict[str, Any] = {}
        self._job_report: dict[str, Any] | None = None
        self._degradation_key: tuple | None = None
        self.degradation_report: dict[str, Any] | None = None
        self._build_ui()
        ev = self.viewer.layers.events
        ev.inserted.connect(self._on_inserted)
        ev.removed.connect(self._on_layers_changed)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._on_layers_changed)
        self.refresh_layers()
        self._rebuild_weights()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        root = QVBoxLayout(self)

        pair = QGroupBox("Pair")
        f = QFormLayout(pair)
        self.lr_combo, self.msi_combo, self.ref_combo = QComboBox(), QComboBox(), QComboBox()
        for c, label in ((self.lr_combo, "LRHSI"), (self.msi_combo, "HRMSI"), (self.ref_combo, "Reference")):
            c.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            c.currentIndexChanged.connect(self._update_pair)
            c.activated.connect(self._user_picked)
            f.addRow(label, c)
        self.pair_info = QLabel()
        self.pair_info.setWordWrap(True)
        self.pair_message = QLabel()
        self.pair_message.setWordWrap(True)
        self.pair_message.setStyleSheet(ERROR_STYLE)
        f.addRow(self.pair_info)
        f.addRow(self.pair_message)
        root.addWidget(pair)

        sim = QGroupBox("Simulate from reference")
        f = QFormLayout(sim)
        self.sim_ref_combo = QComboBox()
        self.sim_ref_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(2, 64)
        self.scale_spin.setValue(4)
        self.psf_combo = QComboBox()
        self.psf_combo.addItems(["weak", "wald"])
        self.srf_combo = QComboBox()
        self.srf_combo.addItems(srf_presets())
        self.snr_spin = QDoubleSpinBox()
        self.snr_spin.setRange(0.0, 100.0)
        self.snr_spin.setSingleStep(5.0)
        self.snr_spin.setSuffix(" dB")
        self.snr_spin.setSpecialValueText("no noise")
        self.simulate_button = QPushButton("Simulate pair")
        self.simulate_button.clicked.connect(self.simulate)
        f.addRow("Reference", self.sim_ref_combo)
        f.addRow("Scale", self.scale_spin)
        f.addRow("PSF", self.psf_combo)
        f.addRow("SRF", self.srf_combo)
        f.addRow("SNR", self.snr_spin)
        f.addRow(self.simulate_button)
        root.addWidget(sim)

        run = QGroupBox("Run")
        f = QFormLayout(run)
        self.method_combo = QComboBox()
        self.method_combo.addItems(methods.method_names())
        if "glp-hs" in methods.method_names():
            self.method_combo.setCurrentText("glp-hs")
        self.method_combo.currentTextChanged.connect(self._method_changed)
        self.weights_combo = QComboBox()
        self.weights_combo.activated.connect(lambda _i: self._weights_activated(self.weights_combo))
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run_fusion)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_combo.setToolTip("Where CoFusion runs and fine-tunes: the CPU, or a CUDA GPU where torch sees one")
        self.consistency_combo = QComboBox()
        self.consistency_combo.addItems(["auto", "on", "off"])
        self.consistency_combo.setToolTip(
            "Project the result onto the LRHSI and HRMSI it came from, so that blurring and decimating it gives the "
            "LRHSI and the SRF gives the HRMSI. auto: only when the PSF and an SRF fitted to the pair explain the pair "
            "(simulated pairs, clean data); off for noisy or real pairs the model does not fit. Set to each method's "
            "default when the method changes (auto for CoFusion, off for the baselines).")
        f.addRow("Method", self.method_combo)
        f.addRow("Weights", self.weights_combo)
        f.addRow("Device", self.device_combo)
        f.addRow("Consistency", self.consistency_combo)
        f.addRow(self.run_button)
        root.addWidget(run)

        ft = QGroupBox("Fine-tune CoFusion")
        f = QFormLayout(ft)
        self.ft_weights_combo = QComboBox()
        self.ft_weights_combo.activated.connect(lambda _i: self._weights_activated(self.ft_weights_combo))
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1_000_000)
        self.steps_spin.setValue(100)  # selfsup.DEFAULT_STEPS (tests check they agree)
        self.lr_edit = QLineEdit("2e-4")  # selfsup.DEFAULT_LR
        self.patch_spin = QSpinBox()
        self.patch_spin.setRange(8, 1024)
        self.patch_spin.setSingleStep(8)
        self.patch_spin.setValue(64)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.clicked.connect(self.start_finetune)
        self.save_button = QPushButton("Save weights…")
        self.save_button.clicked.connect(lambda: self.save_weights())
        self.save_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.finetune_button)
        buttons.addWidget(self.save_button)
        f.addRow("Start from", self.ft_weights_combo)
        f.addRow("Steps", self.steps_spin)
        f.addRow("Learning rate", self.lr_edit)
        f.addRow("Patch", self.patch_spin)
        f.addRow("Batch", self.batch_spin)
        # without a reference layer: degradations estimated from the pair, or presets
        self.ft_psf_combo = QComboBox()
        self.ft_psf_combo.addItems([EST, "weak", "wald"])
        self.ft_psf_combo.setToolTip("PSF for scene-only fine-tuning (no reference): estimated from the pair or a preset")
        self.ft_srf_combo = QComboBox()
        self.ft_srf_combo.addItems([EST, *srf_presets()])
        self.ft_srf_combo.setToolTip("SRF for scene-only fine-tuning (no reference): estimated from the pair or a preset")
        self.estimate_button = QPushButton("Estimate PSF / SRF")
        self.estimate_button.setToolTip("Estimate the blur, decimation phase and spectral response from the pair alone")
        self.estimate_button.clicked.connect(self.estimate_degradations)
        f.addRow("PSF (no ref.)", self.ft_psf_combo)
        f.addRow("SRF (no ref.)", self.ft_srf_combo)
        f.addRow(self.estimate_button)
        self._build_loss_plot()
        self._build_degradation_plot()
        f.addRow(self.deg_canvas)
        f.addRow(buttons)
        f.addRow(self.loss_canvas)
        root.addWidget(ft)

        bottom = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        bottom.addWidget(self.progress_bar)
        bottom.addWidget(self.cancel_button)
        root.addLayout(bottom)
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(ERROR_STYLE)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.status_label)
        root.addWidget(self.error_label)
        root.addStretch(1)
        self._method_changed(self.method_combo.currentText())

    def _build_loss_plot(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        fg, bg = "#f0f1f2", "#262930"
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(self.viewer.theme)
            fg, bg = theme.text.as_hex(), theme.background.as_hex()
        except Exception:  # noqa: BLE001 - colours are cosmetic
            pass
        self._plot_colours = (fg, bg)
        fig = Figure(figsize=(3.2, 2.0), tight_layout=True, facecolor=bg)
        ax = fig.add_subplot(111)
        ax.set_facecolor(bg)
        ax.set_yscale("log")
        ax.set_xlabel("step", color=fg)
        ax.set_ylabel("loss", color=fg)
        ax.tick_params(colors=fg, which="both", labelsize=7)
        for s in ax.spines.values():
            s.set_color(fg)
        (self._loss_line,) = ax.plot([], [], color="#4fa3e0", lw=1.2)
        ax.set_xlim(0, 1)  # until the first step: an empty [0, 1] axis, not matplotlib's default ±0.05
        ax.set_ylim(1e-4, 1e-1)
        self._loss_ax = ax
        self.loss_canvas = FigureCanvasQTAgg(fig)
        self.loss_canvas.setMinimumHeight(150)
        self.loss_canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def _build_degradation_plot(self) -> None:
        """Two small axes: the SRF rows against wavelength, and the PSF kernel."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.2, 1.8), tight_layout=True, facecolor=self._plot_colours[1])
        self._deg_axes = (fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2))
        self.deg_canvas = FigureCanvasQTAgg(fig)
        self.deg_canvas.setMinimumHeight(130)
        self.deg_canvas.setVisible(False)
        self.degradation = None

    def _draw_degradation(self) -> None:
        deg = self.degradation
        fg, bg = self._plot_colours
        ax_r, ax_k = self._deg_axes
        for ax in (ax_r, ax_k):
            ax.clear()
            ax.set_facecolor(bg)
            ax.tick_params(colors=fg, labelsize=6)
            for sp in ax.spines.values():
                sp.set_color(fg)
        wl = deg.hs_wavelengths
        x = np.asarray(wl) if wl is not None else np.arange(deg.srf.shape[1])
        for i, row in enumerate(deg.srf):
            ax_r.plot(x, row, lw=1.0, label=f"MS {i}")
        ax_r.set_xlabel("wavelength (nm)" if wl is not None else "HS band", color=fg, fontsize=7)
        ax_r.set_title("SRF" + (" (estimated)" if deg.srf_estimated else ""), color=fg, fontsize=7)
        ax_k.imshow(deg.kernel, cmap="magma")
        ax_k.set_xticks([])
        ax_k.set_yticks([])
        title = f"PSF σ {deg.sigma:.2f}" if deg.sigma is not None else "PSF"
        ax_k.set_title(title + f", phase {deg.phase}", color=fg, fontsize=7)
        self.deg_canvas.setVisible(True)
        self.deg_canvas.draw_idle()

    def _redraw_loss(self) -> None:
        self._loss_line.set_data(self.loss_steps, [max(v, 1e-8) for v in self.loss_values])
        if self.loss_steps:
            self._loss_ax.autoscale(enable=True)  # the placeholder limits switched it off
            self._loss_ax.relim()
            self._loss_ax.autoscale_view()
        self.loss_canvas.draw_idle()

    # ------------------------------------------------------------------ layers and the pair
    def _on_inserted(self, event) -> None:
        event.value.events.name.connect(self._on_layers_changed)
        self.refresh_layers()

    def _on_layers_changed(self, _event=None) -> None:
        self.refresh_layers()

    def _user_picked(self, _index: int) -> None:
        self._user_pair = True

    def _layer(self, combo: QComboBox):
        key = combo.currentData()
        if key is None:
            return None
        for layer in self.viewer.layers:
            if _key(layer) == key:
                return layer
        return None

    def refresh_layers(self) -> None:
        """Refill the layer combos (keeping selections) and, until the user picks a pair, guess it."""
        layers = cube_layers(self.viewer)
        combos = ((self.lr_combo, False), (self.msi_combo, False), (self.ref_combo, True), (self.sim_ref_combo, False))
        for combo, with_none in combos:
            keep = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            if with_none:
                combo.addItem(NONE, None)
            for layer in layers:
                combo.addItem(layer.name, _key(layer))
            idx = combo.findData(keep) if keep is not None else -1
            combo.setCurrentIndex(idx if idx >= 0 else 0)
            combo.blockSignals(False)
        if not self._user_pair:
            self._guess_pair(layers)
        if self.sim_ref_combo.currentData() is None or self._layer(self.sim_ref_combo) is None:
            self._select(self.sim_ref_combo, max(layers, key=lambda l: (l.data.shape[0], l.data.size), default=None))
        self._update_pair()

    def _guess_pair(self, layers: list) -> None:
        """The most recently added (LRHSI, HRMSI) pair that check_pair accepts (fusion results are
        not candidates), and a reference of the LRHSI's band count at the HRMSI's size (the current
        one when it still fits, else the first such layer that is not a fusion result)."""
        inputs = [l for l in layers if "method" not in l.metadata]
        fits = lambda c, a, b: not same_layer(c, a) and not same_layer(c, b) and c.data.shape[0] == a.data.shape[0] \
            and tuple(c.data.shape[1:]) == tuple(b.data.shape[1:])  # noqa: E731
        for a in reversed(inputs):
            for b in reversed(inputs):
                if same_layer(a, b):
                    continue
                try:
                    methods.check_pair(_LayerShape(a), _LayerShape(b))
                except CubeError:
                    continue
                ref = self._layer(self.ref_combo)
                if ref is None or not fits(ref, a, b):
                    ref = next((c for c in inputs if fits(c, a, b)), None)
                self._select(self.lr_combo, a)
                self._select(self.msi_combo, b)
                self._select(self.ref_combo, ref)
                return
        if len(layers) >= 2 and same_layer(self._layer(self.lr_combo), self._layer(self.msi_combo)):
            self._select(self.lr_combo, max(layers, key=lambda l: l.data.shape[0]))
            self._select(self.msi_combo, min(layers, key=lambda l: l.data.shape[0]))

    @staticmethod
    def _select(combo: QComboBox, layer) -> None:
        idx = combo.findData(None if layer is None else _key(layer))
        if idx >= 0:
            combo.setCurrentIndex(idx)

    def set_pair(self, lr, msi, reference=None) -> None:
        """Select layers (objects or names) as the pair and the optional reference."""
        get = lambda x: self.viewer.layers[x] if isinstance(x, str) else x  # noqa: E731
        self._user_pair = True
        self._select(self.lr_combo, get(lr))
        self._select(self.msi_combo, get(msi))
        self._select(self.ref_combo, None if reference is None else get(reference))
        self._update_pair()

    def _update_pair(self, *_: Any) -> None:
        lr, msi, ref = self._layer(self.lr_combo), self._layer(self.msi_combo), self._layer(self.ref_combo)
        self.scale = None
        info, problem, note = "", "", ""
        if lr is None or msi is None:
            info = "Load or simulate an LRHSI and an HRMSI layer."
        elif same_layer(lr, msi):
            problem = "Choose two different layers for the LRHSI and the HRMSI."
        else:
            a, b = _LayerShape(lr), _LayerShape(msi)
            info = (f"LRHSI: {a.bands} bands, {a.shape[1]}×{a.shape[2]} · "
                    f"HRMSI: {b.bands} bands, {b.shape[1]}×{b.shape[2]}")
            try:
                self.scale = methods.check_pair(a, b)
                info += f" · scale ×{self.scale}"
            except CubeError as exc:
                problem = str(exc)
            if ref is not None and self.scale:
                r = _LayerShape(ref)
                info += f" · reference: {r.bands} bands, {r.shape[1]}×{r.shape[2]}"
                if r.bands != a.bands or r.spatial_shape != b.spatial_shape:
                    note = (f"The reference '{r.name}' ({r.bands} bands, {r.shape[1]}×{r.shape[2]}) does not match "
                            f"the pair ({a.bands} bands at {b.shape[1]}×{b.shape[2]}).")
        self.pair_info.setText(info + (f"\n{note}" if note else ""))
        self.pair_info.setStyleSheet(NOTE_STYLE if note else "")
        self.pair_message.setText(problem)
        self._update_buttons()

    @property
    def pair_valid(self) -> bool:
        return self.scale is not None

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def _update_buttons(self) -> None:
        busy = self.busy
        self.run_button.setEnabled(self.pair_valid and not busy)
        self.finetune_button.setEnabled(not busy)
        self.estimate_button.setEnabled(self.pair_valid and not busy)
        self.simulate_button.setEnabled(not busy)
        self.save_button.setEnabled(self.finetuned_model is not None and not busy)
        self.cancel_button.setEnabled(busy)

    # ------------------------------------------------------------------ weights choices
    def _method_changed(self, name: str) -> None:
        try:
            method = methods.get_method(name)
        except CubeError:
            self.weights_combo.setEnabled(False)
            return
        self.weights_combo.setEnabled(method.needs_weights)
        self.consistency_combo.setCurrentText(method.consistency)

    def _weights_entries(self, with_new: bool) -> list[tuple[str, str]]:
        entries = [(W_NEW, "new")] if with_new else []
        entries.append((W_SHIPPED, "shipped"))
        seen = set()
        for p in [*wmod.list_weights(), *self._extra_weights]:
            key = str(Path(p).resolve())
            if key not in seen:
                seen.add(key)
                entries.append((_card_label(Path(p)), f"path:{p}"))
        if self.finetuned_model is not None:
            entries.append((W_SESSION, "session"))
        entries.append((W_BROWSE, "browse"))
        return entries

    def _rebuild_weights(self) -> None:
        for combo, with_new in ((self.weights_combo, False), (self.ft_weights_combo, True)):
            keep = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for label, key in self._weights_entries(with_new):
                combo.addItem(label, key)
            idx = combo.findData(keep) if keep not in (None, "browse") else -1
            combo.setCurrentIndex(idx if idx >= 0 else combo.findData("shipped"))
            combo.setProperty("last_index", combo.currentIndex())
            combo.blockSignals(False)

    def _weights_activated(self, combo: QComboBox) -> None:
        if combo.currentData() != "browse":
            combo.setProperty("last_index", combo.currentIndex())
            return
        path, _ = QFileDialog.getOpenFileName(self, "CoFusion weights", str(wmod.shipped_weights_dir()),
                                              "Weights (*.safetensors)")
        if path:
            which = ("run",) if combo is self.weights_combo else ("finetune",)
            if self.add_weights_path(path, select=which):
                return
        combo.setCurrentIndex(max(int(combo.property("last_index") or 0), 0))

    def add_weights_path(self, path: str | Path, select: Sequence[str] = ("run", "finetune")) -> bool:
        """Offer a ``.safetensors`` file (with its card) in both weights combos; select it in the
        Run combo and/or the fine-tune combo. Returns False (with a message) when it is unusable."""
        p = Path(path)
        if p.suffix != ".safetensors":
            p = p.with_suffix(".safetensors")
        try:
            if not p.is_file():
                raise CubeError(f"{p}: weights file not found")
            wmod.read_card(p)
        except CubeError as exc:
            self._fail(str(exc))
            return False
        if all(q.resolve() != p.resolve() for q in self._extra_weights):
            self._extra_weights.append(p)
        self._rebuild_weights()
        for name, combo in (("run", self.weights_combo), ("finetune", self.ft_weights_combo)):
            if name in select:
                for i in range(combo.count()):
                    key = combo.itemData(i)
                    if key and key.startswith("path:") and Path(key[5:]).resolve() == p.resolve():
                        combo.setCurrentIndex(i)
                        combo.setProperty("last_index", i)
        return True

    def _weights_choice(self, combo: QComboBox) -> tuple[str, Any]:
        key = combo.currentData() or "shipped"
        if key == "browse":
            raise CubeError("choose a weights file (Browse…) or another weights entry")
        if key == "session":
            if self.finetuned_model is None:
                raise CubeError("no model was fine-tuned in this session")
            return "session", self.finetuned_model
        if key.startswith("path:"):
            return "path", Path(key[5:])
        return key, None

    # ------------------------------------------------------------------ messages and workers
    def _fail(self, message: str) -> None:
        self.error_label.setText(message)
        show_error(message)

    def _status(self, message: str) -> None:
        self.status_label.setText(message)

    def _start(self, job: Iterator[Any], kind: str, desc: str, total: int) -> Any:
        from napari.qt.threading import thread_worker

        self.error_label.setText("")
        self._cancel.clear()
        self._job_gen, self._job_kind, self._job_error = job, kind, False
        worker = thread_worker(_drive, start_thread=False, ignore_errors=True)(job)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.progress_bar.setRange(0, max(total, 1))
        self.progress_bar.setValue(0)
        self._open_napari_progress(desc, total)
        self._update_buttons()
        worker.start()
        return worker

    def _open_napari_progress(self, desc: str, total: int) -> None:
        try:
            from napari.utils import progress

            self._pbar = progress(total=total, desc=desc)
        except Exception:  # noqa: BLE001 - napari's activity bar is a nicety
            self._pbar = None

    def _napari_progress(self, done: int, total: int) -> None:
        if self._pbar is None:
            return
        try:
            if self._pbar.total != total:
                self._pbar.total = total
            self._pbar.update(done - self._pbar.n)
        except Exception:  # noqa: BLE001
            pass

    def _close_napari_progress(self) -> None:
        if self._pbar is not None:
            try:
                self._pbar.close()
            except Exception:  # noqa: BLE001
                pass
            self._pbar = None

    def cancel(self) -> None:
        """Stop the running job at its next yield (fine-tuning: at the next step, keeping the model)."""
        if self.worker is None:
            return
        self._cancel.set()
        self._status("cancelling…")
        self.worker.quit()

    def _on_yielded(self, update: Any) -> None:
        if isinstance(update, Heartbeat):
            return
        if isinstance(update, Status):
            self._status(update.text)
            self.progress_bar.setRange(0, 0)  # busy until the steps start
            return
        if isinstance(update, Tiles):
            done, total = update.done, update.total
            self.progress_bar.setRange(0, max(total, 1))
            self.progress_bar.setValue(done)
            if self._job_kind == "fusion" and total > 1:
                self._status(f"{self._job.get('desc', 'fusing')}: tile {done}/{total}")
            self._napari_progress(done, total)  # last (see below)
            return
        item = update.progress  # a Step
        self.loss_steps.append(int(item.step))
        self.loss_values.append(float(item.loss))
        self._job["steps_done"] = int(item.step)
        self._job["final_loss"] = float(item.loss)
        self._job["seconds"] = round(float(item.elapsed), 1)
        self.progress_bar.setRange(0, max(int(item.total), 1))
        self.progress_bar.setValue(int(item.step))
        self._status(f"step {item.step}/{item.total} · loss {item.loss:.5f} · lr {item.lr:.2e} · {item.elapsed:.0f} s")
        self._redraw_loss()
        # last: napari's progress bar may process events, running a queued ``finished`` slot
        # inside this one; nothing here may overwrite what that slot shows
        self._napari_progress(int(item.step), int(item.total))

    def _on_returned(self, result: Any) -> None:
        if self._job_kind == "estimate" and result is not None:
            self.degradation = result
            self._degradation_key = self._job.get("key")
            self._status(result.describe())
            self._draw_degradation()
            return
        if self._job_kind != "fusion" or result is None or self._cancel.is_set():
            return
        try:
            cube = result.cube
            name = self._unique_name(f"{result.method} fused")
            cube.name = name
            cube.meta.update(self._job.get("result_meta", {}), seconds=round(float(result.seconds), 3))
            self.last_result_layer = add_cube(self.viewer, cube, name=name)
            note = ""
            if result.consistency and result.consistency.get("mode") != "off":
                from napari_cofusion.degrade.consistency import describe_consistency

                note = f"; consistency: {describe_consistency(result.consistency)}"
            self._status(f"{name}: {cube.bands} bands, {cube.shape[1]}×{cube.shape[2]} in {result.seconds:.1f} s{note}")
        except Exception as exc:  # noqa: BLE001 - never let a slot raise
            self._fail(f"could not add the result layer: {exc}")

    def _on_errored(self, exc: BaseException) -> None:
        self._job_error = True
        if isinstance(exc, Cancelled):
            return
        what = {"fusion": "fusion", "estimate": "estimating the degradations"}.get(self._job_kind, "fine-tuning")
        self._fail(f"{what} failed: {exc}")

    def _on_finished(self) -> None:
        job, self._job_gen = self._job_gen, None
        try:
            if job is not None:
                job.close()  # after a Cancel: runs the training loop's finally (model usable, eval mode)
        except Exception as exc:  # noqa: BLE001
            self._fail(f"while stopping: {exc}")
        cancelled = self._cancel.is_set()
        if self._job_kind == "finetune":
            self._finish_finetune(cancelled)
        elif cancelled:
            self._status("fusion cancelled")
        self._close_napari_progress()
        self.worker = None
        if self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
        self._update_buttons()

    def _unique_name(self, base: str) -> str:
        names = {layer.name for layer in self.viewer.layers}
        if base not in names:
            return base
        i = 1
        while f"{base} [{i}]" in names:
            i += 1
        return f"{base} [{i}]"

    # ------------------------------------------------------------------ simulate
    def simulate(self) -> tuple | None:
        """Simulate (LRHSI, HRMSI) from the chosen reference; add and select them. Returns the layers."""
        if self.busy:
            return None
        try:
            layer = self._layer(self.sim_ref_combo)
            if layer is None:
                raise CubeError("choose a reference cube layer to simulate from")
            ref = layer_cube(layer)
            snr = float(self.snr_spin.value()) or None
            pair = simulate_pair(ref, scale=int(self.scale_spin.value()), psf=self.psf_combo.currentText(),
                                 srf=self.srf_combo.currentText(), snr_db=snr, seed=0 if snr else None)
        except CubeError as exc:
            self._fail(str(exc))
            return None
        self.error_label.setText("")
        lr_layer = add_cube(self.viewer, pair.lr)
        msi_layer = add_cube(self.viewer, pair.msi)
        # the reference is cropped to a multiple of the scale; add the crop when that changed it
        ref_layer = layer if pair.reference.shape == ref.shape else add_cube(self.viewer, pair.reference)
        self.set_pair(lr_layer, msi_layer, ref_layer)
        dropped = pair.recipe.srf.get("dropped")
        self._status(f"simulated ×{pair.recipe.scale} with PSF {pair.recipe.psf_obj.describe()} and SRF "
                     f"{pair.recipe.srf['name']}" + (f" (bands outside the cube dropped: {', '.join(dropped)})"
                                                      if dropped else ""))
        return lr_layer, msi_layer, ref_layer

    # ------------------------------------------------------------------ run
    def run_fusion(self) -> Any:
        """Fuse the selected pair with the selected method in a worker; returns the worker (or None)."""
        if self.busy:
            return None
        if not self.pair_valid:
            self._fail(self.pair_message.text() or "select an LRHSI and an HRMSI layer first")
            return None
        method = self.method_combo.currentText()
        try:
            lr_layer, msi_layer = self._layer(self.lr_combo), self._layer(self.msi_combo)
            lr, msi = layer_cube(lr_layer), layer_cube(msi_layer)
            options: dict[str, Any] = {"consistency": self.consistency_combo.currentText()}
            meta: dict[str, Any] = {"inputs": [lr_layer.name, msi_layer.name]}
            if methods.get_method(method).needs_weights:
                options["device"] = self.device_combo.currentText()
                kind, value = self._weights_choice(self.weights_combo)
                if kind == "session":
                    options["model"] = value
                    meta["weights"] = "fine-tuned in this session"
                elif kind == "path":
                    options["weights"] = str(value)
                    meta["weights"] = str(value)
                else:
                    options["weights"] = None  # the shipped weights matching the band counts
                    meta["weights"] = "matching shipped weights"
        except CubeError as exc:
            self._fail(str(exc))
            return None
        self._job = {"desc": f"{method} fusion", "result_meta": meta}
        self._status(f"{method}: fusing…")
        worker = self._start(fusion_job(lr, msi, method, options, self._cancel), "fusion", f"{method} fusion", 1)
        self.fusion_worker = worker
        return worker

    # ------------------------------------------------------------------ fine-tune
    def _train_config(self):
        from napari_cofusion.learn.selfsup import scene_config

        try:
            lr = float(self.lr_edit.text())
        except ValueError:
            raise CubeError(f"learning rate {self.lr_edit.text()!r} is not a number") from None
        if not (lr > 0 and math.isfinite(lr)):
            raise CubeError(f"learning rate must be positive, got {lr}")
        steps = int(self.steps_spin.value())
        return scene_config(steps, lr, int(self.batch_spin.value()), int(self.patch_spin.value()), seed=0)

    @staticmethod
    def _patch_for(patch: int, scale: int) -> int:
        """The patch side rounded down to a multiple of lcm(8, scale) (whole LR pixels, and the
        network's three levels), at least one such multiple."""
        unit = math.lcm(8, int(scale))
        return max(unit, (int(patch) // unit) * unit)

    def _training_recipe(self, lr_layer) -> tuple[dict[str, Any], str]:
        """simulate_pair arguments: the LRHSI's recipe when it was simulated, else the Simulate group."""
        rec = None if lr_layer is None else lr_layer.metadata.get("recipe")
        if rec:
            return Recipe.from_json(dict(rec)).simulate_kwargs(), f"the recipe of '{lr_layer.name}'"
        snr = float(self.snr_spin.value()) or None
        kw = {"scale": int(self.scale_spin.value()), "psf": self.psf_combo.currentText(),
              "srf": self.srf_combo.currentText(), "snr_db": snr, "seed": 0 if snr else None}
        return kw, "the Simulate group's settings"

    def _model_for(self, hs: int, ms: int, scale: int, phase: int | None) -> tuple[Any, str]:
        """The model to fine-tune and a description of where it came from."""
        from napari_cofusion.learn.models import CoFusion, CoFusionConfig

        kind, value = self._weights_choice(self.ft_weights_combo)
        want = (hs, ms, scale)

        def new(why: str = "") -> tuple[Any, str]:
            cfg = CoFusionConfig(hs_bands=hs, ms_bands=ms, scale=scale, base="glp-hs", phase=phase)
            return CoFusion(cfg), "new model" + why

        if kind == "new":
            return new()
        if kind == "session":
            model = copy.deepcopy(value)
            got = (model.cfg.hs_bands, model.cfg.ms_bands, model.cfg.scale)
            if got != want:
                raise CubeError(f"the model fine-tuned in this session expects {got[0]} HS bands, {got[1]} MS bands "
                                f"at ×{got[2]}; this scene has {hs} HS bands, {ms} MS bands at ×{scale}")
            return model, "fine-tuned in this session"
        if kind == "path":
            path = value
        else:
            try:
                path = wmod.find_weights(hs, ms, scale)
            except CubeError:
                return new(f" (no shipped weights for {hs} HS / {ms} MS bands at ×{scale})")
        model, card = wmod.load_weights(path)
        got = (card.get("hs_bands"), card.get("ms_bands"), card.get("scale"))
        if got != want:
            raise CubeError(f"weights '{Path(path).stem}' expect {got[0]} HS bands, {got[1]} MS bands at ×{got[2]}; "
                            f"this scene has {hs} HS bands, {ms} MS bands at ×{scale} (choose {W_NEW})")
        return model, str(path)

    def _scene_degradation_choice(self) -> tuple[str | None, str | None]:
        psf = self.ft_psf_combo.currentText()
        srf = self.ft_srf_combo.currentText()
        return (None if psf == EST else psf), (None if srf == EST else srf)

    def _scene_key(self, psf: str | None, srf: str | None) -> tuple:
        return (_key(self._layer(self.lr_combo)), _key(self._layer(self.msi_combo)), psf, srf)

    def _scene_model(self, hs: int, ms: int, scale: int) -> tuple[Any, str]:
        """The model for a scene-only fine-tune: the chosen starting weights, adapted when their band
        counts differ (body kept, band-count layers re-initialised), or a new model."""
        from napari_cofusion.learn.selfsup import adapt_model

        kind, value = self._weights_choice(self.ft_weights_combo)
        start, origin = None, "new model"
        if kind == "session":
            start, origin = value, "fine-tuned in this session"
        elif kind == "path":
            start, _card = wmod.load_weights(value)
            origin = str(value)
        elif kind == "shipped":
            try:
                path = wmod.find_weights(hs, ms, scale)
            except CubeError:
                shipped = wmod.list_weights()
                path = shipped[0] if shipped else None
            if path is not None:
                start, _card = wmod.load_weights(path)
                origin = str(path)
        model, info = adapt_model(start, hs, ms, scale)
        if info["mode"] == "adapted":
            origin += f" (body kept, {len(info['reinitialised'])} band-count tensors re-initialised)"
        return model, origin

    def estimate_degradations(self) -> Any:
        """Estimate the pair's PSF and SRF (or apply the chosen presets) in a worker; the result is
        shown in the plot under the button and reused by the next scene-only fine-tune."""
        if self.busy:
            return None
        if not self.pair_valid:
            self._fail(self.pair_message.text() or "select an LRHSI and an HRMSI layer first")
            return None
        try:
            lr, msi = layer_cube(self._layer(self.lr_combo)), layer_cube(self._layer(self.msi_combo))
        except CubeError as exc:
            self._fail(str(exc))
            return None
        psf, srf = self._scene_degradation_choice()
        self._job = {"desc": "estimating the degradations", "key": self._scene_key(psf, srf)}
        return self._start(estimate_job(lr, msi, psf, srf), "estimate", "PSF / SRF estimation", 1)

    def start_finetune(self) -> Any:
        """Fine-tune CoFusion on the scene in a worker; returns the worker (or None)."""
        if self.busy:
            return None
        ref_layer = self._layer(self.ref_combo)
        lr_layer, msi_layer = self._layer(self.lr_combo), self._layer(self.msi_combo)
        device = self.device_combo.currentText()
        try:
            cfg = self._train_config()
            recipe: dict[str, Any] = {}
            if ref_layer is not None:
                ref = layer_cube(ref_layer)
                recipe, recipe_from = self._training_recipe(lr_layer if self.pair_valid else None)
                scale = int(recipe["scale"])
                if self.pair_valid and scale != self.scale:
                    raise CubeError(f"the training recipe ({recipe_from}) is ×{scale} but the pair is ×{self.scale}")
                ms = int(get_srf(recipe["srf"]).matrix_for(ref.bands, ref.wavelengths).shape[0])
                if self.pair_valid:
                    a, b = _LayerShape(lr_layer), _LayerShape(msi_layer)
                    if (ref.bands, ms) != (a.bands, b.bands):
                        raise CubeError(
                            f"the reference '{ref.name}' gives {ref.bands} HS and {ms} MS bands under {recipe_from}, "
                            f"but the pair has {a.bands} HS and {b.bands} MS bands"
                        )
                cfg.patch = self._patch_for(cfg.patch, scale)
                model, origin = self._model_for(ref.bands, ms, scale, recipe.get("phase"))
                job = finetune_job(model, ref, recipe, cfg, device=device)
                source = {"reference_layer": ref_layer.name, "recipe": _recipe_json(recipe), "recipe_from": recipe_from,
                          "scenes": f"{len(DIHEDRAL_VARIANTS)} dihedral variants of the reference"}
                hs_wl = ref.wavelengths
            else:
                if not selfsup_available():
                    raise CubeError("scene-only fine-tuning (napari_cofusion.learn.selfsup) is not installed")
                if not self.pair_valid:
                    raise CubeError(self.pair_message.text() or "select an LRHSI and an HRMSI layer first")
                lr, msi = layer_cube(lr_layer), layer_cube(msi_layer)
                cfg.patch = self._patch_for(cfg.patch, int(self.scale))
                model, origin = self._scene_model(lr.bands, msi.bands, int(self.scale))
                psf, srf = self._scene_degradation_choice()
                report: dict[str, Any] = {}
                options = {"psf": psf, "srf": srf, "report": report}
                if self.degradation is not None and self._degradation_key == self._scene_key(psf, srf):
                    options["degradation"] = self.degradation  # already estimated for this pair
                job = finetune_job(model, None, None, cfg, lr=lr, msi=msi, scene_options=options, device=device)
                source = {"scene": [lr_layer.name, msi_layer.name],
                          "mode": "scene-only: reduced-resolution self-supervised fine-tune",
                          "consistency_weight": importlib.import_module("napari_cofusion.learn.selfsup").DEFAULT_CONSISTENCY,
                          "psf_choice": psf or "estimated", "srf_choice": srf or "estimated"}
                hs_wl = lr.wavelengths
                self._job_report = report
        except CubeError as exc:
            self._fail(str(exc))
            return None
        self.loss_steps.clear()
        self.loss_values.clear()
        self._redraw_loss()
        self._job = {
            "model": model, "origin": origin, "cfg": cfg, "source": source, "steps_done": 0,
            "hs_wavelengths": None if hs_wl is None else [float(w) for w in hs_wl],
            "psf": _recipe_json(recipe).get("psf"),
            "srf": _recipe_json(recipe).get("srf"),
            "started": time.time(), "device": device,
        }
        if ref_layer is not None:
            self._job_report = None
        self._status(f"fine-tuning ({origin}) for {cfg.steps} steps…")
        worker = self._start(job, "finetune", "CoFusion fine-tuning", cfg.steps)
        self.finetune_worker = worker
        return worker

    def _finish_finetune(self, cancelled: bool) -> None:
        ft = self._job
        done = int(ft.get("steps_done", 0))
        if self._job_error or done == 0:
            if cancelled and not self._job_error:
                self._status("fine-tuning cancelled before the first step; no model kept")
            return
        model, cfg = ft["model"], ft["cfg"]
        model.eval()
        report = self._job_report or {}
        deg = report.get("degradation")
        if deg is not None:  # scene-only: the degradations it trained with go with the model
            ft["psf"], ft["srf"] = deg["psf"], deg["srf"]
            model.psf = deg["psf"]
            ft["source"] = {**ft["source"], "degradation": deg, "reduced_l1_before": report.get("reduced_before"),
                            "reduced_l1_after": report.get("reduced_after"),
                            "consistency_patch": report.get("consistency_patch")}
            self.degradation_report = report
        self.finetuned_model = model
        self.finetuned_info = {
            "start_weights": ft["origin"], **ft["source"], "steps": cfg.steps, "steps_done": done,
            "stopped_early": done < cfg.steps, "lr": cfg.lr, "batch": cfg.batch, "patch": cfg.patch,
            "warmup": cfg.warmup, "seed": cfg.seed, "final_loss": ft.get("final_loss"), "seconds": ft.get("seconds"),
            "device": ft.get("device", "cpu"), "hs_wavelengths": ft.get("hs_wavelengths"), "psf": ft.get("psf"), "srf": ft.get("srf"),
        }
        self._rebuild_weights()
        idx = self.weights_combo.findData("session")
        if idx >= 0:
            self.weights_combo.setCurrentIndex(idx)
        what = "stopped" if done < cfg.steps else "finished"
        self._status(f"fine-tuning {what} after {done} steps (loss {ft.get('final_loss', float('nan')):.5f}); "
                     f"the model is offered as {W_SESSION}")

    def save_weights(self, path: str | Path | None = None) -> tuple[str, str] | None:
        """Write the session's fine-tuned model (safetensors + JSON card); never overwrites."""
        if self.finetuned_model is None:
            self._fail("nothing to save: fine-tune a model first")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Save fine-tuned weights", "cofusion_finetuned.safetensors", "Weights (*.safetensors)",
                options=QFileDialog.Option.DontConfirmOverwrite,
            )
            if not path:
                return None
        model, info = self.finetuned_model, self.finetuned_info
        cfg = model.cfg
        card = {
            "architecture": "cofusion",
            "config": cfg.to_json(),
            "hs_bands": cfg.hs_bands,
            "hs_wavelengths_nm": info.get("hs_wavelengths"),
            "ms_bands": cfg.ms_bands,
            "srf": info.get("srf"),
            "scale": cfg.scale,
            "psf": info.get("psf"),
            "protocol": None,
            "training": {k: v for k, v in info.items() if k not in ("hs_wavelengths", "psf", "srf")},
            "training_mode": "fine-tuned in the napari-cofusion Fusion widget",
        }
        try:
            paths = wmod.save_weights(model, path, card, overwrite=False)
        except CubeError as exc:
            self._fail(str(exc))
            return None
        self.error_label.setText("")
        self._extra_weights.append(Path(paths[0]))
        self._rebuild_weights()
        show_info(f"saved {paths[0]} and {Path(paths[1]).name}")
        self._status(f"saved {paths[0]}")
        return paths
