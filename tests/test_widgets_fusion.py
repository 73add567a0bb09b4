"""The Fusion dock widget in a real napari window (Xvfb): pair selection, simulation, fusion in a
thread worker, fine-tuning with a live loss curve, Cancel, and saving the fine-tuned weights.

Learned-model tests use a small CoFusion (width 16, one block per level) written to a temporary
weights file, so they stay fast on a CPU; the widget treats it exactly like shipped weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_cofusion.core import metrics
from napari_cofusion.api import fuse
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.samples import cave_pair
from napari_cofusion.learn.weights import load_weights, save_weights

pytestmark = pytest.mark.gui

PLUGIN = "napari-cofusion"
REF, MSI, LR = "CAVE peppers crop reference", "CAVE peppers crop HRMSI nikon-d700", "CAVE peppers crop LRHSI x4"
WAIT_MS = 240_000


def _small_weights(path, hs, ms, scale, seed=0, base="glp-hs", **cfg_kw):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    cfg = CoFusionConfig(hs_bands=hs, ms_bands=ms, scale=scale, width=16, depths=(1, 1, 1), top_k=4, base=base,
                         **cfg_kw)
    model = CoFusion(cfg)
    card = {"architecture": "cofusion", "config": cfg.to_json(), "hs_bands": hs, "ms_bands": ms, "scale": scale,
            "note": "untrained test model"}
    return save_weights(model, path, card)[0]


def _fusion_widget(viewer):
    from napari_cofusion.gui.fusion import FusionWidget

    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fusion")
    assert isinstance(widget, FusionWidget)
    return widget


def _wait_idle(qtbot, widget, timeout=WAIT_MS):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


# ------------------------------------------------------------------------------- pair
def test_pair_guess_and_mismatch_message(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "cave_pair")
    w = _fusion_widget(viewer)
    # the sample's pair and reference are found without the user choosing
    assert w.lr_combo.currentText() == LR and w.msi_combo.currentText() == MSI and w.ref_combo.currentText() == REF
    assert w.scale == 4 and w.run_button.isEnabled()
    assert "31 bands" in w.pair_info.text() and "×4" in w.pair_info.text()
    # a mismatched pair: the reference (31 bands, 128²) as HRMSI for the LRHSI is refused in the widget
    w.set_pair(LR, REF)
    assert w.scale is None and not w.run_button.isEnabled()
    assert w.pair_message.text()
    # the same layer twice
    w.set_pair(LR, LR)
    assert "two different layers" in w.pair_message.text()
    assert w.run_fusion() is None  # refused, no worker, a message instead
    assert w.error_label.text()
    w.set_pair(LR, MSI, REF)
    assert w.scale == 4 and w.pair_message.text() == ""


def test_simulate_then_run_baseline(make_napari_viewer, qtbot, cave_val_ref):
    viewer = make_napari_viewer()
    from napari_cofusion.gui.layers import add_cube

    add_cube(viewer, cave_val_ref, name="oil_painting crop")
    w = _fusion_widget(viewer)
    w.scale_spin.setValue(4)
    w.psf_combo.setCurrentText("weak")
    w.srf_combo.setCurrentText("nikon-d700")
    lr_layer, msi_layer, ref_layer = w.simulate()
    assert lr_layer.data.shape == (31, 32, 32) and msi_layer.data.shape == (3, 128, 128)
    assert ref_layer.name == "oil_painting crop"
    assert w.scale == 4 and w.ref_combo.currentText() == "oil_painting crop"
    assert not w.finetune_panel.pair_only_hint.isVisibleTo(w.finetune_panel)  # a reference: no pair-only advice
    assert "recipe" in lr_layer.metadata
    w.method_combo.setCurrentText("glp-hs")
    worker = w.run_fusion()
    assert worker is not None and not w.run_button.isEnabled() and w.cancel_button.isEnabled()
    _wait_idle(qtbot, w)
    out = w.last_result_layer
    assert out is not None and out.name == "glp-hs fused" and out.rgb is False
    assert out.data.shape == (31, 128, 128)
    np.testing.assert_allclose(out.metadata["wavelengths"], cave_val_ref.wavelengths)
    # the layer holds what the core gives for the same pair
    from napari_cofusion.gui.layers import layer_cube

    core = fuse(layer_cube(lr_layer), layer_cube(msi_layer), "glp-hs").cube.data
    np.testing.assert_allclose(out.data, core, atol=1e-6)
    assert metrics.psnr(out.data, cave_val_ref.data) > 40.0
    # a second run does not overwrite the first result
    _wait_idle(qtbot, w)
    w.run_fusion()
    _wait_idle(qtbot, w)
    assert "glp-hs fused [1]" in viewer.layers and "glp-hs fused" in viewer.layers
    # the consistency choice follows the method's default, and "on" projects the baseline too
    assert w.consistency_combo.currentText() == "off"
    w.method_combo.setCurrentText("cofusion")
    assert w.consistency_combo.currentText() == "auto"
    w.method_combo.setCurrentText("glp-hs")
    assert w.consistency_combo.currentText() == "off"
    w.consistency_combo.setCurrentText("on")
    w.run_fusion()
    _wait_idle(qtbot, w)
    dc = w.last_result_layer
    assert dc.name == "glp-hs fused [2]" and dc.metadata["consistency"]["applied"]
    assert "projected onto the observations" in w.status_label.text()
    assert metrics.psnr(dc.data, cave_val_ref.data) > metrics.psnr(out.data, cave_val_ref.data)
    # the dhif PSF from the panel: its protocol's phase, and the LRHSI (the same layer, replaced) drawn
    # between HR pixels
    w.psf_combo.setCurrentText("dhif")
    lr2, _msi2, _ref2 = w.simulate()
    assert lr2.metadata["recipe"]["psf"] == {"kind": "dhif"} and lr2.metadata["recipe"]["phase"] == 1
    assert tuple(lr2.translate) == (0, 1.5, 1.5)


def test_state_events_drive_the_panels(make_napari_viewer, qtbot):
    """The evented state emits on change; the panels follow it; typed job updates reach it through
    the runner, and a job's outcome goes to the handler of its JobKind."""
    from napari_cofusion.gui.fusion.state import FusionState, JobKind
    from napari_cofusion.jobs import Status, Step, Tiles
    from napari_cofusion.learn.train import Progress

    alone = FusionState()
    seen = []
    alone.events.status.connect(seen.append)
    alone.status = "a"
    alone.status = "a"
    alone.status = "b"
    assert seen == ["a", "b"]  # once per change

    viewer = make_napari_viewer()
    lr = viewer.add_image(np.zeros((31, 8, 8), np.float32), name="lr", rgb=False)
    msi = viewer.add_image(np.zeros((3, 32, 32), np.float32), name="msi", rgb=False)
    w = _fusion_widget(viewer)
    assert (w.lr_combo.currentText(), w.msi_combo.currentText(), w.scale) == ("lr", "msi", 4)
    # the pair set on the state (not through the Pair panel) shows in the Pair panel
    w.state.select_pair(msi, lr, chosen=True)
    assert (w.lr_combo.currentText(), w.msi_combo.currentText()) == ("msi", "lr")
    assert w.scale is None and w.pair_message.text() and not w.run_button.isEnabled()
    w.state.select_pair(lr, msi)
    assert w.scale == 4 and w.pair_message.text() == "" and w.run_button.isEnabled()
    # status, error and busy
    w.state.status = "hello"
    assert w.status_label.text() == "hello"
    w.state.fail("something went wrong")
    assert w.error_label.text() == "something went wrong" and not w.error_label.isHidden()
    w.state.clear_error()
    assert w.error_label.text() == "" and w.error_label.isHidden()
    w.state.busy = True
    assert w.cancel_button.isEnabled() and not w.run_button.isEnabled() and not w.finetune_button.isEnabled()
    w.state.busy = False
    assert not w.cancel_button.isEnabled() and w.run_button.isEnabled()
    # typed updates: Tiles move the progress bar, Status shows a busy bar, a Step extends the loss curve
    w.runner.handle_update(Tiles(3, 7))
    assert (w.progress_bar.value(), w.progress_bar.maximum()) == (3, 7) and w.state.progress == (3, 7)
    w.runner.handle_update(Status("preparing"))
    assert w.status_label.text() == "preparing" and w.progress_bar.maximum() == 0
    w.runner.handle_update(Step(Progress(step=2, total=10, loss=0.5, lr=1e-3, elapsed=1.0)))
    assert w.loss_steps == [2] and list(w.loss_plot.line.get_data()[0]) == [2]
    assert (w.progress_bar.value(), w.progress_bar.maximum()) == (2, 10) and "step 2/10" in w.status_label.text()
    # the plots follow the napari theme: new axes in the new colours, the curve drawn again
    from napari.utils.theme import get_theme

    viewer.theme = "light" if viewer.theme != "light" else "dark"
    assert w.loss_plot.axes.xaxis.label.get_color() == get_theme(viewer.theme).text.as_hex()
    assert list(w.loss_plot.line.get_data()[0]) == [2] and w.loss_plot.line.axes is w.loss_plot.axes
    # a job runs in the worker; its outcome goes to its kind's handler
    got = []
    w.runner.handlers[JobKind.ESTIMATE] = got.append

    def job():
        yield Tiles(1, 2)
        return "the result"

    assert w.start_job(job(), JobKind.ESTIMATE, "a test job", 2, context="ctx") is not None
    assert w.state.busy and w.state.job is JobKind.ESTIMATE
    _wait_idle(qtbot, w)
    assert len(got) == 1 and (got[0].kind, got[0].result, got[0].context) == (JobKind.ESTIMATE, "the result", "ctx")
    assert not got[0].cancelled and not got[0].failed
    assert not w.state.busy and w.state.job is None and not w.cancel_button.isEnabled()
    with pytest.raises(TypeError):
        w.start_job(job(), "estimate", "a test job", 2)  # the kind is a JobKind, not a string


