"""Quality dock widget: SAM map, full-reference metrics and per-band PSNR of a fused cube, or
the no-reference D_λ, D_s and QNR of a real pair.

Thin: every number comes from :mod:`napari_cofusion.core.metrics`, the PSF from
:class:`napari_cofusion.degrade.simulate.PSF`, the scale from :func:`napari_cofusion.degrade.simulate.infer_scale`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView, QComboBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSpinBox,
    QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from napari_cofusion.core import metrics
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.simulate import PSF, default_phase, infer_scale
from napari_cofusion.gui.base import ErrorLabel, LayerListWatcher, PlotPanel, cube_layer_names, layer_by_name, refill_combo, same_layer, scrollable
from napari_cofusion.gui.layers import cube_layers, layer_cube, layer_wavelengths

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["QualityWidget", "sam_layer_name", "fused_layers", "FULL_REFERENCE_ROWS", "NO_REFERENCE_ROWS"]

#: (metrics key, table label) in table order.
FULL_REFERENCE_ROWS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("sam", "SAM (°)"), ("ergas", "ERGAS"),
                       ("rmse", "RMSE"), ("cc", "CC"))
NO_REFERENCE_ROWS = (("d_lambda", "D_λ"), ("d_s", "D_s"), ("qnr", "QNR"))
PSF_PRESETS = ("weak", "wald", "dhif")


def sam_layer_name(fused: str, ref: str) -> str:
    return f"SAM {fused} vs {ref}"


def fused_layers(viewer: "napari.Viewer") -> list:
    """The cube layers holding a fusion result (their metadata names the ``method``)."""
    return [l for l in cube_layers(viewer) if "method" in l.metadata]


def _compare(cubes: list, ref, scale: int) -> list[tuple[str, dict[str, float] | str]]:
    """(layer name, metrics or the reason there are none) per fused cube; runs in a worker."""
    rows = []
    for name, z in cubes:
        if z.shape != ref.shape:
            rows.append((name, f"shape {z.shape} differs from the reference's {ref.shape}"))
            continue
        rows.append((name, dict(metrics.full_reference(z, ref, scale))))
    return rows


def _show_colorbar(layer) -> None:
    """Show napari's colour bar (napari ≥ 0.5) beside a map layer (SAM in degrees)."""
    try:
        layer.colorbar.visible = True
    except AttributeError:  # an older napari: no colour bars
        pass


