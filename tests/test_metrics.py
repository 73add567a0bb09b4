"""Metrics against hand values, torchmetrics and an independent numpy implementation of
PROTOCOL.md's definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cofusion.api import fuse
from napari_cofusion.core import metrics
from napari_cofusion.degrade.simulate import simulate_pair


def _rand(shape, seed=0, lo=0.2, hi=0.7):
    return lo + (hi - lo) * np.random.default_rng(seed).random(shape)


# ============================================================================ hand values
def test_psnr_constant_error():
    x = _rand((3, 8, 8))
    z = x + 0.1
    # torchmetrics scales by 10 / log(10) taken in float32: ~5e-8 relative error, hence 1e-5 dB
    assert metrics.psnr(z, x) == pytest.approx(20.0, abs=1e-5)
    np.testing.assert_allclose(metrics.psnr_per_band(x - 0.1, x), 20.0, atol=1e-5)
    # per band, then the mean over bands (not the PSNR of the pooled MSE)
    z2 = x.copy()
    z2[0] += 0.1  # 20 dB
    z2[1] += 0.01  # 40 dB
    z2[2] += 0.001  # 60 dB
    assert metrics.psnr(z2, x) == pytest.approx(40.0, abs=1e-5)


def test_sam_orthogonal_and_proportional():
    x = np.zeros((3, 4, 5))
    z = np.zeros((3, 4, 5))
    x[0] = 1.0
    z[1] = 2.0
    assert metrics.sam(z, x) == pytest.approx(90.0, abs=1e-9)
    y = _rand((3, 4, 5))
    assert metrics.sam(3.0 * y, y) == pytest.approx(0.0, abs=1e-5)
    # 45°: (1, 0) against (1, 1)
    a = np.zeros((2, 1, 1)); a[0] = 1
    b = np.ones((2, 1, 1))
    assert metrics.sam(a, b) == pytest.approx(45.0, abs=1e-9)


def test_sam_excludes_zero_pixels():
    x = _rand((4, 3, 3), seed=1)
    z = _rand((4, 3, 3), seed=2)
    z[:, 0, 0] = 0.0  # an all-zero fused spectrum
    x[:, 2, 2] = 0.0  # an all-zero reference spectrum
    m = metrics.sam_map(z, x)
    assert np.isnan(m[0, 0]) and np.isnan(m[2, 2])
    valid = np.isfinite(m)
    assert valid.sum() == 7
    s = metrics.sam(z, x)
    assert np.isfinite(s)
    assert s == pytest.approx(m[valid].mean())
    # all zero: no valid pixel
    assert np.isnan(metrics.sam(np.zeros((3, 2, 2)), np.zeros((3, 2, 2))))


def test_ergas_hand_example():
    x = np.empty((2, 4, 4))
    x[0], x[1] = 0.5, 0.25
    z = np.empty_like(x)
    z[0], z[1] = 0.6, 0.2
    # (100/4)·sqrt(mean(0.1²/0.5², 0.05²/0.25²)) = 25·sqrt(0.04) = 5
    assert metrics.ergas(z, x, 4) == pytest.approx(5.0, rel=1e-9)
    assert metrics.ergas(z, x, 2) == pytest.approx(10.0, rel=1e-9)


def test_rmse_and_cc():
    x = _rand((3, 6, 6), seed=3)
    assert metrics.rmse(x + 0.1, x) == pytest.approx(0.1, rel=1e-9)
    z = x.copy()
    z[:, :3] += 0.2  # half the elements off by 0.2
    assert metrics.rmse(z, x) == pytest.approx(np.sqrt(0.02), rel=1e-9)
    assert metrics.cc(x, x) == pytest.approx(1.0, abs=1e-12)
    assert metrics.cc(2 * x + 0.1, x) == pytest.approx(1.0, abs=1e-12)
    assert metrics.cc(1.0 - x, x) == pytest.approx(-1.0, abs=1e-12)
    assert metrics.cc(-x, x) == pytest.approx(-1.0, abs=1e-12)


def test_ssim_identical():
    x = _rand((3, 20, 24), seed=4)
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(metrics.ssim_per_band(x, x), 1.0, atol=1e-12)
    assert metrics.ssim(x + 0.05 * _rand((3, 20, 24), seed=5), x) < 0.999


def test_ssim_bands_matches_torchmetrics():
    from torchmetrics.functional.image import structural_similarity_index_measure

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 40, 40, dtype=torch.float64, generator=g)
    z = (x + 0.1 * torch.rand(4, 1, 40, 40, dtype=torch.float64, generator=g)).clamp(0, 1)
    ref = structural_similarity_index_measure(
        z, x, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, k1=0.01, k2=0.03, reduction="none"
    )
    ours = metrics.ssim_bands(z, x)
    assert ours.shape == (4, 1)
    np.testing.assert_allclose(ours[:, 0].numpy(), ref.numpy(), rtol=0, atol=1e-10)


def test_metric_shape_errors():
    from napari_cofusion.core.errors import CubeError

    with pytest.raises(CubeError, match="differ in shape"):
        metrics.psnr(np.zeros((3, 4, 4)), np.zeros((3, 4, 5)))
    with pytest.raises(CubeError, match="C, H, W"):
        metrics.psnr(np.zeros((4, 4)), np.zeros((4, 4)))


# ============================================================================ Q / QNR
def test_q_index_identical():
    a = _rand((3, 64, 64), seed=6)
    q = metrics.q_index_blocks(a, a, block=32)
    assert q.shape == (3, 3)
    np.testing.assert_allclose(np.diag(q), 1.0, atol=1e-12)
    # identical constant blocks count as perfect too
    c = np.full((1, 32, 32), 0.3)
    assert metrics.q_index_blocks(c, c)[0, 0] == pytest.approx(1.0)
    # a shifted mean lowers Q (it measures luminance distortion too)
    assert metrics.q_index_blocks(a[:1] + 0.2, a[:1])[0, 0] < 0.99


def test_q_index_hand_value():
    """One block: Q = 4·cov·μa·μb / ((σa² + σb²)(μa² + μb²)), population statistics."""
    a = _rand((1, 8, 8), seed=7)
    b = _rand((1, 8, 8), seed=8)
    ma, mb = a.mean(), b.mean()
    cov = ((a - ma) * (b - mb)).mean()
    q = 4 * cov * ma * mb / ((a.var() + b.var()) * (ma**2 + mb**2))
    assert metrics.q_index_blocks(a, b, block=32)[0, 0] == pytest.approx(q, rel=1e-10)


@pytest.fixture(scope="module")
def cave_256(shared_data):
    from napari_cofusion.core.io import read_cube

    cube = read_cube(shared_data / "cave" / "oil_painting_ms")
    return cube.with_data(cube.data[:, :256, :256].copy())


def test_qnr_reference_high_bicubic_lower(cave_256):
    pair = simulate_pair(cave_256, protocol="cave-x4")
    kernel = pair.recipe.kernel()
    ref = metrics.no_reference(pair.reference, pair.lr, pair.msi, kernel, 4)
    # the LRHSI *is* the degraded reference: no spectral distortion at all
    assert ref["d_lambda"] < 1e-6
    assert ref["qnr"] > 0.9
    assert ref["qnr"] == pytest.approx((1 - ref["d_lambda"]) * (1 - ref["d_s"]))
    bic = fuse(pair.lr, pair.msi, "bicubic").cube
    assert metrics.qnr(bic, pair.lr, pair.msi, kernel, 4) < ref["qnr"] - 0.05


# ============================================================================ independent numpy
def _np_full_reference(z: np.ndarray, x: np.ndarray, s: int) -> dict[str, float]:
    z = z.astype(np.float64)
    x = x.astype(np.float64)
    mse_b = ((z - x) ** 2).mean(axis=(1, 2))
    psnr = float(np.mean(10 * np.log10(1.0 / mse_b)))
    dot = (z * x).sum(0)
    nz, nx = np.linalg.norm(z, axis=0), np.linalg.norm(x, axis=0)
    valid = (nz > 0) & (nx > 0)
    cos = np.clip(dot[valid] / (nz[valid] * nx[valid]), -1, 1)
    sam = float(np.degrees(np.arccos(cos)).mean())
    ergas = float(100.0 / s * np.sqrt(np.mean(mse_b / x.mean(axis=(1, 2)) ** 2)))
    rmse = float(np.sqrt(((z - x) ** 2).mean()))
    cc = float(np.mean([np.corrcoef(zb.ravel(), xb.ravel())[0, 1] for zb, xb in zip(z, x)]))
    return {"psnr": psnr, "sam": sam, "ergas": ergas, "rmse": rmse, "cc": cc}


def test_full_reference_agrees_with_numpy(cave_val_ref):
    pair = simulate_pair(cave_val_ref, protocol="cave-x4")
    fused = fuse(pair.lr, pair.msi, "glp-hs").cube
    ours = metrics.full_reference(fused, pair.reference, 4)
    assert set(ours) == set(metrics.FULL_REFERENCE_KEYS)
    indep = _np_full_reference(fused.data, pair.reference.data, 4)
    for k, v in indep.items():
        assert ours[k] == pytest.approx(v, rel=1e-6), k
    assert 0 < ours["ssim"] <= 1