# ------------------------------------------------------------------------------- learned model
def test_real_pair_from_shared_data_with_small_model(make_napari_viewer, qtbot, shared_data, tmp_path):
    """The Houston 2018 HS + RGB pair opens through the reader, is fused by CoFusion weights from disk."""
    viewer = make_napari_viewer()
    viewer.open(str(shared_data / "houston2018" / "houston_dataset.mat"), plugin=PLUGIN)
    w = _fusion_widget(viewer)
    assert w.scale == 4
    lr = w.state.pair.lr
    assert lr.data.shape[0] == 48 and w.state.pair.msi.data.shape[0] == 3
    good = _small_weights(tmp_path / "houston_small", 48, 3, 4)
    assert w.add_weights_path(good)
    w.method_combo.setCurrentText("cofusion")
    assert w.weights_combo.isEnabled()
    w.run_fusion()
    _wait_idle(qtbot, w)
    out = w.last_result_layer
    assert out is not None and out.name == "cofusion fused" and out.data.shape == (48, 512, 512)
    assert np.isfinite(out.data).all()
    # the .mat file has no wavelength list: the result carries the LRHSI's (none), not made-up ones
    assert out.metadata.get("wavelengths") is None and lr.metadata.get("wavelengths") is None
    # weights for another band count: a clear message naming what the weights expect, no new layer
    bad = _small_weights(tmp_path / "cave_small", 31, 3, 4)
    assert w.add_weights_path(bad, select=("run",))
    n = len(viewer.layers)
    w.run_fusion()
    _wait_idle(qtbot, w)
    assert len(viewer.layers) == n
    msg = w.error_label.text()
    assert "31 HS bands" in msg and "48 HS bands" in msg
    assert "--" not in msg  # a GUI message, no command-line flags
    # not a weights file at all
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    assert not w.add_weights_path(tmp_path / "junk.safetensors")
    assert "junk" in w.error_label.text()


