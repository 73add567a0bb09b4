"""Reading and writing hyperspectral cubes.

Readers return :class:`~napari_cofusion.core.cube.Cube` objects (band-first float32 in [0, 1]).
Every failure is a :class:`~napari_cofusion.core.cube.CubeError` that names the file and what is
wrong with it. Writers never overwrite an existing file unless ``overwrite=True`` and write
through a temporary file that is renamed into place, so an interrupted write leaves the
old file (if any) untouched.

Normalisation to [0, 1] (``norm``):

* ``"auto"`` (default): a scale factor from the file (ENVI ``reflectance scale factor``)
  when present; otherwise integer data is divided by its type's full range (uint16 → 65535,
  as CAVE's protocol does); float data already in [0, 1] is kept and other float data is
  divided by its maximum.
* ``"max"``: divide by the cube's maximum (useful for sensors that use a fraction of the range).
* a number: divide by it.

Negative values (dark-current noise in some sensors) are clipped to 0 and values above the
full scale to 1; the count is kept in ``cube.meta["clipped"]``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from napari_cofusion.core.cube import Cube, check_cube_array, normalise_wavelengths_nm
from napari_cofusion.core.errors import CubeError

__all__ = [
    "read_cube",
    "read_cubes",
    "read_envi",
    "read_mat",
    "read_tiff",
    "read_numpy",
    "read_png_folder",
    "write_cube",
    "to_band_first",
    "normalise",
    "is_cube_path",
    "CAVE_WAVELENGTHS",
]

CAVE_WAVELENGTHS = np.arange(400.0, 701.0, 10.0)
ENVI_DATA_EXTS = (".img", ".dat", ".raw", ".bsq", ".bil", ".bip", "")
TIFF_EXTS = (".tif", ".tiff")
WL_KEYS = ("wavelength", "wavelengths", "wavelength_nm", "wl", "wave", "lambda", "bands_nm", "centers")


# ---------------------------------------------------------------------------- helpers
def _check_file(path: Path) -> None:
    if not path.exists():
        raise CubeError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise CubeError(f"{path}: file is empty")


def to_band_first(
    arr: np.ndarray,
    band_axis: int | None = None,
    n_wavelengths: int | None = None,
    what: str = "array",
) -> np.ndarray:
    """Move the band axis of a 3-D array to the front.

    The band axis is ``band_axis`` when given; else the axis whose length equals the number of
    wavelengths (when exactly one does); else the first or the last axis, whichever leaves the
    other two closest to square (images are rarely long thin strips; ties go to the smaller
    axis, then band-last). The smallest axis is a poor guess: PaviaU is 50×50×103.
    """
    a = np.asarray(arr)
    if a.ndim != 3:
        raise CubeError(f"{what}: expected a 3-D cube, got {a.ndim}-D data of shape {a.shape}")
    if band_axis is None:
        if n_wavelengths is not None:
            matches = [i for i, s in enumerate(a.shape) if s == n_wavelengths]
            if len(matches) == 1:
                band_axis = matches[0]
        if band_axis is None:
            def aspect(i: int) -> float:
                r, c = (s for j, s in enumerate(a.shape) if j != i)
                return max(r, c) / min(r, c)

            band_axis = min((0, 2), key=lambda i: (aspect(i), a.shape[i], -i))
    if not -3 <= band_axis < 3:
        raise CubeError(f"{what}: band_axis {band_axis} is out of range for a 3-D array")
    return np.moveaxis(a, band_axis, 0)


def normalise(
    data: np.ndarray, norm: str | float = "auto", file_scale: float | None = None, what: str = "cube"
) -> tuple[np.ndarray, float, int]:
    """Scale raw values to float32 [0, 1]; return (data, factor used, number of clipped values)."""
    raw = np.asarray(data)
    if raw.dtype.kind not in "biuf":
        raise CubeError(f"{what}: expected numeric data, got dtype {raw.dtype}")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        n_nan = int(np.isnan(raw).sum())
        n_inf = int((~np.isfinite(raw)).sum()) - n_nan
        raise CubeError(f"{what}: contains {n_nan} NaN and {n_inf} Inf values")
    if isinstance(norm, str):
        if norm == "auto":
            if file_scale:
                factor = float(file_scale)
            elif raw.dtype.kind in "iu":
                factor = float(np.iinfo(raw.dtype).max)
            elif raw.dtype.kind == "b":
                factor = 1.0
            else:
                mx = float(raw.max()) if raw.size else 1.0
                factor = 1.0 if mx <= 1.0 else mx
        elif norm == "max":
            mx = float(raw.max()) if raw.size else 1.0
            factor = mx if mx > 0 else 1.0
        else:
            raise CubeError(f"{what}: unknown normalisation {norm!r} (use 'auto', 'max' or a number)")
    else:
        factor = float(norm)
        if not factor > 0:
            raise CubeError(f"{what}: normalisation factor must be positive, got {norm}")
    out = raw.astype(np.float32) / np.float32(factor)
    n_clip = int((out < 0).sum() + (out > 1).sum())
    if n_clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out, factor, n_clip


def _make_cube(
    raw: np.ndarray,
    path: Path,
    name: str,
    wavelengths: Any = None,
    wl_units: str | None = None,
    norm: str | float = "auto",
    file_scale: float | None = None,
    meta: dict | None = None,
) -> Cube:
    data, factor, n_clip = normalise(raw, norm, file_scale, what=str(path))
    data = check_cube_array(data, str(path))
    try:
        wl = normalise_wavelengths_nm(wavelengths, data.shape[0], wl_units)
    except CubeError as exc:
        raise CubeError(f"{path}: {exc}") from None
    m = dict(meta or {})
    if n_clip:
        m["clipped"] = n_clip
    m.setdefault("raw_dtype", str(raw.dtype))
    return Cube(data, wavelengths=wl, norm_scale=factor, name=name, source=str(path), meta=m)


# ---------------------------------------------------------------------------- ENVI
def _envi_header_path(path: Path) -> Path:
    if path.suffix.lower() == ".hdr":
        return path
    for cand in (path.with_suffix(".hdr"), Path(str(path) + ".hdr")):
        if cand.exists():
            return cand
    raise CubeError(f"{path}: no ENVI header (.hdr) found next to it")


def _envi_data_path(hdr: Path, hdr_meta: dict) -> Path:
    base = hdr.with_suffix("")
    for ext in ENVI_DATA_EXTS:
        for cand in (Path(str(base) + ext), Path(str(base) + ext.upper())):
            if cand.exists() and cand.is_file() and cand != hdr:
                return cand
    raise CubeError(f"{hdr}: ENVI header found but no data file beside it (tried {', '.join(e or '(none)' for e in ENVI_DATA_EXTS)})")


def read_envi(path: str | os.PathLike, norm: str | float = "auto") -> Cube:
    """An ENVI image (``.hdr`` plus data file) through ``spectral``; wavelengths, units, fwhm
    and ``reflectance scale factor`` come from the header (keys are case-insensitive)."""
    import spectral.io.envi as envi

    path = Path(path)
    _check_file(path)
    hdr = _envi_header_path(path)
    _check_file(hdr)
    try:
        h = {k.strip().lower(): v for k, v in envi.read_envi_header(str(hdr)).items()}
    except Exception as exc:  # spectral raises several types for malformed headers
        raise CubeError(f"{hdr}: not a readable ENVI header ({exc})") from None
    for key in ("samples", "lines", "bands", "data type"):
        if key not in h:
            raise CubeError(f"{hdr}: ENVI header lacks the required key '{key}'")
    data_file = _envi_data_path(hdr, h)
    try:
        n_s, n_l, n_b = int(h["samples"]), int(h["lines"]), int(h["bands"])
        dtype = np.dtype(envi.envi_to_dtype[str(h["data type"]).strip()])
    except (KeyError, ValueError) as exc:
        raise CubeError(f"{hdr}: bad ENVI header value ({exc})") from None
    offset = int(h.get("header offset", 0) or 0)
    expected = offset + n_s * n_l * n_b * dtype.itemsize
    actual = data_file.stat().st_size
    if actual < expected:
        raise CubeError(
            f"{data_file}: truncated ENVI data file: {actual} bytes, the header describes {expected} "
            f"({n_b} bands × {n_l} lines × {n_s} samples of {dtype})"
        )
    try:
        img = envi.open(str(hdr), str(data_file))
        raw = np.asarray(img.load(dtype=img.dtype, scale=False))  # raw DN: the scale factor is applied once, below
    except Exception as exc:
        raise CubeError(f"{data_file}: could not read ENVI data ({exc})") from None
    raw = np.moveaxis(np.asarray(raw), 2, 0)  # spectral gives (rows, cols, bands)
    scale = h.get("reflectance scale factor")
    try:
        scale = float(scale) if scale not in (None, "") else None
    except ValueError:
        scale = None
    wl = h.get("wavelength")
    wl = [float(w) for w in wl] if wl else None
    meta: dict = {"format": "envi"}
    if h.get("fwhm"):
        try:
            meta["fwhm"] = [float(v) for v in h["fwhm"]]
        except ValueError:
            pass
    return _make_cube(raw, data_file, hdr.stem, wl, h.get("wavelength units"), norm, scale or None, meta)


# ---------------------------------------------------------------------------- MATLAB
def _mat_arrays(path: Path) -> tuple[dict[str, np.ndarray], bool]:
    """All numeric arrays of a .mat file (v5 through scipy, v7.3 through h5py); the flag says
    whether the axes came from HDF5 (reversed w.r.t. MATLAB)."""
    import scipy.io

    with open(path, "rb") as fh:
        head = fh.read(128)
    if len(head) < 128:
        raise CubeError(f"{path}: too short to be a MATLAB file ({len(head)} bytes)")
    if head.startswith(b"\x89HDF") or b"MATLAB 7.3" in head[:116]:
        import h5py

        out: dict[str, np.ndarray] = {}
        try:
            with h5py.File(path, "r") as f:
                def visit(name: str, obj: Any) -> None:
                    if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "biuf":
                        out[name] = obj[()]
                f.visititems(visit)
        except OSError as exc:
            raise CubeError(f"{path}: could not read MATLAB v7.3 (HDF5) file ({exc})") from None
        return out, True
    try:
        d = scipy.io.loadmat(path)
    except Exception as exc:
        raise CubeError(f"{path}: not a readable MATLAB file ({exc})") from None
    return {k: v for k, v in d.items() if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}, False


def _find_wavelengths(arrays: dict[str, np.ndarray], n_candidates: Iterable[int]) -> np.ndarray | None:
    cands = set(n_candidates)
    for k, v in arrays.items():
        if k.lower().split("/")[-1] in WL_KEYS:
            flat = np.asarray(v, dtype=np.float64).ravel()
            if flat.size in cands:
                return flat
    return None


def _cube_candidates(arrays: dict[str, np.ndarray]) -> list[str]:
    """3-D arrays, largest first; ties go to the one with more bands (the larger smallest axis)."""
    keys = [k for k, v in arrays.items() if v.ndim == 3 and min(v.shape) > 0]
    return sorted(keys, key=lambda k: (arrays[k].size, min(arrays[k].shape)), reverse=True)


def _describe(arrays: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{k} {'×'.join(map(str, v.shape))}" for k, v in arrays.items()) or "none"


def read_mat(
    path: str | os.PathLike,
    key: str | None = None,
    band_axis: int | None = None,
    norm: str | float = "auto",
    spatial_shape: tuple[int, int] | None = None,
) -> Cube:
    """A cube from a MATLAB ``.mat`` file (v5 or v7.3).

    Without ``key`` the largest 3-D numeric array is taken. The band axis is detected
    (:func:`to_band_first`) unless ``band_axis`` is given. A 2-D ``(bands, pixels)`` matrix
    (e.g. unmixing benchmarks) is accepted with ``spatial_shape=(rows, cols)`` and reshaped
    column-major, as MATLAB stores it.
    """
    path = Path(path)
    _check_file(path)
    arrays, from_hdf5 = _mat_arrays(path)
    if from_hdf5:
        arrays = {k: np.asarray(v).T for k, v in arrays.items()}
    if key is None:
        cands = _cube_candidates(arrays)
        if not cands:
            raise CubeError(
                f"{path}: no 3-D numeric array in this file (arrays: {_describe(arrays)}); "
                "name a key, and give spatial_shape for a (bands, pixels) matrix"
            )
        key = cands[0]
    if key not in arrays:
        raise CubeError(f"{path}: no numeric array named {key!r} (arrays: {_describe(arrays)})")
    arr = arrays[key]
    if arr.ndim == 2 and spatial_shape is not None:
        rows, cols = spatial_shape
        if rows * cols not in arr.shape:
            raise CubeError(f"{path}: {key} has shape {arr.shape}, which does not hold {rows}×{cols} pixels")
        mat = arr if arr.shape[1] == rows * cols else arr.T  # (bands, pixels)
        arr = mat.reshape(mat.shape[0], cols, rows).transpose(0, 2, 1)  # column-major pixels
        band_axis = 0
    elif arr.ndim != 3:
        raise CubeError(
            f"{path}: {key} is {arr.ndim}-D with shape {arr.shape}; a cube needs 3 dimensions"
            + (" (for a (bands, pixels) matrix give spatial_shape=(rows, cols))" if arr.ndim == 2 else "")
        )
    wl = _find_wavelengths(arrays, arr.shape)
    cube_raw = to_band_first(arr, band_axis, None if wl is None else wl.size, what=f"{path}:{key}")
    if wl is not None and wl.size != cube_raw.shape[0]:
        wl = None
    return _make_cube(np.ascontiguousarray(cube_raw), path, key, wl, None, norm, None, {"format": "mat", "key": key})


# ---------------------------------------------------------------------------- TIFF
def read_tiff(path: str | os.PathLike, band_axis: int | None = None, norm: str | float = "auto") -> Cube:
    """A TIFF or multi-page TIFF, band-first or band-last (detected, or ``band_axis``).
    Wavelengths written by :func:`write_cube` (JSON in the description) are read back."""
    import tifffile

    path = Path(path)
    _check_file(path)
    try:
        with tifffile.TiffFile(path) as tf:
            arr = tf.asarray()
            md = tf.shaped_metadata[0] if tf.shaped_metadata else {}
    except Exception as exc:
        raise CubeError(f"{path}: not a readable TIFF file ({exc})") from None
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    wl = md.get("wavelengths_nm") if isinstance(md, dict) else None
    if arr.ndim != 3:
        raise CubeError(f"{path}: TIFF holds {arr.ndim}-D data of shape {arr.shape}; a cube needs 3 dimensions")
    if band_axis is None and isinstance(md, dict) and md.get("axes") == "CYX":
        band_axis = 0
    cube_raw = to_band_first(arr, band_axis, None if wl is None else len(wl), what=str(path))
    norm_used = norm
    if norm == "auto" and isinstance(md, dict) and md.get("norm_scale") and arr.dtype.kind == "f":
        norm_used = 1.0  # written by us: already in [0, 1]
    return _make_cube(np.ascontiguousarray(cube_raw), path, path.stem, wl, None, norm_used, None, {"format": "tiff"})


# ---------------------------------------------------------------------------- NumPy
def read_numpy(
    path: str | os.PathLike, key: str | None = None, band_axis: int | None = None, norm: str | float = "auto"
) -> Cube:
    """A ``.npy`` array, or an array of a ``.npz`` archive (largest 3-D one without ``key``;
    a ``wavelengths`` entry, if any, gives the band centres). Never unpickles."""
    path = Path(path)
    _check_file(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        else:
            arrays = {path.stem: np.load(path, allow_pickle=False)}
    except ValueError as exc:
        raise CubeError(f"{path}: refused: it holds Python objects that would need unpickling ({exc})") from None
    except Exception as exc:
        raise CubeError(f"{path}: not a readable NumPy file ({exc})") from None
    arrays = {k: v for k, v in arrays.items() if isinstance(v, np.ndarray) and v.dtype.kind in "biuf"}
    if key is None:
        cands = _cube_candidates(arrays)
        if not cands:
            raise CubeError(f"{path}: no 3-D numeric array (arrays: {_describe(arrays)})")
        key = cands[0]
    if key not in arrays:
        raise CubeError(f"{path}: no numeric array named {key!r} (arrays: {_describe(arrays)})")
    arr = arrays[key]
    if arr.ndim != 3:
        raise CubeError(f"{path}: {key} is {arr.ndim}-D with shape {arr.shape}; a cube needs 3 dimensions")
    wl = _find_wavelengths(arrays, arr.shape)
    cube_raw = to_band_first(arr, band_axis, None if wl is None else wl.size, what=str(path))
    name = path.stem if path.suffix.lower() == ".npy" else f"{path.stem}:{key}"
    return _make_cube(np.ascontiguousarray(cube_raw), path, name, wl, None, norm, None, {"format": "numpy"})


# ---------------------------------------------------------------------------- CAVE PNG folder
_BAND_RE = re.compile(r"_(\d+)\.png$", re.IGNORECASE)


def _png_bands(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() == ".png" and _BAND_RE.search(p.name)]
    return sorted(files, key=lambda p: int(_BAND_RE.search(p.name).group(1)))  # type: ignore[union-attr]


def read_png_folder(path: str | os.PathLike, norm: str | float = "auto") -> Cube:
    """A CAVE-style folder with one PNG per band (``<scene>_NN.png``, band NN at
    400 + 10·(NN−1) nm when there are 31). 16-bit greyscale is divided by 65535; the 8-bit
    RGBA files one CAVE scene ships are read as their first channel and divided by 255."""
    import imageio.v3 as iio

    folder = Path(path)
    if not folder.is_dir():
        raise CubeError(f"{folder}: not a folder")
    files = _png_bands(folder)
    if not files:
        raise CubeError(f"{folder}: no band PNGs named like <scene>_01.png")
    bands = []
    for f in files:
        try:
            im = np.asarray(iio.imread(f))
        except Exception as exc:
            raise CubeError(f"{f}: not a readable PNG ({exc})") from None
        if im.ndim == 3:  # 8-bit RGBA/RGB quirk: grey value repeated in the colour channels
            im = im[..., 0]
        bands.append(im)
    shapes = {b.shape for b in bands}
    if len(shapes) != 1:
        raise CubeError(f"{folder}: band images differ in size: {sorted(shapes)}")
    dtypes = {b.dtype for b in bands}
    raw = np.stack(bands).astype(max(dtypes, key=lambda d: d.itemsize))
    if len(dtypes) > 1:  # mixed 8/16 bit: bring 8-bit bands to the 16-bit range
        raw = np.stack([b.astype(np.uint16) * 257 if b.dtype == np.uint8 else b for b in bands])
    idx = np.array([int(_BAND_RE.search(f.name).group(1)) for f in files])  # type: ignore[union-attr]
    wl = 400.0 + 10.0 * (idx - 1) if len(files) == 31 else None
    name = folder.name[:-3] if folder.name.endswith("_ms") else folder.name
    return _make_cube(raw, folder, name, wl, "nm", norm, None, {"format": "png-folder"})


# ---------------------------------------------------------------------------- dispatch
def is_cube_path(path: str | os.PathLike) -> bool:
    """Whether one of the readers claims this path (by extension, or a folder of band PNGs)."""
    p = Path(path)
    if p.is_dir():
        try:
            return bool(_png_bands(p))
        except OSError:
            return False
    suf = p.suffix.lower()
    if suf in (".hdr", ".mat", ".npy", ".npz") + TIFF_EXTS:
        return True
    return suf in ENVI_DATA_EXTS[:-1] and (p.with_suffix(".hdr").exists() or Path(str(p) + ".hdr").exists())


def read_cube(path: str | os.PathLike, **kwargs: Any) -> Cube:
    """Read one cube from any supported file or band-PNG folder (keyword arguments go to the
    format's reader: ``key``, ``band_axis``, ``norm``, ``spatial_shape``)."""
    p = Path(path)
    if not p.exists():
        raise CubeError(f"{p}: no such file or folder")
    suf = p.suffix.lower()
    if p.is_dir():
        return read_png_folder(p, **kwargs)
    if suf in (".hdr",) or (suf in ENVI_DATA_EXTS[:-1] and suf not in TIFF_EXTS):
        return read_envi(p, **kwargs)
    if suf == ".mat":
        return read_mat(p, **kwargs)
    if suf in TIFF_EXTS:
        return read_tiff(p, **kwargs)
    if suf in (".npy", ".npz"):
        return read_numpy(p, **kwargs)
    raise CubeError(f"{p}: unsupported file type {suf or '(no extension)'}; use ENVI, .mat, TIFF, .npy/.npz or a band-PNG folder")


def read_cubes(path: str | os.PathLike) -> list[Cube]:
    """Every cube a file holds: all 3-D arrays of a ``.mat``/``.npz`` (e.g. the HS and the RGB
    image of a fusion pair), one cube for the other formats."""
    p = Path(path)
    suf = p.suffix.lower()
    if suf in (".mat", ".npz") and p.is_file():
        if suf == ".mat":
            _check_file(p)
            arrays, from_hdf5 = _mat_arrays(p)
            if from_hdf5:
                arrays = {k: v.T for k, v in arrays.items()}
            reader: Callable[..., Cube] = read_mat
        else:
            arrays = {}
            try:
                with np.load(p, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except Exception:
                pass
            reader = read_numpy
        keys = _cube_candidates(arrays)
        if len(keys) > 1:
            return [reader(p, key=k) for k in keys]
    return [read_cube(p)]


# ---------------------------------------------------------------------------- writers
def _atomic_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise CubeError(f"{path}: already exists; choose another name or pass overwrite=True")
    if not path.parent.exists():
        raise CubeError(f"{path.parent}: folder does not exist")


def _tmp_beside(path: Path, suffix: str) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_cube(cube: Cube, path: str | os.PathLike, overwrite: bool = False) -> list[str]:
    """Write a cube as ENVI (``.hdr`` + ``.img``, BSQ float32, wavelengths in the header),
    TIFF (``.tif``/``.tiff``, band-first float32, wavelengths in the JSON description) or
    NumPy (``.npy`` data only; ``.npz`` with ``data`` and ``wavelengths``). Returns the
    paths written. Refuses to overwrite unless asked; writes atomically."""
    path = Path(path)
    suf = path.suffix.lower()
    data = check_cube_array(cube.data, cube.name)
    if suf in (".hdr", ".img"):
        return _write_envi(cube, data, path.with_suffix(".hdr"), overwrite)
    if suf in TIFF_EXTS:
        import tifffile

        _atomic_target(path, overwrite)
        tmp = _tmp_beside(path, suf)
        try:
            md = {"axes": "CYX", "norm_scale": float(cube.norm_scale), "name": cube.name}
            if cube.wavelengths is not None:
                md["wavelengths_nm"] = [float(w) for w in cube.wavelengths]
            tifffile.imwrite(tmp, data, metadata=md, photometric="minisblack")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return [str(path)]
    if suf in (".npy", ".npz"):
        _atomic_target(path, overwrite)
        tmp = _tmp_beside(path, suf)
        try:
            with open(tmp, "wb") as fh:
                if suf == ".npy":
                    np.save(fh, data)
                else:
                    extra = {} if cube.wavelengths is None else {"wavelengths": cube.wavelengths}
                    np.savez_compressed(fh, data=data, **extra)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return [str(path)]
    raise CubeError(f"{path}: unsupported output type {suf or '(no extension)'}; use .hdr, .tif or .npy/.npz")


def _write_envi(cube: Cube, data: np.ndarray, hdr: Path, overwrite: bool) -> list[str]:
    img = hdr.with_suffix(".img")
    _atomic_target(hdr, overwrite)
    _atomic_target(img, overwrite)
    c, h, w = data.shape
    lines = [
        "ENVI",
        f"description = {{{cube.name} written by napari-cofusion}}",
        f"samples = {w}",
        f"lines = {h}",
        f"bands = {c}",
        "header offset = 0",
        "file type = ENVI Standard",
        "data type = 4",
        "interleave = bsq",
        f"byte order = {0 if np.little_endian else 1}",
        f"norm scale = {float(cube.norm_scale)}",
    ]
    if cube.wavelengths is not None:
        lines.append("wavelength units = Nanometers")
        lines.append("wavelength = {" + ", ".join(f"{x:.10g}" for x in cube.wavelengths) + "}")
    if "fwhm" in cube.meta and len(cube.meta["fwhm"]) == c:
        lines.append("fwhm = {" + ", ".join(f"{float(x):.10g}" for x in cube.meta["fwhm"]) + "}")
    tmp_img, tmp_hdr = _tmp_beside(img, ".img"), _tmp_beside(hdr, ".hdr")
    try:
        np.ascontiguousarray(data, dtype="<f4" if np.little_endian else ">f4").tofile(tmp_img)
        tmp_hdr.write_text("\n".join(lines) + "\n")
        os.replace(tmp_img, img)
        os.replace(tmp_hdr, hdr)
    finally:
        tmp_img.unlink(missing_ok=True)
        tmp_hdr.unlink(missing_ok=True)
    return [str(hdr), str(img)]


def write_json(obj: Any, path: str | os.PathLike, overwrite: bool = False) -> str:
    """Atomic, non-overwriting JSON writer for recipes and cards."""
    path = Path(path)
    _atomic_target(path, overwrite)
    tmp = _tmp_beside(path, ".json")
    try:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return str(path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
