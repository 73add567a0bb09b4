"""Readers never give a silent wrong result: files whose header lies, scale factors that would
clip the cube, negative values, raw integers, band-last arrays, and everything the project writes
reads back as written."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_cofusion.core import metrics
from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CofusionWarning, CubeError
from napari_cofusion.core.io import read_cube, write_cube
from napari_cofusion.samples import bundled_reference


@pytest.fixture(scope="module")
def dn():
    """The bundled CAVE crop as raw 16-bit counts, (31, 128, 128)."""
    return np.round(bundled_reference().data * 65535).astype("<u2")


def _envi(folder: Path, name: str, data: np.ndarray, interleave="bsq", byte_order=0, extra="") -> Path:
    c, h, w = 31, 128, 128
    (folder / f"{name}.hdr").write_text(
        f"ENVI\nsamples = {w}\nlines = {h}\nbands = {c}\nheader offset = 0\ndata type = 12\n"
        f"interleave = {interleave}\nbyte order = {byte_order}\n{extra}")
    data.tofile(folder / f"{name}.img")
    return folder / f"{name}.hdr"


def test_a_true_header_reads(tmp_path, dn):
    cube = read_cube(_envi(tmp_path, "ok", dn))
    np.testing.assert_allclose(cube.data, dn / 65535.0, atol=1e-7)


@pytest.mark.parametrize("factor", ["-1", "0", "inf", "nan", "abc"])
def test_bad_reflectance_scale_factor_is_refused(tmp_path, dn, factor):
    with pytest.raises(CubeError, match="reflectance scale factor"):
        read_cube(_envi(tmp_path, "sf", dn, extra=f"reflectance scale factor = {factor}\n"))


def test_a_scale_factor_that_clips_the_cube_is_refused(tmp_path, dn):
    with pytest.raises(CubeError, match=r"100% of the values fall outside \[0, 1\].*reflectance scale factor"):
        read_cube(_envi(tmp_path, "tiny", dn, extra="reflectance scale factor = 1e-9\n"))


def test_data_file_larger_than_the_header_is_refused(tmp_path, dn):
    with pytest.raises(CubeError, match="larger than its header says"):
        read_cube(_envi(tmp_path, "big", np.concatenate([dn.ravel(), dn.ravel()[:50]])))


@pytest.mark.parametrize("stored, header, says", [
    (lambda a: a.astype(">u2"), {}, "'byte order' = 1"),
    (lambda a: a, {"interleave": "bil"}, "'interleave' = bsq"),
    (lambda a: a.transpose(1, 2, 0).copy(), {}, "'interleave' = bip"),
])
def test_wrong_byte_order_or_interleave_is_refused(tmp_path, dn, stored, header, says):
    with pytest.raises(CubeError, match=f"reads as noise.*{says}"):
        read_cube(_envi(tmp_path, "wrong", stored(dn), **header))


def test_missing_byte_order_for_16_bit_data_is_refused(tmp_path, dn):
    hdr = _envi(tmp_path, "nobo", dn)
    hdr.write_text(hdr.read_text().replace("byte order = 0\n", ""))
    with pytest.raises(CubeError, match="'byte order'"):
        read_cube(hdr)


def test_negative_values_are_clipped_with_a_warning_that_counts_them(tmp_path):
    data = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    data[0, :2] = -0.2  # 32 negative values of 1024
    np.save(tmp_path / "neg.npy", data)
    with pytest.warns(CofusionWarning, match="32 values below 0 set to 0"):
        cube = read_cube(tmp_path / "neg.npy", band_axis=0)
    assert cube.meta["clipped"] == 32 and cube.data.min() == 0.0


def test_a_mostly_negative_cube_is_refused(tmp_path):
    data = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32) - 0.9  # ~90 % below 0
    np.save(tmp_path / "neg.npy", data)
    with pytest.raises(CubeError, match="outside"):
        read_cube(tmp_path / "neg.npy", band_axis=0)


def test_cube_refuses_raw_integers_and_from_raw_scales_them():
    raw = np.full((3, 4, 4), 65535, np.uint16)
    with pytest.raises(CubeError, match="integer data.*from_raw"):
        Cube(raw)
    cube = Cube.from_raw(raw, name="dn")
    assert cube.data.max() == 1.0 and cube.norm_scale == 65535.0


def test_layer_data_of_integers_is_scaled():
    cube = Cube.from_layer_data(np.full((3, 4, 4), 255, np.uint8), {}, name="png")
    assert cube.data.max() == 1.0 and cube.norm_scale == 255.0


def test_metrics_refuse_band_last_arrays():
    ref = bundled_reference().data
    with pytest.raises(CubeError, match="band-last"):
        metrics.sam(np.moveaxis(ref, 0, -1), np.moveaxis(ref, 0, -1))
    assert metrics.sam(ref, ref) < 1e-3  # band-first arrays are fine


def test_metrics_refuse_images_too_small_for_ssim():
    z = np.random.default_rng(0).random((4, 5, 5))
    with pytest.raises(CubeError, match="at least 6×6"):
        metrics.full_reference(z, z, 4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.integers(1, 12), h=st.integers(1, 12), w=st.integers(1, 12),
       suffix=st.sampled_from([".npy", ".npz", ".tif", ".hdr"]), with_wl=st.booleans())
def test_everything_the_project_writes_reads_back(c, h, w, suffix, with_wl):
    """Any shape, including equal sides and sides smaller than the band count."""
    rng = np.random.default_rng(c * 1000 + h * 10 + w)
    cube = Cube(rng.random((c, h, w), dtype=np.float32), wavelengths=np.linspace(400, 900, c) if with_wl else None,
                name="rt")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"cube{suffix}"
        write_cube(cube, path)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CofusionWarning)  # nothing is changed on the way back
            back = read_cube(path)
        assert back.shape == cube.shape
        np.testing.assert_array_equal(back.data, cube.data)
        if with_wl:
            np.testing.assert_allclose(back.wavelengths, cube.wavelengths)


def test_the_napari_reader_shows_what_it_clipped(tmp_path, monkeypatch):
    import napari_cofusion.gui.adapters as adapters

    shown = []
    monkeypatch.setattr(adapters, "show_warning", shown.append)
    data = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
    data[0, :2] = -0.2
    np.save(tmp_path / "neg.npy", data)
    (layer,) = adapters.read_layers(str(tmp_path / "neg.npy"))
    assert len(shown) == 1 and "32 values below 0" in shown[0]
    assert layer[1]["metadata"]["clipped"] == 32 and layer[1]["rgb"] is False