def test_finetune_cancel_save_and_reuse(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "cave_pair")
    w = _fusion_widget(viewer)
    from napari_cofusion.learn import selfsup

    # the widget offers the scene fine-tune's defaults (the CLI's)
    assert w.steps_spin.value() == selfsup.DEFAULT_STEPS and float(w.lr_edit.text()) == selfsup.DEFAULT_LR
    defaults = selfsup.scene_config()
    assert (w.patch_spin.value(), w.batch_spin.value()) == (defaults.patch, defaults.batch)
    start = _small_weights(tmp_path / "start", 31, 3, 4)
    w.add_weights_path(start, select=("finetune",))
    w.patch_spin.setValue(32)
    w.batch_spin.setValue(2)
    w.lr_edit.setText("1e-3")
    # a bad learning rate is a message, not a traceback
    w.lr_edit.setText("fast")
    assert w.start_finetune() is None and "learning rate" in w.error_label.text()
    w.lr_edit.setText("1e-3")
    # a long fine-tune, cancelled after a few steps
    w.steps_spin.setValue(100_000)
    worker = w.start_finetune()
    assert worker is not None and w.cancel_button.isEnabled() and not w.finetune_button.isEnabled()
    qtbot.waitUntil(lambda: len(w.loss_steps) >= 3, timeout=WAIT_MS)
    w.cancel()
    _wait_idle(qtbot, w)
    done = w.finetuned_info["steps_done"]
    assert 3 <= done < 100_000 and w.finetuned_info["stopped_early"]
    assert len(w.loss_steps) == done and all(np.isfinite(w.loss_values))
    # the live loss curve holds the yielded losses
    xs, ys = w.loss_plot.line.get_data()
    assert list(xs) == w.loss_steps
    assert w.loss_plot.axes.get_xlim()[1] >= max(w.loss_steps)  # the axis follows the curve
    # the cancelled model is usable: run it, then save and reload it
    model = w.finetuned_model
    assert not model.training
    assert w.weights_combo.currentData() == "session"
    w.method_combo.setCurrentText("cofusion")
    w.run_fusion()
    _wait_idle(qtbot, w)
    out = w.last_result_layer
    assert out.name == "cofusion fused" and out.data.shape == (31, 128, 128) and np.isfinite(out.data).all()
    saved, card_path = w.save_weights(tmp_path / "tuned.safetensors")
    card = json.loads(open(card_path).read())
    assert card["hs_bands"] == 31 and card["training"]["steps_done"] == done
    assert card["training"]["start_weights"].endswith("start.safetensors")
    reloaded, _ = load_weights(saved)
    import torch

    for (k, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), k
    # never overwrites
    assert w.save_weights(tmp_path / "tuned.safetensors") is None and "exists" in w.error_label.text()


