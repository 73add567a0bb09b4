"""Readers and writers: every format in ../shared/data, round trips, refusals and errors,
and property tests of the band-axis handling and the normalisation to [0, 1]."""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_cofusion.core.cube import Cube
from napari_cofusion.core.errors import CofusionWarning, CubeError
from napari_cofusion.core.io import read_cube, read_cubes, to_band_first, write_cube

# ============================================================================ real files
class TestEnvi:
    def test_shape_wavelengths_and_fwhm(self, shared_data):
        cube = read_cube(shared_data / "envi_aisafenix" / "image.hdr")
        assert cube.shape == (450, 38, 23)
        assert cube.data.dtype == np.float32
        assert cube.wavelengths is not None and cube.wavelengths.shape == (450,)
        assert cube.wavelengths[0] == pytest.approx(378.19, abs=0.01)
        assert cube.wavelengths[-1] == pytest.approx(2503.73, abs=0.01)
        assert np.all(np.diff(cube.wavelengths) > 0)
        assert len(cube.meta["fwhm"]) == 450

    def test_reflectance_scale_factor_is_honoured(self, shared_data):
        cube = read_cube(shared_data / "envi_aisafenix" / "image.hdr")
        assert cube.norm_scale == 65535.0
        # independent read of the raw file: BSQ, uint16 (data type 12), little endian (byte order 0)
        raw = np.fromfile(shared_data / "envi_aisafenix" / "image.dat", dtype="<u2").reshape(450, 38, 23)
        np.testing.assert_allclose(cube.data, raw / 65535.0, rtol=1e-6, atol=1e-7)

    def test_open_by_data_file(self, shared_data):
        a = read_cube(shared_data / "envi_aisafenix" / "image.hdr")
        b = read_cube(shared_data / "envi_aisafenix" / "image.dat")
        np.testing.assert_array_equal(a.data, b.data)


class TestCavePng:
    def test_folder(self, shared_data):
        import imageio.v3 as iio

        folder = shared_data / "cave" / "oil_painting_ms"
        cube = read_cube(folder)
        assert cube.shape == (31, 512, 512)
        np.testing.assert_allclose(cube.wavelengths, np.arange(400, 701, 10))
        assert cube.norm_scale == 65535.0
        assert cube.name == "oil_painting"
        band = iio.imread(folder / "oil_painting_ms_16.png")
        assert band.dtype == np.uint16
        np.testing.assert_allclose(cube.data[15], band / 65535.0, rtol=1e-6, atol=1e-7)
        assert 0.0 <= cube.data.min() and cube.data.max() <= 1.0

    def test_crop_fixture(self, cave_val_ref):
        assert cave_val_ref.shape == (31, 128, 128)
        assert cave_val_ref.wavelengths is not None and len(cave_val_ref.wavelengths) == 31


