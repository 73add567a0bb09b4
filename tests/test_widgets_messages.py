"""Messages of the napari layer (issue 16): the status after a failure, no piled-up toasts, the
warnings for a pair whose images disagree and for a doubtful PSF / SRF estimate, the SAM colour
bar and the Quality dock's comparison of every fused layer, and the event-loop stall probe during
a tiny fine-tune."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_cofusion.degrade.consistency import PAIR_DISAGREE_RESIDUAL, pair_agreement
from napari_cofusion.degrade.estimate import Degradation, estimate_degradation, estimate_doubts
from napari_cofusion.degrade.simulate import PSF
from napari_cofusion.samples import cave_pair, houston_pair

pytestmark = pytest.mark.gui

PLUGIN = "napari-cofusion"
WAIT_MS = 240_000


def _widget(viewer, name="Fusion"):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


# ------------------------------------------------------------------------------- Qt-free rules
def test_pair_agreement_separates_one_scene_from_two():
    lr, msi, _ref = cave_pair()
    _hs, rgb = houston_pair()
    k = PSF.parse("weak").kernel(4)
    assert pair_agreement(lr.data, msi.data, k, 4, 2) < 1e-3
    # the CAVE LRHSI against the HRMSI flipped upside down (another "scene" of the same colours)
    assert pair_agreement(lr.data, msi.data[:, ::-1].copy(), k, 4, 2) > PAIR_DISAGREE_RESIDUAL
    assert pair_agreement(lr.data, rgb.data[:, :128, :128], PSF.parse("wald").kernel(4), 4, 2) > PAIR_DISAGREE_RESIDUAL


def test_estimate_doubts():
    lr, msi, _ref = cave_pair()
    assert estimate_doubts(estimate_degradation(lr, msi)) == []
    k = np.ones((1, 1))
    edge = Degradation(4, 2, k, np.zeros((3, 31)), {"kind": "gaussian"}, sigma=3.6, residual=0.38,
                       search={"range": [0.2, 3.6]})
    reasons = estimate_doubts(edge)
    assert len(reasons) == 2 and "upper end" in reasons[0] and "0.380" in reasons[1]
    assert all("--" not in r for r in reasons)
    given = Degradation(4, 2, k, np.zeros((3, 31)), {"kind": "weak"}, sigma=0.5, residual=1e-4, psf_estimated=False)
    assert estimate_doubts(given) == []


# ------------------------------------------------------------------------------- the Fusion dock
def test_failed_run_resets_status_and_toasts_once(make_napari_viewer, qtbot, monkeypatch):
    from napari_cofusion.gui import layers as gl
    from napari_cofusion.gui.fusion.state import JobKind

    toasts = []
    monkeypatch.setattr(gl, "show_error", toasts.append)
    monkeypatch.setattr("napari_cofusion.gui.base.show_error", toasts.append)
    viewer = make_napari_viewer()
    w = _widget(viewer)

    def failing():
        yield from ()
        raise ValueError("boom")  # (superqt treats a RuntimeError as a deleted worker)

    for _ in range(2):
        w.state.status = "cofusion: fusing…"
        w.start_job(failing(), JobKind.FUSION, "cofusion fusion", 1)
        qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
        assert "fusing" not in w.status_label.text() and "failed" in w.status_label.text()
        assert "boom" in w.error_label.text()
    assert toasts == ["fusion failed: boom"]  # the same error twice: one notification


def test_disagreeing_pair_warns_once(make_napari_viewer, qtbot, monkeypatch):
    from napari_cofusion.gui import layers as gl

    warnings = []
    monkeypatch.setattr(gl, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    lr, msi, _ref = cave_pair()
    viewer.add_image(lr.data, name="lr", metadata={"wavelengths": lr.wavelengths.tolist()})
    viewer.add_image(msi.data, name="msi")
    w = _widget(viewer)
    check = w.pair_panel.agreement
    w.set_pair("lr", "msi")  # no recipe: the wald PSF, residual 0.05
    qtbot.waitUntil(lambda: check.worker is None and check.residual is not None, timeout=WAIT_MS)
    assert check.residual < 0.2 and w.pair_panel.pair_warning.isHidden() and not warnings
    viewer.add_image(msi.data[:, ::-1].copy(), name="other msi")
    w.set_pair("lr", "other msi")
    qtbot.waitUntil(lambda: check.worker is None and check.residual > 0.2, timeout=WAIT_MS)
    assert not w.pair_panel.pair_warning.isHidden() and "disagree" in w.pair_panel.pair_warning.text()
    assert len(warnings) == 1
    w.set_pair("lr", "msi")
    w.set_pair("lr", "other msi")  # known pair: the warning again, no new notification
    assert "disagree" in w.pair_panel.pair_warning.text() and len(warnings) == 1


def test_doubtful_estimate_is_shown(make_napari_viewer, qtbot, monkeypatch):
    from napari_cofusion.gui.fusion import finetune_panel

    warnings = []
    monkeypatch.setattr(finetune_panel, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    hs, rgb = houston_pair()
    viewer.add_image(hs.data, name="hs", metadata={"wavelengths": hs.wavelengths.tolist()})
    viewer.add_image(rgb.data, name="rgb", metadata={"wavelengths": rgb.wavelengths.tolist()})
    w = _widget(viewer)
    w.set_pair("hs", "rgb")
    w.estimate_degradations()
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    label = w.finetune_panel.estimate_warning
    assert not label.isHidden() and "residual" in label.text() and len(warnings) == 1


# ------------------------------------------------------------------------------- Quality dock
def test_sam_colorbar_and_comparison_table(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    lr, msi, ref = cave_pair()
    viewer.add_image(ref.data, name="reference", metadata={"wavelengths": ref.wavelengths.tolist()})
    viewer.add_image(lr.data, name="lr")
    rng = np.random.default_rng(0)
    for method, noise in (("a", 0.01), ("b", 0.03)):
        data = np.clip(ref.data + noise * rng.standard_normal(ref.data.shape), 0, 1).astype(np.float32)
        viewer.add_image(data, name=f"{method} fused", metadata={"method": method})
    q = _widget(viewer, "Quality (SAM map, PSNR, QNR)")
    q.fused_combo.setCurrentText("a fused")
    q.ref_combo.setCurrentText("reference")
    q.lr_combo.setCurrentText("lr")
    assert q.compute() is not None
    assert q.sam_layer.colorbar.visible
    assert q.compare() is not None
    qtbot.waitUntil(lambda: q.compare_worker is None, timeout=WAIT_MS)
    assert q.compare_table.rowCount() == 2 and set(q.compare_rows) == {"a fused", "b fused"}
    assert q.compare_rows["a fused"]["psnr"] > q.compare_rows["b fused"]["psnr"]
    assert q.compare_table.item(0, 0).text() == "a fused"


# ------------------------------------------------------------------------------- responsiveness
def test_stall_probe_during_tiny_finetune(make_napari_viewer, qtbot, tmp_path):
    """The probe runs during a short fine-tune of a tiny model, and the event loop keeps ticking
    through it: many ticks land inside the job and the typical (median) tick is on time, where an
    event loop blocked by the job would tick once, after it. No bound on the longest stall: a
    one-off stall inside the job (the optimizer's first use imports torch._dynamo, ~1.5 s of
    imports on one core; a full garbage collection late in a long test session) reached 490 ms of
    an 800 ms job on CI. The 100 ms target is the benchmark's, benchmarks/responsiveness.py."""
    torch = pytest.importorskip("torch")
    from napari_cofusion.gui.stall_probe import StallProbe
    from napari_cofusion.learn.models import CoFusion, CoFusionConfig
    from napari_cofusion.learn.weights import save_weights

    torch.manual_seed(0)
    cfg = CoFusionConfig(hs_bands=31, ms_bands=3, scale=4, width=16, depths=(1, 1, 1), top_k=4, base="bicubic")
    card = {"architecture": "cofusion", "config": cfg.to_json(), "hs_bands": 31, "ms_bands": 3, "scale": 4}
    start = save_weights(CoFusion(cfg), tmp_path / "tiny", card)[0]
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "cave_pair")
    w = _widget(viewer)
    w.add_weights_path(start, select=("finetune",))
    w.steps_spin.setValue(10)
    w.patch_spin.setValue(16)
    w.batch_spin.setValue(2)
    probe = StallProbe(10)
    probe.start()
    t0 = time.perf_counter()
    assert w.start_finetune() is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=WAIT_MS)
    t1 = time.perf_counter()
    qtbot.wait(50)
    probe.stop()
    assert w.finetuned_info["steps_done"] == 10
    inside = [st for st, at in zip(probe.stalls_ms, probe.times) if t0 < at <= t1]
    what = f"{probe.summary()}; {len(inside)} ticks inside the {1000 * (t1 - t0):.0f} ms job"
    assert len(inside) >= 10, what
    assert float(np.median(inside)) < 25.0, what