def test_short_finetune_lowers_loss(make_napari_viewer, qtbot, tmp_path):
    """A complete (uncancelled) fine-tune on the simulated pair's reference: the loss falls."""
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "cave_pair")
    w = _fusion_widget(viewer)
    # this checks the widget's loop in 30 steps, so the tiny model is built at full strength
    # (LayerScale 1, correction scale 1); the defaults (0.01 / 0.1), chosen so the full model learns
    # a small correction stably, make a tiny model start slower: it did not fall 20 % in 30 or 80 steps
    start = _small_weights(tmp_path / "start", 31, 3, 4, base="bicubic", layer_scale=1.0, residual_scale=1.0)
    w.add_weights_path(start, select=("finetune",))
    w.steps_spin.setValue(30)
    w.patch_spin.setValue(32)
    w.batch_spin.setValue(4)
    w.lr_edit.setText("2e-3")
    w.start_finetune()
    _wait_idle(qtbot, w)
    assert w.finetuned_info["steps_done"] == 30 and not w.finetuned_info["stopped_early"]
    # the Device choice lists the CPU first (CUDA only where torch sees it) and goes into the card
    import torch

    devices = [w.device_combo.itemText(i) for i in range(w.device_combo.count())]
    assert devices == (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    assert w.finetuned_info["device"] == "cpu" and w.device_combo.currentText() == "cpu"
    first, last = np.mean(w.loss_values[:5]), np.mean(w.loss_values[-5:])
    assert last < 0.8 * first, (first, last)
    assert "finished after 30 steps" in w.status_label.text()


def test_fusion_cancel(make_napari_viewer, qtbot, tmp_path):
    """Cancel during a tiled CoFusion run stops it at the next tile and adds no layer."""
    viewer = make_napari_viewer()
    lr, msi, ref = cave_pair("cave-x4")
    from napari_cofusion.gui.layers import add_cube

    big_ref = ref.with_data(np.tile(ref.data, (1, 4, 4)))  # 512² so that inference is tiled
    from napari_cofusion.degrade.simulate import simulate_pair

    pair = simulate_pair(big_ref, protocol="cave-x4")
    add_cube(viewer, pair.lr)
    add_cube(viewer, pair.msi)
    w = _fusion_widget(viewer)
    w.add_weights_path(_small_weights(tmp_path / "small", 31, 3, 4), select=("run",))
    w.method_combo.setCurrentText("cofusion")
    n = len(viewer.layers)
    # the widget's own worker start, with small tiles so that there are many progress reports
    from napari_cofusion.gui.fusion.state import JobKind
    from napari_cofusion.gui.layers import layer_cube
    from napari_cofusion.jobs import fusion_job

    job = fusion_job(layer_cube(w.state.pair.lr), layer_cube(w.state.pair.msi), "cofusion",
                     {"weights": str(tmp_path / "small.safetensors"), "tile": 64, "overlap": 32}, w.cancel_event)
    worker = w.start_job(job, JobKind.FUSION, "cofusion fusion", 1)
    assert worker is not None
    qtbot.waitUntil(lambda: w.progress_bar.value() >= 1 and w.progress_bar.maximum() > 4, timeout=WAIT_MS)
    w.cancel()
    _wait_idle(qtbot, w)
    assert len(viewer.layers) == n
    assert "cancelled" in w.status_label.text()


def test_scene_only_finetune_on_real_pair(make_napari_viewer, qtbot, shared_data, tmp_path):
    """No reference layer: the PSF/SRF are estimated from the Houston pair, starting weights for
    another band count are adapted, the fine-tuned model fuses the pair and saves with its estimates."""
    from napari_cofusion.gui.fusion import finetune_panel

    viewer = make_napari_viewer()
    viewer.open(str(shared_data / "houston2018" / "houston_dataset.mat"), plugin=PLUGIN)
    w = _fusion_widget(viewer)
    assert w.ref_combo.currentText() == "(none)" and w.scale == 4
    w.estimate_degradations()
    _wait_idle(qtbot, w)
    deg = w.degradation
    assert deg is not None and deg.srf.shape == (3, 48) and 0.2 < deg.sigma < 3.6
    assert not w.degradation_plot.isHidden() and "phase" in w.status_label.text()
    start = _small_weights(tmp_path / "cave_small", 31, 3, 4)
    w.add_weights_path(start, select=("finetune",))
    # with no reference layer Fine-tune runs pnp-zsl unless the CoFusion fine-tune is chosen
    assert w.ft_route_combo.currentText() == finetune_panel.ROUTE_ZSL and w.ft_route_combo.isVisibleTo(w)
    w.ft_route_combo.setCurrentText(finetune_panel.ROUTE_COFUSION)
    assert w.finetune_button.text() == "Fine-tune" and w.steps_spin.isEnabled()
    w.steps_spin.setValue(4)
    w.patch_spin.setValue(16)
    w.batch_spin.setValue(2)
    w.lr_edit.setText("1e-3")
    assert w.start_finetune() is not None
    _wait_idle(qtbot, w)
    info = w.finetuned_info
    assert info["steps_done"] == 4 and "re-initialised" in info["start_weights"]
    assert info["degradation"]["sigma"] == pytest.approx(deg.sigma)  # the estimate was reused
    assert info["reduced_l1_after"] is not None and info["consistency_weight"] > 0
    assert info["consistency_patch"] % 8 == 0 and info["consistency_patch"] >= 8
    model = w.finetuned_model
    assert model.cfg.hs_bands == 48 and model.psf["kind"] == "gaussian"
    w.method_combo.setCurrentText("cofusion")
    w.run_fusion()
    _wait_idle(qtbot, w)
    out = w.last_result_layer
    assert out.name == "cofusion fused" and out.data.shape == (48, 512, 512) and np.isfinite(out.data).all()
    saved, card_path = w.save_weights(tmp_path / "houston_tuned")
    card = json.loads(open(card_path).read())
    assert card["psf"]["kind"] == "gaussian" and np.asarray(card["srf"]["matrix"]).shape == (3, 48)
    # a preset instead of the estimate
    w.ft_psf_combo.setCurrentText("wald")
    w.estimate_degradations()
    _wait_idle(qtbot, w)
    assert not w.degradation.psf_estimated and w.degradation.srf_estimated


# ------------------------------------------------------------------------------- the main command
def test_gui_command_headless_screenshot(tmp_path, capsys):
    """``napari-cofusion gui --fuse glp-hs --screenshot PNG``: the README's GUI command in its
    headless form opens the window with the widgets docked and the sample, fuses, shows the
    composite, the SAM map and spectra, and saves a screenshot that is not blank."""
    from imageio.v3 import imread

    from napari_cofusion.cli import main

    out = tmp_path / "window.png"
    assert main(["gui", "--fuse", "glp-hs", "--screenshot", str(out)]) == 0
    text = capsys.readouterr().out
    for name in (REF, MSI, LR, "glp-hs fused", "glp-hs fused pseudo-colour", f"SAM glp-hs fused vs {REF}"):
        assert name in text
    shot = imread(out)
    assert shot.shape[0] > 500 and shot.shape[1] > 1000
    assert float(np.std(shot[..., :3])) > 20.0
    # the canvas part (left of the docks, right of the layer list) holds the drawn images, not a flat colour
    h, w = shot.shape[:2]
    canvas = shot[h // 4: 3 * h // 4, int(0.3 * w): int(0.65 * w), :3]
    assert float(np.std(canvas)) > 10.0
    # refuses to overwrite, with a one-line error
    assert main(["gui", "--sample", "none", "--screenshot", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_pair_only_route_on_a_real_crop(make_napari_viewer, qtbot, shared_data, monkeypatch):
    """No reference, no recipe: the real PaviaU crop's pair as a user brings it. pnp-gf estimates
    the PSF from the pair (its default in the Run panel), beats glp-hs, and records the estimate;
    on a crop of the real Houston pair, which the observation model does not explain, it says so
    with the number and falls back to glp-hs."""
    from napari_cofusion.api import read_cube, read_cubes
    from napari_cofusion.degrade.simulate import simulate_pair
    from napari_cofusion.gui.fusion import run_panel

    shown: list[str] = []
    monkeypatch.setattr(run_panel, "show_warning", shown.append)
    ref = read_cube(shared_data / "paviau" / "paviaU_subimg.mat", norm="max")
    pair = simulate_pair(ref, scale=4, psf="wald", srf="rosis-ikonos4")
    viewer = make_napari_viewer()
    viewer.add_image(pair.lr.data, name="pavia lr", rgb=False)
    viewer.add_image(pair.msi.data, name="pavia msi", rgb=False)
    w = _fusion_widget(viewer)
    w.set_pair("pavia lr", "pavia msi")
    assert w.scale == 4
    # no reference layer: the Fine-tune panel points to the route that measured best
    assert w.finetune_panel.pair_only_hint.isVisibleTo(w.finetune_panel) and "pnp-gf" in w.finetune_panel.pair_only_hint.text()
    w.method_combo.setCurrentText("pnp-gf")
    assert w.fuse_psf_combo.currentText() == run_panel.PSF_ESTIMATE
    w.run_fusion()
    _wait_idle(qtbot, w)
    out = w.last_result_layer
    assert out is not None and out.name == "pnp-gf fused" and out.data.shape == (103, 48, 48)
    est = out.metadata["estimate"]
    assert est["phase"] == 2 and est["sigma"] == pytest.approx(1.70, abs=0.05) and not est["doubts"]
    glp = fuse(pair.lr, pair.msi, "glp-hs", psf="wald").cube.data
    assert metrics.psnr(out.data, ref.data[:, :48, :48]) > metrics.psnr(glp, ref.data[:, :48, :48]) + 0.3
    assert not shown
    # "Fine-tune without a reference" runs the route that measured best, pnp-zsl, by default: the
    # same result as the core's (and as the Run panel's) from the PSF estimated from the pair. This
    # crop is too small to learn from (the pair degraded once more has a 3×3 LRHSI): the result is
    # pnp-gf's, and the user is told why
    from napari_cofusion.gui.fusion import finetune_panel

    assert w.ft_route_combo.currentText() == finetune_panel.ROUTE_ZSL
    assert w.finetune_button.text() == "Fuse with pnp-zsl" and not w.steps_spin.isEnabled()
    w.start_finetune()
    _wait_idle(qtbot, w)
    tuned = w.last_result_layer
    assert tuned is not out and tuned.name == "pnp-zsl fused" and tuned.metadata["route"] == "fine-tune without a reference"
    assert not tuned.metadata["options"]["network"]["used"]
    assert any(m.startswith("pnp-zsl fused: no network: the pair degraded once more has a 3×3-pixel LRHSI") for m in shown), shown
    from napari_cofusion.gui.layers import layer_cube

    core = fuse(layer_cube(viewer.layers["pavia lr"]), layer_cube(viewer.layers["pavia msi"]), "pnp-zsl",
                psf="auto").cube.data
    np.testing.assert_allclose(tuned.data, core, atol=1e-5)
    np.testing.assert_allclose(tuned.data, out.data, atol=1e-5)  # pnp-gf's, as the Run panel gave it
    shown.clear()
    # pnp-gf stays one choice away
    w.ft_route_combo.setCurrentText(finetune_panel.ROUTE_PNP)
    assert w.finetune_button.text() == "Fuse with pnp-gf"
    assert w.finetuned_model is None  # no training, no session weights
    # glp-hs keeps "recipe, else weak" by default
    w.method_combo.setCurrentText("glp-hs")
    assert w.fuse_psf_combo.currentText() == run_panel.PSF_RECIPE
    # the real Houston pair (a crop): the fallback is told, with its residual
    cubes = read_cubes(shared_data / "houston2018" / "houston_dataset.mat")
    hs, rgb = max(cubes, key=lambda c: c.bands), min(cubes, key=lambda c: c.bands)
    viewer.add_image(hs.data[:, :40, :40], name="houston hs", rgb=False)
    viewer.add_image(rgb.data[:, :160, :160], name="houston rgb", rgb=False)
    w.set_pair("houston hs", "houston rgb")
    w.method_combo.setCurrentText("pnp-gf")
    w.run_fusion()
    _wait_idle(qtbot, w)
    assert w.last_result_layer.name.startswith("pnp-gf fused")
    assert any("relative residual" in m and "glp-hs" in m for m in shown), shown