class TestMat:
    def test_paviau(self, shared_data):
        cube = read_cube(shared_data / "paviau" / "paviaU_subimg.mat")
        assert cube.shape == (103, 50, 50)

    def test_paviau_with_band_axis(self, shared_data):
        import scipy.io

        path = shared_data / "paviau" / "paviaU_subimg.mat"
        cube = read_cube(path, band_axis=2)
        assert cube.shape == (103, 50, 50)
        raw = scipy.io.loadmat(path)["paviaU_subimg"]
        assert raw.shape == (50, 50, 103)
        np.testing.assert_allclose(cube.data, np.moveaxis(raw, 2, 0) / 65535.0, rtol=1e-6, atol=1e-7)

    def test_salinas_a(self, shared_data):
        cube = read_cube(shared_data / "salinas_a" / "SalinasA.mat")
        assert cube.shape == (224, 83, 86)

    def test_salinas_a_with_band_axis(self, shared_data):
        cube = read_cube(shared_data / "salinas_a" / "SalinasA.mat", band_axis=-1)
        assert cube.shape == (224, 83, 86)
        assert cube.name == "salinasA"
        # int16 with a few negative (dark-current) values: divided by 32767, negatives clipped and counted
        assert cube.norm_scale == 32767.0
        assert cube.meta.get("clipped", 0) > 0
        assert cube.data.min() == 0.0 and cube.data.max() <= 1.0

    def test_houston_default_key(self, shared_data):
        cube = read_cube(shared_data / "houston2018" / "houston_dataset.mat")
        assert cube.name == "hyprImg"
        assert cube.shape == (48, 128, 128)

    def test_houston_read_cubes(self, shared_data):
        cubes = read_cubes(shared_data / "houston2018" / "houston_dataset.mat")
        assert len(cubes) == 2
        shapes = {c.name: c.shape for c in cubes}
        assert shapes == {"hyprImg": (48, 128, 128), "rgbImg": (3, 512, 512)}
        rgb = next(c for c in cubes if c.name == "rgbImg")
        assert rgb.norm_scale == 255.0  # uint8

    def test_jasper_ridge_matrix_with_spatial_shape(self, shared_data):
        import scipy.io

        path = shared_data / "jasper_ridge" / "jasper_ridge_224.mat"
        cube = read_cube(path, key="Y", spatial_shape=(100, 100))
        assert cube.shape == (224, 100, 100)
        Y = scipy.io.loadmat(path)["Y"]
        # column-major pixels: pixel (r, c) is column c * rows + r of Y
        for r, c in [(0, 0), (7, 3), (99, 0), (0, 99), (42, 61)]:
            np.testing.assert_allclose(cube.data[:, r, c], Y[:, c * 100 + r] / 65535.0, rtol=1e-6, atol=1e-7)

    def test_jasper_ridge_without_spatial_shape(self, shared_data):
        path = shared_data / "jasper_ridge" / "jasper_ridge_224.mat"
        with pytest.raises(CubeError, match="3-D") as exc:
            read_cube(path)
        assert "jasper_ridge_224.mat" in str(exc.value)
        assert "spatial_shape" in str(exc.value)
        with pytest.raises(CubeError, match="2-D") as exc:
            read_cube(path, key="Y")
        assert "jasper_ridge_224.mat" in str(exc.value)

    def test_unknown_key(self, shared_data):
        with pytest.raises(CubeError, match="nope") as exc:
            read_cube(shared_data / "houston2018" / "houston_dataset.mat", key="nope")
        assert "hyprImg" in str(exc.value)  # lists what is there


class TestTiff:
    def test_dcmall(self, shared_data):
        cube = read_cube(shared_data / "dcmall" / "matlab_dc5.tif")
        assert cube.shape == (191, 100, 100)

    def test_dcmall_with_band_axis(self, shared_data):
        import tifffile

        path = shared_data / "dcmall" / "matlab_dc5.tif"
        cube = read_cube(path, band_axis=0)
        assert cube.shape == (191, 100, 100)
        raw = tifffile.imread(path)
        assert raw.dtype == np.int16
        np.testing.assert_allclose(cube.data, np.clip(raw / 32767.0, 0, 1), rtol=1e-6, atol=1e-7)


# ============================================================================ MATLAB v7.3
def _write_v73(path: Path, arrays: dict[str, np.ndarray], userblock: bool) -> None:
    """A MATLAB v7.3 file: HDF5 with every array stored transposed (MATLAB is column-major)."""
    import h5py

    kw = {"userblock_size": 512} if userblock else {}
    with h5py.File(path, "w", **kw) as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=np.asarray(v).T)
    if userblock:  # the text header MATLAB writes in the 512-byte user block
        with open(path, "r+b") as fh:
            fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")


