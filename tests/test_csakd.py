"""The CSAKD student (learn/models/csakd.py) and its distillation (learn/distill.py): shapes, the
blocks equal to the whole frame with the method's reach,
the joint loss, a short distillation that lowers it, and the method in the registry (the untrained
student returning its base and checking its input: tests/test_networks.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_cofusion.core.errors import WeightsError
from napari_cofusion.learn.models import CSAKDConfig, CSAKDStudent
from napari_cofusion.learn.weights import save_weights

SMALL = dict(width=16, growth=8, dense=1, attn_dim=16, heads=2, window=3, hr_features=4, hr_width=8)


def _perturb_head(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (model.head[-1], model.to_hr[-2], *(blk.body[-1] for blk in model.refine)):
            layer.weight.add_(torch.randn(layer.weight.shape, generator=g) * 0.05)


@pytest.mark.parametrize("hs,ms,scale,h,w", [(31, 3, 4, 8, 12), (6, 4, 2, 9, 7), (128, 4, 8, 5, 6)])
def test_shapes_any_bands_and_scale(hs, ms, scale, h, w):
    m = CSAKDStudent(CSAKDConfig(hs_bands=hs, ms_bands=ms, scale=scale, **SMALL)).eval()
    _perturb_head(m)
    lr, msi = torch.rand(2, hs, h, w), torch.rand(2, ms, h * scale, w * scale)
    out = m(lr, msi, torch.rand(2, hs, h * scale, w * scale))
    assert out.shape == (2, hs, h * scale, w * scale) and torch.isfinite(out).all()
    assert m(lr, msi).shape == out.shape  # without a base: the phase-aware bicubic


def test_config_is_checked_and_round_trips():
    cfg = CSAKDConfig(streams=(2, 1, 0, 1), **SMALL)
    assert CSAKDConfig.from_json(json.loads(json.dumps(cfg.to_json()))) == cfg
    for bad, match in (({"width": 0}, "width"), ({"attn_dim": 10, "heads": 4}, "multiple of heads"),
                       ({"window": 4}, "odd"), ({"streams": [1, 1]}, "four streams"), ({"base": "x"}, "base"),
                       ({"depth": 3}, "unknown keys")):
        with pytest.raises(WeightsError, match=match):
            CSAKDConfig.from_json({**cfg.to_json(), **bad})


def test_every_parameter_learns_and_the_joint_loss_falls():
    from napari_cofusion.learn.distill import kd_loss, spectral_angle

    torch.manual_seed(0)
    m = CSAKDStudent(CSAKDConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL))
    lr, msi, base = torch.rand(2, 6, 8, 8), torch.rand(2, 3, 32, 32), torch.rand(2, 6, 32, 32)
    ref = (base + 0.05 * torch.rand(2, 6, 32, 32)).clamp(0, 1)
    teacher = (ref + 0.01).clamp(0, 1)
    loss = kd_loss(m(lr, msi, base), ref, teacher)
    loss.backward()
    zero = [n for n, p in m.named_parameters() if p.grad is None]
    assert not zero
    # zero spectra: angle 0, finite gradient (torchmetrics' SAM gives NaN there)
    z = torch.zeros(1, 6, 4, 4, requires_grad=True)
    a = spectral_angle(z, torch.zeros(1, 6, 4, 4))
    a.backward()
    assert float(a.detach()) == 0.0 and torch.isfinite(z.grad).all()
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = kd_loss(m(lr, msi, base), ref, teacher)
        loss.backward()
        opt.step()
        first = first if first is not None else float(loss)
    assert float(loss) < 0.7 * first


def test_a_grown_student_fuses_as_its_start_and_trains_only_what_is_asked(tmp_path):
    """grow_student: HR blocks added to saved weights leave the output unchanged until training
    moves them; freeze_except: the frozen part gets no gradient and does not change in a step;
    weights that would lose trained layers, or an unknown module, are refused by name."""
    from napari_cofusion.core.errors import TrainingError
    from napari_cofusion.learn.distill import freeze_except, grow_student, kd_loss

    torch.manual_seed(0)
    cfg = CSAKDConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)
    old = CSAKDStudent(cfg).eval()
    _perturb_head(old)
    path, _ = save_weights(old, tmp_path / "s", {"architecture": "csakd", "config": cfg.to_json(), "hs_bands": 6,
                                                "ms_bands": 3, "scale": 4, "training": {"steps_done": 7}})
    new, start = grow_student(path, {"hr_blocks": 2}, 6, 3, 4)
    assert new.cfg.hr_blocks == 2 and len(new.refine) == 2 and start["steps"] == 7
    assert start["added"] == new.n_params() - old.n_params() > 0
    lr, msi, base = torch.rand(2, 6, 8, 8), torch.rand(2, 3, 32, 32), torch.rand(2, 6, 32, 32)
    new.eval()
    with torch.no_grad():
        assert torch.equal(new(lr, msi, base), old(lr, msi, base))
    assert freeze_except(new, ["head", "refine"]) == sum(p.numel() for n, p in new.named_parameters()
                                                         if n.startswith(("head.", "refine.")))
    frozen = {n: p.detach().clone() for n, p in new.named_parameters() if not p.requires_grad}
    new.train()
    opt = torch.optim.AdamW([p for p in new.parameters() if p.requires_grad], lr=1e-2)
    kd_loss(new(lr, msi, base), base.clamp(0, 1), None).backward()
    opt.step()
    assert all(p.grad is None and torch.equal(p, frozen[n]) for n, p in new.named_parameters() if n in frozen)
    assert any(float(p.detach().abs().max()) > 0 for n, p in new.named_parameters() if n.startswith("refine.") and "2.weight" in n)
    with pytest.raises(TrainingError, match="no module stem in the student"):
        freeze_except(new, ["stem"])
    with pytest.raises(TrainingError, match="do not fit the student.*size mismatch for head.0.weight"):
        grow_student(path, {"hr_width": 12}, 6, 3, 4)
    with pytest.raises(TrainingError, match="would drop or re-initialise trained layers"):
        grow_student(path, {"streams": [2, 1, 1, 1]}, 6, 3, 4)
    with pytest.raises(WeightsError, match="expects 6 HS bands, 3 MS bands at ×4; the training scenes has 8 HS"):
        grow_student(path, None, 8, 3, 4)


def test_blocks_equal_the_whole_frame_with_the_methods_reach(shared_data):
    """The registered method's reach (learn.method.STUDENT_CONTEXT_LR) is enough for block-wise
    fusion to equal the whole frame on a real scene."""
    from napari_cofusion import api
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.degrade.simulate import simulate_pair

    ref = read_cube(shared_data / "cave" / "paints_ms")
    pair = simulate_pair(ref.with_data(np.ascontiguousarray(ref.data[:, 96:320, 64:288])), protocol="cave-x4")
    torch.manual_seed(0)
    # the default depth, with the shipped student's HR blocks: the full reach
    m = CSAKDStudent(CSAKDConfig(streams=(1, 1, 1, 1), dense=3, hr_blocks=2)).eval()
    _perturb_head(m)
    whole = api.fuse(pair.lr, pair.msi, "csakd", model=m, consistency="off")
    base = api.fuse(pair.lr, pair.msi, "bicubic").cube.data
    blocks = api.fuse(pair.lr, pair.msi, "csakd", model=m, consistency="off", tile=96)
    assert blocks.blocks == 9
    assert float(np.abs(whole.cube.data - base).max()) > 1e-3  # the student does something
    assert float(np.abs(whole.cube.data - blocks.cube.data).max()) < 1e-4


def test_method_refuses_another_architectures_weights(tmp_path):
    from napari_cofusion import api
    from napari_cofusion.core.cube import Cube
    from napari_cofusion.learn.models import CoFusion, CoFusionConfig

    cfg = CSAKDConfig(hs_bands=6, ms_bands=3, scale=4, **SMALL)
    st, _ = save_weights(CSAKDStudent(cfg), tmp_path / "s6", {"architecture": "csakd", "config": cfg.to_json(),
                                                             "hs_bands": 6, "ms_bands": 3, "scale": 4})
    rng = np.random.default_rng(0)
    lr = Cube(rng.random((6, 8, 8), dtype=np.float32), name="lr")
    msi = Cube(rng.random((3, 32, 32), dtype=np.float32), name="msi")
    res = api.fuse(lr, msi, "csakd", weights=st)
    assert res.cube.shape == (6, 32, 32) and res.meta["weights"] == "s6.safetensors"
    with pytest.raises(WeightsError, match="are a csakd model, not cofusion.*method 'csakd'"):
        api.fuse(lr, msi, "cofusion", weights=st)
    teacher = CoFusion(CoFusionConfig(hs_bands=6, ms_bands=3, scale=4, width=16, depths=(1, 1, 1), top_k=4))
    with pytest.raises(WeightsError, match="is a CoFusion, not a CSAKDStudent"):
        api.fuse(lr, msi, "csakd", model=teacher)


@pytest.mark.slow
def test_short_distillation_from_the_cli_writes_a_card(shared_data, tmp_path, capsys):
    """`distill` on two small real scenes: the teacher's outputs, a few steps whose loss falls,
    and a card naming the teacher, its validation, the loss and the student."""
    from napari_cofusion.cli import main
    from napari_cofusion.learn.weights import load_weights

    out = tmp_path / "kd"
    student = json.dumps({k: v for k, v in SMALL.items()})
    assert main(["distill", "--data", str(shared_data / "cave"), "--train-scenes", "beads", "cloth", "--crop", "96",
                 "--variants", "2", "--steps", "40", "--batch", "4", "--patch", "64", "--val-every", "20",
                 "--learning-rate", "2e-3", "--log-every", "10", "--student", student, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "running the teacher cofusion_cave_x4" in printed and "best validation" in printed
    losses = [float(line.split("loss ")[1].split()[0]) for line in printed.splitlines() if " loss " in line]
    assert len(losses) >= 4 and min(losses[-2:]) < losses[0]
    model, card = load_weights(out.with_suffix(".safetensors"))
    assert isinstance(model, CSAKDStudent) and card["architecture"] == "csakd"
    assert card["teacher"]["weights"] == "cofusion_cave_x4.safetensors" and card["teacher"]["validation"]["psnr"] > 40
    assert card["distillation"]["kd_weight"] == 0.1 and card["training"]["steps_done"] == 40
    assert card["command"].startswith("napari-cofusion distill --data")
    assert card["training_data"]["augmentation"].startswith("2 dihedral variants")
    assert card["validation"]["psnr"] > card["validation_glp_hs"]["psnr"] - 0.5


# ------------------------------------------------------------------ the shipped student


def _shipped():
    from napari_cofusion.learn.weights import shipped_weights_dir

    card = shipped_weights_dir() / "csakd_cave_x4.json"
    if not card.is_file():
        pytest.skip("no shipped csakd_cave_x4 weights in weights/")
    return card


def test_shipped_student_reproduces_its_card_and_meets_its_bar(shared_data):
    """csakd_cave_x4 on the CAVE validation scenes: the card's metrics (±0.01 dB), network alone
    and with fuse()'s default consistency step, and its teacher's as the card records them; it
    beats glp-hs clearly and is within the issue's 0.3 dB of the teacher as ``fuse`` gives them, with
    the consistency step (0.277 dB: 48.075 against 48.352), and network against network (0.119)."""
    from napari_cofusion.core.io import read_cube
    from napari_cofusion.core.metrics import full_reference
    from napari_cofusion.learn.device import set_threads
    from napari_cofusion.learn.train import make_scene, validate
    from napari_cofusion.learn.weights import load_weights

    card_path = _shipped()
    model, card = load_weights(card_path.with_suffix(".safetensors"))
    assert card["architecture"] == "csakd" and card["protocol"] == "cave-x4"
    assert card["n_params"] == model.n_params() and card["teacher"]["weights"] == "cofusion_cave_x4.safetensors"
    assert len(card["training_data"]["train_scenes"]) == 18
    set_threads(None)
    scenes = [make_scene(read_cube(shared_data / "cave" / name), name, {"protocol": "cave-x4"}, with_base=True)
              for name in card["training_data"]["val_scenes"]]
    got, dc = validate(model, scenes), validate(model, scenes, consistency="auto")
    for k, tol in (("psnr", 0.01), ("sam", 0.005), ("ergas", 0.005)):
        assert got[k] == pytest.approx(card["validation"][k], abs=tol)
        assert dc[k] == pytest.approx(card["validation_consistency"][k], abs=tol)
    teacher, _ = load_weights(card_path.with_name(card["teacher"]["weights"]))
    t_dc = validate(teacher, scenes, consistency="auto")
    assert t_dc["psnr"] == pytest.approx(card["teacher"]["validation_consistency"]["psnr"], abs=0.01)
    base = np.mean([full_reference(sc.base.numpy(), sc.ref.numpy(), 4)["psnr"] for sc in scenes])
    print(f"student {dc['psnr']:.3f} dB, teacher {t_dc['psnr']:.3f} dB, glp-hs {base:.3f} dB")
    assert dc["psnr"] > base + 0.6 and dc["sam"] < card["validation_glp_hs"]["sam"] - 0.15
    assert dc["psnr"] > t_dc["psnr"] - 0.3
    # network against network, the student is within 0.3 dB of its teacher (0.119 dB)
    assert got["psnr"] >= validate(teacher, scenes)["psnr"] - 0.15


def test_cli_picks_the_shipped_student(shared_data, tmp_path, capsys):
    from napari_cofusion.cli import main

    _shipped()
    pair = tmp_path / "pair"
    assert main(["simulate", "--ref", str(shared_data / "cave" / "oil_painting_ms"), "--protocol", "cave-x4",
                 "--out", str(pair)]) == 0
    capsys.readouterr()
    out = tmp_path / "s.hdr"
    assert main(["fuse", "--lr", str(pair / "lr.hdr"), "--msi", str(pair / "msi.hdr"), "--method", "csakd",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weights: csakd_cave_x4.safetensors" in printed and "data consistency: projected" in printed
    assert main(["evaluate", "--fused", str(out), "--ref", str(pair / "ref.hdr"), "--scale", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["psnr"] > 46.0


@pytest.mark.gui
def test_gui_fuses_with_the_student(make_napari_viewer, qtbot):
    """The Run panel offers csakd; its result is the core's for the same pair."""
    from napari_cofusion import api
    from napari_cofusion.gui.fusion import FusionWidget
    from napari_cofusion.gui.layers import layer_cube

    _shipped()
    viewer = make_napari_viewer()
    viewer.open_sample("napari-cofusion", "cave_pair")
    _dock, w = viewer.window.add_plugin_dock_widget("napari-cofusion", "Fusion")
    assert isinstance(w, FusionWidget)
    methods = [w.method_combo.itemText(i) for i in range(w.method_combo.count())]
    assert "csakd" in methods
    w.method_combo.setCurrentText("csakd")
    assert w.weights_combo.isEnabled() and w.consistency_combo.currentText() == "auto"
    assert w.run_fusion() is not None
    qtbot.waitUntil(lambda: w.worker is None, timeout=240_000)
    out = w.last_result_layer
    assert out is not None and out.name == "csakd fused" and out.rgb is False
    assert out.metadata["weights"] in ("matching shipped weights", "csakd_cave_x4.safetensors")
    core = api.fuse(layer_cube(w.state.pair.lr), layer_cube(w.state.pair.msi), "csakd").cube.data
    np.testing.assert_allclose(out.data, core, atol=1e-5)
