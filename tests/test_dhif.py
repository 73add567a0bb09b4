"""The ``dhif-x4`` / ``dhif-x8`` protocols (PROTOCOL.md): even s×s kernels, circular boundaries,
LR samples centred between HR pixels (s·i + (s-1)/2). The simulation against an independent FFT
implementation, the half-pixel placement in bicubic, glp-hs, the consistency step, the estimator,
tiles, the CLI and napari's LR layers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cofusion.api import fuse
from napari_cofusion.core import metrics, ops
from napari_cofusion.core.srf import get_srf
from napari_cofusion.degrade.consistency import observation_srf, project_observations
from napari_cofusion.degrade.estimate import estimate_degradation
from napari_cofusion.degrade.simulate import PSF, simulate_pair
from napari_cofusion.samples import bundled_reference


def _fft_pair(x: np.ndarray, s: int, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The protocol written from PROTOCOL.md alone: the s×s separable Gaussian (taps
    exp(-(i - (s-1)/2)²/8), normalised) applied with periodic boundaries through the FFT, the
    kernel placed so that the sample kept at s·i + s//2 - 1 sums the block s·i … s·i + s - 1,
    then decimation [s//2-1::s]; the HRMSI is R·X."""
    C, H, W = x.shape
    t = np.exp(-((np.arange(s) - (s - 1) / 2) ** 2) / 8.0)
    t /= t.sum()
    k = np.zeros((H, W))
    k[:s, :s] = np.outer(t, t)
    k = np.roll(k, (-(s // 2 - 1), -(s // 2 - 1)), axis=(0, 1))
    # circular correlation: B[j] = sum_n k[n] X[j + n]
    blurred = np.real(np.fft.ifft2(np.fft.fft2(x.astype(np.float64)) * np.conj(np.fft.fft2(k))))
    lr = blurred[:, s // 2 - 1::s, s // 2 - 1::s]
    return lr, np.einsum("mc,chw->mhw", R, x.astype(np.float64))


@pytest.mark.parametrize("s", [4, 8])
def test_simulated_pair_equals_an_independent_fft_implementation(s):
    ref = bundled_reference()
    pair = simulate_pair(ref, protocol=f"dhif-x{s}")
    H, W = (ref.shape[1] // s) * s, (ref.shape[2] // s) * s
    x = ref.data[:, :H, :W]
    R = get_srf("nikon-d700").matrix_for(ref.bands, ref.wavelengths)
    lr, ms = _fft_pair(x, s, R)
    assert pair.lr.shape == lr.shape and pair.recipe.phase == s // 2 - 1
    assert np.abs(pair.lr.data - lr).max() < 1e-6
    assert np.abs(pair.msi.data - ms).max() < 1e-6
    assert pair.recipe.protocol == f"dhif-x{s}" and pair.recipe.psf == {"kind": "dhif"}


def test_kernel_offsets():
    """Where a kernel's sample lies relative to the pixel the decimation keeps."""
    assert ops.sample_offset(PSF(kind="dhif").kernel(4)) == (0.5, 0.5)
    assert ops.sample_offset(PSF(kind="dhif").kernel(8)) == (0.5, 0.5)
    assert ops.sample_offset(PSF(kind="wald").kernel(4)) == (0.0, 0.0)
    assert ops.sample_offset(ops.box_kernel(4)) == (-0.5, -0.5)  # an even kernel as it is convolved
    assert ops.sample_offset(PSF.parse("gaussian-half:1.5").kernel(4)) == (0.5, 0.5)
    assert ops.sample_centre(PSF(kind="dhif").kernel(4), 1) == (1.5, 1.5)
    # the dhif kernel is the s×s block (its last row and column are the zero padding)
    k = PSF(kind="dhif").kernel(4)
    assert k.shape == (5, 5) and np.all(k[4] == 0) and np.all(k[:, 4] == 0) and np.isclose(k.sum(), 1.0)


def test_bicubic_places_samples_between_hr_pixels():
    """A linear ramp survives the dhif degradation as the ramp at the block centres; bicubic
    upsampling that puts the samples at s·i + (s-1)/2 gives the ramp back without bias in the
    interior (torch's bicubic, a = -0.75, leaves a periodic ripple of ±0.2 slope with mean 0), one
    that puts them on the kept pixel is half a pixel (half the slopes' sum) off everywhere."""
    s, H = 4, 64
    yy, xx = np.mgrid[0:H, 0:H].astype(np.float32)
    ramp = (0.2 + 0.004 * yy + 0.006 * xx)[None].repeat(4, 0)
    k, ph = PSF(kind="dhif").kernel(s), s // 2 - 1
    import torch

    lr = ops.degrade(torch.from_numpy(ramp), k, s, ph).numpy()
    msi = ramp[:3]
    inner = (slice(None), slice(8, -8), slice(8, -8))
    from napari_cofusion.fusion.classical import bicubic

    assert np.allclose(lr[0, :2, :2], 0.2 + 0.01 * 1.5 + np.array([[0, 0.024], [0.016, 0.04]]), atol=1e-6)
    z = bicubic(lr, msi, s, k, ph)
    assert abs(float((z - ramp)[inner].mean())) < 1e-5 and np.abs(z - ramp)[inner].max() < 0.002
    z_whole = ops.upsample(torch.from_numpy(lr), s, ph, out_size=(H, H)).numpy()
    assert float((z_whole - ramp)[inner].mean()) > 0.0049  # 0.5 px × (0.004 + 0.006)


def test_fusion_and_consistency_on_a_dhif_pair():
    """glp-hs on a dhif-x4 pair beats bicubic by far; the consistency projection makes the cube
    reproduce the LRHSI with the half-pixel PSF; a tiled run equals the whole-scene one."""
    pair = simulate_pair(bundled_reference(), protocol="dhif-x4")
    X = pair.reference.data
    r = fuse(pair.lr, pair.msi, "glp-hs", radius=2)
    b = fuse(pair.lr, pair.msi, "bicubic")
    assert metrics.psnr(r.cube.data, X) > metrics.psnr(b.cube.data, X) + 8.0
    k, ph = pair.recipe.kernel(), pair.recipe.phase
    R, fit = observation_srf(pair.lr.data, pair.msi.data, k, 4, ph)
    assert fit < 1e-3
    z = project_observations(b.cube.data, pair.lr.data, pair.msi.data, k, 4, ph, R, iters=3)
    import torch

    back = ops.degrade(torch.from_numpy(z), k, 4, ph).numpy()
    assert np.linalg.norm(back - pair.lr.data) < 2e-3 * np.linalg.norm(pair.lr.data)
    assert metrics.psnr(z, X) > metrics.psnr(b.cube.data, X) + 10.0
    tiled = fuse(pair.lr, pair.msi, "glp-hs", radius=2, tile=48)
    assert np.abs(tiled.cube.data - r.cube.data).max() < 1e-4


@pytest.mark.parametrize("spec,kind,half,phase", [("dhif-x4", "dhif", None, 1), ("dhif-x8", "dhif", None, 3),
                                                  ("gaussian-half:1.5", "gaussian", True, 2),
                                                  ("cave-wald-x4", "gaussian", None, 2)])
def test_estimator_finds_half_pixel_centres(spec, kind, half, phase):
    ref = bundled_reference()
    pair = simulate_pair(ref, protocol=spec) if spec.startswith(("dhif", "cave")) else \
        simulate_pair(ref, scale=4, psf=spec)
    deg = estimate_degradation(pair.lr, pair.msi)
    assert deg.psf["kind"] == kind and deg.psf.get("half") == half and deg.phase == phase
    assert deg.residual < 1e-3
    if kind == "gaussian":
        assert abs(deg.sigma - (1.5 if half else ops.gaussian_sigma_wald(4))) < 0.02
    assert ("between HR pixels" in deg.describe()) == (kind == "dhif" or bool(half))


def test_cli_simulate_and_fuse_a_dhif_pair(tmp_path, capsys):
    """``simulate --protocol dhif-x4``, then ``fuse`` of the two files copied away from their
    recipe, told the PSF and phase on the command line (``--psf dhif``: phase s//2 - 1 by default),
    and ``--psf auto``, which finds the dhif kernel from the pair."""
    import shutil

    from napari_cofusion.api import read_cube
    from napari_cofusion.cli import main

    ref_path = tmp_path / "ref.npy"
    np.save(ref_path, bundled_reference().data)
    p = tmp_path / "p"
    assert main(["simulate", "--ref", str(ref_path), "--protocol", "dhif-x4", "--format", ".tif", "--out", str(p)]) == 0
    recipe = json.loads((p / "recipe.json").read_text())
    assert recipe["protocol"] == "dhif-x4" and recipe["phase"] == 1 and recipe["psf"] == {"kind": "dhif"}
    alone = tmp_path / "alone"
    alone.mkdir()
    for name in ("lr.tif", "msi.tif"):
        shutil.copy(p / name, alone / name)
    ref = read_cube(p / "ref.tif").data
    got = {}
    for label, extra in (("told", ["--psf", "dhif"]), ("phase 2", ["--psf", "dhif", "--phase", "2"]),
                         ("auto", ["--psf", "auto"])):
        out = tmp_path / f"{label.replace(' ', '_')}.tif"
        capsys.readouterr()
        assert main(["fuse", "--lr", str(alone / "lr.tif"), "--msi", str(alone / "msi.tif"), "--method", "bicubic",
                     *extra, "--out", str(out)]) == 0
        got[label] = metrics.psnr(read_cube(out).data, ref)
        if label == "auto":
            assert "PSF dhif" in capsys.readouterr().out
    assert got["told"] > got["phase 2"] + 0.2  # the half-pixel placement, told or estimated
    assert abs(got["auto"] - got["told"]) < 1e-3


def test_napari_places_a_dhif_lrhsi_between_hr_pixels(make_napari_viewer, qtbot):
    """The LRHSI of a dhif-x4 pair sits at s·i + 1.5 in the HR frame (the recipe's phase 1 plus
    the kernel's half pixel), so a pixel clicked on the HRMSI maps to the LR sample that covers it."""
    from napari_cofusion.gui.layers import add_cube

    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-cofusion", "Fusion")
    pair = simulate_pair(bundled_reference(), protocol="dhif-x4")
    lr, msi = add_cube(viewer, pair.lr), add_cube(viewer, pair.msi)
    widget.set_pair(lr, msi)
    assert tuple(lr.scale) == (1, 4, 4) and tuple(lr.translate) == (0, 1.5, 1.5)
    # HR pixels 4·i … 4·i + 3 (the block the sample sums) map to LR pixel i
    for hr in (8, 9, 10, 11):
        assert np.round(lr.world_to_data((0, hr, hr))).astype(int).tolist()[1:] == [2, 2]
    qtbot.waitUntil(lambda: widget.pair_panel.agreement.worker is None, timeout=30000)


def test_weights_are_chosen_by_the_pairs_psf(tmp_path):
    """Two weights files for the same bands and scale, one per PSF: the one trained for the pair's
    PSF and phase is chosen, the first by name when none is (the plan then warns)."""
    from napari_cofusion.learn.models import CoFusion, CoFusionConfig
    from napari_cofusion.learn.weights import find_weights, make_card, save_weights

    for name, psf, proto in (("a_cave", "weak", "cave-x4"), ("b_dhif", "dhif", "dhif-x4")):
        m = CoFusion(CoFusionConfig(hs_bands=31, ms_bands=3, scale=4, depths=(1, 1, 1), width=16))
        save_weights(m, tmp_path / name, make_card(m, psf=psf, protocol=proto))
    dhif = PSF(kind="dhif").kernel(4)
    assert find_weights(31, 3, 4, folder=tmp_path, kernel=dhif, phase=1).stem == "b_dhif"
    assert find_weights(31, 3, 4, folder=tmp_path, kernel=dhif, phase=2).stem == "a_cave"  # no dhif at phase 2
    assert find_weights(31, 3, 4, folder=tmp_path, kernel=PSF(kind="weak").kernel(4), phase=2).stem == "a_cave"
    assert find_weights(31, 3, 4, folder=tmp_path).stem == "a_cave"
