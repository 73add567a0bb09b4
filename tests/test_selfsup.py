"""Degradation estimation from a pair alone, phase-true augmentation, and the scene-only
(self-supervised) fine-tune, from Python and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_cofusion.core.errors import CubeError, DeviceError, WeightsError
from napari_cofusion.degrade.estimate import estimate_degradation
from napari_cofusion.core.io import read_cube
from napari_cofusion.learn.models import CoFusion, CoFusionConfig
from napari_cofusion.core.ops import gaussian_sigma_wald
from napari_cofusion.samples import bundled_reference
from napari_cofusion.learn.selfsup import adapt_model, dihedral_pair, finetune_scene, reduced_scenes
from napari_cofusion.degrade.simulate import simulate_pair
from napari_cofusion.learn.train import TrainConfig

# tolerances reached on noise-free simulated pairs (see the closing note / README)
SIGMA_TOL = 0.02  # px
MSI_TOL = 0.002  # relative error of R̂·X against R·X (the HRMSI the estimate predicts)
SRF_TOL_NIKON = 0.15  # relative Frobenius error of R̂ (31 bands)
SRF_TOL_WIDE = 0.3  # 100–200 bands: spectrally correlated bands make R itself ill-posed


def _check(pair, est, sigma_true, srf_tol):
    R = pair.srf_matrix
    assert est.phase == pair.recipe.decimation_phase
    assert abs(est.sigma - sigma_true) < SIGMA_TOL, (est.sigma, sigma_true)
    assert np.linalg.norm(est.srf - R) / np.linalg.norm(R) < srf_tol
    X = pair.reference.data
    err = np.linalg.norm(np.einsum("kc,chw->khw", est.srf - R, X)) / np.linalg.norm(pair.msi.data)
    assert err < MSI_TOL
    assert (est.srf >= 0).all()


@pytest.mark.parametrize("scale,psf", [(4, "weak"), (2, "wald"), (4, "wald"), (8, "wald")])
def test_estimate_cave_nikon(scale, psf):
    ref = bundled_reference()
    pair = simulate_pair(ref, scale=scale, psf=psf, srf="nikon-d700")
    est = estimate_degradation(pair.lr, pair.msi)
    sigma = 0.5 if psf == "weak" else gaussian_sigma_wald(scale)
    _check(pair, est, sigma, SRF_TOL_NIKON)
    assert est.scale == scale and est.psf_estimated and est.srf_estimated
    assert "σ" in est.describe()


def test_estimate_ikonos_like_on_other_sensors(shared_data):
    pavia = read_cube(shared_data / "paviau" / "paviaU_subimg.mat", norm="max")
    pair = simulate_pair(pavia, scale=4, psf="wald", srf="rosis-ikonos4")
    _check(pair, estimate_degradation(pair.lr, pair.msi), gaussian_sigma_wald(4), SRF_TOL_WIDE)
    dc = read_cube(shared_data / "dcmall" / "matlab_dc5.tif", norm="max")
    dc.wavelengths = np.linspace(400.0, 2400.0, dc.bands)  # HYDICE, approximately
    pair = simulate_pair(dc, scale=4, psf="weak", srf="ikonos")
    _check(pair, estimate_degradation(pair.lr, pair.msi), 0.5, SRF_TOL_WIDE)


def test_estimate_with_noise():
    pair = simulate_pair(bundled_reference(), scale=4, psf="wald", srf="nikon-d700", snr_db=35, seed=3)
    est = estimate_degradation(pair.lr, pair.msi)
    assert est.phase == 2
    assert abs(est.sigma - gaussian_sigma_wald(4)) < 0.1


def test_presets_override_estimates():
    pair = simulate_pair(bundled_reference(), scale=4, psf="wald", srf="nikon-d700")
    fixed_psf = estimate_degradation(pair.lr, pair.msi, psf="wald")
    assert not fixed_psf.psf_estimated and fixed_psf.srf_estimated and fixed_psf.phase == 2
    fixed_srf = estimate_degradation(pair.lr, pair.msi, srf="nikon-d700")
    assert not fixed_srf.srf_estimated and fixed_srf.psf_estimated
    np.testing.assert_allclose(fixed_srf.srf, pair.srf_matrix, atol=1e-6)
    assert abs(fixed_srf.sigma - gaussian_sigma_wald(4)) < SIGMA_TOL
    with pytest.raises(CubeError, match="4×103|3×31|needs"):
        estimate_degradation(pair.lr, pair.msi, srf="rosis-ikonos4")


def test_free_kernel():
    pair = simulate_pair(bundled_reference(), scale=4, psf="weak", srf="nikon-d700")
    est = estimate_degradation(pair.lr, pair.msi, free_kernel=3)
    assert est.kernel.shape == (3, 3) and abs(est.kernel.sum() - 1) < 1e-9
    np.testing.assert_allclose(est.kernel, pair.recipe.kernel(), atol=0.02)
    assert est.psf["kind"] == "array"


def test_estimate_bad_input():
    pair = simulate_pair(bundled_reference(), scale=4, psf="weak", srf="nikon-d700")
    bad = pair.lr.data.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(CubeError, match="NaN"):
        estimate_degradation(bad, pair.msi.data)
    with pytest.raises(CubeError, match="more"):
        estimate_degradation(pair.msi.data[:, :32, :32], pair.lr.data)
    with pytest.raises(CubeError, match="integer|scale|size"):
        estimate_degradation(pair.lr.data, pair.msi.data[:, :100, :100])


# ------------------------------------------------------------------------------- augmentation
@settings(max_examples=40, deadline=None)
@given(s=st.integers(2, 8), data=st.data())
def test_dihedral_pair_keeps_the_phase(s, data):
    p = data.draw(st.integers(0, s - 1))
    h, w = data.draw(st.integers(2, 6)), data.draw(st.integers(2, 6))
    rng = np.random.default_rng(s * 100 + p)
    X = rng.random((2, s * h + data.draw(st.integers(0, s - 1)), s * w)).astype(np.float32)
    LR = X[:, p::s, p::s][:, :h, :w]
    for k in range(4):
        for flip in (False, True):
            hv, lv = dihedral_pair(X, LR, k, flip, s, p)
            assert hv.shape[1:] == (s * lv.shape[1], s * lv.shape[2])
            assert lv.shape[1] >= min(h, w) - 1 and lv.shape[2] >= min(h, w) - 1
            np.testing.assert_array_equal(hv[:, p::s, p::s], lv)


def test_reduced_scenes_are_wald_pairs():
    pair = simulate_pair(bundled_reference(), scale=4, psf="weak", srf="nikon-d700")
    est = estimate_degradation(pair.lr, pair.msi)
    scenes = reduced_scenes(pair.lr.data, pair.msi.data, est, with_base=False)
    assert len(scenes) == 8
    for sc in scenes:
        # a flip costs one LR row or column (phase), and the reduced grid keeps whole multiples of s
        _c, h, w = sc.ref.shape
        assert h in (28, 32) and w in (28, 32)
        assert sc.lr.shape == (31, h // 4, w // 4) and sc.msi.shape == (3, h, w)
        # the reduced HRMSI is the SRF applied to the target (the observed LRHSI): D(B*MSI) = R·LR
        pred = np.einsum("kc,chw->khw", est.srf, sc.ref.numpy())
        assert np.linalg.norm(pred - sc.msi.numpy()) / np.linalg.norm(sc.msi.numpy()) < 0.01


# ------------------------------------------------------------------------------- starting model
def test_adapt_model_keeps_the_body():
    torch.manual_seed(0)
    src = CoFusion(CoFusionConfig(hs_bands=31, ms_bands=3, scale=4, width=16, depths=(1, 1, 1), top_k=4))
    for p in src.parameters():
        p.data.normal_()
    same, info = adapt_model(src, 31, 3, 4)
    assert info["mode"] == "pretrained"
    for a, b in zip(src.state_dict().values(), same.state_dict().values()):
        assert torch.equal(a, b)
    other, info = adapt_model(src, 103, 4, 4)
    assert info["mode"] == "adapted" and other.cfg.hs_bands == 103 and other.cfg.ms_bands == 4
    reinit = set(info["reinitialised"])
    assert reinit and all(k.startswith(("encoders.", "head.")) or "stages" not in k for k in reinit)
    src_sd, new_sd = src.state_dict(), other.state_dict()
    body = [k for k in new_sd if k.startswith("stages.")]
    assert body and all(torch.equal(src_sd[k], new_sd[k]) for k in body)
    assert all(k not in reinit for k in body)
    new, info = adapt_model(None, 48, 3, 4)
    assert info["mode"] == "new" and new.cfg.base == "glp-hs"


# ------------------------------------------------------------------------------- the fine-tune
def _small(hs, ms, scale, base="glp-hs"):
    torch.manual_seed(0)
    return CoFusion(CoFusionConfig(hs_bands=hs, ms_bands=ms, scale=scale, width=16, depths=(1, 1, 1), top_k=4, base=base))


def test_short_finetune_lowers_the_reduced_resolution_loss():
    pair = simulate_pair(bundled_reference(), scale=4, psf="wald", srf="nikon-d700")
    model = _small(31, 3, 4, base="bicubic")
    cfg = TrainConfig(steps=60, batch=4, patch=16, lr=2e-3, warmup=5, val_every=10**9, ckpt_every=10**9)
    report: dict = {}
    # the reduced-resolution loss on its own (the default adds the consistency losses)
    items = list(finetune_scene(model, pair.lr, pair.msi, cfg, report=report, consistency=0.0))
    statuses = [i for i in items if isinstance(i, str)]
    steps = [i for i in items if not isinstance(i, str)]
    assert any("estimated" in s for s in statuses)
    assert len(steps) == 60 and steps[-1].done
    assert report["reduced_after"] < 0.7 * report["reduced_before"], report
    assert abs(report["degradation"]["sigma"] - gaussian_sigma_wald(4)) < SIGMA_TOL
    assert not model.training


def test_consistency_losses_pull_the_output_towards_the_observations():
    """With the consistency losses (the default route) a short fine-tune lowers the mismatch
    between the re-degraded output and the observed pair on the whole scene."""
    from napari_cofusion.core import ops
    from napari_cofusion.learn.train import classical_base

    pair = simulate_pair(bundled_reference(), scale=4, psf="wald", srf="nikon-d700")
    deg = estimate_degradation(pair.lr, pair.msi)
    lr, ms = torch.from_numpy(pair.lr.data)[None], torch.from_numpy(pair.msi.data)[None]
    base = torch.from_numpy(classical_base(pair.lr.data, pair.msi.data, deg.kernel, 4, deg.phase))[None]
    model = _small(31, 3, 4)
    with torch.no_grad():  # start away from the base, so that there is a mismatch to remove
        model.head[-1].weight.normal_(std=0.05)

    def mismatch() -> float:
        with torch.inference_mode():
            z = model.eval()(lr, ms, base)
            return float((ops.degrade(z, deg.kernel, 4, deg.phase) - lr)[..., 1:-1, 1:-1].abs().mean()
                         + (ops.project(z, deg.srf) - ms).abs().mean())

    before = mismatch()
    cfg = TrainConfig(steps=30, batch=2, patch=16, lr=2e-3, warmup=3, val_every=10**9, ckpt_every=10**9)
    list(finetune_scene(model, pair.lr, pair.msi, cfg, degradation=deg, consistency=100.0))
    after = mismatch()
    assert after < 0.7 * before, (before, after)


def test_default_settings_agree():
    """The scene fine-tune's defaults: one set, used by the CLI (the widget shows them: its test)."""
    from napari_cofusion.learn import selfsup
    from napari_cofusion.cli import build_parser

    cfg = selfsup.scene_config()
    assert (cfg.steps, cfg.lr) == (selfsup.DEFAULT_STEPS, selfsup.DEFAULT_LR)
    a = build_parser().parse_args(["finetune", "--lr", "a.hdr", "--msi", "b.hdr", "--out", "w"])
    assert a.steps is None and a.learning_rate is None and a.consistency is None  # → the selfsup defaults


