"""The data-consistency projection: it brings a fused cube closer to the truth and into agreement
with the observations when the PSF/SRF explain the pair, and stays out of the way when they do not."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cofusion.core import metrics
from napari_cofusion.degrade.consistency import AUTO_MAX_RESIDUAL, enforce, observation_srf, project_observations, spectral_step
from napari_cofusion.core.errors import CubeError
from napari_cofusion.api import fuse
from napari_cofusion.samples import bundled_reference, houston_pair
from napari_cofusion.degrade.simulate import simulate_pair
from napari_cofusion.core.srf import get_srf


def _pair(protocol: str, **kw):
    p = simulate_pair(bundled_reference(), protocol=protocol, **kw)
    return p, p.recipe.kernel(), p.recipe.scale, p.recipe.decimation_phase


@pytest.mark.parametrize("protocol", ["cave-x4", "cave-wald-x4", "cave-x8"])
def test_projection_fits_the_observations(protocol):
    """On both PSF presets (disjoint and overlapping LR footprints, where CG has work to do) and
    two scales, the result agrees with both observations far better than the method's output and is
    in range. Bicubic ignores the HRMSI, so the spectral step alone brings its detail in (+16 dB or
    more here); glp-hs already fits the pair nearly and barely moves."""
    p, k, s, ph = _pair(protocol)
    for method in ("bicubic", "glp-hs"):
        # glp-hs with its fixed radius-2 regression (what the numbers here were measured on)
        z = fuse(p.lr, p.msi, method, **({"radius": 2} if method == "glp-hs" else {})).cube.data
        out, rep = enforce(z, p.lr.data, p.msi.data, k, s, ph, "on")
        assert out.shape == z.shape and out.dtype == np.float32
        assert rep.applied and rep.fit_residual < 1e-4
        assert rep.lr_mismatch_after < 0.2 * rep.lr_mismatch_before
        assert rep.msi_mismatch_after < 0.5 * rep.msi_mismatch_before
        assert out.min() >= 0.0 and out.max() <= 1.0
        gain = metrics.psnr(out, p.reference.data) - metrics.psnr(z, p.reference.data)
        if method == "bicubic":
            assert gain > 10.0
        else:
            assert gain > -0.01 and np.linalg.norm(out - z) < 0.01 * np.linalg.norm(z)


def test_spectral_step_never_moves_away_from_the_truth():
    """The spectral step alone is an orthogonal projection onto a set holding the reference."""
    p, k, s, ph = _pair("cave-x4")
    x = p.reference.data
    R, _ = observation_srf(p.lr.data, p.msi.data, k, s, ph)
    z = fuse(p.lr, p.msi, "bicubic").cube.data
    out = spectral_step(z, p.msi.data, R)
    assert np.linalg.norm(out - x) < np.linalg.norm(z - x)
    np.testing.assert_allclose(np.einsum("mc,chw->mhw", R, out), p.msi.data, atol=1e-5)


def test_fitted_srf_recovers_the_simulated_one():
    p, k, s, ph = _pair("cave-x4")
    R, fit = observation_srf(p.lr.data, p.msi.data, k, s, ph)
    true = get_srf("nikon-d700").matrix_for(31, p.lr.wavelengths)
    assert R.shape == (3, 31) and fit < 1e-4
    assert np.abs(R - true).max() < 1e-3


def test_auto_leaves_noisy_and_real_pairs_alone():
    p, k, s, ph = _pair("cave-x4", snr_db=30, seed=0)
    z = fuse(p.lr, p.msi, "glp-hs").cube.data
    out, rep = enforce(z, p.lr.data, p.msi.data, k, s, ph, "auto")
    assert not rep.applied and rep.fit_residual > AUTO_MAX_RESIDUAL and "fit residual" in rep.reason
    assert out is z
    hs, rgb = houston_pair()
    res = fuse(hs, rgb, "glp-hs", consistency="auto")
    assert res.consistency is not None and not res.consistency["applied"]
    assert res.cube.meta["consistency"]["fit_residual"] > AUTO_MAX_RESIDUAL


def test_fuse_reports_the_step_and_keeps_baselines_as_defined():
    p, k, s, ph = _pair("cave-x4")
    plain = fuse(p.lr, p.msi, "glp-hs")
    assert plain.consistency is None and "consistency" not in plain.cube.meta
    dc = fuse(p.lr, p.msi, "glp-hs", consistency="auto")
    assert dc.consistency["applied"] and dc.cube.meta["consistency"]["mode"] == "auto"
    assert not np.array_equal(plain.cube.data, dc.cube.data)
    with pytest.raises(CubeError, match="consistency must be one of"):
        fuse(p.lr, p.msi, "glp-hs", consistency="always")


def test_wrong_srf_shape_is_a_clear_error():
    p, k, s, ph = _pair("cave-x4")
    with pytest.raises(CubeError, match="SRF is 3×30"):
        project_observations(p.reference.data, p.lr.data, p.msi.data, k, s, ph, np.ones((3, 30)) / 30)


def test_box_spectral_step_is_the_nearest_point_in_range():
    """Where the plain spectral step leaves [0, 1], the clipped step is the exact projection onto
    {R·x = MSI} ∩ [0, 1]: checked against a general-purpose constrained solver on such pixels."""
    from scipy.optimize import minimize

    p, k, s, ph = _pair("cave-x4")
    R, _ = observation_srf(p.lr.data, p.msi.data, k, s, ph)
    z = fuse(p.lr, p.msi, "bicubic").cube.data
    plain = spectral_step(z, p.msi.data, R)
    boxed = spectral_step(z, p.msi.data, R, clip=True)
    assert boxed.min() >= 0.0 and boxed.max() <= 1.0
    out_of_range = np.argwhere(((plain < 0) | (plain > 1)).any(0))
    assert len(out_of_range) > 10  # bicubic under-shoots at dark edges: the box matters here
    x = p.reference.data
    assert np.linalg.norm(boxed - x) <= np.linalg.norm(np.clip(plain, 0, 1) - x)
    for i, j in out_of_range[:: max(1, len(out_of_range) // 8)][:8]:
        zi, mi = z[:, i, j].astype(np.float64), p.msi.data[:, i, j].astype(np.float64)
        ref = minimize(lambda v: 0.5 * np.sum((v - zi) ** 2), np.clip(zi, 0, 1), jac=lambda v: v - zi,
                       bounds=[(0, 1)] * len(zi), constraints=[{"type": "eq", "fun": lambda v: R @ v - mi, "jac": lambda v: R}],
                       method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        assert ref.success
        np.testing.assert_allclose(boxed[:, i, j], ref.x, atol=2e-4)
        np.testing.assert_allclose(R @ boxed[:, i, j], mi, atol=1e-5)


def test_edge_weighted_lr_correction_solves_exactly():
    """The spatial correction's system is not symmetric (edge weights between blur and bumps);
    BiCGSTAB still makes the cube reproduce the LRHSI to float precision, and the correction is
    larger on the MSI's edges than on flat areas."""
    import torch

    from napari_cofusion.degrade.consistency import _lr_op, _project_lr, edge_weight, spread_kernel

    p, k, s, ph = _pair("cave-wald-x4")  # overlapping footprints: the solver has work to do
    z = fuse(p.lr, p.msi, "bicubic").cube.data
    amp = edge_weight(p.msi.data)
    assert amp.shape == p.msi.shape[1:] and amp.min() >= 1.0 and amp.max() > 3.0
    zt, lt = torch.from_numpy(z), torch.from_numpy(p.lr.data)
    g = torch.from_numpy(spread_kernel(s)).float()
    out = _project_lr(zt, lt, k, g, torch.from_numpy(amp), s, ph, 60, 1e-6)
    res = _lr_op(out, k, s, ph, tuple(lt.shape[-2:])) - lt
    assert float(res.norm() / lt.norm()) < 1e-5
    change = (out - zt).abs().mean(0).numpy()
    assert change[amp > np.percentile(amp, 90)].mean() > 1.5 * change[amp < np.percentile(amp, 10)].mean()
    assert np.array_equal(edge_weight(np.full((3, 32, 32), 0.5, np.float32)), np.ones((32, 32), np.float32))


