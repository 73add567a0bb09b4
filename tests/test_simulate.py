"""Wald's-protocol simulation checked against PROTOCOL.md with independent computations
(scipy convolution, the published Nikon D700 matrix, the IKONOS curves)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.io
import scipy.ndimage as ndi

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CubeError
from napari_cofusion.degrade.simulate import PSF, Recipe, infer_scale, save_pair, simulate_pair
from napari_cofusion.core.srf import get_srf


def _gauss(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size) - size // 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def _independent_lr(x: np.ndarray, kernel: np.ndarray, s: int) -> np.ndarray:
    """PROTOCOL.md: band-wise convolution with reflect padding ('mirror' in scipy: d c b | a b c d),
    then keep [s//2::s, s//2::s]."""
    out = np.stack([ndi.convolve(b.astype(np.float64), kernel, mode="mirror") for b in x])
    return out[:, s // 2 :: s, s // 2 :: s]


def _random_cube(shape=(6, 45, 50), seed=0, wavelengths=None) -> Cube:
    return Cube(np.random.default_rng(seed).random(shape, dtype=np.float32), wavelengths=wavelengths, name="rand")


def _random_srf(c: int, bands: int = 3, seed: int = 1) -> np.ndarray:
    r = np.random.default_rng(seed).random((bands, c))
    return r / r.sum(1, keepdims=True)


@pytest.fixture(scope="module")
def nikon_P(shared_data) -> np.ndarray:
    P = scipy.io.loadmat(shared_data / "srf" / "nikon_d700_P_N_V2.mat")["P"].astype(np.float64)
    assert P.shape == (3, 31)
    return P


# ============================================================================ PSF presets
def test_weak_psf():
    k = PSF.parse("weak").kernel(4)
    assert k.shape == (3, 3)
    np.testing.assert_allclose(k, _gauss(3, 0.5), rtol=1e-12)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    # the weak PSF does not depend on the scale
    np.testing.assert_array_equal(PSF().kernel(2), PSF().kernel(8))


@pytest.mark.parametrize("s, size", [(2, 7), (4, 13), (8, 23)])
def test_wald_psf(s, size):
    sigma = s / (2 * math.sqrt(2 * math.log(2)))
    assert 2 * math.ceil(3 * sigma) + 1 == size
    k = PSF.parse("wald").kernel(s)
    assert k.shape == (size, size)
    np.testing.assert_allclose(k, _gauss(size, sigma), rtol=1e-12)
    assert k.sum() == pytest.approx(1.0, abs=1e-12)
    # FWHM of the centre row equals the scale: half maximum at distance s/2 from the centre
    assert math.exp(-((s / 2) ** 2) / (2 * sigma**2)) == pytest.approx(0.5)


def test_psf_parse():
    assert PSF.parse("gaussian:7:1.2").kernel(4).shape == (7, 7)
    assert PSF.parse("gaussian:1.0").kernel(4).shape == (7, 7)
    np.testing.assert_allclose(PSF.parse("box:4").kernel(2), np.full((4, 4), 1 / 16))
    assert PSF.parse({"kind": "wald"}).kernel(4).shape == (13, 13)
    with pytest.raises(CubeError, match="unknown PSF"):
        PSF.parse("airy")


# ============================================================================ simulate_pair
@pytest.mark.parametrize("s", [2, 4, 8])
@pytest.mark.parametrize("psf", ["weak", "wald"])
def test_simulate_random_cube_matches_independent(s, psf):
    ref = _random_cube((6, 45, 50))
    R = _random_srf(6)
    pair = simulate_pair(ref, scale=s, psf=psf, srf=R)
    H, W = 45 // s * s, 50 // s * s
    assert pair.reference.shape == (6, H, W)  # cropped top-left to multiples of s
    np.testing.assert_array_equal(pair.reference.data, ref.data[:, :H, :W])
    assert pair.recipe.crop == [H, W]
    assert pair.lr.shape == (6, H // s, W // s)
    assert pair.msi.shape == (3, H, W)
    kernel = _gauss(3, 0.5) if psf == "weak" else PSF.parse("wald").kernel(s)
    np.testing.assert_allclose(pair.lr.data, _independent_lr(ref.data[:, :H, :W], kernel, s), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pair.msi.data, np.einsum("mc,chw->mhw", R, ref.data[:, :H, :W]), rtol=0, atol=1e-6)
    assert pair.lr.data.dtype == np.float32 and pair.msi.data.dtype == np.float32


def test_simulate_explicit_phase():
    ref = _random_cube((4, 32, 32))
    pair = simulate_pair(ref, scale=4, srf=_random_srf(4), phase=0)
    assert pair.recipe.phase == 0
    blurred = np.stack([ndi.convolve(b.astype(np.float64), _gauss(3, 0.5), mode="mirror") for b in ref.data])
    np.testing.assert_allclose(pair.lr.data, blurred[:, 0::4, 0::4], rtol=0, atol=1e-6)


def test_simulate_cave_crop(cave_val_ref, nikon_P):
    pair = simulate_pair(cave_val_ref, protocol="cave-x4")
    assert pair.recipe.scale == 4 and pair.recipe.protocol == "cave-x4"
    assert pair.lr.shape == (31, 32, 32) and pair.msi.shape == (3, 128, 128)
    x = cave_val_ref.data
    np.testing.assert_allclose(pair.lr.data, _independent_lr(x, _gauss(3, 0.5), 4), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pair.msi.data, np.einsum("mc,chw->mhw", nikon_P, x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pair.srf_matrix, nikon_P, atol=1e-7)
    np.testing.assert_allclose(pair.lr.wavelengths, cave_val_ref.wavelengths)


def test_simulate_cave_wald_x8(cave_val_ref):
    pair = simulate_pair(cave_val_ref, protocol="cave-wald-x8")
    kernel = _gauss(23, 8 / (2 * math.sqrt(2 * math.log(2))))
    np.testing.assert_allclose(pair.lr.data, _independent_lr(cave_val_ref.data, kernel, 8), rtol=0, atol=1e-6)


def test_nikon_preset_equals_published_P(nikon_P):
    np.testing.assert_allclose(get_srf("nikon-d700").matrix_for(31), nikon_P, atol=1e-7)
    np.testing.assert_allclose(nikon_P.sum(1), 1.0, atol=1e-6)


def test_crop_to_multiples(cave_val_ref):
    odd = cave_val_ref.with_data(cave_val_ref.data[:, :127, :125])
    pair = simulate_pair(odd, scale=4)
    assert pair.reference.shape == (31, 124, 124)
    assert pair.lr.shape == (31, 31, 31)
    with pytest.raises(CubeError, match="smaller than the scale"):
        simulate_pair(cave_val_ref.with_data(cave_val_ref.data[:, :3, :3]), scale=4)


def test_bad_scale(cave_val_ref):
    for bad in (0, 2.5, "4"):
        with pytest.raises(CubeError, match="scale"):
            simulate_pair(cave_val_ref, scale=bad)


def test_unknown_protocol(cave_val_ref):
    with pytest.raises(CubeError, match="cave-x4"):
        simulate_pair(cave_val_ref, protocol="cave-x3")


# ============================================================================ noise
def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> np.ndarray:
    noise = noisy.astype(np.float64) - clean.astype(np.float64)
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2, axis=(1, 2)) / np.mean(noise**2, axis=(1, 2)))


def test_noise_snr_and_seed(cave_val_ref):
    clean = simulate_pair(cave_val_ref, scale=4)
    noisy = simulate_pair(cave_val_ref, scale=4, snr_db=30, seed=5, snr_ms_db=40)
    # HRMSI: 128×128 pixels per band: each band's measured SNR is within 0.3 dB of its target
    np.testing.assert_allclose(_snr_db(clean.msi.data, noisy.msi.data), 40.0, atol=0.3)
    # LRHSI: 32×32 per band is too few for 0.3 dB per band; pool noise-to-signal ratios over bands
    ratio = 10 ** (-_snr_db(clean.lr.data, noisy.lr.data) / 10)
    assert 10 * np.log10(1 / ratio.mean()) == pytest.approx(30.0, abs=0.3)
    assert np.all(np.abs(_snr_db(clean.lr.data, noisy.lr.data) - 30.0) < 1.0)
    # the reference is never noisy
    np.testing.assert_array_equal(noisy.reference.data, clean.reference.data)

    again = simulate_pair(cave_val_ref, scale=4, snr_db=30, seed=5, snr_ms_db=40)
    np.testing.assert_array_equal(again.lr.data, noisy.lr.data)
    np.testing.assert_array_equal(again.msi.data, noisy.msi.data)
    other = simulate_pair(cave_val_ref, scale=4, snr_db=30, seed=6, snr_ms_db=40)
    assert not np.array_equal(other.lr.data, noisy.lr.data)


def test_noise_ms_defaults_to_hs_snr(cave_val_ref):
    clean = simulate_pair(cave_val_ref, scale=2)
    noisy = simulate_pair(cave_val_ref, scale=2, snr_db=25, seed=0)
    np.testing.assert_allclose(_snr_db(clean.msi.data, noisy.msi.data), 25.0, atol=0.3)


# ============================================================================ recipe
def _reproduce(reference: Cube, recipe: Recipe):
    srf = np.asarray(recipe.srf_matrix) if recipe.srf_matrix is not None else recipe.srf["name"]
    return simulate_pair(
        reference, scale=recipe.scale, psf=recipe.psf, srf=srf, snr_db=recipe.snr_db,
        seed=recipe.seed, snr_ms_db=recipe.snr_ms_db, phase=recipe.phase,
    )


def test_recipe_json_round_trip(cave_val_ref):
    pair = simulate_pair(cave_val_ref, scale=4, psf="wald", snr_db=35, seed=11)
    recipe = Recipe.from_json(json.loads(json.dumps(pair.recipe.to_json())))
    assert recipe == pair.recipe
    again = _reproduce(cave_val_ref, recipe)
    np.testing.assert_array_equal(again.lr.data, pair.lr.data)
    np.testing.assert_array_equal(again.msi.data, pair.msi.data)
    # the recipe also travels in the cubes' metadata
    assert Recipe.from_json(pair.lr.meta["recipe"]) == pair.recipe


def test_saved_recipe_reproduces_curve_srf_pair(tmp_path):
    wl = np.linspace(400, 1000, 25)
    ref = _random_cube((25, 32, 32), seed=4, wavelengths=wl)
    pair = simulate_pair(ref, scale=2, psf="gaussian:5:1.0", srf="ikonos", snr_db=40, seed=3)
    written = save_pair(pair, tmp_path / "pair", fmt=".npz")
    recipe = Recipe.from_json(json.loads((tmp_path / "pair" / "recipe.json").read_text()))
    assert written["recipe"].endswith("recipe.json")
    again = _reproduce(ref, recipe)
    np.testing.assert_array_equal(again.lr.data, pair.lr.data)
    np.testing.assert_allclose(again.msi.data, pair.msi.data, atol=1e-6)
    with pytest.raises(CubeError, match="already exists"):
        save_pair(pair, tmp_path / "pair", fmt=".npz")


# ============================================================================ SRF curves
def test_ikonos_resampled_from_curves(shared_data):
    wl = np.linspace(400, 1000, 31)
    srf = get_srf("ikonos")
    R = srf.matrix_for(31, wl)
    assert R.shape == (4, 31)
    assert srf.band_names == ["B", "G", "R", "NIR"] and srf.dropped == []
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-6)
    # independent: the shared IKONOS table, linear interpolation at the band centres, rows normalised
    tab = scipy.io.loadmat(shared_data / "srf" / "ikonos_spec_resp.mat")["ikonos_sp"]
    exp = np.stack([np.interp(wl, tab[:, 0], np.clip(tab[:, j], 0, None)) for j in (2, 3, 4, 5)])
    exp /= exp.sum(1, keepdims=True)
    np.testing.assert_allclose(R, exp, atol=1e-6)


def test_simulate_with_ikonos():
    wl = np.linspace(400, 1000, 31)
    ref = _random_cube((31, 16, 16), wavelengths=wl)
    pair = simulate_pair(ref, scale=2, srf="ikonos")
    assert pair.msi.bands == 4
    assert pair.msi.meta["band_names"] == ["B", "G", "R", "NIR"]
    np.testing.assert_allclose(pair.srf_matrix.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(pair.msi.data, np.einsum("mc,chw->mhw", pair.srf_matrix.astype(np.float64), ref.data),
                               atol=1e-6)
    # response-weighted band centres increase B → NIR
    assert np.all(np.diff(pair.msi.wavelengths) > 0)


def test_curves_need_wavelengths():
    with pytest.raises(CubeError, match="wavelengths"):
        simulate_pair(_random_cube((31, 16, 16)), scale=2, srf="ikonos")


def test_landsat8_drops_bands_outside_range():
    pytest.importorskip("pyrsr")
    wl = np.linspace(400, 1000, 31)
    srf = get_srf("landsat8-oli")
    R = srf.matrix_for(31, wl)
    assert srf.dropped == ["B6", "B7"]  # SWIR 1.6 and 2.2 µm: outside 400–1000 nm
    assert R.shape == (5, 31)
    np.testing.assert_allclose(R.sum(1), 1.0, atol=1e-6)
    pair = simulate_pair(_random_cube((31, 16, 16), wavelengths=wl), scale=2, srf="landsat8-oli")
    assert pair.msi.bands == 5
    assert pair.recipe.srf["dropped"] == ["B6", "B7"]
    assert pair.msi.meta["band_names"] == ["B1", "B2", "B3", "B4", "B5"]
    assert pair.recipe.srf_matrix is not None and np.asarray(pair.recipe.srf_matrix).shape == (5, 31)


def test_srf_band_count_mismatch():
    with pytest.raises(CubeError, match="31 bands.*6 bands"):
        simulate_pair(_random_cube((6, 16, 16)), scale=2, srf=_random_srf(31))
    # the Nikon preset is also usable as curves, which need the cube's wavelengths
    with pytest.raises(CubeError, match="wavelengths"):
        simulate_pair(_random_cube((6, 16, 16)), scale=2, srf="nikon-d700")


# ============================================================================ infer_scale
def test_infer_scale():
    assert infer_scale((31, 32, 32), (3, 128, 128)) == 4
    assert infer_scale((31, 16, 24), (3, 32, 48)) == 2
    for msi in [(3, 128, 120), (3, 100, 100), (3, 96, 128)]:
        with pytest.raises(CubeError, match="integer scale"):
            infer_scale((31, 32, 32), msi)