class QualityWidget(QWidget):
    """Compare a fused cube with a reference (SAM map, PSNR/SSIM/SAM/ERGAS/RMSE/CC, per-band
    PSNR) or, without one, with its LRHSI and HRMSI (D_λ, D_s, QNR)."""

    def __init__(self, napari_viewer: "napari.Viewer", parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.results: dict[str, float] = {}
        self.mode: str | None = None  # "full-reference" / "no-reference" after a computation
        self.psnr_per_band: np.ndarray | None = None
        self.psnr_x: np.ndarray | None = None
        self.psnr_xlabel = "band"
        self.psnr_line = None
        self.sam_layer = None
        self._plot_title = ""

        self.fused_combo = QComboBox()
        self.ref_combo = QComboBox()
        self.lr_combo = QComboBox()
        self.ms_combo = QComboBox()
        self.fused_combo.setToolTip("The fused (high-resolution hyperspectral) cube to assess")
        self.ref_combo.setToolTip("The true high-resolution cube, when there is one (simulated pairs)")
        self.lr_combo.setToolTip("The LRHSI: gives the scale, and is needed for QNR")
        self.ms_combo.setToolTip("The HRMSI: needed for QNR")
        self.psf_combo = QComboBox()
        self.psf_combo.addItems(PSF_PRESETS)
        self.psf_combo.setToolTip("The blur relating the LRHSI to the scene (PROTOCOL.md presets), for QNR")
        self.scale_spin = QSpinBox()
        self.scale_spin.setRange(1, 64)
        self.scale_spin.setValue(4)
        self.scale_spin.setPrefix("×")
        self.scale_spin.setToolTip("Resolution ratio (used by ERGAS) when no LRHSI is chosen")
        self.scale_label = QLabel("")
        self.scale_label.setWordWrap(True)
        self.compute_button = QPushButton("Compute")
        self.error = ErrorLabel()
        self.sam_label = QLabel("")
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["metric", "value"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(150)
        self.plot = PlotPanel(napari_viewer, redraw=self._draw_plot, parent=self)
        # every fused layer against the reference, side by side (computed in a worker)
        self.compare_button = QPushButton("Compare all fused layers")
        self.compare_button.setToolTip("One row per fused layer (metadata with a method) against the chosen reference")
        self.compare_button.clicked.connect(lambda: self.compare())
        self.compare_table = QTableWidget(0, 1 + len(FULL_REFERENCE_ROWS))
        self.compare_table.setHorizontalHeaderLabels(["layer", *(label for _k, label in FULL_REFERENCE_ROWS)])
        self.compare_table.verticalHeader().setVisible(False)
        self.compare_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.compare_table.setSortingEnabled(False)
        self.compare_table.setMinimumHeight(110)
        self.compare_rows: dict[str, dict[str, float] | str] = {}
        self.compare_worker = None
        # the fused layers and the reference in napari's grid, each in its own view (toggled)
        self.side_button = QPushButton("Side by side")
        self.side_button.setCheckable(True)
        self.side_button.setToolTip("Show the reference and every fused layer next to each other (napari's grid "
                                    "view; the other layers hidden until you toggle it off)")
        self.side_button.toggled.connect(self.side_by_side)
        self._before_grid: tuple[bool, dict[int, bool]] | None = None

        form = QFormLayout()
        form.addRow("fused", self.fused_combo)
        form.addRow("reference", self.ref_combo)
        form.addRow("LRHSI", self.lr_combo)
        form.addRow("HRMSI", self.ms_combo)
        form.addRow("PSF", self.psf_combo)
        scale_row = QHBoxLayout()
        scale_row.addWidget(self.scale_spin)
        scale_row.addWidget(self.scale_label, 1)
        form.addRow("scale", scale_row)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.compute_button)
        lay.addWidget(self.error)
        lay.addWidget(self.sam_label)
        lay.addWidget(self.table)
        lay.addWidget(self.compare_button)
        lay.addWidget(self.compare_table)
        lay.addWidget(self.side_button)
        lay.addWidget(self.plot, 1)

        self.compute_button.clicked.connect(self.compute)
        for combo in (self.fused_combo, self.lr_combo):
            combo.currentTextChanged.connect(self._update_scale)
        self.lr_combo.currentTextChanged.connect(self._psf_from_recipe)

        # combos the user picked from keep their choice; the others follow the layer list's best guess
        self._user_picked: set[str] = set()
        for key, combo in (("fused", self.fused_combo), ("ref", self.ref_combo), ("lr", self.lr_combo),
                           ("ms", self.ms_combo)):
            combo.activated.connect(lambda _i, k=key: self._user_picked.add(k))
        self._watcher = LayerListWatcher(napari_viewer, self._refresh_layers)
        self._refresh_layers()
        self._draw_plot()
        scrollable(self)  # the dock scrolls instead of growing the window (gui.base)

    # ---------------------------------------------------------------- layer choice
    def _layer(self, combo: QComboBox):
        return layer_by_name(self.viewer, combo.currentText())

    def _refresh_layers(self) -> None:
        names = cube_layer_names(self.viewer)
        picked = self._user_picked
        refill_combo(self.fused_combo, names, prefer=self._prefer_fused, sticky="fused" in picked)
        refill_combo(self.ref_combo, names, none_option=True, prefer=self._prefer_ref, sticky="ref" in picked)
        refill_combo(self.lr_combo, names, none_option=True, prefer=self._prefer_lr, sticky="lr" in picked)
        refill_combo(self.ms_combo, names, none_option=True, prefer=self._prefer_ms, sticky="ms" in picked)
        self._update_scale()

    def _prefer_fused(self, names: list[str]) -> str | None:
        by_name = {l.name: l for l in cube_layers(self.viewer)}
        fused = [n for n in names if "fused" in n.lower() or "method" in getattr(by_name.get(n), "metadata", {})]
        return fused[-1] if fused else None

    def _hr_shape(self):
        f = self._layer(self.fused_combo)
        return None if f is None else tuple(f.data.shape)

    def _prefer_ref(self, names: list[str]) -> str | None:
        shape = self._hr_shape()
        for layer in cube_layers(self.viewer):
            if "reference" in layer.name.lower() and (shape is None or tuple(layer.data.shape) == shape):
                return layer.name
        # else an input cube (not a fusion result) of the fused cube's shape
        fused = self._layer(self.fused_combo)
        for layer in cube_layers(self.viewer):
            if (shape is not None and tuple(layer.data.shape) == shape and "method" not in layer.metadata
                    and "fused" not in layer.name.lower() and not same_layer(layer, fused)):
                return layer.name
        return None

    def _prefer_lr(self, names: list[str]) -> str | None:
        shape = self._hr_shape()
        if shape is None:
            return None
        best = None
        for layer in cube_layers(self.viewer):
            s = layer.data.shape
            if s[1] < shape[1] and shape[1] % s[1] == 0 and shape[2] % s[2] == 0 and s[0] == shape[0]:
                if best is None or s[0] > best.data.shape[0]:
                    best = layer
        return None if best is None else best.name

    def _prefer_ms(self, names: list[str]) -> str | None:
        shape = self._hr_shape()
        if shape is None:
            return None
        cands = [l for l in cube_layers(self.viewer) if tuple(l.data.shape[1:]) == shape[1:] and l.data.shape[0] < shape[0]]
        return min(cands, key=lambda l: l.data.shape[0]).name if cands else None

    def _psf_from_recipe(self, _name: str = "") -> None:
        lr = self._layer(self.lr_combo)
        kind = ((lr.metadata.get("recipe") or {}).get("psf") or {}).get("kind") if lr is not None else None
        if kind in PSF_PRESETS:
            self.psf_combo.setCurrentText(kind)

    def _update_scale(self, _name: str = "") -> None:
        fused, lr = self._layer(self.fused_combo), self._layer(self.lr_combo)
        self.scale_spin.setEnabled(lr is None)
        if lr is None:
            self.scale_label.setText("(choose an LRHSI to infer it)")
            return
        if fused is None:
            self.scale_label.setText("")
            return
        try:
            s = infer_scale(lr.data.shape, fused.data.shape)
        except CubeError as exc:
            self.scale_label.setText(f"cannot infer: {exc}")
            return
        self.scale_label.setText(
            f"inferred ×{s}: LRHSI {lr.data.shape[1]}×{lr.data.shape[2]} → {fused.data.shape[1]}×{fused.data.shape[2]}")

    def scale(self) -> int:
        """The scale for ERGAS and QNR: fused H / LRHSI H when an LRHSI is chosen (checked), else the spin box."""
        fused, lr = self._layer(self.fused_combo), self._layer(self.lr_combo)
        if lr is None or fused is None:
            return int(self.scale_spin.value())
        try:
            return infer_scale(lr.data.shape, fused.data.shape)
        except CubeError as exc:
            raise CubeError(f"'{lr.name}' and '{fused.name}': {exc}") from None

    # ---------------------------------------------------------------- compute
    def compute(self) -> dict[str, float] | None:
        """Compute for the chosen layers; errors go to the red label and a napari notification."""
        self.error.clear_message()
        try:
            fused = self._layer(self.fused_combo)
            if fused is None:
                raise CubeError("choose the fused cube to assess")
            ref, lr, ms = self._layer(self.ref_combo), self._layer(self.lr_combo), self._layer(self.ms_combo)
            if ref is not None:
                return self._full_reference(fused, ref)
            if lr is not None and ms is not None:
                return self._no_reference(fused, lr, ms)
            raise CubeError("choose a reference layer, or an LRHSI and an HRMSI layer for the no-reference QNR")
        except CubeError as exc:
            self.error.show_message(str(exc))
        except Exception as exc:  # noqa: BLE001 - a widget shows the problem, never a traceback
            self.error.show_message(f"could not compute the metrics: {type(exc).__name__}: {exc}")
        return None

    def _full_reference(self, fused, ref) -> dict[str, float]:
        z, x = layer_cube(fused), layer_cube(ref)
        if z.shape != x.shape:
            raise CubeError(
                f"'{fused.name}' {z.shape} and reference '{ref.name}' {x.shape} differ in shape: the reference "
                "must be the high-resolution cube the fusion estimates (same bands, rows and columns)")
        s = self.scale()
        sam_map = metrics.sam_map(z, x)
        mean_sam = metrics.sam(z, x)
        res = metrics.full_reference(z, x, s)
        self.psnr_per_band = metrics.psnr_per_band(z, x)
        wl = layer_wavelengths(fused)
        if wl is None:
            wl = layer_wavelengths(ref)
        self.psnr_x = wl if wl is not None else np.arange(z.bands, dtype=float)
        self.psnr_xlabel = "wavelength (nm)" if wl is not None else "band"
        self._plot_title = f"{fused.name} vs {ref.name}"
        self.sam_layer = self._show_sam(fused, ref, sam_map, mean_sam)
        self.sam_label.setText(f"mean SAM: {mean_sam:.3f}°  (scale ×{s})")
        self.results, self.mode = dict(res), "full-reference"
        self._fill_table(FULL_REFERENCE_ROWS)
        self._draw_plot()
        return self.results

    def _no_reference(self, fused, lr, ms) -> dict[str, float]:
        z, l, m = layer_cube(fused), layer_cube(lr), layer_cube(ms)
        s = self.scale()
        recipe = lr.metadata.get("recipe") or {}
        psf = PSF.parse(self.psf_combo.currentText())
        phase = recipe.get("phase") if recipe.get("scale") == s else default_phase(psf, s)
        kernel = psf.kernel(s)
        res = metrics.no_reference(z, l, m, kernel, s, phase=phase)
        self.psnr_per_band = self.psnr_x = None
        self._plot_title = ""
        self.sam_label.setText(f"no reference: QNR of '{fused.name}' against its LRHSI and HRMSI (×{s}, "
                               f"PSF {self.psf_combo.currentText()})")
        self.results, self.mode = dict(res), "no-reference"
        self._fill_table(NO_REFERENCE_ROWS)
        self._draw_plot()
        return self.results

    def _show_sam(self, fused, ref, sam_map: np.ndarray, mean_sam: float):
        name = sam_layer_name(fused.name, ref.name)
        finite = sam_map[np.isfinite(sam_map)]
        hi = float(np.percentile(finite, 99)) if finite.size else 1.0
        if not np.isfinite(hi) or hi <= 0:
            hi = 1.0
        meta = {"mean_sam_deg": float(mean_sam), "sam_of": [fused.name, ref.name]}
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = sam_map
            layer.metadata.update(meta)
            layer.contrast_limits = (0.0, hi)
            _show_colorbar(layer)
            return layer
        layer = self.viewer.add_image(
            sam_map, name=name, colormap="magma", contrast_limits=(0.0, hi), metadata=meta,
            scale=tuple(fused.scale[-2:]), translate=tuple(fused.translate[-2:]),
        )
        _show_colorbar(layer)
        return layer

    # ---------------------------------------------------------------- every fused layer
    def compare(self):
        """Fill the comparison table: every fused layer against the chosen reference, computed in a
        worker (the GUI stays responsive); returns the worker (None with a message when it cannot)."""
        from napari.qt.threading import create_worker

        self.error.clear_message()
        if self.compare_worker is not None:
            return None
        try:
            ref_layer = self._layer(self.ref_combo)
            if ref_layer is None:
                raise CubeError("choose a reference layer to compare the fused layers against")
            layers = [l for l in fused_layers(self.viewer) if not same_layer(l, ref_layer)]
            if not layers:
                raise CubeError("no fused layer to compare: run a fusion in the Fusion dock first")
            ref = layer_cube(ref_layer)
            cubes = [(l.name, layer_cube(l)) for l in layers]
            lr = self._layer(self.lr_combo)
            s = infer_scale(lr.data.shape, ref.shape) if lr is not None else int(self.scale_spin.value())
        except CubeError as exc:
            self.error.show_message(str(exc))
            return None
        self.compare_table.setRowCount(0)
        self.compare_button.setEnabled(False)
        self.compare_button.setText("Comparing…")
        worker = create_worker(_compare, cubes, ref, s, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._fill_compare)
        worker.errored.connect(lambda exc: self.error.show_message(f"could not compare the fused layers: {exc}"))
        worker.finished.connect(self._compare_finished)
        self.compare_worker = worker
        worker.start()
        return worker

    def side_by_side(self, on: bool) -> None:
        """Show the reference and the fused layers in napari's grid (one view each, sharing the
        camera), the other layers hidden; ``on=False`` restores the visibility and grid from before."""
        viewer = self.viewer
        if on and self._before_grid is None:
            ref_layer = self._layer(self.ref_combo)
            shown = [l for l in fused_layers(viewer) if ref_layer is None or not same_layer(l, ref_layer)]
            if not shown:
                self.error.show_message("no fused layer to show: run a fusion in the Fusion dock first")
                self.side_button.setChecked(False)
                return
            shown += [ref_layer] if ref_layer is not None else []
            self._before_grid = (viewer.canvas.grid.enabled, {id(l): l.visible for l in viewer.layers})
            for layer in viewer.layers:
                layer.visible = any(layer is l for l in shown)
            viewer.canvas.grid.stride = 1
            viewer.canvas.grid.enabled = True
        elif not on and self._before_grid is not None:
            grid, visible = self._before_grid
            self._before_grid = None
            for layer in viewer.layers:
                layer.visible = visible.get(id(layer), layer.visible)
            viewer.canvas.grid.enabled = grid

    def _compare_finished(self) -> None:
        self.compare_worker = None
        self.compare_button.setEnabled(True)
        self.compare_button.setText("Compare all fused layers")

    def _fill_compare(self, rows) -> None:
        self.compare_rows = dict(rows)
        t = self.compare_table
        t.setRowCount(len(rows))
        for i, (name, res) in enumerate(rows):
            t.setItem(i, 0, QTableWidgetItem(name))
            for j, (key, _label) in enumerate(FULL_REFERENCE_ROWS, start=1):
                if isinstance(res, str):
                    item = QTableWidgetItem("—" if j > 1 else res)
                else:
                    v = float(res[key])
                    item = QTableWidgetItem(f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}")
                    item.setData(Qt.ItemDataRole.UserRole, v)
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                t.setItem(i, j, item)
        t.resizeColumnsToContents()

    def _fill_table(self, rows) -> None:
        self.table.setRowCount(len(rows))
        for i, (key, label) in enumerate(rows):
            v = float(self.results[key])
            name_item = QTableWidgetItem(label)
            name_item.setData(Qt.ItemDataRole.UserRole, key)
            value_item = QTableWidgetItem(f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}")
            value_item.setData(Qt.ItemDataRole.UserRole, v)
            value_item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(i, 0, name_item)
            self.table.setItem(i, 1, value_item)

    def table_values(self) -> dict[str, float]:
        """The table as {metrics key: value} (the exact floats, not the rounded text)."""
        out = {}
        for i in range(self.table.rowCount()):
            key = self.table.item(i, 0).data(Qt.ItemDataRole.UserRole)
            out[key] = float(self.table.item(i, 1).data(Qt.ItemDataRole.UserRole))
        return out

    # ---------------------------------------------------------------- plot
    def _draw_plot(self) -> None:
        self.plot.reset_axes()
        ax = self.plot.axes
        self.psnr_line = None
        with self.plot.styled():
            if self.psnr_per_band is not None and self.psnr_x is not None:
                (self.psnr_line,) = ax.plot(self.psnr_x, self.psnr_per_band, marker="o", markersize=3, linewidth=1.2)
                ax.set_xlabel(self.psnr_xlabel)
                ax.set_ylabel("PSNR (dB)")
                ax.set_title(f"per-band PSNR: {self._plot_title}", fontsize="small")
                ax.grid(True, alpha=0.3)
            else:
                msg = ("per-band PSNR needs a reference" if self.mode == "no-reference"
                       else "per-band PSNR appears here after Compute")
                ax.text(0.5, 0.5, msg, ha="center", va="center", transform=ax.transAxes, fontsize="small")
                ax.set_xticks([])
                ax.set_yticks([])
        self.plot.draw_now()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        try:
            self._watcher.close()
        except Exception:  # noqa: BLE001 - the viewer may already be gone
            pass
        super().closeEvent(event)