def test_finetune_cancel_leaves_a_usable_model():
    pair = simulate_pair(bundled_reference(), scale=4, psf="weak", srf="nikon-d700")
    model = _small(31, 3, 4)
    cfg = TrainConfig(steps=1000, batch=2, patch=16, lr=1e-3, warmup=5, val_every=10**9, ckpt_every=10**9)
    gen = finetune_scene(model, pair.lr, pair.msi, cfg, consistency=0.5)
    n = 0
    for item in gen:
        if not isinstance(item, str):
            n += 1
            if n == 3:
                break
    gen.close()
    assert not model.training
    with torch.inference_mode():
        out = model(torch.from_numpy(pair.lr.data)[None], torch.from_numpy(pair.msi.data)[None])
    assert torch.isfinite(out).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown where CUDA is missing")
def test_finetune_on_cuda_without_a_gpu_is_a_clear_error():
    pair = simulate_pair(bundled_reference(), scale=4, psf="weak", srf="nikon-d700")
    model = _small(31, 3, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(DeviceError, match="no CUDA device"):
        list(finetune_scene(model, pair.lr, pair.msi, device="cuda"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_finetune_on_cuda_with_consistency():
    pair = simulate_pair(bundled_reference(), scale=4, psf="weak", srf="nikon-d700")
    model = _small(31, 3, 4)
    cfg = TrainConfig(steps=4, batch=2, patch=16, lr=1e-3, warmup=1, val_every=10**9, ckpt_every=10**9)
    steps = [i for i in finetune_scene(model, pair.lr, pair.msi, cfg, consistency=0.5, device="cuda")
             if not isinstance(i, str)]
    assert len(steps) == 4 and np.isfinite(steps[-1].loss)
    assert all(p.device.type == "cpu" for p in model.parameters())


def test_finetune_refuses_band_mismatch():
    pair = simulate_pair(bundled_reference(), scale=4, psf="weak", srf="nikon-d700")
    with pytest.raises(WeightsError, match="expects 48 HS"):
        list(finetune_scene(_small(48, 3, 4), pair.lr, pair.msi))


# ------------------------------------------------------------------------------- CLI
def test_cli_estimate_finetune_fuse(tmp_path, capsys):
    from napari_cofusion.cli import main

    ref = tmp_path / "ref.npz"
    np.savez(ref, cube=bundled_reference().data[:, :64, :64], wavelengths=bundled_reference().wavelengths)
    pair_dir = tmp_path / "pair"
    assert main(["simulate", "--ref", str(ref), "--scale", "4", "--psf", "wald", "--srf", "nikon-d700",
                 "--out", str(pair_dir)]) == 0
    (pair_dir / "recipe.json").unlink()  # a pair with no known degradations
    lr, msi = str(pair_dir / "lr.hdr"), str(pair_dir / "msi.hdr")
    assert main(["estimate", "--lr", lr, "--msi", msi, "--out", str(tmp_path / "deg.json")]) == 0
    assert "phase 2" in capsys.readouterr().out
    deg = json.loads((tmp_path / "deg.json").read_text())
    assert abs(deg["sigma"] - gaussian_sigma_wald(4)) < SIGMA_TOL and np.asarray(deg["srf"]["matrix"]).shape == (3, 31)
    w = tmp_path / "tuned"
    assert main(["finetune", "--lr", lr, "--msi", msi, "--weights", "new", "--steps", "3", "--patch", "8",
                 "--threads", "1", "--log-every", "1", "--out", str(w)]) == 0
    out = capsys.readouterr().out
    assert "step 3/3" in out and "estimated" in out
    card = json.loads((tmp_path / "tuned.json").read_text())
    assert card["hs_bands"] == 31 and card["psf"]["kind"] == "gaussian" and card["training"]["steps_done"] == 3
    assert abs(card["psf"]["sigma"] - gaussian_sigma_wald(4)) < SIGMA_TOL
    fused = tmp_path / "fused.npy"
    assert main(["fuse", "--lr", lr, "--msi", msi, "--method", "cofusion", "--weights", str(w) + ".safetensors",
                 "--out", str(fused)]) == 0
    assert np.load(fused).shape == (31, 64, 64)
    # never overwrites the weights
    assert main(["finetune", "--lr", lr, "--msi", msi, "--weights", "new", "--steps", "1", "--out", str(w)]) == 2
    assert "already exists" in capsys.readouterr().err