@pytest.mark.parametrize("userblock", [False, True], ids=["plain-hdf5", "matlab-header"])
def test_mat_v73_round_trip(tmp_path, userblock):
    rng = np.random.default_rng(3)
    cube = rng.integers(0, 65535, size=(12, 10, 5), dtype=np.uint16)  # MATLAB layout (rows, cols, bands)
    rgb = rng.integers(0, 255, size=(24, 20, 3), dtype=np.uint8)
    wl = np.array([[450.0, 500.0, 550.0, 600.0, 650.0]])
    path = tmp_path / "v73.mat"
    _write_v73(path, {"cube": cube, "rgb": rgb, "wavelengths": wl}, userblock)
    with open(path, "rb") as fh:
        head = fh.read(8)
    assert head.startswith(b"\x89HDF") != userblock

    c = read_cube(path, key="cube")
    assert c.shape == (5, 12, 10)
    np.testing.assert_allclose(c.data, np.moveaxis(cube, 2, 0) / 65535.0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(c.wavelengths, wl.ravel())

    both = read_cubes(path)
    assert sorted(x.shape for x in both) == [(3, 24, 20), (5, 12, 10)]


# ============================================================================ writers
def _cube(shape=(6, 10, 12), seed=0, wavelengths=True) -> Cube:
    rng = np.random.default_rng(seed)
    wl = np.linspace(401.25, 987.5, shape[0]) if wavelengths else None
    return Cube(rng.random(shape, dtype=np.float32), wavelengths=wl, name="test cube",
                meta={"fwhm": [5.5] * shape[0]})


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


WRITE_FORMATS = {".hdr": ["out.hdr", "out.img"], ".tif": ["out.tif"], ".npy": ["out.npy", "out.npy.json"], ".npz": ["out.npz"]}


@pytest.mark.parametrize("suffix", list(WRITE_FORMATS))
def test_write_round_trip(tmp_path, suffix):
    cube = _cube()
    written = write_cube(cube, tmp_path / f"out{suffix}")
    assert [Path(p).name for p in written] == WRITE_FORMATS[suffix][: len(written)]
    assert _listing(tmp_path) == sorted(WRITE_FORMATS[suffix])  # no temporary files left behind
    back = read_cube(tmp_path / f"out{suffix}")
    assert back.shape == cube.shape
    np.testing.assert_allclose(back.data, cube.data, rtol=0, atol=1e-7)
    assert back.wavelengths is not None  # .npy: from its NAME.npy.json
    np.testing.assert_allclose(back.wavelengths, cube.wavelengths, rtol=0, atol=1e-3)
    if suffix == ".hdr":
        assert back.meta["fwhm"] == cube.meta["fwhm"]


@pytest.mark.parametrize("suffix", list(WRITE_FORMATS))
def test_write_refuses_to_overwrite(tmp_path, suffix):
    first, second = _cube(seed=1), _cube(seed=2)
    target = tmp_path / f"out{suffix}"
    write_cube(first, target)
    before = {n: (tmp_path / n).read_bytes() for n in _listing(tmp_path)}
    with pytest.raises(CubeError, match="already exists") as exc:
        write_cube(second, target)
    assert "out." in str(exc.value)
    after = {n: (tmp_path / n).read_bytes() for n in _listing(tmp_path)}
    assert after == before  # old bytes untouched, and no temporary file left

    write_cube(second, target, overwrite=True)
    assert _listing(tmp_path) == sorted(WRITE_FORMATS[suffix])
    np.testing.assert_allclose(read_cube(target).data, second.data, atol=1e-7)


def test_envi_refuses_when_only_the_data_file_exists(tmp_path):
    (tmp_path / "out.img").write_bytes(b"precious")
    with pytest.raises(CubeError, match="already exists"):
        write_cube(_cube(), tmp_path / "out.hdr")
    assert (tmp_path / "out.img").read_bytes() == b"precious"
    assert _listing(tmp_path) == ["out.img"]


def test_write_errors(tmp_path):
    with pytest.raises(CubeError, match="unsupported output type"):
        write_cube(_cube(), tmp_path / "out.png")
    with pytest.raises(CubeError, match="does not exist"):
        write_cube(_cube(), tmp_path / "no_such_folder" / "out.tif")
    assert _listing(tmp_path) == []


def test_npy_written_by_write_cube_reads_back_band_first(tmp_path):
    cube = _cube(shape=(31, 24, 24), wavelengths=False)
    write_cube(cube, tmp_path / "c.npy")
    assert read_cube(tmp_path / "c.npy").shape == (31, 24, 24)


# ============================================================================ errors
def test_missing_file(tmp_path):
    for name in ("nothing.hdr", "nothing.mat", "nothing.tif", "nothing.npy"):
        with pytest.raises(CubeError, match="no such file") as exc:
            read_cube(tmp_path / name)
        assert name in str(exc.value)


@pytest.mark.parametrize("name", ["empty.mat", "empty.tif", "empty.npy", "empty.npz", "empty.hdr"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(CubeError, match="empty") as exc:
        read_cube(tmp_path / name)
    assert name in str(exc.value)


def test_truncated_envi(tmp_path, shared_data):
    src = shared_data / "envi_aisafenix"
    shutil.copy(src / "image.hdr", tmp_path / "image.hdr")
    shutil.copy(src / "image.dat", tmp_path / "image.dat")
    size = (tmp_path / "image.dat").stat().st_size
    with open(tmp_path / "image.dat", "r+b") as fh:
        fh.truncate(size - 1000)
    with pytest.raises(CubeError, match="truncated") as exc:
        read_cube(tmp_path / "image.hdr")
    assert "image.dat" in str(exc.value)


def test_envi_header_without_data(tmp_path, shared_data):
    shutil.copy(shared_data / "envi_aisafenix" / "image.hdr", tmp_path / "lonely.hdr")
    with pytest.raises(CubeError, match="no data file") as exc:
        read_cube(tmp_path / "lonely.hdr")
    assert "lonely.hdr" in str(exc.value)


@pytest.mark.parametrize("name", ["garbage.mat", "garbage.tif", "garbage.npy", "garbage.npz", "garbage.hdr"])
def test_garbage_bytes(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CubeError) as exc:
        read_cube(tmp_path / name)
    assert name in str(exc.value)


def test_two_d_npy(tmp_path):
    np.save(tmp_path / "flat.npy", np.ones((10, 12), dtype=np.float32))
    with pytest.raises(CubeError, match="3-D") as exc:
        read_cube(tmp_path / "flat.npy")
    assert "flat.npy" in str(exc.value)


def test_nan_in_float_npy(tmp_path):
    a = np.random.default_rng(0).random((4, 6, 7))
    a[1, 2, 3] = np.nan
    np.save(tmp_path / "holes.npy", a)
    with pytest.raises(CubeError, match="NaN") as exc:
        read_cube(tmp_path / "holes.npy")
    assert "holes.npy" in str(exc.value)


class _Trap:
    """Unpickling this creates a file: proof that a reader unpickled something."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_pickled_numpy_is_refused_never_unpickled(tmp_path, suffix):
    sentinel = tmp_path / "UNPICKLED"
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = _Trap(sentinel), "x"
    path = tmp_path / f"evil{suffix}"
    if suffix == ".npz":
        np.savez(path, data=np.zeros((3, 4, 5), dtype=np.float32), evil=obj)
        with pytest.raises(CubeError, match="refused") as exc:
            read_cube(path)
        # read_cubes looks into .npz archives too: it must refuse as well, not unpickle
        with pytest.raises(CubeError):
            read_cubes(path)
    else:
        np.save(path, obj, allow_pickle=True)
        with pytest.raises(CubeError) as exc:
            read_cube(path)
    assert path.name in str(exc.value)
    assert not sentinel.exists()


def test_unsupported_suffix(tmp_path):
    p = tmp_path / "cube.xyz"
    p.write_bytes(b"1234")
    with pytest.raises(CubeError, match="unsupported"):
        read_cube(p)


# ============================================================================ properties
DTYPES = [np.uint8, np.uint16, np.int16, np.float32, np.float64]


def _expected_factor(raw: np.ndarray) -> float:
    if raw.dtype.kind in "iu":
        return float(np.iinfo(raw.dtype).max)
    mx = float(raw.max())
    return 1.0 if mx <= 1.0 else mx


def _expected_normalised(raw: np.ndarray) -> np.ndarray:
    """io.normalise(norm='auto') without a file scale: integers over their type's maximum,
    floats kept when already <= 1 else divided by their maximum; then clipped to [0, 1]."""
    return np.clip(raw.astype(np.float64) / _expected_factor(raw), 0.0, 1.0)


@st.composite
def raw_cubes(draw):
    c = draw(st.integers(1, 12))
    h = draw(st.integers(1, 16))
    w = draw(st.integers(1, 16))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind == "f":
        hi = draw(st.sampled_from([1.0, 5000.0]))
        elements = st.floats(-0.5, hi, allow_nan=False, allow_infinity=False, width=dtype.itemsize * 8)
    else:
        elements = None
    arr = draw(hnp.arrays(dtype, (c, h, w), elements=elements))
    band_last = draw(st.booleans())
    return arr, band_last


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_cubes(), st.sampled_from([".npy", ".tif"]))
def test_property_read_normalises_and_orders(sample, suffix):
    import tifffile

    arr, band_last = sample
    stored = np.moveaxis(arr, 0, -1) if band_last else arr
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"cube{suffix}"
        if suffix == ".npy":
            np.save(path, stored)
        else:
            tifffile.imwrite(path, stored, photometric="minisblack")
        expected = _expected_normalised(arr)
        scaled = arr.astype(np.float32) / np.float32(_expected_factor(arr))  # as the reader computes it
        clipped = int((scaled < 0).sum() + (scaled > 1).sum())
        if clipped > arr.size / 2:  # a scale that clips most of the cube is refused, not applied
            with pytest.raises(CubeError, match="outside"):
                read_cube(path, band_axis=-1 if band_last else 0)
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cube = read_cube(path, band_axis=-1 if band_last else 0)
    said = [w for w in caught if issubclass(w.category, CofusionWarning)]
    assert bool(said) == bool(clipped)  # clipping is said, with the count
    if clipped:
        assert str(int((scaled < 0).sum())) in str(said[0].message)
    assert cube.shape == arr.shape
    assert cube.data.dtype == np.float32
    assert cube.data.min() >= 0.0 and cube.data.max() <= 1.0
    np.testing.assert_allclose(cube.data, expected, rtol=1e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 16), min_size=2, max_size=2),
    st.integers(1, 40),
    st.integers(0, 2),
)
def test_property_to_band_first_with_wavelength_count(spatial, n_bands, pos):

    assume(n_bands not in spatial)
    shape = list(spatial)
    shape.insert(pos, n_bands)
    arr = np.arange(np.prod(shape)).reshape(shape)
    out = to_band_first(arr, n_wavelengths=n_bands)
    assert out.shape == (n_bands, *spatial)
    np.testing.assert_array_equal(out, np.moveaxis(arr, pos, 0))
    # an explicit band axis (also negative) wins over any guess
    np.testing.assert_array_equal(to_band_first(arr, band_axis=pos - 3), np.moveaxis(arr, pos, 0))


def test_to_band_first_errors():
    with pytest.raises(CubeError, match="3-D"):
        to_band_first(np.zeros((4, 5)))
    with pytest.raises(CubeError, match="out of range"):
        to_band_first(np.zeros((4, 5, 6)), band_axis=3)


def test_npz_wavelengths_pick_band_axis(tmp_path):
    """A band-last .npz with a wavelengths entry: the axis of that length is the band axis,
    even when it is not the smallest."""
    data = np.random.default_rng(0).random((9, 8, 20)).astype(np.float32)
    np.savez(tmp_path / "c.npz", cube=data, wavelengths=np.linspace(400, 900, 20))
    cube = read_cube(tmp_path / "c.npz")
    assert cube.shape == (20, 9, 8)
    np.testing.assert_allclose(cube.data, np.moveaxis(data, 2, 0))
    np.testing.assert_allclose(cube.wavelengths, np.linspace(400, 900, 20))
