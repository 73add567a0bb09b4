"""The training engine: a generator that yields progress, stops cleanly, checkpoints and resumes."""

import json

import numpy as np
import pytest
import torch

from napari_cofusion.cli import main
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.samples import bundled_reference
from napari_cofusion.learn.train import Progress, TrainConfig, fusion_loss, make_scene, train

SMALL = dict(width=16, depths=(1, 1, 1), top_k=4)


@pytest.fixture(scope="module")
def scenes():
    ref = bundled_reference()
    tr = make_scene(ref.with_data(np.ascontiguousarray(ref.data[:, :96, :96])), "a", {"protocol": "cave-x4"}, with_base=True)
    tr2 = make_scene(ref.with_data(np.ascontiguousarray(ref.data[:, :96, :96])), "a-rot", {"protocol": "cave-x4"}, True, k_rot=1)
    va = make_scene(ref.with_data(np.ascontiguousarray(ref.data[:, 64:, 64:])), "b", {"protocol": "cave-x4"}, with_base=True)
    return [tr, tr2], [va]


def test_loss_is_l1_plus_ssim_term():
    x = torch.rand(2, 3, 20, 20)
    assert float(fusion_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    z = x + 0.1
    assert float(fusion_loss(z, x, ssim_weight=0.0)) == pytest.approx(0.1, rel=1e-5)


def test_dihedral_variants_are_resimulated(scenes):
    (a, a_rot), _ = scenes
    torch.testing.assert_close(a_rot.ref, torch.rot90(a.ref, 1, dims=(1, 2)))
    # the LRHSI is simulated from the rotated reference, not rotated itself (the phase would move)
    assert not torch.allclose(a_rot.lr, torch.rot90(a.lr, 1, dims=(1, 2)))


def test_generator_yields_progress_and_improves(scenes):
    tr, va = scenes
    torch.manual_seed(0)
    model = CoFusion(CoFusionConfig(base="glp-hs", dropout=0.0, **SMALL))
    cfg = TrainConfig(steps=30, batch=4, patch=32, lr=1e-3, warmup=3, val_every=15, ckpt_every=100)
    progress = list(train(model, tr, va, cfg))
    assert all(isinstance(p, Progress) for p in progress)
    assert [p.step for p in progress] == list(range(1, 31))
    assert progress[-1].done and not progress[0].done
    vals = [p for p in progress if p.val]
    assert [p.step for p in vals] == [15, 30]
    assert set(vals[0].val) >= {"psnr", "sam", "ssim", "ergas"}
    assert progress[-1].best_val["psnr"] == max(p.val["psnr"] for p in vals)
    assert all(np.isfinite(p.loss) for p in progress)
    assert not model.training  # left in eval mode, ready to fuse


def test_bf16_training_runs_the_forward_in_bf16_and_keeps_float32_weights(scenes):
    """``precision="bf16"``: the forward's convolutions under bf16 autocast, the loss and the
    weights in float32, and the loss falls; "auto" is float32 on the CPU; a typo is refused."""
    from napari_cofusion.core.errors import CubeError
    from napari_cofusion.learn.train import train_autocast

    tr, _va = scenes
    torch.manual_seed(0)
    model = CoFusion(CoFusionConfig(base="glp-hs", dropout=0.0, **SMALL))
    cpu = torch.device("cpu")
    x, seen = tr[0], []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    hook = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    for precision in ("bf16", "auto", "float32"):
        with train_autocast(cpu, precision):
            model(x.lr[None], x.msi[None], x.base[None])
    hook.remove()
    assert seen == [torch.bfloat16, torch.float32, torch.float32]
    cfg = TrainConfig(steps=20, batch=4, patch=32, lr=1e-3, warmup=2, val_every=10**9, ckpt_every=10**9,
                      precision="bf16")
    losses = [p.loss for p in train(model, tr, (), cfg)]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(CubeError, match="precision = 'fp8'"):
        TrainConfig(precision="fp8")


def test_stop_keeps_model_usable_and_resume_continues(scenes, tmp_path):
    tr, va = scenes
    model = CoFusion(CoFusionConfig(base="glp-hs", **SMALL))
    cfg = TrainConfig(steps=20, batch=2, patch=32, warmup=2, val_every=100, ckpt_every=100)
    gen = train(model, tr, va, cfg, ckpt_dir=tmp_path / "ck")
    for p in gen:
        if p.step == 5:
            break  # the GUI's Cancel: stop at the next yield
    gen.close()
    meta = json.loads((tmp_path / "ck" / "last.json").read_text())
    assert meta["step"] == 5
    out = model(tr[0].lr[None], tr[0].msi[None], tr[0].base[None])
    assert torch.isfinite(out).all() and not model.training

    model2 = CoFusion(CoFusionConfig(base="glp-hs", **SMALL))
    steps = [p.step for p in train(model2, tr, va, cfg, ckpt_dir=tmp_path / "ck", resume=True)]
    assert steps == list(range(6, 21))


def test_train_cli_writes_weights_that_fuse(tmp_path, shared_data, capsys):
    out = tmp_path / "w"
    assert main(["train", "--data", str(shared_data / "cave"), "--train-scenes", "beads", "--crop", "64",
                 "--steps", "4", "--batch", "2", "--patch", "32", "--no-augment", "--depths", "1", "1", "1",
                 "--val-every", "2", "--ckpt-every", "100", "--ckpt-dir", str(tmp_path / "ck"), "--workers", "2",
                 "--log-every", "1", "--out", str(out)]) == 0
    # the best validation state is saved before the first periodic checkpoint
    assert (tmp_path / "ck" / "best.safetensors").is_file() and (tmp_path / "ck" / "last.json").is_file()
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["training"]["device"] == "cpu"
    assert card["hs_bands"] == 31 and card["ms_bands"] == 3 and card["scale"] == 4
    assert card["protocol"] == "cave-x4" and card["training"]["steps_done"] == 4
    assert card["training_data"]["train_scenes"] == ["beads_ms"]
    assert "psnr" in card["validation"] and "psnr" in card["validation_glp_hs"]
    assert len(card["hs_wavelengths_nm"]) == 31
    # and fuse with them from the CLI
    pair_dir = tmp_path / "pair"
    ref = shared_data / "cave" / "paints_ms"
    assert main(["simulate", "--ref", str(ref), "--protocol", "cave-x4", "--out", str(pair_dir)]) == 0
    assert main(["fuse", "--lr", str(pair_dir / "lr.hdr"), "--msi", str(pair_dir / "msi.hdr"), "--method", "cofusion",
                 "--weights", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "f.tif")]) == 0
    capsys.readouterr()
    # wrong band count for the weights: a clear one-line error
    assert main(["fuse", "--lr", str(pair_dir / "msi.hdr"), "--msi", str(pair_dir / "msi.hdr"), "--method", "cofusion",
                 "--weights", str(tmp_path / "w.safetensors"), "--out", str(tmp_path / "g.tif")]) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_cuda_without_a_gpu_is_a_clear_error(scenes, shared_data, tmp_path, capsys):
    from napari_cofusion.core.errors import DeviceError

    tr, va = scenes
    model = CoFusion(CoFusionConfig(base="glp-hs", **SMALL))
    with pytest.raises(DeviceError, match="CUDA"):
        next(train(model, tr, va, TrainConfig(steps=2, batch=2, patch=32), device="cuda"))
    assert main(["train", "--data", str(shared_data / "cave"), "--device", "cuda", "--out", str(tmp_path / "w")]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_leaves_the_model_on_the_cpu(scenes):
    tr, va = scenes
    model = CoFusion(CoFusionConfig(base="glp-hs", **SMALL))
    progress = list(train(model, tr, va, TrainConfig(steps=4, batch=2, patch=32, warmup=1, val_every=2), device="cuda"))
    assert progress[-1].best_val and np.isfinite(progress[-1].loss)
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert tr[0].ref.device.type == "cpu"  # the caller's scenes are not moved


def test_train_init_from_other_scale_weights_on_the_dhif_protocol(tmp_path, shared_data, capsys):
    """``train --init cofusion_cave_x4 --protocol dhif-x4``: the run starts from the x4 weights
    (every parameter equal before the first step; none depends on the scale), the card records the
    start and the protocol's PSF, and ``fuse`` with those weights on a dhif pair without a recipe
    takes the card's PSF and the dhif phase (no warning about another PSF)."""
    import warnings

    from napari_cofusion.api import fuse
    from napari_cofusion.core.errors import CofusionWarning
    from napari_cofusion.degrade.simulate import simulate_pair
    from napari_cofusion.learn.train_folder import init_from
    from napari_cofusion.learn.weights import load_weights, shipped_weights_dir
    from napari_cofusion.samples import bundled_reference

    start, info = init_from("cofusion_cave_x4", 31, 3, 2)
    src, _ = load_weights(shipped_weights_dir() / "cofusion_cave_x4.safetensors")
    assert start.cfg.scale == 2 and info["scale"] == 4 and info["weights"] == "cofusion_cave_x4.safetensors"
    assert all(torch.equal(a, b) for a, b in zip(start.state_dict().values(), src.state_dict().values()))
    out = tmp_path / "w"
    assert main(["train", "--data", str(shared_data / "cave"), "--protocol", "dhif-x4", "--init", "cofusion_cave_x4",
                 "--train-scenes", "beads", "--crop", "64", "--steps", "1", "--batch", "1", "--patch", "32",
                 "--no-augment", "--val-every", "1", "--warmup", "0", "--out", str(out)]) == 0
    card = json.loads((tmp_path / "w.json").read_text())
    assert card["protocol"] == "dhif-x4" and card["psf"] == "dhif" and card["scale"] == 4
    assert card["init"]["weights"] == "cofusion_cave_x4.safetensors" and card["init"]["protocol"] == "cave-x4"
    # from other weights the start is validated too, and the kept state is the best output with the step
    assert card["training"]["select"] == "consistency" and card["training"]["val_start"] is True
    assert card["validation"]["step"] in (0, 1) and "score" in card["validation"]
    assert card["validation"]["score"] == pytest.approx(card["validation_consistency"]["psnr"], abs=1e-6)
    pair = simulate_pair(bundled_reference(), protocol="dhif-x4")
    lr = pair.lr.with_data(pair.lr.data, meta={})  # no recipe: the card's PSF decides
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CofusionWarning)
        r = fuse(lr, pair.msi, "cofusion", weights=str(tmp_path / "w.safetensors"))
    assert r.meta["psf"] == {"kind": "dhif"}
    assert not [w for w in caught if "trained for the PSF" in str(w.message)]
    from napari_cofusion.core.errors import CubeError
    from napari_cofusion.learn import train_folder

    with pytest.raises(CubeError, match="leave out --depths"):
        train_folder.prepare(shared_data / "cave", [shared_data / "cave" / "beads_ms"], [], "cave-x2",
                             train_folder.training_config(steps=1), depths=(1, 1, 1), init="cofusion_cave_x4")