def test_psf_spread_is_the_psfs_width_within_bounds():
    """pnp-gf's correction width: a Gaussian PSF's sigma (a little less where the kernel cuts its
    tails), at least SPREAD_MIN_PX and at most SPREAD_MAX_PER_SCALE · scale; a bad width is refused."""
    from napari_cofusion.core import ops
    from napari_cofusion.degrade.consistency import SPREAD_MAX_PER_SCALE, SPREAD_MIN_PX, psf_spread, spread_kernel
    from napari_cofusion.degrade.simulate import dhif_kernel

    assert ops.kernel_sigma(ops.gaussian_kernel(25, 3.0)) == pytest.approx(3.0, abs=0.01)
    assert 0.40 < ops.kernel_sigma(ops.gaussian_kernel(3, 0.5)) < 0.5
    # the even dhif kernel: its width about its own (half-pixel) centre, not about a pixel
    assert ops.kernel_sigma(dhif_kernel(8)) == pytest.approx(ops.kernel_sigma(dhif_kernel(8)[:, ::-1]))
    assert psf_spread(ops.gaussian_kernel(13, 2.0), 4) == pytest.approx(ops.kernel_sigma(ops.gaussian_kernel(13, 2.0)))
    assert psf_spread(np.ones((1, 1)), 4) == SPREAD_MIN_PX
    assert psf_spread(ops.gaussian_kernel(61, 10.0), 4) == SPREAD_MAX_PER_SCALE * 4
    with pytest.raises(CubeError, match="spread"):
        spread_kernel(4, sigma=0.0)
