"""``pnp-zsl``: pnp-gf, then a residual network trained zero-shot on the pair degraded once more
(the learned pair-only route)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cofusion.api import fuse, read_cube
from napari_cofusion.core import metrics, ops
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.estimate import estimate_degradation
from napari_cofusion.degrade.simulate import reduced_pair, simulate_pair
from napari_cofusion.fusion.scene_prior import pnp_gf
from napari_cofusion.learn import zsl_pnp


def _psf(deg) -> dict:
    return {"psf": {"kind": "array", "kernel_values": np.asarray(deg.kernel).tolist()}, "phase": deg.phase}


@pytest.fixture(scope="module")
def cave_crop_pair(shared_data):
    """The CAVE validation scene paints, its top-left 256×256 pixels, seen at ×4 by the IKONOS-B/G/R
    camera with a σ 2 px blur (as benchmarks/scene_finetune.py), the pair alone: the pair degraded
    once more has a 16×16-pixel LRHSI, the smallest the network is trained on."""
    folder = shared_data / "cave" / "paints_ms"
    if not folder.is_dir():
        pytest.skip(f"CAVE scene folder {folder} not found")
    ref = read_cube(folder)
    ref = ref.with_data(ref.data[:, :256, :256].copy())
    pair = simulate_pair(ref, scale=4, psf="gaussian:2", srf="ikonos")
    pair.lr.meta.pop("recipe", None)
    return pair, estimate_degradation(pair.lr, pair.msi)


@pytest.fixture(scope="module")
def pavia_pair(shared_data):
    ref = read_cube(shared_data / "paviau" / "paviaU_subimg.mat", norm="max")
    pair = simulate_pair(ref, scale=4, psf="wald", srf="rosis-ikonos4")
    pair.lr.meta.pop("recipe", None)
    return pair


def test_the_smaller_pair_is_the_pair_degraded_once_more():
    g = torch.Generator().manual_seed(0)
    lr, msi = torch.rand(6, 32, 32, generator=g).numpy(), torch.rand(3, 128, 128, generator=g).numpy()
    kernel = ops.gaussian_kernel(7, 1.7)
    ref, L2, M2 = reduced_pair(lr, msi, kernel, 4, 2)
    assert L2.shape == (6, 8, 8) and M2.shape == (3, 32, 32)
    np.testing.assert_array_equal(ref, lr)
    np.testing.assert_allclose(L2, ops.degrade(torch.from_numpy(lr), kernel, 4, 2).numpy())
    np.testing.assert_allclose(M2, ops.degrade(torch.from_numpy(msi), kernel, 4, 2).numpy())


def test_the_network_starts_as_no_correction():
    net = zsl_pnp.ResidualNet(k=4, c=3, width=8)
    basis = zsl_pnp.Basis(np.linalg.qr(np.random.default_rng(0).normal(size=(10, 4)))[0].astype(np.float32),
                          np.full(10, 0.3, np.float32), 0.5, 0.2)
    z = np.random.default_rng(1).random((10, 24, 24)).astype(np.float32)
    msi = np.random.default_rng(2).random((3, 24, 24)).astype(np.float32)
    assert net(basis.inputs(z, msi)).shape == (1, 4, 24, 24)
    np.testing.assert_array_equal(zsl_pnp.apply_residual(net, basis, z, msi), z)


def test_training_learns_what_pnp_gf_gets_wrong_on_pixels_it_did_not_see(cave_crop_pair):
    """On the smaller pair the network's correction lowers pnp-gf's error on the pixels it was
    trained on and on the held-out quarter; a margin it cannot meet turns it off, saying why."""
    pair, deg = cave_crop_pair
    L, M, k, ph = pair.lr.data, pair.msi.data, np.asarray(deg.kernel), deg.phase

    def pnp(a, b):
        return pnp_gf(a, b, 4, k, ph)

    calls = []
    net, basis, rep = zsl_pnp.fit_residual(L, M, 4, k, ph, pnp, zsl_pnp.ZSLConfig(steps=150),
                                           progress=lambda i, n, loss: calls.append((i, n, loss)))
    assert rep.reduced_shape == (31, 16, 16) and len(calls) == 150 and calls[-1][1] == 150
    assert rep.train_ratio < 0.9 and rep.held_out_ratio < 0.95 and rep.used and net is not None
    strict = zsl_pnp.ZSLConfig(steps=150, max_ratio=0.05)
    net2, _, rep2 = zsl_pnp.fit_residual(L, M, 4, k, ph, pnp, strict)
    assert net2 is None and not rep2.used and "learned nothing that holds" in rep2.reason


def test_pnp_zsl_beats_pnp_gf_on_a_cave_crop_and_keeps_both_observations(cave_crop_pair):
    pair, deg = cave_crop_pair
    gf = fuse(pair.lr, pair.msi, "pnp-gf", **_psf(deg))
    res = fuse(pair.lr, pair.msi, "pnp-zsl", **_psf(deg))
    net = res.meta["options"]["network"]
    assert net["used"] and net["reduced_shape"] == [31, 16, 16]
    ref = pair.reference.data
    assert metrics.psnr(res.cube.data, ref) > metrics.psnr(gf.cube.data, ref) + 0.05
    assert metrics.sam(res.cube.data, ref) < metrics.sam(gf.cube.data, ref)
    back = ops.degrade(torch.from_numpy(res.cube.data), deg.kernel, 4, deg.phase).numpy()
    assert np.linalg.norm(back - pair.lr.data) < 2e-3 * np.linalg.norm(pair.lr.data)


def test_a_pair_too_small_to_learn_from_gets_pnp_gf_and_says_why(pavia_pair):
    """The PaviaU crop (48×48) at ×4: the pair degraded once more has a 3×3 LRHSI."""
    p = pavia_pair
    res = fuse(p.lr, p.msi, "pnp-zsl", psf="wald")
    gf = fuse(p.lr, p.msi, "pnp-gf", psf="wald")
    net = res.meta["options"]["network"]
    assert not net["used"] and "3×3-pixel LRHSI" in net["reason"] and "this is pnp-gf" in net["reason"]
    np.testing.assert_array_equal(res.cube.data, gf.cube.data)


def test_pnp_zsl_refuses_bad_options(pavia_pair):
    p = pavia_pair
    for bad, word in (({"steps": -1}, "steps"), ({"k": 0}, "k"), ({"seed": "a"}, "seed"), ({"seed": -1}, "seed"),
                      ({"seed": 2 ** 64}, "seed"), ({"steps": 2.5}, "steps")):
        with pytest.raises(CubeError, match=f"pnp-zsl: {word}"):
            fuse(p.lr, p.msi, "pnp-zsl", psf="wald", **bad)
    with pytest.raises(CubeError, match="pnp-zsl does not take _net"):
        fuse(p.lr, p.msi, "pnp-zsl", psf="wald", _net=None)


def test_cli_fuses_a_real_crop_with_pnp_zsl_and_says_what_the_network_did(pavia_pair, tmp_path, capsys):
    """The learned pair-only route from the CLI on a small real crop: the pair alone, the PSF
    estimated from it; the printed choices say the network was left out, and why."""
    from napari_cofusion.api import write_cube
    from napari_cofusion.cli import main

    p = pavia_pair
    write_cube(p.lr, tmp_path / "lr.hdr")
    write_cube(p.msi, tmp_path / "msi.hdr")
    assert main(["fuse", "--lr", str(tmp_path / "lr.hdr"), "--msi", str(tmp_path / "msi.hdr"), "--method", "pnp-zsl",
                 "--psf", "auto", "--out", str(tmp_path / "fused.hdr")]) == 0
    text = capsys.readouterr().out
    chosen = next(line for line in text.splitlines() if line.startswith("chosen from the pair: "))
    assert "network not used (the pair degraded once more has a 3×3-pixel LRHSI" in chosen and "rounds 20" in chosen
    out = read_cube(tmp_path / "fused.hdr")
    assert out.shape == p.reference.shape and metrics.psnr(out.data, p.reference.data) > 44.0  # glp-hs 43.81 dB


def test_blocks_use_the_network_trained_once_on_the_whole_pair(cave_crop_pair, monkeypatch):
    """A block-wise run trains once, on the whole pair (before any block), and its blocks land
    where the whole frame does."""
    pair, deg = cave_crop_pair
    trained = []
    real = zsl_pnp.fit_residual
    monkeypatch.setattr(zsl_pnp, "fit_residual", lambda *a, **k: trained.append(a[0].shape) or real(*a, **k))
    whole = fuse(pair.lr, pair.msi, "pnp-zsl", **_psf(deg))
    tiled = fuse(pair.lr, pair.msi, "pnp-zsl", tile=128, **_psf(deg))
    assert tiled.blocks > 1 and trained == [(31, 64, 64), (31, 64, 64)]
    same = lambda net: {k: v for k, v in net.items() if k != "train_seconds"}  # noqa: E731
    assert same(tiled.meta["options"]["network"]) == same(whole.meta["options"]["network"])
    ref = pair.reference.data
    assert abs(metrics.psnr(tiled.cube.data, ref) - metrics.psnr(whole.cube.data, ref)) < 0.1


def test_a_sharp_psf_leaves_the_network_out_and_says_why():
    """A PSF much narrower than the scale (a 3×3 Gaussian, sigma 0.46 px at ×4, as the ``weak`` preset) leaves the
    LRHSI aliased: no training, and the reason names the PSF's width."""
    g = torch.Generator().manual_seed(0)
    lr, msi = torch.rand(6, 80, 80, generator=g).numpy(), torch.rand(3, 320, 320, generator=g).numpy()
    called = []
    net, basis, rep = zsl_pnp.fit_residual(lr, msi, 4, ops.gaussian_kernel(3, 0.5), 2,
                                           lambda a, b: called.append(1) or a, zsl_pnp.ZSLConfig(steps=5))
    assert net is None and basis is None and not rep.used and not called
    assert "PSF (sigma 0.46 px) is narrower than 0.25 × the scale (1.00 px)" in rep.reason and "aliased" in rep.reason
    with pytest.raises(CubeError, match="pnp-zsl: min_psf_width"):
        zsl_pnp.ZSLConfig(min_psf_width=-1.0).check()


def test_an_lrhsi_that_is_not_whole_cells_of_the_smaller_grid_is_cropped_to_them():
    """A 75×74-pixel LRHSI at ×4 (HR 300×296): the smaller pair is made from its top-left 72×72
    pixels, an 18×18 LRHSI with an exactly 4× larger MSI."""
    g = torch.Generator().manual_seed(3)
    lr, msi = torch.rand(5, 75, 74, generator=g).numpy(), torch.rand(3, 300, 296, generator=g).numpy()
    seen = []

    def pnp(a, b):  # stands in for pnp-gf: checks the smaller pair's shapes, returns a cube of the MSI's size
        seen.append((a.shape, b.shape))
        return np.repeat(np.repeat(a, 4, 1), 4, 2)

    state = torch.random.get_rng_state()
    net, basis, rep = zsl_pnp.fit_residual(lr, msi, 4, ops.gaussian_kernel(9, 1.7), 2, pnp,
                                           zsl_pnp.ZSLConfig(steps=3, max_ratio=1.0, patch=32))
    assert seen == [((5, 18, 18), (3, 72, 72))] and rep.reduced_shape == (5, 18, 18)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is left alone
    assert rep.train_ratio is not None and rep.held_out_ratio is not None
